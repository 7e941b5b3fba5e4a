package subscribe

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// requestHooks records the requests the worker carried out.
type requestHooks struct {
	mu   sync.Mutex
	reqs []checkpoint.Request
	errs []error
}

func (h *requestHooks) OnRequest(_ string, r checkpoint.Request, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, r)
	h.errs = append(h.errs, err)
}

func (h *requestHooks) seen() ([]checkpoint.Request, []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs), slices.Clone(h.errs)
}

// calls records every commit a handler was called with, in order.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(cm Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, fmt.Sprintf("%s#%d", cm.AggregateID, cm.Version))
}

func (c *calls) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

// newCheckpointTable creates a checkpoints table for the test.
func newCheckpointTable(t *testing.T) *dynamocheckpoint.Store {
	t.Helper()
	client := ddbtest.Client(t)
	cfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t)}
	if err := dynamocheckpoint.CreateTable(context.Background(), client, cfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cfg) })
	cps, err := dynamocheckpoint.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

// loadRequest returns the request of an aggregate, if there is one.
func loadRequest(t *testing.T, rs checkpoint.RequestStore, sub, agg string) (checkpoint.Request, bool) {
	t.Helper()
	for r, err := range rs.Requests(context.Background(), sub) {
		if err != nil {
			t.Fatal(err)
		}
		if r.AggregateID == agg {
			return r, true
		}
	}
	return checkpoint.Request{}, false
}

// waitDone waits until the request req is done and returns it as stored.
func waitDone(t *testing.T, rs checkpoint.RequestStore, req checkpoint.Request) checkpoint.Request {
	t.Helper()
	var got checkpoint.Request
	ddbtest.Eventually(t, 15*time.Second, func() bool {
		var ok bool
		got, ok = loadRequest(t, rs, req.Subscription, req.AggregateID)
		return ok && got.ID == req.ID && got.Done
	}, "request %s of %q was not marked done", req.Kind, req.AggregateID)
	return got
}

func parkedVersions(t *testing.T, ps checkpoint.ParkStore, sub, agg string) []int64 {
	t.Helper()
	var out []int64
	for p, err := range ps.Parked(context.Background(), sub, agg) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Commit.Version)
	}
	return out
}

// TestRequestReplaysWhileCommitsArrive: an aggregate parks from version 2
// on; its handler is fixed and an operator, through another store on the
// same checkpoints table, asks for a replay while the aggregate's commits
// keep arriving. The worker replays every parked commit in the aggregate's
// turn, in order, marks the request done with the count, and handles the
// later commits as usual: nothing lost, nothing out of order, nothing
// parked after the replay.
func TestRequestReplaysWhileCommitsArrive(t *testing.T) {
	s := newTable(t, store.Config{})
	cps := newCheckpointTable(t)
	operator, err := dynamocheckpoint.New(ddbtest.Client(t), cps.Config())
	if err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	rec := newRecorder()
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		if c.AggregateID == "poison" && c.Version >= 2 && !fixed.Load() {
			return errors.New("cannot handle this yet")
		}
		return rec.Handle(ctx, c)
	})
	parks, reqs := &policyHooks{}, &requestHooks{}
	stop := startWorker(t, Config{Reader: s, Checkpoints: cps, Hooks: []any{parks, reqs}, RequestPoll: 50 * time.Millisecond},
		Subscription{Name: "rq", Handler: h, Index: fast, Retry: quickRetry})
	parkedCount := func() int {
		parks.mu.Lock()
		defer parks.mu.Unlock()
		return len(parks.parked)
	}
	want := appendN(t, s, []string{"poison", "ok"}, 4)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return parkedCount() == 2 }, "poison#2 and #3 were not parked")
	fixed.Store(true)

	// The aggregate's commits keep coming, every 20 ms, until the request
	// is done and a few more have come.
	var appended atomic.Int64
	appended.Store(4)
	stopWriting := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		defer close(writerDone)
		for v := int64(4); ; v++ {
			select {
			case <-stopWriting:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: "poison", Version: v, Events: deposit(t)}); err != nil {
				writerDone <- err
				return
			}
			appended.Store(v + 1)
		}
	}()
	// Wait until arriving commits are being parked behind the first two.
	ddbtest.Eventually(t, 15*time.Second, func() bool { return parkedCount() >= 4 }, "arriving commits were not parked")
	req, err := operator.Request(context.Background(), checkpoint.Request{Subscription: "rq", AggregateID: "poison", Kind: checkpoint.RequestReplay})
	if err != nil {
		t.Fatal(err)
	}
	done := waitDone(t, operator, req)
	afterDone := appended.Load()
	ddbtest.Eventually(t, 15*time.Second, func() bool { return appended.Load() >= afterDone+5 }, "the writer stalled")
	close(stopWriting)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	want["poison"] = appended.Load()
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "not every commit was delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)

	parked := parkedCount()
	if done.Result != "" || done.Handled != parked || done.CompletedAt.IsZero() {
		t.Fatalf("request done with result %q, handled %d; want no error and the %d commits parked", done.Result, done.Handled, parked)
	}
	if got := parkedVersions(t, cps, "rq", ""); len(got) != 0 {
		t.Fatalf("still parked after the replay: %v", got)
	}
	if last := want["poison"]; int64(parked)+2 >= last {
		t.Fatalf("%d of poison's %d commits were parked: the commits after the replay were parked too", parked, last)
	}
	seen, errs := reqs.seen()
	if len(seen) != 1 || errs[0] != nil || seen[0].ID != req.ID || seen[0].Handled != parked {
		t.Fatalf("request hook saw %+v, %v; want the request once, handled %d, no error", seen, errs, parked)
	}
}

