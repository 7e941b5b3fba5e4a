package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// The tests of checkpoint.Deleter, an optional ability of the Store:
// skipped when it lacks it, or lacks checkpoint.Leaser, which they use to
// hold keys. Run stops the stores' clock at leaseEpoch before each, as for
// the lease tests.

type deleteEnv struct {
	leaseEnv
	d checkpoint.Deleter
}

var deleteTests = []struct {
	name string
	fn   func(t *testing.T, env deleteEnv)
}{
	{"DeleteReleased", testDeleteReleased},
	{"DeleteStale", testDeleteStale},
	{"DeleteHeld", testDeleteHeld},
	{"DeleteExpired", testDeleteExpired},
	{"DeleteMissing", testDeleteMissing},
	{"DeleteInvalidInput", testDeleteInvalidInput},
	{"DeleteCancelledContext", testDeleteCancelledContext},
	{"DeleteRacesTake", testDeleteRacesTake},
}

// ---- helpers

func (e deleteEnv) delete(t *testing.T, cp checkpoint.Checkpoint) {
	t.Helper()
	if err := e.d.Delete(t.Context(), cp); err != nil {
		t.Fatalf("Delete(%s at lease %d): %v", cp.Key, cp.Lease, err)
	}
}

// wantGone fails unless key has no checkpoint: Load returns ErrNotFound and
// List (when the store has it) does not yield it.
func (e deleteEnv) wantGone(t *testing.T, what string, key checkpoint.Key) {
	t.Helper()
	if cp, err := e.s.Load(t.Context(), key); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("%s: Load(%s) = %s, %v, want ErrNotFound", what, key, leaseString(cp), err)
	}
	if l, ok := e.s.(checkpoint.Lister); ok {
		for _, sub := range []string{key.Subscription, ""} {
			for _, cp := range collect(t, fmt.Sprintf("List(%q)", sub), l.List(t.Context(), sub)) {
				if cp.Key == key {
					t.Fatalf("%s: List(%q) yields %s", what, sub, leaseString(cp))
				}
			}
		}
	}
}

// wantHeldBy fails unless err is a *HeldError naming key, owner and
// expires.
func wantHeldBy(t *testing.T, err error, key checkpoint.Key, owner string, expires time.Time) {
	t.Helper()
	var he *checkpoint.HeldError
	if !errors.Is(err, checkpoint.ErrHeld) || !errors.As(err, &he) {
		t.Fatalf("err = %v, want a *HeldError", err)
	}
	if he.Key != key || he.Owner != owner || stamp(he.Expires) != stamp(expires) {
		t.Fatalf("HeldError{%s, %q, %s}, want {%s, %q, %s}", he.Key, he.Owner, stamp(he.Expires), key, owner, stamp(expires))
	}
	if !strings.HasPrefix(err.Error(), "checkpoint: ") || !strings.Contains(err.Error(), owner) {
		t.Errorf("error text %q: want the prefix %q and the owner", err, "checkpoint: ")
	}
}

// ---- single calls

// testDeleteReleased deletes a released key: it is gone from Load and
// List, its former holder finds nothing, another key of the subscription
// and the subscription's parked commits and requests stay, and a Take
// with the counter 0 creates the key again.
func testDeleteReleased(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	st := e.setter(t)
	key := checkpoint.Key{Subscription: "sub", Unit: "shard-1"}
	other := checkpoint.Key{Subscription: "sub", Unit: "shard-2"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Minute)
	held.Position = "end"
	save(t, e.s, held)
	kept := e.take(t, other, "w1", checkpoint.Checkpoint{}, time.Minute)

	p := checkpoint.Parked{Subscription: "sub", Commit: commit("agg", 3, `[{"n":1}]`), Reason: "boom", Attempts: 2, ParkedAt: leaseEpoch}
	park(t, e.ps, p)
	rs, hasRequests := e.ps.(checkpoint.RequestStore)
	var req checkpoint.Request
	if hasRequests {
		var err error
		if req, err = rs.Request(ctx, checkpoint.Request{Subscription: "sub", AggregateID: "agg", Kind: checkpoint.RequestReplay}); err != nil {
			t.Fatalf("Request: %v", err)
		}
	}

	if err := st.Release(ctx, held); err != nil {
		t.Fatalf("Release: %v", err)
	}
	seen := load(t, e.s, key)
	e.delete(t, seen)
	e.wantGone(t, "after Delete", key)

	// The former holder finds nothing.
	held.Position = "stale"
	if err := e.s.Save(ctx, held); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the former holder's Save after Delete = %v, want ErrNotFound", err)
	}
	if _, err := e.l.Renew(ctx, held, time.Minute); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the former holder's Renew after Delete = %v, want ErrNotFound", err)
	}
	if err := st.Release(ctx, held); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the former holder's Release after Delete = %v, want ErrNotFound", err)
	}
	e.wantGone(t, "after the former holder's calls", key)

	// The rest of the subscription stays.
	wantLease(t, "Load of another key of the subscription", load(t, e.s, other), kept)
	got := parked(t, e.ps, "sub", "")
	if len(got) != 1 {
		t.Fatalf("parked commits after Delete = %v, want the one parked", parkedKeys(got))
	}
	wantParked(t, got[0], p)
	if hasRequests {
		reqs := collect(t, `Requests("sub")`, rs.Requests(ctx, "sub"))
		if len(reqs) != 1 || reqs[0].ID != req.ID {
			t.Fatalf("requests after Delete = %+v, want the one made", reqs)
		}
	}

	// A Take with the counter 0 creates the key again, from nothing.
	now := e.clock.advance(time.Second)
	again := e.take(t, key, "w2", checkpoint.Checkpoint{}, time.Minute)
	want := checkpoint.Checkpoint{Key: key, Owner: "w2", Lease: 1, Expires: now.Add(time.Minute)}
	wantLease(t, "Take after Delete", again, want)
	wantLease(t, "Load after Take after Delete", load(t, e.s, key), want)

	// A key an operator created with Set, never held, is deleted too.
	set, err := st.Set(ctx, checkpoint.Key{Subscription: "sub", Unit: "set"}, "start", false)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	e.delete(t, set)
	e.wantGone(t, "after Delete of a key made by Set", set.Key)
}

