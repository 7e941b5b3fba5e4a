package store_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// fixedClock returns a clock stopped at t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// head calls Head and fails the test on error.
func head(t *testing.T, s *store.Store) (store.Position, bool) {
	t.Helper()
	p, ok, err := s.Head(t.Context())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return p, ok
}

func TestHeadOfEmptyTable(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 4} {
		s, _ := setup(t, store.Config{IndexBuckets: buckets})
		if p, ok := head(t, s); ok || !p.IsZero() {
			t.Errorf("%d buckets: Head of an empty table = %v, %v; want the zero position, false", buckets, p, ok)
		}
	}
}

func TestHeadOfMissingTable(t *testing.T) {
	t.Parallel()
	s, err := store.New(ddbtest.Client(t), store.Config{TableName: ddbtest.TableName(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Head(t.Context()); !errors.Is(err, store.ErrTableNotFound) {
		t.Fatalf("Head of a missing table = %v, want ErrTableNotFound", err)
	}
}

// TestHeadAcrossBuckets: with a bucketed index, the latest commit is in
// one bucket while others hold more, and more recently appended, commits:
// Head returns the greatest position over all buckets.
func TestHeadAcrossBuckets(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	cfg := store.Config{IndexBuckets: 4, Clock: fixedClock(t0)}
	s, client := setup(t, cfg)
	ctx := t.Context()
	// A writer whose clock runs ahead appends one commit first.
	aheadCfg := s.Config()
	aheadCfg.Clock = fixedClock(t0.Add(10 * time.Second))
	ahead, err := store.New(client, aheadCfg)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := ahead.Append(ctx, store.Commit{AggregateID: "late-writer", Events: events(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// Then many commits, in every bucket but the latest one's too, from
	// the writer whose clock is behind.
	used := map[string]bool{}
	for i := range 40 {
		id := fmt.Sprintf("agg-%02d", i)
		used[s.Bucket(id)] = true
		if _, err := s.Append(ctx, store.Commit{AggregateID: id, Events: events(t, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(used) != 4 {
		t.Fatalf("the commits fill %d buckets, want 4", len(used))
	}
	p, ok := head(t, s)
	if !ok || p != latest.Position() {
		t.Fatalf("Head = %v, %v; want %v (bucket %s)", p, ok, latest.Position(), s.Bucket(latest.AggregateID))
	}

	// A later commit in another bucket becomes the head.
	aheadCfg.Clock = fixedClock(t0.Add(20 * time.Second))
	later, err := store.New(client, aheadCfg)
	if err != nil {
		t.Fatal(err)
	}
	id := "agg-00"
	for s.Bucket(id) == s.Bucket(latest.AggregateID) {
		id += "x"
	}
	next, err := later.Append(ctx, store.Commit{AggregateID: id, Version: 1, Events: events(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := head(t, s); !ok || p != next.Position() {
		t.Fatalf("Head after a later commit = %v, %v; want %v", p, ok, next.Position())
	}

	// HeadOf: the latest commit of each bucket alone.
	if p, ok, err := s.HeadOf(ctx, s.Bucket(latest.AggregateID)); err != nil || !ok || p != latest.Position() {
		t.Errorf("HeadOf(the first late commit's bucket) = %v, %v, %v; want %v", p, ok, err, latest.Position())
	}
	if p, ok, err := s.HeadOf(ctx, s.Bucket(id)); err != nil || !ok || p != next.Position() {
		t.Errorf("HeadOf(the later commit's bucket) = %v, %v, %v; want %v", p, ok, err, next.Position())
	}
	if _, _, err := s.HeadOf(ctx, "no-such-bucket"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("HeadOf(a bucket not the store's) = %v; want ErrInvalidArgument", err)
	}
}

// TestHeadOfCommitsSharingACommitID: many commits of one aggregate appended
// within one millisecond share a commit id, and the index returns them in
// no particular version order: Head returns the greatest version, however
// long the run.
func TestHeadOfCommitsSharingACommitID(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 25} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			at := time.Date(2030, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
			s, _ := setup(t, store.Config{Clock: fixedClock(at)})
			ctx := t.Context()
			// An aggregate sorting before "run" in the same millisecond,
			// and the run itself, appended in an order that is not the
			// version order's.
			if _, err := s.Append(ctx, store.Commit{AggregateID: "a", Events: events(t, 1)}); err != nil {
				t.Fatal(err)
			}
			var want store.Position
			for i := range n {
				v := int64((i*7 + 3) % n) // a permutation of 0 … n-1
				c, err := s.Append(ctx, store.Commit{AggregateID: "run", Version: v, Events: events(t, i)})
				if err != nil {
					t.Fatal(err)
				}
				if v == int64(n-1) {
					want = c.Position()
				}
			}
			if p, ok := head(t, s); !ok || p != want {
				t.Fatalf("Head = %v, %v; want %v", p, ok, want)
			}
		})
	}
}
