package subscribe

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
)

// memberHazards is one worker's view of a shared checkpoint store that can
// hold its balance rounds' listings, or its membership renewals, until told.
type memberHazards struct {
	*memcheckpoint.Mem
	holdLists, holdRenewals atomic.Bool
	listsHeld               atomic.Int64 // listings waiting now
	renewals                atomic.Int64 // membership renewals made
}

func (h *memberHazards) List(ctx context.Context, sub string) iter.Seq2[checkpoint.Checkpoint, error] {
	return func(yield func(checkpoint.Checkpoint, error) bool) {
		if h.holdLists.Load() {
			h.listsHeld.Add(1)
			for h.holdLists.Load() && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			h.listsHeld.Add(-1)
		}
		for cp, err := range h.Mem.List(ctx, sub) {
			if !yield(cp, err) {
				return
			}
		}
	}
}

func (h *memberHazards) Renew(ctx context.Context, cp checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if IsMemberUnit(cp.Unit) {
		for h.holdRenewals.Load() && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		h.renewals.Add(1)
	}
	return h.Mem.Renew(ctx, cp, d)
}

// member loads owner's membership record of the subscription "shared".
func (e *leaseEnv) member(owner string) (checkpoint.Checkpoint, error) {
	return e.mem.Load(context.Background(), checkpoint.Key{Subscription: "shared", Unit: memberUnit(owner)})
}

// TestMembershipRenewedWhileABalanceRoundIsSlow: a balance round that
// outlasts RenewEvery (a slow listing, as under load) does not stop the
// worker's membership renewals, so its record does not expire for others
// to delete; rounds that do not get through for a lease Duration (hung)
// do stop them, and the record expires, as a dead worker's would.
func TestMembershipRenewedWhileABalanceRoundIsSlow(t *testing.T) {
	e := newLeaseEnv(t, 60, 6, 6, LeaseOptions{Duration: 2 * time.Second, RenewEvery: 100 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	e.allow.Store(int64(len(e.m.commits)))
	h := &memberHazards{Mem: e.mem}
	w1 := e.start("w1", func(c *Config, _ *Subscription) { c.Checkpoints = h })
	memWaitFor(t, func() bool { return e.balanced(6, w1) }, "w1 did not take the six units")

	h.holdLists.Store(true)
	memWaitFor(t, func() bool { return h.listsHeld.Load() > 0 }, "no balance round under way")
	before := h.renewals.Load()
	memWaitFor(t, func() bool { return h.renewals.Load() >= before+3 }, "the membership is not renewed while a balance round is under way")
	if cp, err := e.member("w1"); err != nil || !cp.Live(time.Now()) {
		t.Fatalf("membership during a slow round: %s, %v; want it live", cpString(cp), err)
	}
	// Held for good: after a lease Duration without a round, no renewal.
	memWaitFor(t, func() bool {
		cp, err := e.member("w1")
		return err == nil && !cp.Live(time.Now())
	}, "the membership of a worker whose rounds hang did not expire")

	h.holdLists.Store(false)
	memWaitFor(t, func() bool {
		cp, err := e.member("w1")
		return err == nil && cp.Live(time.Now())
	}, "the membership was not renewed once the rounds got through again")
	e.waitHandled(len(e.m.commits), "not every commit was handled")
	if err := w1.stop(); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.violations) > 0 {
		t.Fatalf("order violations %v", e.rec.violations)
	}
}

// TestMemberRecordDeletedWhileLiveIsHarmless: w2's membership renewals are
// delayed past its record's expiry, and w1 deletes the record as a gone
// worker's. Units are leased apart from the record: w2 keeps its three
// units, no unit changes hands or is held twice, none is left free; and at
// its next renewal w2 takes its record again.
func TestMemberRecordDeletedWhileLiveIsHarmless(t *testing.T) {
	e := newLeaseEnv(t, 600, 6, 6, LeaseOptions{Duration: time.Second, RenewEvery: 100 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	e.allow.Store(int64(len(e.m.commits)))
	logs := &logLines{t: t}
	w1 := e.start("w1", func(c *Config, s *Subscription) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("worker", "w1")
		s.Handler = slowly(s.Handler)
	})
	h := &memberHazards{Mem: e.mem}
	w2 := e.start("w2", func(c *Config, s *Subscription) {
		c.Checkpoints = h
		c.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("worker", "w2")
		s.Handler = slowly(s.Handler)
	})
	memWaitFor(t, func() bool { return e.balanced(3, w1, w2) }, "the units were not shared three and three")
	gains := w1.log.gains() + w2.log.gains()
	losses := len(w1.log.losses()) + len(w2.log.losses())
	h.holdRenewals.Store(true)
	memWaitFor(t, func() bool {
		_, err := e.member("w2")
		return errors.Is(err, checkpoint.ErrNotFound)
	}, "w1 did not delete w2's expired membership")
	if !e.balanced(3, w1, w2) {
		l, _ := e.layout(w1, w2)
		t.Fatalf("with w2's membership deleted the units moved: %v", l)
	}
	h.holdRenewals.Store(false)
	memWaitFor(t, func() bool {
		cp, err := e.member("w2")
		return err == nil && cp.Owner == "w2" && cp.Live(time.Now())
	}, "w2 did not take its membership again")
	memWaitFor(t, func() bool { return e.balanced(3, w1, w2) }, "the units are not shared three and three")
	if n := w1.log.gains() + w2.log.gains(); n != gains {
		t.Errorf("%d leases gained after the shares settled; want none", n-gains)
	}
	if n := len(w1.log.losses()) + len(w2.log.losses()); n != losses {
		t.Errorf("%d leases lost after the shares settled; want none: %v %v", n-losses, w1.log.losses(), w2.log.losses())
	}
	e.waitHandled(len(e.m.commits), "not every commit was handled")
	for _, lw := range []*leaseWorker{w1, w2} {
		if err := lw.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.rec.violations) > 0 {
		t.Fatalf("order violations %v", e.rec.violations)
	}
	// A lease lost while the units were first shared (w2 stealing a unit
	// w1 was still handling) redelivers what w1 handled since its last
	// save, as at-least-once allows; with none lost, nothing comes twice.
	switch {
	case losses == 0 && e.rec.duplicates != 0:
		t.Fatalf("%d duplicates with no lease lost", e.rec.duplicates)
	case e.rec.duplicates > len(e.m.commits)/6:
		t.Fatalf("%d duplicates, more than one unit's %d commits", e.rec.duplicates, len(e.m.commits)/6)
	}
}