// testDeleteStale checks that a Delete at a counter the key no longer has
// is fenced, before the holder is looked at, and changes nothing.
func testDeleteStale(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	first := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	e.clock.advance(2 * time.Second)
	second := e.take(t, key, "w2", load(t, e.s, key), time.Second)
	e.clock.advance(2 * time.Second)
	cur := load(t, e.s, key)
	if cur.Live(e.clock.now()) {
		t.Fatalf("the lease has not expired: %s", leaseString(cur))
	}

	// An expired lease at another counter: fenced, naming the holder.
	for _, lease := range []int64{0, first.Lease, second.Lease + 1, 9} {
		presented := checkpoint.Checkpoint{Key: key, Owner: "w1", Lease: lease}
		wantFenced(t, e.d.Delete(ctx, presented), key, "w2", second.Lease, presented)
	}
	wantLease(t, "Load after fenced Deletes", load(t, e.s, key), cur)

	// A live holder at another counter: fenced too, not held.
	live := e.take(t, key, "w3", cur, time.Minute)
	wantFenced(t, e.d.Delete(ctx, second), key, "w3", live.Lease, second)
	wantLease(t, "Load after a fenced Delete of a live lease", load(t, e.s, key), live)
}

// testDeleteHeld checks that a live holder, by a lease until the instant
// it ends or by Claim, blocks Delete with a *HeldError, whoever presents
// the counter, and that nothing changes.
func testDeleteHeld(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, 10*time.Second)
	held.Position = "p1"
	save(t, e.s, held)
	before := load(t, e.s, key)

	wantHeldBy(t, e.d.Delete(ctx, held), key, "w1", leaseEpoch.Add(10*time.Second))
	wantHeldBy(t, e.d.Delete(ctx, checkpoint.Checkpoint{Key: key, Lease: held.Lease}), key, "w1", leaseEpoch.Add(10*time.Second))
	e.clock.advance(10*time.Second - time.Millisecond)
	wantHeldBy(t, e.d.Delete(ctx, held), key, "w1", leaseEpoch.Add(10*time.Second))
	wantLease(t, "Load after refused Deletes", load(t, e.s, key), before)

	// A lease renewed is held again.
	renewed := e.renew(t, held, time.Minute)
	e.clock.advance(time.Second)
	wantHeldBy(t, e.d.Delete(ctx, held), key, "w1", renewed.Expires)

	// A claim never expires.
	claimed := claim(t, e.s, key, "w2")
	e.clock.advance(1000 * time.Hour)
	wantHeldBy(t, e.d.Delete(ctx, claimed), key, "w2", time.Time{})
	wantLease(t, "Load after a refused Delete of a claimed key", load(t, e.s, key), claimed)
}

// testDeleteExpired deletes a key whose lease has expired, from the
// instant it ends: the holder is gone, and finds nothing.
func testDeleteExpired(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "shard-9"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	held.Position = "end"
	save(t, e.s, held)
	now := e.clock.advance(time.Second)
	seen := load(t, e.s, key)
	if seen.Live(now) {
		t.Fatalf("a lease at the instant it ends is Live: %s", leaseString(seen))
	}
	e.delete(t, seen)
	e.wantGone(t, "after Delete of an expired lease", key)
	if _, err := e.l.Renew(ctx, held, time.Minute); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the expired holder's Renew after Delete = %v, want ErrNotFound", err)
	}
	if err := e.s.Save(ctx, held); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the expired holder's Save after Delete = %v, want ErrNotFound", err)
	}
	e.wantGone(t, "after the expired holder's calls", key)
}

