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

// TestSkewedWritersWithinSettleAreDeliveredInOrder: writers whose clocks lag
// by up to the settle time write commit ids in the past; the watermark holds
// the reader back long enough that none is passed over, and no repair is
// needed.
func TestSkewedWritersWithinSettleAreDeliveredInOrder(t *testing.T) {
	settle := 400 * time.Millisecond
	base := newTable(t, store.Config{})
	writersFor := func(skew time.Duration) *store.Store {
		s, err := store.New(ddbtest.Client(t), store.Config{TableName: base.Config().TableName,
			Clock: func() time.Time { return time.Now().Add(-skew) }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	skewed := []*store.Store{writersFor(0), writersFor(settle / 2), writersFor(settle * 9 / 10)}
	cnt := &counters{}
	rec := newRecorder()
	opts := fast
	opts.Settle, opts.Overlap = settle, -1 // no sweep: the watermark alone must do
	stop := startWorker(t, Config{Reader: base, Checkpoints: memcheckpoint.New(), Hooks: []any{cnt}},
		Subscription{Name: "skew", Handler: rec, Index: opts})
	want := map[string]int64{}
	ctx := context.Background()
	for i := range 150 {
		id := []string{"a", "b", "c", "d", "e"}[i%5]
		// Round-robin over the skewed writers, so each aggregate's commit
		// ids jump back and forth by up to 0.9 × settle.
		if _, err := skewed[i%3].Append(ctx, store.Commit{AggregateID: id, Version: want[id], Events: deposit(t)}); err != nil {
			t.Fatal(err)
		}
		want[id]++
	}
	ddbtest.Eventually(t, 20*time.Second, func() bool { return covers(rec.delivered(), want) }, "not all delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)
	if n := cnt.late.Load(); n != 0 {
		t.Fatalf("%d late arrivals; the settle time should have covered the skew", n)
	}
}

// TestLateArrivalBeyondSettleIsDeliveredBySweep hides a commit from the
// index until the reader has moved well past it: the sweep, Overlap behind
// the watermark, finds and delivers it, counted as late.
func TestLateArrivalBeyondSettleIsDeliveredBySweep(t *testing.T) {
	s := newTable(t, store.Config{})
	reader := &withholdingReader{Store: s}
	cnt := &counters{}
	rec := newRecorder()
	opts := fast
	opts.Overlap = 3 * time.Second
	stop := startWorker(t, Config{Reader: reader, Checkpoints: memcheckpoint.New(), Hooks: []any{cnt}},
		Subscription{Name: "late", Handler: rec, Index: opts})
	ctx := context.Background()
	late, err := s.Append(ctx, store.Commit{AggregateID: "late", Version: 0, Events: deposit(t)})
	if err != nil {
		t.Fatal(err)
	}
	reader.hide(late.Position())
	for i := range 5 {
		if _, err := s.Append(ctx, store.Commit{AggregateID: "other", Version: int64(i), Events: deposit(t)}); err != nil {
			t.Fatal(err)
		}
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["other"] == 5 }, "later commits not delivered")
	if rec.delivered()["late"] != 0 {
		t.Fatal("a hidden commit was delivered")
	}
	reader.reveal(late.Position()) // visible now, well after the watermark passed it
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["late"] == 1 }, "the late commit was never delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if cnt.late.Load() != 1 {
		t.Fatalf("late arrivals counted: %d, want 1", cnt.late.Load())
	}
	rec.check(t, map[string]int64{"late": 1, "other": 5})
}

// TestLateArrivalBeyondOverlapIsRepairedByItsSuccessor hides a commit for
// good (later than settle + overlap: the sweep cannot see it). When its
// aggregate gets a later commit, the gap is repaired from the table, in
// order. Until then it is not delivered: the one case the index cannot
// detect.
func TestLateArrivalBeyondOverlapIsRepairedByItsSuccessor(t *testing.T) {
	s := newTable(t, store.Config{})
	reader := &withholdingReader{Store: s}
	cnt := &counters{}
	rec := newRecorder()
	opts := fast
	opts.Overlap = -1 // no sweep: only repair can find it
	stop := startWorker(t, Config{Reader: reader, Checkpoints: memcheckpoint.New(), Hooks: []any{cnt}},
		Subscription{Name: "repair", Handler: rec, Index: opts})
	ctx := context.Background()
	if _, err := s.Append(ctx, store.Commit{AggregateID: "acc", Version: 0, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["acc"] == 1 }, "version 0 not delivered")
	lost, err := s.Append(ctx, store.Commit{AggregateID: "acc", Version: 1, Events: deposit(t)})
	if err != nil {
		t.Fatal(err)
	}
	reader.hide(lost.Position())
	if _, err := s.Append(ctx, store.Commit{AggregateID: "x", Version: 0, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["x"] == 1 }, "x not delivered")
	if rec.delivered()["acc"] != 1 {
		t.Fatal("the hidden version was delivered without its successor")
	}
	if _, err := s.Append(ctx, store.Commit{AggregateID: "acc", Version: 2, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["acc"] == 3 }, "the gap was not repaired")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, map[string]int64{"acc": 3, "x": 1})
	if cnt.repaired.Load() != 1 {
		t.Fatalf("repairs counted: %d, want 1", cnt.repaired.Load())
	}
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
