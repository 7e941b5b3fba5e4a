package subscribe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// dispatcher runs a unit's handlers: one lane per aggregate with commits
// waiting, lanes handled by Concurrency goroutines, each lane by one
// goroutine at a time, in order. The read-ahead is bounded by MaxInFlight.
type dispatcher struct {
	r     *subRunner
	u     *unit         // whose source learns what is handled; nil for a replay outside Run
	slots chan struct{} // one per commit in flight

	mu       sync.Mutex
	lanes    map[string]*lane
	ready    []*lane
	wake     chan struct{}
	inflight int
	idle     chan struct{} // closed when inflight drops to 0, if set
	parked   map[string]bool
}

type lane struct {
	id        string
	queue     []laneItem
	scheduled bool
	dead      bool // abandoned by a stopped subscription
}

type laneItem struct {
	c      Commit
	readAt time.Time // when the source gave it, by Config.Clock
	cause  error     // not a commit to hand to the handler as it is: see emitFunc
	replay *replayTask
}

// replayTask is a replay, or with discard a discard, of an aggregate's
// parked commits, run in the aggregate's lane.
type replayTask struct {
	aggregateID string
	discard     bool
	done        chan replayResult
}

type replayResult struct {
	n   int
	err error
}

func newDispatcher(r *subRunner, u *unit, parked map[string]bool) *dispatcher {
	return &dispatcher{
		r: r, u: u, slots: make(chan struct{}, r.s.MaxInFlight),
		lanes: map[string]*lane{}, wake: make(chan struct{}, 1), parked: parked,
	}
}

// submit queues a commit on its aggregate's lane, waiting for room in the
// read-ahead; it fails only when ctx ends. cause: see emitFunc.
func (d *dispatcher) submit(ctx context.Context, c Commit, cause error) error {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.enqueue(laneItem{c: c, cause: cause, readAt: d.r.w.cfg.Clock()})
	return nil
}

