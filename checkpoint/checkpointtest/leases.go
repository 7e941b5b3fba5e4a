package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// The tests of checkpoint.Leaser, an optional ability of the Store: skipped
// when it lacks it. Run stops the stores' clock at leaseEpoch before each,
// so every Expires is known to the millisecond; the tests move it with
// env.clock.advance.

// leaseEpoch is where the clock stands when a lease test starts: a
// millisecond-aligned instant far from the system clock's, so that a store
// that does not use the clock it was given is caught.
var leaseEpoch = time.Date(2031, 2, 3, 4, 5, 6, 7000000, time.UTC)

// leaseRounds is how many times each race is run.
const leaseRounds = 20

type leaseEnv struct {
	s     checkpoint.Store
	ps    checkpoint.ParkStore
	l     checkpoint.Leaser
	clock *testClock
}

var leaseTests = []struct {
	name string
	fn   func(t *testing.T, env leaseEnv)
}{
	{"LeaseTakeFreeKey", testLeaseTakeFreeKey},
	{"LeaseTakeExpired", testLeaseTakeExpired},
	{"LeaseSteal", testLeaseSteal},
	{"LeaseTakeStale", testLeaseTakeStale},
	{"LeaseTakeAfterRenew", testLeaseTakeAfterRenew},
	{"LeaseRenew", testLeaseRenew},
	{"LeaseOtherCallsClearExpires", testLeaseOtherCallsClearExpires},
	{"LeaseSetLiveOrExpired", testLeaseSetLiveOrExpired},
	{"LeaseInvalidInput", testLeaseInvalidInput},
	{"LeaseCancelledContext", testLeaseCancelledContext},
	{"LeaseConcurrentTakes", testLeaseConcurrentTakes},
	{"LeaseRenewRacesSteal", testLeaseRenewRacesSteal},
	{"LeaseReleaseRacesTake", testLeaseReleaseRacesTake},
	{"LeaseSetRacesRenew", testLeaseSetRacesRenew},
	{"LeaseSetRacesTake", testLeaseSetRacesTake},
}

// ---- helpers

func (e leaseEnv) take(t *testing.T, key checkpoint.Key, owner string, seen checkpoint.Checkpoint, d time.Duration) checkpoint.Checkpoint {
	t.Helper()
	cp, err := e.l.Take(t.Context(), key, owner, seen, d)
	if err != nil {
		t.Fatalf("Take(%s, %q, seen lease %d, %v): %v", key, owner, seen.Lease, d, err)
	}
	return cp
}

func (e leaseEnv) renew(t *testing.T, cp checkpoint.Checkpoint, d time.Duration) checkpoint.Checkpoint {
	t.Helper()
	got, err := e.l.Renew(t.Context(), cp, d)
	if err != nil {
		t.Fatalf("Renew(%s, %q at lease %d, %v): %v", cp.Key, cp.Owner, cp.Lease, d, err)
	}
	return got
}

func (e leaseEnv) setter(t *testing.T) checkpoint.Setter {
	t.Helper()
	return setter(t, e.s)
}

// stamp writes a time for comparisons: in full, with its zone, so that a
// time not in UTC or not at millisecond precision differs from the one
// wanted.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Format("2006-01-02T15:04:05.000000000 MST")
}

// leaseString describes every field of a checkpoint, times included.
func leaseString(cp checkpoint.Checkpoint) string {
	return fmt.Sprintf("%s position %q owner %q lease %d updated %s expires %s",
		cp.Key, cp.Position, cp.Owner, cp.Lease, stamp(cp.UpdatedAt), stamp(cp.Expires))
}

