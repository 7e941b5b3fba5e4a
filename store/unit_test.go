package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// fakeAPI fakes the store's narrow DynamoDB interface with function fields.
type fakeAPI struct {
	put   func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	tx    func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
	query func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error)
}

func (f *fakeAPI) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return f.put(in)
}
func (f *fakeAPI) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return f.tx(in)
}
func (f *fakeAPI) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return f.query(in)
}

func TestFormatCommitID(t *testing.T) {
	cases := []struct {
		name  string
		milli int64
		want  string
	}{
		{"original README example", 946684800000, "20000101000000000:a"},
		{"milliseconds", 946684800001, "20000101000000001:a"},
		{"late in a leap year", time.Date(2024, 12, 31, 23, 59, 58, 999e6, time.UTC).UnixMilli(), "20241231235958999:a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatCommitID(tc.milli, "a")
			if got != tc.want {
				t.Fatalf("FormatCommitID(%d) = %q, want %q", tc.milli, got, tc.want)
			}
			at, err := ParseCommitIDTime(got)
			if err != nil || at.UnixMilli() != tc.milli {
				t.Fatalf("ParseCommitIDTime(%q) = %v, %v; want %d", got, at, err, tc.milli)
			}
		})
	}
	if _, err := ParseCommitIDTime("2000x101000000000:a"); err == nil {
		t.Fatal("ParseCommitIDTime accepted a malformed commit id")
	}
}

func TestPositionOrder(t *testing.T) {
	ordered := []Position{
		{},
		FromCommitID("20000101000000000:a"),
		{CommitID: "20000101000000000:a", AggregateID: "a", Version: 0},
		{CommitID: "20000101000000000:a", AggregateID: "a", Version: 1},
		FromCommitID("20000101000000000:b"),
		{CommitID: "20000101000000000:b", AggregateID: "b", Version: 7},
		{CommitID: "20000101000000001:a", AggregateID: "a", Version: 2},
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestClockGoingBackwardsNeverMovesCommitIDsBack(t *testing.T) {
	var mu sync.Mutex
	readings := []time.Time{
		time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 12, 0, 0, 5e6, time.UTC),
		time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC), // NTP step back an hour
		time.Date(2026, 1, 1, 11, 30, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 12, 0, 1, 0, time.UTC),
	}
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		r := readings[0]
		if len(readings) > 1 {
			readings = readings[1:]
		}
		return r
	}
	api := &fakeAPI{put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return &dynamodb.PutItemOutput{}, nil }}
	s, err := New(api, Config{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	var prev string
	for v := range 5 {
		c, err := s.Append(context.Background(), Commit{AggregateID: "a", Version: int64(v), Events: json.RawMessage(`[1]`)})
		if err != nil {
			t.Fatal(err)
		}
		if c.CommitID < prev {
			t.Fatalf("commit id went backwards: %s after %s", c.CommitID, prev)
		}
		if at, _ := ParseCommitIDTime(c.CommitID); at.UnixMilli() != c.CommittedAt {
			t.Fatalf("commitId %s and committedAt %d disagree", c.CommitID, c.CommittedAt)
		}
		prev = c.CommitID
	}
	if want := "20260101120001000:a"; prev != want {
		t.Fatalf("last commit id %s, want %s (the clock's own reading once it passed the high mark)", prev, want)
	}
}

func TestValidate(t *testing.T) {
	ok := json.RawMessage(`[{"type":"x"}]`)
	cases := []struct {
		name   string
		commit Commit
		want   error
	}{
		{"empty aggregate id", Commit{Version: 0, Events: ok}, ErrEmptyAggregateID},
		{"aggregate id too long", Commit{AggregateID: strings.Repeat("a", MaxAggregateIDBytes+1), Events: ok}, ErrAggregateIDTooLong},
		{"aggregate id not UTF-8", Commit{AggregateID: "a\xff", Events: ok}, ErrAggregateIDNotUTF8},
		{"negative version", Commit{AggregateID: "a", Version: -1, Events: ok}, ErrNegativeVersion},
		{"nil events", Commit{AggregateID: "a"}, ErrNoEvents},
		{"empty array", Commit{AggregateID: "a", Events: json.RawMessage(" [ \n] ")}, ErrNoEvents},
		{"not JSON", Commit{AggregateID: "a", Events: json.RawMessage(`[{"type":`)}, ErrEventsNotJSON},
		{"object, not array", Commit{AggregateID: "a", Events: json.RawMessage(`{"type":"x"}`)}, ErrEventsNotJSON},
		{"trailing garbage", Commit{AggregateID: "a", Events: json.RawMessage(`[1] x`)}, ErrEventsNotJSON},
		{"null", Commit{AggregateID: "a", Events: json.RawMessage(`null`)}, ErrEventsNotJSON},
		{"valid", Commit{AggregateID: "a", Version: 3, Events: ok}, nil},
		{"longest aggregate id", Commit{AggregateID: strings.Repeat("é", MaxAggregateIDBytes/2), Events: ok}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.commit, -1)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidCommit) {
				t.Fatalf("validate = %v, want %v and ErrInvalidCommit", err, tc.want)
			}
			var ice *InvalidCommitError
			if !errors.As(err, &ice) || ice.Version != tc.commit.Version {
				t.Fatalf("validate = %#v, want an *InvalidCommitError naming version %d", err, tc.commit.Version)
			}
		})
	}
}

