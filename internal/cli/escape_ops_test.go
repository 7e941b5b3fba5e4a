package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// rawControl returns the first control character (other than a newline)
// or bidirectional override in s, or -1.
func rawControl(s string) rune {
	for _, r := range s {
		if r == '\n' {
			continue
		}
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return r
		}
	}
	return -1
}

// TestOutputEscapesControlCharacters: ids, reasons and owners that hold
// terminal control sequences print escaped in every table, and as \u
// escapes in JSON lines.
func TestOutputEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	const evil = "evil\x1b]0;pwned\x07\u009b2J\u202eid"
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	ctx := t.Context()
	c, err := st.Append(ctx, store.Commit{AggregateID: evil, Version: 0, Events: json.RawMessage(`["\u009b"]`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Set(ctx, checkpoint.Key{Subscription: "proj"}, "", false); err != nil {
		t.Fatal(err)
	}
	if err := cps.Park(ctx, checkpoint.Parked{Subscription: "proj", Commit: c, Reason: "receiver said \x1b[2J\x1b[Hgone\nsecond line", Attempts: 5, ParkedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Claim(ctx, checkpoint.Key{Subscription: "proj", Unit: "unit\x1b[1m"}, "owner\x1b]2;x\x07"); err != nil {
		t.Fatal(err)
	}

	runs := func(args ...string) result {
		switch args[0] {
		case "parked":
			return cpCmd(t, cpTable, args...)
		case "checkpoint":
			return bothCmd(t, table, cpTable, args...)
		}
		return cmd(t, table, "", args...)
	}
	for _, args := range [][]string{
		{"parked", "list"},
		{"parked", "list", "proj", "--aggregate", evil},
		{"checkpoint", "list"},
		{"checkpoint", "get", "proj", "--unit", "unit\x1b[1m"},
		{"scan"},
		{"query", "--aggregate", evil},
		{"parked", "list", "--json"},
	} {
		r := runs(args...)
		if r.code != 0 {
			t.Errorf("%q: exit %d, stderr %s", args, r.code, r.stderr)
			continue
		}
		if ch := rawControl(r.stdout); ch >= 0 {
			t.Errorf("%q prints %U raw:\n%q", args, ch, r.stdout)
		}
		if ch := rawControl(r.stderr); ch >= 0 {
			t.Errorf("%q warns with %U raw:\n%q", args, ch, r.stderr)
		}
		if !strings.Contains(r.stdout, "evil") && args[0] != "checkpoint" {
			t.Errorf("%q does not print the aggregate:\n%s", args, r.stdout)
		}
	}
	r := runs("parked", "list")
	for _, want := range []string{`evil\x1b]0;pwned\x07\u009b2J\u202eid`, `receiver said \x1b[2J\x1b[Hgone`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("parked list does not print %s:\n%s", want, r.stdout)
		}
	}
	r = runs("checkpoint", "list")
	if !strings.Contains(r.stdout, `owner\x1b]2;x\x07`) || !strings.Contains(r.stdout, `unit\x1b[1m`) {
		t.Errorf("checkpoint list does not print the owner and unit escaped:\n%s", r.stdout)
	}
	// JSON lines stay JSON, with the same values.
	got := decode(t, runs("scan").stdout)
	if len(got) != 1 || got[0].AggregateID != evil || string(got[0].Events) != `["\u009b"]` {
		t.Errorf("scan decodes to %+v, want the commit as it is", got)
	}
}
