package subscribe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
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
	sourceFactory func(r *subRunner, saved string) (source, error)

	mu      sync.Mutex
	subs    []*subRunner
	byName  map[string]*subRunner
	running bool
}

// NewWorker returns a Worker. It returns an error matching ErrInvalidConfig
// when Reader or Checkpoints is missing. It starts nothing.
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, log: log, hooks: newHooks(cfg.Hooks), byName: map[string]*subRunner{}}, nil
}

// Owner returns the name this worker writes into checkpoints.
func (w *Worker) Owner() string { return w.cfg.Owner }

// Register adds a subscription. It returns an error matching
// ErrInvalidConfig for an unusable one, ErrDuplicateSubscription for a name
// already registered, and ErrRunning once Run has been called.
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
	r := &subRunner{w: w, s: s, handler: h, maxBatch: maxBatch, log: w.log.With("subscription", s.Name)}
	r.health.Subscription, r.health.State = s.Name, StateIdle
	w.subs = append(w.subs, r)
	w.byName[s.Name] = r
	return nil
}

// Run runs every registered subscription until ctx ends, then stops them:
// it stops reading, waits up to DrainTimeout for the handlers already
// running, cancels the rest, and saves each subscription's checkpoint with a
// fresh context. It returns nil on such a clean stop.
//
// A subscription that stops on its own (PolicyStop, a lost checkpoint
// lease) does not stop the others; Run returns once all have ended, with
// their errors joined. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return ErrRunning
	}
	w.running = true
	subs := w.subs
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
// without Config.Parking, and ErrStopped when the subscription stopped on
// the aggregate (PolicyStop) before its turn came.
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
	if d := r.dispatcherIfRunning(); d != nil {
		task := &replayTask{aggregateID: aggregateID, discard: discard, done: make(chan replayResult, 1)}
		d.enqueue(laneItem{replay: task})
		select {
		case res := <-task.done:
			return res.n, res.err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	d := newDispatcher(r, map[string]bool{})
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
)

// Health is a snapshot of one subscription.
type Health struct {
	Subscription string
	State        State
	// Err is why the subscription stopped, or the last error reading or
	// checkpointing (cleared by the next success).
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
}

// Health returns a snapshot of every subscription, in registration order.
// It is safe to call at any time, from any goroutine.
func (w *Worker) Health() []Health {
	w.mu.Lock()
	subs := w.subs
	w.mu.Unlock()
	out := make([]Health, len(subs))
	for i, r := range subs {
		out[i] = r.snapshot()
	}
	return out
}
