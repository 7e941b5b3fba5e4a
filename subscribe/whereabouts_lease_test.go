package subscribe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestLocateAfterARealHandOver: two leased workers run a stream
// subscription, which hands over to its two shards. From then on, as
// commits come, its own checkpoint keeps the hand-over's position, whose
// lag grows, while Locate finds the two shard units of the hand-over's
// epoch, whose lag stays that of the commits just delivered.
func TestLocateAfterARealHandOver(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...) // history: read through the index
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	var logs syncBuffer
	e.startLeasedWith(t, "w1", opts, e.cps, &logs)
	e.startLeasedWith(t, "w2", opts, e.cps, &logs)
	epoch := e.waitSplit(t, 0)
	// The logs tell the hand-over's start, then its end.
	started := strings.Index(logs.String(), "the stream is positioned; it takes over once the index has handled every commit up to the hand-over time")
	done := strings.Index(logs.String(), "the stream took over; once the index's commits are handled, its shards are leased one by one")
	if started < 0 || done < started || !strings.Contains(logs.String()[started:], " in=") {
		t.Errorf("the hand-over's start (at %d, with its expected duration) and end (at %d) are not logged in order:\n%s", started, done, logs.String())
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 2 }, "the shards were not taken")

	const margin = 500 * time.Millisecond // the subscription's StreamOptions.Margin
	var last string
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		if !covers(e.rec.delivered(), e.want) {
			return false
		}
		ctx := context.Background()
		head, ok, err := e.s.Head(ctx)
		if err != nil || !ok {
			t.Fatalf("head: %v %v", ok, err)
		}
		headAt, err := store.ParseCommitIDTime(head.CommitID)
		if err != nil {
			t.Fatal(err)
		}
		var cps []checkpoint.Checkpoint
		for cp, err := range e.cps.List(ctx, fakeSub) {
			if err != nil {
				t.Fatal(err)
			}
			cps = append(cps, cp)
		}
		byUnit := map[string]checkpoint.Checkpoint{}
		for _, cp := range cps {
			byUnit[cp.Unit] = cp
		}
		lagOf := func(unit string) (time.Duration, bool, bool) {
			info, err := DescribeCheckpoint(byUnit[unit].Position, margin)
			if err != nil {
				t.Fatal(err)
			}
			return info.Behind(head, headAt)
		}
		w := Locate(cps, time.Now())
		wholeLag, _, _ := lagOf("")
		lag, _, known := w.Lag(lagOf)
		last = fmt.Sprintf("%+v: lag %v (known %v), the hand-over's %v", w, lag, known, wholeLag)
		if w.InShards && w.Epoch == epoch && slices.Equal(w.Units, []string{"shard-s1", "shard-s2"}) && known && wholeLag > lag+2*time.Second {
			return true
		}
		// More commits, on both shards.
		e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
		e.f.put(e.arn, "s2", e.appendNext(t, 1, "b")...)
		return false
	}, "the subscription's lag is not its shards': %v", lazy(func() string { return last }))
	e.waitDelivered(t, 10*time.Second)
}