// startMemWorker runs a worker with one subscription whose source holds no
// commits: its aggregates' commits come only from what is parked.
func startMemWorker(t *testing.T, cfg Config, sub Subscription) (*Worker, func() error) {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.sourceFactory = memSourceFactory(newMemCommits(0, 1, nil), nil)
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	ddbtest.Eventually(t, 10*time.Second, func() bool { return w.Health()[0].State == StateRunning }, "the worker did not start")
	return w, stop
}

// parkCommits parks versions of an aggregate, as a run before would have.
func parkCommits(t *testing.T, ps checkpoint.ParkStore, sub, agg string, versions ...int64) {
	t.Helper()
	for _, v := range versions {
		c := store.Commit{CommitID: store.FormatCommitID(1700000000000+v, agg), CommittedAt: 1700000000000 + v, AggregateID: agg, Version: v, Events: []byte(`[1]`)}
		if err := ps.Park(context.Background(), checkpoint.Parked{Subscription: sub, Commit: c, Reason: "boom"}); err != nil {
			t.Fatal(err)
		}
	}
}

func makeRequest(t *testing.T, rs checkpoint.RequestStore, sub, agg string, kind checkpoint.RequestKind) checkpoint.Request {
	t.Helper()
	r, err := rs.Request(context.Background(), checkpoint.Request{Subscription: sub, AggregateID: agg, Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRequestDiscardDropsParkedCommits: a discard request removes every
// parked commit of the aggregate unhandled, marks the request done with
// the count, and the aggregate's next commit is handled as usual.
func TestRequestDiscardDropsParkedCommits(t *testing.T) {
	s := newTable(t, store.Config{})
	mem := memcheckpoint.New()
	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error {
		if c.AggregateID == "poison" && c.Version >= 1 && c.Version <= 3 {
			return errors.New("cannot handle this")
		}
		handled.add(c)
		return nil
	})
	parks, reqs := &policyHooks{}, &requestHooks{}
	stop := startWorker(t, Config{Reader: s, Checkpoints: mem, Hooks: []any{parks, reqs}, RequestPoll: 20 * time.Millisecond},
		Subscription{Name: "dq", Handler: h, Index: fast, Retry: quickRetry})
	appendN(t, s, []string{"poison"}, 4)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return len(parkedVersions(t, mem, "dq", "poison")) == 3 }, "poison#1 to #3 were not parked")

	req := makeRequest(t, mem, "dq", "poison", checkpoint.RequestDiscard)
	done := waitDone(t, mem, req)
	if done.Result != "" || done.Handled != 3 {
		t.Fatalf("discard done with result %q, handled %d; want no error, 3", done.Result, done.Handled)
	}
	if got := parkedVersions(t, mem, "dq", ""); len(got) != 0 {
		t.Fatalf("still parked after the discard: %v", got)
	}
	if _, err := s.Append(context.Background(), store.Commit{AggregateID: "poison", Version: 4, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 15*time.Second, func() bool { return slices.Contains(handled.get(), "poison#4") }, "poison#4 was not handled after the discard")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := handled.get(), []string{"poison#0", "poison#4"}; !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v: discarded commits must not be handled", got, want)
	}
	if seen, errs := reqs.seen(); len(seen) != 1 || errs[0] != nil || seen[0].Handled != 3 || seen[0].Kind != checkpoint.RequestDiscard {
		t.Fatalf("request hook saw %+v, %v", seen, errs)
	}
}