func item(commitID, aggregateID string, version int) map[string]types.AttributeValue {
	c := Commit{CommitID: commitID, CommittedAt: 1, AggregateID: aggregateID, Version: int64(version), Events: json.RawMessage(`[1]`)}
	return encode(c, "t", "tok")
}

// TestScanOrdersTiesAcrossPages feeds pages in which one aggregate's commits
// share a commit id (one millisecond) and come in no particular order, split
// over a page boundary: the scan must still give them in version order, and
// resume exactly from the middle of the run.
func TestScanOrdersTiesAcrossPages(t *testing.T) {
	id1, id2, id3 := FormatCommitID(1, "a"), FormatCommitID(2, "b"), FormatCommitID(3, "a")
	pages := [][]map[string]types.AttributeValue{
		{item(id1, "a", 0), item(id2, "b", 3), item(id2, "b", 1)},
		{item(id2, "b", 0), item(id2, "b", 2)},
		{item(id2, "b", 4), item(id3, "a", 1)},
	}
	api := &fakeAPI{query: func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
		i := 0
		if in.ExclusiveStartKey != nil {
			i = int(in.ExclusiveStartKey["page"].(*types.AttributeValueMemberN).Value[0] - '0')
		}
		out := &dynamodb.QueryOutput{Items: pages[i]}
		if i+1 < len(pages) {
			out.LastEvaluatedKey = map[string]types.AttributeValue{"page": &types.AttributeValueMemberN{Value: string(rune('0' + i + 1))}}
		}
		return out, nil
	}}
	s, err := New(api, Config{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(after Position) []string {
		var got []string
		for c, err := range s.Scan(context.Background(), after) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, c.Position().String())
		}
		return got
	}
	want := []string{id1 + "#0", id2 + "#0", id2 + "#1", id2 + "#2", id2 + "#3", id2 + "#4", id3 + "#1"}
	if got := read(Position{}); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("scan = %v, want %v", got, want)
	}
	for k := range want {
		pos, err := ParsePosition(want[k])
		if err != nil {
			t.Fatal(err)
		}
		if got := read(pos); strings.Join(got, " ") != strings.Join(want[k+1:], " ") {
			t.Fatalf("scan after %v = %v, want %v", pos, got, want[k+1:])
		}
	}
}

