package checkpointtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Run runs the conformance suite as parallel subtests of t. newStores is
// called once per subtest, possibly from several goroutines at once, and
// must return stores that hold nothing yet (a fresh table, a new value); the
// two may be the same value. Stores are used only through the checkpoint
// interfaces.
//
// The stores must take every time they stamp or compare (UpdatedAt,
// Expires, ParkedAt, …) from clock, which is safe for concurrent use. It
// follows the system clock, except in the tests of checkpoint.Leaser, which
// stop it at a fixed instant and move it by hand so that leases expire
// exactly when the tests say.
func Run(t *testing.T, newStores func(t *testing.T, clock func() time.Time) (checkpoint.Store, checkpoint.ParkStore)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s checkpoint.Store, ps checkpoint.ParkStore)
	}{
		{"LoadUnknownKey", testLoadUnknownKey},
		{"ClaimCreatesThenIncrements", testClaimCreatesThenIncrements},
		{"SaveLoadRoundTrip", testSaveLoadRoundTrip},
		{"SaveFenced", testSaveFenced},
		{"ConcurrentClaims", testConcurrentClaims},
		{"SaveRacesClaim", testSaveRacesClaim},
		{"ReleaseThenSet", testReleaseThenSet},
		{"SetHeld", testSetHeld},
		{"List", testList},
		{"ParkOrdering", testParkOrdering},
		{"ParkIdempotent", testParkIdempotent},
		{"Unpark", testUnpark},
		{"ParkedManyPages", testParkedManyPages},
		{"ParkedEarlyBreak", testParkedEarlyBreak},
		{"InvalidInput", testInvalidInput},
		{"CancelledContext", testCancelledContext},
		{"RequestReplaces", testRequestReplaces},
		{"RequestOrdering", testRequestOrdering},
		{"RequestComplete", testRequestComplete},
		{"RequestDelete", testRequestDelete},
		{"RequestRaces", testRequestRaces},
		{"RequestInvalidInput", testRequestInvalidInput},
		{"RequestCancelledContext", testRequestCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, ps := newStores(t, new(testClock).now)
			tc.fn(t, s, ps)
		})
	}
	for _, tc := range leaseTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := new(testClock)
			s, ps := newStores(t, clock.now)
			l, ok := s.(checkpoint.Leaser)
			if !ok {
				t.Skipf("%T does not implement checkpoint.Leaser", s)
			}
			clock.stop(leaseEpoch)
			tc.fn(t, leaseEnv{s: s, ps: ps, l: l, clock: clock})
		})
	}
	for _, tc := range deleteTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := new(testClock)
			s, ps := newStores(t, clock.now)
			d, ok := s.(checkpoint.Deleter)
			if !ok {
				t.Skipf("%T does not implement checkpoint.Deleter", s)
			}
			l, ok := s.(checkpoint.Leaser)
			if !ok {
				t.Skipf("%T does not implement checkpoint.Leaser, which the tests of checkpoint.Deleter use", s)
			}
			clock.stop(leaseEpoch)
			tc.fn(t, deleteEnv{leaseEnv: leaseEnv{s: s, ps: ps, l: l, clock: clock}, d: d})
		})
	}
}

// testClock is the clock Run gives the stores: the system clock until
// stopped, then a time moved only by advance.
type testClock struct {
	mu      sync.Mutex
	stopped bool
	at      time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.at
	}
	return time.Now()
}

// stop stops the clock at at.
func (c *testClock) stop(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped, c.at = true, at
}

// advance moves a stopped clock forward by d and returns the new time.
func (c *testClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
	return c.at
}

// ---- helpers

func claim(t *testing.T, s checkpoint.Store, key checkpoint.Key, owner string) checkpoint.Checkpoint {
	t.Helper()
	cp, err := s.Claim(t.Context(), key, owner)
	if err != nil {
		t.Fatalf("Claim(%s, %q): %v", key, owner, err)
	}
	return cp
}

func save(t *testing.T, s checkpoint.Store, cp checkpoint.Checkpoint) {
	t.Helper()
	if err := s.Save(t.Context(), cp); err != nil {
		t.Fatalf("Save(%s, %q at lease %d, %q): %v", cp.Key, cp.Owner, cp.Lease, cp.Position, err)
	}
}

func load(t *testing.T, s checkpoint.Store, key checkpoint.Key) checkpoint.Checkpoint {
	t.Helper()
	cp, err := s.Load(t.Context(), key)
	if err != nil {
		t.Fatalf("Load(%s): %v", key, err)
	}
	return cp
}

