package subscribe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Most lease tests run several Workers in one process on one subscription,
// sharing an in-memory checkpoint store. The commits come from memSources
// over one memCommits sequence, one source per unit, each emitting the
// commits of its unit's bucket; a Reader that is a *store.Store with
// several buckets (never called) makes the subscription several units.
// TestLeasesOnABucketedIndex runs the index source on DynamoDB Local.

// noAPI is a store.API that is never called: the memSources replace the
// reads.
type noAPI struct{ store.API }

// bucketedStore returns a *store.Store over an index of n buckets whose
// reads are never made.
func bucketedStore(t testing.TB, n int) *store.Store {
	t.Helper()
	st, err := store.New(noAPI{}, store.Config{IndexBuckets: n})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// leaseLog records a worker's lease hooks.
type leaseLog struct {
	mu     sync.Mutex
	gained []string
	lost   []error
	failed []error
	lostAt time.Time
}

func (l *leaseLog) OnLeaseGained(_, unit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gained = append(l.gained, unit)
}

func (l *leaseLog) OnLeaseLost(_, _ string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, err)
	if err != nil && l.lostAt.IsZero() {
		l.lostAt = time.Now()
	}
}

func (l *leaseLog) OnLeaseRenewFailed(_, _ string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, err)
}

func (l *leaseLog) gains() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.gained)
}

