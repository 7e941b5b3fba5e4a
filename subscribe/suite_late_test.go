package subscribe

import (
	"context"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The late-arrival cases of the source suite (DESIGN.md §4.1 and §4.2). A
// commit "arrives late" when the source sees it after commits that sort
// later: a writer's clock behind the others', an index that shows an item
// late, a stream that yields records out of order. The cases inject it
// with skewed writer clocks, and with the harness's hide and reveal.

// testSkewedClocks: writers whose clocks lag by up to the settle time write
// commit ids in the past; with no re-reads, the settle time alone must
// hold the source back long enough that none is passed over: every commit
// comes, in order, none late. (One aggregate's versions are out of commit
// id order here, so a source that reads in commit id order repairs some:
// that is not a late arrival.)
func testSkewedClocks(t *testing.T, h sourceHarness) {
	tn := tuning{settle: 400 * time.Millisecond, reread: -1}
	e := newSuiteEnv(t, h, store.Config{})
	writersFor := func(skew time.Duration) *store.Store {
		cfg := e.s.Config()
		cfg.Clock = func() time.Time { return time.Now().Add(-skew) }
		s, err := store.New(ddbtest.Client(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	skewed := []*store.Store{writersFor(0), writersFor(tn.settle / 2), writersFor(tn.settle * 9 / 10)}
	cnt := &counters{}
	rec := newRecorder()
	_, stop := e.start(t, Subscription{Name: "skew", Handler: rec}, tn, cnt)
	want := map[string]int64{}
	ctx := context.Background()
	for i := range 150 {
		id := []string{"a", "b", "c", "d", "e"}[i%5]
		// Round-robin over the skewed writers, so each aggregate's commit
		// ids jump back and forth by up to 0.9 × settle.
		if _, err := skewed[i%3].Append(ctx, store.Commit{AggregateID: id, Version: want[id], Events: deposit(t)}); err != nil {
			t.Fatal(err)
		}
		want[id]++
	}
	ddbtest.Eventually(t, 20*time.Second, func() bool { return covers(rec.delivered(), want) }, "not all delivered")
	mustStop(t, stop)
	rec.check(t, want)
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates", rec.duplicates)
	}
	if n := cnt.late.Load(); n != 0 {
		t.Fatalf("%d late arrivals; the settle time should have covered the skew", n)
	}
}

// testHiddenWithinReread hides a commit until the source has moved well
// past it (beyond the settle time), then reveals it within the re-read
// window: it is delivered, late (and counted, by a source that counts).
func testHiddenWithinReread(t *testing.T, h sourceHarness) {
	e := newWithholdingEnv(t, h)
	cnt := &counters{}
	rec := newRecorder()
	_, stop := e.start(t, Subscription{Name: "late", Handler: rec}, tuning{reread: 3 * time.Second}, cnt)
	ctx := context.Background()
	late, err := e.s.Append(ctx, store.Commit{AggregateID: "late", Version: 0, Events: deposit(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.hide(late.Position())
	appendVersions(t, e.s, []string{"other"}, 0, 5)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["other"] == 5 }, "later commits not delivered")
	if rec.delivered()["late"] != 0 {
		t.Fatal("a hidden commit was delivered")
	}
	e.reveal(late.Position()) // visible now, well after the source passed it
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["late"] == 1 }, "the late commit was never delivered")
	mustStop(t, stop)
	if h.countsLate && cnt.late.Load() != 1 {
		t.Fatalf("late arrivals counted: %d, want 1", cnt.late.Load())
	}
	// Re-reading on purpose (the index's sweep) is not duplication: the
	// metric of duplicates must show only commits that really came twice.
	// (A stream record that comes after its commit was repaired from the
	// table is one.)
	if n := cnt.dups.Load(); h.countsLate && n != 0 {
		t.Fatalf("%d duplicates reported, none was delivered twice", n)
	}
	rec.check(t, map[string]int64{"late": 1, "other": 5})
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates", rec.duplicates)
	}
}

// testHiddenBeyondReread hides a commit for good (with no re-reads, or
// beyond them: the source cannot see it). When its aggregate gets a later
// commit, the gap is repaired from the table, in order. Until then it is
// not delivered: the one case no source can detect.
func testHiddenBeyondReread(t *testing.T, h sourceHarness) {
	e := newWithholdingEnv(t, h)
	cnt := &counters{}
	rec := newRecorder()
	_, stop := e.start(t, Subscription{Name: "repair", Handler: rec}, tuning{reread: -1}, cnt)
	ctx := context.Background()
	appendVersions(t, e.s, []string{"acc"}, 0, 1)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["acc"] == 1 }, "version 0 not delivered")
	lost, err := e.s.Append(ctx, store.Commit{AggregateID: "acc", Version: 1, Events: deposit(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.hide(lost.Position())
	appendVersions(t, e.s, []string{"x"}, 0, 1)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["x"] == 1 }, "x not delivered")
	if rec.delivered()["acc"] != 1 {
		t.Fatal("the hidden version was delivered without its successor")
	}
	appendVersions(t, e.s, []string{"acc"}, 2, 3)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["acc"] == 3 }, "the gap was not repaired")
	mustStop(t, stop)
	rec.check(t, map[string]int64{"acc": 3, "x": 1})
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates", rec.duplicates)
	}
	if cnt.repaired.Load() != 1 {
		t.Fatalf("repairs counted: %d, want 1", cnt.repaired.Load())
	}
}