// same reports how got differs from want in key, position, owner and
// lease ("" when it does not).
func same(got, want checkpoint.Checkpoint) string {
	if got.Key != want.Key || got.Position != want.Position || got.Owner != want.Owner || got.Lease != want.Lease {
		return fmt.Sprintf("got %s position %q owner %q lease %d, want %s position %q owner %q lease %d",
			got.Key, got.Position, got.Owner, got.Lease, want.Key, want.Position, want.Owner, want.Lease)
	}
	return ""
}

func wantCheckpoint(t *testing.T, what string, got, want checkpoint.Checkpoint) {
	t.Helper()
	if d := same(got, want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// clockWindow returns a function that checks a time stamped between the
// call to clockWindow and the call of the function, at millisecond
// precision, in UTC.
func clockWindow(t *testing.T) func(what string, got time.Time) {
	t.Helper()
	before := time.Now().Truncate(time.Millisecond)
	return func(what string, got time.Time) {
		t.Helper()
		after := time.Now()
		if got.Before(before) || got.After(after) {
			t.Errorf("%s = %v, want between %v and %v", what, got, before, after)
		}
		if got.Location() != time.UTC {
			t.Errorf("%s = %v, want UTC", what, got)
		}
		if got.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("%s = %v, want millisecond precision", what, got)
		}
	}
}

func wantFenced(t *testing.T, err error, key checkpoint.Key, owner string, lease int64, presented checkpoint.Checkpoint) {
	t.Helper()
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("err = %v, want ErrFenced", err)
	}
	var fe *checkpoint.FencedError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %T %v, want a *checkpoint.FencedError", err, err)
	}
	want := checkpoint.FencedError{Key: key, Owner: owner, Lease: lease, PresentedOwner: presented.Owner, PresentedLease: presented.Lease}
	if *fe != want {
		t.Fatalf("FencedError = %+v, want %+v", *fe, want)
	}
	if !strings.HasPrefix(err.Error(), "checkpoint: ") {
		t.Errorf("error text %q lacks the prefix %q", err, "checkpoint: ")
	}
}

func collect[T any](t *testing.T, what string, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, v)
	}
	return out
}

func parked(t *testing.T, ps checkpoint.ParkStore, sub, agg string) []checkpoint.Parked {
	t.Helper()
	return collect(t, fmt.Sprintf("Parked(%q, %q)", sub, agg), ps.Parked(t.Context(), sub, agg))
}

func parkedKeys(ps []checkpoint.Parked) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%s:%q@%d", p.Subscription, p.Commit.AggregateID, p.Commit.Version)
	}
	return out
}

func commit(agg string, version int64, events string) store.Commit {
	at := int64(946684800000) + version
	return store.Commit{
		CommitID:    store.FormatCommitID(at, agg),
		CommittedAt: at,
		AggregateID: agg,
		Version:     version,
		Events:      []byte(events),
	}
}

func park(t *testing.T, ps checkpoint.ParkStore, p checkpoint.Parked) {
	t.Helper()
	if err := ps.Park(t.Context(), p); err != nil {
		t.Fatalf("Park(%q, %q, %d): %v", p.Subscription, p.Commit.AggregateID, p.Commit.Version, err)
	}
}

func wantParked(t *testing.T, got, want checkpoint.Parked) {
	t.Helper()
	g, w := got.Commit, want.Commit
	if got.Subscription != want.Subscription || g.AggregateID != w.AggregateID || g.Version != w.Version ||
		g.CommitID != w.CommitID || g.CommittedAt != w.CommittedAt || !bytes.Equal(g.Events, w.Events) ||
		got.Reason != want.Reason || got.Attempts != want.Attempts || !got.ParkedAt.Equal(want.ParkedAt) {
		t.Errorf("parked = %+v\nwant     %+v", got, want)
	}
}

// ---- checkpoints

func testLoadUnknownKey(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	for _, key := range []checkpoint.Key{{Subscription: "sub"}, {Subscription: "sub", Unit: "u"}} {
		_, err := s.Load(t.Context(), key)
		if !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("Load(%s) = %v, want ErrNotFound", key, err)
		}
	}
}

func testClaimCreatesThenIncrements(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	key := checkpoint.Key{Subscription: "sub"}
	cp := claim(t, s, key, "w1")
	wantCheckpoint(t, "first Claim", cp, checkpoint.Checkpoint{Key: key, Owner: "w1", Lease: 1})
	if !cp.UpdatedAt.IsZero() {
		t.Errorf("UpdatedAt = %v before any Save, want zero", cp.UpdatedAt)
	}
	got := load(t, s, key)
	wantCheckpoint(t, "Load after Claim", got, cp)
	if !got.UpdatedAt.IsZero() {
		t.Errorf("loaded UpdatedAt = %v before any Save, want zero", got.UpdatedAt)
	}
	wantCheckpoint(t, "second Claim", claim(t, s, key, "w2"), checkpoint.Checkpoint{Key: key, Owner: "w2", Lease: 2})
	wantCheckpoint(t, "Claim by the holder", claim(t, s, key, "w2"), checkpoint.Checkpoint{Key: key, Owner: "w2", Lease: 3})
	unit := checkpoint.Key{Subscription: "sub", Unit: "bucket-1"}
	wantCheckpoint(t, "Claim of another unit", claim(t, s, unit, "w1"), checkpoint.Checkpoint{Key: unit, Owner: "w1", Lease: 1})
	wantCheckpoint(t, "Load after another unit's Claim", load(t, s, key), checkpoint.Checkpoint{Key: key, Owner: "w2", Lease: 3})
}

