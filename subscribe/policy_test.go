package subscribe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// quickRetry keeps failing tests fast.
var quickRetry = RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, AttemptTimeout: 5 * time.Second}

// appendN appends versions 0 … n-1 to each aggregate, interleaved.
func appendN(t testing.TB, s *store.Store, aggs []string, n int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	for v := range n {
		for _, id := range aggs {
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: int64(v), Events: deposit(t)}); err != nil {
				t.Fatal(err)
			}
			want[id] = int64(v + 1)
		}
	}
	return want
}

type policyHooks struct {
	mu              sync.Mutex
	parked, skipped []string
	retries         []time.Duration
	stopped         error
}

func (h *policyHooks) OnParked(_ string, c Commit, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.parked = append(h.parked, fmt.Sprintf("%s#%d", c.AggregateID, c.Version))
}
func (h *policyHooks) OnSkipped(_ string, c Commit, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.skipped = append(h.skipped, fmt.Sprintf("%s#%d", c.AggregateID, c.Version))
}
func (h *policyHooks) OnRetry(_ string, _ Commit, _ int, d time.Duration, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retries = append(h.retries, d)
}
func (h *policyHooks) OnStopped(_ string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = err
}

// TestPoisonAggregateIsParkedInOrderThenReplayed: one aggregate's handler
// always fails from version 2 on. It is parked with its later commits, in
// order, while every other aggregate finishes; after a fix, Replay delivers
// the parked commits in order and the aggregate goes on as usual.
func TestPoisonAggregateIsParkedInOrderThenReplayed(t *testing.T) {
	s := newTable(t, store.Config{})
	mem := memcheckpoint.New()
	var fixed atomic.Bool
	rec := newRecorder()
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if c.AggregateID == "poison" && c.Version >= 2 && !fixed.Load() {
			return errors.New("cannot handle this yet")
		}
		return rec.Handle(ctx, c)
	})
	hooks := &policyHooks{}
	w, err := NewWorker(Config{Reader: s, Checkpoints: mem, Hooks: []any{hooks}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "p", Handler: h, Index: fast, Retry: quickRetry}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	aggs := []string{"poison"}
	for i := range 19 {
		aggs = append(aggs, fmt.Sprintf("ok-%d", i))
	}
	want := appendN(t, s, aggs, 5)
	healthy := map[string]int64{}
	for id, n := range want {
		if id != "poison" {
			healthy[id] = n
		}
	}
	ddbtest.Eventually(t, 20*time.Second, func() bool { return covers(rec.delivered(), healthy) }, "healthy aggregates did not finish")
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		return len(hooks.parked) == 3
	}, "poison's commits were not parked")
	if got := rec.delivered()["poison"]; got != 2 {
		t.Fatalf("poison delivered up to %d, want 2 (versions 0 and 1)", got)
	}
	var parked []int64
	for p, err := range mem.Parked(ctx, "p", "") {
		if err != nil {
			t.Fatal(err)
		}
		if p.Commit.AggregateID != "poison" {
			t.Fatalf("parked %s", p.Commit.AggregateID)
		}
		parked = append(parked, p.Commit.Version)
	}
	if !slices.Equal(parked, []int64{2, 3, 4}) {
		t.Fatalf("parked versions %v, want [2 3 4]", parked)
	}
	if hs := w.Health(); hs[0].Parked != 1 || hs[0].State != StateRunning {
		t.Fatalf("health %+v, want running with 1 parked aggregate", hs[0])
	}

	// A replay that still fails leaves everything parked.
	if _, err := w.Replay(ctx, "p", "poison"); err == nil {
		t.Fatal("replay of a still-failing aggregate succeeded")
	}
	fixed.Store(true)
	n, err := w.Replay(ctx, "p", "poison")
	if err != nil || n != 3 {
		t.Fatalf("replay = %d, %v; want 3", n, err)
	}
	if got := rec.delivered()["poison"]; got != 5 {
		t.Fatalf("after replay poison is at %d, want 5", got)
	}
	for range mem.Parked(ctx, "p", "poison") {
		t.Fatal("commits still parked after a successful replay")
	}
	// The aggregate's next commit is handled as usual.
	if _, err := s.Append(ctx, store.Commit{AggregateID: "poison", Version: 5, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["poison"] == 6 }, "poison's next commit was not handled")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want["poison"] = 6
	rec.check(t, want)
	if _, err := w.Replay(ctx, "nope", "x"); !errors.Is(err, ErrUnknownSubscription) {
		t.Fatalf("replay of an unknown subscription: %v", err)
	}
}

