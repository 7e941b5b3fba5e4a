package subscribe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// subRunner runs one subscription: whole, as one unit held by Claim
// (Config.Leases nil), or as the units it holds through leases.
type subRunner struct {
	w       *Worker
	s       Subscription
	handler BatchHandler
	log     *slog.Logger
	// maxBatch is MaxBatch for a BatchHandler and 1 for a Handler, whose
	// commits are each acknowledged as soon as they are handled.
	maxBatch int
	// specs are the subscription's units, fixed at Register; bucketOf
	// returns an aggregate's index bucket when the units are buckets, and
	// is nil when the subscription is one unit.
	specs    []unitSpec
	bucketOf func(aggregateID string) string

	// requests carries out operators' requests; set by run before any
	// unit starts, nil when there is no request store.
	requests *requestServer
	// circuit is the subscription's circuit breaker, shared by its units;
	// tally counts its parked commits. Both set by Register.
	circuit *circuit
	tally   *parkedTally

	mu sync.Mutex
	// health is the subscription's own state and error; with Leases nil
	// it is also its one unit's health.
	health Health
	// units are the units running, by name. With Leases nil, the one unit
	// stays after it stopped, for Health.
	units map[string]*unit
	// requestUnit, for a stream subscription in shards, is the shard unit
	// that carries out operators' requests: the first by name of the
	// units of the last balance round.
	requestUnit string
	stopErr     error
	stopRun     context.CancelFunc
	// lostLag is the lag of the unit lost when health.LostErr was set.
	lostLag time.Duration
}

func (r *subRunner) setState(st State) {
	r.mu.Lock()
	r.health.State = st
	r.mu.Unlock()
}

func (r *subRunner) setErr(err error) {
	r.mu.Lock()
	r.health.Err = err
	r.mu.Unlock()
}

// snapshots returns the subscription's health: with Leases nil one entry;
// with leases one per unit running, by unit name, or when it runs none one
// for the subscription (Unit "", State StateWaiting while it runs).
func (r *subRunner) snapshots() []Health {
	type running struct {
		h    Health
		src  source
		disp *dispatcher
	}
	r.mu.Lock()
	var list []running
	if r.w.cfg.Leases == nil {
		rn := running{h: r.health}
		if u := r.units[""]; u != nil {
			rn.src, rn.disp = u.src, u.disp
		}
		list = append(list, rn)
	} else {
		for _, u := range r.units {
			list = append(list, running{h: *u.h, src: u.src, disp: u.disp})
		}
		if len(list) == 0 {
			h := r.health
			if h.State == StateRunning {
				h.State = StateWaiting
			}
			if h.LostErr != nil {
				h.Lag = r.lostLag + max(r.w.cfg.Clock().Sub(h.LostAt), 0)
			}
			list = append(list, running{h: h})
		}
	}
	r.mu.Unlock()
	slices.SortFunc(list, func(a, b running) int { return strings.Compare(a.h.Unit, b.h.Unit) })
	out := make([]Health, len(list))
	for i, rn := range list {
		h := rn.h
		if rn.src != nil && h.State == StateRunning {
			now := r.w.cfg.Clock()
			h.InFlight, h.Lag = rn.src.lag(now)
			h.Lag = max(h.Lag, readFailureLag(h, now, r.readDue()))
		}
		if rn.disp != nil {
			rn.disp.mu.Lock()
			aggs := slices.Collect(maps.Keys(rn.disp.parked))
			rn.disp.mu.Unlock()
			h.Parked, h.ParkedCommits = len(aggs), r.tally.of(aggs)
		}
		if h.State == StateRunning {
			h.CircuitOpenSince = r.circuit.openSince()
		}
		out[i] = h
	}
	return out
}