// wantLease fails unless got and want agree in every field, times
// included.
func wantLease(t *testing.T, what string, got, want checkpoint.Checkpoint) {
	t.Helper()
	if g, w := leaseString(got), leaseString(want); g != w {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// leaseRace runs a and b at once and waits for both.
func leaseRace(a, b func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Go(func() { <-start; a() })
	wg.Go(func() { <-start; b() })
	close(start)
	wg.Wait()
}

// ---- single calls

func testLeaseTakeFreeKey(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	// A key never seen: seen is the zero Checkpoint, counter 0.
	key := checkpoint.Key{Subscription: "sub", Unit: "bucket-1"}
	w1 := e.take(t, key, "w1", checkpoint.Checkpoint{}, 10*time.Second)
	want := checkpoint.Checkpoint{Key: key, Owner: "w1", Lease: 1, Expires: leaseEpoch.Add(10 * time.Second)}
	wantLease(t, "Take of a key never seen", w1, want)
	wantLease(t, "Load after Take", load(t, e.s, key), want)
	if !load(t, e.s, key).Live(leaseEpoch) {
		t.Errorf("a key just taken is not Live")
	}

	// Save moves the position and keeps the lease's expiry.
	now := e.clock.advance(time.Second)
	w1.Position = "p1"
	save(t, e.s, w1)
	want.Position, want.UpdatedAt = "p1", now
	wantLease(t, "Load after Save", load(t, e.s, key), want)

	// Released, the key is free: a Take with the counter read keeps the
	// position and the time it was saved.
	st := e.setter(t)
	if err := st.Release(ctx, w1); err != nil {
		t.Fatalf("Release: %v", err)
	}
	seen := load(t, e.s, key)
	wantLease(t, "Load after Release", seen, checkpoint.Checkpoint{Key: key, Position: "p1", Lease: 1, UpdatedAt: now})
	now = e.clock.advance(time.Second)
	w2 := e.take(t, key, "w2", seen, 5*time.Second)
	want = checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w2", Lease: 2, UpdatedAt: seen.UpdatedAt, Expires: now.Add(5 * time.Second)}
	wantLease(t, "Take of a released key", w2, want)
	wantLease(t, "Load after Take of a released key", load(t, e.s, key), want)
	w1.Position = "stale"
	wantFenced(t, e.s.Save(ctx, w1), key, "w2", 2, w1)

	// A key an operator created with Set is free too.
	fresh := checkpoint.Key{Subscription: "sub", Unit: "set"}
	if _, err := st.Set(ctx, fresh, "start", false); err != nil {
		t.Fatalf("Set: %v", err)
	}
	seen = load(t, e.s, fresh)
	got := e.take(t, fresh, "w3", seen, time.Millisecond)
	wantLease(t, "Take of a key made by Set", got, checkpoint.Checkpoint{Key: fresh, Position: "start", Owner: "w3", Lease: 2,
		UpdatedAt: now, Expires: now.Add(time.Millisecond)})

	// Load and List return Expires.
	if l, ok := e.s.(checkpoint.Lister); ok {
		list := collect(t, `List("sub")`, l.List(ctx, "sub"))
		if len(list) != 2 {
			t.Fatalf("List(sub) = %d checkpoints, want 2", len(list))
		}
		wantLease(t, "List: the first", list[0], w2)
		wantLease(t, "List: the second", list[1], got)
	}
}

func testLeaseTakeExpired(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	w1 := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)
	w1.Position = "p1"
	save(t, e.s, w1)

	// Live until the instant Expires, expired from it on.
	e.clock.advance(999 * time.Millisecond)
	if seen := load(t, e.s, key); !seen.Live(e.clock.now()) {
		t.Fatalf("a lease 1 ms before it ends is not Live: %s", leaseString(seen))
	}
	now := e.clock.advance(time.Millisecond)
	seen := load(t, e.s, key)
	if seen.Live(now) {
		t.Fatalf("a lease at the instant it ends is Live: %s", leaseString(seen))
	}
	wantLease(t, "Load of an expired lease", seen, checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w1", Lease: 1,
		UpdatedAt: leaseEpoch, Expires: now})

	w2 := e.take(t, key, "w2", seen, 30*time.Second)
	want := checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w2", Lease: 2, UpdatedAt: leaseEpoch, Expires: now.Add(30 * time.Second)}
	wantLease(t, "Take of an expired lease", w2, want)

	// The old holder is fenced: it can neither save nor renew.
	w1.Position = "stale"
	wantFenced(t, e.s.Save(ctx, w1), key, "w2", 2, w1)
	_, err := e.l.Renew(ctx, w1, time.Minute)
	wantFenced(t, err, key, "w2", 2, w1)
	wantLease(t, "Load after the old holder's Save and Renew", load(t, e.s, key), want)

	w2.Position = "p2"
	save(t, e.s, w2)
	want.Position, want.UpdatedAt = "p2", now
	wantLease(t, "Load after the new holder's Save", load(t, e.s, key), want)
}

func testLeaseSteal(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	w1 := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Minute)
	w1.Position = "p1"
	save(t, e.s, w1)

	// A live lease is stolen with the counter read.
	now := e.clock.advance(time.Second)
	seen := load(t, e.s, key)
	if !seen.Live(now) {
		t.Fatalf("the lease is not Live: %s", leaseString(seen))
	}
	w2 := e.take(t, key, "w2", seen, 10*time.Second)
	want := checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w2", Lease: 2, UpdatedAt: leaseEpoch, Expires: now.Add(10 * time.Second)}
	wantLease(t, "Take of a live lease", w2, want)

	w1.Position = "stale"
	wantFenced(t, e.s.Save(ctx, w1), key, "w2", 2, w1)
	_, err := e.l.Renew(ctx, w1, time.Minute)
	wantFenced(t, err, key, "w2", 2, w1)
	wantLease(t, "Load after the robbed holder's Save and Renew", load(t, e.s, key), want)

	// A key held by Claim, which does not expire, can be stolen too.
	claimed := claim(t, e.s, key, "w3")
	w4 := e.take(t, key, "w4", claimed, time.Second)
	wantLease(t, "Take of a claimed key", w4, checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w4", Lease: 4,
		UpdatedAt: leaseEpoch, Expires: now.Add(time.Second)})
	claimed.Position = "stale"
	wantFenced(t, e.s.Save(ctx, claimed), key, "w4", 4, claimed)

	// The holder taking its own key again moves the counter: its older
	// lease is fenced.
	again := e.take(t, key, "w4", w4, time.Second)
	if again.Lease != 5 || again.Owner != "w4" {
		t.Fatalf("Take by the holder: %s, want owner w4 lease 5", leaseString(again))
	}
	_, err = e.l.Renew(ctx, w4, time.Second)
	wantFenced(t, err, key, "w4", 5, w4)
}