// TestRequestReplayThatFailsAgain: a replay whose first commit still fails
// is marked done with the error and nothing handled, and the commits stay
// parked; a later request, once the handler is fixed, replays them.
func TestRequestReplayThatFailsAgain(t *testing.T) {
	mem := memcheckpoint.New()
	parkCommits(t, mem, "f", "acc", 3, 4)
	var fixed atomic.Bool
	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error {
		if !fixed.Load() {
			return errors.New("still broken")
		}
		handled.add(c)
		return nil
	})
	reqs := &requestHooks{}
	w, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, Hooks: []any{reqs}, RequestPoll: 20 * time.Millisecond},
		Subscription{Name: "f", Handler: h, Retry: quickRetry})

	first := makeRequest(t, mem, "f", "acc", checkpoint.RequestReplay)
	done := waitDone(t, mem, first)
	if done.Handled != 0 || !strings.Contains(done.Result, "version 3 still fails") || !strings.Contains(done.Result, "still broken") {
		t.Fatalf("failed replay done with result %q, handled %d; want the error of version 3, handled 0", done.Result, done.Handled)
	}
	if got := parkedVersions(t, mem, "f", "acc"); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("parked after a failed replay: %v, want [3 4]", got)
	}
	if hs := w.Health(); hs[0].Parked != 1 {
		t.Fatalf("health says %d parked aggregates after a failed replay, want 1", hs[0].Parked)
	}
	seen, errs := reqs.seen()
	if len(seen) != 1 || errs[0] == nil || seen[0].Result != errs[0].Error() {
		t.Fatalf("request hook saw %+v, %v; want the request with its error", seen, errs)
	}

	fixed.Store(true)
	second := makeRequest(t, mem, "f", "acc", checkpoint.RequestReplay)
	done = waitDone(t, mem, second)
	if done.Handled != 2 || done.Result != "" {
		t.Fatalf("second replay done with result %q, handled %d; want no error, 2", done.Result, done.Handled)
	}
	if got := handled.get(); !slices.Equal(got, []string{"acc#3", "acc#4"}) {
		t.Fatalf("handled %v, want [acc#3 acc#4]", got)
	}
	if hs := w.Health(); hs[0].Parked != 0 {
		t.Fatalf("health says %d parked aggregates after the replay, want 0", hs[0].Parked)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRequestMadeBeforeStartIsCarriedOutAtStart: a request written while no
// worker ran is carried out right after start, not one poll interval
// later.
func TestRequestMadeBeforeStartIsCarriedOutAtStart(t *testing.T) {
	mem := memcheckpoint.New()
	parkCommits(t, mem, "b", "acc", 3, 4)
	parkCommits(t, mem, "b", "other", 0)
	req := makeRequest(t, mem, "b", "acc", checkpoint.RequestReplay)
	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error { handled.add(c); return nil })
	_, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, RequestPoll: time.Hour},
		Subscription{Name: "b", Handler: h})
	done := waitDone(t, mem, req)
	if done.Handled != 2 || done.Result != "" {
		t.Fatalf("request done with result %q, handled %d; want no error, 2", done.Result, done.Handled)
	}
	if got := handled.get(); !slices.Equal(got, []string{"acc#3", "acc#4"}) {
		t.Fatalf("handled %v, want [acc#3 acc#4]", got)
	}
	if got := parkedVersions(t, mem, "b", ""); !slices.Equal(got, []int64{0}) {
		t.Fatalf("parked after the replay: %v, want other's version 0 only", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRequestForNothingParked: a request for an aggregate with nothing
// parked is done with nothing handled.
func TestRequestForNothingParked(t *testing.T) {
	mem := memcheckpoint.New()
	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error { handled.add(c); return nil })
	_, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, RequestPoll: 20 * time.Millisecond},
		Subscription{Name: "n", Handler: h})
	for _, kind := range []checkpoint.RequestKind{checkpoint.RequestReplay, checkpoint.RequestDiscard} {
		done := waitDone(t, mem, makeRequest(t, mem, "n", "nobody", kind))
		if done.Handled != 0 || done.Result != "" {
			t.Fatalf("%s of nothing done with result %q, handled %d; want no error, 0", kind, done.Result, done.Handled)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := handled.get(); len(got) != 0 {
		t.Fatalf("handled %v", got)
	}
}

// stickyRequests is a checkpoint store whose Requests yields every request
// twice, whose Complete waits for release (and, with failFirst, fails its
// first call), and which counts both: a worker that reads a request again
// before its Complete lands must not carry it out again.
type stickyRequests struct {
	*memcheckpoint.Mem
	polls     atomic.Int32
	completes atomic.Int32
	release   chan struct{}
	failFirst bool
	// kind, when set, replaces the kind of every request read.
	kind checkpoint.RequestKind
}

func (s *stickyRequests) Requests(ctx context.Context, sub string) iter.Seq2[checkpoint.Request, error] {
	s.polls.Add(1)
	return func(yield func(checkpoint.Request, error) bool) {
		for r, err := range s.Mem.Requests(ctx, sub) {
			if s.kind != "" {
				r.Kind = s.kind
			}
			if !yield(r, err) || (err == nil && !yield(r, nil)) {
				return
			}
		}
	}
}

func (s *stickyRequests) Complete(ctx context.Context, r checkpoint.Request) error {
	n := s.completes.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.failFirst && n == 1 {
		return errors.New("sticky: Complete failed")
	}
	return s.Mem.Complete(ctx, r)
}

func TestRequestPolledAgainIsCarriedOutOnce(t *testing.T) {
	for _, failFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("failFirst=%v", failFirst), func(t *testing.T) {
			sticky := &stickyRequests{Mem: memcheckpoint.New(), release: make(chan struct{}), failFirst: failFirst}
			parkCommits(t, sticky, "o", "acc", 0, 1, 2)
			var handled calls
			h := HandlerFunc(func(_ context.Context, c Commit) error { handled.add(c); return nil })
			reqs := &requestHooks{}
			_, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: sticky, Hooks: []any{reqs}, RequestPoll: 5 * time.Millisecond},
				Subscription{Name: "o", Handler: h})
			req := makeRequest(t, sticky, "o", "acc", checkpoint.RequestReplay)
			ddbtest.Eventually(t, 10*time.Second, func() bool { return sticky.completes.Load() == 1 }, "Complete was not called")
			// Polls go on while Complete hangs, and see the request pending.
			polls := sticky.polls.Load()
			ddbtest.Eventually(t, 10*time.Second, func() bool { return sticky.polls.Load() >= polls+5 }, "polls stopped while Complete hung")
			close(sticky.release)
			done := waitDone(t, sticky, req)
			polls = sticky.polls.Load()
			ddbtest.Eventually(t, 10*time.Second, func() bool { return sticky.polls.Load() >= polls+5 }, "polls stopped")
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := handled.get(); !slices.Equal(got, []string{"acc#0", "acc#1", "acc#2"}) {
				t.Fatalf("handled %v, want each parked commit once", got)
			}
			if done.Handled != 3 || done.Result != "" {
				t.Fatalf("request done with result %q, handled %d; want no error, 3", done.Result, done.Handled)
			}
			wantCompletes := int32(1)
			if failFirst {
				wantCompletes = 2 // the failed call, then its retry with the same result
			}
			if n := sticky.completes.Load(); n != wantCompletes {
				t.Fatalf("Complete called %d times, want %d", n, wantCompletes)
			}
			if seen, _ := reqs.seen(); len(seen) != 1 {
				t.Fatalf("request hook called %d times, want once", len(seen))
			}
		})
	}
}

