package subscribe

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestRecordOutcome(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e1, e2 := errors.New("one"), errors.New("two")
	type step struct {
		err   error
		began time.Time
	}
	for _, c := range []struct {
		name      string
		steps     []step
		wantErr   error
		wantSince time.Time
	}{
		{"no call", nil, nil, time.Time{}},
		{"a success", []step{{nil, t0}}, nil, time.Time{}},
		{"a failure", []step{{e1, t0}}, e1, t0},
		{"failures: the first's start, the last's error", []step{{e1, t0}, {e2, t0.Add(time.Second)}}, e2, t0},
		{"a success ends the run", []step{{e1, t0}, {nil, t0.Add(time.Second)}}, nil, time.Time{}},
		{"a new run after a success", []step{{e1, t0}, {nil, t0.Add(time.Second)}, {e2, t0.Add(2 * time.Second)}}, e2, t0.Add(2 * time.Second)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var last error
			var since time.Time
			for _, s := range c.steps {
				recordOutcome(&last, &since, s.err, s.began)
			}
			if last != c.wantErr || !since.Equal(c.wantSince) {
				t.Errorf("got %v since %v, want %v since %v", last, since, c.wantErr, c.wantSince)
			}
		})
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lagLog records the lag hook's reports.
type lagLog struct {
	mu   sync.Mutex
	last time.Duration
	n    int
}

func (l *lagLog) OnLag(_ string, age time.Duration, _ int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last, l.n = age, l.n+1
}

func (l *lagLog) get() (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.n
}

// stalledSource reads nothing: each read fails with err while err is set,
// and is reported to the unit as the index source does. It is caught up:
// its own lag is zero.
type stalledSource struct {
	u     *unit
	clock func() time.Time
	mu    sync.Mutex
	err   error
	reads chan struct{} // a read is made on each receive
	acks  chan struct{} // and reported before a send here
}

func (s *stalledSource) run(ctx context.Context, _ emitFunc) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.reads:
		}
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		s.u.readDone(err, s.clock())
		s.acks <- struct{}{}
	}
}

func (s *stalledSource) checkpoint() (string, error)        { return "", nil }
func (s *stalledSource) lag(time.Time) (int, time.Duration) { return 0, 0 }
func (s *stalledSource) done(Commit)                        {}

