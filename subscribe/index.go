package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// source is where a subscription's commits come from. The worker runs one
// per subscription.
type source interface {
	// run emits commits until ctx ends (returning ctx.Err()) or an error it
	// cannot recover from. Each emitted commit's done is called once it is
	// handled (or durably parked or skipped).
	run(ctx context.Context, emit emitFunc) error
	// checkpoint returns the position to save: a restart from it loses
	// nothing handled or not. Only called while run runs or after it
	// returned.
	checkpoint() (string, error)
	// lag returns the commits read and not handled, and the age of the
	// oldest commit not handled (zero when caught up).
	lag(now time.Time) (int, time.Duration)
	// done records that an emitted commit is handled.
	done(c Commit)
}

// emitFunc hands a commit to the dispatcher; it blocks while the read-ahead
// is full and fails only when ctx ends. cause, when not nil, says the item
// is not a commit to hand to the handler as it is: a *store.DecodeError (c
// holds what could be read of it) or a *GapError (c follows an unfillable
// gap); the dispatcher applies the subscription's Corrupt policy to it.
type emitFunc func(ctx context.Context, c Commit, cause error) error

// indexCheckpoint is the index source's saved position, as JSON.
type indexCheckpoint struct {
	// After: every commit at or before it is handled, except Pending.
	After store.Position `json:"after"`
	// Sweep is where a restart re-reads from for late arrivals (at most
	// After).
	Sweep store.Position `json:"sweep"`
	// Pending lists late commits before After not yet handled: a restart
	// delivers them first.
	Pending []store.Position `json:"pending,omitempty"`
	// Aggregates holds, for each aggregate handled after Sweep, the next
	// version to handle: a restart drops versions below it as handled.
	Aggregates map[string]aggregateMark `json:"aggregates,omitempty"`
}

// aggregateMark is an aggregate's handled progress in a checkpoint.
type aggregateMark struct {
	// Next is the next version to handle: every version below it is.
	Next int64 `json:"next"`
	// LastCommitID and LastVersion locate the last version handled.
	LastCommitID string `json:"lastCommitId"`
	LastVersion  int64  `json:"lastVersion"`
}

func decodeIndexCheckpoint(s string) (indexCheckpoint, error) {
	var cp indexCheckpoint
	if err := json.Unmarshal([]byte(s), &cp); err != nil {
		return cp, fmt.Errorf("subscribe: checkpoint %q is not an index position: %w", s, err)
	}
	return cp, nil
}

// indexSource polls the commit-order index: a fresh cursor reads up to the
// settle watermark, a sweep cursor re-reads Overlap behind it for late
// arrivals, and a sequencer orders and repairs per aggregate.
type indexSource struct {
	sub    string
	reader Reader
	opts   IndexOptions
	clock  func() time.Time
	hooks  *hooks
	log    *slog.Logger

	seq     *sequencer
	track   *tracker
	pending []store.Position // from the checkpoint, delivered first

	fresh, sweep store.Position // cursors, used by run only
	lastSweep    time.Time      // when the sweep last ran
	lastProbe    time.Time      // when the index was last read past the future bound

	// lock guards the sequencer when another source shares it (the stream
	// source while it takes over); nil when the index source has its own.
	lock sync.Locker
	// sweptTo is the commit time (Unix ms) before which the sweep has
	// covered every commit; caughtUp is closed after the first poll that
	// found no fresh commit.
	sweptTo      atomic.Int64
	caughtUp     chan struct{}
	caughtUpOnce sync.Once
	// flowing is the last poll's watermark in Unix ms when that poll read
	// commits, else 0.
	flowing atomic.Int64
	// onRead, if not nil, learns the outcome of each read and when it
	// began (the unit's record of failing reads).
	onRead func(err error, began time.Time)
}

func newIndexSource(w *Worker, s Subscription, saved string) (*indexSource, error) {
	var start indexCheckpoint
	if saved != "" {
		var err error
		if start, err = decodeIndexCheckpoint(saved); err != nil {
			return nil, err
		}
	} else {
		start.After = s.Start.position(w.cfg.Clock())
		start.Sweep = start.After
	}
	return buildIndexSource(w, s, start, nil, nil), nil
}

// buildIndexSource returns an index source resuming from start. With seq
// nil it has its own sequencer; otherwise it shares seq under lock (the
// stream source's catch-up), which learns start's aggregates.
func buildIndexSource(w *Worker, s Subscription, start indexCheckpoint, seq *sequencer, lock sync.Locker) *indexSource {
	if start.Sweep.Compare(start.After) > 0 {
		start.Sweep = start.After
	}
	// Aggregates handled after the sweep position are known; any other
	// commit after it was not delivered.
	if seq == nil {
		seq = newSequencer(w, s, start.Sweep)
	} else {
		lock.Lock()
		seq.floor = start.Sweep
		lock.Unlock()
	}
	handled := make(map[string]handledAgg, len(start.Aggregates))
	for id, m := range start.Aggregates {
		last := store.Position{CommitID: m.LastCommitID, AggregateID: id, Version: m.LastVersion}
		if lock != nil {
			lock.Lock()
		}
		if seq.aggs[id] == nil {
			seq.known(id, m.Next, last)
		}
		if lock != nil {
			lock.Unlock()
		}
		handled[id] = handledAgg{next: m.Next, last: last}
	}
	src := &indexSource{
		sub: s.Name, reader: w.cfg.Reader, opts: s.Index, clock: w.cfg.Clock, hooks: &w.hooks, log: w.log,
		seq:     seq,
		track:   newTracker(start.After, start.Sweep, handled),
		pending: start.Pending,
		fresh:   start.After, sweep: start.Sweep,
		caughtUp: make(chan struct{}),
		lock:     lock,
	}
	return src
}

