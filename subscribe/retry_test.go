package subscribe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
)

// testClock is a Config.Clock that a test moves forward.
type testClock struct {
	mu   sync.Mutex
	skew time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.skew += d
	c.mu.Unlock()
}

// retryHooks records the circuit and parked-count hooks.
type retryHooks struct {
	policyHooks
	circuit    []bool
	parkedAggs int
	parkedNow  int
	parkedSeen int // OnParkedNow calls
}

func (h *retryHooks) OnCircuit(_ string, open bool, _ time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.circuit = append(h.circuit, open)
}

func (h *retryHooks) OnParkedNow(_ string, aggregates, commits int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.parkedAggs, h.parkedNow = aggregates, commits
	h.parkedSeen++
}

func (h *retryHooks) parkedCounts() (aggregates, commits int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.parkedAggs, h.parkedNow
}

// runMem runs a worker over commits m with subscription s until the test
// ends; it returns the worker and a function that stops it and returns
// Run's error.
func runMem(t *testing.T, m *memCommits, cps *memcheckpoint.Mem, clock func() time.Time, hooks any, s Subscription) (*Worker, func() error) {
	t.Helper()
	w, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: cps, Clock: clock, Hooks: []any{hooks}, DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.sourceFactory = memSourceFactory(m, nil)
	if err := w.Register(s); err != nil {
		t.Fatal(err)
	}
	return w, runUntilStopped(t, w)
}

// runUntilStopped runs w until the test ends or the function it returns,
// which returns Run's error, is called.
func runUntilStopped(t *testing.T, w *Worker) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

func parkedIn(t *testing.T, cps *memcheckpoint.Mem, sub string) []checkpoint.Parked {
	t.Helper()
	var out []checkpoint.Parked
	for p, err := range cps.Parked(context.Background(), sub, "") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestPermanentFailureParksAtOnce: a handler that returns Permanent for
// one aggregate, with the default RetryPolicy, has that commit parked after
// one attempt, and the aggregate's later commits parked behind it, while
// every other aggregate is delivered.
func TestPermanentFailureParksAtOnce(t *testing.T) {
	const aggs, versions = 10, 4
	m := newMemCommits(aggs*versions, aggs, []byte(`[1]`))
	cps := memcheckpoint.New()
	rec := newRecorder()
	poison := m.commits[3].AggregateID
	var calls atomic.Int64
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if c.AggregateID == poison && c.Version == 1 {
			calls.Add(1)
			return Permanent(errors.New("the read model refuses this event"))
		}
		return rec.Handle(ctx, c)
	})
	hooks := &retryHooks{}
	w, _ := runMem(t, m, cps, nil, hooks, Subscription{Name: "perm", Handler: h})
	memWaitFor(t, func() bool { return len(parkedIn(t, cps, "perm")) == versions-1 }, "the poison aggregate's commits were not parked")
	want := map[string]int64{}
	for _, c := range m.commits {
		want[c.AggregateID] = versions
	}
	want[poison] = 1
	memWaitFor(t, func() bool { return covers(rec.delivered(), want) }, "the other aggregates were not delivered")
	rec.check(t, want)
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler was called %d times with the permanently failing commit; want 1", n)
	}
	parked := parkedIn(t, cps, "perm")
	if p := parked[0]; p.Commit.Version != 1 || p.Attempts != 1 || !strings.Contains(p.Reason, "the read model refuses this event") {
		t.Errorf("first parked: version %d, %d attempts, reason %q; want version 1 after 1 attempt, with the handler's error", p.Commit.Version, p.Attempts, p.Reason)
	}
	hooks.mu.Lock()
	retries := len(hooks.retries)
	hooks.mu.Unlock()
	if retries != 0 {
		t.Errorf("%d retries of a permanent failure; want none", retries)
	}
	memWaitFor(t, func() bool {
		h := w.Health()[0]
		a, c := hooks.parkedCounts()
		return h.Parked == 1 && h.ParkedCommits == versions-1 && a == 1 && c == versions-1
	}, "Health and HookParkedNow do not count the parked commits")
}