// TestLagGrowsWhileReadsFail: a caught-up subscription whose reads hang
// or fail reports, in Health and through the lag hook, a lag that grows
// with the clock (from the last read less the poll interval, from the
// start of the failures); a read that works ends it.
func TestLagGrowsWhileReadsFail(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	lags := &lagLog{}
	w, err := NewWorker(Config{Reader: &store.Store{}, Checkpoints: memcheckpoint.New(), Clock: clock.Now, Hooks: []any{lags}})
	if err != nil {
		t.Fatal(err)
	}
	src := &stalledSource{clock: clock.Now, reads: make(chan struct{}), acks: make(chan struct{})}
	w.sourceFactory = func(u *unit, _ string) (source, error) {
		src.u = u
		return src, nil
	}
	if err := w.Register(Subscription{Name: "s", Handler: HandlerFunc(func(context.Context, Commit) error { return nil }), CheckpointInterval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	read := func(err error) {
		src.mu.Lock()
		src.err = err
		src.mu.Unlock()
		src.reads <- struct{}{}
		<-src.acks
	}
	health := func() Health {
		hs := w.Health()
		if len(hs) != 1 {
			t.Fatalf("health %+v", hs)
		}
		return hs[0]
	}
	// lagAtLeast waits for a lag report of at least want.
	lagAtLeast := func(want time.Duration) {
		t.Helper()
		memWaitFor(t, func() bool { l, _ := lags.get(); return l >= want }, "the lag hook did not report "+want.String())
	}
	memWaitFor(t, func() bool { return health().State == StateRunning }, "not running")

	read(nil)
	clock.Advance(time.Second)
	if h := health(); h.Lag != 0 || h.ReadErr != nil || !h.ReadAt.Equal(clock.Now().Add(-time.Second)) {
		t.Fatalf("caught up and reading: lag %v, read error %v, last read %v", h.Lag, h.ReadErr, h.ReadAt)
	}
	// A read that hangs: none succeeds for longer than twice the idle poll
	// interval (PollMax, 2 s by default), and the lag grows past it.
	clock.Advance(61 * time.Second)
	if h := health(); h.Lag != 58*time.Second {
		t.Fatalf("lag %v after 62 s with no read, want 58s (62 s less twice the 2 s poll interval)", h.Lag)
	}
	lagAtLeast(58 * time.Second)
	read(nil)
	if h := health(); h.Lag != 0 {
		t.Fatalf("lag %v after a read that works, want 0", h.Lag)
	}
	memWaitFor(t, func() bool { l, _ := lags.get(); return l == 0 }, "the lag hook did not report the read")

	failedAt := clock.Now()
	boom := errors.New("connection refused")
	read(boom)
	clock.Advance(time.Second)
	read(boom) // a later failure does not move the run's start
	if h := health(); h.ReadErr != boom || !h.ReadErrSince.Equal(failedAt) {
		t.Fatalf("read error %v since %v, want %v since %v", h.ReadErr, h.ReadErrSince, boom, failedAt)
	}
	clock.Advance(29 * time.Second)
	if h := health(); h.Lag != 30*time.Second {
		t.Fatalf("lag %v after 30 s of failing reads, want 30s", h.Lag)
	}
	lagAtLeast(30 * time.Second)
	clock.Advance(time.Minute) // nothing is read: the lag goes on growing
	if h := health(); h.Lag != 90*time.Second {
		t.Fatalf("lag %v after 90 s of failing reads, want 90s", h.Lag)
	}
	lagAtLeast(90 * time.Second)

	read(nil)
	if h := health(); h.Lag != 0 || h.ReadErr != nil || !h.ReadErrSince.IsZero() {
		t.Fatalf("after a read that works: lag %v, read error %v since %v", h.Lag, h.ReadErr, h.ReadErrSince)
	}
	memWaitFor(t, func() bool { l, _ := lags.get(); return l == 0 }, "the lag hook did not report the end of the failures")
}

// TestUnitLostThroughFailures: renewals that fail are a run of failures in
// the unit's Health; once the lease expires the subscription's entry says
// it lost the unit through a failure (not a standby), with a lag that
// grows, until a renewal works again.
func TestUnitLostThroughFailures(t *testing.T) {
	errThrottled := errors.New("throttled")
	e := newLeaseEnv(t, 100, 5, 1, LeaseOptions{Duration: time.Second, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond})
	p := &pausable{Mem: e.mem, renewErr: errThrottled}
	e.cps = p
	e.allow.Store(1000)
	a := e.start("a", nil)
	entry := func() Health {
		hs := a.w.Health()
		if len(hs) != 1 {
			t.Fatalf("health %+v", hs)
		}
		return hs[0]
	}
	memWaitFor(t, func() bool { return entry().State == StateRunning }, "not running")

	p.fail.Store(true)
	memWaitFor(t, func() bool { return entry().RenewErr != nil }, "a failed renewal is not in Health")
	first := entry()
	if !errors.Is(first.RenewErr, errThrottled) || first.RenewErrSince.IsZero() || first.RenewErrSince.After(time.Now()) {
		t.Fatalf("renewal error %v since %v", first.RenewErr, first.RenewErrSince)
	}
	memWaitFor(t, func() bool { return entry().State == StateWaiting }, "the lease did not expire")
	lost := entry()
	if !errors.Is(lost.LostErr, ErrLeaseExpired) || lost.LostAt.IsZero() {
		t.Fatalf("waiting with lost %v at %v; want ErrLeaseExpired", lost.LostErr, lost.LostAt)
	}
	time.Sleep(20 * time.Millisecond)
	if later := entry(); later.State == StateWaiting && later.Lag <= lost.Lag {
		t.Fatalf("lag %v then %v while the unit is lost; want it growing", lost.Lag, later.Lag)
	}

	// Renewals work again: the unit is taken back, and once renewed the
	// loss is forgotten.
	p.fail.Store(false)
	memWaitFor(t, func() bool {
		r := a.w.byName["shared"]
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.health.LostErr == nil
	}, "the loss was not forgotten after a renewal that worked")
	if h := entry(); h.State != StateRunning || h.RenewErr != nil {
		t.Fatalf("after the failures: %+v", h)
	}
}

// TestStandbyIsNotLost: a worker whose unit another worker takes (a
// refused renewal: fenced) did not lose it through a failure.
func TestStandbyIsNotLost(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{checkpoint.ErrFenced, false},
		{ErrLeaseExpired, true},
		{checkpoint.ErrNotFound, true},
		{nil, false},
	} {
		if got := lostByError(c.err); got != c.want {
			t.Errorf("lostByError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
