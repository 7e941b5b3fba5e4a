package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// unitSpec names one unit of a subscription's work: the whole subscription
// (name and bucket ""), or the commits of one index bucket.
type unitSpec struct {
	name   string // checkpoint.Key.Unit
	bucket string // the index bucket it reads; "" for every bucket
	// A stream shard's unit: the shard, the shard it was split from (if
	// any), and the epoch of the stream's hand-over it belongs to.
	shard, parent string
	epoch         int64
}

// bucketUnit returns the name of the unit of an index bucket.
func bucketUnit(bucket string) string { return "bucket-" + bucket }

// shardUnitPrefix starts the name of a stream shard's unit.
const shardUnitPrefix = "shard-"

// shardUnit returns the name of the unit of a stream shard.
func shardUnit(shard string) string { return shardUnitPrefix + shard }

// unit runs one unit of a subscription in this worker: its own checkpoint
// key, source, dispatcher and checkpoint. Parked commits and operators'
// requests stay the subscription's; the unit sees only its own aggregates.
type unit struct {
	r *subRunner
	unitSpec
	key checkpoint.Key
	// sub is the subscription, its index source restricted to the unit's
	// bucket.
	sub    Subscription
	leased bool
	log    *slog.Logger

	// h is the unit's health, guarded by r.mu: r.health itself when the
	// subscription runs whole by Claim. src and disp are set, under r.mu,
	// once the unit reads.
	h    *Health
	src  source
	disp *dispatcher

	// Set before any goroutine that uses them starts.
	handleCtx      context.Context
	stopRead       context.CancelFunc
	cancelHandlers context.CancelFunc

	// releasing: the lease manager hands the unit over to balance the load
	// (the subscription goes on).
	releasing atomic.Bool

	// startAfter, for a unit stolen from a live owner, is when that owner's
	// lease, as seen when stolen, expires: the unit reads nothing before,
	// so that the two never handle its commits at once.
	startAfter time.Time

	cpMu sync.Mutex
	cp   checkpoint.Checkpoint // the checkpoint held, as last saved

	lostMu sync.Mutex
	lost   error // why the lease was lost; nil while held

	// ended is why the source ended the unit by itself (errShardFinished,
	// errSplit, errRejoin); nil otherwise. Set before the unit's run
	// returns.
	ended error
}