// dispatcherFor returns the dispatcher of the running unit that owns
// aggregateID, or nil when the subscription does not run (a replay then
// runs directly). With leases, an aggregate whose unit this worker does not
// run now returns an error matching ErrNotHeld.
func (r *subRunner) dispatcherFor(aggregateID string) (*dispatcher, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w.cfg.Leases == nil {
		if u := r.units[""]; u != nil && r.health.State == StateRunning {
			return u.disp, nil
		}
		return nil, nil
	}
	if r.health.State == StateIdle || r.health.State == StateStopped {
		return nil, nil
	}
	if u := r.unitForLocked(aggregateID); u != nil && u.h.State == StateRunning {
		return u.disp, nil
	}
	return nil, fmt.Errorf("%w: the unit of aggregate %q of subscription %q does not run in this worker", ErrNotHeld, aggregateID, r.s.Name)
}

// unitFor returns the running unit that owns aggregateID, or nil.
func (r *subRunner) unitFor(aggregateID string) *unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.unitForLocked(aggregateID); u != nil && u.h.State == StateRunning {
		return u
	}
	return nil
}

func (r *subRunner) unitForLocked(aggregateID string) *unit {
	if u := r.units[""]; u != nil {
		return u
	}
	if r.bucketOf != nil {
		return r.units[bucketUnit(r.bucketOf(aggregateID))]
	}
	// Stream shard units: an aggregate's commits may come through any
	// shard. The unit of the subscription first by name carries out
	// requests, in whichever worker runs it; the others learn of them when
	// they next meet the aggregate (see dispatcher.stillParked).
	if r.requestUnit == "" {
		return nil
	}
	return r.units[r.requestUnit]
}

// lag returns the commits read and not handled, and the age of the oldest
// one, over the units running, counting for a unit whose reads fail the
// time since they began to (see readFailureLag). While no unit runs here
// after one was lost through a failure (Health.LostErr), the age is the
// lost unit's lag then plus the time since. ok is false when no unit runs
// and none was lost so: the lag is another worker's to tell.
func (r *subRunner) lag(now time.Time) (n int, age time.Duration, ok bool) {
	r.mu.Lock()
	var srcs []source
	for _, u := range r.units {
		if u.src != nil {
			srcs = append(srcs, u.src)
			age = max(age, readFailureLag(*u.h, now, r.readDue()))
		}
	}
	ok = len(srcs) > 0
	if !ok && r.health.LostErr != nil {
		age, ok = r.lostLag+max(now.Sub(r.health.LostAt), 0), true
	}
	r.mu.Unlock()
	for _, src := range srcs {
		un, ua := src.lag(now)
		n, age = n+un, max(age, ua)
	}
	return n, age, ok
}

// reportLag reports the subscription's lag to the lag hooks every
// CheckpointInterval until ctx ends, by the clock: it keeps growing while
// nothing is read. A worker that runs no unit of the subscription reports
// 0 once, after having reported a lag, and then nothing.
func (r *subRunner) reportLag(ctx context.Context) {
	if len(r.w.hooks.lag) == 0 {
		return
	}
	t := time.NewTicker(r.s.CheckpointInterval)
	defer t.Stop()
	reported := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, age, ok := r.lag(r.w.cfg.Clock())
		if !ok && !reported {
			continue
		}
		reported = ok
		for _, h := range r.w.hooks.lag {
			h.OnLag(r.s.Name, age, n)
		}
	}
}

// stop ends the subscription with err: every unit stops reading and
// drains, and run returns err.
func (r *subRunner) stop(err error) {
	r.mu.Lock()
	if r.stopErr == nil {
		r.stopErr = err
	}
	cancel := r.stopRun
	r.mu.Unlock()
	r.log.Error("subscription stopping", "err", err)
	if cancel != nil {
		cancel()
	}
}

// kickRequests makes the request server read the requests now: a unit
// started, and may own pending ones.
func (r *subRunner) kickRequests() {
	if r.requests == nil {
		return
	}
	select {
	case r.requests.kick <- struct{}{}:
	default:
	}
}