func testLeaseTakeStale(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Minute)
	held.Position = "p1"
	save(t, e.s, held)
	held = load(t, e.s, key)

	for _, lease := range []int64{0, 2, 7} {
		seen := checkpoint.Checkpoint{Key: key, Lease: lease}
		_, err := e.l.Take(ctx, key, "w2", seen, time.Minute)
		wantFenced(t, err, key, "w1", 1, checkpoint.Checkpoint{Owner: "w2", Lease: lease})
	}
	wantLease(t, "Load after stale Takes", load(t, e.s, key), held)

	// The counter moved by Claim or Set fences a Take that read it before.
	claimed := claim(t, e.s, key, "w3")
	_, err := e.l.Take(ctx, key, "w2", held, time.Minute)
	wantFenced(t, err, key, "w3", 2, checkpoint.Checkpoint{Owner: "w2", Lease: 1})
	if st, ok := e.s.(checkpoint.Setter); ok {
		if _, err := st.Set(ctx, key, "moved", true); err != nil {
			t.Fatalf("Set: %v", err)
		}
		_, err := e.l.Take(ctx, key, "w2", claimed, time.Minute)
		wantFenced(t, err, key, "", 3, checkpoint.Checkpoint{Owner: "w2", Lease: 2})
	}

	// A key with no checkpoint has the counter 0: any other is fenced, and
	// nothing is created.
	missing := checkpoint.Key{Subscription: "sub", Unit: "missing"}
	_, err = e.l.Take(ctx, missing, "w2", checkpoint.Checkpoint{Key: missing, Lease: 3}, time.Minute)
	wantFenced(t, err, missing, "", 0, checkpoint.Checkpoint{Owner: "w2", Lease: 3})
	if _, err := e.s.Load(ctx, missing); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Load after a fenced Take of a key with no checkpoint = %v, want ErrNotFound", err)
	}
}

// testLeaseTakeAfterRenew checks that a Take of a key seen held fails when
// the holder renewed its lease after it was seen, so that a steal never
// wins over a renewal it did not see, while a key released since it was
// seen is taken, and a seen without an owner is judged by the counter
// alone.
func testLeaseTakeAfterRenew(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "renewed"}
	a := e.take(t, key, "a", checkpoint.Checkpoint{}, 10*time.Second)
	a.Position = "p1"
	save(t, e.s, a)
	seen := load(t, e.s, key)
	if l, ok := e.s.(checkpoint.Lister); ok {
		list := collect(t, `List("sub")`, l.List(ctx, "sub"))
		if len(list) != 1 {
			t.Fatalf("List(sub) = %d checkpoints, want 1", len(list))
		}
		wantLease(t, "List", list[0], seen)
	}

	// The holder renews before the steal lands: the steal is fenced,
	// naming the holder at the same counter, and a still holds.
	e.clock.advance(time.Second)
	renewed := e.renew(t, a, 10*time.Second)
	_, err := e.l.Take(ctx, key, "b", seen, time.Minute)
	wantFenced(t, err, key, "a", 1, checkpoint.Checkpoint{Owner: "b", Lease: 1})
	wantLease(t, "Load after the fenced steal", load(t, e.s, key), renewed)
	a.Position = "p2"
	save(t, e.s, a)
	if _, err := e.l.Renew(ctx, a, 10*time.Second); err != nil {
		t.Fatalf("the holder's Renew after the fenced steal: %v", err)
	}

	// Seen again, the key is stolen.
	seen = load(t, e.s, key)
	now := e.clock.advance(time.Second)
	b := e.take(t, key, "b", seen, time.Minute)
	wantLease(t, "the steal with the renewed lease seen", b, checkpoint.Checkpoint{Key: key, Position: "p2", Owner: "b", Lease: 2,
		UpdatedAt: seen.UpdatedAt, Expires: now.Add(time.Minute)})

	// The same for a key held by Claim (no Expires) that its holder then
	// renews (an Expires appears).
	claimed := claim(t, e.s, key, "c")
	e.renew(t, claimed, time.Minute)
	_, err = e.l.Take(ctx, key, "d", claimed, time.Minute)
	wantFenced(t, err, key, "c", 3, checkpoint.Checkpoint{Owner: "d", Lease: 3})

	// A key released since it was seen held is free: it is taken.
	if st, ok := e.s.(checkpoint.Setter); ok {
		seen = load(t, e.s, key)
		renewed := e.renew(t, seen, 2*time.Minute)
		if err := st.Release(ctx, renewed); err != nil {
			t.Fatalf("Release: %v", err)
		}
		got := e.take(t, key, "d", seen, time.Minute)
		if got.Owner != "d" || got.Lease != 4 {
			t.Fatalf("Take of a key released since it was seen: %s, want owner d lease 4", leaseString(got))
		}
	}

	// A seen without an owner (only a counter) is judged by the counter
	// alone, whatever the holder did since.
	cur := load(t, e.s, key)
	e.clock.advance(time.Second)
	e.renew(t, cur, time.Hour)
	got := e.take(t, key, "e", checkpoint.Checkpoint{Key: key, Lease: cur.Lease}, time.Minute)
	if got.Owner != "e" || got.Lease != cur.Lease+1 {
		t.Fatalf("Take with only the counter seen: %s, want owner e lease %d", leaseString(got), cur.Lease+1)
	}
}

