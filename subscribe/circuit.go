package subscribe

import (
	"context"
	"sync"
	"time"
)

// breaker decides when a subscription's circuit opens, which call goes
// through it while it is open, and when it closes (see RetryPolicy). It is
// pure: no clock, no goroutine, no lock; the times come in as arguments
// and the randomness through jitter. circuit wraps it for the dispatcher.
//
// Closed, every call goes through. A transient failure adds its aggregate
// to the failing set; any success, skip or permanent failure empties it
// (the handler answered). When the set reaches openAfter aggregates, the
// circuit opens. Open, calls wait; once nextProbe has come, one call, the
// probe, goes through at a time. A probe that fails transiently doubles
// the delay to the next one, up to maxBackoff (or waits what the handler
// asked with RetryAfter); any other outcome of any call closes the
// circuit.
type breaker struct {
	openAfter           int // ≤ 0: never opens
	initial, maxBackoff time.Duration
	jitter              func(time.Duration) time.Duration

	failing   map[string]bool // aggregates failing transiently since the last success
	openSince time.Time       // zero while closed
	probing   bool            // a probe is out
	nextProbe time.Time
	backoff   time.Duration // the delay before nextProbe, before jitter
}

// outcome is the result of one call, as the circuit sees it.
type outcome int

const (
	outcomeOK        outcome = iota // success, skip or permanent failure: the handler answered
	outcomeTransient                // a transient failure
	outcomeNone                     // no result: the call was cancelled
)

// admit reports whether a call may go now and whether it is the probe;
// when it may not, wait is how long until a probe may go (0: wait for the
// probe out to end).
func (b *breaker) admit(now time.Time) (ok, probe bool, wait time.Duration) {
	switch {
	case b.openSince.IsZero():
		return true, false, 0
	case b.probing:
		return false, false, 0
	case now.Before(b.nextProbe):
		return false, false, b.nextProbe.Sub(now)
	}
	b.probing = true
	return true, true, 0
}

// record takes the outcome of a call of aggregate that admit let through;
// after is the delay the handler asked for (RetryAfter), zero if none. It
// reports whether the circuit opened or closed.
func (b *breaker) record(now time.Time, aggregate string, probe bool, o outcome, after time.Duration) (opened, closed bool) {
	if probe {
		b.probing = false
	}
	switch o {
	case outcomeNone:
		return false, false
	case outcomeOK:
		clear(b.failing)
		if b.openSince.IsZero() {
			return false, false
		}
		b.openSince, b.nextProbe, b.backoff = time.Time{}, time.Time{}, 0
		return false, true
	}
	if !b.openSince.IsZero() {
		if probe {
			b.backoff = min(b.backoff*2, b.maxBackoff)
			b.nextProbe = now.Add(b.delay(after))
		}
		return false, false
	}
	if b.openAfter <= 0 {
		return false, false
	}
	if b.failing == nil {
		b.failing = map[string]bool{}
	}
	b.failing[aggregate] = true
	if len(b.failing) < b.openAfter {
		return false, false
	}
	clear(b.failing)
	b.openSince, b.backoff = now, b.initial
	b.nextProbe = now.Add(b.delay(after))
	return true, false
}

func (b *breaker) delay(after time.Duration) time.Duration {
	if after > 0 {
		return after
	}
	return b.jitter(b.backoff)
}

// circuit is a subscription's breaker, shared by its units in this worker:
// calls wait in gate while it is open.
type circuit struct {
	now    func() time.Time
	notify func(open bool, at time.Time) // called on each change, under the lock

	mu      sync.Mutex
	b       breaker
	changed chan struct{} // closed and replaced when a probe ends or the circuit closes
}

func newCircuit(p RetryPolicy, concurrency int, now func() time.Time, notify func(bool, time.Time)) *circuit {
	openAfter := p.CircuitOpenAfter
	if openAfter > concurrency {
		openAfter = concurrency
	}
	return &circuit{
		now: now, notify: notify, changed: make(chan struct{}),
		b: breaker{openAfter: openAfter, initial: p.InitialBackoff, maxBackoff: p.MaxBackoff, jitter: jitter},
	}
}

// gate waits until a call may go, and reports whether it is the probe. It
// gives up when ctx ends or deadline (if not zero) passes, with ok false.
func (c *circuit) gate(ctx context.Context, deadline time.Time) (probe, ok bool) {
	for {
		c.mu.Lock()
		now := c.now()
		admitted, probe, wait := c.b.admit(now)
		changed := c.changed
		c.mu.Unlock()
		if admitted {
			return probe, true
		}
		if !deadline.IsZero() {
			left := deadline.Sub(now)
			if left <= 0 {
				return false, false
			}
			if wait == 0 || left < wait {
				wait = left
			}
		}
		var timer *time.Timer
		var fired <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return false, false
		}
	}
}

// record takes the outcome of a call that gate let through.
func (c *circuit) record(aggregate string, probe bool, o outcome, after time.Duration) {
	c.mu.Lock()
	now := c.now()
	opened, closed := c.b.record(now, aggregate, probe, o, after)
	if probe || closed {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	if opened || closed {
		// Under the lock, so that the hooks see the changes in order.
		c.notify(opened, now)
	}
	c.mu.Unlock()
}

// openSince returns when the circuit opened, zero while it is closed.
func (c *circuit) openSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.openSince
}

// parkedTally counts a subscription's parked commits known to this worker,
// per aggregate: those its units loaded at start, plus those they parked
// since, minus those they replayed or discarded. Health and HookParkedNow
// report it.
type parkedTally struct {
	notify func(aggregates, commits int) // called on each change, under the lock

	mu   sync.Mutex
	aggs map[string]parkedCount
}

type parkedCount struct {
	commits int
	top     int64 // the highest version parked: parking it again (a redelivery) counts once
}

// load sets the counts of aggregates a unit found parked at start.
func (t *parkedTally) load(counts map[string]parkedCount) {
	if len(counts) == 0 {
		return
	}
	t.change(func() {
		for id, n := range counts {
			t.aggs[id] = n
		}
	})
}

// parked counts commit c parked.
func (t *parkedTally) parked(c Commit) {
	t.change(func() {
		n, ok := t.aggs[c.AggregateID]
		if ok && c.Version <= n.top {
			return
		}
		t.aggs[c.AggregateID] = parkedCount{commits: n.commits + 1, top: c.Version}
	})
}

// unparked counts one commit of aggregate replayed or discarded.
func (t *parkedTally) unparked(aggregate string) {
	t.change(func() {
		n := t.aggs[aggregate]
		if n.commits <= 1 {
			delete(t.aggs, aggregate)
			return
		}
		n.commits--
		t.aggs[aggregate] = n
	})
}

// forget drops aggregates with nothing parked any more, or no longer this
// worker's.
func (t *parkedTally) forget(aggregates ...string) {
	t.change(func() {
		for _, id := range aggregates {
			delete(t.aggs, id)
		}
	})
}

// of returns how many commits of aggregates are parked.
func (t *parkedTally) of(aggregates []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, id := range aggregates {
		n += t.aggs[id].commits
	}
	return n
}

func (t *parkedTally) change(f func()) {
	t.mu.Lock()
	if t.aggs == nil {
		t.aggs = map[string]parkedCount{}
	}
	f()
	aggs, commits := len(t.aggs), 0
	for _, n := range t.aggs {
		commits += n.commits
	}
	// Under the lock, so that the hooks see the changes in order.
	if t.notify != nil {
		t.notify(aggs, commits)
	}
	t.mu.Unlock()
}