func (r *subRunner) newUnit(spec unitSpec, leased bool) *unit {
	u := &unit{
		r: r, unitSpec: spec, key: checkpoint.Key{Subscription: r.s.Name, Unit: spec.name},
		sub: r.s, leased: leased, log: r.log,
	}
	if spec.bucket != "" {
		u.sub.Index.Buckets = []string{spec.bucket}
	}
	if spec.name != "" {
		u.log = r.log.With("unit", spec.name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if leased {
		u.h = &Health{Subscription: r.s.Name, Unit: spec.name, State: StateStarting}
	} else {
		u.h = &r.health
	}
	if r.units == nil {
		r.units = map[string]*unit{}
	}
	r.units[spec.name] = u
	return u
}

// remove forgets a leased unit that has stopped, and the parked
// aggregates only it knew of: another worker counts them now.
func (u *unit) remove() {
	u.r.mu.Lock()
	if u.r.units[u.name] == u {
		delete(u.r.units, u.name)
	}
	var others []*dispatcher
	for _, o := range u.r.units {
		if o.disp != nil {
			others = append(others, o.disp)
		}
	}
	d := u.disp
	u.r.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	var gone []string
	for id := range d.parked {
		gone = append(gone, id)
	}
	d.mu.Unlock()
	for _, o := range others {
		o.mu.Lock()
		gone = slices.DeleteFunc(gone, func(id string) bool { return o.parked[id] })
		o.mu.Unlock()
	}
	if len(gone) > 0 {
		u.r.tally.forget(gone...)
	}
}

// owns reports whether the aggregate's commits are the unit's.
func (u *unit) owns(aggregateID string) bool {
	return u.bucket == "" || u.r.bucketOf(aggregateID) == u.bucket
}

func (u *unit) setState(st State) {
	u.r.mu.Lock()
	u.h.State = st
	u.r.mu.Unlock()
}

func (u *unit) setErr(err error) {
	u.r.mu.Lock()
	u.h.Err = err
	u.r.mu.Unlock()
}

func (u *unit) checkpoint() checkpoint.Checkpoint {
	u.cpMu.Lock()
	defer u.cpMu.Unlock()
	return u.cp
}

func (u *unit) lostErr() error {
	u.lostMu.Lock()
	defer u.lostMu.Unlock()
	return u.lost
}

// lose records that the unit's lease is gone and cancels its work at once:
// reading stops and its handlers' contexts are cancelled, without waiting
// for a drain; nothing more is saved. It reports the loss once.
func (u *unit) lose(err error) {
	u.lostMu.Lock()
	first := u.lost == nil
	if first {
		u.lost = err
	}
	u.lostMu.Unlock()
	if !first {
		return
	}
	if lostByError(err) {
		u.r.unitLost(u, err, u.r.w.cfg.Clock())
	}
	u.cancelHandlers()
	u.stopRead()
	u.log.Warn("lease lost; the unit's work is cancelled", "err", err)
	for _, h := range u.r.w.hooks.lease {
		h.OnLeaseLost(u.r.s.Name, u.name, err)
	}
}

// run runs the unit from checkpoint cp until ctx ends or, with a lease,
// the lease is lost; validUntil is when the lease expires by the local
// clock unless renewed. On a clean stop it drains, saves and releases the
// checkpoint; when the lease is lost or the worker is abandoned it cancels
// its handlers at once and saves nothing. It returns the error that keeps
// it from running (a position its source cannot read) or from saving its
// last position.
func (u *unit) run(ctx context.Context, cp checkpoint.Checkpoint, validUntil time.Time) error {
	r := u.r
	u.cp = cp
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	handleCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	u.handleCtx, u.stopRead, u.cancelHandlers = handleCtx, stopRead, cancelHandlers
	// The lease is renewed until the last save is made, drain included.
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRenew()
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		if u.leased {
			u.keepLease(renewCtx, validUntil)
		}
	}()
	endRenewal := func() {
		stopRenew()
		<-renewDone
	}
	defer endRenewal()

	if wait := u.startAfter.Sub(r.w.cfg.Clock()); wait > 0 {
		u.log.Info("stolen: waiting for the last owner's lease to expire before reading", "until", u.startAfter, "wait", wait)
		sleep(readCtx, wait)
	}
	start := cp.Position
	switch {
	case start == "" && u.bucket != "":
		start = u.seed(readCtx)
	case u.shard != "":
		var ok bool
		if start, ok = u.seedShard(readCtx, start); !ok {
			u.ended = errHandOverChanged
			stopRead()
		}
	case u.leased && r.s.Source != SourceIndex:
		start = u.rejoin(readCtx, start)
	}
	if readCtx.Err() != nil { // the stop began, or the lease was lost, while starting
		endRenewal()
		if u.leased && u.lostErr() == nil && !r.w.abandoned.Load() {
			u.release(ctx, cp)
		}
		return nil
	}
	src, err := r.newSource(u, start)
	if err != nil {
		endRenewal()
		if u.leased {
			u.release(ctx, cp)
		}
		return err
	}
	parked, err := r.loadParked(readCtx, u)
	if err != nil { // the stop began, or the lease was lost, while starting
		endRenewal()
		if u.leased && u.lostErr() == nil && !r.w.abandoned.Load() {
			u.release(ctx, cp)
		}
		return nil
	}
	d := newDispatcher(r, u, parked)
	r.mu.Lock()
	u.src, u.disp = src, d
	u.h.State, u.h.Position, u.h.SavedAt = StateRunning, cp.Position, cp.UpdatedAt
	u.h.ReadAt = r.w.cfg.Clock() // reads are due from now on
	r.mu.Unlock()
	r.kickRequests()
	u.log.Info("subscription started", "owner", cp.Owner, "lease", cp.Lease, "position", cp.Position, "start", r.s.Start.String(), "parked", len(parked))

	var workers sync.WaitGroup
	for range r.s.Concurrency {
		workers.Go(func() { d.work(handleCtx) })
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		err := src.run(readCtx, d.submit)
		switch {
		case err == nil || readCtx.Err() != nil:
		case errors.Is(err, errShardFinished) || errors.Is(err, errSplit) || errors.Is(err, errRejoin):
			// The source is done with this unit: stop as at a clean stop.
			u.ended = err
			u.log.Info("the unit's part of the subscription is done; stopping it", "reason", err)
			stopRead()
		default:
			r.stop(fmt.Errorf("subscribe: source of %s: %w", u.label(), err))
		}
	}()
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		u.saveLoop(readCtx)
	}()

	<-readCtx.Done()
	cut := u.lostErr() != nil || r.w.abandoned.Load()
	if cut {
		cancelHandlers()
		endRenewal()
	}
	u.setState(StateStopping)
	<-readDone
	<-saverDone
	if !cut && !d.drain(r.w.cfg.DrainTimeout, handleCtx.Done()) && handleCtx.Err() == nil {
		u.log.Warn("handlers still running after the drain timeout; cancelling them", "timeout", r.w.cfg.DrainTimeout)
	}
	cancelHandlers()
	workers.Wait()
	if err := u.lostErr(); err != nil || r.w.abandoned.Load() {
		u.log.Info("subscription unit abandoned without a last save", "position", u.checkpoint().Position, "err", err)
		return nil
	}

	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.w.cfg.FinalSaveTimeout)
	defer cancel()
	var saveErr error
	serr := u.save(saveCtx)
	switch {
	case serr != nil && u.leased && isLost(serr):
		u.lose(fmt.Errorf("subscribe: last checkpoint of %s refused: %w", u.label(), serr))
	case serr != nil && !errors.Is(serr, checkpoint.ErrFenced):
		saveErr = fmt.Errorf("subscribe: final checkpoint of %s: %w", u.label(), serr)
	}
	endRenewal()
	if serr == nil {
		u.release(saveCtx, u.checkpoint())
	}
	u.log.Info("subscription stopped", "position", u.checkpoint().Position, "err", saveErr)
	return saveErr
}

