package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Helpers of the operator commands' tests: checkpoint, parked, tail, local.

// newCheckpointTable creates a checkpoint table for the test and deletes it
// after.
func newCheckpointTable(t *testing.T) string {
	t.Helper()
	client := ddbtest.Client(t)
	cfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t) + "-cp"}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cfg) })
	return cfg.TableName
}

func openStore(t *testing.T, table string) *store.Store {
	t.Helper()
	st, err := store.New(ddbtest.Client(t), store.Config{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openCheckpoints(t *testing.T, table string) *dynamocheckpoint.Store {
	t.Helper()
	cps, err := dynamocheckpoint.New(ddbtest.Client(t), dynamocheckpoint.Config{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

// conn is the flags that reach the emulator.
func conn(t *testing.T) []string {
	return []string{"--endpoint", ddbtest.Endpoint(t), "--region", os.Getenv("AWS_REGION")}
}

// cpCmd runs a command that reads the checkpoint table only.
func cpCmd(t *testing.T, cpTable string, args ...string) result {
	t.Helper()
	return run(t, nil, "", append(append(args, conn(t)...), "--checkpoint-table", cpTable)...)
}

// bothCmd runs a command that reads the commits and checkpoint tables.
func bothCmd(t *testing.T, table, cpTable string, args ...string) result {
	t.Helper()
	return run(t, nil, "", append(append(args, on(t, table)...), "--checkpoint-table", cpTable)...)
}

// appendCommits appends the versions named "aggregate/version", in order,
// with a millisecond between them so that their commit ids differ, and
// returns the commits.
func appendCommits(t *testing.T, st *store.Store, names ...string) []store.Commit {
	t.Helper()
	var out []store.Commit
	for _, n := range names {
		var id string
		var v int64
		if _, err := fmt.Sscanf(strings.Replace(n, "/", " ", 1), "%s %d", &id, &v); err != nil {
			t.Fatalf("commit name %q: %v", n, err)
		}
		c, err := st.Append(t.Context(), store.Commit{AggregateID: id, Version: v, Events: json.RawMessage(`[{"n":"` + n + `"}]`)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
		time.Sleep(2 * time.Millisecond) // distinct commit ids, for the test's start points
	}
	return out
}

// seen records the commits a handler got, as "aggregate/version".
type seen struct {
	mu   sync.Mutex
	got  []string
	fail func(c store.Commit) error
}

func (s *seen) Handle(_ context.Context, c store.Commit) error {
	if s.fail != nil {
		if err := s.fail(c); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("%s/%d", c.AggregateID, c.Version))
	return nil
}

func (s *seen) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// testWorker is a real subscribe.Worker running one subscription on the
// test's tables.
type testWorker struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startWorker runs a worker as owner with sub, quick to poll, retry and
// save, until the test ends or stop.
func startWorker(t *testing.T, st *store.Store, cps *dynamocheckpoint.Store, owner string, sub subscribe.Subscription) *testWorker {
	t.Helper()
	w, err := subscribe.NewWorker(subscribe.Config{Reader: st, Checkpoints: cps, Owner: owner,
		RequestPoll: 100 * time.Millisecond, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sub.Index = subscribe.IndexOptions{Settle: 100 * time.Millisecond, PollMin: 20 * time.Millisecond, PollMax: 100 * time.Millisecond}
	sub.Retry = subscribe.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	sub.CheckpointInterval = 100 * time.Millisecond
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tw := &testWorker{cancel: cancel, done: make(chan error, 1)}
	go func() { tw.done <- w.Run(ctx) }()
	t.Cleanup(func() { _ = tw.stop(t) })
	return tw
}

// stop stops the worker and returns Run's error; later calls return the
// same.
func (tw *testWorker) stop(t *testing.T) error {
	tw.once.Do(func() {
		tw.cancel()
		select {
		case tw.err = <-tw.done:
		case <-time.After(20 * time.Second):
			t.Error("the worker did not stop within 20 s")
		}
	})
	return tw.err
}

// wantLines fails unless out, split in lines, is want.
func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	if got := lines(out); !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// row returns the line of a table that starts with prefix.
func row(t *testing.T, table, prefix string) string {
	t.Helper()
	for _, l := range lines(table) {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no row starting %q in:\n%s", prefix, table)
	return ""
}

// checkpointJSON is the JSON of checkpoint list and get.
type checkpointJSON struct {
	Subscription  string          `json:"subscription"`
	Unit          string          `json:"unit"`
	Owner         string          `json:"owner"`
	Lease         int64           `json:"lease"`
	UpdatedAt     *time.Time      `json:"updatedAt"`
	Expires       *time.Time      `json:"expires"`
	Phase         string          `json:"phase"`
	After         *store.Position `json:"after"`
	HandledBefore *time.Time      `json:"handledBefore"`
	LagSeconds    *float64        `json:"lagSeconds"`
	CaughtUp      bool            `json:"caughtUp"`
	Head          *store.Position `json:"head"`
	Position      *string         `json:"position"`
}

func TestCheckpointListAndGet(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	commits := appendCommits(t, st, "a/0", "b/0", "a/1")
	head := commits[2]

	// "projector" is caught up: a worker handled every commit and stopped.
	h := &seen{}
	w := startWorker(t, st, cps, "worker-1", subscribe.Subscription{Name: "projector", Handler: h})
	ddbtest.Eventually(t, 20*time.Second, func() bool { return len(h.list()) == 3 }, "the worker handled %q", h.list())
	if err := w.stop(t); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// "mailer" is held by a worker and 90 s behind the head.
	cp, err := cps.Claim(ctx, checkpoint.Key{Subscription: "mailer"}, "worker-7")
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = subscribe.CheckpointAt(subscribe.StartAtTime(head.Time().Add(-90*time.Second)), time.Now())
	if err := cps.Save(ctx, cp); err != nil {
		t.Fatal(err)
	}
	// "fresh" was claimed and has no position yet; "replayer" is at the
	// beginning; "sharded" has a unit, after the head.
	if _, err := cps.Claim(ctx, checkpoint.Key{Subscription: "fresh"}, "worker-8"); err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Set(ctx, checkpoint.Key{Subscription: "replayer"}, subscribe.CheckpointAt(subscribe.StartBeginning, time.Now()), false); err != nil {
		t.Fatal(err)
	}
	after := subscribe.CheckpointAt(subscribe.StartAtTime(head.Time().Add(time.Second)), time.Now())
	if _, err := cps.Set(ctx, checkpoint.Key{Subscription: "sharded", Unit: "bucket-1"}, after, false); err != nil {
		t.Fatal(err)
	}

	r := bothCmd(t, table, cpTable, "checkpoint", "list", "--json")
	r.want(t, 0)
	var views []checkpointJSON
	for _, l := range lines(r.stdout) {
		var v checkpointJSON
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		views = append(views, v)
	}
	var order []string
	for _, v := range views {
		order = append(order, v.Subscription+"/"+v.Unit)
	}
	if want := []string{"fresh/", "mailer/", "projector/", "replayer/", "sharded/bucket-1"}; !slices.Equal(order, want) {
		t.Fatalf("list --json listed %q, want %q\n%s", order, want, r.stdout)
	}
	lag := func(v checkpointJSON) string {
		if v.LagSeconds == nil {
			return "unknown"
		}
		return fmt.Sprint(*v.LagSeconds)
	}
	for _, c := range []struct {
		i        int
		owner    string
		phase    string
		lag      string
		caughtUp bool
	}{
		{0, "worker-8", "", "unknown", false},
		{1, "worker-7", "index", "90", false},
		{2, "", "index", "0", true},
		{3, "", "index", "unknown", false},
		{4, "", "index", "0", true},
	} {
		v := views[c.i]
		if v.Owner != c.owner || v.Phase != c.phase || lag(v) != c.lag || v.CaughtUp != c.caughtUp || v.Lease < 1 {
			t.Errorf("%s: owner %q phase %q lag %s caughtUp %v lease %d; want owner %q phase %q lag %s caughtUp %v",
				v.Subscription, v.Owner, v.Phase, lag(v), v.CaughtUp, v.Lease, c.owner, c.phase, c.lag, c.caughtUp)
		}
	}
	if v := views[2]; v.After == nil || *v.After != head.Position() || v.UpdatedAt == nil {
		t.Errorf("projector: after %v updatedAt %v, want the head %v", v.After, v.UpdatedAt, head.Position())
	}

	// The table: one row per checkpoint, dashes for no owner and no unit.
	r = bothCmd(t, table, cpTable, "checkpoint", "list")
	r.want(t, 0)
	if ls := lines(r.stdout); len(ls) != 6 || !strings.HasPrefix(ls[0], "SUBSCRIPTION") {
		t.Fatalf("list printed\n%s", r.stdout)
	}
	for prefix, has := range map[string][]string{
		"mailer ":    {"worker-7", "index: from ", "1m30s"},
		"projector ": {" - ", "index: " + head.CommitID + " v1", " 0s"},
		"fresh ":     {"worker-8", "none yet", " -"},
		"replayer ":  {"index: beginning", " -"},
		"sharded ":   {"bucket-1", " 0s"},
	} {
		l := row(t, r.stdout, prefix)
		for _, s := range has {
			if !strings.Contains(l, s) {
				t.Errorf("row %q does not contain %q", l, s)
			}
		}
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "list", "--subscription", "mailer")
	r.want(t, 0)
	if ls := lines(r.stdout); len(ls) != 2 || !strings.HasPrefix(ls[1], "mailer ") {
		t.Errorf("list --subscription mailer printed\n%s", r.stdout)
	}
	bothCmd(t, table, cpTable, "checkpoint", "list", "--subscription", "nope").
		want(t, 1, `no checkpoint for subscription "nope" in table `+cpTable, `known subscriptions: "fresh", "mailer", "projector", "replayer", "sharded"`)

	// get: everything about one, the raw position included.
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "mailer")
	r.want(t, 0)
	for _, s := range []string{"owner:", "worker-7 (a worker holds it)", "lease:", "phase:", "index", "head:", head.CommitID, "lag:", "1m30s", "position:", cp.Position} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("get mailer does not print %q:\n%s", s, r.stdout)
		}
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "--json", "mailer")
	r.want(t, 0)
	var got checkpointJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("get --json: %v\n%s", err, r.stdout)
	}
	if got.Head == nil || *got.Head != head.Position() || got.Position == nil || *got.Position != cp.Position || lag(got) != "90" ||
		got.HandledBefore == nil || !got.HandledBefore.Equal(head.Time().Add(-90*time.Second)) {
		t.Errorf("get --json: %+v", got)
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "sharded", "--unit", "bucket-1")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "bucket-1") || !strings.Contains(r.stdout, "(caught up)") {
		t.Errorf("get sharded --unit bucket-1:\n%s", r.stdout)
	}
	bothCmd(t, table, cpTable, "checkpoint", "get", "nope").want(t, 1, `no checkpoint "nope" in table `+cpTable, `"mailer"`)
	bothCmd(t, table, cpTable, "checkpoint", "get", "sharded").want(t, 1, `no checkpoint "sharded"`)

	// The variable names the table; a missing table is said so.
	r = run(t, map[string]string{"EVENTSTORE_CHECKPOINT_TABLE": cpTable}, "", append([]string{"checkpoint", "list"}, on(t, table)...)...)
	r.want(t, 0)
	if len(lines(r.stdout)) != 6 {
		t.Errorf("list with EVENTSTORE_CHECKPOINT_TABLE printed\n%s", r.stdout)
	}
	bothCmd(t, table, "noSuchTable", "checkpoint", "list").want(t, 1, "checkpoint table noSuchTable not found")
	// The commits table missing: the checkpoints are listed, the lag unknown.
	r = bothCmd(t, "noSuchCommits", cpTable, "checkpoint", "list", "--subscription", "projector")
	r.want(t, 0, "lag unknown", "table noSuchCommits not found")
	if l := row(t, r.stdout, "projector "); !strings.HasSuffix(l, " -") {
		t.Errorf("projector's lag without a commits table: %q", l)
	}
}

func TestCheckpointSetRefusals(t *testing.T) {
	t.Parallel()
	cpTable := newCheckpointTable(t)
	cps := openCheckpoints(t, cpTable)
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "orders"}
	held, err := cps.Claim(ctx, key, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	held.Position = subscribe.CheckpointAt(subscribe.StartNow, time.Now())
	if err := cps.Save(ctx, held); err != nil {
		t.Fatal(err)
	}

	// Held: refused, naming the holder and what --force does; unchanged.
	cpCmd(t, cpTable, "checkpoint", "set", "orders", "--to", "beginning").
		want(t, cli.ExitRefused, `checkpoint "orders" is held by worker "worker-1" (lease 1, position last saved `, "--force", "fenced", "resumes from the new position")
	cpCmd(t, cpTable, "checkpoint", "reset", "orders").want(t, cli.ExitRefused, `held by worker "worker-1"`)
	if cp, err := cps.Load(ctx, key); err != nil || cp.Owner != "worker-1" || cp.Position != held.Position || cp.Lease != 1 {
		t.Fatalf("after the refusal: %+v, %v", cp, err)
	}

	// --force moves it and fences the holder.
	r := cpCmd(t, cpTable, "checkpoint", "set", "orders", "--to", "2026-01-02T03:04:05Z", "--force")
	r.want(t, 0, `worker "worker-1" (lease 1) is fenced`, `checkpoint "orders" set to 2026-01-02T03:04:05Z`)
	cp, err := cps.Load(ctx, key)
	wantPos := subscribe.CheckpointAt(subscribe.StartAtTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), time.Now())
	if err != nil || cp.Owner != "" || cp.Position != wantPos || cp.Lease != 2 {
		t.Fatalf("after set --force: %+v, %v; want position %s", cp, err, wantPos)
	}
	held.Position = subscribe.CheckpointAt(subscribe.StartBeginning, time.Now())
	if err := cps.Save(ctx, held); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("the fenced holder's Save: %v, want ErrFenced", err)
	}

	// No owner: reset needs no --force.
	cpCmd(t, cpTable, "checkpoint", "reset", "orders").want(t, 0, `set to beginning`)
	if cp, err := cps.Load(ctx, key); err != nil || cp.Position != subscribe.CheckpointAt(subscribe.StartBeginning, time.Now()) {
		t.Fatalf("after reset: %+v, %v", cp, err)
	}

	// Unknown: refused, listing the known ones, unless --create.
	cpCmd(t, cpTable, "checkpoint", "set", "ordres", "--to", "now").
		want(t, cli.ExitRefused, `refused: no checkpoint "ordres" in table `+cpTable, `known subscriptions: "orders"`, "--create")
	if _, err := cps.Load(ctx, checkpoint.Key{Subscription: "ordres"}); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("the refused set created a checkpoint: %v", err)
	}
	cpCmd(t, cpTable, "checkpoint", "set", "--create", "ledger", "--to", "20260102030405006:acc-1").want(t, 0)
	if cp, err := cps.Load(ctx, checkpoint.Key{Subscription: "ledger"}); err != nil ||
		cp.Position != subscribe.CheckpointAt(subscribe.StartAtCommitID("20260102030405006:acc-1"), time.Now()) {
		t.Fatalf("set --create: %+v, %v", cp, err)
	}
	cpCmd(t, cpTable, "checkpoint", "set", "ledger", "--unit", "bucket-2", "--to", "now").want(t, cli.ExitRefused, `no checkpoint "ledger"/"bucket-2"`)

	// Bad input: usage errors, nothing written.
	for _, tc := range []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"malformed --to", []string{"set", "orders", "--to", "yesterday"}, []string{`--to "yesterday": want beginning, now, a commit id`, "RFC 3339"}},
		{"partial commit id", []string{"set", "orders", "--to", "2026010203"}, []string{`--to "2026010203"`}},
		{"missing --to", []string{"set", "orders"}, []string{"--to is required"}},
		{"missing subscription", []string{"set", "--to", "now"}, []string{"missing SUBSCRIPTION"}},
		{"extra argument", []string{"set", "orders", "more", "--to", "now"}, []string{`unexpected argument "more"`}},
		{"unknown flag", []string{"set", "orders", "--to", "now", "--forse"}, []string{"flag provided but not defined: -forse", "eventstore checkpoint set --help"}},
		{"unknown flag first", []string{"reset", "--yes", "orders"}, []string{"flag provided but not defined: -yes"}},
		{"short table name", []string{"set", "orders", "--to", "now", "--checkpoint-table", "ab"}, []string{`--checkpoint-table "ab": want 3 to 255 characters`}},
	} {
		var r result
		if tc.name == "short table name" {
			r = run(t, nil, "", append(append([]string{"checkpoint"}, tc.args...), conn(t)...)...)
		} else {
			r = cpCmd(t, cpTable, append([]string{"checkpoint"}, tc.args...)...)
		}
		if r.code != cli.ExitUsage {
			t.Errorf("%s: exit status %d, want 2; stderr:\n%s", tc.name, r.code, r.stderr)
		}
		for _, s := range tc.stderr {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("%s: stderr does not contain %q:\n%s", tc.name, s, r.stderr)
			}
		}
	}
	run(t, map[string]string{"EVENTSTORE_CHECKPOINT_TABLE": "x"}, "", append([]string{"checkpoint", "reset", "orders"}, conn(t)...)...).
		want(t, 2, `EVENTSTORE_CHECKPOINT_TABLE="x": want 3 to 255 characters`)
	if cp, err := cps.Load(ctx, key); err != nil || cp.Position != subscribe.CheckpointAt(subscribe.StartBeginning, time.Now()) || cp.Lease != 3 {
		t.Fatalf("bad input changed the checkpoint: owner %q lease %d position %s, %v", cp.Owner, cp.Lease, cp.Position, err)
	}
}

