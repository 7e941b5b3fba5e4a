package subscribe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Worker runs subscriptions: each reads every commit from its checkpoint on,
// hands it to its handler in per-aggregate order, and saves its position.
// Register subscriptions, then call Run.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	hooks hooks

	// sourceFactory replaces the sources, for tests and benchmarks.
	sourceFactory func(u *unit, saved string) (source, error)

	// leaser and lister are Config.Checkpoints' abilities, with Leases.
	leaser checkpoint.Leaser
	lister checkpoint.Lister

	// abandoned: abandon stopped Run as a killed process would.
	abandoned atomic.Bool

	mu        sync.Mutex
	subs      []*subRunner
	byName    map[string]*subRunner
	running   bool
	cancelRun context.CancelFunc
	// listings are the streams' last shard listings, by ARN (see
	// streamShards); guarded by mu.
	listings map[string]*shardListing
}

// bucketedReader is a Reader over a bucketed index: a *store.Store.
type bucketedReader interface {
	Buckets() []string
	Bucket(aggregateID string) string
}

// NewWorker returns a Worker. It returns an error matching ErrInvalidConfig
// when Reader or Checkpoints is missing, or when Leases is set with invalid
// options or Checkpoints lacks an ability leases need. It starts nothing.
func NewWorker(cfg Config) (*Worker, error) {
	if cfg.Reader == nil {
		return nil, fmt.Errorf("%w: Config.Reader is nil", ErrInvalidConfig)
	}
	if cfg.Checkpoints == nil {
		return nil, fmt.Errorf("%w: Config.Checkpoints is nil", ErrInvalidConfig)
	}
	if cfg.Parking == nil {
		if ps, ok := cfg.Checkpoints.(checkpoint.ParkStore); ok {
			cfg.Parking = ps
		}
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.TableName == "" {
		cfg.TableName = store.DefaultTableName
		if st, ok := cfg.Reader.(interface{ Config() store.Config }); ok {
			cfg.TableName = st.Config().TableName
		}
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.FinalSaveTimeout == 0 {
		cfg.FinalSaveTimeout = 10 * time.Second
	}
	if cfg.RequestPoll == 0 {
		cfg.RequestPoll = 2 * time.Second
	}
	if cfg.DrainTimeout < 0 || cfg.FinalSaveTimeout < 0 {
		return nil, fmt.Errorf("%w: DrainTimeout and FinalSaveTimeout must be positive", ErrInvalidConfig)
	}
	w := &Worker{byName: map[string]*subRunner{}}
	if cfg.Leases != nil {
		opts := cfg.Leases.withDefaults()
		if err := opts.validate(); err != nil {
			return nil, err
		}
		cfg.Leases = &opts
		var ok bool
		if w.leaser, ok = cfg.Checkpoints.(checkpoint.Leaser); !ok {
			return nil, fmt.Errorf("%w: Config.Leases is set but Config.Checkpoints (%T) is not a checkpoint.Leaser", ErrInvalidConfig, cfg.Checkpoints)
		}
		if w.lister, ok = cfg.Checkpoints.(checkpoint.Lister); !ok {
			return nil, fmt.Errorf("%w: Config.Leases is set but Config.Checkpoints (%T) is not a checkpoint.Lister", ErrInvalidConfig, cfg.Checkpoints)
		}
		if _, ok = cfg.Checkpoints.(checkpoint.Setter); !ok {
			return nil, fmt.Errorf("%w: Config.Leases is set but Config.Checkpoints (%T) is not a checkpoint.Setter", ErrInvalidConfig, cfg.Checkpoints)
		}
	}
	w.log = cfg.Logger
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.cfg, w.hooks = cfg, newHooks(cfg.Hooks)
	return w, nil
}

// Owner returns the name this worker writes into checkpoints.
func (w *Worker) Owner() string { return w.cfg.Owner }

// Register adds a subscription. It returns an error matching
// ErrInvalidConfig for an unusable one (with Leases, also an
// IndexOptions.Buckets value the Reader's index does not have),
// ErrDuplicateSubscription for a name already registered, and ErrRunning
// once Run has been called.
func (w *Worker) Register(s Subscription) error {
	s = s.withDefaults()
	if err := s.validate(); err != nil {
		return err
	}
	if s.Source != SourceIndex && (w.cfg.Streams == nil || w.cfg.Tables == nil) {
		return fmt.Errorf("%w: subscription %q reads the stream but Config.Streams or Config.Tables is nil", ErrInvalidConfig, s.Name)
	}
	if s.Policy == PolicyPark && w.cfg.Parking == nil {
		return fmt.Errorf("%w: subscription %q parks failed commits but Config.Parking is nil", ErrInvalidConfig, s.Name)
	}
	if s.Corrupt == CorruptPark && w.cfg.Parking == nil {
		return fmt.Errorf("%w: subscription %q parks corrupt items (Corrupt park) but Config.Parking is nil", ErrInvalidConfig, s.Name)
	}
	specs, bucketOf, err := w.unitsOf(s)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		return ErrRunning
	}
	if _, dup := w.byName[s.Name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateSubscription, s.Name)
	}
	h, maxBatch := s.BatchHandler, s.MaxBatch
	if h == nil {
		h, maxBatch = batchOf(s.Handler, s.Middleware), 1
	}
	r := &subRunner{w: w, s: s, handler: h, maxBatch: maxBatch, log: w.log.With("subscription", s.Name), specs: specs, bucketOf: bucketOf}
	r.circuit = newCircuit(s.Retry, s.Concurrency, w.cfg.Clock, func(open bool, at time.Time) {
		if open {
			r.log.Warn("circuit open: the handler fails for every aggregate; probing one call at a time", "openAfter", r.circuit.b.openAfter)
		} else {
			r.log.Info("circuit closed: the handler succeeds again")
		}
		for _, h := range w.hooks.circuit {
			h.OnCircuit(s.Name, open, at)
		}
	})
	r.tally = &parkedTally{notify: func(aggregates, commits int) {
		for _, h := range w.hooks.parkedNow {
			h.OnParkedNow(s.Name, aggregates, commits)
		}
	}}
	r.health.Subscription, r.health.State = s.Name, StateIdle
	w.subs = append(w.subs, r)
	w.byName[s.Name] = r
	return nil
}