func testLeaseRenew(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	cp := e.take(t, key, "w1", checkpoint.Checkpoint{}, 10*time.Second)
	cp.Position = "p1"
	save(t, e.s, cp)

	// Renew sets Expires to the clock plus d and keeps everything else.
	now := e.clock.advance(4 * time.Second)
	got := e.renew(t, cp, 10*time.Second)
	want := checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w1", Lease: 1, UpdatedAt: leaseEpoch, Expires: now.Add(10 * time.Second)}
	wantLease(t, "Renew", got, want)
	wantLease(t, "Load after Renew", load(t, e.s, key), want)

	// The counter did not move: the holder's checkpoint still saves, and
	// the Save keeps the renewed expiry.
	now = e.clock.advance(time.Second)
	cp.Position = "p2"
	save(t, e.s, cp)
	want.Position, want.UpdatedAt = "p2", now
	wantLease(t, "Load after a Save following Renew", load(t, e.s, key), want)

	// A shorter d moves Expires earlier; the store does not judge expiry,
	// so a lease that ran out and was not taken is renewed.
	got = e.renew(t, cp, time.Millisecond)
	want.Expires = now.Add(time.Millisecond)
	wantLease(t, "Renew with a shorter d", got, want)
	now = e.clock.advance(time.Hour)
	got = e.renew(t, cp, time.Second)
	want.Expires = now.Add(time.Second)
	wantLease(t, "Renew of an expired lease", got, want)

	// A key held by Claim gets an expiry.
	other := checkpoint.Key{Subscription: "sub", Unit: "claimed"}
	claimed := claim(t, e.s, other, "w2")
	got = e.renew(t, claimed, time.Second)
	wantLease(t, "Renew of a claimed key", got, checkpoint.Checkpoint{Key: other, Owner: "w2", Lease: 1, Expires: now.Add(time.Second)})

	// Another owner or lease is fenced, and changes nothing.
	for _, c := range []checkpoint.Checkpoint{
		{Key: key, Owner: "w9", Lease: 1},
		{Key: key, Owner: "w1", Lease: 2},
	} {
		_, err := e.l.Renew(ctx, c, time.Minute)
		wantFenced(t, err, key, "w1", 1, c)
	}
	wantLease(t, "Load after fenced Renews", load(t, e.s, key), want)

	// After a steal, the robbed holder's Renew fails.
	thief := e.take(t, key, "w2", want, 5*time.Second)
	_, err := e.l.Renew(ctx, cp, time.Minute)
	wantFenced(t, err, key, "w2", 2, cp)
	wantLease(t, "Load after the robbed holder's Renew", load(t, e.s, key), thief)

	// After a Release, the holder's Renew fails too.
	st := e.setter(t)
	if err := st.Release(ctx, thief); err != nil {
		t.Fatalf("Release: %v", err)
	}
	_, err = e.l.Renew(ctx, thief, time.Minute)
	wantFenced(t, err, key, "", 2, thief)

	// A key with no checkpoint is not found, and not created.
	missing := checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "missing"}, Owner: "w1", Lease: 1}
	if _, err := e.l.Renew(ctx, missing, time.Second); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Renew of a key with no checkpoint = %v, want ErrNotFound", err)
	}
	if _, err := e.s.Load(ctx, missing.Key); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Load after Renew of a key with no checkpoint = %v, want ErrNotFound", err)
	}
}

func testLeaseOtherCallsClearExpires(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	leased := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Second)

	// Claim clears Expires: a claim never expires.
	claimed := claim(t, e.s, key, "w2")
	want := checkpoint.Checkpoint{Key: key, Owner: "w2", Lease: 2}
	wantLease(t, "Claim of a leased key", claimed, want)
	wantLease(t, "Load after Claim", load(t, e.s, key), want)
	if !load(t, e.s, key).Live(leaseEpoch.Add(1000 * time.Hour)) {
		t.Errorf("a claimed key is not Live 1000 h later")
	}
	_, err := e.l.Renew(ctx, leased, time.Minute)
	wantFenced(t, err, key, "w2", 2, leased)

	st, ok := e.s.(checkpoint.Setter)
	if !ok {
		return
	}
	// Release clears Owner and Expires, and keeps the counter.
	leased = e.take(t, key, "w3", claimed, time.Minute)
	if err := st.Release(ctx, leased); err != nil {
		t.Fatalf("Release: %v", err)
	}
	want = checkpoint.Checkpoint{Key: key, Lease: 3}
	wantLease(t, "Load after Release of a lease", load(t, e.s, key), want)

	// Set with force clears Owner and Expires of a live lease.
	leased = e.take(t, key, "w4", want, time.Minute)
	got, err := st.Set(ctx, key, "p", true)
	if err != nil {
		t.Fatalf("Set with force: %v", err)
	}
	want = checkpoint.Checkpoint{Key: key, Position: "p", Lease: 5, UpdatedAt: leaseEpoch}
	wantLease(t, "Set with force of a live lease", got, want)
	wantLease(t, "Load after Set", load(t, e.s, key), want)
	_, err = e.l.Renew(ctx, leased, time.Minute)
	wantFenced(t, err, key, "", 5, leased)
}