// TestCheckpointLeases shows leases in list and get, and checks that set
// refuses a live lease and a claim but moves a checkpoint whose holder's
// lease expired without --force, fencing that holder.
func TestCheckpointLeases(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	cps := openCheckpoints(t, cpTable)
	// A store whose clock is an hour behind: its leases ended long ago by
	// the command's clock (and the store's it opens).
	past, err := dynamocheckpoint.New(ddbtest.Client(t), dynamocheckpoint.Config{TableName: cpTable,
		Clock: func() time.Time { return time.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	live, err := cps.Take(ctx, checkpoint.Key{Subscription: "live"}, "worker-L", checkpoint.Checkpoint{}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := past.Take(ctx, checkpoint.Key{Subscription: "gone"}, "worker-G", checkpoint.Checkpoint{}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	gone.Position = subscribe.CheckpointAt(subscribe.StartNow, time.Now())
	if err := past.Save(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Claim(ctx, checkpoint.Key{Subscription: "claimed"}, "worker-C"); err != nil {
		t.Fatal(err)
	}
	// A worker's membership record under a subscription it runs.
	if _, err := cps.Take(ctx, checkpoint.Key{Subscription: "member", Unit: "member:worker-M"}, "worker-M", checkpoint.Checkpoint{}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}

	// list: the owner column says how long a lease has left, or since when
	// it expired; a claim has no expiry.
	r := bothCmd(t, table, cpTable, "checkpoint", "list")
	r.want(t, 0)
	for prefix, has := range map[string][]string{
		"live ":    {"worker-L (lease ", " left)"},
		"gone ":    {"worker-G (expired 59m", " ago)"},
		"claimed ": {"worker-C "},
		"member ":  {"member:worker-M", "worker-M (lease ", "a worker's membership (no position)"},
	} {
		l := row(t, r.stdout, prefix)
		for _, s := range has {
			if !strings.Contains(l, s) {
				t.Errorf("row %q does not contain %q", l, s)
			}
		}
	}
	if l := row(t, r.stdout, "claimed "); strings.Contains(l, "lease ") || strings.Contains(l, "expired") {
		t.Errorf("the claimed row %q speaks of a lease", l)
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "list", "--json")
	r.want(t, 0)
	expires := map[string]*time.Time{}
	for _, l := range lines(r.stdout) {
		var v checkpointJSON
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		expires[v.Subscription] = v.Expires
	}
	if e := expires["live"]; e == nil || !e.Equal(live.Expires) {
		t.Errorf("list --json: live expires %v, want %v", e, live.Expires)
	}
	if e := expires["gone"]; e == nil || !e.Equal(gone.Expires) {
		t.Errorf("list --json: gone expires %v, want %v", e, gone.Expires)
	}
	if e, ok := expires["claimed"]; !ok || e != nil {
		t.Errorf("list --json: claimed expires %v (listed %v), want null", e, ok)
	}

	// get: the expiry, and whether it has passed.
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "live")
	r.want(t, 0)
	for _, s := range []string{"worker-L (a worker holds it)", "expires:", live.Expires.Format("2006-01-02T15:04:05.000Z"), "(in "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("get live does not print %q:\n%s", s, r.stdout)
		}
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "gone")
	r.want(t, 0)
	for _, s := range []string{"worker-G (its lease expired: any worker may take it over)", "expires:", gone.Expires.Format("2006-01-02T15:04:05.000Z"), "ago)"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("get gone does not print %q:\n%s", s, r.stdout)
		}
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "claimed")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "never (held without a lease)") {
		t.Errorf("get claimed does not say the claim has no expiry:\n%s", r.stdout)
	}
	r = bothCmd(t, table, cpTable, "checkpoint", "get", "--json", "gone")
	r.want(t, 0)
	var got checkpointJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("get --json: %v\n%s", err, r.stdout)
	}
	if got.Expires == nil || !got.Expires.Equal(gone.Expires) || got.Owner != "worker-G" {
		t.Errorf("get --json gone: owner %q expires %v, want worker-G and %v", got.Owner, got.Expires, gone.Expires)
	}

	// set: a live lease is refused, saying when it runs out.
	cpCmd(t, cpTable, "checkpoint", "set", "live", "--to", "beginning").
		want(t, cli.ExitRefused, `checkpoint "live" is held by worker "worker-L" (lease 1, position last saved never; its lease runs until `,
			"unless it renews it", "--force", "from then on the checkpoint is moved without --force")
	if cp, err := cps.Load(ctx, live.Key); err != nil || cp.Owner != "worker-L" || cp.Lease != 1 || !cp.Expires.Equal(live.Expires) {
		t.Fatalf("after the refusal: %+v, %v", cp, err)
	}
	// A claim does not expire: refused, however old.
	cpCmd(t, cpTable, "checkpoint", "reset", "claimed").want(t, cli.ExitRefused, `held by worker "worker-C"`, "--force is safe")

	// An expired lease no longer holds the checkpoint: it is moved without
	// --force, and its holder is fenced.
	cpCmd(t, cpTable, "checkpoint", "set", "gone", "--to", "beginning").
		want(t, 0, `the lease of worker "worker-G" (lease 1) had expired 59m`, "it is fenced", `checkpoint "gone" set to beginning`)
	cp, err := cps.Load(ctx, gone.Key)
	if err != nil || cp.Owner != "" || cp.Lease != 2 || !cp.Expires.IsZero() || cp.Position != subscribe.CheckpointAt(subscribe.StartBeginning, time.Now()) {
		t.Fatalf("after set of an expired lease: %+v, %v", cp, err)
	}
	gone.Position = subscribe.CheckpointAt(subscribe.StartNow, time.Now())
	if err := past.Save(ctx, gone); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("the expired holder's Save: %v, want ErrFenced", err)
	}
	if _, err := past.Renew(ctx, gone, time.Minute); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("the expired holder's Renew: %v, want ErrFenced", err)
	}
}