func (r *subRunner) run(ctx context.Context) (err error) {
	r.setState(StateStarting)
	defer func() {
		r.mu.Lock()
		r.health.State, r.health.Err = StateStopped, err
		r.mu.Unlock()
		if err != nil {
			for _, h := range r.w.hooks.stopped {
				h.OnStopped(r.s.Name, err)
			}
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.stopRun = cancel
	r.mu.Unlock()

	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		r.reportLag(ctx)
	}()
	r.requests = newRequestServer(r)
	requestsDone := make(chan struct{})
	go func() {
		defer close(requestsDone)
		if r.requests != nil {
			r.requests.run(ctx)
		}
	}()
	var unitErr error
	if r.w.cfg.Leases == nil {
		unitErr = r.runWhole(ctx)
	} else {
		unitErr = r.runLeased(ctx)
	}
	cancel()
	<-lagDone
	<-requestsDone
	if r.requests != nil {
		r.requests.wait()
	}
	r.mu.Lock()
	err = r.stopErr
	r.mu.Unlock()
	if err == nil {
		err = unitErr
	}
	return err
}

// runWhole runs the subscription as one unit, claiming its checkpoint.
func (r *subRunner) runWhole(ctx context.Context) error {
	cp, err := r.claim(ctx, checkpoint.Key{Subscription: r.s.Name})
	if err != nil {
		return nil // ctx ended while starting: a clean stop
	}
	u := r.newUnit(unitSpec{}, false)
	return u.run(ctx, cp, time.Time{})
}

// runLeased runs the units the lease manager takes until ctx ends.
func (r *subRunner) runLeased(ctx context.Context) error {
	m := newLeaseManager(r)
	r.setState(StateRunning)
	return m.run(ctx)
}

// newSource returns a unit's source, resuming from a saved position (""
// for none).
func (r *subRunner) newSource(u *unit, saved string) (source, error) {
	if r.w.sourceFactory != nil {
		return r.w.sourceFactory(u, saved)
	}
	switch r.s.Source {
	case SourceIndex:
		src, err := newIndexSource(r.w, u.sub, saved)
		if err == nil {
			src.onRead = u.readDone
		}
		return src, err
	case SourceStream, SourceAuto:
		mode := hybridMode{shard: u.shard}
		if u.leased && u.name == "" {
			mode.split, mode.epoch = true, u.checkpoint().Lease
		}
		src, err := newHybridSource(r.w, u.sub, saved, mode)
		if err == nil {
			src.onRead = u.readDone
		}
		return src, err
	}
	return nil, fmt.Errorf("%w: subscription %q: source %v", ErrInvalidConfig, r.s.Name, r.s.Source)
}

// claim takes the subscription's checkpoint, retrying until ctx ends.
func (r *subRunner) claim(ctx context.Context, key checkpoint.Key) (checkpoint.Checkpoint, error) {
	backoff := r.s.Retry.InitialBackoff
	for {
		cp, err := r.w.cfg.Checkpoints.Claim(ctx, key, r.w.cfg.Owner)
		if err == nil {
			return cp, nil
		}
		if ctx.Err() != nil {
			return cp, ctx.Err()
		}
		r.setErr(err)
		r.log.Error("claiming the checkpoint failed; retrying", "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return cp, ctx.Err()
		}
		backoff = min(backoff*2, r.s.Retry.MaxBackoff)
	}
}

// loadParked returns the aggregates of unit u with parked commits,
// retrying until ctx ends.
func (r *subRunner) loadParked(ctx context.Context, u *unit) (map[string]bool, error) {
	parked := map[string]bool{}
	if r.w.cfg.Parking == nil {
		return parked, nil
	}
	backoff := r.s.Retry.InitialBackoff
	for {
		var err error
		counts := map[string]parkedCount{}
		for p, perr := range r.w.cfg.Parking.Parked(ctx, r.s.Name, "") {
			if perr != nil {
				err = perr
				break
			}
			if id := p.Commit.AggregateID; u.owns(id) {
				parked[id] = true
				n := counts[id]
				counts[id] = parkedCount{commits: n.commits + 1, top: max(n.top, p.Commit.Version)}
			}
		}
		if err == nil {
			r.tally.load(counts)
			return parked, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		u.log.Error("listing parked commits failed; retrying", "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, r.s.Retry.MaxBackoff)
	}
}

// isLost reports whether err from Save or Renew means the lease is gone:
// another owner holds the key, or it has no checkpoint any more.
func isLost(err error) bool {
	return errors.Is(err, checkpoint.ErrFenced) || errors.Is(err, checkpoint.ErrNotFound)
}