// testLeaseSetLiveOrExpired checks that Set without force refuses a live
// holder only: a lease refuses it until the instant it ends, a claim
// always, and an expired lease renewed in time again.
func testLeaseSetLiveOrExpired(t *testing.T, e leaseEnv) {
	st := e.setter(t)
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, 10*time.Second)
	held.Position = "p1"
	save(t, e.s, held)
	before := load(t, e.s, key)

	wantHeld := func(what, owner string, expires time.Time) {
		t.Helper()
		_, err := st.Set(ctx, key, "moved", false)
		var he *checkpoint.HeldError
		if !errors.Is(err, checkpoint.ErrHeld) || !errors.As(err, &he) {
			t.Fatalf("%s: Set without force = %v, want a *HeldError", what, err)
		}
		if he.Key != key || he.Owner != owner || stamp(he.Expires) != stamp(expires) {
			t.Fatalf("%s: HeldError{%s, %q, %s}, want {%s, %q, %s}", what, he.Key, he.Owner, stamp(he.Expires), key, owner, stamp(expires))
		}
		if !strings.HasPrefix(err.Error(), "checkpoint: ") || !strings.Contains(err.Error(), owner) {
			t.Errorf("%s: error text %q: want the prefix %q and the owner", what, err, "checkpoint: ")
		}
	}
	wantHeld("a live lease", "w1", leaseEpoch.Add(10*time.Second))
	e.clock.advance(10*time.Second - time.Millisecond)
	wantHeld("a lease 1 ms before it ends", "w1", leaseEpoch.Add(10*time.Second))
	wantLease(t, "Load after refused Sets", load(t, e.s, key), before)

	// From the instant it ends, the holder no longer blocks an operator;
	// it is fenced.
	now := e.clock.advance(time.Millisecond)
	got, err := st.Set(ctx, key, "moved", false)
	if err != nil {
		t.Fatalf("Set without force of an expired lease: %v", err)
	}
	want := checkpoint.Checkpoint{Key: key, Position: "moved", Lease: 2, UpdatedAt: now}
	wantLease(t, "Set of an expired lease", got, want)
	wantLease(t, "Load after Set of an expired lease", load(t, e.s, key), want)
	held.Position = "stale"
	wantFenced(t, e.s.Save(ctx, held), key, "", 2, held)
	_, err = e.l.Renew(ctx, held, time.Minute)
	wantFenced(t, err, key, "", 2, held)

	// A claim never expires.
	claim(t, e.s, key, "w2")
	e.clock.advance(1000 * time.Hour)
	wantHeld("a claim 1000 h old", "w2", time.Time{})

	// An expired lease renewed before the Set is live again.
	leased := e.take(t, key, "w3", load(t, e.s, key), time.Second)
	e.clock.advance(time.Hour)
	renewed := e.renew(t, leased, time.Minute)
	wantHeld("an expired lease renewed", "w3", renewed.Expires)
}

// ---- input rules

func testLeaseInvalidInput(t *testing.T, e leaseEnv) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Minute)
	held.Position = "p0"
	save(t, e.s, held)
	held = load(t, e.s, key)
	fresh := checkpoint.Key{Subscription: "sub", Unit: "fresh"}
	long := strings.Repeat("n", checkpoint.MaxNameBytes+1)
	take := func(key checkpoint.Key, owner string, seen int64, d time.Duration) func() error {
		return func() error {
			_, err := e.l.Take(ctx, key, owner, checkpoint.Checkpoint{Key: key, Lease: seen}, d)
			return err
		}
	}
	renew := func(f func(*checkpoint.Checkpoint), d time.Duration) func() error {
		return func() error {
			cp := held
			f(&cp)
			_, err := e.l.Renew(ctx, cp, d)
			return err
		}
	}
	keep := func(*checkpoint.Checkpoint) {}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Take empty subscription", take(checkpoint.Key{Unit: "u"}, "w2", 0, time.Minute)},
		{"Take subscription too long", take(checkpoint.Key{Subscription: long}, "w2", 0, time.Minute)},
		{"Take unit not UTF-8", take(checkpoint.Key{Subscription: "sub", Unit: "\xff"}, "w2", 0, time.Minute)},
		{"Take empty owner", take(fresh, "", 0, time.Minute)},
		{"Take owner not UTF-8", take(fresh, "w\xff", 0, time.Minute)},
		{"Take owner too long", take(fresh, long, 0, time.Minute)},
		{"Take negative seen lease", take(key, "w2", -1, time.Minute)},
		{"Take zero duration", take(fresh, "w2", 0, 0)},
		{"Take duration under 1 ms", take(fresh, "w2", 0, time.Millisecond-1)},
		{"Take negative duration", take(key, "w2", 1, -time.Minute)},
		{"Renew empty subscription", renew(func(c *checkpoint.Checkpoint) { c.Subscription = "" }, time.Minute)},
		{"Renew unit not UTF-8", renew(func(c *checkpoint.Checkpoint) { c.Unit = "u\xff" }, time.Minute)},
		{"Renew empty owner", renew(func(c *checkpoint.Checkpoint) { c.Owner = "" }, time.Minute)},
		{"Renew lease 0", renew(func(c *checkpoint.Checkpoint) { c.Lease = 0 }, time.Minute)},
		{"Renew negative lease", renew(func(c *checkpoint.Checkpoint) { c.Lease = -1 }, time.Minute)},
		{"Renew zero duration", renew(keep, 0)},
		{"Renew duration under 1 ms", renew(keep, 999*time.Microsecond)},
		{"Renew negative duration", renew(keep, -time.Second)},
	} {
		err := c.call()
		if !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Errorf("%s: error text %q lacks the prefix %q", c.name, err, "checkpoint: ")
		}
	}
	// Nothing was written.
	wantLease(t, "Load after rejected calls", load(t, e.s, key), held)
	if _, err := e.s.Load(ctx, fresh); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Load of a key only rejected calls named = %v, want ErrNotFound", err)
	}
	if l, ok := e.s.(checkpoint.Lister); ok {
		got := collect(t, "List", l.List(ctx, ""))
		if len(got) != 1 || got[0].Key != key {
			t.Errorf("after rejected calls List = %v, want only %s", got, key)
		}
	}
}

