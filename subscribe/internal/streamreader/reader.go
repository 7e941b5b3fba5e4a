package streamreader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"golang.org/x/sync/errgroup"
)

// API is the DynamoDB Streams calls the reader makes, with the SDK's exact
// signatures. *dynamodbstreams.Client implements it.
type API interface {
	DescribeStream(ctx context.Context, params *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, params *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, params *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

var _ API = (*dynamodbstreams.Client)(nil)

// Record is one stream record, as emitted by Run.
type Record struct {
	// ShardID is the shard the record was read from.
	ShardID string
	// SequenceNumber is the record's sequence number within the stream: a
	// decimal string, increasing within a shard. Store it in
	// Position.Shards once the record is handled.
	SequenceNumber string
	// EventName is INSERT, MODIFY or REMOVE.
	EventName string
	// Keys is the item's primary key.
	Keys map[string]types.AttributeValue
	// NewImage is the item after the change (empty for REMOVE, and for a
	// stream whose view type carries no new image).
	NewImage map[string]types.AttributeValue
	// ApproximateCreation is when DynamoDB wrote the record, rounded down
	// (to the second on AWS; to the minute on DynamoDB Local 3.3).
	ApproximateCreation time.Time
}

// Position is where reading resumes. The zero value (or one with no Shards
// and no Finished) means a first start, which reads from
// Options.InitialPosition.
type Position struct {
	// StreamARN is the stream the position belongs to; "" for a first
	// start. Run refuses a position of another stream with ErrStreamGone.
	StreamARN string
	// Shards maps a shard id to the sequence number of the last record of
	// that shard the caller has finished with: reading resumes after it.
	Shards map[string]string
	// Finished lists the shards the caller has read to their end
	// (Options.OnShardEnd) and handled: they are not read again, and their
	// children start at TRIM_HORIZON. An id may be dropped from Finished
	// once DescribeStream no longer lists it (see the package doc).
	Finished []string
}

// IsZero reports whether p names no shard: a first start.
func (p Position) IsZero() bool { return len(p.Shards) == 0 && len(p.Finished) == 0 }

// Defaults and limits of Options.
const (
	DefaultDescribeInterval = 10 * time.Second
	DefaultMaxDescribeRate  = 5.0
	// MaxDescribeRate is DynamoDB's limit on DescribeStream calls per
	// second.
	MaxDescribeRate     = 10.0
	DefaultBusyInterval = 250 * time.Millisecond
	DefaultIdleMax      = 2 * time.Second
	DefaultLimit        = 1000
	// MaxLimit is DynamoDB's limit on records per GetRecords call.
	MaxLimit          = 1000
	DefaultMaxRetries = 10
)

// iteratorMaxAge is how old an iterator may get before the reader renews it
// instead of using it: DynamoDB expires iterators after 15 minutes.
const iteratorMaxAge = 14 * time.Minute

// maxRetryDelay caps the backoff between retries of a throttled or failed
// call.
const maxRetryDelay = 10 * time.Second

// Options configures a Reader. The zero value means every default.
type Options struct {
	// InitialPosition is where a first start (Position.IsZero) reads the
	// shards of the first DescribeStream whose parent is not being read
	// (the root shards): types.ShardIteratorTypeTrimHorizon (the default,
	// the oldest record the stream keeps, 24 h) or
	// types.ShardIteratorTypeLatest (only records written from now on).
	// Every other shard starts at TRIM_HORIZON: the children of a shard
	// read (or Finished), shards discovered later, and, when resuming from
	// a non-empty Position, any shard it does not name. So LATEST may
	// deliver some records older than Run (the children of a root read at
	// LATEST), never fewer.
	InitialPosition types.ShardIteratorType
	// DescribeInterval is how often the stream's shards are listed again
	// (DescribeStream, every page) to discover new ones. A shard read to
	// its end also triggers a listing. Default 10 s.
	DescribeInterval time.Duration
	// MaxDescribeRate caps DescribeStream calls per second (every page and
	// retry counts), for this Reader. At most 10, DynamoDB's limit, shared
	// by every reader of the account's streams in a region. Default 5.
	MaxDescribeRate float64
	// BusyInterval is the time between the starts of two GetRecords calls
	// on a shard whose last call returned records: default 250 ms, that is
	// at most 4 calls per second per shard. Values below 250 ms exceed what
	// AWS Lambda itself does; use them for tests against fakes or
	// emulators. Retries of a failed call back off from it too.
	BusyInterval time.Duration
	// IdleMax caps the backoff of a shard whose GetRecords calls return no
	// records: the interval doubles from BusyInterval up to IdleMax, and
	// goes back to BusyInterval as soon as a call returns records.
	// Default 2 s; at least BusyInterval.
	IdleMax time.Duration
	// Limit is the most records one GetRecords call returns: 1 to 1000,
	// default 1000. DynamoDB also stops each call at 1 MB.
	Limit int32
	// MaxRetries is how many times in a row one call (DescribeStream,
	// GetShardIterator, GetRecords) is retried after a throttling or
	// transient error that the SDK's own retryer gave up on
	// (LimitExceededException, ProvisionedThroughputExceededException, 5xx,
	// connection errors), with exponential backoff and jitter from
	// BusyInterval up to 10 s. After that Run returns the error. Default
	// 10 (about a minute); negative means none.
	MaxRetries int
	// OnShardEnd, if not nil, is called when a shard has been read to its
	// end: the shard is closed and every one of its records was emitted
	// and emit returned. It is called from the shard's goroutine, after
	// its last emit and before any record of its children is emitted;
	// shards ending together call it concurrently. It must be fast. The
	// caller adds the shard to Position.Finished once it has handled the
	// records emitted from it. It is also called for a shard whose records
	// have all expired while it was still listed, on a first start only
	// (see the package doc).
	OnShardEnd func(shardID string)
	// Clock is the time source of pacing, rate limits and iterator age.
	// Waits are real timers for the difference. Default time.Now.
	Clock func() time.Time
	// OnPositioned, if not nil, is called once every shard started after
	// the first listing holds an iterator.
	OnPositioned func()
	// OnCaughtUp, if not nil, is called when a GetRecords call on an open
	// shard made at time at returned no record: the shard held nothing
	// unread then. Called from the shard's goroutine.
	OnCaughtUp func(shardID string, at time.Time)
	// OnCall, if not nil, learns the outcome of every call to DynamoDB
	// Streams (each attempt of DescribeStream, GetShardIterator and
	// GetRecords, before any retry) and when it began by Clock. Called
	// from the calling goroutine, not for calls cut short by the end of
	// Run's context. It must be fast.
	OnCall func(err error, began time.Time)
	// Logger receives the reader's logs: shards started and ended at
	// debug, renewed iterators and retries at info and warn. Default nil:
	// silent.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.InitialPosition == "" {
		o.InitialPosition = types.ShardIteratorTypeTrimHorizon
	}
	if o.DescribeInterval == 0 {
		o.DescribeInterval = DefaultDescribeInterval
	}
	if o.MaxDescribeRate == 0 {
		o.MaxDescribeRate = DefaultMaxDescribeRate
	}
	if o.BusyInterval == 0 {
		o.BusyInterval = DefaultBusyInterval
	}
	if o.IdleMax == 0 {
		o.IdleMax = max(DefaultIdleMax, o.BusyInterval)
	}
	if o.Limit == 0 {
		o.Limit = DefaultLimit
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	switch o.InitialPosition {
	case types.ShardIteratorTypeTrimHorizon, types.ShardIteratorTypeLatest:
	default:
		return fmt.Errorf("%w: InitialPosition %q: want TRIM_HORIZON or LATEST", ErrInvalidOptions, o.InitialPosition)
	}
	if o.DescribeInterval < 0 {
		return fmt.Errorf("%w: DescribeInterval %v is negative", ErrInvalidOptions, o.DescribeInterval)
	}
	if math.IsNaN(o.MaxDescribeRate) || o.MaxDescribeRate < 0 || o.MaxDescribeRate > MaxDescribeRate {
		return fmt.Errorf("%w: MaxDescribeRate %v: want more than 0 and at most %v calls per second", ErrInvalidOptions, o.MaxDescribeRate, MaxDescribeRate)
	}
	if o.BusyInterval < 0 {
		return fmt.Errorf("%w: BusyInterval %v is negative", ErrInvalidOptions, o.BusyInterval)
	}
	if o.IdleMax < o.BusyInterval {
		return fmt.Errorf("%w: IdleMax %v is below BusyInterval %v", ErrInvalidOptions, o.IdleMax, o.BusyInterval)
	}
	if o.Limit < 0 || o.Limit > MaxLimit {
		return fmt.Errorf("%w: Limit %d: want 1 to %d", ErrInvalidOptions, o.Limit, MaxLimit)
	}
	return nil
}

// Reader reads every shard of one DynamoDB stream. Create it with New. Its
// methods are safe for concurrent use, but only one Run at a time.
type Reader struct {
	api      API
	arn      string
	opts     Options
	log      *slog.Logger
	describe *pacer
	running  atomic.Bool
}

// New returns a Reader of the stream streamARN through api. It starts
// nothing and calls nothing. Invalid options return an error matching
// ErrInvalidOptions.
func New(api API, streamARN string, opts Options) (*Reader, error) {
	if api == nil {
		return nil, fmt.Errorf("%w: api is nil", ErrInvalidOptions)
	}
	if streamARN == "" {
		return nil, fmt.Errorf("%w: stream ARN is empty", ErrInvalidOptions)
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Reader{
		api:      api,
		arn:      streamARN,
		opts:     opts,
		log:      opts.Logger.With("stream", streamARN),
		describe: newPacer(time.Duration(float64(time.Second)/opts.MaxDescribeRate), opts.Clock),
	}, nil
}

// StreamARN returns the stream the Reader reads.
func (r *Reader) StreamARN() string { return r.arn }

// Run reads every shard of the stream from pos until ctx ends, calling emit
// for each record.
//
// Order: within a shard, records are emitted in sequence order, one at a
// time (one goroutine per shard); records of different shards are emitted
// concurrently, so emit must be safe for concurrent use. emit may block:
// that shard's reading waits (backpressure), others go on. A child shard is
// read only after its parent has been read to its end (every record of the
// parent emitted, emit returned, and OnShardEnd called), whoever handles
// those records: children never wait for the caller to handle the parent's
// records, since the caller orders commits per aggregate itself.
//
// Run returns ctx.Err() on a clean stop (after every shard goroutine has
// returned; emit must return once its ctx ends), or:
//   - a *TrimmedError (matching ErrTrimmed) naming the shard: records the
//     position needs are no longer in the stream (TrimmedDataAccessException,
//     or a shard of the position no longer listed or readable); the caller
//     must catch up from the table;
//   - an error matching ErrStreamGone: the stream does not exist any more
//     (ResourceNotFoundException), or is DISABLED (disabled, and perhaps
//     re-enabled with a new ARN), or pos belongs to another stream;
//   - the error emit returned, wrapped with the shard id;
//   - an error of the SDK that is not transient, or one still failing after
//     Options.MaxRetries retries;
//   - ErrRunning if another Run of this Reader is in progress.
//
// Expired iterators are renewed from the last record emitted
// (AFTER_SEQUENCE_NUMBER), or the shard's starting point if none was; no
// record is skipped. Run uses one reader per shard: DynamoDB allows two, so
// two processes reading one stream need leases, taken by the caller, each
// reading its shards with RunShard.
func (r *Reader) Run(ctx context.Context, pos Position, emit func(ctx context.Context, rec Record) error) error {
	if emit == nil {
		return fmt.Errorf("%w: emit is nil", ErrInvalidOptions)
	}
	if pos.StreamARN != "" && pos.StreamARN != r.arn {
		return fmt.Errorf("%w: the position is for stream %s, not %s", ErrStreamGone, pos.StreamARN, r.arn)
	}
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	g, gctx := errgroup.WithContext(ctx)
	c := newCoordinator(r, pos, emit, g)
	g.Go(func() error { return c.run(gctx) })
	err := g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return ctx.Err()
	}
	return err
}

// startSpec is where a shard iterator starts.
type startSpec struct {
	typ types.ShardIteratorType
	seq string // for AFTER_SEQUENCE_NUMBER
}

func (s startSpec) String() string {
	if s.seq != "" {
		return string(s.typ) + " " + s.seq
	}
	return string(s.typ)
}

// shardState is the coordinator's view of a shard it started.
type shardState struct {
	required bool // its records up to now are owed to the caller
	ended    bool // read to its end
	gone     bool // ended because its records had all expired
	missing  int  // listings in a row that did not list it, once ended
}

// forgetAfter is how many listings in a row must miss a shard read to its
// end before the coordinator forgets it.
const forgetAfter = 3

// shardEnd is a shard goroutine's report that its shard is read to its end.
type shardEnd struct {
	id   string
	gone bool
}

// coordinator lists the shards and starts a goroutine per shard once its
// parent is read. Only its own goroutine touches its maps.
type coordinator struct {
	r                      *Reader
	pos                    Position
	resume                 bool
	emit                   func(context.Context, Record) error
	g                      *errgroup.Group
	finished               map[string]bool
	listed                 map[string]types.Shard
	order                  []string
	state                  map[string]*shardState
	ends                   chan shardEnd
	listings               int
	pending                sync.WaitGroup
	positioning, firstDone bool
}

func newCoordinator(r *Reader, pos Position, emit func(context.Context, Record) error, g *errgroup.Group) *coordinator {
	c := &coordinator{
		r:        r,
		pos:      pos,
		resume:   !pos.IsZero(),
		emit:     emit,
		g:        g,
		finished: make(map[string]bool, len(pos.Finished)),
		state:    map[string]*shardState{},
		ends:     make(chan shardEnd),
	}
	for _, id := range pos.Finished {
		c.finished[id] = true
	}
	return c
}

func (c *coordinator) run(ctx context.Context) error {
	// Go 1.23 timers: Reset and Stop discard a value not yet received.
	timer := time.NewTimer(c.r.opts.DescribeInterval)
	defer timer.Stop()
	for {
		if err := c.list(ctx); err != nil {
			return err
		}
		first := !c.positioning
		c.positioning = true
		c.startReady(ctx)
		c.firstDone = true
		if first && c.r.opts.OnPositioned != nil {
			go func() { c.pending.Wait(); c.r.opts.OnPositioned() }()
		}
		timer.Reset(c.r.opts.DescribeInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				break wait
			case e := <-c.ends:
				c.ended(e)
				// Take every other end already reported, then start the
				// children already listed and list again for new ones.
				for more := true; more; {
					select {
					case e := <-c.ends:
						c.ended(e)
					default:
						more = false
					}
				}
				c.startReady(ctx)
				break wait
			}
		}
	}
}

func (c *coordinator) ended(e shardEnd) {
	st := c.state[e.id]
	st.ended, st.gone = true, e.gone
}

// list reads every page of DescribeStream into c.listed, and checks, the
// first time, that every shard of the position is still there.
func (c *coordinator) list(ctx context.Context) error {
	shards, status, err := c.r.listShards(ctx)
	if err != nil {
		return err
	}
	if status == types.StreamStatusDisabled {
		return fmt.Errorf("%w: stream %s is DISABLED", ErrStreamGone, c.r.arn)
	}
	c.listed = make(map[string]types.Shard, len(shards))
	c.order = c.order[:0]
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		if id == "" {
			continue
		}
		if _, dup := c.listed[id]; !dup {
			c.order = append(c.order, id)
		}
		c.listed[id] = sh
	}
	// Forget shards read and missing from several listings in a row, so
	// that a long run holds about what DynamoDB lists: their children,
	// parentless now, start at TRIM_HORIZON as they would have.
	for id, st := range c.state {
		if _, ok := c.listed[id]; ok || !st.ended {
			st.missing = 0
		} else if st.missing++; st.missing >= forgetAfter {
			delete(c.state, id)
		}
	}
	c.listings++
	if c.listings == 1 {
		for id, seq := range c.pos.Shards {
			if _, ok := c.listed[id]; !ok && !c.finished[id] {
				return &TrimmedError{ShardID: id, SequenceNumber: seq, Reason: "the shard is no longer listed by DescribeStream"}
			}
		}
	}
	return nil
}