// TestRequestOfUnknownKind: a request of a kind this worker does not know
// (written by a newer program) is done with an error and changes nothing.
func TestRequestOfUnknownKind(t *testing.T) {
	sticky := &stickyRequests{Mem: memcheckpoint.New(), release: make(chan struct{}), kind: "rewind"}
	close(sticky.release)
	parkCommits(t, sticky, "u", "acc", 0)
	_, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: sticky, RequestPoll: 10 * time.Millisecond},
		Subscription{Name: "u", Handler: HandlerFunc(func(context.Context, Commit) error { return nil })})
	done := waitDone(t, sticky.Mem, makeRequest(t, sticky, "u", "acc", checkpoint.RequestDiscard))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if done.Handled != 0 || !strings.Contains(done.Result, `unknown kind "rewind"`) {
		t.Fatalf("request done with result %q, handled %d; want an unknown kind error", done.Result, done.Handled)
	}
	if got := parkedVersions(t, sticky, "u", "acc"); !slices.Equal(got, []int64{0}) {
		t.Fatalf("parked %v, want [0]", got)
	}
}

// TestRequestPollOff: with a negative RequestPoll the worker reads no
// requests.
func TestRequestPollOff(t *testing.T) {
	sticky := &stickyRequests{Mem: memcheckpoint.New(), release: make(chan struct{})}
	close(sticky.release)
	parkCommits(t, sticky, "x", "acc", 0)
	req := makeRequest(t, sticky, "x", "acc", checkpoint.RequestReplay)
	w, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: sticky, RequestPoll: -1},
		Subscription{Name: "x", Handler: HandlerFunc(func(context.Context, Commit) error { return nil })})
	// The worker still replays on demand.
	if n, err := w.Replay(context.Background(), "x", "acc"); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want 1", n, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := sticky.polls.Load(); n != 0 {
		t.Fatalf("%d polls for requests with RequestPoll < 0", n)
	}
	if got, _ := loadRequest(t, sticky.Mem, "x", "acc"); got.Done || got.ID != req.ID {
		t.Fatalf("request %+v was touched", got)
	}
}

