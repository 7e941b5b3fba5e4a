package subscribe

import (
	"context"
	"encoding/json"
	"iter"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// withholdingReader hides chosen commits from Scan (the eventually
// consistent index) until they are revealed, while Query (a strongly
// consistent table read) sees them: the late arrival of DESIGN.md §4.1.
type withholdingReader struct {
	*store.Store
	mu     sync.Mutex
	hidden map[store.Position]bool
}

func (r *withholdingReader) hide(p store.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hidden == nil {
		r.hidden = map[store.Position]bool{}
	}
	r.hidden[p] = true
}

func (r *withholdingReader) reveal(p store.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.hidden, p)
}

func (r *withholdingReader) Scan(ctx context.Context, after store.Position, optFns ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error] {
	return func(yield func(store.Commit, error) bool) {
		for c, err := range r.Store.Scan(ctx, after, optFns...) {
			r.mu.Lock()
			h := err == nil && r.hidden[c.Position()]
			r.mu.Unlock()
			if h {
				continue
			}
			if !yield(c, err) {
				return
			}
		}
	}
}

// counters counts late arrivals, gap repairs and duplicates.
type counters struct {
	late, repaired, dups atomic.Int64
}

func (c *counters) OnLateArrival(string, Commit) { c.late.Add(1) }
func (c *counters) OnGapRepair(_, _ string, _, _ int64, found int) {
	c.repaired.Add(int64(found))
}
func (c *counters) OnDuplicate(string, Commit) { c.dups.Add(1) }

func deposit(t testing.TB) json.RawMessage {
	b, err := store.MarshalEvents(map[string]any{"type": "deposited", "amount": 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startWorker(t *testing.T, cfg Config, sub Subscription) (stop func() error) {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestWatermarkHoldsBackRecentCommits uses a clock the test controls: a
// commit whose id is within Settle of the worker's now is not read until the
// clock moves on.
func TestWatermarkHoldsBackRecentCommits(t *testing.T) {
	var nowMilli atomic.Int64
	t0 := time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)
	nowMilli.Store(t0.UnixMilli())
	clock := func() time.Time { return time.UnixMilli(nowMilli.Load()).UTC() }
	s := newTable(t, store.Config{Clock: clock})
	rec := newRecorder()
	opts := fast
	opts.Settle = time.Second
	stop := startWorker(t, Config{Reader: s, Checkpoints: memcheckpoint.New(), Clock: clock},
		Subscription{Name: "wm", Handler: rec, Index: opts})
	if _, err := s.Append(context.Background(), store.Commit{AggregateID: "a", Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	nowMilli.Add(999) // still inside the settle time
	time.Sleep(300 * time.Millisecond)
	if rec.delivered()["a"] != 0 {
		t.Fatal("a commit newer than the watermark was delivered")
	}
	nowMilli.Add(2) // now − settle has passed the commit
	ddbtest.Eventually(t, 5*time.Second, func() bool { return rec.delivered()["a"] == 1 }, "the commit was not delivered once settled")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