// TestCheckpointSetLiveWorker moves a running worker's checkpoint: refused,
// then forced; the worker is fenced at its next save and stops, and a new
// worker resumes from the position set.
func TestCheckpointSetLiveWorker(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	commits := appendCommits(t, st, "x/0", "y/0", "x/1", "y/1")

	first := &seen{}
	a := startWorker(t, st, cps, "worker-A", subscribe.Subscription{Name: "proj", Handler: first})
	ddbtest.Eventually(t, 20*time.Second, func() bool { return len(first.list()) == 4 }, "worker A handled %q", first.list())

	to := commits[2].CommitID // x/1, inclusive
	cpCmd(t, cpTable, "checkpoint", "set", "proj", "--to", to).want(t, cli.ExitRefused, `held by worker "worker-A"`)
	cpCmd(t, cpTable, "checkpoint", "set", "proj", "--to", to, "--force").want(t, 0, `worker "worker-A"`, "fenced")

	// Worker A handles the next commit, and its save of it is fenced.
	appendCommits(t, st, "x/2")
	select {
	case err := <-a.done:
		if !errors.Is(err, checkpoint.ErrFenced) {
			t.Fatalf("worker A stopped with %v, want ErrFenced", err)
		}
		a.once.Do(func() {})
	case <-time.After(20 * time.Second):
		t.Fatal("worker A did not stop after its checkpoint was moved")
	}
	if cp, err := cps.Load(t.Context(), checkpoint.Key{Subscription: "proj"}); err != nil || cp.Owner != "" {
		t.Fatalf("the fenced worker took the checkpoint back: %+v, %v", cp, err)
	}

	// Worker B resumes from x/1: x/1, y/1, x/2, and nothing before.
	second := &seen{}
	b := startWorker(t, st, cps, "worker-B", subscribe.Subscription{Name: "proj", Handler: second})
	ddbtest.Eventually(t, 20*time.Second, func() bool { return len(second.list()) >= 3 }, "worker B handled %q", second.list())
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := second.list(); !slices.Equal(got, []string{"x/1", "y/1", "x/2"}) {
		t.Errorf("worker B handled %q, want x/1, y/1, x/2", got)
	}
	r := bothCmd(t, table, cpTable, "checkpoint", "get", "proj")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "(caught up)") || !strings.Contains(r.stdout, "- (no worker holds it)") {
		t.Errorf("get after worker B stopped:\n%s", r.stdout)
	}
}