// testHiddenAcrossRestart hides two commits (a later version of a known
// aggregate, and the first of a new one) until the worker has passed them,
// delivering later commits, and has stopped cleanly, saving its
// checkpoint. They are revealed, within the re-read window, and a new
// worker starts from the checkpoint: it delivers them, late, and nothing
// the first one delivered.
func testHiddenAcrossRestart(t *testing.T, h sourceHarness) {
	e := newWithholdingEnv(t, h)
	tn := tuning{reread: 3 * time.Second}
	rec := newRecorder()
	cnt1 := &counters{}
	sub := Subscription{Name: "restart-late", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
	_, stop := e.start(t, sub, tn, cnt1)
	ctx := context.Background()
	appendVersions(t, e.s, []string{"acc"}, 0, 1)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["acc"] == 1 }, "version 0 not delivered")
	var hidden []store.Position
	for _, c := range []store.Commit{{AggregateID: "acc", Version: 1}, {AggregateID: "new", Version: 0}} {
		c.Events = deposit(t)
		got, err := e.s.Append(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		e.hide(got.Position())
		hidden = append(hidden, got.Position())
	}
	others := appendVersions(t, e.s, []string{"other"}, 0, 5)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["other"] == 5 }, "later commits not delivered")
	mustStop(t, stop)
	if d := rec.delivered(); d["acc"] != 1 || d["new"] != 0 {
		t.Fatalf("hidden commits delivered: %v", d)
	}
	loadPosition(t, e.cfg.Checkpoints, sub.Name)
	for _, p := range hidden {
		e.reveal(p)
	}

	cnt2 := &counters{}
	_, stop = e.start(t, sub, tn, cnt2)
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		d := rec.delivered()
		return d["acc"] == 2 && d["new"] == 1
	}, "the commits revealed after the restart were never delivered")
	tn.waitQuiet(others[len(others)-1])
	mustStop(t, stop)
	rec.check(t, map[string]int64{"acc": 2, "new": 1, "other": 5})
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates after a clean stop", rec.duplicates)
	}
	if h.countsLate && (cnt1.late.Load() != 0 || cnt2.late.Load() != 2) {
		t.Fatalf("late arrivals counted: %d before the restart, %d after; want 0 and 2", cnt1.late.Load(), cnt2.late.Load())
	}
}