func (d *dispatcher) enqueue(it laneItem) {
	id := it.c.AggregateID
	if it.replay != nil {
		id = it.replay.aggregateID
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[id]
	if l == nil {
		l = &lane{id: id}
		d.lanes[id] = l
	}
	if l.dead {
		if it.replay == nil {
			<-d.slots
		} else {
			it.replay.done <- replayResult{err: ErrStopped}
		}
		return
	}
	if it.replay == nil {
		d.inflight++
	}
	l.queue = append(l.queue, it)
	if !l.scheduled {
		l.scheduled = true
		d.ready = append(d.ready, l)
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// work runs lanes until ctx ends.
func (d *dispatcher) work(ctx context.Context) {
	for {
		d.mu.Lock()
		var l *lane
		if len(d.ready) > 0 {
			l = d.ready[0]
			d.ready[0] = nil
			d.ready = d.ready[1:]
		}
		more := len(d.ready) > 0
		d.mu.Unlock()
		if more {
			select { // pass the wake-up on to another goroutine
			case d.wake <- struct{}{}:
			default:
			}
		}
		if l == nil {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
				continue
			}
		}
		if !d.runLane(ctx, l) {
			return
		}
	}
}

// runLane handles a lane's items until it is empty. It returns false when
// the subscription stops or ctx ends, leaving the rest unhandled.
func (d *dispatcher) runLane(ctx context.Context, l *lane) bool {
	for {
		d.mu.Lock()
		if len(l.queue) == 0 {
			l.scheduled = false
			delete(d.lanes, l.id)
			d.mu.Unlock()
			return true
		}
		var batch []laneItem
		if l.queue[0].replay != nil || l.queue[0].cause != nil {
			batch = l.queue[:1]
		} else {
			n := 1
			for n < len(l.queue) && n < d.r.maxBatch && l.queue[n].replay == nil && l.queue[n].cause == nil {
				n++
			}
			batch = l.queue[:n]
		}
		l.queue = l.queue[len(batch):]
		parked := d.parked[l.id]
		d.mu.Unlock()

		if rt := batch[0].replay; rt != nil {
			var res replayResult
			if rt.discard {
				res.n, res.err = d.discard(ctx, rt.aggregateID)
			} else {
				res.n, res.err = d.replay(ctx, rt.aggregateID)
			}
			rt.done <- res
			continue
		}
		commits := make([]Commit, len(batch))
		since := make([]time.Time, len(batch))
		for i, it := range batch {
			commits[i], since[i] = it.c, it.readAt
		}
		left := 0
		if cause := batch[0].cause; cause != nil {
			left = d.handleCorrupt(ctx, batch[0].c, since[0], cause, parked)
		} else {
			left = d.handle(ctx, commits, since, parked)
		}
		if left > 0 {
			if ctx.Err() == nil {
				// The subscription stopped at this aggregate: give up its
				// lane, and go on with other aggregates' commits in
				// flight, which the stop drains.
				d.abandon(l, left)
				return true
			}
			return false
		}
	}
}

// abandon gives up a stopped subscription's lane: left commits of the batch
// in hand and those queued behind it are never handled, so the drain does
// not wait for them. They stay unacknowledged: the checkpoint stays before
// them.
func (d *dispatcher) abandon(l *lane, left int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := left
	for _, it := range l.queue {
		if it.replay != nil {
			it.replay.done <- replayResult{err: ErrStopped}
		} else {
			n++
		}
	}
	l.queue, l.dead = nil, true
	for range n {
		<-d.slots
	}
	d.inflight -= n
	if d.inflight == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// handle delivers one aggregate's consecutive commits, read at since,
// applying retries and the subscription's policy. It returns how many
// commits it left unhandled because the subscription stops or ctx ends: 0
// when all are done with.
func (d *dispatcher) handle(ctx context.Context, commits []Commit, since []time.Time, parked bool) int {
	r := d.r
	if parked && d.u != nil && d.u.shard != "" && !d.stillParked(ctx, commits[0].AggregateID) {
		parked = false
	}
	for len(commits) > 0 {
		if parked {
			if err := d.park(ctx, commits[0], nil, 0); err != nil {
				return len(commits)
			}
			d.ack(commits[:1])
			commits, since = commits[1:], since[1:]
			continue
		}
		deadlines := make([]time.Time, len(commits))
		for i, c := range commits {
			deadlines[i] = r.recordDeadline(c, since[i])
		}
		n, attempts, err := r.call(ctx, commits, deadlines)
		d.ack(commits[:n])
		commits, since = commits[n:], since[n:]
		if err == nil {
			return 0
		}
		if ctx.Err() != nil {
			return len(commits)
		}
		c := commits[0]
		switch {
		case Classify(err) == FailureSkip || r.s.Policy == PolicySkip:
			r.log.Warn("commit skipped", "aggregate", c.AggregateID, "version", c.Version, "commitId", c.CommitID, "err", err)
			for _, h := range r.w.hooks.skipped {
				h.OnSkipped(r.s.Name, c, err)
			}
			d.ack(commits[:1])
			commits, since = commits[1:], since[1:]
		case r.s.Policy == PolicyStop:
			r.stop(&StoppedError{Subscription: r.s.Name, AggregateID: c.AggregateID, Version: c.Version, Err: err})
			return len(commits)
		default:
			if err := d.park(ctx, c, err, attempts); err != nil {
				return len(commits)
			}
			d.ack(commits[:1])
			commits, since = commits[1:], since[1:]
			parked = true
		}
	}
	return 0
}

// handleCorrupt applies the subscription's Corrupt policy to an item that is
// not a commit to hand to the handler as it is (cause: a *store.DecodeError,
// or a *GapError for the version after an unfillable gap), already
// reported; since is when the source gave it. It returns 1 when the
// subscription stops or ctx ends first.
func (d *dispatcher) handleCorrupt(ctx context.Context, c Commit, since time.Time, cause error, parked bool) int {
	r := d.r
	var gap *GapError
	switch {
	case r.s.Corrupt == CorruptPark:
		if err := d.park(ctx, c, cause, 0); err != nil {
			return 1
		}
		if c.Version > store.MaxVersion && !parked {
			// A version outside the aggregate's order holds nothing behind it.
			d.mu.Lock()
			delete(d.parked, c.AggregateID)
			d.mu.Unlock()
		}
	case errors.As(cause, &gap):
		// Skip: the version after the gap is handled across it.
		return d.handle(ctx, []Commit{c}, []time.Time{since}, parked)
	default:
		r.log.Warn("corrupt item skipped", "aggregate", c.AggregateID, "version", c.Version, "commitId", c.CommitID, "err", cause)
		for _, h := range r.w.hooks.skipped {
			h.OnSkipped(r.s.Name, c, cause)
		}
	}
	d.ack([]Commit{c})
	return 0
}

// stillParked reports whether the park store still holds commits of an
// aggregate this dispatcher has marked parked, and forgets the mark when it
// holds none. A stream shard's unit asks before parking behind the mark:
// an aggregate's commits may come through several shards, whose units may
// run in other workers, and a replay or discard carried out by one of them
// clears the mark of that one only. A failed read keeps the mark.
func (d *dispatcher) stillParked(ctx context.Context, aggregateID string) bool {
	r := d.r
	for _, err := range r.w.cfg.Parking.Parked(ctx, r.s.Name, aggregateID) {
		if err != nil {
			r.log.Warn("checking an aggregate's parked commits failed; parking behind them", "aggregate", aggregateID, "err", err)
		}
		return true
	}
	d.mu.Lock()
	delete(d.parked, aggregateID)
	d.mu.Unlock()
	r.tally.forget(aggregateID)
	r.log.Info("the aggregate's parked commits were replayed or discarded elsewhere; handling it again", "aggregate", aggregateID)
	return false
}

// park stores c durably as parked and marks its aggregate parked, retrying
// the write until it succeeds or ctx ends.
func (d *dispatcher) park(ctx context.Context, c Commit, cause error, attempts int) error {
	r := d.r
	reason := "parked behind an earlier commit of its aggregate"
	if cause != nil {
		reason = cause.Error()
	}
	p := checkpoint.Parked{Subscription: r.s.Name, Commit: c, Reason: reason, Attempts: attempts, ParkedAt: r.w.cfg.Clock()}
	backoff := r.s.Retry.InitialBackoff
	for {
		err := r.w.cfg.Parking.Park(ctx, p)
		if err == nil {
			break
		}
		r.log.Error("parking a commit failed; retrying", "aggregate", c.AggregateID, "version", c.Version, "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return ctx.Err()
		}
		backoff = min(backoff*2, r.s.Retry.MaxBackoff)
	}
	d.mu.Lock()
	d.parked[c.AggregateID] = true
	d.mu.Unlock()
	r.tally.parked(c)
	r.log.Warn("commit parked", "aggregate", c.AggregateID, "version", c.Version, "commitId", c.CommitID, "reason", reason)
	for _, h := range r.w.hooks.parked {
		h.OnParked(r.s.Name, c, cause)
	}
	return nil
}

// ack marks commits done: the source may checkpoint past them.
func (d *dispatcher) ack(commits []Commit) {
	if len(commits) == 0 {
		return
	}
	for _, c := range commits {
		d.u.src.done(c)
		<-d.slots
	}
	d.mu.Lock()
	d.inflight -= len(commits)
	if d.inflight == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
	d.mu.Unlock()
}

// drain waits until nothing is in flight, timeout passes or abort is
// closed, reporting whether everything was handled.
func (d *dispatcher) drain(timeout time.Duration, abort <-chan struct{}) bool {
	d.mu.Lock()
	if d.inflight == 0 {
		d.mu.Unlock()
		return true
	}
	idle := make(chan struct{})
	d.idle = idle
	d.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	case <-abort:
		return false
	}
}

// replay delivers an aggregate's parked commits in order, removing each once
// handled; when all are, the aggregate is no longer parked. It runs in the
// aggregate's lane, so nothing else of the aggregate is handled meanwhile.
func (d *dispatcher) replay(ctx context.Context, aggregateID string) (int, error) {
	r := d.r
	n := 0
	for p, err := range r.w.cfg.Parking.Parked(ctx, r.s.Name, aggregateID) {
		if err != nil {
			return n, fmt.Errorf("subscribe: replay %q of %q: list parked: %w", aggregateID, r.s.Name, err)
		}
		if _, _, err := r.call(ctx, []Commit{p.Commit}, []time.Time{r.w.cfg.Clock().Add(replayRetryWindow)}); err != nil {
			if Classify(err) != FailureSkip {
				return n, fmt.Errorf("subscribe: replay %q of %q: version %d still fails: %w", aggregateID, r.s.Name, p.Commit.Version, err)
			}
			for _, h := range r.w.hooks.skipped {
				h.OnSkipped(r.s.Name, p.Commit, err)
			}
		}
		if err := r.w.cfg.Parking.Unpark(ctx, r.s.Name, aggregateID, p.Commit.Version); err != nil {
			return n, fmt.Errorf("subscribe: replay %q of %q: unpark version %d: %w", aggregateID, r.s.Name, p.Commit.Version, err)
		}
		r.tally.unparked(aggregateID)
		n++
	}
	d.mu.Lock()
	delete(d.parked, aggregateID)
	d.mu.Unlock()
	r.log.Info("parked aggregate replayed", "aggregate", aggregateID, "commits", n)
	return n, nil
}

// discard drops an aggregate's parked commits unhandled, removing each from
// the park store; when all are, the aggregate is no longer parked. It runs
// in the aggregate's lane, as replay does. A failed removal stops it: the
// commits not yet removed stay parked.
func (d *dispatcher) discard(ctx context.Context, aggregateID string) (int, error) {
	r := d.r
	n := 0
	first, last := int64(-1), int64(-1)
	for p, err := range r.w.cfg.Parking.Parked(ctx, r.s.Name, aggregateID) {
		if err != nil {
			return n, fmt.Errorf("subscribe: discard %q of %q: list parked: %w", aggregateID, r.s.Name, err)
		}
		if err := r.w.cfg.Parking.Unpark(ctx, r.s.Name, aggregateID, p.Commit.Version); err != nil {
			return n, fmt.Errorf("subscribe: discard %q of %q: unpark version %d: %w", aggregateID, r.s.Name, p.Commit.Version, err)
		}
		r.tally.unparked(aggregateID)
		if n == 0 {
			first = p.Commit.Version
		}
		last = p.Commit.Version
		n++
	}
	d.mu.Lock()
	delete(d.parked, aggregateID)
	d.mu.Unlock()
	r.log.Warn("parked commits discarded unhandled", "aggregate", aggregateID, "commits", n, "fromVersion", first, "toVersion", last)
	return n, nil
}

// replayRetryWindow is how long a replay retries a parked commit's
// transient failures before it gives up and leaves it parked.
const replayRetryWindow = time.Minute

// recordDeadline returns when a commit read at readAt passes its maximum
// record age (RetryPolicy.MaxRecordAge), counted from the later of its
// commit time and readAt; zero for no limit.
func (r *subRunner) recordDeadline(c Commit, readAt time.Time) time.Time {
	if r.s.Retry.MaxRecordAge < 0 {
		return time.Time{}
	}
	base := readAt
	if at := time.UnixMilli(c.CommittedAt); at.After(base) {
		base = at
	}
	return base.Add(r.s.Retry.MaxRecordAge)
}

// exhaustedError wraps the last transient failure of a commit whose
// retries ran out, saying which limit ended them.
type exhaustedError struct {
	why string
	err error
}

func (e *exhaustedError) Error() string { return e.why + ": " + e.err.Error() }
func (e *exhaustedError) Unwrap() error { return e.err }

// call runs the handler on commits with retries (see RetryPolicy): a
// transient failure is retried until deadlines[i] (zero: no limit) of the
// first commit not handled passes, or another limit of the RetryPolicy, a
// permanent one is not. It returns how many commits were handled, the
// attempts spent on the first one not handled, and the error that ended
// its retries, nil when all were handled; an error of ctx's when ctx ended.
func (r *subRunner) call(ctx context.Context, commits []Commit, deadlines []time.Time) (int, int, error) {
	clock, p := r.w.cfg.Clock, r.s.Retry
	handled, attempts := 0, 0
	start := clock()
	backoff := p.InitialBackoff
	var last error
	for {
		c, deadline := commits[handled], deadlines[handled]
		probe, ok := r.circuit.gate(ctx, deadline)
		if !ok {
			if ctx.Err() != nil {
				return handled, attempts, ctx.Err()
			}
			if last == nil {
				last = errors.New("subscribe: the circuit stayed open")
			}
			return handled, attempts, &exhaustedError{why: fmt.Sprintf("gave up after %d %s, waiting for the circuit, past the maximum record age %v",
				attempts, plural(attempts, "attempt", "attempts"), p.MaxRecordAge), err: last}
		}
		attempts++
		n, err := r.once(ctx, commits[handled:])
		class := FailureTransient
		var after time.Duration
		if err != nil {
			class = Classify(err)
			var ra *retryAfterError
			if errors.As(err, &ra) {
				after = ra.after
			}
		}
		switch {
		case err == nil || n > 0 || class != FailureTransient:
			r.circuit.record(c.AggregateID, probe, outcomeOK, 0)
		case ctx.Err() != nil:
			r.circuit.record(c.AggregateID, probe, outcomeNone, 0)
		default:
			r.circuit.record(c.AggregateID, probe, outcomeTransient, after)
		}
		if n > 0 {
			attempts, start, backoff = 1, clock(), p.InitialBackoff
		}
		handled += n
		if err == nil {
			return handled, 0, nil
		}
		if ctx.Err() != nil || class != FailureTransient {
			return handled, attempts, err
		}
		last = err
		c, deadline = commits[handled], deadlines[handled]
		now := clock()
		var why string
		switch {
		case !deadline.IsZero() && !now.Before(deadline):
			why = fmt.Sprintf("past the maximum record age %v", p.MaxRecordAge)
		case p.MaxAttempts > 0 && attempts >= p.MaxAttempts:
			why = fmt.Sprintf("MaxAttempts %d", p.MaxAttempts)
		case p.MaxElapsed > 0 && now.Sub(start) >= p.MaxElapsed:
			why = fmt.Sprintf("MaxElapsed %v", p.MaxElapsed)
		}
		if why != "" {
			return handled, attempts, &exhaustedError{why: fmt.Sprintf("gave up after %d %s over %v, %s",
				attempts, plural(attempts, "attempt", "attempts"), now.Sub(start).Round(time.Millisecond), why), err: err}
		}
		delay := jitter(backoff)
		if after > 0 {
			delay = after
		}
		if !deadline.IsZero() {
			delay = min(delay, deadline.Sub(now))
		}
		for _, h := range r.w.hooks.retry {
			h.OnRetry(r.s.Name, c, attempts, delay, err)
		}
		r.log.Debug("handler failed; retrying", "aggregate", c.AggregateID,
			"version", c.Version, "attempt", attempts, "delay", delay, "err", err)
		if !sleep(ctx, delay) {
			return handled, attempts, ctx.Err()
		}
		backoff = min(backoff*2, p.MaxBackoff)
	}
}

// once calls the handler once with a per-attempt timeout, turning a panic
// into an error. It returns how many commits were handled.
func (r *subRunner) once(ctx context.Context, commits []Commit) (n int, err error) {
	actx, cancel := context.WithTimeout(ctx, r.s.Retry.AttemptTimeout)
	defer cancel()
	observed := len(r.w.hooks.handled) > 0
	var t0 time.Time
	if observed {
		t0 = time.Now()
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("handler panicked", "aggregate", commits[0].AggregateID, "panic", p, "stack", string(debug.Stack()))
			n, err = 0, fmt.Errorf("subscribe: handler panicked: %v", p)
		}
		if !observed {
			return
		}
		events := 0
		for _, c := range commits[:n] {
			events += countEvents(c)
		}
		d := time.Since(t0)
		for _, h := range r.w.hooks.handled {
			h.OnHandled(r.s.Name, n, events, d, err)
		}
	}()
	err = r.handler.HandleBatch(actx, commits)
	if err == nil {
		return len(commits), nil
	}
	var be *BatchError
	if errors.As(err, &be) && be.Index >= 0 && be.Index < len(commits) {
		return be.Index, be.Err
	}
	return 0, err
}

// countEvents counts the top-level elements of a commit's events array
// without decoding them.
func countEvents(c Commit) int {
	depth, n, inString, escaped := 0, 0, false, false
	for _, b := range c.Events {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
			if depth == 1 && n == 0 {
				n = 1
			}
		case b == '[' || b == '{':
			if depth == 1 && n == 0 {
				n = 1
			}
			depth++
		case b == ']' || b == '}':
			depth--
		case b == ',' && depth == 1:
			n++
		case depth == 1 && n == 0 && b != ' ' && b != '\n' && b != '\t' && b != '\r':
			n = 1
		}
	}
	return n
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