func testSaveLoadRoundTrip(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	key := checkpoint.Key{Subscription: "projections/orders", Unit: "t7"}
	cp := claim(t, s, key, "host-1/pid-42")
	for _, pos := range []string{
		`{"commitId":"20240101000000000:ac#1","aggregateId":"ac#1","version":3}`,
		`{"note":"Zoë ✓ 日本"}`,
		"",
		strings.Repeat("x", 64*1024),
	} {
		cp.Position = pos
		check := clockWindow(t)
		save(t, s, cp)
		got := load(t, s, key)
		wantCheckpoint(t, "Load after Save", got, cp)
		check("UpdatedAt", got.UpdatedAt)
	}
	cp.Position = "kept"
	save(t, s, cp)
	wantCheckpoint(t, "Claim after Save", claim(t, s, key, "host-2"),
		checkpoint.Checkpoint{Key: key, Position: "kept", Owner: "host-2", Lease: 2})
}

func testSaveFenced(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	old := claim(t, s, key, "w1")
	old.Position = "p1"
	save(t, s, old)
	cur := claim(t, s, key, "w2")

	stale := old
	stale.Position = "stale"
	wantFenced(t, s.Save(t.Context(), stale), key, "w2", 2, stale)

	staleLease := cur
	staleLease.Lease = old.Lease
	staleLease.Position = "stale lease"
	wantFenced(t, s.Save(t.Context(), staleLease), key, "w2", 2, staleLease)

	otherOwner := cur
	otherOwner.Owner = "w1"
	otherOwner.Position = "other owner"
	wantFenced(t, s.Save(t.Context(), otherOwner), key, "w2", 2, otherOwner)

	future := cur
	future.Lease = 3
	future.Position = "future lease"
	wantFenced(t, s.Save(t.Context(), future), key, "w2", 2, future)

	wantCheckpoint(t, "Load after fenced Saves", load(t, s, key), checkpoint.Checkpoint{Key: key, Position: "p1", Owner: "w2", Lease: 2})

	missing := checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "missing"}, Owner: "w1", Lease: 1, Position: "p"}
	if err := s.Save(t.Context(), missing); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Save of an unknown key = %v, want ErrNotFound", err)
	}
	if _, err := s.Load(t.Context(), missing.Key); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Load after a Save of an unknown key = %v, want ErrNotFound (Save must not create it)", err)
	}
}

func testConcurrentClaims(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	const rounds, claimers = 8, 4
	for r := range rounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%d", r)}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   [claimers]checkpoint.Checkpoint
			errs  [claimers]error
		)
		for i := range claimers {
			wg.Go(func() {
				<-start
				got[i], errs[i] = s.Claim(t.Context(), key, fmt.Sprintf("w%d", i))
			})
		}
		close(start)
		wg.Wait()
		var leases []int64
		winner := 0
		for i := range claimers {
			if errs[i] != nil {
				t.Fatalf("round %d: concurrent Claim %d: %v", r, i, errs[i])
			}
			leases = append(leases, got[i].Lease)
			if got[i].Lease > got[winner].Lease {
				winner = i
			}
		}
		slices.Sort(leases)
		for i, l := range leases {
			if l != int64(i+1) {
				t.Fatalf("round %d: leases %v, want 1 to %d, each once", r, leases, claimers)
			}
		}
		for i := range claimers {
			cp := got[i]
			cp.Position = fmt.Sprintf("by w%d", i)
			err := s.Save(t.Context(), cp)
			if i == winner {
				if err != nil {
					t.Fatalf("round %d: Save by the highest lease (w%d, %d): %v", r, i, cp.Lease, err)
				}
				continue
			}
			wantFenced(t, err, key, fmt.Sprintf("w%d", winner), claimers, cp)
		}
		wantCheckpoint(t, "Load", load(t, s, key), checkpoint.Checkpoint{
			Key: key, Position: fmt.Sprintf("by w%d", winner), Owner: fmt.Sprintf("w%d", winner), Lease: claimers})
	}
}