// parkedJSON is a line of parked list --json.
type parkedJSON struct {
	Subscription string `json:"subscription"`
	AggregateID  string `json:"aggregateId"`
	Commits      []struct {
		Commit   store.Commit `json:"commit"`
		Attempts int          `json:"attempts"`
		ParkedAt time.Time    `json:"parkedAt"`
		Reason   string       `json:"reason"`
	} `json:"commits"`
	Request *struct {
		ID      string `json:"id"`
		Kind    string `json:"kind"`
		Done    bool   `json:"done"`
		Result  string `json:"result"`
		Handled int    `json:"handled"`
	} `json:"request"`
}

func parkedList(t *testing.T, cpTable string, args ...string) []parkedJSON {
	t.Helper()
	r := cpCmd(t, cpTable, append([]string{"parked", "list", "--json"}, args...)...)
	r.want(t, 0)
	var out []parkedJSON
	for _, l := range lines(r.stdout) {
		var p parkedJSON
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("parked list --json line %q: %v", l, err)
		}
		out = append(out, p)
	}
	return out
}

func countParked(t *testing.T, cps *dynamocheckpoint.Store, sub, agg string) int {
	t.Helper()
	n := 0
	for _, err := range cps.Parked(t.Context(), sub, agg) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// TestParkedWithWorker parks an aggregate with a failing handler in a real
// worker, then replays it (failing, then fixed) and discards another, each
// through a request the worker carries out.
func TestParkedWithWorker(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	var mu sync.Mutex
	broken := map[string]bool{"poison": true, "junk": true}
	h := &seen{fail: func(c store.Commit) error {
		mu.Lock()
		defer mu.Unlock()
		if broken[c.AggregateID] {
			return fmt.Errorf("cannot handle %s/%d\nsecond line", c.AggregateID, c.Version)
		}
		return nil
	}}
	appendCommits(t, st, "good/0", "poison/0", "junk/0", "poison/1", "good/1", "junk/1", "poison/2")
	startWorker(t, st, cps, "worker-P", subscribe.Subscription{Name: "proj", Handler: h})
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		return countParked(t, cps, "proj", "poison") == 3 && countParked(t, cps, "proj", "junk") == 2 && len(h.list()) == 2
	}, "parking: handled %q", h.list())

	// list: per aggregate, in order, reasons and attempts.
	got := parkedList(t, cpTable)
	if len(got) != 2 || got[0].AggregateID != "junk" || got[1].AggregateID != "poison" || len(got[1].Commits) != 3 ||
		got[1].Commits[2].Commit.Version != 2 || !strings.HasSuffix(got[1].Commits[0].Reason, ": cannot handle poison/0\nsecond line") || got[1].Commits[0].Attempts != 1 ||
		string(got[1].Commits[0].Commit.Events) != `[{"n":"poison/0"}]` {
		t.Fatalf("parked list --json: %+v", got)
	}
	r := cpCmd(t, cpTable, "parked", "list", "proj", "--aggregate", "poison")
	r.want(t, 0)
	for _, s := range []string{"SUBSCRIPTION", "proj  ", "poison", "cannot handle poison/0…", "3 parked commits", "0–2"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("parked list proj --aggregate poison does not print %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "junk") {
		t.Errorf("parked list --aggregate poison lists junk:\n%s", r.stdout)
	}

	// A replay that still fails: exit 1, the reason, still parked.
	cpCmd(t, cpTable, "parked", "replay", "proj", "poison", "--timeout", "20s").
		want(t, 1, `replay of aggregate "poison" of subscription "proj" failed after 0 commits`, "cannot handle poison/0", "3 commits are still parked")
	// Fixed: replayed in order, no longer parked.
	mu.Lock()
	broken["poison"] = false
	mu.Unlock()
	r = cpCmd(t, cpTable, "parked", "replay", "proj", "poison", "--timeout", "20s")
	r.want(t, 0, `worker "worker-P", which holds the subscription`)
	if !strings.Contains(r.stdout, `replayed 3 commits of aggregate "poison" of subscription "proj"; it is no longer parked`) {
		t.Errorf("replay printed %q", r.stdout)
	}
	var poison []string
	for _, c := range h.list() {
		if strings.HasPrefix(c, "poison/") {
			poison = append(poison, c)
		}
	}
	if !slices.Equal(poison, []string{"poison/0", "poison/1", "poison/2"}) {
		t.Errorf("the handler got %q of poison", poison)
	}
	// Later commits of poison flow again.
	appendCommits(t, st, "poison/3")
	ddbtest.Eventually(t, 20*time.Second, func() bool { return slices.Contains(h.list(), "poison/3") }, "poison/3 after the replay: %q", h.list())

	// Discard: listed without --yes (exit 4, nothing changed), then done by
	// the worker.
	r = cpCmd(t, cpTable, "parked", "discard", "proj", "junk")
	r.want(t, cli.ExitRefused, "not discarded", `2 parked commits (versions 0–1) of aggregate "junk"`, "--yes")
	if !strings.Contains(r.stdout, "junk") || countParked(t, cps, "proj", "junk") != 2 {
		t.Fatalf("discard without --yes: stdout %q, %d parked", r.stdout, countParked(t, cps, "proj", "junk"))
	}
	r = cpCmd(t, cpTable, "parked", "discard", "proj", "junk", "--yes", "--timeout", "20s")
	r.want(t, 0, `worker "worker-P"`)
	if !strings.Contains(r.stdout, `discarded 2 commits of aggregate "junk"`) || countParked(t, cps, "proj", "junk") != 0 {
		t.Errorf("discard printed %q; %d parked", r.stdout, countParked(t, cps, "proj", "junk"))
	}
	mu.Lock()
	broken["junk"] = false
	mu.Unlock()
	appendCommits(t, st, "junk/2")
	ddbtest.Eventually(t, 20*time.Second, func() bool { return slices.Contains(h.list(), "junk/2") }, "junk/2 after the discard: %q", h.list())
	if slices.Contains(h.list(), "junk/0") || slices.Contains(h.list(), "junk/1") {
		t.Errorf("discarded commits were handled: %q", h.list())
	}
	r = cpCmd(t, cpTable, "parked", "list")
	r.want(t, 0, "nothing parked")
	if r.stdout != "" {
		t.Errorf("parked list with nothing parked printed %q", r.stdout)
	}
}