// TestTransientFailureOutlastsTheOldLimitsThenParksPastMaxRecordAge: a
// handler that keeps failing transiently, with the default RetryPolicy
// (only its backoff shortened), is retried past 5 attempts and past a
// minute, as the clock says, parking nothing; once the clock passes the
// commit's maximum record age (6 hours), the commit is parked, and the
// reason says why.
func TestTransientFailureOutlastsTheOldLimitsThenParksPastMaxRecordAge(t *testing.T) {
	m := newMemCommits(2, 1, []byte(`[1]`))
	cps := memcheckpoint.New()
	clock := &testClock{}
	var calls atomic.Int64
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		calls.Add(1)
		return errors.New("dial tcp 127.0.0.1:8080: connect: connection refused")
	})
	hooks := &retryHooks{}
	w, _ := runMem(t, m, cps, clock.now, hooks, Subscription{Name: "age", Handler: h,
		Retry: RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}})
	memWaitFor(t, func() bool { return calls.Load() >= 8 }, "the handler was not retried")
	clock.advance(2 * time.Minute) // past the old MaxElapsed
	n := calls.Load()
	memWaitFor(t, func() bool { return calls.Load() >= n+5 }, "the handler was not retried after a minute")
	clock.advance(5 * time.Hour)
	n = calls.Load()
	memWaitFor(t, func() bool { return calls.Load() >= n+5 }, "the handler was not retried after five hours")
	if p := parkedIn(t, cps, "age"); len(p) != 0 {
		t.Fatalf("parked %d commits before the maximum record age", len(p))
	}
	if h := w.Health()[0]; !h.CircuitOpenSince.IsZero() {
		t.Errorf("one aggregate failing opened the circuit (since %v)", h.CircuitOpenSince)
	}
	clock.advance(time.Hour + time.Second)
	memWaitFor(t, func() bool { return len(parkedIn(t, cps, "age")) == 2 }, "the commit past its maximum record age was not parked")
	p := parkedIn(t, cps, "age")[0]
	if p.Commit.Version != 0 || p.Attempts < 18 || !strings.Contains(p.Reason, "past the maximum record age 6h0m0s") ||
		!strings.Contains(p.Reason, "connection refused") {
		t.Errorf("parked version %d after %d attempts, reason %q; want version 0 after at least 18, naming the age and the error", p.Commit.Version, p.Attempts, p.Reason)
	}
}