func testSaveRacesClaim(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	const rounds = 16
	saved, fenced := 0, 0
	for r := range rounds {
		key := checkpoint.Key{Subscription: "sub", Unit: fmt.Sprintf("r%02d", r)}
		holder := claim(t, s, key, "old")
		holder.Position = "p0"
		save(t, s, holder)
		holder.Position = "p1"
		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			saveErr  error
			claimed  checkpoint.Checkpoint
			claimErr error
		)
		wg.Go(func() { <-start; saveErr = s.Save(t.Context(), holder) })
		wg.Go(func() { <-start; claimed, claimErr = s.Claim(t.Context(), key, "new") })
		close(start)
		wg.Wait()
		if claimErr != nil {
			t.Fatalf("round %d: Claim: %v", r, claimErr)
		}
		if claimed.Lease != holder.Lease+1 || claimed.Owner != "new" {
			t.Fatalf("round %d: Claim returned owner %q lease %d, want %q lease %d", r, claimed.Owner, claimed.Lease, "new", holder.Lease+1)
		}
		final := load(t, s, key)
		want := checkpoint.Checkpoint{Key: key, Owner: "new", Lease: claimed.Lease}
		switch {
		case saveErr == nil:
			// The save came first: the claim must have seen it.
			saved++
			if claimed.Position != "p1" {
				t.Fatalf("round %d: Save succeeded but the Claim returned position %q: the save landed after the claim with the old lease", r, claimed.Position)
			}
			want.Position = "p1"
		case errors.Is(saveErr, checkpoint.ErrFenced):
			fenced++
			wantFenced(t, saveErr, key, "new", claimed.Lease, holder)
			want.Position = "p0"
			if claimed.Position != "p0" {
				t.Fatalf("round %d: Claim returned position %q, want %q", r, claimed.Position, "p0")
			}
		default:
			t.Fatalf("round %d: Save: %v", r, saveErr)
		}
		wantCheckpoint(t, fmt.Sprintf("round %d: Load after the race", r), final, want)
	}
	t.Logf("%d rounds: the save came first %d times, was fenced %d times", rounds, saved, fenced)
}

func setter(t *testing.T, s checkpoint.Store) checkpoint.Setter {
	t.Helper()
	st, ok := s.(checkpoint.Setter)
	if !ok {
		t.Skipf("%T does not implement checkpoint.Setter", s)
	}
	return st
}

func testReleaseThenSet(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	st := setter(t, s)
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	cp := claim(t, s, key, "w1")
	cp.Position = "p1"
	save(t, s, cp)
	if err := st.Release(ctx, cp); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantCheckpoint(t, "Load after Release", load(t, s, key), checkpoint.Checkpoint{Key: key, Position: "p1", Lease: 1})
	wantFenced(t, st.Release(ctx, cp), key, "", 1, cp)
	wantFenced(t, s.Save(ctx, cp), key, "", 1, cp)

	check := clockWindow(t)
	got, err := st.Set(ctx, key, "p2", false)
	if err != nil {
		t.Fatalf("Set without force of a released key: %v", err)
	}
	want := checkpoint.Checkpoint{Key: key, Position: "p2", Lease: 2}
	wantCheckpoint(t, "Set", got, want)
	check("UpdatedAt returned by Set", got.UpdatedAt)
	loaded := load(t, s, key)
	wantCheckpoint(t, "Load after Set", loaded, want)
	if !loaded.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("loaded UpdatedAt %v, Set returned %v", loaded.UpdatedAt, got.UpdatedAt)
	}
	wantCheckpoint(t, "Claim after Set", claim(t, s, key, "w2"), checkpoint.Checkpoint{Key: key, Position: "p2", Owner: "w2", Lease: 3})

	fresh := checkpoint.Key{Subscription: "sub", Unit: "fresh"}
	got, err = st.Set(ctx, fresh, "start-here", false)
	if err != nil {
		t.Fatalf("Set of an unknown key: %v", err)
	}
	wantCheckpoint(t, "Set of an unknown key", got, checkpoint.Checkpoint{Key: fresh, Position: "start-here", Lease: 1})
	got, err = st.Set(ctx, fresh, "", false)
	if err != nil {
		t.Fatalf("Set to an empty position: %v", err)
	}
	wantCheckpoint(t, "Set to an empty position", got, checkpoint.Checkpoint{Key: fresh, Lease: 2})

	missing := checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "missing"}, Owner: "w1", Lease: 1}
	if err := st.Release(ctx, missing); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Release of an unknown key = %v, want ErrNotFound", err)
	}
}