// losses returns the errors of the leases lost (not released).
func (l *leaseLog) losses() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []error
	for _, err := range l.lost {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cpString formats a checkpoint's fields for messages (its String method
// names only its key).
func cpString(cp checkpoint.Checkpoint) string {
	return fmt.Sprintf("%s{position %q, owner %q, lease %d, expires %s}", cp.Key, cp.Position, cp.Owner, cp.Lease, cp.Expires.Format(time.StampMilli))
}

// leaseEnv is one subscription's commits, checkpoint store and gate, shared
// by the workers of a test.
type leaseEnv struct {
	t    *testing.T
	m    *memCommits
	st   *store.Store
	cps  checkpoint.Store
	mem  *memcheckpoint.Mem
	rec  *recorder
	opts LeaseOptions
	// allow gates the handlers: a commit whose index is allow or more waits
	// until allow passes it, or its context ends. The workers' Concurrency
	// is at least the number of aggregates, so that an aggregate waiting at
	// the gate does not hold up another's commits below it.
	allow atomic.Int64
	// cancelled counts handler calls whose context ended while they waited.
	cancelled   atomic.Int64
	cancelledAt atomic.Int64 // Unix ns of the first
}

func newLeaseEnv(t *testing.T, commits, aggregates, buckets int, opts LeaseOptions) *leaseEnv {
	mem := memcheckpoint.New()
	return &leaseEnv{
		t: t, m: newMemCommits(commits, aggregates, []byte(`[{"type":"deposited","amount":1}]`)),
		st: bucketedStore(t, buckets), cps: mem, mem: mem, rec: newRecorder(), opts: opts,
	}
}

// leaseWorker is one Worker of a test.
type leaseWorker struct {
	w     *Worker
	owner string
	log   *leaseLog
	stop  func() error
	done  chan error
	// handled holds the indexes of the commits it handled.
	mu      sync.Mutex
	handled map[int]bool
}

// handler returns the subscription's handler for worker lw: it waits at
// the gate, then records the commit.
func (e *leaseEnv) handler(lw *leaseWorker) Handler {
	return HandlerFunc(func(ctx context.Context, c Commit) error {
		i := e.m.index(c)
		for int64(i) >= e.allow.Load() {
			select {
			case <-ctx.Done():
				if e.cancelled.Add(1) == 1 {
					e.cancelledAt.Store(time.Now().UnixNano())
				}
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		if err := e.rec.Handle(ctx, c); err != nil {
			return err
		}
		lw.mu.Lock()
		lw.handled[i] = true
		lw.mu.Unlock()
		return nil
	})
}

// start runs a worker named owner on the subscription "shared"; edit may
// change its Config and Subscription.
func (e *leaseEnv) start(owner string, edit func(*Config, *Subscription)) *leaseWorker {
	e.t.Helper()
	lw := &leaseWorker{owner: owner, log: &leaseLog{}, handled: map[int]bool{}, done: make(chan error, 1)}
	opts := e.opts
	cfg := Config{Reader: e.st, Checkpoints: e.cps, Owner: owner, Leases: &opts, Hooks: []any{lw.log}, DrainTimeout: 100 * time.Millisecond}
	sub := Subscription{Name: "shared", Handler: e.handler(lw), Concurrency: e.m.aggs, MaxInFlight: 100, CheckpointInterval: 20 * time.Millisecond}
	if edit != nil {
		edit(&cfg, &sub)
	}
	w, err := NewWorker(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	w.sourceFactory = func(u *unit, saved string) (source, error) {
		keep := func(c Commit) bool { return u.bucket == "" || e.st.Bucket(c.AggregateID) == u.bucket }
		return newMemSourceOf(e.m, saved, keep)
	}
	if err := w.Register(sub); err != nil {
		e.t.Fatal(err)
	}
	lw.w = w
	ctx, cancel := context.WithCancel(context.Background())
	go func() { lw.done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	lw.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-lw.done
		})
		return runErr
	}
	e.t.Cleanup(func() { _ = lw.stop() })
	return lw
}

// running returns the units w runs (state running), sorted.
func running(w *Worker) []string {
	var out []string
	for _, h := range w.Health() {
		if h.State == StateRunning && h.Unit != "" {
			out = append(out, h.Unit)
		}
	}
	slices.Sort(out)
	return out
}

// layout is leaseLayout for the env's workers.
func (e *leaseEnv) layout(ws ...*leaseWorker) ([][]string, bool) {
	e.t.Helper()
	var units []string
	for _, b := range e.st.Buckets() {
		units = append(units, bucketUnit(b))
	}
	workers := make([]*Worker, len(ws))
	for i, lw := range ws {
		workers[i] = lw.w
	}
	return leaseLayout(e.t, e.mem, "shared", units, workers...)
}

// leaseLayout returns, for each worker, the units of subscription sub it
// runs, and whether every unit is run by exactly one of them and held by it
// in the checkpoint store with a live lease, with no unit starting or
// stopping (a unit handed over, or lost and not yet told).
func leaseLayout(t testing.TB, cps checkpoint.Store, sub string, units []string, ws ...*Worker) ([][]string, bool) {
	t.Helper()
	out := make([][]string, len(ws))
	runBy := map[string]string{}
	ok := true
	for i, w := range ws {
		for _, h := range w.Health() {
			if h.Unit != "" && h.State != StateRunning {
				ok = false
			}
		}
		out[i] = running(w)
		for _, u := range out[i] {
			if runBy[u] != "" {
				ok = false
			}
			runBy[u] = w.Owner()
		}
	}
	now := time.Now()
	for _, u := range units {
		cp, err := cps.Load(context.Background(), checkpoint.Key{Subscription: sub, Unit: u})
		if err != nil || runBy[u] == "" || cp.Owner != runBy[u] || !cp.Live(now) {
			ok = false
		}
	}
	return out, ok
}

// balanced reports whether the layout is complete with want units per
// worker.
func (e *leaseEnv) balanced(want int, ws ...*leaseWorker) bool {
	l, ok := e.layout(ws...)
	for _, units := range l {
		ok = ok && len(units) == want
	}
	return ok
}

// waitHandled waits until every commit below n is handled.
func (e *leaseEnv) waitHandled(n int, msg string) {
	e.t.Helper()
	want := map[string]int64{}
	for _, c := range e.m.commits[:n] {
		want[c.AggregateID] = c.Version + 1
	}
	memWaitFor(e.t, func() bool { return covers(e.rec.delivered(), want) }, msg)
}

// TestLeasesShareASubscription: three workers on one subscription of six
// units settle at two units each, every unit run by exactly one of them,
// and stay so. One stops cleanly: the other two take its units within a
// few balance rounds, far sooner than a lease expires, and every commit is
// handled once, in per-aggregate order.
func TestLeasesShareASubscription(t *testing.T) {
	e := newLeaseEnv(t, 6000, 60, 6, LeaseOptions{Duration: 3 * time.Second, RenewEvery: 500 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	// Nothing is handled until the layout settles: units stolen meanwhile
	// (from a worker that took more than its share at the start) cause no
	// duplicates.
	ws := []*leaseWorker{e.start("w1", nil), e.start("w2", nil), e.start("w3", nil)}
	memWaitFor(t, func() bool { return e.balanced(2, ws...) }, "the three workers did not settle at two units each")
	gains, losses := 0, 0
	for _, lw := range ws {
		gains += lw.log.gains()
		losses += len(lw.log.losses())
	}
	// Stable: no unit moves over ten more rounds.
	time.Sleep(10 * e.opts.BalanceEvery)
	after := 0
	for _, lw := range ws {
		after += lw.log.gains()
	}
	if l, ok := e.layout(ws...); !ok || after != gains {
		t.Fatalf("the layout moved after it settled: %v (complete %v), %d gains then %d", l, ok, gains, after)
	}
	e.allow.Store(1500)
	e.waitHandled(1500, "the first commits were not handled")

	// w1 stops cleanly: it drains, saves and releases its units.
	held := running(ws[0].w)
	if err := ws[0].stop(); err != nil {
		t.Fatalf("w1: Run = %v", err)
	}
	stopped := time.Now()
	for _, u := range held {
		cp, err := e.mem.Load(context.Background(), checkpoint.Key{Subscription: "shared", Unit: u})
		if err != nil || cp.Owner != "" || cp.Position == "" {
			t.Fatalf("after w1's clean stop, unit %s is %s, %v; want released with a position", u, cpString(cp), err)
		}
	}
	memWaitFor(t, func() bool { return e.balanced(3, ws[1:]...) }, "the other workers did not take w1's units")
	if took := time.Since(stopped); took > e.opts.Duration/2 {
		t.Fatalf("w1's units were taken %v after its stop: released units are taken at the next balance, not after a lease (%v)", took, e.opts.Duration)
	}
	e.allow.Store(int64(len(e.m.commits)))
	e.waitHandled(len(e.m.commits), "not every commit was handled")
	for _, lw := range ws[1:] {
		if err := lw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", lw.owner, err)
		}
	}
	want := map[string]int64{}
	for _, c := range e.m.commits {
		want[c.AggregateID] = c.Version + 1
	}
	e.rec.check(t, want)
	if e.rec.duplicates != 0 {
		t.Fatalf("%d duplicates after clean hand-overs", e.rec.duplicates)
	}
	for _, lw := range ws {
		losses -= len(lw.log.losses())
	}
	if losses != 0 {
		t.Fatalf("%d leases lost after the layout settled; want none", -losses)
	}
	for cp, err := range e.mem.List(context.Background(), "shared") {
		if err == nil && IsMemberUnit(cp.Unit) {
			t.Fatalf("after every worker stopped, the membership %s is left", cpString(cp))
		}
		if err != nil || cp.Owner != "" || cp.Position != strconv.Itoa(len(e.m.commits)) {
			t.Fatalf("after every worker stopped: %s, %v; want released at the end", cpString(cp), err)
		}
	}
}

// TestLeasesSettleUnevenly: seven units on three workers settle at three,
// two and two, and stay so: a worker never steals from one that holds only
// one unit more than itself, or the units would move for ever.
func TestLeasesSettleUnevenly(t *testing.T) {
	e := newLeaseEnv(t, 0, 1, 7, LeaseOptions{Duration: 3 * time.Second, RenewEvery: 500 * time.Millisecond, BalanceEvery: 20 * time.Millisecond})
	ws := []*leaseWorker{e.start("w1", nil), e.start("w2", nil), e.start("w3", nil)}
	settled := func() bool {
		l, ok := e.layout(ws...)
		var n []int
		for _, units := range l {
			n = append(n, len(units))
		}
		slices.Sort(n)
		return ok && slices.Equal(n, []int{2, 2, 3})
	}
	memWaitFor(t, settled, "the three workers did not settle at 3, 2 and 2 units")
	gains := 0
	for _, lw := range ws {
		gains += lw.log.gains()
	}
	time.Sleep(20 * e.opts.BalanceEvery)
	after := 0
	for _, lw := range ws {
		after += lw.log.gains()
	}
	if l, _ := e.layout(ws...); !settled() || after != gains {
		t.Fatalf("the layout moved after it settled: %v, %d gains then %d", l, gains, after)
	}
}

// TestLeasesOfAKilledWorkerAreTakenAfterTheyExpire: a worker dies without
// saving or releasing. Its units stay its own until their leases expire,
// then the others take them and deliver again what it handled since its
// last save, and nothing else twice.
func TestLeasesOfAKilledWorkerAreTakenAfterTheyExpire(t *testing.T) {
	e := newLeaseEnv(t, 6000, 60, 6, LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	// w1 never saves but at its stop: a kill loses everything it handled.
	w1 := e.start("w1", func(_ *Config, s *Subscription) { s.CheckpointInterval = time.Hour })
	ws := []*leaseWorker{w1, e.start("w2", nil), e.start("w3", nil)}
	memWaitFor(t, func() bool { return e.balanced(2, ws...) }, "the three workers did not settle at two units each")
	e.allow.Store(3000)
	e.waitHandled(3000, "the first commits were not handled")

	held := running(w1.w)
	w1.w.abandon()
	killed := time.Now()
	if err := w1.stop(); err != nil {
		t.Fatalf("w1: Run = %v", err)
	}
	// What w1 handled after its units' saved positions is delivered again.
	bound := 0
	for _, u := range held {
		cp, err := e.mem.Load(context.Background(), checkpoint.Key{Subscription: "shared", Unit: u})
		if err != nil || cp.Owner != "w1" {
			t.Fatalf("after w1's death, unit %s is %s, %v; want still w1's", u, cpString(cp), err)
		}
		from := 0
		if cp.Position != "" {
			from, _ = strconv.Atoi(cp.Position)
		}
		for i := range w1.handled {
			if i >= from && bucketUnit(e.st.Bucket(e.m.commits[i].AggregateID)) == u {
				bound++
			}
		}
	}
	e.rec.mu.Lock()
	dup0 := e.rec.duplicates
	e.rec.mu.Unlock()

	memWaitFor(t, func() bool { return e.balanced(3, ws[1:]...) }, "the other workers did not take w1's units")
	took := time.Since(killed)
	if took < e.opts.Duration-e.opts.RenewEvery-50*time.Millisecond {
		t.Fatalf("w1's units were taken %v after it died, before their leases (%v) could expire", took, e.opts.Duration)
	}
	e.allow.Store(int64(len(e.m.commits)))
	e.waitHandled(len(e.m.commits), "not every commit was handled")
	for _, lw := range ws[1:] {
		if err := lw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", lw.owner, err)
		}
	}
	want := map[string]int64{}
	for _, c := range e.m.commits {
		want[c.AggregateID] = c.Version + 1
	}
	e.rec.check(t, want)
	dups := e.rec.duplicates - dup0
	if dups == 0 || dups > bound {
		t.Fatalf("%d duplicates after w1's death; want some, at most the %d commits it handled since its last save", dups, bound)
	}
	t.Logf("hand-over after %v; %d duplicates, bound %d", took, dups, bound)
}

// pausable wraps a checkpoint store to stall one worker's calls, as if its
// process were paused: while renew is set its renewals wait, and while
// paused every lease and checkpoint call waits (whatever its context says)
// and then goes through. While fail is set, renewals fail with renewErr.
type pausable struct {
	*memcheckpoint.Mem
	renew, paused, fail atomic.Bool
	renewErr            error
	blockedSaves        atomic.Int64
	mu                  sync.Mutex
	saveErrs            []error
}

func (p *pausable) wait(renew bool) {
	for p.paused.Load() || renew && p.renew.Load() {
		time.Sleep(time.Millisecond)
	}
}

func (p *pausable) Renew(ctx context.Context, cp checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if IsMemberUnit(cp.Unit) && !p.paused.Load() {
		return p.Mem.Renew(ctx, cp, d) // only the unit's renewals stall or fail
	}
	p.wait(true)
	if p.fail.Load() {
		return checkpoint.Checkpoint{}, p.renewErr
	}
	return p.Mem.Renew(ctx, cp, d)
}

func (p *pausable) Save(ctx context.Context, cp checkpoint.Checkpoint) error {
	if p.paused.Load() {
		p.blockedSaves.Add(1)
	}
	p.wait(false)
	err := p.Mem.Save(context.WithoutCancel(ctx), cp)
	p.mu.Lock()
	p.saveErrs = append(p.saveErrs, err)
	p.mu.Unlock()
	return err
}

func (p *pausable) Take(ctx context.Context, key checkpoint.Key, owner string, seen checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	p.wait(false)
	return p.Mem.Take(ctx, key, owner, seen, d)
}

func (p *pausable) Release(ctx context.Context, cp checkpoint.Checkpoint) error {
	p.wait(false)
	return p.Mem.Release(ctx, cp)
}

func (p *pausable) List(ctx context.Context, sub string) iter.Seq2[checkpoint.Checkpoint, error] {
	return func(yield func(checkpoint.Checkpoint, error) bool) {
		p.wait(false)
		for cp, err := range p.Mem.List(ctx, sub) {
			if !yield(cp, err) {
				return
			}
		}
	}
}

// fenced returns how many saves were refused as fenced.
func (p *pausable) fenced() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, err := range p.saveErrs {
		if errors.Is(err, checkpoint.ErrFenced) {
			n++
		}
	}
	return n
}

// TestLostLeaseCancelsTheUnitAtOnce: another worker takes a unit while its
// owner still runs it. The owner learns it from a refused save (stolen:
// its renewals hang) or from its own clock (paused: every call hangs;
// failing: renewals fail; either way the lease expires). Its handlers'
// contexts are cancelled at once, not after the drain; it saves nothing
// more, a save it had begun is refused, and the new owner's position stays.
func TestLostLeaseCancelsTheUnitAtOnce(t *testing.T) {
	errThrottled := errors.New("throttled")
	for _, tc := range []struct {
		name    string
		opts    LeaseOptions
		wantErr error
	}{
		{"stolen", LeaseOptions{Duration: 5 * time.Second, RenewEvery: time.Second, BalanceEvery: 50 * time.Millisecond}, checkpoint.ErrFenced},
		{"paused", LeaseOptions{Duration: time.Second, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}, ErrLeaseExpired},
		{"failing", LeaseOptions{Duration: time.Second, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}, errThrottled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLeaseEnv(t, 2000, 50, 1, tc.opts)
			p := &pausable{Mem: e.mem, renewErr: errThrottled}
			t.Cleanup(func() { p.paused.Store(false); p.renew.Store(false) })
			e.cps = p
			e.allow.Store(100)
			a := e.start("a", func(c *Config, _ *Subscription) { c.DrainTimeout = 20 * time.Second })
			key := checkpoint.Key{Subscription: "shared"}
			memWaitFor(t, func() bool {
				cp, err := e.mem.Load(context.Background(), key)
				return err == nil && cp.Position == "100" && cp.Owner == "a"
			}, "the first commits were not saved")
			if h := a.w.Health(); len(h) != 1 || h[0].Unit != "" || h[0].State != StateRunning {
				t.Fatalf("health %+v; want the whole subscription running", h)
			}

			var taken checkpoint.Checkpoint
			if tc.name != "stolen" {
				if tc.name == "paused" {
					p.paused.Store(true)
					e.allow.Store(150) // a save of 150 hangs, then the lease expires
					memWaitFor(t, func() bool { return p.blockedSaves.Load() > 0 }, "no save was made while paused")
				} else {
					p.fail.Store(true)
				}
				memWaitFor(t, func() bool { return len(a.log.losses()) > 0 }, "the lease did not expire")
				cur, err := e.mem.Load(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				memWaitFor(t, func() bool { return !cur.Live(time.Now()) }, "the stored lease did not expire")
				if taken, err = e.mem.Take(context.Background(), key, "b", cur, time.Minute); err != nil {
					t.Fatal(err)
				}
			} else {
				p.renew.Store(true)
				cur, err := e.mem.Load(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				if taken, err = e.mem.Take(context.Background(), key, "b", cur, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			// The new owner saves a position of its own.
			taken.Position = "42"
			if err := e.mem.Save(context.Background(), taken); err != nil {
				t.Fatal(err)
			}
			if tc.name != "paused" {
				e.allow.Store(150) // the old owner handles more and saves
			}
			memWaitFor(t, func() bool { return len(a.log.losses()) > 0 }, "the old owner did not lose its lease")
			lost := a.log.losses()[0]
			if !errors.Is(lost, tc.wantErr) {
				t.Fatalf("lease lost with %v, want %v", lost, tc.wantErr)
			}
			a.log.mu.Lock()
			failed := len(a.log.failed)
			a.log.mu.Unlock()
			if tc.name == "failing" && (!errors.Is(lost, ErrLeaseExpired) || failed == 0) {
				t.Fatalf("lease lost with %v after %d failed renewals; want ErrLeaseExpired after some", lost, failed)
			}
			memWaitFor(t, func() bool { return e.cancelled.Load() > 0 }, "the old owner's handlers were not cancelled")
			a.log.mu.Lock()
			lostAt := a.log.lostAt
			a.log.mu.Unlock()
			if d := time.Unix(0, e.cancelledAt.Load()).Sub(lostAt); d > 500*time.Millisecond {
				t.Fatalf("handlers cancelled %v after the loss; want at once (the drain timeout is 20 s)", d)
			}
			p.paused.Store(false)
			if tc.name != "failing" {
				memWaitFor(t, func() bool { return p.fenced() > 0 }, "the old owner's late save was not refused")
			}
			memWaitFor(t, func() bool {
				h := a.w.Health()
				return len(h) == 1 && h[0].State == StateWaiting
			}, "the old owner does not wait for the unit")
			// A few rounds later it still waits: it does not steal the unit back.
			time.Sleep(5 * tc.opts.BalanceEvery)
			if err := a.stop(); err != nil {
				t.Fatalf("Run = %v; a lost lease is not an error", err)
			}
			now, err := e.mem.Load(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if now.Owner != "b" || now.Lease != taken.Lease || now.Position != "42" {
				t.Fatalf("the old owner moved the checkpoint: %s; the new owner holds %s at 42", cpString(now), cpString(taken))
			}
		})
	}
}

// TestLeaseConfig: LeaseOptions are validated and defaulted, and leases
// need a checkpoint store that can lease, list and release.
func TestLeaseConfig(t *testing.T) {
	mem := memcheckpoint.New()
	bad := map[string]LeaseOptions{
		"negative duration":         {Duration: -time.Second},
		"duration under 1ms":        {Duration: time.Microsecond},
		"renewal at half the lease": {Duration: time.Second, RenewEvery: 500 * time.Millisecond},
		"renewal beyond the lease":  {Duration: time.Second, RenewEvery: 2 * time.Second},
		"negative renewal":          {RenewEvery: -time.Second},
		"negative balance":          {BalanceEvery: -time.Second},
		"half the default lease":    {RenewEvery: 10 * time.Second},
	}
	for name, opts := range bad {
		if _, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: mem, Leases: &opts}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewWorker = %v, want ErrInvalidConfig", name, err)
		}
	}
	opts := LeaseOptions{}
	w, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: mem, Leases: &opts})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *w.cfg.Leases, (LeaseOptions{Duration: 20 * time.Second, RenewEvery: 5 * time.Second, BalanceEvery: 5 * time.Second}); got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	if opts != (LeaseOptions{}) {
		t.Fatalf("NewWorker changed the caller's options: %+v", opts)
	}
	if got := (LeaseOptions{Duration: time.Second}).withDefaults().RenewEvery; got != 250*time.Millisecond {
		t.Fatalf("default RenewEvery of a 1 s lease: %v", got)
	}

	type storeOnly interface {
		checkpoint.Store
	}
	type noLister struct {
		checkpoint.Store
		checkpoint.Leaser
		checkpoint.Setter
	}
	type noLeaser struct {
		checkpoint.Store
		checkpoint.Lister
		checkpoint.Setter
	}
	type noSetter struct {
		checkpoint.Store
		checkpoint.Leaser
		checkpoint.Lister
	}
	for name, cps := range map[string]checkpoint.Store{
		"store only": struct{ storeOnly }{mem},
		"no Lister":  noLister{mem, mem, mem},
		"no Leaser":  noLeaser{mem, mem, mem},
		"no Setter":  noSetter{mem, mem, mem},
	} {
		_, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: cps, Leases: &LeaseOptions{}})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewWorker = %v, want ErrInvalidConfig", name, err)
		}
		if _, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: cps}); err != nil {
			t.Errorf("%s without leases: NewWorker = %v", name, err)
		}
	}

	// Units: a bucket each, those of Index.Buckets when set, or one.
	h := HandlerFunc(func(context.Context, Commit) error { return nil })
	st := bucketedStore(t, 4)
	for _, tc := range []struct {
		name    string
		reader  Reader
		leases  bool
		sub     Subscription
		want    []string
		invalid bool
	}{
		{"buckets", st, true, Subscription{}, []string{"bucket-t0", "bucket-t1", "bucket-t2", "bucket-t3"}, false},
		{"some buckets", st, true, Subscription{Index: IndexOptions{Buckets: []string{"t2", "t0", "t2"}}}, []string{"bucket-t2", "bucket-t0"}, false},
		{"an unknown bucket", st, true, Subscription{Index: IndexOptions{Buckets: []string{"t9"}}}, nil, true},
		{"without leases", st, false, Subscription{}, []string{""}, false},
		{"stream", st, true, Subscription{Source: SourceStream}, []string{""}, false},
		{"one bucket", bucketedStore(t, 1), true, Subscription{}, []string{""}, false},
		{"not a store", memNopReader{}, true, Subscription{}, []string{""}, false},
	} {
		cfg := Config{Reader: tc.reader, Checkpoints: mem, Streams: struct{ StreamsAPI }{}, Tables: struct{ TableDescriber }{}}
		if tc.leases {
			cfg.Leases = &LeaseOptions{}
		}
		w, err := NewWorker(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.sub.Name, tc.sub.Handler = "s", h
		err = w.Register(tc.sub)
		if tc.invalid {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%s: Register = %v, want ErrInvalidConfig", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Register = %v", tc.name, err)
		}
		var got []string
		for _, s := range w.byName["s"].specs {
			got = append(got, s.name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: units %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestLeasedRequestsGoToTheUnitOwner: with two workers on a subscription of
// two buckets, Worker.Replay of an aggregate whose unit the other worker
// runs returns ErrNotHeld, and an operator's request for it is carried out
// by that worker alone.
func TestLeasedRequestsGoToTheUnitOwner(t *testing.T) {
	e := newLeaseEnv(t, 0, 1, 2, LeaseOptions{Duration: 3 * time.Second, RenewEvery: 500 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	hooks := map[string]*requestHooks{"w1": {}, "w2": {}}
	var replayedBy sync.Map // aggregate → owner
	start := func(owner string) *leaseWorker {
		return e.start(owner, func(c *Config, s *Subscription) {
			c.Hooks = append(c.Hooks, hooks[owner])
			c.RequestPoll = 20 * time.Millisecond
			s.Handler = HandlerFunc(func(_ context.Context, c Commit) error {
				replayedBy.Store(c.AggregateID, owner)
				return nil
			})
		})
	}
	// One parked aggregate per bucket.
	aggs := map[string]string{} // bucket → aggregate
	for i := 0; len(aggs) < 2; i++ {
		id := fmt.Sprintf("agg-%d", i)
		if b := e.st.Bucket(id); aggs[b] == "" {
			aggs[b] = id
			if err := e.mem.Park(context.Background(), checkpoint.Parked{Subscription: "shared", Commit: store.Commit{AggregateID: id, Version: 0, Events: []byte(`[]`)}, Reason: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ws := []*leaseWorker{start("w1"), start("w2")}
	memWaitFor(t, func() bool { return e.balanced(1, ws...) }, "the two workers did not take a unit each")
	owner := map[string]*leaseWorker{} // aggregate → the worker that runs its unit
	for _, lw := range ws {
		for _, u := range running(lw.w) {
			for b, id := range aggs {
				if bucketUnit(b) == u {
					owner[id] = lw
				}
			}
		}
	}
	var local, remote string // aggregates of w1's unit and of w2's
	for id, lw := range owner {
		if lw == ws[0] {
			local = id
		} else {
			remote = id
		}
	}
	if _, err := ws[0].w.Replay(context.Background(), "shared", remote); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Replay of an aggregate w2 runs, on w1: %v, want ErrNotHeld", err)
	}
	if n, err := ws[0].w.Replay(context.Background(), "shared", local); err != nil || n != 1 {
		t.Fatalf("Replay of an aggregate w1 runs: %d, %v", n, err)
	}
	req, err := e.mem.Request(context.Background(), checkpoint.Request{Subscription: "shared", AggregateID: remote, Kind: checkpoint.RequestReplay})
	if err != nil {
		t.Fatal(err)
	}
	memWaitFor(t, func() bool {
		reqs, _ := hooks["w2"].seen()
		return len(reqs) == 1
	}, "w2 did not carry out the request")
	time.Sleep(100 * time.Millisecond) // several polls of w1
	if reqs, _ := hooks["w1"].seen(); len(reqs) != 0 {
		t.Fatalf("w1 carried out a request for an aggregate it does not run: %+v", reqs)
	}
	if by, _ := replayedBy.Load(remote); by != "w2" {
		t.Fatalf("request %s replayed by %v, want w2", req.ID, by)
	}
	for _, lw := range ws {
		if err := lw.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeasesOnABucketedIndex runs the index source on DynamoDB Local with
// four buckets, with checkpoints in memory and in DynamoDB. A worker
// without leases handles the first commits and stops; two workers with
// leases then share the subscription, each bucket unit starting from that
// checkpoint; one stops cleanly and the other takes its units. Every commit
// is delivered once, in per-aggregate order.
func TestLeasesOnABucketedIndex(t *testing.T) {
	t.Run("memcheckpoint", func(t *testing.T) { testLeasesOnABucketedIndex(t, memcheckpoint.New()) })
	t.Run("dynamocheckpoint", func(t *testing.T) { testLeasesOnABucketedIndex(t, newCheckpointTable(t)) })
}

func testLeasesOnABucketedIndex(t *testing.T, cps checkpoint.Store) {
	s := newTable(t, store.Config{IndexBuckets: 4})
	rec := newRecorder()
	sub := Subscription{Name: "bucketed", Handler: rec, Index: fast, Concurrency: 4, CheckpointInterval: 50 * time.Millisecond}
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})
	run := func(owner string, leases *LeaseOptions) (*Worker, func() error) {
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("worker", owner)
		w, err := NewWorker(Config{Reader: s, Checkpoints: cps, Owner: owner, Leases: leases, Logger: log})
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
		stop := func() error {
			once.Do(func() {
				cancel()
				runErr = <-done
			})
			return runErr
		}
		t.Cleanup(func() { _ = stop() })
		return w, stop
	}

	aggs := aggNames("acc-", 24)
	appendVersions(t, s, aggs, 0, 2)
	want := map[string]int64{}
	for _, id := range aggs {
		want[id] = 2
	}
	_, stop := run("plain", nil)
	memWaitFor(t, func() bool { return covers(rec.delivered(), want) }, "the worker without leases did not deliver the first commits")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	opts := &LeaseOptions{Duration: 4 * time.Second, RenewEvery: 500 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	w1, stop1 := run("w1", opts)
	w2, stop2 := run("w2", opts)
	var units []string
	for _, b := range s.Buckets() {
		units = append(units, bucketUnit(b))
	}
	// Settled: each runs two units, and the store agrees (a unit stolen
	// from a worker starts once the lease it had there expires).
	memWaitFor(t, func() bool {
		l, ok := leaseLayout(t, cps, "bucketed", units, w1, w2)
		return ok && len(l[0]) == 2 && len(l[1]) == 2
	}, "the two workers did not take two units each")
	appendVersions(t, s, aggs, 2, 4)
	for _, id := range aggs {
		want[id] = 4
	}
	memWaitFor(t, func() bool { return covers(rec.delivered(), want) }, "the two workers did not deliver")
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	memWaitFor(t, func() bool {
		_, ok := leaseLayout(t, cps, "bucketed", units, w2)
		return ok
	}, "w2 did not take w1's units")
	appendVersions(t, s, aggs, 4, 6)
	for _, id := range aggs {
		want[id] = 6
	}
	memWaitFor(t, func() bool { return covers(rec.delivered(), want) }, "w2 did not deliver after the hand-over")
	time.Sleep(suiteTuning.quiet()) // nothing more comes
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)
	if rec.duplicates != 0 || rec.total != totalVersions(want) {
		t.Fatalf("%d deliveries with %d duplicates for %d commits", rec.total, rec.duplicates, totalVersions(want))
	}
	for _, b := range s.Buckets() {
		cp, err := cps.Load(context.Background(), checkpoint.Key{Subscription: "bucketed", Unit: bucketUnit(b)})
		if err != nil || cp.Owner != "" || cp.Position == "" {
			t.Fatalf("unit %s after the stop: %s, %v", bucketUnit(b), cpString(cp), err)
		}
	}
}

// TestStolenUnitStartsAfterTheVictimStops injects the hazard of a steal: the
// worker a unit is stolen from goes on handling it until its next renewal
// or save tells it. w1 runs all six units, handling commits without pause;
// it saves only every hour, so that only a renewal can tell it, and
// balances only every hour, so that it never gives a unit back by itself;
// then w2 steals three. For each unit, w2 handles nothing before w1's last
// handler call for that unit has returned: the two never handle a unit's
// commits at once, so per-aggregate order holds across the steal, and none
// is handled twice.
func TestStolenUnitStartsAfterTheVictimStops(t *testing.T) {
	e := newLeaseEnv(t, 40000, 60, 6, LeaseOptions{Duration: 1200 * time.Millisecond, RenewEvery: 300 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	e.allow.Store(int64(len(e.m.commits)))
	type call struct {
		owner      string
		start, end time.Time
	}
	var mu sync.Mutex
	calls := map[string][]call{} // by unit
	record := func(owner string) func(*Config, *Subscription) {
		return func(c *Config, s *Subscription) {
			if owner == "w1" {
				opts := *c.Leases
				opts.BalanceEvery = time.Hour
				c.Leases = &opts
			}
			s.CheckpointInterval = time.Hour
			next := s.Handler
			s.Handler = HandlerFunc(func(ctx context.Context, c Commit) error {
				start := time.Now()
				time.Sleep(200 * time.Microsecond)
				err := next.Handle(ctx, c)
				unit := bucketUnit(e.st.Bucket(c.AggregateID))
				mu.Lock()
				calls[unit] = append(calls[unit], call{owner, start, time.Now()})
				mu.Unlock()
				return err
			})
		}
	}
	w1 := e.start("w1", record("w1"))
	memWaitFor(t, func() bool { return e.balanced(6, w1) }, "w1 did not take the six units")
	time.Sleep(200 * time.Millisecond) // w1 is busy with every unit
	w2 := e.start("w2", record("w2"))
	memWaitFor(t, func() bool { return e.balanced(3, w1, w2) }, "w2 did not steal three units")
	time.Sleep(200 * time.Millisecond)
	for _, lw := range []*leaseWorker{w2, w1} {
		if err := lw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", lw.owner, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	stolen := 0
	for unit, cs := range calls {
		var lastW1End, firstW2Start time.Time
		for _, c := range cs {
			switch {
			case c.owner == "w1" && c.end.After(lastW1End):
				lastW1End = c.end
			case c.owner == "w2" && (firstW2Start.IsZero() || c.start.Before(firstW2Start)):
				firstW2Start = c.start
			}
		}
		if firstW2Start.IsZero() {
			continue
		}
		stolen++
		if !firstW2Start.After(lastW1End) {
			t.Errorf("unit %s: w2 started handling at %s, before w1's last call returned at %s", unit,
				firstW2Start.Format("15:04:05.000000"), lastW1End.Format("15:04:05.000000"))
		}
		t.Logf("unit %s: w1's last call returned %v before w2's first", unit, firstW2Start.Sub(lastW1End).Round(time.Millisecond))
	}
	if stolen != 3 {
		t.Fatalf("w2 handled commits of %d units; want the 3 it stole", stolen)
	}
	if losses := w1.log.losses(); len(losses) != 3 || !errors.Is(losses[0], checkpoint.ErrFenced) {
		t.Fatalf("w1 lost %v; want three units taken from it", losses)
	}
	if len(e.rec.violations) > 0 {
		t.Fatalf("order violations: %v", e.rec.violations[:min(5, len(e.rec.violations))])
	}
}

// TestUnitHeldByClaimIsTakenOnceItStaysPut: a worker without leases (or of
// a version before them) died holding the subscription's checkpoint by
// Claim, which has no expiry. A worker with leases takes it once it has
// seen it unchanged for a lease Duration, not before, and goes on from its
// position.
func TestUnitHeldByClaimIsTakenOnceItStaysPut(t *testing.T) {
	e := newLeaseEnv(t, 200, 10, 1, LeaseOptions{Duration: time.Second, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	e.allow.Store(int64(len(e.m.commits)))
	key := checkpoint.Key{Subscription: "shared"}
	cp, err := e.mem.Claim(context.Background(), key, "old")
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = "50" // the dead worker handled the first 50 commits
	if err := e.mem.Save(context.Background(), cp); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, c := range e.m.commits {
		want[c.AggregateID] = c.Version + 1
		if c.Version < 5 { // 50 commits over 10 aggregates: 5 each were handled
			e.rec.next[c.AggregateID] = 5
		}
	}
	started := time.Now()
	w := e.start("w1", nil)
	memWaitFor(t, func() bool {
		got, err := e.mem.Load(context.Background(), key)
		return err == nil && got.Owner == "w1"
	}, "the worker with leases never took the unit held by Claim")
	if took := time.Since(started); took < e.opts.Duration {
		t.Fatalf("the unit held by Claim was taken after %v, before a lease Duration (%v) had shown it unchanged", took, e.opts.Duration)
	}
	memWaitFor(t, func() bool { return covers(e.rec.delivered(), want) }, "the worker did not go on from the dead worker's position")
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	e.rec.check(t, want)
	if e.rec.duplicates != 0 || e.rec.total != len(e.m.commits)-50 {
		t.Fatalf("%d deliveries, %d duplicates; want the %d commits after the position, once", e.rec.total, e.rec.duplicates, len(e.m.commits)-50)
	}
}

// TestJoiningWorkerIsGivenUnits: w1 runs all six units; w2 starts. w1
// counts w2 by its membership record and gives three units back, one a
// round, each drained, saved and released: no lease is stolen or lost, no
// unit waits for a lease to expire, and nothing is handled twice. When w2
// stops, its membership goes, and w1 takes the units back.
func TestJoiningWorkerIsGivenUnits(t *testing.T) {
	e := newLeaseEnv(t, 6000, 60, 6, LeaseOptions{Duration: 5 * time.Second, RenewEvery: time.Second, BalanceEvery: 50 * time.Millisecond})
	e.allow.Store(int64(len(e.m.commits)))
	w1 := e.start("w1", func(_ *Config, s *Subscription) { s.Handler = slowly(s.Handler) })
	memWaitFor(t, func() bool { return e.balanced(6, w1) }, "w1 did not take the six units")
	joined := time.Now()
	w2 := e.start("w2", func(_ *Config, s *Subscription) { s.Handler = slowly(s.Handler) })
	memWaitFor(t, func() bool { return e.balanced(3, w1, w2) }, "w1 did not give w2 three units")
	if took := time.Since(joined); took >= e.opts.Duration {
		t.Fatalf("w2 had its units after %v; want them handed over in balance rounds, not after a lease (%v)", took, e.opts.Duration)
	} else {
		t.Logf("three units handed over to the joining worker in %v", took.Round(time.Millisecond))
	}
	if err := w2.stop(); err != nil {
		t.Fatal(err)
	}
	memWaitFor(t, func() bool { return e.balanced(6, w1) }, "w1 did not take the units back")
	e.waitHandled(len(e.m.commits), "not every commit was handled")
	if err := w1.stop(); err != nil {
		t.Fatal(err)
	}
	for _, lw := range []*leaseWorker{w1, w2} {
		if l := lw.log.losses(); len(l) > 0 {
			t.Fatalf("%s lost leases: %v", lw.owner, l)
		}
	}
	if e.rec.duplicates != 0 || len(e.rec.violations) > 0 {
		t.Fatalf("%d duplicates, order violations %v", e.rec.duplicates, e.rec.violations)
	}
}

// slowly makes each call of h take a millisecond more, so that a backlog
// lasts through a test's hand-overs.
func slowly(h Handler) Handler {
	return HandlerFunc(func(ctx context.Context, c Commit) error {
		time.Sleep(time.Millisecond)
		return h.Handle(ctx, c)
	})
}