// label returns the unit for messages: the subscription's quoted name,
// followed by the unit's when it has one.
func (u *unit) label() string { return u.key.String() }

// release gives up the checkpoint for a clean stop, so that another
// process takes it at once. A failed release is only logged: a lease then
// expires by itself.
func (u *unit) release(ctx context.Context, cp checkpoint.Checkpoint) {
	setter, ok := u.r.w.cfg.Checkpoints.(checkpoint.Setter)
	if !ok || cp.Owner == "" {
		return
	}
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), u.r.w.cfg.FinalSaveTimeout)
		defer cancel()
	}
	if err := setter.Release(ctx, cp); err != nil {
		u.log.Warn("releasing the checkpoint failed", "err", err)
	}
}

// seed returns where a bucket unit with no saved position starts: the
// subscription's checkpoint without leases (unit ""), kept to the unit's
// aggregates, or "" (the subscription's Start) when it has none. It retries
// a failed read until ctx ends.
func (u *unit) seed(ctx context.Context) string {
	whole, err := u.loadRetrying(ctx, checkpoint.Key{Subscription: u.r.s.Name})
	if err != nil || whole.Position == "" {
		return ""
	}
	var ic indexCheckpoint
	info, err := DescribeCheckpoint(whole.Position, 0)
	switch {
	case err == nil && info.Phase == "index":
		ic, err = decodeIndexCheckpoint(whole.Position)
	case err == nil && info.Phase == phaseCatchUp:
		var h hybridCheckpoint
		err = json.Unmarshal([]byte(whole.Position), &h)
		if err == nil {
			ic = *h.Index
		}
	default:
		err = fmt.Errorf("not an index position (phase %q, %v)", info.Phase, err)
	}
	if err != nil {
		u.log.Warn("the subscription's checkpoint without leases cannot start a unit; it starts from the subscription's Start", "err", err)
		return ""
	}
	pending := ic.Pending[:0:0]
	for _, p := range ic.Pending {
		if u.owns(p.AggregateID) {
			pending = append(pending, p)
		}
	}
	ic.Pending = pending
	for id := range ic.Aggregates {
		if !u.owns(id) {
			delete(ic.Aggregates, id)
		}
	}
	b, err := json.Marshal(ic)
	if err != nil {
		return ""
	}
	u.log.Info("unit starts from the subscription's checkpoint without leases", "position", string(b))
	return string(b)
}