// unitsOf returns the units of subscription s (see LeaseOptions) and, when
// they are index buckets, the function that tells an aggregate's bucket.
func (w *Worker) unitsOf(s Subscription) ([]unitSpec, func(string) string, error) {
	whole := []unitSpec{{}}
	br, ok := w.cfg.Reader.(bucketedReader)
	if w.cfg.Leases == nil || s.Source != SourceIndex || !ok {
		return whole, nil, nil
	}
	all := br.Buckets()
	if len(all) < 2 {
		return whole, nil, nil
	}
	buckets := all
	if len(s.Index.Buckets) > 0 {
		buckets = nil
		for _, b := range s.Index.Buckets {
			if !slices.Contains(all, b) {
				return nil, nil, fmt.Errorf("%w: subscription %q: Index.Buckets: the index has no bucket %q (it has %v)", ErrInvalidConfig, s.Name, b, all)
			}
			if !slices.Contains(buckets, b) {
				buckets = append(buckets, b)
			}
		}
	}
	specs := make([]unitSpec, len(buckets))
	for i, b := range buckets {
		specs[i] = unitSpec{name: bucketUnit(b), bucket: b}
	}
	return specs, br.Bucket, nil
}

// Run runs every registered subscription until ctx ends, then stops them:
// it stops reading, waits up to DrainTimeout for the handlers already
// running, cancels the rest, and saves each subscription's checkpoint with a
// fresh context. With Config.Leases, it runs the units of each subscription
// that this worker holds, and releases each lease after the last save. It
// returns nil on such a clean stop.
//
// A subscription that stops on its own (PolicyStop, a checkpoint claimed by
// another process without leases) does not stop the others; Run returns
// once all have ended, with their errors joined. A unit whose lease is lost
// is not an error: it is reported through HookLease, and the subscription
// goes on. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return ErrRunning
	}
	w.running = true
	subs := w.subs
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.cancelRun = cancel
	w.mu.Unlock()
	if len(subs) == 0 {
		return fmt.Errorf("%w: no subscription registered", ErrInvalidConfig)
	}
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, r := range subs {
		wg.Go(func() { errs[i] = r.run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// abandon stops Run as if the process were killed, for tests: every unit
// stops reading and its handlers are cancelled at once, with no drain, no
// last save and no release, and renewals stop; leases then expire.
func (w *Worker) abandon() {
	w.abandoned.Store(true)
	w.mu.Lock()
	cancel := w.cancelRun
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Replay delivers the parked commits of one aggregate of a subscription
// again, in version order, through its handler, removing each once handled.
// When all are handled the aggregate is no longer parked, and its later
// commits are handled as usual. It returns how many commits were replayed.
//
// While Run runs, the replay is done in the aggregate's turn, so no other
// commit of the aggregate is handled meanwhile. Otherwise it runs directly.
// A commit that still fails stops the replay with its error; it and the
// commits after it stay parked.
//
// It returns an error matching ErrUnknownSubscription for a name not
// registered, ErrInvalidConfig for an empty aggregate id or a Worker
// without Config.Parking, ErrStopped when the subscription stopped on the
// aggregate (PolicyStop) before its turn came, and, with Config.Leases
// while Run runs, ErrNotHeld when this worker does not run the
// aggregate's unit now (another worker does: write a checkpoint.Request).
func (w *Worker) Replay(ctx context.Context, subscription, aggregateID string) (int, error) {
	return w.parkedTask(ctx, "Replay", subscription, aggregateID, false)
}

// Discard drops the parked commits of one aggregate of a subscription
// without handling them, removing each from Config.Parking; the aggregate
// is then no longer parked, and its later commits are handled as usual. It
// returns how many commits were discarded. Discarded commits are never
// delivered again: use it for commits no handler will ever take.
//
// Like Replay, it runs in the aggregate's turn while Run runs, and directly
// otherwise, with Replay's errors; a failed removal stops it, and the
// commits not yet removed stay parked.
func (w *Worker) Discard(ctx context.Context, subscription, aggregateID string) (int, error) {
	return w.parkedTask(ctx, "Discard", subscription, aggregateID, true)
}

// parkedTask runs a replay or a discard in the aggregate's turn when the
// subscription runs, and directly otherwise.
func (w *Worker) parkedTask(ctx context.Context, op, subscription, aggregateID string, discard bool) (int, error) {
	w.mu.Lock()
	r := w.byName[subscription]
	w.mu.Unlock()
	if r == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
	}
	if aggregateID == "" {
		return 0, fmt.Errorf("%w: %s needs an aggregate id", ErrInvalidConfig, op)
	}
	if w.cfg.Parking == nil {
		return 0, fmt.Errorf("%w: Config.Parking is nil", ErrInvalidConfig)
	}
	d, err := r.dispatcherFor(aggregateID)
	if err != nil {
		return 0, err
	}
	if d != nil {
		task := &replayTask{aggregateID: aggregateID, discard: discard, done: make(chan replayResult, 1)}
		d.enqueue(laneItem{replay: task})
		select {
		case res := <-task.done:
			return res.n, res.err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	d = newDispatcher(r, nil, map[string]bool{})
	if discard {
		return d.discard(ctx, aggregateID)
	}
	return d.replay(ctx, aggregateID)
}

// State is a subscription's state.
type State string

// States.
const (
	StateIdle     State = "idle"     // registered, Run not called
	StateStarting State = "starting" // claiming its checkpoint
	StateRunning  State = "running"  // reading and handling
	StateStopping State = "stopping" // draining
	StateStopped  State = "stopped"  // ended; Err says why, nil for a clean stop
	// StateWaiting: with Config.Leases, the subscription runs but this
	// worker holds none of its units (other workers hold them all); it
	// takes one when the balance lets it.
	StateWaiting State = "waiting"
)

// Health is a snapshot of one subscription, or with Config.Leases of one
// unit of it.
type Health struct {
	Subscription string
	// Unit is the unit (checkpoint.Key.Unit), with Config.Leases: "" for
	// a subscription run whole, or for the entry of a subscription that
	// runs no unit in this worker. Always "" without leases.
	Unit  string
	State State
	// Err is why the subscription stopped, or the last error reading or
	// checkpointing (cleared by the next success); with leases, in the
	// entry of a subscription that runs no unit here, the last error
	// listing its leases.
	Err error
	// Position is the last checkpoint saved, in the source's encoding.
	Position string
	// SavedAt is when it was saved.
	SavedAt time.Time
	// InFlight counts commits read and not yet handled.
	InFlight int
	// Lag is the age of the oldest commit not yet handled.
	Lag time.Duration
	// Parked counts the aggregates parked now.
	Parked int
	// ParkedCommits counts the commits of those aggregates parked now.
	ParkedCommits int
	// CircuitOpenSince is when the subscription's circuit opened (see
	// RetryPolicy): its handler has failed transiently for several
	// aggregates in a row, and only probes call it. Zero while the circuit
	// is closed, and when the subscription is not running. The circuit is
	// the subscription's in this worker: every unit's entry has the same.
	CircuitOpenSince time.Time

	// Runs of failures, each ended by the next success: the last error
	// and when the first failed call of the run began (zero while the
	// calls succeed). ReadErr: reading commits (a poll of the index, a
	// call to the stream, a read that repairs a gap); SaveErr: saving the
	// checkpoint; RenewErr: renewing the unit's lease (Config.Leases).
	// ReadAt is when a read of commits last succeeded (from the start of
	// the unit on). While reads fail, or none has succeeded for longer
	// than twice the source's idle poll interval (a read that hangs), Lag
	// grows with the clock.
	ReadAt        time.Time
	ReadErr       error
	ReadErrSince  time.Time
	SaveErr       error
	SaveErrSince  time.Time
	RenewErr      error
	RenewErrSince time.Time
	// ListErrSince is when listing the subscription's leases began to
	// fail (Err holds the error), in the entry of a subscription that
	// runs no unit here; zero once a listing succeeds.
	ListErrSince time.Time
	// LostErr, with Config.Leases, in the entry of a subscription that
	// runs no unit here: why this worker lost a unit through a failure of
	// its own rather than handing it over or having it taken by another
	// worker (ErrLeaseExpired after failed renewals, a checkpoint gone),
	// and LostAt when the first such loss was. Both are cleared once a
	// lease of a unit of the subscription is renewed again here, or a
	// listing of the leases that works shows every unit held by another
	// live worker (this one is then a standby).
	LostErr error
	LostAt  time.Time
}

// Health returns a snapshot of every subscription, in registration order.
// Without Config.Leases it has one entry per subscription. With leases it
// has one entry per unit this worker runs (starting, running or stopping),
// by unit name, and for a subscription that runs no unit here one entry
// with Unit "" and its own state: StateWaiting while Run runs, else idle,
// starting or stopped. It is safe to call at any time, from any goroutine.
func (w *Worker) Health() []Health {
	w.mu.Lock()
	subs := w.subs
	w.mu.Unlock()
	out := make([]Health, 0, len(subs))
	for _, r := range subs {
		out = append(out, r.snapshots()...)
	}
	return out
}
