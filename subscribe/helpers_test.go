package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// newTable creates a fresh commits table for the test.
func newTable(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	client := ddbtest.Client(t)
	cfg.TableName = ddbtest.TableName(t)
	if err := store.CreateTable(context.Background(), client, cfg, store.TableOptions{NoStream: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	s, err := store.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recorder is a handler that checks per-aggregate order as it goes: each
// aggregate's versions must come as 0, 1, 2, … with nothing missing; a
// version seen before is a duplicate.
type recorder struct {
	mu         sync.Mutex
	next       map[string]int64
	total      int
	duplicates int
	violations []string
	commits    []Commit
	delay      func() time.Duration
	keep       bool
}

func newRecorder() *recorder { return &recorder{next: map[string]int64{}} }

func (r *recorder) Handle(ctx context.Context, c Commit) error {
	if r.delay != nil {
		select {
		case <-time.After(r.delay()):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.next[c.AggregateID]
	switch {
	case c.Version < next:
		r.duplicates++
	case c.Version > next:
		r.violations = append(r.violations, fmt.Sprintf("%s: got version %d, expected %d", c.AggregateID, c.Version, next))
		r.next[c.AggregateID] = c.Version + 1
	default:
		r.next[c.AggregateID] = c.Version + 1
	}
	r.total++
	if r.keep {
		r.commits = append(r.commits, c)
	}
	return nil
}

// delivered returns how many distinct versions of each aggregate arrived.
func (r *recorder) delivered() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.next))
	for k, v := range r.next {
		out[k] = v
	}
	return out
}

func (r *recorder) check(t testing.TB, want map[string]int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.violations) > 0 {
		t.Fatalf("per-aggregate order broken %d times: %v", len(r.violations), r.violations[:min(5, len(r.violations))])
	}
	for id, n := range want {
		if r.next[id] != n {
			t.Fatalf("aggregate %s: delivered up to version %d, table has %d versions", id, r.next[id], n)
		}
	}
	if len(r.next) != len(want) {
		t.Fatalf("delivered %d aggregates, table has %d", len(r.next), len(want))
	}
}

// writers appends n commits in all to aggregates agg-0 … agg-(aggs-1) from
// several goroutines, each commit a deposit, resolving version conflicts as
// a real writer would. It returns the versions per aggregate.
func writers(t testing.TB, ctx context.Context, s *store.Store, goroutines, aggs, n int) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	next := map[string]int64{}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range n / goroutines {
				id := fmt.Sprintf("agg-%d", rng.IntN(aggs))
				for {
					mu.Lock()
					v := next[id]
					mu.Unlock()
					ev, _ := json.Marshal([]map[string]any{{"type": "deposited", "amount": i%7 + 1}})
					_, err := s.Append(ctx, store.Commit{AggregateID: id, Version: v, Events: ev})
					if err == nil {
						mu.Lock()
						if next[id] <= v {
							next[id] = v + 1
						}
						mu.Unlock()
						break
					}
					if !isConflict(err) {
						errs <- err
						return
					}
					mu.Lock()
					if next[id] <= v {
						next[id] = v + 1
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return next
}

func isConflict(err error) bool {
	_, ok := err.(*store.VersionConflictError)
	return ok
}

func checkpointKey(sub string) checkpoint.Key { return checkpoint.Key{Subscription: sub} }

// covers reports whether got has every version of want.
func covers(got, want map[string]int64) bool {
	for id, n := range want {
		if got[id] < n {
			return false
		}
	}
	return true
}