// TestParkedWithoutWorker: a replay waits for a worker; a discard is done
// at once; refusals and bad input.
func TestParkedWithoutWorker(t *testing.T) {
	t.Parallel()
	cpTable := newCheckpointTable(t)
	cps := openCheckpoints(t, cpTable)
	ctx := t.Context()
	if _, err := cps.Set(ctx, checkpoint.Key{Subscription: "proj"}, "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Set(ctx, checkpoint.Key{Subscription: "other"}, "", false); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	for v := range 3 {
		c := store.Commit{AggregateID: "acc-1", Version: int64(v), CommitID: store.FormatCommitID(at.UnixMilli(), "acc-1"), CommittedAt: at.UnixMilli(), Events: json.RawMessage(`[1]`)}
		if err := cps.Park(ctx, checkpoint.Parked{Subscription: "proj", Commit: c, Reason: "boom", Attempts: 5, ParkedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cps.Park(ctx, checkpoint.Parked{Subscription: "other", Commit: store.Commit{AggregateID: "acc-9", Version: 4, Events: json.RawMessage(`[1]`)}, Reason: "bad"}); err != nil {
		t.Fatal(err)
	}

	r := cpCmd(t, cpTable, "parked", "list")
	r.want(t, 0)
	for _, s := range []string{"other", "acc-9", "proj", "acc-1", "boom", "1h0m ago", "4 parked commits"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("parked list does not print %q:\n%s", s, r.stdout)
		}
	}

	// Replay with no worker: requested, pending until a worker starts.
	r = cpCmd(t, cpTable, "parked", "replay", "proj", "acc-1", "--wait=false")
	r.want(t, 0, `replay of the 3 parked commits (versions 0–2) of aggregate "acc-1" of subscription "proj" requested`, `no worker runs subscription "proj" now`)
	got := parkedList(t, cpTable, "proj")
	if len(got) != 1 || got[0].Request == nil || got[0].Request.Kind != "replay" || got[0].Request.Done {
		t.Fatalf("parked list after the request: %+v", got)
	}
	r = cpCmd(t, cpTable, "parked", "list", "proj")
	r.want(t, 0)
	if l := row(t, r.stdout, "proj  "); !strings.Contains(l, "acc-1") {
		t.Errorf("row %q", l)
	}
	if !strings.Contains(r.stdout, "Requests:") || !strings.Contains(r.stdout, "pending") {
		t.Errorf("parked list does not show the pending request:\n%s", r.stdout)
	}
	cpCmd(t, cpTable, "parked", "replay", "proj", "acc-1", "--timeout", "300ms").
		want(t, 1, "no outcome within 300ms", `the request stays pending and is carried out when a worker runs subscription "proj"`)

	// Discard with no worker: not without --yes, then at once, and the
	// pending replay request goes with it.
	r = cpCmd(t, cpTable, "parked", "discard", "proj", "acc-1")
	r.want(t, cli.ExitRefused, "not discarded", "--yes")
	if countParked(t, cps, "proj", "acc-1") != 3 || len(lines(r.stdout)) != 4 {
		t.Fatalf("discard without --yes: stdout %q", r.stdout)
	}
	r = cpCmd(t, cpTable, "parked", "discard", "proj", "acc-1", "--yes")
	r.want(t, 0, "dropped the pending replay request")
	if !strings.Contains(r.stdout, `discarded the 3 parked commits (versions 0–2) of aggregate "acc-1" of subscription "proj"`) {
		t.Errorf("discard --yes printed %q", r.stdout)
	}
	if n := countParked(t, cps, "proj", ""); n != 0 {
		t.Errorf("%d still parked", n)
	}
	if got := parkedList(t, cpTable, "proj"); len(got) != 0 {
		t.Errorf("after the discard: %+v", got)
	}
	if n := countParked(t, cps, "other", ""); n != 1 {
		t.Errorf("the discard touched another subscription: %d parked there", n)
	}

	// Nothing parked, unknown subscription, bad input.
	cpCmd(t, cpTable, "parked", "replay", "proj", "acc-1").want(t, 1, `nothing parked for aggregate "acc-1" of subscription "proj"`)
	cpCmd(t, cpTable, "parked", "discard", "proj", "acc-2", "--yes").want(t, 1, "nothing parked")
	cpCmd(t, cpTable, "parked", "replay", "porj", "acc-1").want(t, 1, `unknown subscription "porj"`, `known subscriptions: "other", "proj"`)
	cpCmd(t, cpTable, "parked", "list", "porj").want(t, 1, `unknown subscription "porj"`)
	cpCmd(t, cpTable, "parked", "replay", "proj").want(t, 2, "missing AGGREGATE")
	cpCmd(t, cpTable, "parked", "discard").want(t, 2, "missing SUBSCRIPTION and AGGREGATE")
	cpCmd(t, cpTable, "parked", "replay", "proj", "acc-1", "--timeout", "0s").want(t, 2, "--timeout 0s")
	cpCmd(t, cpTable, "parked", "replay", "proj", "acc-1", "--force").want(t, 2, "flag provided but not defined: -force")
	cpCmd(t, cpTable, "parked", "list", "a", "b").want(t, 2, `unexpected argument "b"`)
	cpCmd(t, "noSuchTable", "parked", "list").want(t, 1, "checkpoint table noSuchTable not found")
}

func TestTail(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	st := openStore(t, table)
	commits := appendCommits(t, st, "a/0", "b/0", "a/1", "c/0")
	var all []string
	for _, c := range commits {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(b))
	}
	r := cmd(t, table, "", "tail")
	r.want(t, 0)
	wantLines(t, "tail", r.stdout, all...)
	r = cmd(t, table, "", "tail", "--from", commits[2].CommitID)
	r.want(t, 0)
	wantLines(t, "tail --from the third commit id", r.stdout, all[2:]...)
	r = cmd(t, table, "", "tail", "--from", commits[1].Time().Format(time.RFC3339Nano))
	r.want(t, 0)
	wantLines(t, "tail --from the second commit's time", r.stdout, all[1:]...)
	r = cmd(t, table, "", "tail", "--from", "now")
	r.want(t, 0)
	wantLines(t, "tail --from now", r.stdout)

	cmd(t, table, "", "tail", "--from", "soon").want(t, 2, `--from "soon": want beginning, now`)
	cmd(t, table, "", "tail", "--source", "stream").want(t, 2, "--source stream: only with --follow")
	cmd(t, table, "", "tail", "--follow", "--source", "kafka").want(t, 2, `--source "kafka"`)
	cmd(t, table, "", "tail", "--checkpoint-table", "x").want(t, 2, "flag provided but not defined: -checkpoint-table")
	cmd(t, ddbtest.TableName(t), "", "tail", "--follow").want(t, 1, "not found")
}

// TestTailFollow follows from the beginning and from now, through the index
// and the stream: existing commits, then new ones, until cancelled.
func TestTailFollow(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	st := openStore(t, table)
	old := appendCommits(t, st, "a/0", "b/0")
	for i, tc := range []struct {
		name string
		args []string
		old  bool // prints the commits appended before it started
	}{
		{"index from the beginning", []string{"--from", "beginning"}, true},
		{"index from now", nil, false},
		{"auto from the beginning", []string{"--source", "auto", "--from", "beginning"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stdout, stderr syncBuffer
			done := make(chan int, 1)
			args := append(append([]string{"tail", "--follow"}, tc.args...), on(t, table)...)
			go func() { done <- cli.Run(ctx, args, nil, &stdout, &stderr, nil) }()
			decoded := func() []string {
				var out []string
				for _, c := range decode(t, stdout.String()) {
					out = append(out, fmt.Sprintf("%s/%d", c.AggregateID, c.Version))
				}
				return out
			}
			if tc.old {
				waitFor(t, 20*time.Second, func() bool { return len(decoded()) >= len(old) }, func() string {
					return fmt.Sprintf("tail printed %q; stderr %s", decoded(), stderr.String())
				})
			}
			agg := fmt.Sprintf("new%d", i)
			mine := func() []string {
				var out []string
				for _, c := range decoded() {
					if strings.HasPrefix(c, agg+"/") {
						out = append(out, c)
					}
				}
				return out
			}
			next := 0
			if !tc.old {
				// A tail from now starts at a moment the test does not
				// see: append until it prints one.
				deadline := time.Now().Add(20 * time.Second)
				for len(mine()) == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("tail from now printed nothing of %d commits appended; stderr %s", next, stderr.String())
					}
					appendCommits(t, st, fmt.Sprintf("%s/%d", agg, next))
					next++
					time.Sleep(200 * time.Millisecond)
				}
			}
			appendCommits(t, st, fmt.Sprintf("%s/%d", agg, next), fmt.Sprintf("%s/%d", agg, next+1))
			last := fmt.Sprintf("%s/%d", agg, next+1)
			waitFor(t, 20*time.Second, func() bool { return slices.Contains(decoded(), last) }, func() string {
				return fmt.Sprintf("tail printed %q; stderr %s", decoded(), stderr.String())
			})
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit status %d after cancel; stderr:\n%s", code, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("tail --follow did not stop after cancel")
			}
			got := decoded()
			if tc.old && !slices.Equal(got[:2], []string{"a/0", "b/0"}) {
				t.Errorf("printed %q, want a/0, b/0 first", got)
			}
			if !tc.old && (slices.Contains(got, "a/0") || slices.Contains(got, "b/0")) {
				t.Errorf("tail from now printed older commits: %q", got)
			}
			// Its versions in order with no gap, up to the last appended;
			// all of them from the beginning.
			ours := mine()
			var first int
			if _, err := fmt.Sscanf(strings.TrimPrefix(ours[0], agg+"/"), "%d", &first); err != nil || (tc.old && first != 0) {
				t.Errorf("printed %q of %s first", ours[0], agg)
			}
			for k, c := range ours {
				if want := fmt.Sprintf("%s/%d", agg, first+k); c != want {
					t.Errorf("printed %q of %s: want consecutive versions", ours, agg)
					break
				}
			}
			if ours[len(ours)-1] != last {
				t.Errorf("printed %q of %s: want %s last", ours, agg, last)
			}
			// The printed lines are the commits, as scan prints them.
			for _, c := range decode(t, stdout.String()) {
				if c.CommitID == "" || c.CommittedAt == 0 || len(c.Events) == 0 {
					t.Errorf("printed %+v", c)
				}
			}
		})
	}
}