func testLeaseCancelledContext(t *testing.T, e leaseEnv) {
	key := checkpoint.Key{Subscription: "sub"}
	held := e.take(t, key, "w1", checkpoint.Checkpoint{}, time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e.clock.advance(time.Second)
	if _, err := e.l.Take(ctx, key, "w2", held, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Take with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := e.l.Renew(ctx, held, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Renew with a cancelled context: err = %v, want context.Canceled", err)
	}
	other := checkpoint.Key{Subscription: "sub", Unit: "new"}
	if _, err := e.l.Take(ctx, other, "w2", checkpoint.Checkpoint{}, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Take of a new key with a cancelled context: err = %v, want context.Canceled", err)
	}
	wantLease(t, "Load after cancelled calls", load(t, e.s, key), held)
	if _, err := e.s.Load(t.Context(), other); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Load of a key only a cancelled Take named = %v, want ErrNotFound", err)
	}
}

// ---- races

// testLeaseConcurrentTakes races processes taking the same free lease with
// the counter they read: a key never seen, a released one, an expired one.
// Exactly one wins; each other gets a *FencedError naming the winner.
func testLeaseConcurrentTakes(t *testing.T, e leaseEnv) {
	const takers = 4
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		var seen, old checkpoint.Checkpoint
		switch round % 3 {
		case 0: // never seen: counter 0
		case 1: // released (never seen without a Setter)
			st, ok := e.s.(checkpoint.Setter)
			if !ok {
				break
			}
			old = e.take(t, key, "old", checkpoint.Checkpoint{}, time.Minute)
			old.Position = "p"
			save(t, e.s, old)
			if err := st.Release(t.Context(), old); err != nil {
				t.Fatalf("round %d: Release: %v", round, err)
			}
			seen = load(t, e.s, key)
		case 2: // expired
			old = e.take(t, key, "old", checkpoint.Checkpoint{}, time.Second)
			old.Position = "p"
			save(t, e.s, old)
			e.clock.advance(2 * time.Second)
			seen = load(t, e.s, key)
		}
		now := e.clock.now()
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   [takers]checkpoint.Checkpoint
			errs  [takers]error
		)
		for i := range takers {
			wg.Go(func() {
				<-start
				got[i], errs[i] = e.l.Take(t.Context(), key, fmt.Sprintf("w%d", i), seen, 10*time.Second)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range takers {
			if errs[i] == nil {
				if winner >= 0 {
					t.Fatalf("round %d: w%d and w%d both took the lease at counter %d:\n%s\n%s",
						round, winner, i, seen.Lease, leaseString(got[winner]), leaseString(got[i]))
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no Take won: %v", round, errs)
		}
		wname := fmt.Sprintf("w%d", winner)
		want := checkpoint.Checkpoint{Key: key, Position: seen.Position, Owner: wname, Lease: seen.Lease + 1,
			UpdatedAt: seen.UpdatedAt, Expires: now.Add(10 * time.Second)}
		wantLease(t, fmt.Sprintf("round %d: the winner's Take", round), got[winner], want)
		for i := range takers {
			if i != winner {
				wantFenced(t, errs[i], key, wname, seen.Lease+1, checkpoint.Checkpoint{Owner: fmt.Sprintf("w%d", i), Lease: seen.Lease})
			}
		}
		wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
		w := got[winner]
		w.Position = "won"
		save(t, e.s, w)
		if old.Lease > 0 {
			old.Position = "stale"
			wantFenced(t, e.s.Save(t.Context(), old), key, wname, seen.Lease+1, old)
		}
	}
}

// testLeaseRenewRacesSteal races a holder renewing its lease with another
// process stealing it with the checkpoint it read. Exactly one wins: the
// renew first moves Expires, so the steal is fenced (naming the holder at
// the same counter) and the holder goes on; the steal first moves the
// counter, so the renew is fenced (naming the thief) and the holder can
// neither save nor renew. What must never happen: both succeeding (a steal
// over a renewal it did not see), both failing, or the renew's expiry
// landing on the thief's lease.
func testLeaseRenewRacesSteal(t *testing.T, e leaseEnv) {
	renewedFirst, stolenFirst := 0, 0
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		holder := e.take(t, key, "holder", checkpoint.Checkpoint{}, 10*time.Second)
		holder.Position = "p"
		save(t, e.s, holder)
		seen := load(t, e.s, key)
		now := e.clock.advance(time.Second)
		var (
			renewed, stolen    checkpoint.Checkpoint
			renewErr, stealErr error
			renewFor, stealFor = 20 * time.Second, 5 * time.Second
		)
		leaseRace(
			func() { renewed, renewErr = e.l.Renew(t.Context(), holder, renewFor) },
			func() { stolen, stealErr = e.l.Take(t.Context(), key, "thief", seen, stealFor) },
		)
		var want checkpoint.Checkpoint
		switch {
		case renewErr == nil && stealErr == nil:
			t.Fatalf("round %d: both the Renew and the steal succeeded:\n%s\n%s", round, leaseString(renewed), leaseString(stolen))
		case renewErr == nil:
			renewedFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "p", Owner: "holder", Lease: holder.Lease, UpdatedAt: seen.UpdatedAt, Expires: now.Add(renewFor)}
			wantLease(t, fmt.Sprintf("round %d: the renew that came first", round), renewed, want)
			wantFenced(t, stealErr, key, "holder", holder.Lease, checkpoint.Checkpoint{Owner: "thief", Lease: seen.Lease})
		case stealErr == nil:
			stolenFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "p", Owner: "thief", Lease: holder.Lease + 1, UpdatedAt: seen.UpdatedAt, Expires: now.Add(stealFor)}
			wantLease(t, fmt.Sprintf("round %d: the steal that came first", round), stolen, want)
			wantFenced(t, renewErr, key, "thief", holder.Lease+1, holder)
		default:
			t.Fatalf("round %d: both failed: Renew %v, steal %v", round, renewErr, stealErr)
		}
		wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
		if want.Owner == "holder" {
			// The holder goes on; the thief's later steal, with the
			// renewed lease seen, succeeds.
			holder.Position = "p2"
			save(t, e.s, holder)
			seen = load(t, e.s, key)
			e.take(t, key, "thief", seen, stealFor)
		}
		_, err := e.l.Renew(t.Context(), holder, renewFor)
		wantFenced(t, err, key, "thief", holder.Lease+1, holder)
		holder.Position = "stale"
		wantFenced(t, e.s.Save(t.Context(), holder), key, "thief", holder.Lease+1, holder)
	}
	t.Logf("%d rounds: the renew came first %d times, the steal %d times", leaseRounds, renewedFirst, stolenFirst)
}

// testLeaseReleaseRacesTake races a holder releasing its expired lease
// (a clean shutdown, late) with another process taking it with the
// counter it read. Release keeps the counter, so the take wins whichever
// lands first: the key ends held by the taker at the next counter, never
// by the releaser and never free, and the releaser cannot save.
func testLeaseReleaseRacesTake(t *testing.T, e leaseEnv) {
	st := e.setter(t)
	releasedFirst, takenFirst := 0, 0
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		holder := e.take(t, key, "holder", checkpoint.Checkpoint{}, time.Second)
		holder.Position = "p"
		save(t, e.s, holder)
		now := e.clock.advance(2 * time.Second)
		seen := load(t, e.s, key)
		if seen.Live(now) {
			t.Fatalf("round %d: the lease has not expired: %s", round, leaseString(seen))
		}
		var (
			taken               checkpoint.Checkpoint
			releaseErr, takeErr error
		)
		leaseRace(
			func() { releaseErr = st.Release(t.Context(), holder) },
			func() { taken, takeErr = e.l.Take(t.Context(), key, "taker", seen, 10*time.Second) },
		)
		if takeErr != nil {
			t.Fatalf("round %d: the Take failed: %v (a release does not move the counter)", round, takeErr)
		}
		want := checkpoint.Checkpoint{Key: key, Position: "p", Owner: "taker", Lease: holder.Lease + 1,
			UpdatedAt: seen.UpdatedAt, Expires: now.Add(10 * time.Second)}
		wantLease(t, fmt.Sprintf("round %d: the Take", round), taken, want)
		switch {
		case releaseErr == nil:
			releasedFirst++
		case errors.Is(releaseErr, checkpoint.ErrFenced):
			takenFirst++
			wantFenced(t, releaseErr, key, "taker", holder.Lease+1, holder)
		default:
			t.Fatalf("round %d: Release: %v", round, releaseErr)
		}
		wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
		holder.Position = "stale"
		wantFenced(t, e.s.Save(t.Context(), holder), key, "taker", holder.Lease+1, holder)
	}
	t.Logf("%d rounds: the release came first %d times, the take %d times", leaseRounds, releasedFirst, takenFirst)
}