func testSetHeld(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	st := setter(t, s)
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	cp := claim(t, s, key, "w1")
	cp.Position = "p1"
	save(t, s, cp)

	_, err := st.Set(ctx, key, "p2", false)
	var he *checkpoint.HeldError
	if !errors.Is(err, checkpoint.ErrHeld) || !errors.As(err, &he) {
		t.Fatalf("Set without force of a held key = %v, want a *HeldError", err)
	}
	if *he != (checkpoint.HeldError{Key: key, Owner: "w1"}) {
		t.Errorf("HeldError = %+v, want owner w1", *he)
	}
	if !strings.HasPrefix(err.Error(), "checkpoint: ") || !strings.Contains(err.Error(), "w1") {
		t.Errorf("error text %q: want the prefix %q and the owner", err, "checkpoint: ")
	}
	wantCheckpoint(t, "Load after a refused Set", load(t, s, key), cp)

	got, err := st.Set(ctx, key, "p3", true)
	if err != nil {
		t.Fatalf("Set with force: %v", err)
	}
	wantCheckpoint(t, "Set with force", got, checkpoint.Checkpoint{Key: key, Position: "p3", Lease: 2})
	cp.Position = "p4"
	wantFenced(t, s.Save(ctx, cp), key, "", 2, cp)
	wantCheckpoint(t, "Load after the holder was fenced", load(t, s, key), checkpoint.Checkpoint{Key: key, Position: "p3", Lease: 2})
}

func testList(t *testing.T, s checkpoint.Store, _ checkpoint.ParkStore) {
	l, ok := s.(checkpoint.Lister)
	if !ok {
		t.Skipf("%T does not implement checkpoint.Lister", s)
	}
	ctx := t.Context()
	keys := []checkpoint.Key{
		{Subscription: "orders", Unit: "2"}, {Subscription: "orders#x"}, {Subscription: "billing", Unit: "x"},
		{Subscription: "orders", Unit: "10"}, {Subscription: "orders"}, {Subscription: "orders", Unit: "1"},
		{Subscription: "orders", Unit: "1#a"}, {Subscription: "orders-2", Unit: "é"},
	}
	want := map[checkpoint.Key]checkpoint.Checkpoint{}
	for i, k := range keys {
		cp := claim(t, s, k, fmt.Sprintf("w%d", i))
		cp.Position = fmt.Sprintf("p%d", i)
		save(t, s, cp)
		want[k] = cp
	}
	list := func(sub string) []checkpoint.Checkpoint {
		return collect(t, fmt.Sprintf("List(%q)", sub), l.List(ctx, sub))
	}
	check := func(sub string, got []checkpoint.Checkpoint, order []checkpoint.Key) {
		t.Helper()
		gotKeys := make([]checkpoint.Key, len(got))
		for i, cp := range got {
			gotKeys[i] = cp.Key
		}
		if !slices.Equal(gotKeys, order) {
			t.Fatalf("List(%q) keys = %v, want %v", sub, gotKeys, order)
		}
		for _, cp := range got {
			if d := same(cp, want[cp.Key]); d != "" {
				t.Errorf("List(%q): %s", sub, d)
			}
			if cp.UpdatedAt.IsZero() {
				t.Errorf("List(%q): %s has no UpdatedAt", sub, cp.Key)
			}
		}
	}
	check("orders", list("orders"), []checkpoint.Key{
		{Subscription: "orders"}, {Subscription: "orders", Unit: "1"}, {Subscription: "orders", Unit: "1#a"},
		{Subscription: "orders", Unit: "10"}, {Subscription: "orders", Unit: "2"},
	})
	all := slices.Clone(keys)
	slices.SortFunc(all, func(a, b checkpoint.Key) int {
		return cmp.Or(strings.Compare(a.Subscription, b.Subscription), strings.Compare(a.Unit, b.Unit))
	})
	check("", list(""), all)
	check("nobody", list("nobody"), nil)

	n := 0
	for _, err := range l.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		break
	}
	if n != 1 {
		t.Errorf("breaking out of List after one checkpoint saw %d", n)
	}
	for _, err := range l.List(ctx, "\xff") {
		if !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("List of a subscription that is not UTF-8 yielded %v, want ErrInvalidArgument", err)
		}
	}
}

// ---- parked commits