func TestPolicyStopHaltsAndKeepsTheCommit(t *testing.T) {
	s := newTable(t, store.Config{})
	mem := memcheckpoint.New()
	fail := errors.New("bad commit")
	var failing atomic.Bool
	failing.Store(true)
	rec := newRecorder()
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if c.AggregateID == "b" && c.Version == 1 && failing.Load() {
			return fail
		}
		return rec.Handle(ctx, c)
	})
	hooks := &policyHooks{}
	w, err := NewWorker(Config{Reader: s, Checkpoints: mem, Hooks: []any{hooks}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "st", Handler: h, Index: fast, Retry: quickRetry, Policy: PolicyStop, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, []string{"a", "b"}, 3)
	t0 := time.Now()
	runErr := w.Run(context.Background())
	if el := time.Since(t0); el > 10*time.Second {
		t.Fatalf("Run took %v to return after the stop; the drain must not wait for the stopped aggregate", el)
	}
	var se *StoppedError
	if !errors.As(runErr, &se) || !errors.Is(runErr, ErrStopped) || !errors.Is(runErr, fail) || se.AggregateID != "b" || se.Version != 1 {
		t.Fatalf("Run = %v, want a StoppedError at b#1", runErr)
	}
	if hs := w.Health(); hs[0].State != StateStopped || !errors.Is(hs[0].Err, ErrStopped) {
		t.Fatalf("health %+v", hs[0])
	}
	if !errors.Is(hooks.stopped, ErrStopped) {
		t.Fatalf("stop hook saw %v", hooks.stopped)
	}
	if rec.delivered()["b"] != 1 {
		t.Fatalf("b delivered to %d after the stop, want 1", rec.delivered()["b"])
	}
	// A new worker resumes from the checkpoint and meets b#1 again.
	failing.Store(false)
	w2, _ := NewWorker(Config{Reader: s, Checkpoints: mem})
	if err := w2.Register(Subscription{Name: "st", Handler: h, Index: fast, Retry: quickRetry, Policy: PolicyStop}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w2.Run(ctx) }()
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["b"] == 3 }, "b#1 was not delivered after the restart")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.check(t, map[string]int64{"a": 3, "b": 3})
}

func TestSkipPolicyAndSkipError(t *testing.T) {
	s := newTable(t, store.Config{})
	hooks := &policyHooks{}
	var seen sync.Map
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		seen.Store(fmt.Sprintf("%s#%d", c.AggregateID, c.Version), true)
		switch {
		case c.AggregateID == "a" && c.Version == 1:
			return Skip(errors.New("not for us"))
		case c.AggregateID == "b" && c.Version == 0:
			return errors.New("always fails")
		}
		return nil
	})
	stop := startWorker(t, Config{Reader: s, Checkpoints: memcheckpoint.New(), Hooks: []any{hooks}},
		Subscription{Name: "sk", Handler: h, Index: fast, Retry: quickRetry, Policy: PolicySkip})
	appendN(t, s, []string{"a", "b"}, 3)
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		_, a := seen.Load("a#2")
		_, b := seen.Load("b#2")
		return a && b
	}, "aggregates did not go on after skips")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(hooks.skipped)
	if !slices.Equal(hooks.skipped, []string{"a#1", "b#0"}) {
		t.Fatalf("skipped %v, want [a#1 b#0]", hooks.skipped)
	}
	// Skip(err) skips at once: one retry budget spent only on b#0.
	if len(hooks.retries) != quickRetry.MaxAttempts-1 {
		t.Fatalf("%d retries, want %d (b#0's only)", len(hooks.retries), quickRetry.MaxAttempts-1)
	}
}

func TestPanicAndRetryAfterAreRetried(t *testing.T) {
	s := newTable(t, store.Config{})
	hooks := &policyHooks{}
	var calls atomic.Int32
	rec := newRecorder()
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		switch calls.Add(1) {
		case 1:
			panic("handler bug")
		case 2:
			return RetryAfter(120*time.Millisecond, errors.New("rate limited"))
		}
		return rec.Handle(ctx, c)
	})
	stop := startWorker(t, Config{Reader: s, Checkpoints: memcheckpoint.New(), Hooks: []any{hooks}},
		Subscription{Name: "pr", Handler: h, Index: fast, Retry: RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond}})
	appendN(t, s, []string{"a"}, 1)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["a"] == 1 }, "not delivered after a panic and a retry-after")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(hooks.retries) != 2 || hooks.retries[1] != 120*time.Millisecond {
		t.Fatalf("retries %v, want two, the second after 120ms", hooks.retries)
	}
	if len(hooks.parked) != 0 {
		t.Fatalf("parked %v", hooks.parked)
	}
}