// testLeaseSetRacesRenew races an operator's Set without force with the
// holder renewing its expired lease: exactly one wins. The renew first
// makes the lease live, so the Set is refused; the Set first moves the
// counter, so the renew is fenced.
func testLeaseSetRacesRenew(t *testing.T, e leaseEnv) {
	st := e.setter(t)
	renewedFirst, setFirst := 0, 0
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		holder := e.take(t, key, "holder", checkpoint.Checkpoint{}, time.Second)
		holder.Position = "p"
		save(t, e.s, holder)
		savedAt := e.clock.now()
		now := e.clock.advance(2 * time.Second)
		var (
			renewed, set     checkpoint.Checkpoint
			renewErr, setErr error
		)
		leaseRace(
			func() { renewed, renewErr = e.l.Renew(t.Context(), holder, 10*time.Second) },
			func() { set, setErr = st.Set(t.Context(), key, "moved", false) },
		)
		var want checkpoint.Checkpoint
		switch {
		case renewErr == nil && setErr == nil:
			t.Fatalf("round %d: both the Renew and the Set without force succeeded:\n%s\n%s", round, leaseString(renewed), leaseString(set))
		case renewErr == nil:
			renewedFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "p", Owner: "holder", Lease: holder.Lease, UpdatedAt: savedAt, Expires: now.Add(10 * time.Second)}
			wantLease(t, fmt.Sprintf("round %d: the Renew", round), renewed, want)
			var he *checkpoint.HeldError
			if !errors.As(setErr, &he) || he.Owner != "holder" || stamp(he.Expires) != stamp(want.Expires) {
				t.Fatalf("round %d: Set after the Renew = %v, want a *HeldError naming the holder and the renewed expiry", round, setErr)
			}
		case setErr == nil:
			setFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "moved", Lease: holder.Lease + 1, UpdatedAt: now}
			wantLease(t, fmt.Sprintf("round %d: the Set", round), set, want)
			wantFenced(t, renewErr, key, "", holder.Lease+1, holder)
		default:
			t.Fatalf("round %d: both failed: Renew %v, Set %v", round, renewErr, setErr)
		}
		wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
	}
	t.Logf("%d rounds: the renew came first %d times, the set %d times", leaseRounds, renewedFirst, setFirst)
}

