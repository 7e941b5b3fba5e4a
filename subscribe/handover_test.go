package subscribe

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestUnitEndedTakesWhatFollowsAtOnce: a unit that ends by itself asks for
// a balance round at once, so that what runs next does not wait for the
// next scheduled one. With BalanceEvery an hour, the worker's only
// scheduled round is its first, which takes unit "": the stream's shard
// units after the first hand-over (an idle one: the first commits come
// after it), and a finished shard's child, are taken only through the
// rounds their predecessors' ends ask for. Nothing is lost or delivered
// twice, in per-aggregate order.
func TestUnitEndedTakesWhatFollowsAtOnce(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: time.Hour}
	w := e.startLeased(t, "w1", opts)
	e.waitShardUnits(t, w, e.waitSplit(t, 0))
	w.log.mu.Lock()
	gained := slices.Clone(w.log.gained)
	w.log.mu.Unlock()
	if len(gained) != 3 || gained[0] != "" || !slices.Contains(gained, shardUnit("s1")) || !slices.Contains(gained, shardUnit("s2")) {
		t.Fatalf("leases gained %q; want unit \"\" and then both shard units", gained)
	}
	e.f.put(e.arn, "s1", e.appendNext(t, 1, "a", "b")...)
	e.f.put(e.arn, "s2", e.appendNext(t, 2, "c")...)
	e.waitDelivered(t, 10*time.Second)

	// s1 splits: its unit reads it to its end, and its child is taken.
	e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
	e.f.split(e.arn, "s1", "s1a")
	e.f.put(e.arn, "s1a", e.appendNext(t, 2, "a", "b")...)
	e.waitDelivered(t, 10*time.Second)
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		run := runningShards(w)
		_, s1 := run["s1"]
		return len(run["s1a"]) == 1 && len(run["s2"]) == 1 && !s1
	}, "s1a was not taken after s1 was read to its end: running %v", lazy(func() string { return fmt.Sprint(runningShards(w)) }))
	if err := w.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	e.check(t)
	if v := e.f.lineageViolations(); len(v) > 0 {
		t.Fatalf("children read before their parents: %v", v)
	}
}

// waitShardUnits waits until w runs the units of shards s1 and s2, taken
// after the hand-over of epoch.
func (e *fakeEnv) waitShardUnits(t *testing.T, w *shardWorker, epoch int64) {
	t.Helper()
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		run := runningShards(w)
		return len(run["s1"]) == 1 && len(run["s2"]) == 1
	}, "the shard units were not taken after the hand-over: running %v, leases %v",
		lazy(func() string { return fmt.Sprint(runningShards(w)) }), lazy(func() string { return fmt.Sprint(e.shardOwners(t, epoch)) }))
}

// restartAfterHistory appends history to an aggregate, waits age, runs the
// stream up to its hand-over (no record is read), and restarts it from
// the hand-over's checkpoint; then the aggregate's next version, and
// another aggregate's first, come from the stream. Every commit is
// delivered once, in per-aggregate order.
func restartAfterHistory(t *testing.T, age time.Duration) {
	e := newFakeEnv(t, "shard-0")
	e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a", "b")...) // history, from the index
	time.Sleep(age)
	stop := e.start(t)
	e.waitStream(t, e.arn)
	e.waitDelivered(t, 5*time.Second)
	mustStop(t, stop) // no record read since the hand-over
	stop = e.start(t)
	e.waitStream(t, e.arn)
	e.f.put(e.arn, "shard-0", e.appendNext(t, 1, "a", "c")...)
	e.waitDelivered(t, 5*time.Second)
	mustStop(t, stop)
	e.check(t)
}

// TestHandOverKnowsRecentHistory: commits the index handled within Margin
// before the hand-over are known to the stream's checkpoint, so that the
// aggregate's next version, read from the stream, does not have them
// repaired, and delivered, again: after a restart from the stream's
// checkpoint, and in the shard units the hand-over's checkpoint starts.
// The history is appended just before the start, so that it lies within
// Margin of the hand-over.
func TestHandOverKnowsRecentHistory(t *testing.T) {
	t.Run("restart", func(t *testing.T) {
		restartAfterHistory(t, 250*time.Millisecond) // settled, within Margin of the hand-over
	})
	t.Run("leased", func(t *testing.T) {
		e := newFakeEnv(t, "s1", "s2")
		e.f.put(e.arn, "s1", e.appendNext(t, 2, "a", "b")...) // history, from the index
		time.Sleep(250 * time.Millisecond)                    // settled, within Margin of the hand-over
		w := e.startLeased(t, "w1", LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond})
		e.waitShardUnits(t, w, e.waitSplit(t, 0))
		e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
		e.f.put(e.arn, "s2", e.appendNext(t, 1, "b", "c")...)
		e.waitDelivered(t, 10*time.Second)
		if err := w.stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		e.check(t)
	})
}

// TestTrackerKeepsMarksPastTheSweep: an index tracker with keep set forgets
// an aggregate's progress only once keep's position has passed it, though
// its checkpoint no longer lists it once the sweep has: the stream taking
// over learns the aggregates handled within its Margin, which an index
// whose Settle and Overlap are shorter than the Margin has swept past.
func TestTrackerKeepsMarksPastTheSweep(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Commit{AggregateID: "a", Version: 3, CommittedAt: at.UnixMilli(), CommitID: store.FormatCommitID(at.UnixMilli(), "a")}
	for _, tc := range []struct {
		name string
		keep func() store.Position
		want bool
	}{
		{"no_keep", nil, false},
		{"keep_before", func() store.Position { return timeFloor(at.Add(-time.Millisecond)) }, true},
		{"keep_past", func() store.Position { return timeFloor(at.Add(time.Second)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(store.Position{}, store.Position{}, nil)
			tr.keep = tc.keep
			tr.emitted(c)
			tr.handled(c)
			tr.advance(c.Position())
			tr.swept(timeFloor(at.Add(time.Second)))
			if cp := tr.checkpoint(); len(cp.Aggregates) != 0 {
				t.Fatalf("checkpoint lists %v, swept past", cp.Aggregates)
			}
			m, ok := tr.marksAfter(timeFloor(at.Add(-time.Second)))["a"]
			if ok != tc.want || ok && (m.next != 4 || m.last != c.Position()) {
				t.Fatalf("marksAfter has a: %v (%+v), want %v with next 4", ok, m, tc.want)
			}
		})
	}
}