func TestAppendReportsConsumedCapacity(t *testing.T) {
	var got []Operation
	api := &fakeAPI{put: func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		if in.ReturnConsumedCapacity != types.ReturnConsumedCapacityIndexes {
			t.Errorf("ReturnConsumedCapacity = %q, want INDEXES", in.ReturnConsumedCapacity)
		}
		return &dynamodb.PutItemOutput{ConsumedCapacity: &types.ConsumedCapacity{CapacityUnits: aws.Float64(2)}}, nil
	}}
	s, err := New(api, Config{ConsumedCapacity: func(op Operation, cc types.ConsumedCapacity) {
		if aws.ToFloat64(cc.CapacityUnits) != 2 {
			t.Errorf("capacity %v, want 2", aws.ToFloat64(cc.CapacityUnits))
		}
		got = append(got, op)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), Commit{AggregateID: "a", Events: json.RawMessage(`[1]`)}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != OpAppend {
		t.Fatalf("reports %v, want [Append]", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	api := &fakeAPI{}
	for name, cfg := range map[string]Config{
		"buckets":    {IndexBuckets: MaxIndexBuckets + 1},
		"negative":   {IndexBuckets: -1},
		"page size":  {PageSize: -1},
		"table name": {TableName: "ab"},
	} {
		if _, err := New(api, cfg); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := New(nil, Config{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil api: New = %v, want ErrInvalidArgument", err)
	}
}

func TestConfigErrorNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string
		value any
		text  string
	}{
		{"too many buckets", Config{IndexBuckets: 300}, "IndexBuckets", 300, "store: invalid argument: Config.IndexBuckets 300: want 1 to 256"},
		{"negative buckets", Config{IndexBuckets: -1}, "IndexBuckets", -1, "Config.IndexBuckets -1: want 1 to 256"},
		{"page size", Config{PageSize: -5}, "PageSize", int32(-5), "Config.PageSize -5: want 0 or more"},
		{"short table name", Config{TableName: "ab"}, "TableName", "ab", `Config.TableName "ab": want 3 to 255 characters`},
		{"long table name", Config{TableName: strings.Repeat("t", 256)}, "TableName", strings.Repeat("t", 256), "want 3 to 255 characters"},
		{"short index name", Config{IndexName: "i"}, "IndexName", "i", `Config.IndexName "i": want 3 to 255 characters`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(&fakeAPI{}, tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("New = %v, want a *ConfigError matching ErrInvalidArgument", err)
			}
			if ce.Field != tc.field || ce.Value != tc.value || ce.Reason == "" {
				t.Fatalf("ConfigError %+v, want field %s value %v", *ce, tc.field, tc.value)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not contain %q", err, tc.text)
			}
		})
	}
	var ce *ConfigError
	if _, err := New(nil, Config{}); errors.As(err, &ce) || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil api: New = %#v, want a plain ErrInvalidArgument", err)
	}
}

func TestBucketsSpreadAndAreStable(t *testing.T) {
	s, err := New(&fakeAPI{}, Config{IndexBuckets: 4})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := range 4000 {
		id := "agg-" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune('0'+i%10)) + string(rune(i))
		b := s.Bucket(id)
		if b != s.Bucket(id) {
			t.Fatal("bucket of one aggregate changed")
		}
		counts[b]++
	}
	if len(counts) != 4 {
		t.Fatalf("buckets used: %v, want all of %v", counts, s.Buckets())
	}
	for b, n := range counts {
		if n < 600 {
			t.Errorf("bucket %s got %d of 4000 aggregates: uneven", b, n)
		}
	}
	if one, _ := New(&fakeAPI{}, Config{}); one.Bucket("anything") != "t" {
		t.Fatal(`one bucket must be "t", as the original package writes`)
	}
}