// done reports whether shard id needs no more reading in this run.
func (c *coordinator) done(id string) bool {
	if c.finished[id] {
		return true
	}
	st := c.state[id]
	return st != nil && st.ended
}

// startReady starts a goroutine for every listed shard not started yet
// whose parent is read.
func (c *coordinator) startReady(ctx context.Context) {
	for _, id := range c.order {
		if c.finished[id] || c.state[id] != nil {
			continue
		}
		parent := aws.ToString(c.listed[id].ParentShardId)
		if parent == id {
			parent = ""
		}
		if parent != "" && !c.done(parent) {
			_, listed := c.listed[parent]
			if listed || c.state[parent] != nil {
				continue // wait for the parent to be read
			}
			// The parent is neither listed nor being read: trimmed away.
		}
		spec, required := c.startFor(id, parent)
		st := &shardState{required: required}
		c.state[id] = st
		s := &shardReader{r: c.r, id: id, start: spec, required: required, emit: c.emit,
			log: c.r.log.With("shard", id)}
		if !c.firstDone {
			c.pending.Add(1)
			var once sync.Once
			s.opened = func() { once.Do(c.pending.Done) }
		}
		s.log.Debug("streamreader: reading shard", "from", spec.String(), "parent", parent)
		c.g.Go(func() error {
			gone, err := s.run(ctx)
			if err != nil {
				return err
			}
			s.log.Debug("streamreader: shard read to its end", "expired", gone, "last", s.last)
			if c.r.opts.OnShardEnd != nil {
				c.r.opts.OnShardEnd(id)
			}
			select {
			case c.ends <- shardEnd{id: id, gone: gone}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}
}

// startFor says where shard id starts, and whether its records are owed to
// the caller (see shardReader.required).
func (c *coordinator) startFor(id, parent string) (startSpec, bool) {
	if seq, ok := c.pos.Shards[id]; ok && seq != "" {
		return startSpec{typ: types.ShardIteratorTypeAfterSequenceNumber, seq: seq}, true
	}
	trim := startSpec{typ: types.ShardIteratorTypeTrimHorizon}
	if parent != "" {
		if c.finished[parent] {
			return trim, true
		}
		if _, ok := c.pos.Shards[parent]; ok {
			return trim, true
		}
		if st := c.state[parent]; st != nil {
			// A parent read in this run makes its children owed, unless
			// it had expired before this run could read it.
			return trim, st.required || !st.gone
		}
	}
	if !c.resume && c.listings == 1 {
		return startSpec{typ: c.r.opts.InitialPosition}, false
	}
	return trim, true
}

// Shard is one shard of a stream, as DescribeStream lists it.
type Shard struct {
	// ID is the shard's id.
	ID string
	// ParentID is the shard it was split from; "" for a root shard, or when
	// DynamoDB does not say.
	ParentID string
	// Closed reports a shard that takes no more records (it has an ending
	// sequence number): once read to its end, its children follow.
	Closed bool
}

// Shards lists every shard of the stream (DescribeStream, every page, paced
// and retried as Run's listings are). A stream that does not exist or is
// DISABLED returns an error matching ErrStreamGone.
func (r *Reader) Shards(ctx context.Context) ([]Shard, error) {
	shards, disabled, err := r.shardsAnyStatus(ctx)
	if err == nil && disabled {
		return nil, fmt.Errorf("%w: stream %s is DISABLED", ErrStreamGone, r.arn)
	}
	return shards, err
}

// ShardsAndStatus is Shards that also lists the shards of a DISABLED
// stream (closed, their records readable for 24 hours), and reports
// whether it is DISABLED; only a stream that does not exist returns an
// error matching ErrStreamGone.
func (r *Reader) ShardsAndStatus(ctx context.Context) (shards []Shard, disabled bool, err error) {
	return r.shardsAnyStatus(ctx)
}

// shardsAnyStatus lists the shards, and reports a DISABLED stream.
func (r *Reader) shardsAnyStatus(ctx context.Context) ([]Shard, bool, error) {
	listed, status, err := r.listShards(ctx)
	if err != nil {
		return nil, false, err
	}
	out := make([]Shard, 0, len(listed))
	seen := make(map[string]bool, len(listed))
	for _, sh := range listed {
		id := aws.ToString(sh.ShardId)
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		parent := aws.ToString(sh.ParentShardId)
		if parent == id {
			parent = ""
		}
		closed := sh.SequenceNumberRange != nil && aws.ToString(sh.SequenceNumberRange.EndingSequenceNumber) != ""
		out = append(out, Shard{ID: id, ParentID: parent, Closed: closed})
	}
	return out, status == types.StreamStatusDisabled, nil
}

// RunShard reads one shard of the stream, for a caller that shares a
// stream's shards with other processes through leases and keeps the
// lineage itself (a child only once its parent is read). It reads from
// after sequence number after, or from TRIM_HORIZON when after is "", until
// the shard has been read to its end or ctx ends, calling emit for each
// record in order, one at a time, from the calling goroutine. It does not
// list the stream. Options.OnPositioned is called once the first iterator
// is open, Options.OnCaughtUp as in Run, and Options.OnShardEnd once the
// shard has been read to its end.
//
// RunShard returns nil once the shard has been read to its end (every
// record emitted and OnShardEnd called), ctx.Err() on a stop, and otherwise
// Run's errors: a *TrimmedError when records it must read are gone (the
// shard's records were trimmed, or the shard no longer exists), an error
// matching ErrStreamGone when the shard cannot be found because the stream
// is gone or DISABLED (a DISABLED stream's shards are closed, and stay
// readable to their end for 24 hours: RunShard then returns nil, and the
// caller learns of the stream from Shards), emit's error
// wrapped with the shard id, a call still failing after its retries, or
// ErrRunning while another Run or RunShard of this Reader is in progress.
func (r *Reader) RunShard(ctx context.Context, shardID, after string, emit func(ctx context.Context, rec Record) error) error {
	return r.RunShardFrom(ctx, shardID, ShardStart{After: after}, emit)
}

// Retention is how long DynamoDB Streams keeps a record: 24 hours. Only
// records older than that are trimmed.
const Retention = 24 * time.Hour

// trimSafety is how much younger than Retention a ShardStart.OwedSince must
// be for a TrimmedDataAccessException to be taken as trimming nothing owed:
// room for the clocks of the writer, DynamoDB and the reader to differ.
const trimSafety = time.Hour

// ShardStart is where RunShardFrom starts reading a shard.
type ShardStart struct {
	// After is the sequence number of the last record already handled:
	// reading resumes after it. "" reads from TRIM_HORIZON.
	After string
	// OwedSince, with After "", is the time from which the shard's records
	// are owed to the caller (a record written before it was handled by
	// other means); zero means every record of the shard is owed. When a
	// GetRecords call from TRIM_HORIZON, before any record was emitted,
	// fails with TrimmedDataAccessException and OwedSince is less than
	// Retention minus an hour ago, the records trimmed (older than
	// Retention) cannot be owed: the shard is opened again at TRIM_HORIZON
	// (at most 3 times) instead of failing with a *TrimmedError. DynamoDB
	// Local raises that exception for an iterator taken while the shard
	// held no record, once its first record is written (see docs/stream.md).
	OwedSince time.Time
}

// RunShardFrom is RunShard from start: after start.After, or from
// TRIM_HORIZON with the records written before start.OwedSince not owed.
func (r *Reader) RunShardFrom(ctx context.Context, shardID string, start ShardStart, emit func(ctx context.Context, rec Record) error) error {
	if emit == nil {
		return fmt.Errorf("%w: emit is nil", ErrInvalidOptions)
	}
	if shardID == "" {
		return fmt.Errorf("%w: shard id is empty", ErrInvalidOptions)
	}
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	spec := startSpec{typ: types.ShardIteratorTypeTrimHorizon}
	if start.After != "" {
		spec = startSpec{typ: types.ShardIteratorTypeAfterSequenceNumber, seq: start.After}
	}
	s := &shardReader{r: r, id: shardID, start: spec, required: true, emit: emit, log: r.log.With("shard", shardID)}
	if start.After == "" {
		s.owedSince = start.OwedSince
	}
	if r.opts.OnPositioned != nil {
		var once sync.Once
		s.opened = func() { once.Do(r.opts.OnPositioned) }
	}
	_, err := s.run(ctx)
	if err == nil && ctx.Err() == nil {
		s.log.Debug("streamreader: shard read to its end", "last", s.last)
		if r.opts.OnShardEnd != nil {
			r.opts.OnShardEnd(shardID)
		}
		return nil
	}
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return ctx.Err()
	}
	return err
}