func TestBatchHandlerGetsOneAggregatesRunsAndPartialFailures(t *testing.T) {
	s := newTable(t, store.Config{})
	appendN(t, s, []string{"a", "b"}, 10)
	var mu sync.Mutex
	var batches [][]Commit
	failedOnce := false
	rec := newRecorder()
	h := BatchHandlerFunc(func(ctx context.Context, cs []Commit) error {
		mu.Lock()
		first := len(batches) == 0
		batches = append(batches, cs)
		mu.Unlock()
		if first {
			// Hold the first call until every commit is queued, so that the
			// lanes hold runs longer than three.
			time.Sleep(300 * time.Millisecond)
		}
		mu.Lock()
		fail := !failedOnce && len(cs) > 3
		if fail {
			failedOnce = true
		}
		mu.Unlock()
		for i, c := range cs {
			if fail && i == 3 {
				return &BatchError{Index: 3, Err: errors.New("fourth one failed")}
			}
			if err := rec.Handle(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	stop := startWorker(t, Config{Reader: s, Checkpoints: memcheckpoint.New()},
		Subscription{Name: "batch", BatchHandler: h, Index: fast, Retry: quickRetry, MaxBatch: 6})
	ddbtest.Eventually(t, 10*time.Second, func() bool { return covers(rec.delivered(), map[string]int64{"a": 10, "b": 10}) }, "not all delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, map[string]int64{"a": 10, "b": 10})
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates: a partial failure re-delivered handled commits", rec.duplicates)
	}
	for _, b := range batches {
		if len(b) > 6 {
			t.Fatalf("batch of %d, MaxBatch 6", len(b))
		}
		for i := 1; i < len(b); i++ {
			if b[i].AggregateID != b[0].AggregateID || b[i].Version != b[i-1].Version+1 {
				t.Fatalf("batch mixes aggregates or skips versions: %v", positionsOf(b))
			}
		}
	}
	if !failedOnce {
		t.Fatal("the test never made a batch fail")
	}
}

func positionsOf(cs []Commit) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Position().String()
	}
	return out
}

func TestMiddlewareOrder(t *testing.T) {
	s := newTable(t, store.Config{})
	var mu sync.Mutex
	var trace []string
	mark := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(ctx context.Context, c Commit) error {
				mu.Lock()
				trace = append(trace, name+">")
				mu.Unlock()
				err := next.Handle(ctx, c)
				mu.Lock()
				trace = append(trace, "<"+name)
				mu.Unlock()
				return err
			})
		}
	}
	var handled atomic.Bool
	h := HandlerFunc(func(context.Context, Commit) error {
		mu.Lock()
		trace = append(trace, "handler")
		mu.Unlock()
		handled.Store(true)
		return nil
	})
	stop := startWorker(t, Config{Reader: s, Checkpoints: memcheckpoint.New()},
		Subscription{Name: "mw", Handler: h, Middleware: []Middleware{mark("outer"), mark("inner")}, Index: fast})
	appendN(t, s, []string{"a"}, 1)
	ddbtest.Eventually(t, 10*time.Second, handled.Load, "not handled")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"outer>", "inner>", "handler", "<inner", "<outer"}
	if !slices.Equal(trace, want) {
		t.Fatalf("trace %v, want %v", trace, want)
	}
}

// TestStopDrainsThenCancels: at stop, a handler that finishes within the
// drain timeout completes and is checkpointed; one that hangs is cancelled
// after it, and its commit stays before the checkpoint.
func TestStopDrainsThenCancels(t *testing.T) {
	s := newTable(t, store.Config{})
	appendN(t, s, []string{"slow", "hung"}, 1)
	mem := memcheckpoint.New()
	started := make(chan string, 2)
	var slowDone atomic.Bool
	var hungCancelled atomic.Bool
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		started <- c.AggregateID
		if c.AggregateID == "slow" {
			time.Sleep(150 * time.Millisecond) // finishes inside the drain
			slowDone.Store(true)
			return nil
		}
		<-ctx.Done()
		hungCancelled.Store(true)
		return ctx.Err()
	})
	w, _ := NewWorker(Config{Reader: s, Checkpoints: mem, DrainTimeout: 600 * time.Millisecond})
	if err := w.Register(Subscription{Name: "drain", Handler: h, Index: fast}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-started
	<-started
	t0 := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(t0); el < 500*time.Millisecond || el > 5*time.Second {
		t.Fatalf("stopped after %v; want about the drain timeout", el)
	}
	if !slowDone.Load() || !hungCancelled.Load() {
		t.Fatalf("slow finished: %v, hung cancelled: %v", slowDone.Load(), hungCancelled.Load())
	}
	cp, err := mem.Load(context.Background(), checkpointKey("drain"))
	if err != nil {
		t.Fatal(err)
	}
	saved, err := decodeIndexCheckpoint(cp.Position)
	if err != nil {
		t.Fatal(err)
	}
	var hung Commit
	for c, err := range s.Query(context.Background(), "hung", 0) {
		if err != nil {
			t.Fatal(err)
		}
		hung = c
	}
	if saved.After.Compare(hung.Position()) >= 0 {
		t.Fatalf("checkpoint %v passed the cancelled commit %v", saved.After, hung.Position())
	}
}
