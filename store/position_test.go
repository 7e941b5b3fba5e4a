package store_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dynamodb-event-store/eventstore/store"
)

func TestParsePosition(t *testing.T) {
	const ts = "20260101120000123"
	cases := []struct {
		name string
		text string
		want store.Position
		err  string // a part of the error; "" means success
	}{
		{name: "start", text: "start", want: store.Position{}},
		{name: "commit", text: ts + ":acc-1#0", want: store.Position{CommitID: ts + ":acc-1", AggregateID: "acc-1", Version: 0}},
		{name: "large version", text: ts + ":a#9223372036854775807", want: store.Position{CommitID: ts + ":a", AggregateID: "a", Version: 1<<63 - 1}},
		{name: "hash in aggregate id", text: ts + ":a#b#3", want: store.Position{CommitID: ts + ":a#b", AggregateID: "a#b", Version: 3}},
		{name: "hash at the end of the aggregate id", text: ts + ":a##3", want: store.Position{CommitID: ts + ":a#", AggregateID: "a#", Version: 3}},
		{name: "colon in aggregate id", text: ts + ":a:b#2", want: store.Position{CommitID: ts + ":a:b", AggregateID: "a:b", Version: 2}},
		{name: "unicode aggregate id", text: ts + ":Zoë-😀#1", want: store.Position{CommitID: ts + ":Zoë-😀", AggregateID: "Zoë-😀", Version: 1}},
		{name: "aggregate id start", text: ts + ":start#0", want: store.Position{CommitID: ts + ":start", AggregateID: "start", Version: 0}},
		{name: "FromCommitID", text: ts + ":a#-1", want: store.FromCommitID(ts + ":a")},
		{name: "FromCommitID of a prefix", text: "20260101#-1", want: store.FromCommitID("20260101")},

		{name: "empty", text: "", err: "no '#'"},
		{name: "no hash", text: ts + ":a", err: "no '#'"},
		{name: "Start capitalised", text: "Start", err: "no '#'"},
		{name: "no version", text: ts + ":a#", err: `version "" is not an integer`},
		{name: "version not a number", text: ts + ":a#x", err: `version "x" is not an integer`},
		{name: "version with plus", text: ts + ":a#+1", err: `version "+1"`},
		{name: "version with leading zero", text: ts + ":a#01", err: `version "01"`},
		{name: "version with space", text: ts + ":a# 1", err: `version " 1"`},
		{name: "version overflows", text: ts + ":a#9223372036854775808", err: "is not an integer"},
		{name: "version below -1", text: ts + ":a#-2", err: "below -1"},
		{name: "minus zero", text: ts + ":a#-0", err: `version "-0"`},
		{name: "empty commit id", text: "#0", err: "empty commit id"},
		{name: "empty commit id from start", text: "#-1", err: "empty commit id"},
		{name: "no colon", text: ts + "#0", err: "no aggregate id after a colon"},
		{name: "empty aggregate id", text: ts + ":#0", err: "no aggregate id after a colon"},
		{name: "not UTF-8", text: ts + ":a\xff#0", err: "not valid UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.ParsePosition(tc.text)
			if tc.err != "" {
				if !errors.Is(err, store.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePosition(%q) = %+v, %v; want an ErrInvalidArgument saying %q", tc.text, got, err, tc.err)
				}
				if got != (store.Position{}) {
					t.Fatalf("ParsePosition(%q) returned %+v with its error", tc.text, got)
				}
				var p store.Position
				if err := p.UnmarshalText([]byte(tc.text)); !errors.Is(err, store.ErrInvalidArgument) {
					t.Fatalf("UnmarshalText(%q) = %v, want ErrInvalidArgument", tc.text, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePosition(%q) = %+v, %v; want %+v", tc.text, got, err, tc.want)
			}
			if s := got.String(); s != tc.text {
				t.Fatalf("String() = %q, want %q", s, tc.text)
			}
		})
	}
}

// TestPositionRoundTrips writes positions of commits with tricky aggregate
// ids as text and reads them back, directly, through encoding.Text… and as
// JSON in both its forms.
func TestPositionRoundTrips(t *testing.T) {
	milli := int64(1767268800123)
	var positions []store.Position
	for _, id := range []string{"a", "a#b", "#", "a#", "#0", "a:b", ":", "a:b#c:d", "start", "Zoë", "账户-7", "😀#😀", `"quoted" \ back`, "tab\there", strings.Repeat("é#:", 300)} {
		for _, v := range []int64{0, 1, 42, 1<<63 - 1} {
			c := store.Commit{CommitID: store.FormatCommitID(milli, id), AggregateID: id, Version: v}
			positions = append(positions, c.Position())
		}
		positions = append(positions, store.FromCommitID(store.FormatCommitID(milli, id)))
	}
	positions = append(positions, store.Position{}, store.FromCommitID("2026"), store.FromCommitID("start"))
	for _, p := range positions {
		got, err := store.ParsePosition(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
		text, err := p.MarshalText()
		if err != nil || string(text) != p.String() {
			t.Errorf("%+v.MarshalText() = %q, %v; want %q", p, text, err, p.String())
		}
		var back store.Position
		if err := back.UnmarshalText(text); err != nil || back != p {
			t.Errorf("UnmarshalText(%q) = %+v, %v; want %+v", text, back, err, p)
		}
		// JSON keeps the object form; a string in the text form reads too.
		b, err := json.Marshal(p)
		if err != nil || !strings.HasPrefix(string(b), `{"commitId":`) {
			t.Errorf("json.Marshal(%+v) = %s, %v; want the object form", p, b, err)
		}
		back = store.Position{}
		if err := json.Unmarshal(b, &back); err != nil || back != p {
			t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", b, back, err, p)
		}
		s, _ := json.Marshal(p.String())
		back = store.Position{}
		if err := json.Unmarshal(s, &back); err != nil || back != p {
			t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", s, back, err, p)
		}
	}
	// As a map key, encoding/json uses the text form.
	m := map[store.Position]int{positions[1]: 1}
	b, err := json.Marshal(m)
	if err != nil || string(b) != `{"20260101120000123:a#1":1}` {
		t.Errorf("map key: %s, %v", b, err)
	}
}

// TestPositionJSONUnchanged pins the JSON form positions had before they
// had a text form, which checkpoints store.
func TestPositionJSONUnchanged(t *testing.T) {
	p := store.Position{CommitID: "20260101120000123:a", AggregateID: "a", Version: 3}
	b, err := json.Marshal(struct{ After store.Position }{p})
	if want := `{"After":{"commitId":"20260101120000123:a","aggregateId":"a","version":3}}`; err != nil || string(b) != want {
		t.Fatalf("json.Marshal = %s, %v; want %s", b, err, want)
	}
	var back struct{ After store.Position }
	if err := json.Unmarshal([]byte(`{"After":"20260101120000123:a#3"}`), &back); err != nil || back.After != p {
		t.Fatalf("json.Unmarshal of the text form = %+v, %v", back.After, err)
	}
	if err := json.Unmarshal([]byte(`{"After":"20260101120000123:a"}`), &back); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("json.Unmarshal of bad text = %v, want ErrInvalidArgument", err)
	}
}

// TestPositionWithoutTextForm: positions whose text would read back as
// another position are refused by MarshalText, never written lossily; JSON
// still carries them.
func TestPositionWithoutTextForm(t *testing.T) {
	for name, p := range map[string]store.Position{
		"aggregate id not in commit id": {CommitID: "20260101120000123:b", AggregateID: "a", Version: 1},
		"commit id without colon":       {CommitID: "20260101120000123", AggregateID: "a", Version: 1},
		"no aggregate id":               {CommitID: "20260101120000123:a", Version: 1},
		"version -1 with aggregate id":  {CommitID: "20260101120000123:a", AggregateID: "a", Version: -1},
		"version below -1":              {CommitID: "20260101120000123:a", AggregateID: "a", Version: -5},
		"FromCommitID of nothing":       store.FromCommitID(""),
		"aggregate id only":             {AggregateID: "a"},
	} {
		if text, err := p.MarshalText(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: MarshalText(%+v) = %q, %v; want ErrInvalidArgument", name, p, text, err)
		}
		b, err := json.Marshal(p)
		var back store.Position
		if err != nil || json.Unmarshal(b, &back) != nil || back != p {
			t.Errorf("%s: JSON round trip of %+v: %s, %v, %+v", name, p, b, err, back)
		}
	}
}
