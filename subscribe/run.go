package subscribe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// subRunner runs one subscription.
type subRunner struct {
	w       *Worker
	s       Subscription
	handler BatchHandler
	log     *slog.Logger
	// maxBatch is MaxBatch for a BatchHandler and 1 for a Handler, whose
	// commits are each acknowledged as soon as they are handled.
	maxBatch int

	src source

	mu       sync.Mutex
	health   Health
	disp     *dispatcher
	stopErr  error
	stopRead context.CancelFunc
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

func (r *subRunner) snapshot() Health {
	r.mu.Lock()
	h := r.health
	d, src := r.disp, r.src
	r.mu.Unlock()
	if src != nil && h.State == StateRunning {
		h.InFlight, h.Lag = src.lag(r.w.cfg.Clock())
	}
	if d != nil {
		d.mu.Lock()
		h.Parked = len(d.parked)
		d.mu.Unlock()
	}
	return h
}

func (r *subRunner) dispatcherIfRunning() *dispatcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.health.State != StateRunning {
		return nil
	}
	return r.disp
}

// stop ends the subscription with err: reading stops, in-flight work
// drains, and run returns err.
func (r *subRunner) stop(err error) {
	r.mu.Lock()
	if r.stopErr == nil {
		r.stopErr = err
	}
	cancel := r.stopRead
	r.mu.Unlock()
	r.log.Error("subscription stopping", "err", err)
	if cancel != nil {
		cancel()
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
	key := checkpoint.Key{Subscription: r.s.Name}
	cp, err := r.claim(ctx, key)
	if err != nil {
		return nil // ctx ended while starting: a clean stop
	}
	src, err := r.newSource(cp.Position)
	if err != nil {
		return err
	}
	parked, err := r.loadParked(ctx)
	if err != nil {
		return nil
	}
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	handleCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	d := newDispatcher(r, parked)
	r.mu.Lock()
	r.src, r.disp, r.stopRead = src, d, stopRead
	r.health.State, r.health.Position, r.health.SavedAt = StateRunning, cp.Position, cp.UpdatedAt
	stopErr := r.stopErr
	r.mu.Unlock()
	if stopErr != nil {
		stopRead()
	}
	r.log.Info("subscription started", "owner", cp.Owner, "lease", cp.Lease, "position", cp.Position, "start", r.s.Start.String(), "parked", len(parked))

	var workers sync.WaitGroup
	for range r.s.Concurrency {
		workers.Go(func() { d.work(handleCtx) })
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		if err := src.run(readCtx, d.submit); err != nil && readCtx.Err() == nil {
			r.stop(fmt.Errorf("subscribe: source of %q: %w", r.s.Name, err))
		}
	}()
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		r.saveLoop(readCtx, &cp)
	}()
	requestsDone := make(chan struct{})
	requests := newRequestServer(r, d)
	go func() {
		defer close(requestsDone)
		if requests != nil {
			requests.run(readCtx, handleCtx)
		}
	}()

	<-readCtx.Done()
	r.setState(StateStopping)
	<-readDone
	<-saverDone
	<-requestsDone
	if !d.drain(r.w.cfg.DrainTimeout) {
		r.log.Warn("handlers still running after the drain timeout; cancelling them", "timeout", r.w.cfg.DrainTimeout)
	}
	cancelHandlers()
	workers.Wait()
	if requests != nil {
		requests.wait()
	}

	r.mu.Lock()
	err = r.stopErr
	r.mu.Unlock()
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.w.cfg.FinalSaveTimeout)
	defer cancel()
	if serr := r.save(saveCtx, &cp); serr != nil && err == nil && !errors.Is(serr, checkpoint.ErrFenced) {
		err = fmt.Errorf("subscribe: final checkpoint of %q: %w", r.s.Name, serr)
	} else if serr == nil {
		if setter, ok := r.w.cfg.Checkpoints.(checkpoint.Setter); ok {
			if rerr := setter.Release(saveCtx, cp); rerr != nil {
				r.log.Warn("releasing the checkpoint failed", "err", rerr)
			}
		}
	}
	r.log.Info("subscription stopped", "position", cp.Position, "err", err)
	return err
}

// newSource returns the subscription's source, resuming from a saved
// position ("" for none).
func (r *subRunner) newSource(saved string) (source, error) {
	if r.w.sourceFactory != nil {
		return r.w.sourceFactory(r, saved)
	}
	switch r.s.Source {
	case SourceIndex:
		return newIndexSource(r.w, r.s, saved)
	case SourceStream, SourceAuto:
		return newHybridSource(r.w, r.s, saved)
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

// loadParked returns the aggregates with parked commits, retrying until ctx
// ends.
func (r *subRunner) loadParked(ctx context.Context) (map[string]bool, error) {
	parked := map[string]bool{}
	if r.w.cfg.Parking == nil {
		return parked, nil
	}
	backoff := r.s.Retry.InitialBackoff
	for {
		var err error
		for p, perr := range r.w.cfg.Parking.Parked(ctx, r.s.Name, "") {
			if perr != nil {
				err = perr
				break
			}
			parked[p.Commit.AggregateID] = true
		}
		if err == nil {
			return parked, nil
		}
		r.log.Error("listing parked commits failed; retrying", "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, r.s.Retry.MaxBackoff)
	}
}

// saveLoop saves the checkpoint every CheckpointInterval while it moves,
// and reports lag.
func (r *subRunner) saveLoop(ctx context.Context, cp *checkpoint.Checkpoint) {
	t := time.NewTicker(r.s.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, age := r.src.lag(r.w.cfg.Clock())
		for _, h := range r.w.hooks.lag {
			h.OnLag(r.s.Name, age, n)
		}
		err := r.save(ctx, cp)
		switch {
		case errors.Is(err, checkpoint.ErrFenced):
			r.stop(fmt.Errorf("subscribe: %q lost its checkpoint to another owner: %w", r.s.Name, err))
			return
		case err != nil && ctx.Err() == nil:
			r.setErr(err)
			r.log.Warn("checkpoint save failed; will retry", "err", err)
		case err == nil:
			r.setErr(nil)
		}
	}
}

// save writes the source's checkpoint if it moved.
func (r *subRunner) save(ctx context.Context, cp *checkpoint.Checkpoint) error {
	pos, err := r.src.checkpoint()
	if err != nil {
		return err
	}
	if pos == cp.Position {
		return nil
	}
	next := *cp
	next.Position = pos
	err = r.w.cfg.Checkpoints.Save(ctx, next)
	for _, h := range r.w.hooks.checkpoint {
		h.OnCheckpoint(r.s.Name, err)
	}
	if err != nil {
		return err
	}
	cp.Position, cp.UpdatedAt = pos, r.w.cfg.Clock()
	r.mu.Lock()
	r.health.Position, r.health.SavedAt = pos, cp.UpdatedAt
	r.mu.Unlock()
	return nil
}