// TestLocal starts DynamoDB Local with the tables, reaches it at the
// endpoint printed, and stops it with Ctrl-C.
func TestLocal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A port taken (by the tests' emulator) is said at once.
	u, err := url.Parse(ddbtest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, nil, "", "local", "--port", u.Port()).want(t, 1, "port "+u.Port(), "address already in use")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	args := []string{"local", "--port", fmt.Sprint(port), "--create-tables", "--checkpoint-table", "localCheckpoints"}
	go func() {
		done <- cli.Run(ctx, args, nil, &stdout, &stderr, func(k string) string {
			return map[string]string{"EVENTSTORE_TABLE": "localCommits"}[k]
		})
	}()
	var endpoint string
	ddbtest.Eventually(t, 90*time.Second, func() bool {
		for _, l := range lines(stdout.String()) {
			if ep, ok := strings.CutPrefix(l, "export AWS_ENDPOINT_URL_DYNAMODB="); ok {
				endpoint = ep
				return true
			}
		}
		select {
		case code := <-done:
			t.Fatalf("local exited with %d; stderr:\n%s", code, stderr.String())
		default:
		}
		return false
	}, "local printed no endpoint; stderr:\n%s", stderr.String())
	if endpoint != fmt.Sprintf("http://127.0.0.1:%d", port) || !strings.Contains(stdout.String(), "running at "+endpoint) {
		t.Fatalf("endpoint %q; stdout:\n%s", endpoint, stdout.String())
	}
	// The tables are there, as the commands expect them.
	env := map[string]string{"EVENTSTORE_TABLE": "localCommits", "EVENTSTORE_CHECKPOINT_TABLE": "localCheckpoints"}
	flags := []string{"--endpoint", endpoint, "--region", os.Getenv("AWS_REGION")}
	run(t, env, "", append([]string{"table", "describe"}, flags...)...).want(t, 0)
	run(t, env, `{"aggregateId":"a","version":0,"events":[1]}`, append([]string{"append"}, flags...)...).want(t, 0)
	run(t, env, "", append([]string{"checkpoint", "list"}, flags...)...).want(t, 0, "no checkpoints in table localCheckpoints")

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("local exited with %d after Ctrl-C; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("local did not stop after Ctrl-C")
	}
	if !strings.Contains(stderr.String(), "DynamoDB Local stopped") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	r := run(t, env, "", append([]string{"table", "describe"}, flags...)...)
	if r.code != 1 || strings.Contains(r.stderr, "not found") {
		t.Errorf("after the stop, describe: exit %d, stderr %s; want a connection failure", r.code, r.stderr)
	}
}

func TestOpsUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr []string
	}{
		{[]string{"checkpoint"}, 2, []string{"Usage: eventstore checkpoint <command>", "list", "get", "set", "reset"}},
		{[]string{"parked"}, 2, []string{"Usage: eventstore parked <command>", "list", "replay", "discard"}},
		{[]string{"checkpoint", "list", "--nope"}, 2, []string{"checkpoint list: flag provided but not defined: -nope"}},
		{[]string{"checkpoint", "list", "extra"}, 2, []string{`unexpected argument "extra"`}},
		{[]string{"checkpoint", "get"}, 2, []string{"missing SUBSCRIPTION"}},
		{[]string{"checkpoint", "get", "a", "--nope"}, 2, []string{"flag provided but not defined: -nope", "eventstore checkpoint get --help"}},
		{[]string{"parked", "discard", "a", "b", "--yes=maybe"}, 2, []string{"-yes"}},
		{[]string{"tail", "--follow=x"}, 2, []string{"-follow"}},
		{[]string{"tail", "extra"}, 2, []string{`unexpected argument "extra"`}},
		{[]string{"local", "--port", "70000"}, 2, []string{"--port 70000"}},
		{[]string{"local", "--create-tables", "--table", "ab"}, 2, []string{`"ab"`, "3 to 255"}},
		{[]string{"local", "--nope"}, 2, []string{"local: flag provided but not defined: -nope"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, nil, "", tc.args...)
			r.want(t, tc.code, tc.stderr...)
		})
	}
	// Help of every command, with the flags they take.
	for _, tc := range []struct {
		cmd  []string
		has  []string
		hasn []string
	}{
		{[]string{"checkpoint", "list"}, []string{"--checkpoint-table NAME", `(default "eventstoreCheckpoints")`, "--table NAME", "--json", "--subscription NAME", "LAG"}, nil},
		{[]string{"checkpoint", "get"}, []string{"Usage: eventstore checkpoint get SUBSCRIPTION", "--unit UNIT", "--table NAME"}, nil},
		{[]string{"checkpoint", "set"}, []string{"--to", "--force", "--create", "fenced", "Exit status", "4 refused"}, []string{"--table NAME"}},
		{[]string{"checkpoint", "reset"}, []string{"--force", "--endpoint URL", "--region REGION"}, []string{"--buckets"}},
		{[]string{"parked", "list"}, []string{"--aggregate ID", "--json"}, []string{"--table NAME"}},
		{[]string{"parked", "replay"}, []string{"--wait", "(default true)", "--timeout DURATION", "(default 1m0s)"}, nil},
		{[]string{"parked", "discard"}, []string{"--yes", "4 not confirmed"}, nil},
		{[]string{"tail"}, []string{"--from POINT", "--follow", "--source SOURCE", `(default "index")`, "--table NAME", "Order:"}, []string{"--checkpoint-table"}},
		{[]string{"local"}, []string{"--port PORT", "--create-tables", "--checkpoint-table NAME", "export AWS_ENDPOINT_URL_DYNAMODB"}, []string{"--endpoint"}},
	} {
		r := run(t, map[string]string{"EVENTSTORE_CHECKPOINT_TABLE": ""}, "", append(tc.cmd, "--help")...)
		r.want(t, 0)
		name := strings.Join(tc.cmd, " ")
		for _, s := range tc.has {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%s --help does not contain %q:\n%s", name, s, r.stdout)
			}
		}
		for _, s := range tc.hasn {
			if strings.Contains(r.stdout, s) {
				t.Errorf("%s --help contains %q:\n%s", name, s, r.stdout)
			}
		}
	}
	r := run(t, map[string]string{"EVENTSTORE_CHECKPOINT_TABLE": "fromEnv"}, "", "parked", "list", "--help")
	r.want(t, 0)
	if !strings.Contains(r.stdout, `(default "fromEnv")`) {
		t.Errorf("parked list --help with EVENTSTORE_CHECKPOINT_TABLE:\n%s", r.stdout)
	}
	r = run(t, nil, "", "--help")
	if !strings.Contains(r.stdout, "4 refused") {
		t.Errorf("eventstore --help does not document exit status 4:\n%s", r.stdout)
	}
}