func testParkOrdering(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	// Aggregate ids that are prefixes of each other, contain '#', or the
	// bytes a sort key encoding might use as separators or escapes.
	aggs := []string{"ab", "a#1", "a", "a\x01b", "a\x00", "a#", "b", "日本"}
	versions := []int64{10, 2, 0, 1, 100}
	at := time.UnixMilli(1700000000123).UTC()
	var all []checkpoint.Parked
	for i, v := range versions {
		for j, agg := range aggs {
			p := checkpoint.Parked{
				Subscription: "sub",
				Commit:       commit(agg, v, fmt.Sprintf(`[{"type":"e","n":%d}]`, i)),
				Reason:       fmt.Sprintf("handler: boom %d/%d", i, j),
				Attempts:     i + j,
				ParkedAt:     at.Add(time.Duration(i*len(aggs)+j) * time.Millisecond),
			}
			park(t, ps, p)
			all = append(all, p)
		}
	}
	// Another subscription, whose name extends this one's.
	park(t, ps, checkpoint.Parked{Subscription: "sub#2", Commit: commit("a", 0, `[1]`), Reason: "other"})
	park(t, ps, checkpoint.Parked{Subscription: "su", Commit: commit("a", 0, `[1]`), Reason: "other"})

	sorted := slices.Clone(all)
	slices.SortFunc(sorted, func(a, b checkpoint.Parked) int {
		return cmp.Or(strings.Compare(a.Commit.AggregateID, b.Commit.AggregateID), cmp.Compare(a.Commit.Version, b.Commit.Version))
	})
	got := parked(t, ps, "sub", "")
	if !slices.Equal(parkedKeys(got), parkedKeys(sorted)) {
		t.Fatalf("Parked(sub, all) = %v\nwant %v", parkedKeys(got), parkedKeys(sorted))
	}
	for i := range got {
		wantParked(t, got[i], sorted[i])
	}
	for _, agg := range aggs {
		var want []checkpoint.Parked
		for _, p := range sorted {
			if p.Commit.AggregateID == agg {
				want = append(want, p)
			}
		}
		got := parked(t, ps, "sub", agg)
		if !slices.Equal(parkedKeys(got), parkedKeys(want)) {
			t.Errorf("Parked(sub, %q) = %v\nwant %v", agg, parkedKeys(got), parkedKeys(want))
		}
	}
	if got := parked(t, ps, "sub", "c"); len(got) != 0 {
		t.Errorf("Parked of an aggregate with nothing parked = %v", parkedKeys(got))
	}
	if got := parked(t, ps, "nobody", ""); len(got) != 0 {
		t.Errorf("Parked of a subscription with nothing parked = %v", parkedKeys(got))
	}
	if got := parked(t, ps, "sub#2", ""); len(got) != 1 || got[0].Reason != "other" {
		t.Errorf("Parked(sub#2) = %v, want its one commit", parkedKeys(got))
	}
}

func testParkIdempotent(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	p := checkpoint.Parked{Subscription: "sub", Commit: commit("acc-1", 3, `[{"a":1}]`), Reason: "first", Attempts: 1}
	check := clockWindow(t)
	park(t, ps, p)
	got := parked(t, ps, "sub", "acc-1")
	if len(got) != 1 {
		t.Fatalf("after one Park: %v", parkedKeys(got))
	}
	check("ParkedAt set by Park", got[0].ParkedAt)
	p.ParkedAt = got[0].ParkedAt
	wantParked(t, got[0], p)

	p.Reason, p.Attempts, p.ParkedAt = "second", 5, time.UnixMilli(1800000000000).UTC()
	park(t, ps, p)
	park(t, ps, p)
	got = parked(t, ps, "sub", "")
	if len(got) != 1 {
		t.Fatalf("after parking the same commit three times: %v", parkedKeys(got))
	}
	wantParked(t, got[0], p)

	// A long reason with invalid UTF-8 is stored cut and valid.
	p.Reason = "bad \xff byte " + strings.Repeat("é", checkpoint.MaxReasonBytes)
	park(t, ps, p)
	got = parked(t, ps, "sub", "acc-1")
	if len(got) != 1 {
		t.Fatalf("after parking a long reason: %v", parkedKeys(got))
	}
	if r := got[0].Reason; len(r) > checkpoint.MaxReasonBytes || len(r) < checkpoint.MaxReasonBytes-1 || !utf8.ValidString(r) || !strings.HasPrefix(r, "bad \uFFFD byte éé") {
		t.Errorf("stored reason: %d bytes, valid UTF-8 %v, starts %q; want %d bytes or one less, valid, starting %q",
			len(r), utf8.ValidString(r), r[:min(len(r), 20)], checkpoint.MaxReasonBytes, "bad \uFFFD byte éé")
	}
}

func testUnpark(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	ctx := t.Context()
	for v := range int64(3) {
		park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("a", v, `[1]`)})
		park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("a#1", v, `[1]`)})
	}
	if err := ps.Unpark(ctx, "sub", "a", 1); err != nil {
		t.Fatalf("Unpark: %v", err)
	}
	want := []string{`sub:"a"@0`, `sub:"a"@2`, `sub:"a#1"@0`, `sub:"a#1"@1`, `sub:"a#1"@2`}
	if got := parkedKeys(parked(t, ps, "sub", "")); !slices.Equal(got, want) {
		t.Errorf("after Unpark(a, 1): %v, want %v", got, want)
	}
	for _, tc := range []struct {
		sub, agg string
		v        int64
	}{{"sub", "a", 1}, {"sub", "a", 7}, {"sub", "zz", 0}, {"nobody", "a", 0}} {
		if err := ps.Unpark(ctx, tc.sub, tc.agg, tc.v); err != nil {
			t.Errorf("Unpark(%q, %q, %d) of nothing = %v, want nil", tc.sub, tc.agg, tc.v, err)
		}
	}
	if got := parkedKeys(parked(t, ps, "sub", "")); !slices.Equal(got, want) {
		t.Errorf("after Unparks of nothing: %v, want %v", got, want)
	}
}

