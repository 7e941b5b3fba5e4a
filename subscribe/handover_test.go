package subscribe

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
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
	epoch := e.waitSplit(t, 0)

	ddbtest.Eventually(t, 10*time.Second, func() bool {
		run := runningShards(w)
		return len(run["s1"]) == 1 && len(run["s2"]) == 1
	}, "the shard units were not taken after the hand-over: running %v, leases %v",
		lazy(func() string { return fmt.Sprint(runningShards(w)) }), lazy(func() string { return fmt.Sprint(e.shardOwners(t, epoch)) }))
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