func (s *indexSource) checkpoint() (string, error) {
	b, err := json.Marshal(s.track.checkpoint())
	return string(b), err
}

func (s *indexSource) lag(now time.Time) (int, time.Duration) {
	n, oldest := s.track.inFlight()
	if n > 0 {
		return n, now.Sub(time.UnixMilli(oldest))
	}
	// Nothing in flight. While commits flow, the oldest one not handled is
	// at most as old as the last poll's watermark (commits newer than it are
	// left for the next poll); when the last poll found nothing, the
	// subscription is caught up.
	if at := s.flowing.Load(); at != 0 {
		return 0, max(now.Sub(time.UnixMilli(at)), 0)
	}
	return 0, 0
}

// readDone reports a read's outcome to onRead, if set.
func (s *indexSource) readDone(err error, began time.Time) {
	if s.onRead != nil {
		s.onRead(err, began)
	}
}

// done is called by the dispatcher for each handled commit.
func (s *indexSource) done(c Commit) { s.track.handled(c) }

func (s *indexSource) run(ctx context.Context, emit emitFunc) error {
	out := sink{owner: s.track, hold: s.track.hold, emit: func(c Commit, cause error) error {
		// A commit that could not be dispatched (the worker is stopping)
		// stays in the tracker as not handled, so the checkpoint keeps it.
		s.track.emitted(c)
		return emit(ctx, c, cause)
	}}
	for len(s.pending) > 0 {
		if err := s.deliverPending(ctx, out); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.readDone(err, s.clock())
			s.log.Warn("redelivering late commits from the checkpoint failed; retrying", "subscription", s.sub, "err", err)
			if !sleep(ctx, s.opts.PollMax) {
				return ctx.Err()
			}
		}
	}
	delay := s.opts.PollMin
	for {
		t0, started := s.clock(), time.Now()
		// A poll that starts from a cursor close to the watermark reads
		// no backlog: after it succeeds, the source has caught up.
		near := false
		if at, err := store.ParseCommitIDTime(s.fresh.CommitID); err == nil {
			near = !at.Before(t0.Add(-s.opts.Settle - 2*s.opts.PollMax))
		}
		n, err := s.poll(ctx, t0, out)
		if ctx.Err() != nil {
			return ctx.Err() // a stop, not a failed poll
		}
		if n > 0 {
			s.flowing.Store(t0.Add(-s.opts.Settle).UnixMilli())
		} else if err == nil {
			s.flowing.Store(0)
		}
		if err == nil && (n == 0 || near) {
			s.caughtUpOnce.Do(func() { close(s.caughtUp) })
		}
		for _, h := range s.hooks.poll {
			h.OnPoll(s.sub, n, s.clock().Sub(t0), err)
		}
		s.readDone(err, t0)
		switch {
		case err != nil:
			s.log.Warn("poll failed; retrying", "subscription", s.sub, "err", err)
			delay = s.opts.PollMax
		case n > 0:
			delay = s.opts.PollMin
		default:
			delay = min(delay*2, s.opts.PollMax)
		}
		// Polls are spaced start to start: a slow poll does not add its
		// own duration to the lag of the commits after it.
		if !sleep(ctx, delay-time.Since(started)) {
			return ctx.Err()
		}
	}
}

// offer passes c to the sequencer, under the shared lock if there is one.
// While the index catches up for the stream, both read the same commits on
// purpose: what one delivered, the other drops quietly.
func (s *indexSource) offer(ctx context.Context, it seqItem, reread bool, out sink) (bool, error) {
	if s.lock != nil {
		s.lock.Lock()
		defer s.lock.Unlock()
		reread = true
	}
	return s.seq.offer(ctx, it, reread, out)
}

// recheck reads the table again for the gaps the sequencer holds versions
// behind, and handles those past GapTimeout.
func (s *indexSource) recheck(ctx context.Context, out sink) error {
	if s.lock != nil {
		s.lock.Lock()
		defer s.lock.Unlock()
	}
	return s.seq.recheck(ctx, out)
}

// deliverPending reads the late commits a checkpoint listed and emits them.
func (s *indexSource) deliverPending(ctx context.Context, out sink) error {
	for len(s.pending) > 0 {
		p := s.pending[0]
		v := min(max(p.Version, 0), store.MaxVersion)
		for c, err := range s.reader.Query(ctx, p.AggregateID, v, func(o *store.QueryOptions) { o.ToVersion = v + 1 }) {
			it, ok := readItem(c, err)
			if !ok {
				return err
			}
			if _, err := s.offer(ctx, it, false, out); err != nil {
				return err
			}
		}
		s.pending = s.pending[1:]
	}
	return nil
}