func testParkedManyPages(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	// 60 commits of 20 KB: 1.2 MB, more than one DynamoDB page (1 MB).
	const n, size = 60, 20 * 1024
	events := `["` + strings.Repeat("x", size) + `"]`
	var wg sync.WaitGroup
	errs := make([]error, n)
	for v := range n {
		wg.Go(func() {
			errs[v] = ps.Park(t.Context(), checkpoint.Parked{Subscription: "sub", Commit: commit("big", int64(v), events), Reason: "r"})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("big#", 0, `[1]`)})
	park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("bi", 0, `[1]`)})
	for _, agg := range []string{"big", ""} {
		got := parked(t, ps, "sub", agg)
		var want []string
		if agg == "" {
			want = append(want, `sub:"bi"@0`)
		}
		for v := range n {
			want = append(want, fmt.Sprintf(`sub:"big"@%d`, v))
		}
		if agg == "" {
			want = append(want, `sub:"big#"@0`)
		}
		if !slices.Equal(parkedKeys(got), want) {
			t.Fatalf("Parked(sub, %q): %d commits %v\nwant %d", agg, len(got), parkedKeys(got), len(want))
		}
		for _, p := range got {
			if p.Commit.AggregateID == "big" && string(p.Commit.Events) != events {
				t.Fatalf("Parked(sub, %q): events of version %d are %d bytes, want %d", agg, p.Commit.Version, len(p.Commit.Events), len(events))
			}
		}
	}
}

func testParkedEarlyBreak(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	for v := range int64(5) {
		park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("a", v, `[1]`)})
	}
	var got []int64
	for p, err := range ps.Parked(t.Context(), "sub", "a") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Commit.Version)
		if len(got) == 2 {
			break
		}
	}
	if !slices.Equal(got, []int64{0, 1}) {
		t.Errorf("breaking after two: %v", got)
	}
}

// ---- input rules