// waitFor calls cond every 20 ms until it returns true, and fails the test
// with the message msg returns, evaluated then, after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScanFromIsTailFrom: scan --from-commit-id accepts and refuses what
// tail --from does, and means the same by it.
func TestScanFromIsTailFrom(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	st := openStore(t, table)
	commits := appendCommits(t, st, "a/0", "b/0", "a/1", "c/0")
	second := commits[1].Time()
	for _, point := range []string{
		"", "beginning", "now", "NOW",
		commits[2].CommitID,
		commits[2].CommitID[:17],
		second.Format(time.RFC3339Nano),
		second.Add(-time.Hour).Format(time.RFC3339),
		second.Add(24 * time.Hour).Format(time.RFC3339),
		"99991231235959999",
		// Refused by both.
		"garbage", "garbage:agg", "20240101", "9", "2026-13-01T00:00:00Z", "2026-12-07 23:25:00",
	} {
		tail := cmd(t, table, "", "tail", "--from", point)
		scan := cmd(t, table, "", "scan", "--from-commit-id", point)
		if tail.code != scan.code || tail.stdout != scan.stdout {
			t.Errorf("from %q: tail exits %d with %d lines, scan exits %d with %d lines\ntail stderr %s\nscan stderr %s",
				point, tail.code, len(lines(tail.stdout)), scan.code, len(lines(scan.stdout)), tail.stderr, scan.stderr)
		}
		if tail.code == 2 && !strings.Contains(scan.stderr, `--from-commit-id "`+point+`": want beginning, now, a commit id`) {
			t.Errorf("from %q: scan says %q, want it to name --from-commit-id and the forms", point, scan.stderr)
		}
	}
	// The refusals are refusals, and the time means the first commit at or
	// after it, as for tail.
	cmd(t, table, "", "scan", "--from-commit-id", "garbage").want(t, 2, `--from-commit-id "garbage"`)
	r := cmd(t, table, "", "scan", "--from-commit-id", second.Format(time.RFC3339Nano))
	r.want(t, 0)
	if got := decode(t, r.stdout); len(got) != 3 || got[0].AggregateID != "b" {
		t.Errorf("scan from the second commit's time: %+v, want the last 3 commits", got)
	}
}