// poll reads fresh commits up to the watermark, then sweeps behind it. It
// returns how many fresh commits it read.
func (s *indexSource) poll(ctx context.Context, now time.Time, out sink) (int, error) {
	watermark := commitIDPrefix(now.Add(-s.opts.Settle))
	// A commit already older than the sweep's window when this read finds
	// it would be found by the sweep only if it were visible now, and then
	// this read finds it: once the sweep has covered everything before this
	// read, it moves along with such commits instead of reading them again
	// (a backlog is read once, not twice).
	sweepAlong := s.opts.Overlap >= 0 && s.sweep.Compare(s.fresh) >= 0
	old := now.Add(-s.opts.Settle - s.opts.Overlap).UnixMilli()
	n := 0
	for c, err := range s.reader.Scan(ctx, s.fresh, s.scanOpts(watermark)) {
		it, ok := readItem(c, err)
		if !ok {
			return n, err
		}
		if _, err := s.offer(ctx, it, false, out); err != nil {
			return n, err
		}
		n++
		s.fresh = it.c.Position()
		s.track.advance(s.fresh)
		if sweepAlong = sweepAlong && it.c.CommittedAt < old; sweepAlong {
			s.sweep = s.fresh
			s.track.swept(s.sweep)
		}
	}
	switch {
	case s.opts.Overlap < 0:
		s.sweep = s.fresh
		s.track.swept(s.sweep)
		s.sweptTo.Store(now.Add(-s.opts.Settle).UnixMilli())
	case now.Sub(s.lastSweep) >= max(s.opts.Overlap/8, s.opts.PollMin):
		// The sweep need not run every poll: a late arrival waits at most
		// an eighth of the overlap longer, and polls stay short.
		if err := s.sweepOnce(ctx, now, out); err != nil {
			return n, err
		}
		s.lastSweep = now
		s.sweptTo.Store(now.Add(-s.opts.Settle - s.opts.Overlap).UnixMilli())
	}
	if now.Sub(s.lastProbe) >= futureProbeEvery(s.opts) {
		if err := s.probe(ctx, now, out); err != nil {
			return n, err
		}
		s.lastProbe = now
	}
	if err := s.recheck(ctx, out); err != nil {
		return n, err
	}
	if s.lock != nil {
		s.lock.Lock()
		defer s.lock.Unlock()
	}
	s.seq.forget(s.sweep)
	return n, nil
}

// sweepOnce re-reads from the sweep cursor up to Overlap behind the
// watermark, never past the fresh cursor, delivering what was not seen.
func (s *indexSource) sweepOnce(ctx context.Context, now time.Time, out sink) error {
	bound := commitIDPrefix(now.Add(-s.opts.Settle - s.opts.Overlap))
	if bound <= s.sweep.CommitID {
		return nil
	}
	for c, err := range s.reader.Scan(ctx, s.sweep, s.scanOpts(bound)) {
		it, ok := readItem(c, err)
		if !ok {
			return err
		}
		c = it.c
		if c.Position().Compare(s.fresh) > 0 {
			return nil // the fresh cursor has not read this far
		}
		delivered, err := s.offer(ctx, it, true, out)
		if err != nil {
			return err
		}
		if delivered && it.cause == nil {
			s.log.Info("late arrival delivered", "subscription", s.sub, "aggregate", c.AggregateID, "version", c.Version, "commitId", c.CommitID)
			for _, h := range s.hooks.late {
				h.OnLateArrival(s.sub, c)
			}
		}
		s.sweep = c.Position()
		s.track.swept(s.sweep)
	}
	return nil
}

func (s *indexSource) scanOpts(before string) func(*store.ScanOptions) {
	return func(o *store.ScanOptions) {
		o.Before = before
		o.Buckets = s.opts.Buckets
	}
}

// futureProbeEvery is how often the index source reads the index past the
// future bound: ten times PollMax (20 s by default), one Query per bucket.
func futureProbeEvery(o IndexOptions) time.Duration { return 10 * o.PollMax }

// probe reads the index from store.MaxCommitIDAhead past now on: what it
// finds there the watermark would hold back for a long time (for ever, for a
// commit id such as "garbage:agg" that sorts after every time). Items there
// that are not well-formed commits (a commit id too far ahead, malformed)
// are offered now, in their aggregate's order; the Corrupt policy handles
// them.
func (s *indexSource) probe(ctx context.Context, now time.Time, out sink) error {
	from := store.FromCommitID(commitIDPrefix(now.Add(store.MaxCommitIDAhead)))
	for c, err := range s.reader.Scan(ctx, from, s.scanOpts("")) {
		it, ok := readItem(c, err)
		if !ok {
			return err
		}
		if it.cause == nil {
			continue // well formed by the reader's clock: the fresh cursor reads it in time
		}
		if _, err := s.offer(ctx, it, true, out); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