// testLeaseSetRacesTake races an operator's Set without force with a
// process taking an expired lease: exactly one wins. The take first makes
// the key live, so the Set is refused; the Set first moves the counter, so
// the take is fenced.
func testLeaseSetRacesTake(t *testing.T, e leaseEnv) {
	st := e.setter(t)
	takenFirst, setFirst := 0, 0
	for round := range leaseRounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", round)}
		holder := e.take(t, key, "holder", checkpoint.Checkpoint{}, time.Second)
		holder.Position = "p"
		save(t, e.s, holder)
		savedAt := e.clock.now()
		now := e.clock.advance(2 * time.Second)
		seen := load(t, e.s, key)
		var (
			taken, set      checkpoint.Checkpoint
			takeErr, setErr error
		)
		leaseRace(
			func() { taken, takeErr = e.l.Take(t.Context(), key, "taker", seen, 10*time.Second) },
			func() { set, setErr = st.Set(t.Context(), key, "moved", false) },
		)
		var want checkpoint.Checkpoint
		switch {
		case takeErr == nil && setErr == nil:
			t.Fatalf("round %d: both the Take and the Set without force succeeded:\n%s\n%s", round, leaseString(taken), leaseString(set))
		case takeErr == nil:
			takenFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "p", Owner: "taker", Lease: holder.Lease + 1, UpdatedAt: savedAt, Expires: now.Add(10 * time.Second)}
			wantLease(t, fmt.Sprintf("round %d: the Take", round), taken, want)
			var he *checkpoint.HeldError
			if !errors.As(setErr, &he) || he.Owner != "taker" || stamp(he.Expires) != stamp(want.Expires) {
				t.Fatalf("round %d: Set after the Take = %v, want a *HeldError naming the taker and its expiry", round, setErr)
			}
		case setErr == nil:
			setFirst++
			want = checkpoint.Checkpoint{Key: key, Position: "moved", Lease: holder.Lease + 1, UpdatedAt: now}
			wantLease(t, fmt.Sprintf("round %d: the Set", round), set, want)
			wantFenced(t, takeErr, key, "", holder.Lease+1, checkpoint.Checkpoint{Owner: "taker", Lease: seen.Lease})
		default:
			t.Fatalf("round %d: both failed: Take %v, Set %v", round, takeErr, setErr)
		}
		wantLease(t, fmt.Sprintf("round %d: Load after the race", round), load(t, e.s, key), want)
		holder.Position = "stale"
		if err := e.s.Save(t.Context(), holder); !errors.Is(err, checkpoint.ErrFenced) {
			t.Fatalf("round %d: the old holder's Save after the race = %v, want ErrFenced", round, err)
		}
	}
	t.Logf("%d rounds: the take came first %d times, the set %d times", leaseRounds, takenFirst, setFirst)
}
