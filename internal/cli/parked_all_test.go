package cli_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// TestParkedAllWithWorker parks three aggregates with a failing handler in
// a real worker, then: discard --all without --yes is refused and changes
// nothing; replay --all while the handler still fails for one reports that
// one and replays the others in order; discard --all --yes drops the rest,
// through the worker's requests.
func TestParkedAllWithWorker(t *testing.T) {
	t.Parallel()
	table, cpTable := newTable(t), newCheckpointTable(t)
	st, cps := openStore(t, table), openCheckpoints(t, cpTable)
	var mu sync.Mutex
	broken := map[string]bool{"a": true, "b": true, "c": true}
	h := &seen{fail: func(c store.Commit) error {
		mu.Lock()
		defer mu.Unlock()
		if broken[c.AggregateID] {
			return fmt.Errorf("cannot handle %s/%d", c.AggregateID, c.Version)
		}
		return nil
	}}
	appendCommits(t, st, "a/0", "b/0", "ok/0", "a/1", "c/0", "b/1", "a/2")
	startWorker(t, st, cps, "worker-A", subscribe.Subscription{Name: "proj", Handler: h})
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		return countParked(t, cps, "proj", "") == 6 && slices.Contains(h.list(), "ok/0")
	}, "parking: handled %q", h.list())

	r := cpCmd(t, cpTable, "parked", "discard", "proj", "--all")
	r.want(t, cli.ExitRefused, "not discarded: would discard the 6 parked commits of 3 aggregates of subscription \"proj\"", "--all --yes")
	for _, s := range []string{"a ", "b ", "c "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("discard --all without --yes does not list %q:\n%s", s, r.stdout)
		}
	}
	if n := countParked(t, cps, "proj", ""); n != 6 {
		t.Fatalf("discard --all without --yes left %d parked; want the 6", n)
	}

	mu.Lock()
	broken["a"], broken["b"] = false, false
	mu.Unlock()
	r = cpCmd(t, cpTable, "parked", "replay", "proj", "--all", "--timeout", "30s")
	r.want(t, 1, `replay of 1 of the 3 aggregates of subscription "proj" did not succeed`, `"c": failed after 0`, "cannot handle c/0")
	if !strings.Contains(r.stdout, `replayed 5 commits of 2 of the 3 aggregates of subscription "proj"; 1 commit is parked now`) {
		t.Errorf("replay --all printed %q", r.stdout)
	}
	var ab []string
	for _, c := range h.list() {
		if strings.HasPrefix(c, "a/") || strings.HasPrefix(c, "b/") {
			ab = append(ab, c)
		}
	}
	slices.SortStableFunc(ab, func(x, y string) int { return strings.Compare(x[:1], y[:1]) })
	if !slices.Equal(ab, []string{"a/0", "a/1", "a/2", "b/0", "b/1"}) {
		t.Errorf("the handler got %q of a and b; want each in order", ab)
	}

	r = cpCmd(t, cpTable, "parked", "discard", "proj", "--all", "--yes", "--timeout", "30s")
	r.want(t, 0, `worker "worker-A"`)
	if !strings.Contains(r.stdout, `discarded 1 commit of 1 of the 1 aggregate of subscription "proj"; 0 commits are parked now`) {
		t.Errorf("discard --all --yes printed %q", r.stdout)
	}
	if slices.Contains(h.list(), "c/0") {
		t.Errorf("a discarded commit was handled: %q", h.list())
	}
	cpCmd(t, cpTable, "parked", "replay", "proj", "--all").want(t, 1, `nothing parked for subscription "proj"`)
}

// TestParkedAllWithoutWorker: with no worker, discard --all --yes removes
// every parked commit of the subscription at once and no other's;
// replay --all only requests; usage errors.
func TestParkedAllWithoutWorker(t *testing.T) {
	t.Parallel()
	cpTable := newCheckpointTable(t)
	cps := openCheckpoints(t, cpTable)
	ctx := t.Context()
	for _, sub := range []string{"proj", "other"} {
		if _, err := cps.Set(ctx, checkpoint.Key{Subscription: sub}, "", false); err != nil {
			t.Fatal(err)
		}
	}
	park := func(sub, agg string, v int64) {
		c := store.Commit{AggregateID: agg, Version: v, Events: json.RawMessage(`[1]`)}
		if err := cps.Park(ctx, checkpoint.Parked{Subscription: sub, Commit: c, Reason: "boom", Attempts: 1, ParkedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	park("proj", "x", 0)
	park("proj", "x", 1)
	park("proj", "y", 4)
	park("other", "z", 0)

	cpCmd(t, cpTable, "parked", "replay", "proj", "--all", "--wait=false").
		want(t, 0, `replay of the 3 parked commits of 2 aggregates of subscription "proj" requested`, `no worker runs subscription "proj" now`)
	if n := len(parkedList(t, cpTable, "proj")); n != 2 {
		t.Errorf("parked list after replay --all --wait=false: %d aggregates; want 2, with their requests", n)
	}
	cpCmd(t, cpTable, "parked", "replay", "proj", "--all", "--timeout", "300ms").
		want(t, 1, "2 requests have no outcome within 300ms", "pending")

	r := cpCmd(t, cpTable, "parked", "discard", "proj", "--all", "--yes")
	r.want(t, 0)
	if !strings.Contains(r.stdout, `discarded the 3 parked commits of 2 aggregates of subscription "proj"; it has nothing parked any more`) {
		t.Errorf("discard --all --yes printed %q", r.stdout)
	}
	if n := countParked(t, cps, "proj", ""); n != 0 {
		t.Errorf("%d still parked in proj", n)
	}
	if n := countParked(t, cps, "other", ""); n != 1 {
		t.Errorf("discard --all of proj touched other: %d parked there, want 1", n)
	}
	if got := parkedList(t, cpTable, "proj"); len(got) != 0 {
		t.Errorf("pending requests left after the discard: %+v", got)
	}

	cpCmd(t, cpTable, "parked", "discard", "proj", "--all", "--yes").want(t, 1, `nothing parked for subscription "proj"`)
	cpCmd(t, cpTable, "parked", "discard", "proj", "x", "--all", "--yes").want(t, 2, `--all and AGGREGATE "x": give one or the other`)
	cpCmd(t, cpTable, "parked", "replay", "--all").want(t, 2, "missing SUBSCRIPTION")
	cpCmd(t, cpTable, "parked", "replay", "proj", "--all", "--timeout", "0s").want(t, 2, "--timeout 0s")
}