// saveLoop saves the checkpoint every CheckpointInterval while it moves.
func (u *unit) saveLoop(ctx context.Context) {
	r := u.r
	t := time.NewTicker(r.s.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		began := r.w.cfg.Clock()
		err := u.save(ctx)
		switch {
		case err != nil && u.leased && isLost(err):
			u.lose(fmt.Errorf("subscribe: checkpoint of %s refused: %w", u.label(), err))
			return
		case errors.Is(err, checkpoint.ErrFenced):
			r.stop(fmt.Errorf("subscribe: %q lost its checkpoint to another owner: %w", r.s.Name, err))
			return
		case err != nil && ctx.Err() == nil:
			u.setErr(err)
			u.saveDone(err, began)
			u.log.Warn("checkpoint save failed; will retry", "err", err)
		case err == nil:
			u.setErr(nil)
			u.saveDone(nil, began)
		}
	}
}

// save writes the source's checkpoint if it moved.
func (u *unit) save(ctx context.Context) error {
	r := u.r
	pos, err := u.src.checkpoint()
	if err != nil {
		return err
	}
	cur := u.checkpoint()
	if pos == cur.Position {
		return nil
	}
	next := cur
	next.Position = pos
	err = r.w.cfg.Checkpoints.Save(ctx, next)
	for _, h := range r.w.hooks.checkpoint {
		h.OnCheckpoint(r.s.Name, err)
	}
	if err != nil {
		return err
	}
	at := r.w.cfg.Clock()
	u.cpMu.Lock()
	u.cp.Position, u.cp.UpdatedAt = pos, at
	u.cpMu.Unlock()
	r.mu.Lock()
	u.h.Position, u.h.SavedAt = pos, at
	r.mu.Unlock()
	return nil
}

// keepLease renews the unit's lease every RenewEvery until ctx ends. A
// renewal refused (another owner took the unit) loses the unit at once;
// other failures are reported and retried after half of RenewEvery, and
// lose the unit once the lease has expired by the local clock (validUntil,
// pushed back by each renewal: its start plus Duration), even while a
// renewal hangs.
func (u *unit) keepLease(ctx context.Context, validUntil time.Time) {
	r := u.r
	opts := *r.w.cfg.Leases
	leaser := r.w.leaser
	expiry := time.NewTimer(time.Until(validUntil))
	defer expiry.Stop()
	next := time.NewTimer(opts.RenewEvery)
	defer next.Stop()
	var lastErr error
	expired := func() {
		err := fmt.Errorf("%w: %s", ErrLeaseExpired, u.label())
		if lastErr != nil {
			err = fmt.Errorf("%w: %s: last renewal: %w", ErrLeaseExpired, u.label(), lastErr)
		}
		u.lose(err)
	}
	type result struct {
		cp  checkpoint.Checkpoint
		err error
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			expired()
			return
		case <-next.C:
		}
		started := time.Now()
		rctx, cancel := context.WithDeadline(ctx, validUntil)
		res := make(chan result, 1)
		go func() {
			cp, err := leaser.Renew(rctx, u.checkpoint(), opts.Duration)
			res <- result{cp, err}
		}()
		var rr result
		select {
		case <-ctx.Done():
			cancel()
			return
		case <-expiry.C:
			cancel()
			expired()
			return
		case rr = <-res:
			cancel()
		}
		if ctx.Err() == nil {
			u.renewDone(rr.err, started)
		}
		switch {
		case rr.err == nil:
			lastErr = nil
			r.lossRecovered()
			u.cpMu.Lock()
			u.cp.Expires = rr.cp.Expires
			u.cpMu.Unlock()
			validUntil = started.Add(opts.Duration)
			if !expiry.Stop() {
				select {
				case <-expiry.C:
				default:
				}
			}
			expiry.Reset(time.Until(validUntil))
			next.Reset(opts.RenewEvery)
		case isLost(rr.err):
			u.lose(fmt.Errorf("subscribe: renewing the lease of %s refused: %w", u.label(), rr.err))
			return
		case ctx.Err() != nil:
			return
		default:
			lastErr = rr.err
			u.log.Warn("renewing the lease failed; retrying", "err", rr.err, "expires", validUntil)
			for _, h := range r.w.hooks.lease {
				h.OnLeaseRenewFailed(r.s.Name, u.name, rr.err)
			}
			next.Reset(max(opts.RenewEvery/2, time.Millisecond))
		}
	}
}
