package subscribe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// requestServer carries out a running subscription's operators' requests
// (checkpoint.Request), read from Config.Parking when it implements
// checkpoint.RequestStore: at start, then every Config.RequestPoll, and at
// once when a unit starts. Each request is carried out in its aggregate's
// turn, as Worker.Replay and Worker.Discard are, by the unit that owns the
// aggregate, then marked done with checkpoint.RequestStore.Complete. A
// request for an aggregate whose unit this worker does not run is left to
// the worker that does.
//
// A request is carried out at most once by a run of the subscription, even
// when it is read again before its Complete lands: its id is remembered
// while it runs, then until a read shows it done (or replaced, or deleted).
// When Complete fails, the next poll retries it with the same result; the
// request is not carried out again. A request interrupted by the
// subscription's stop is not marked done: the next run carries it out (a
// replay goes on with the commits still parked).
type requestServer struct {
	r     *subRunner
	store checkpoint.RequestStore
	kick  chan struct{} // a unit started: poll now

	mu     sync.Mutex
	states map[requestRef]*requestState // requests carried out, or being
	wg     sync.WaitGroup
}

// requestRef names one request: its aggregate and its id.
type requestRef struct{ aggregateID, id string }

// requestState is where a request this run carries out stands. A state is
// replaced, never changed, so it may be read after the lock is released.
type requestState struct {
	// running: being carried out. Otherwise it was, and done is what
	// Complete is to store: completed says whether that landed.
	running   bool
	completed bool
	done      checkpoint.Request
}

// newRequestServer returns the subscription's request server, or nil when
// it has none: Config.Parking is not a checkpoint.RequestStore, or
// Config.RequestPoll is negative.
func newRequestServer(r *subRunner) *requestServer {
	if r.w.cfg.RequestPoll < 0 || r.w.cfg.Parking == nil {
		return nil
	}
	rs, ok := r.w.cfg.Parking.(checkpoint.RequestStore)
	if !ok {
		return nil
	}
	return &requestServer{r: r, store: rs, kick: make(chan struct{}, 1), states: map[requestRef]*requestState{}}
}

// run polls for requests until ctx ends: at once, then every RequestPoll
// and whenever a unit starts. The requests it starts run until they end or
// their unit's handlers' context (which outlives ctx) ends; they may still
// run when it returns: see wait.
func (s *requestServer) run(ctx context.Context) {
	t := time.NewTimer(s.r.w.cfg.RequestPoll)
	defer t.Stop()
	for {
		s.poll(ctx)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(s.r.w.cfg.RequestPoll)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// wait waits for the requests being carried out to end; call it once the
// handlers have been cancelled.
func (s *requestServer) wait() { s.wg.Wait() }

// poll reads the subscription's requests once and starts each pending one
// this run has not carried out and whose unit it runs; for one whose
// Complete failed, it retries Complete.
func (s *requestServer) poll(ctx context.Context) {
	r := s.r
	pending := map[requestRef]bool{}
	complete := true // the listing was read to its end
	for req, err := range s.store.Requests(ctx, r.s.Name) {
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A record that does not decode is yielded and the listing
			// goes on; any other error ends it.
			r.log.Warn("reading operators' requests failed", "err", err)
			complete = false
			continue
		}
		if req.Done {
			continue
		}
		ref := requestRef{req.AggregateID, req.ID}
		pending[ref] = true
		s.mu.Lock()
		st := s.states[ref]
		var u *unit
		if st == nil {
			if u = r.unitFor(req.AggregateID); u != nil {
				s.states[ref] = &requestState{running: true}
			}
		}
		s.mu.Unlock()
		switch {
		case st == nil && u == nil:
			// Another worker runs the aggregate's unit, or none does yet.
		case st == nil:
			s.wg.Go(func() { s.carryOut(u, req) })
		case !st.running && !st.completed:
			s.complete(ctx, ref, st.done)
		}
		// Otherwise it runs, or its Complete landed after this read.
	}
	if !complete {
		return
	}
	// Requests that are now done, replaced or deleted are forgotten.
	s.mu.Lock()
	for ref, st := range s.states {
		if !st.running && !pending[ref] {
			delete(s.states, ref)
		}
	}
	s.mu.Unlock()
}

// carryOut carries req out in its aggregate's turn, in unit u, and marks
// it done. A request interrupted because the unit's handlers' context
// ended (a stop, a lost lease) or the subscription stopped is left pending.
func (s *requestServer) carryOut(u *unit, req checkpoint.Request) {
	r := s.r
	ctx := u.handleCtx
	ref := requestRef{req.AggregateID, req.ID}
	n, err := s.execute(ctx, u.disp, req)
	if err != nil && (ctx.Err() != nil || errors.Is(err, ErrStopped)) {
		r.log.Info("operator request interrupted by the stop; it stays pending", "kind", req.Kind, "aggregate", req.AggregateID,
			"request", req.ID, "handled", n, "err", err)
		s.mu.Lock()
		delete(s.states, ref)
		s.mu.Unlock()
		return
	}
	done := req
	done.Done, done.Handled, done.Result = true, n, ""
	if err != nil {
		done.Result = err.Error()
	}
	r.log.Info("operator request carried out", "kind", req.Kind, "aggregate", req.AggregateID, "request", req.ID,
		"requestedAt", req.RequestedAt, "handled", n, "err", err)
	for _, h := range r.w.hooks.request {
		h.OnRequest(r.s.Name, done, err)
	}
	// Marked done even when the stop began meanwhile, as the last
	// checkpoint is saved: with a fresh bounded context.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.w.cfg.FinalSaveTimeout)
	defer cancel()
	s.complete(cctx, ref, done)
}

// execute runs a replay or a discard of req's aggregate in its turn in d
// and returns how many commits it handled, or an error for a kind it does
// not know. It gives up waiting for the turn when ctx ends.
func (s *requestServer) execute(ctx context.Context, d *dispatcher, req checkpoint.Request) (int, error) {
	var discard bool
	switch req.Kind {
	case checkpoint.RequestReplay:
	case checkpoint.RequestDiscard:
		discard = true
	default:
		return 0, fmt.Errorf("subscribe: request %q for %q: unknown kind %q: want %q or %q",
			req.ID, req.AggregateID, req.Kind, checkpoint.RequestReplay, checkpoint.RequestDiscard)
	}
	task := &replayTask{aggregateID: req.AggregateID, discard: discard, done: make(chan replayResult, 1)}
	d.enqueue(laneItem{replay: task})
	select {
	case res := <-task.done:
		return res.n, res.err
	case <-ctx.Done():
		select {
		case res := <-task.done: // it ended as the handlers were cancelled
			return res.n, res.err
		default:
			return 0, ctx.Err()
		}
	}
}

// complete marks done a request carried out, and records whether that
// landed; the next poll retries it if not. A request replaced or deleted
// meanwhile needs no retry.
func (s *requestServer) complete(ctx context.Context, ref requestRef, done checkpoint.Request) {
	err := s.store.Complete(ctx, done)
	st := &requestState{done: done, completed: err == nil || errors.Is(err, checkpoint.ErrNotFound)}
	s.mu.Lock()
	s.states[ref] = st
	s.mu.Unlock()
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		s.r.log.Info("operator request replaced or deleted before it was marked done", "aggregate", ref.aggregateID, "request", ref.id, "err", err)
	case err != nil:
		s.r.log.Warn("marking an operator request done failed; will retry", "aggregate", ref.aggregateID, "request", ref.id, "err", err)
	}
}