// TestAppendAllRecognisesItsOwnEarlierAttempt covers the path DynamoDB takes
// when a retried transaction's idempotency token has expired: the retry is
// cancelled with the items the first attempt wrote.
func TestAppendAllRecognisesItsOwnEarlierAttempt(t *testing.T) {
	cancelled := func(in *dynamodb.TransactWriteItemsInput, token string) error {
		reasons := make([]types.CancellationReason, len(in.TransactItems))
		for i, it := range in.TransactItems {
			item := map[string]types.AttributeValue{}
			for k, v := range it.Put.Item {
				item[k] = v
			}
			item[AttrCommitToken] = &types.AttributeValueMemberS{Value: token}
			reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Item: item}
		}
		reasons[0] = types.CancellationReason{Code: aws.String("None")}
		return &types.TransactionCanceledException{Message: aws.String("cancelled"), CancellationReasons: reasons}
	}
	commits := []Commit{{AggregateID: "a", Events: json.RawMessage(`[1]`)}, {AggregateID: "b", Version: 4, Events: json.RawMessage(`[2]`)}}
	t.Run("own token", func(t *testing.T) {
		s, _ := New(&fakeAPI{tx: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, cancelled(in, in.TransactItems[0].Put.Item[AttrCommitToken].(*types.AttributeValueMemberS).Value)
		}}, Config{})
		out, err := s.AppendAll(context.Background(), commits...)
		if err != nil || len(out) != 2 || out[1].Version != 4 {
			t.Fatalf("AppendAll = %v, %v; want success", out, err)
		}
	})
	t.Run("someone else's token", func(t *testing.T) {
		s, _ := New(&fakeAPI{tx: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, cancelled(in, "other")
		}}, Config{})
		_, err := s.AppendAll(context.Background(), commits...)
		var vc *VersionConflictError
		if !errors.As(err, &vc) || vc.Index != 1 || vc.AggregateID != "b" || vc.Version != 4 {
			t.Fatalf("AppendAll = %v, want a conflict on commit 1 (b, 4)", err)
		}
	})
	t.Run("transaction conflict is not a version conflict", func(t *testing.T) {
		s, _ := New(&fakeAPI{tx: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
				{Code: aws.String("None")}, {Code: aws.String("TransactionConflict")}}}
		}}, Config{})
		_, err := s.AppendAll(context.Background(), commits...)
		if err == nil || errors.Is(err, ErrVersionConflict) || !strings.Contains(err.Error(), "commit 1: TransactionConflict") {
			t.Fatalf("AppendAll = %v, want a cancellation naming commit 1's reason", err)
		}
	})
}