// TestCircuitOpensWhenEveryAggregateFails: the handler fails transiently
// for every aggregate (its receiver is down). The circuit opens, Health
// and HookCircuit say so, the handler is called at most once per backoff
// while it is open (plus the calls in flight when it opened), nothing is
// parked; once the receiver is back, a probe closes the circuit and every
// commit is delivered in order.
func TestCircuitOpensWhenEveryAggregateFails(t *testing.T) {
	const aggs, versions, concurrency = 20, 5, 8
	maxBackoff := 40 * time.Millisecond
	m := newMemCommits(aggs*versions, aggs, []byte(`[1]`))
	cps := memcheckpoint.New()
	rec := newRecorder()
	var down atomic.Bool
	down.Store(true)
	var calls atomic.Int64
	var openCalls atomic.Int64 // calls made while Health says open
	var w *Worker
	var wMu sync.Mutex
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		calls.Add(1)
		wMu.Lock()
		ww := w
		wMu.Unlock()
		if ww != nil && !ww.Health()[0].CircuitOpenSince.IsZero() {
			openCalls.Add(1)
		}
		if down.Load() {
			return errors.New("connection refused")
		}
		return rec.Handle(ctx, c)
	})
	hooks := &retryHooks{}
	ww, _ := runMem(t, m, cps, nil, hooks, Subscription{Name: "cb", Handler: h, Concurrency: concurrency,
		Retry: RetryPolicy{InitialBackoff: 5 * time.Millisecond, MaxBackoff: maxBackoff}})
	wMu.Lock()
	w = ww
	wMu.Unlock()
	memWaitFor(t, func() bool { return !w.Health()[0].CircuitOpenSince.IsZero() }, "the circuit did not open")
	opened := time.Now()
	openCalls.Store(0)
	time.Sleep(1500 * time.Millisecond) // the outage goes on
	if h := w.Health()[0]; h.CircuitOpenSince.IsZero() || h.State != StateRunning {
		t.Fatalf("during the outage: %+v; want running with the circuit open", h)
	}
	down.Store(false)
	whileOpen := openCalls.Load()
	memWaitFor(t, func() bool { return w.Health()[0].CircuitOpenSince.IsZero() }, "the circuit did not close")
	open := time.Since(opened)
	want := map[string]int64{}
	for _, c := range m.commits {
		want[c.AggregateID] = versions
	}
	memWaitFor(t, func() bool { return covers(rec.delivered(), want) }, "not every commit was delivered after the outage")
	rec.check(t, want)
	if p := parkedIn(t, cps, "cb"); len(p) != 0 {
		t.Errorf("%d commits parked by the outage; want none", len(p))
	}
	// One probe per backoff at most: the delay before the next probe is at
	// least half the backoff, which doubles from InitialBackoff to
	// MaxBackoff; plus the calls let through before it opened.
	bound := int64(open/(maxBackoff/2)) + 4 + concurrency
	t.Logf("calls while open %d, bound %d, total %d", whileOpen, bound, calls.Load())
	if whileOpen < 2 || whileOpen > bound {
		t.Errorf("%d handler calls in %v with the circuit open; want probes, and at most %d", whileOpen, open, bound)
	}
	hooks.mu.Lock()
	events := fmt.Sprint(hooks.circuit)
	hooks.mu.Unlock()
	if events != "[true false]" {
		t.Errorf("HookCircuit saw %s; want it open, then closed", events)
	}
}

// TestParkedCommitsCountedAcrossParkReplayAndDiscard follows Health's and
// HookParkedNow's count of parked commits through parking, a restart that
// finds them parked, a replay and a discard.
func TestParkedCommitsCountedAcrossParkReplayAndDiscard(t *testing.T) {
	const aggs, versions = 3, 4
	m := newMemCommits(aggs*versions, aggs, []byte(`[1]`))
	cps := memcheckpoint.New()
	a, b := m.commits[0].AggregateID, m.commits[1].AggregateID
	var fixed atomic.Bool
	rec := newRecorder()
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if (c.AggregateID == a || c.AggregateID == b) && c.Version == 1 && !fixed.Load() {
			return Permanent(errors.New("refused"))
		}
		return rec.Handle(ctx, c)
	})
	s := Subscription{Name: "count", Handler: h}
	counts := func(w *Worker, hooks *retryHooks, aggs, commits int) func() bool {
		return func() bool {
			h := w.Health()[0]
			ha, hc := hooks.parkedCounts()
			return h.Parked == aggs && h.ParkedCommits == commits && ha == aggs && hc == commits
		}
	}
	hooks := &retryHooks{}
	w, stop := runMem(t, m, cps, nil, hooks, s)
	memWaitFor(t, counts(w, hooks, 2, 6), "parking 2 aggregates × 3 commits was not counted")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A new worker finds them parked.
	hooks = &retryHooks{}
	w, _ = runMem(t, m, cps, nil, hooks, s)
	memWaitFor(t, counts(w, hooks, 2, 6), "the parked commits found at start were not counted")
	fixed.Store(true)
	n, err := w.Replay(context.Background(), "count", a)
	if err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	memWaitFor(t, counts(w, hooks, 1, 3), "the replay was not counted")
	n, err = w.Discard(context.Background(), "count", b)
	if err != nil || n != 3 {
		t.Fatalf("Discard = %d, %v; want 3", n, err)
	}
	memWaitFor(t, counts(w, hooks, 0, 0), "the discard was not counted")
	if p := parkedIn(t, cps, "count"); len(p) != 0 {
		t.Errorf("%d commits still parked", len(p))
	}
}