// TestDiscard checks Worker.Discard while the worker runs and while it
// does not.
func TestDiscard(t *testing.T) {
	mem := memcheckpoint.New()
	parkCommits(t, mem, "d", "a", 1, 2)
	parkCommits(t, mem, "d", "b", 5)
	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error { handled.add(c); return nil })
	w, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, RequestPoll: -1}, Subscription{Name: "d", Handler: h})
	if hs := w.Health(); hs[0].Parked != 2 {
		t.Fatalf("health: %d parked aggregates, want 2", hs[0].Parked)
	}
	if n, err := w.Discard(context.Background(), "d", "a"); err != nil || n != 2 {
		t.Fatalf("Discard while running = %d, %v; want 2", n, err)
	}
	if hs := w.Health(); hs[0].Parked != 1 {
		t.Fatalf("health after Discard: %d parked aggregates, want 1", hs[0].Parked)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Discard(context.Background(), "d", "b"); err != nil || n != 1 {
		t.Fatalf("Discard after Run = %d, %v; want 1", n, err)
	}
	if got := parkedVersions(t, mem, "d", ""); len(got) != 0 {
		t.Fatalf("parked after discards: %v", got)
	}
	if got := handled.get(); len(got) != 0 {
		t.Fatalf("discarded commits were handled: %v", got)
	}
	if _, err := w.Discard(context.Background(), "nope", "a"); !errors.Is(err, ErrUnknownSubscription) {
		t.Fatalf("Discard of an unknown subscription: %v", err)
	}
	if _, err := w.Discard(context.Background(), "d", ""); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Discard without an aggregate: %v", err)
	}
}

// TestRequestInterruptedByStopStaysPending: a replay still running when the
// worker stops (its handler hangs past the drain timeout) is not marked
// done; the next run carries it out.
func TestRequestInterruptedByStopStaysPending(t *testing.T) {
	mem := memcheckpoint.New()
	parkCommits(t, mem, "i", "acc", 0, 1)
	entered := make(chan struct{}, 1)
	hang := HandlerFunc(func(ctx context.Context, _ Commit) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	})
	_, stop := startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, RequestPoll: 10 * time.Millisecond, DrainTimeout: 50 * time.Millisecond},
		Subscription{Name: "i", Handler: hang, Retry: quickRetry})
	req := makeRequest(t, mem, "i", "acc", checkpoint.RequestReplay)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the replay did not start")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadRequest(t, mem, "i", "acc"); got.Done || got.ID != req.ID {
		t.Fatalf("request after an interrupted replay: %+v; want it pending", got)
	}
	if got := parkedVersions(t, mem, "i", "acc"); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("parked after an interrupted replay: %v, want [0 1]", got)
	}

	var handled calls
	h := HandlerFunc(func(_ context.Context, c Commit) error { handled.add(c); return nil })
	_, stop = startMemWorker(t, Config{Reader: memNopReader{}, Checkpoints: mem, RequestPoll: time.Hour}, Subscription{Name: "i", Handler: h})
	done := waitDone(t, mem, req)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if done.Handled != 2 || done.Result != "" || !slices.Equal(handled.get(), []string{"acc#0", "acc#1"}) {
		t.Fatalf("request done with result %q, handled %d, handler saw %v; want no error, 2, [acc#0 acc#1]", done.Result, done.Handled, handled.get())
	}
}