// TestDecodeKinds: every way an item can fail to be a well-formed commit of
// its key is told by its Kind, names the key, and keeps what was read; the
// largest version and a commit id up to MaxCommitIDAhead ahead pass.
func TestDecodeKinds(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	good := func() map[string]types.AttributeValue {
		return encode(Commit{CommitID: FormatCommitID(now.UnixMilli(), "agg"), CommittedAt: now.UnixMilli(), AggregateID: "agg", Version: 7, Events: json.RawMessage(`[1]`)}, "t", "tok")
	}
	with := func(attr string, v types.AttributeValue) map[string]types.AttributeValue {
		item := good()
		if v == nil {
			delete(item, attr)
		} else {
			item[attr] = v
		}
		return item
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	cases := []struct {
		name string
		item map[string]types.AttributeValue
		want CorruptKind // "" means it decodes
	}{
		{"well formed", good(), ""},
		{"largest version", with(AttrVersion, n("9007199254740991")), ""},
		{"commit id just within the bound", with(AttrCommitID, s(FormatCommitID(now.Add(MaxCommitIDAhead).UnixMilli(), "agg"))), ""},
		{"aggregate id whose commit id holds a colon", func() map[string]types.AttributeValue {
			item := with(AttrAggregateID, s("a:b"))
			item[AttrCommitID] = s(FormatCommitID(now.UnixMilli(), "a:b"))
			return item
		}(), ""},
		{"no aggregate id", with(AttrAggregateID, nil), KindBadAggregateID},
		{"version 2^53", with(AttrVersion, n("9007199254740992")), KindBadVersion},
		{"version 2^63-1", with(AttrVersion, n("9223372036854775807")), KindBadVersion},
		{"version beyond int64", with(AttrVersion, n("1e30")), KindBadVersion},
		{"negative version", with(AttrVersion, n("-1")), KindBadVersion},
		{"decimal version", with(AttrVersion, n("1.5")), KindBadVersion},
		{"no commit id", with(AttrCommitID, nil), KindMissingCommitID},
		{"empty commit id", with(AttrCommitID, s("")), KindMissingCommitID},
		{"commit id a number", with(AttrCommitID, n("1")), KindMissingCommitID},
		{"garbage commit id", with(AttrCommitID, s("garbage:agg")), KindMalformedCommitID},
		{"commit id without aggregate", with(AttrCommitID, s("20261208010000000")), KindMalformedCommitID},
		{"commit id without colon", with(AttrCommitID, s("20261208010000000agg")), KindMalformedCommitID},
		{"commit id month 13", with(AttrCommitID, s("20261308010000000:agg")), KindMalformedCommitID},
		{"commit id of another aggregate", with(AttrCommitID, s("20261208010000000:someone-else")), KindForeignCommitID},
		{"commit id with empty aggregate", with(AttrCommitID, s("20261208010000000:")), KindForeignCommitID},
		{"commit id past the bound", with(AttrCommitID, s(FormatCommitID(now.Add(MaxCommitIDAhead+time.Second).UnixMilli(), "agg"))), KindFutureCommitID},
		{"commit id a year ahead", with(AttrCommitID, s(FormatCommitID(now.AddDate(1, 0, 0).UnixMilli(), "agg"))), KindFutureCommitID},
		{"no committedAt", with(AttrCommittedAt, nil), KindBadCommittedAt},
		{"no events", with(AttrEvents, nil), KindEventsNotArray},
		{"events a number", with(AttrEvents, n("1")), KindEventsNotArray},
		{"events an object", with(AttrEvents, s(`{"a":1}`)), KindEventsNotArray},
		{"events not JSON", with(AttrEvents, s(`[1,`)), KindEventsNotArray},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeItemAt(tc.item, now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("DecodeItemAt: %v", err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrCorruptCommit) || de.Kind != tc.want {
				t.Fatalf("DecodeItemAt = %v, %v; want a *DecodeError of kind %s", c, err, tc.want)
			}
			if !strings.Contains(err.Error(), string(tc.want)) {
				t.Fatalf("%q does not name the kind %s", err, tc.want)
			}
			if tc.want != KindBadAggregateID && (de.AggregateID != de.Commit.AggregateID || de.Commit.AggregateID == "") {
				t.Fatalf("the error keeps aggregate %q, want the item's", de.Commit.AggregateID)
			}
			if tc.want != KindBadVersion && de.Commit.Version != 7 {
				t.Fatalf("the error keeps version %d, want 7", de.Commit.Version)
			}
			if tc.want != KindEventsNotArray && string(de.Commit.Events) != `[1]` {
				t.Fatalf("the error keeps events %q, want [1]", de.Commit.Events)
			}
		})
	}
	// A zero time skips the future check; DecodeItem judges by time.Now.
	far := with(AttrCommitID, s(FormatCommitID(time.Now().AddDate(1, 0, 0).UnixMilli(), "agg")))
	if _, err := DecodeItemAt(far, time.Time{}); err != nil {
		t.Fatalf("DecodeItemAt(zero time) = %v, want no future check", err)
	}
	var de *DecodeError
	if _, err := DecodeItem(far); !errors.As(err, &de) || de.Kind != KindFutureCommitID {
		t.Fatalf("DecodeItem of a commit id a year ahead = %v, want %s", err, KindFutureCommitID)
	}
}