// testDeleteMissing checks that a key with no checkpoint, never made or
// deleted already, is not found, and not created.
func testDeleteMissing(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	missing := checkpoint.Key{Subscription: "sub", Unit: "missing"}
	for _, lease := range []int64{0, 1, 5} {
		err := e.d.Delete(ctx, checkpoint.Checkpoint{Key: missing, Owner: "w1", Lease: lease})
		if !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("Delete of a key never made at lease %d = %v, want ErrNotFound", lease, err)
		} else if !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Errorf("error text %q lacks the prefix %q", err, "checkpoint: ")
		}
	}
	e.wantGone(t, "after Deletes of a key never made", missing)

	key := checkpoint.Key{Subscription: "sub", Unit: "twice"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	e.clock.advance(time.Second)
	e.delete(t, held)
	if err := e.d.Delete(ctx, held); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the second Delete = %v, want ErrNotFound", err)
	}
	e.wantGone(t, "after two Deletes", key)
}

func testDeleteInvalidInput(t *testing.T, e deleteEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	e.clock.advance(time.Second)
	held := load(t, e.s, key)
	long := strings.Repeat("n", checkpoint.MaxNameBytes+1)
	for _, c := range []struct {
		name string
		cp   checkpoint.Checkpoint
	}{
		{"empty subscription", checkpoint.Checkpoint{Key: checkpoint.Key{Unit: "u"}, Lease: 1}},
		{"subscription too long", checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: long, Unit: "u"}, Lease: 1}},
		{"subscription not UTF-8", checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s\xff", Unit: "u"}, Lease: 1}},
		{"unit too long", checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: long}, Lease: 1}},
		{"unit not UTF-8", checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "u\xff"}, Lease: 1}},
		{"negative lease", checkpoint.Checkpoint{Key: key, Lease: -1}},
	} {
		err := e.d.Delete(ctx, c.cp)
		if !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Errorf("%s: error text %q lacks the prefix %q", c.name, err, "checkpoint: ")
		}
	}
	wantLease(t, "Load after rejected Deletes", load(t, e.s, key), held)
}

func testDeleteCancelledContext(t *testing.T, e deleteEnv) {
	key := checkpoint.Key{Subscription: "sub"}
	e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	e.clock.advance(time.Second)
	held := load(t, e.s, key)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.d.Delete(ctx, held); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context: err = %v, want context.Canceled", err)
	}
	wantLease(t, "Load after a cancelled Delete", load(t, e.s, key), held)
}

// ---- races

// testDeleteRacesTake races a Delete of a free key (released, or expired)
// with a Take of it at the same counter: exactly one wins. The Delete
// first leaves no checkpoint, so the Take, which saw a counter above 0, is
// fenced (no owner, lease 0) and creates nothing; the Take first moves the
// counter, so the Delete is fenced, naming the taker, and the key is held
// by the taker at the next counter.
func testDeleteRacesTake(t *testing.T, e deleteEnv) {
	st, hasSetter := e.s.(checkpoint.Setter)
	deletedFirst, takenFirst := 0, 0
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		holder := e.take(t, key, "holder", checkpoint.Checkpoint{}, time.Second)
		holder.Position = "p"
		save(t, e.s, holder)
		if hasSetter && round%2 == 0 {
			if err := st.Release(t.Context(), holder); err != nil {
				t.Fatalf("round %d: Release: %v", round, err)
			}
		}
		now := e.clock.advance(2 * time.Second)
		seen := load(t, e.s, key)
		if seen.Live(now) {
			t.Fatalf("round %d: the key is held: %s", round, leaseString(seen))
		}
		var (
			taken              checkpoint.Checkpoint
			deleteErr, takeErr error
		)
		leaseRace(
			func() { deleteErr = e.d.Delete(t.Context(), seen) },
			func() { taken, takeErr = e.l.Take(t.Context(), key, "taker", seen, 10*time.Second) },
		)
		switch {
		case deleteErr == nil && takeErr == nil:
			t.Fatalf("round %d: both the Delete and the Take succeeded: %s", round, leaseString(taken))
		case deleteErr == nil:
			deletedFirst++
			wantFenced(t, takeErr, key, "", 0, checkpoint.Checkpoint{Owner: "taker", Lease: seen.Lease})
			e.wantGone(t, fmt.Sprintf("round %d: after the race", round), key)
		case takeErr == nil:
			takenFirst++
			want := checkpoint.Checkpoint{Key: key, Position: "p", Owner: "taker", Lease: seen.Lease + 1,
				UpdatedAt: seen.UpdatedAt, Expires: now.Add(10 * time.Second)}
			wantLease(t, fmt.Sprintf("round %d: the Take", round), taken, want)
			wantFenced(t, deleteErr, key, "taker", seen.Lease+1, seen)
			wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
		default:
			t.Fatalf("round %d: both failed: Delete %v, Take %v", round, deleteErr, takeErr)
		}
		holder.Position = "stale"
		if err := e.s.Save(t.Context(), holder); err == nil {
			t.Fatalf("round %d: the old holder's Save after the race succeeded", round)
		}
	}
	t.Logf("%d rounds: the delete came first %d times, the take %d times", leaseRounds, deletedFirst, takenFirst)
}