func testInvalidInput(t *testing.T, s checkpoint.Store, ps checkpoint.ParkStore) {
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	held := claim(t, s, key, "w1")
	held.Position = "p0"
	save(t, s, held)
	with := func(f func(*checkpoint.Checkpoint)) checkpoint.Checkpoint {
		cp := held
		cp.Position = "moved"
		f(&cp)
		return cp
	}
	long := strings.Repeat("n", checkpoint.MaxNameBytes+1)
	good := commit("agg", 0, `[1]`)
	withCommit := func(f func(*store.Commit)) store.Commit {
		c := good
		f(&c)
		return c
	}
	seqErr := func(seq func(func(checkpoint.Parked, error) bool)) error {
		for _, err := range seq {
			if err != nil {
				return err
			}
		}
		return nil
	}
	type tc struct {
		name string
		call func() error
	}
	cases := []tc{
		{"Claim empty subscription", func() error { _, err := s.Claim(ctx, checkpoint.Key{Unit: "u"}, "w1"); return err }},
		{"Claim subscription too long", func() error { _, err := s.Claim(ctx, checkpoint.Key{Subscription: long}, "w1"); return err }},
		{"Claim unit too long", func() error {
			_, err := s.Claim(ctx, checkpoint.Key{Subscription: "sub", Unit: long}, "w1")
			return err
		}},
		{"Claim unit not UTF-8", func() error {
			_, err := s.Claim(ctx, checkpoint.Key{Subscription: "sub", Unit: "\xff"}, "w1")
			return err
		}},
		{"Claim subscription not UTF-8", func() error { _, err := s.Claim(ctx, checkpoint.Key{Subscription: "s\xc3"}, "w1"); return err }},
		{"Claim empty owner", func() error { _, err := s.Claim(ctx, key, ""); return err }},
		{"Claim owner not UTF-8", func() error { _, err := s.Claim(ctx, key, "w\xff"); return err }},
		{"Save empty subscription", func() error { return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Subscription = "" })) }},
		{"Save empty owner", func() error { return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Owner = "" })) }},
		{"Save lease 0", func() error { return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Lease = 0 })) }},
		{"Save negative lease", func() error { return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Lease = -1 })) }},
		{"Save position not UTF-8", func() error { return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Position = "\xff" })) }},
		{"Save position too long", func() error {
			return s.Save(ctx, with(func(c *checkpoint.Checkpoint) { c.Position = strings.Repeat("p", checkpoint.MaxPositionBytes+1) }))
		}},
		{"Load empty subscription", func() error { _, err := s.Load(ctx, checkpoint.Key{Unit: "u"}); return err }},
		{"Park empty subscription", func() error { return ps.Park(ctx, checkpoint.Parked{Commit: good}) }},
		{"Park empty aggregate id", func() error {
			return ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: withCommit(func(c *store.Commit) { c.AggregateID = "" })})
		}},
		{"Park aggregate id not UTF-8", func() error {
			return ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: withCommit(func(c *store.Commit) { c.AggregateID = "a\xff" })})
		}},
		{"Park aggregate id too long", func() error {
			return ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: withCommit(func(c *store.Commit) {
				c.AggregateID = strings.Repeat("a", store.MaxAggregateIDBytes+1)
			})})
		}},
		{"Park negative version", func() error {
			return ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: withCommit(func(c *store.Commit) { c.Version = -1 })})
		}},
		{"Park negative attempts", func() error { return ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: good, Attempts: -1}) }},
		{"Parked empty subscription", func() error { return seqErr(ps.Parked(ctx, "", "")) }},
		{"Parked aggregate id not UTF-8", func() error { return seqErr(ps.Parked(ctx, "sub", "\xff")) }},
		{"Unpark empty subscription", func() error { return ps.Unpark(ctx, "", "agg", 0) }},
		{"Unpark empty aggregate id", func() error { return ps.Unpark(ctx, "sub", "", 0) }},
		{"Unpark negative version", func() error { return ps.Unpark(ctx, "sub", "agg", -1) }},
	}
	if st, ok := s.(checkpoint.Setter); ok {
		cases = append(cases,
			tc{"Set empty subscription", func() error { _, err := st.Set(ctx, checkpoint.Key{Unit: "u"}, "p", true); return err }},
			tc{"Set unit not UTF-8", func() error {
				_, err := st.Set(ctx, checkpoint.Key{Subscription: "sub", Unit: "u\xff"}, "p", true)
				return err
			}},
			tc{"Set position not UTF-8", func() error { _, err := st.Set(ctx, key, "\xff", true); return err }},
			tc{"Set position too long", func() error {
				_, err := st.Set(ctx, key, strings.Repeat("p", checkpoint.MaxPositionBytes+1), true)
				return err
			}},
			tc{"Release empty owner", func() error { return st.Release(ctx, with(func(c *checkpoint.Checkpoint) { c.Owner = "" })) }},
			tc{"Release lease 0", func() error { return st.Release(ctx, with(func(c *checkpoint.Checkpoint) { c.Lease = 0 })) }},
		)
	}
	if l, ok := s.(checkpoint.Lister); ok {
		cases = append(cases, tc{"List subscription not UTF-8", func() error {
			for _, err := range l.List(ctx, "s\xff") {
				if err != nil {
					return err
				}
			}
			return nil
		}})
	}
	for _, c := range cases {
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
	wantCheckpoint(t, "Load after rejected calls", load(t, s, key), held)
	if got := parked(t, ps, "sub", ""); len(got) != 0 {
		t.Errorf("rejected Parks stored %v", parkedKeys(got))
	}
	if l, ok := s.(checkpoint.Lister); ok {
		got := collect(t, "List", l.List(ctx, ""))
		if len(got) != 1 || got[0].Key != key {
			t.Errorf("after rejected calls List = %v, want only %s", got, key)
		}
	}
}

func testCancelledContext(t *testing.T, s checkpoint.Store, ps checkpoint.ParkStore) {
	key := checkpoint.Key{Subscription: "sub"}
	held := claim(t, s, key, "w1")
	park(t, ps, checkpoint.Parked{Subscription: "sub", Commit: commit("a", 0, `[1]`)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wantCancelled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", what, err)
		}
	}
	_, err := s.Claim(ctx, key, "w2")
	wantCancelled("Claim", err)
	held.Position = "moved"
	wantCancelled("Save", s.Save(ctx, held))
	_, err = s.Load(ctx, key)
	wantCancelled("Load", err)
	wantCancelled("Park", ps.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: commit("a", 1, `[1]`)}))
	wantCancelled("Unpark", ps.Unpark(ctx, "sub", "a", 0))
	n := 0
	for _, err := range ps.Parked(ctx, "sub", "") {
		n++
		wantCancelled("Parked", err)
	}
	if n != 1 {
		t.Errorf("Parked with a cancelled context yielded %d times, want once (the error)", n)
	}
	held.Position = ""
	wantCheckpoint(t, "Load after cancelled calls", load(t, s, key), held)
	if got := parkedKeys(parked(t, ps, "sub", "")); !slices.Equal(got, []string{`sub:"a"@0`}) {
		t.Errorf("after cancelled calls: %v", got)
	}
}
