package subscribe

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Reader is what the worker reads commits through. *store.Store implements
// it; tests wrap it to withhold or delay items.
type Reader interface {
	// Scan returns commits after a position in global commit order (see
	// store.Store.Scan).
	Scan(ctx context.Context, after store.Position, optFns ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error]
	// Query returns one aggregate's commits with strongly consistent reads
	// (see store.Store.Query).
	Query(ctx context.Context, aggregateID string, fromVersion int64, optFns ...func(*store.QueryOptions)) iter.Seq2[store.Commit, error]
}

var _ Reader = (*store.Store)(nil)

// StreamsAPI is the DynamoDB Streams calls the stream source makes.
// *dynamodbstreams.Client implements it.
type StreamsAPI interface {
	DescribeStream(ctx context.Context, params *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, params *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, params *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

var _ StreamsAPI = (*dynamodbstreams.Client)(nil)

// TableDescriber is the DynamoDB call that finds a table's stream.
// *dynamodb.Client implements it.
type TableDescriber interface {
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var _ TableDescriber = (*dynamodb.Client)(nil)

// Errors.
var (
	// ErrInvalidConfig: a Config or Subscription is unusable; the error says
	// which field.
	ErrInvalidConfig = errors.New("subscribe: invalid configuration")
	// ErrDuplicateSubscription: Register was given a name already taken.
	ErrDuplicateSubscription = errors.New("subscribe: duplicate subscription")
	// ErrUnknownSubscription: no subscription has that name.
	ErrUnknownSubscription = errors.New("subscribe: unknown subscription")
	// ErrStopped: a subscription whose Policy is PolicyStop stopped on a
	// commit it could not handle. Returned as a *StoppedError.
	ErrStopped = errors.New("subscribe: subscription stopped")
	// ErrRunning: Register or Run was called while the worker runs.
	ErrRunning = errors.New("subscribe: worker already running")
	// ErrNotHeld: Worker.Replay or Worker.Discard was called, with
	// Config.Leases, for an aggregate whose unit another worker holds:
	// write a checkpoint.Request instead, which the holder carries out.
	ErrNotHeld = errors.New("subscribe: unit held by another worker")
	// ErrLeaseExpired: a unit's lease expired, by this process's clock,
	// before it could be renewed; its work was cancelled (see
	// LeaseOptions). Reported through HookLease.
	ErrLeaseExpired = errors.New("subscribe: lease expired before it could be renewed")
)

// StoppedError reports the commit a subscription stopped on.
type StoppedError struct {
	Subscription string
	AggregateID  string
	Version      int64
	Err          error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("subscribe: subscription %q stopped at aggregate %q version %d: %v", e.Subscription, e.AggregateID, e.Version, e.Err)
}

// Unwrap returns ErrStopped and the handler's error.
func (e *StoppedError) Unwrap() []error { return []error{ErrStopped, e.Err} }

// Config configures a Worker. Reader and Checkpoints are required.
type Config struct {
	// Reader reads commits: usually the *store.Store the commits are
	// appended through.
	Reader Reader
	// Checkpoints keeps each subscription's position.
	Checkpoints checkpoint.Store
	// Streams reads the commits table's stream, for SourceStream and
	// SourceAuto subscriptions (a *dynamodbstreams.Client).
	Streams StreamsAPI
	// Tables finds the commits table's current stream (a
	// *dynamodb.Client), for SourceStream and SourceAuto subscriptions.
	Tables TableDescriber
	// TableName is the commits table whose stream is read. Default: the
	// Reader's, when it is a *store.Store, else store.DefaultTableName.
	TableName string
	// Parking keeps commits set aside by PolicyPark. Default: Checkpoints,
	// if it implements checkpoint.ParkStore; a subscription with
	// PolicyPark fails to register without one.
	Parking checkpoint.ParkStore
	// Owner names this process in checkpoints (the fencing owner). Default:
	// host name, process id and a random suffix.
	Owner string
	// Logger receives structured logs. Default nil: silent.
	Logger *slog.Logger
	// Hooks receive observations: each value implements any of the Hook…
	// interfaces in hooks.go. Hooks are called synchronously from the
	// worker's goroutines and must be fast and safe for concurrent use.
	Hooks []any
	// Clock is the wall clock the settle watermark and lag are read from,
	// and against which other workers' leases are judged expired (see
	// LeaseOptions). Default time.Now.
	Clock func() time.Time
	// DrainTimeout bounds how long Run waits, once its context ends, for
	// handlers already running to finish before cancelling their contexts.
	// Default 30 s.
	DrainTimeout time.Duration
	// FinalSaveTimeout bounds the last checkpoint write at stop, made with a
	// fresh context. Default 10 s.
	FinalSaveTimeout time.Duration
	// RequestPoll is how often each running subscription reads its
	// operators' requests (checkpoint.Request: replay or discard an
	// aggregate's parked commits, written from another process) when
	// Parking implements checkpoint.RequestStore: once at start, then every
	// RequestPoll. With dynamocheckpoint that is one strongly consistent
	// Query per subscription per poll. Default 2 s; a negative value turns
	// polling off (Worker.Replay and Worker.Discard still work).
	RequestPoll time.Duration
	// Leases, when set, lets several workers (usually in several
	// processes) share each subscription's work: each subscription is cut
	// into units, and each unit is held by one worker at a time through a
	// lease in Checkpoints, renewed while it runs and taken over by
	// another worker when it is released or expires (see LeaseOptions).
	// Checkpoints must then implement checkpoint.Leaser, checkpoint.Lister
	// and checkpoint.Setter, or NewWorker returns an error matching
	// ErrInvalidConfig. Default nil: each subscription runs whole in this
	// worker, which takes its checkpoint with checkpoint.Store.Claim (it
	// never expires; a second process that claims it fences this one).
	Leases *LeaseOptions
}

// LeaseOptions configure the leases through which workers share
// subscriptions (Config.Leases), the way the Kinesis Client Library shares
// a stream's shards through its lease table.
//
// # Units
//
// A SourceIndex subscription over a bucketed index (the Reader is a
// *store.Store with more than one bucket, store.Config.IndexBuckets) has
// one unit per bucket, or per bucket of IndexOptions.Buckets when set,
// named "bucket-" followed by the bucket (checkpoint.Key.Unit). Each unit
// reads only its bucket and has its own checkpoint; an aggregate lives in
// one bucket, so per-aggregate order holds. A SourceIndex subscription
// over one bucket is one unit, "": the subscription whole, run by one
// worker at a time.
//
// A SourceStream or SourceAuto subscription is leased whole (unit "")
// while it catches up through the index: at its first start, and whenever
// the stream cannot give every commit. Once the stream has taken over, the
// worker that caught up saves the stream's position, with an epoch (its
// lease counter), releases the unit and stops it. From then on each shard
// of the stream is a unit, "shard-" followed by the shard id, with its own
// checkpoint, and the lineage holds across workers: a shard becomes a unit
// only once its parent is finished (read to its end and every commit from
// it handled, by whichever worker) or gone from the stream with nothing
// read of it, and a finished shard is no longer one. A shard with records
// owed that the stream no longer lists had them trimmed: the subscription
// goes back to the index, as below. A new shard unit starts from its parent's last
// checkpoint, or, for a shard of the hand-over, from the hand-over's. An
// aggregate's commits stay in one shard at a time as long as DynamoDB
// keeps its partition key in one table partition; if they come through two
// shards at once (a partition split by sort key), each unit still puts
// them in version order, repairing gaps from the table, but two units in
// two workers may each deliver one of them, so a version may come twice
// and after a later one. A shard unit that finds the stream cannot give
// its records (trimmed, the stream disabled, or a new stream) ends, and the
// subscription goes back to the index: every worker stops its shard units,
// and the worker that takes unit "" waits until none of them is held, then
// catches up from the oldest of their positions, until the stream takes
// over in a new epoch. The checkpoints of finished shards the stream no
// longer lists, and of earlier epochs, are deleted (checkpoint.Deleter).
// With SourceAuto, leases make it behave as SourceStream: a worker that
// starts does not catch up through the index, since the shards it takes go
// on from their own checkpoints. Operators' requests for a stream
// subscription in shards are carried out by the worker running its shard
// unit first by name; the other shard units learn of a replay or discard
// when they next meet the aggregate.
//
// A bucket unit with no saved position yet starts from the subscription's
// checkpoint without leases (unit ""), if it has one, so that turning
// leases on does not read the subscription again from its Start.
//
// # Balance
//
// Each worker keeps a membership record under the subscription (a lease
// on the unit "member:" followed by its Owner, see IsMemberUnit, renewed
// as units are, and deleted at a clean stop). Every BalanceEvery, it lists
// the subscription's checkpoints (checkpoint.Lister). A unit with no owner, or whose lease has
// expired (checkpoint.Checkpoint.Live is false at Config.Clock's time), is
// free. The owners are the owners of live leases and of live memberships,
// the worker itself included; the target is the number of units divided
// by the number of owners, rounded up. A worker that holds fewer units
// than the target takes free units (checkpoint.Leaser.Take), in random
// order, until it holds the target. A worker that holds more than the
// target, or two units more than another owner, releases one unit per
// round (it drains, saves and releases it, as at a clean stop, and leaves
// it to others for three rounds), which a worker below the target then
// takes: so a worker that joins is given units within a few rounds, with
// no steal and no duplicate. A member that holds no unit while units stay
// free for three rounds is not counted until it holds one (it cannot take
// them). Only when no unit is free and an owner that holds at least
// two units more than the worker has given none back for three rounds in a
// row (it does not balance: it hangs, or runs an older version) does the
// worker steal one of its units, at most one per round. Each hand-over
// narrows the gap between two workers, so the layout settles, with no unit
// moving once every unit is held and every worker holds the target or one
// less: three workers on six units settle at two each, on seven units at
// three, two and two.
//
// A unit that ends by itself (a stream subscription's unit "" once the
// stream has taken over, a shard unit whose shard is read to its end or
// whose records are trimmed) has its worker run a round at once, once it
// has saved and released its lease, rather than at the next BalanceEvery:
// the worker takes its share of what follows (the shard units, a shard's
// children) without a pause (see docs/stream.md).
//
// # Renewal and loss
//
// Each unit held is renewed every RenewEvery (checkpoint.Leaser.Renew).
// When a renewal or a checkpoint save is refused (checkpoint.ErrFenced:
// another worker took the unit), or when renewals keep failing until the
// lease has expired by this process's clock (ErrLeaseExpired), the unit's
// work is cancelled at once: it stops reading, its handlers' contexts are
// cancelled without waiting for them, and it saves nothing more. The other
// worker resumes from the unit's last saved position: duplicates are
// bounded by what was handled since then. A worker learns that a unit was
// stolen only at its next save or renewal (within CheckpointInterval or
// RenewEvery), or when the lease expires by its own clock: so a worker
// that steals a unit from a live owner reads nothing of it until that
// owner's lease, as it was when stolen, has expired. The two never handle
// the unit at once (given clocks that agree, and handlers that return once
// their context is cancelled), at the cost of a steal taking up to
// Duration; a free or expired unit starts at once. Take is conditional on
// the lease as listed, counter and expiry, so a renewal that lands first
// makes the steal fail. A unit lost this way is reported through HookLease
// and forgotten; the subscription goes on, and the worker may take units
// again at its next balance.
//
// When Run's context ends, each unit drains and saves as without leases,
// then releases its lease (checkpoint.Setter.Release), so that other
// workers take it at their next balance, within BalanceEvery rather than
// a lease Duration. A process that dies without releasing has its units
// taken once their leases expire: within Duration plus BalanceEvery.
//
// Hosts' clocks must agree to well within Duration: a lease's expiry is
// written by the store's clock and judged by the reader's. Owner names must
// be unique: a unit recorded under this worker's Owner that it does not run
// is taken as left over from an earlier run of it.
//
// Every worker of a subscription must agree on Leases: a worker without
// leases claims the whole subscription's checkpoint (unit ""), with no
// expiry. A worker with leases takes a unit held that way once it has seen
// it unchanged (owner, lease counter, last save) for Duration, as left by
// a worker that died; a worker without leases that is alive but idle that
// long loses it, and its subscription stops at its next save with
// ErrFenced. Stop such workers cleanly (they release the checkpoint)
// before starting workers with leases.
type LeaseOptions struct {
	// Duration is how long a lease lasts from its last renewal: a worker
	// that stops renewing (it died, hangs or lost the network) keeps its
	// units that long. Default 20 s; at least 1 ms.
	Duration time.Duration
	// RenewEvery is how often each lease held is renewed; a failed renewal
	// is retried after half of it. Default Duration/4; it must be less
	// than Duration/2, so that a lease is renewed at least twice in its
	// life.
	RenewEvery time.Duration
	// BalanceEvery is how often the worker lists its subscriptions' leases
	// and takes, steals or releases units (see Balance above). Default
	// 5 s. Each round is one checkpoint.Lister.List per subscription.
	BalanceEvery time.Duration
}

func (o LeaseOptions) withDefaults() LeaseOptions {
	if o.Duration == 0 {
		o.Duration = 20 * time.Second
	}
	if o.RenewEvery == 0 {
		o.RenewEvery = o.Duration / 4
	}
	if o.BalanceEvery == 0 {
		o.BalanceEvery = 5 * time.Second
	}
	return o
}

func (o LeaseOptions) validate() error {
	bad := func(field, why string, v any) error {
		return fmt.Errorf("%w: Leases.%s %v: %s", ErrInvalidConfig, field, v, why)
	}
	switch {
	case o.Duration < time.Millisecond:
		return bad("Duration", "want at least 1ms", o.Duration)
	case o.RenewEvery <= 0 || o.RenewEvery >= o.Duration/2:
		return bad("RenewEvery", fmt.Sprintf("want more than 0 and less than Duration/2 (%v)", o.Duration/2), o.RenewEvery)
	case o.BalanceEvery <= 0:
		return bad("BalanceEvery", "want a positive duration", o.BalanceEvery)
	}
	return nil
}

// DefaultGapTimeout is Subscription.GapTimeout's default.
const DefaultGapTimeout = 30 * time.Second

// Policy says what happens to a commit whose handler failed permanently,
// or transiently until its retries ran out (see RetryPolicy).
type Policy int

const (
	// PolicyPark (the default) sets the commit aside in durable storage,
	// with every later commit of its aggregate, in order, so that the
	// aggregate's order is never broken; other aggregates go on. A parked
	// aggregate is delivered again by Worker.Replay, or dropped by
	// Worker.Discard; operators ask for either from another process with a
	// checkpoint.Request (see Config.RequestPoll).
	PolicyPark Policy = iota
	// PolicyStop halts the subscription with a *StoppedError, reported by
	// Run and by Health. Its checkpoint stays before the commit.
	PolicyStop
	// PolicySkip drops the commit (counted and logged) and goes on with the
	// aggregate's next one.
	PolicySkip
)

func (p Policy) String() string {
	switch p {
	case PolicyPark:
		return "park"
	case PolicyStop:
		return "stop"
	case PolicySkip:
		return "skip"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses "park", "stop" or "skip".
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{PolicyPark, PolicyStop, PolicySkip} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: policy %q: want park, stop or skip", ErrInvalidConfig, s)
}

// CorruptPolicy says what a subscription does with an item of the commits
// table that is not a well-formed commit of its key (a *store.DecodeError,
// see store.CorruptKind), and with the version after a gap that cannot be
// filled (a *GapError). Either is first reported: an ERROR log naming the
// aggregate, the version and the kind, and HookCorrupt or HookGap. See
// docs/items.md.
type CorruptPolicy int

const (
	// CorruptPark (the default) parks the item, as PolicyPark parks a
	// failed commit: the parked record's reason is the error, which names
	// the kind ("store: corrupt commit (missing-commit-id) …", or
	// "subscribe: gap: …"), and every later commit of its aggregate parks
	// behind it, so that the aggregate's order is never broken; other
	// aggregates go on. Worker.Replay hands the parked item to the handler
	// as it was read (across the gap, for a gap); Worker.Discard drops it.
	// It needs Config.Parking.
	CorruptPark CorruptPolicy = iota
	// CorruptSkip goes on with the aggregate's next version: a corrupt item
	// is not handed to the handler (HookSkipped observes it), the version
	// after an unfillable gap is handed to it across the gap.
	CorruptSkip
)

func (p CorruptPolicy) String() string {
	switch p {
	case CorruptPark:
		return "park"
	case CorruptSkip:
		return "skip"
	}
	return fmt.Sprintf("CorruptPolicy(%d)", int(p))
}

// ParseCorruptPolicy parses "park" or "skip".
func ParseCorruptPolicy(s string) (CorruptPolicy, error) {
	for _, p := range []CorruptPolicy{CorruptPark, CorruptSkip} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: corrupt policy %q: want park or skip", ErrInvalidConfig, s)
}

// GapError is the cause given to the Corrupt policy for the version after
// a gap that cannot be filled: versions From to To−1 of the aggregate were
// still missing from the table (deleted, or never written) after Waited
// (Subscription.GapTimeout). With CorruptPark the version To is parked with
// this error's text as its reason.
type GapError struct {
	AggregateID string
	From, To    int64
	Waited      time.Duration
}

func (e *GapError) Error() string {
	missing := fmt.Sprintf("version %d", e.From)
	if e.To-e.From > 1 {
		missing = fmt.Sprintf("versions %d to %d", e.From, e.To-1)
	}
	return fmt.Sprintf("subscribe: gap: aggregate %q %s missing from the table after %v; version %d follows the gap",
		e.AggregateID, missing, e.Waited.Truncate(time.Millisecond), e.To)
}

// Start says where a subscription with no checkpoint begins.
type Start struct {
	kind     int
	commitID string
	at       time.Time
}

// Start points.
var (
	// StartBeginning delivers every commit in the table (the default).
	StartBeginning = Start{}
	// StartNow delivers commits appended from the subscription's first run
	// on.
	StartNow = Start{kind: 1}
)

// StartAtCommitID starts at the commit id, inclusive.
func StartAtCommitID(id string) Start { return Start{kind: 2, commitID: id} }

// StartAtTime starts at the first commit committed at or after t.
func StartAtTime(t time.Time) Start { return Start{kind: 3, at: t} }

// position returns the scan position a start point means at time now.
func (s Start) position(now time.Time) store.Position {
	switch s.kind {
	case 1:
		return store.FromCommitID(commitIDPrefix(now))
	case 2:
		return store.FromCommitID(s.commitID)
	case 3:
		// Commit ids have millisecond precision: a time within a
		// millisecond starts at the next one.
		at := s.at
		if t := at.Truncate(time.Millisecond); !t.Equal(at) {
			at = t.Add(time.Millisecond)
		}
		return store.FromCommitID(commitIDPrefix(at))
	}
	return store.Position{}
}

func (s Start) String() string {
	switch s.kind {
	case 1:
		return "now"
	case 2:
		return "commit " + s.commitID
	case 3:
		return "time " + s.at.UTC().Format(time.RFC3339Nano)
	}
	return "beginning"
}

// commitIDPrefix returns the 17-digit time part of a commit id at t: it sorts
// before every commit id of that millisecond.
func commitIDPrefix(t time.Time) string {
	id := store.FormatCommitID(t.UnixMilli(), "")
	return id[:len(id)-1]
}

// SourceMode says where a subscription reads commits from.
type SourceMode int

const (
	// SourceIndex (the default) polls the commit-order index: see
	// IndexOptions.
	SourceIndex SourceMode = iota
	// SourceStream reads the commits table's DynamoDB stream (see
	// StreamOptions), resuming from its checkpoint on the stream. What the
	// stream cannot give is read through the index first, then the stream
	// takes over: a first start, from its Start point (for StartNow only
	// the hand-over), and what the stream lost (records trimmed after 24 hours,
	// a checkpoint older than that, a stream disabled and enabled again
	// under a new ARN).
	SourceStream
	// SourceAuto is SourceStream that also catches up through the index at
	// every start, from its checkpoint, before the stream takes over: the
	// cheaper way through a long backlog.
	SourceAuto
)

func (m SourceMode) String() string {
	switch m {
	case SourceIndex:
		return "index"
	case SourceStream:
		return "stream"
	case SourceAuto:
		return "auto"
	}
	return fmt.Sprintf("SourceMode(%d)", int(m))
}

// ParseSourceMode parses "index", "stream" or "auto".
func ParseSourceMode(s string) (SourceMode, error) {
	for _, m := range []SourceMode{SourceIndex, SourceStream, SourceAuto} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: source %q: want index, stream or auto", ErrInvalidConfig, s)
}

// StreamOptions tune the stream source.
//
// DynamoDB Streams orders records per item only, and each commit is its own
// item: one aggregate's commits can arrive out of order. A version is held
// until its predecessor has been delivered; when the predecessor's record
// does not turn up within GapWait, it is read from the table with a strongly
// consistent Query and delivered first, and its record, when it comes, is
// dropped as a duplicate.
type StreamOptions struct {
	// GapWait is how long a version waits for its predecessor's record.
	// Default 2 s.
	GapWait time.Duration
	// Margin covers the difference between writers' clocks (which make
	// commit ids) and DynamoDB's (which dates stream records): where the
	// stream source must tell by time whether a commit was handled before
	// (after a restart, at a hand-over between index and stream), it takes
	// Margin more than it must, as duplicates. Default 10 s.
	Margin time.Duration
	// IdleMax caps the delay between reads of a shard that has no records:
	// it doubles from 250 ms (or IdleMax, if less), the delay between reads
	// while records come (at most 4 reads per second per shard). Default
	// 1 s.
	IdleMax time.Duration
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.GapWait == 0 {
		o.GapWait = 2 * time.Second
	}
	if o.Margin == 0 {
		o.Margin = 10 * time.Second
	}
	if o.IdleMax == 0 {
		o.IdleMax = time.Second
	}
	return o
}

// RetryPolicy says how a failing handler is retried (see docs/delivery.md).
//
// A transient failure (see Classify) is retried with exponential backoff
// and jitter: each delay is drawn from [d/2, d], where d starts at
// InitialBackoff and doubles up to MaxBackoff. It is retried until the
// commit passes its maximum record age, MaxRecordAge, counted from the
// later of its commit time (Commit.CommittedAt) and the moment the worker
// first tried it, by Config.Clock: so a receiver that is down for less
// than MaxRecordAge parks nothing, and an old commit read by a catch-up is
// not parked at its first failure. MaxAttempts and MaxElapsed, when set,
// stop the retries sooner. A permanent failure is not retried. Then the
// subscription's Policy applies.
//
// When transient failures of several aggregates come in a row, with no
// success in between (the receiver is down), the subscription's circuit
// opens (see CircuitOpenAfter): its aggregates stop calling the handler,
// and one call at a time, a probe, is let through, with the same backoff;
// the first probe that succeeds closes it, and every aggregate goes on.
// Health.CircuitOpenSince and HookCircuit report it.
type RetryPolicy struct {
	// MaxRecordAge is how long transient failures of a commit are retried,
	// from the later of its commit time and its first attempt. Default
	// 6 hours (DefaultMaxRecordAge): longer than a deploy, a restart or an
	// evening's outage of a receiver, and well inside the 24 hours a
	// DynamoDB stream keeps records. Negative means no limit.
	MaxRecordAge time.Duration
	// MaxAttempts, when positive, also stops the retries after that many
	// attempts, the first included. Default 0: no limit, MaxRecordAge
	// bounds the retries. (Before MaxRecordAge, the default was 5.)
	MaxAttempts int
	// MaxElapsed, when positive, also stops the retries once that long has
	// passed since the first attempt. Default 0: no limit. (Before
	// MaxRecordAge, the default was 1 minute.)
	MaxElapsed time.Duration
	// InitialBackoff is the first delay's upper bound. Default 100 ms.
	InitialBackoff time.Duration
	// MaxBackoff caps any delay, a probe's through an open circuit too.
	// Default 10 s: a receiver back from an outage is called again within
	// 10 s.
	MaxBackoff time.Duration
	// AttemptTimeout bounds one call of the handler; its context is
	// cancelled then, and the attempt is a transient failure. Default 30 s.
	AttemptTimeout time.Duration
	// CircuitOpenAfter is how many aggregates must fail transiently in a
	// row, with no success in between, for the circuit to open. Default 3
	// (DefaultCircuitOpenAfter), or Concurrency when it is smaller; a
	// negative value never opens it.
	CircuitOpenAfter int
}

// Defaults of RetryPolicy.
const (
	DefaultMaxRecordAge     = 6 * time.Hour
	DefaultInitialBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff       = 10 * time.Second
	DefaultAttemptTimeout   = 30 * time.Second
	DefaultCircuitOpenAfter = 3
)

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.MaxRecordAge == 0 {
		r.MaxRecordAge = DefaultMaxRecordAge
	}
	if r.InitialBackoff == 0 {
		r.InitialBackoff = DefaultInitialBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = max(DefaultMaxBackoff, r.InitialBackoff)
	}
	if r.AttemptTimeout == 0 {
		r.AttemptTimeout = DefaultAttemptTimeout
	}
	if r.CircuitOpenAfter == 0 {
		r.CircuitOpenAfter = DefaultCircuitOpenAfter
	}
	return r
}

// IndexOptions tune the index source, which polls the commit-order index.
//
// The index is eventually consistent and commit ids come from the writers'
// clocks, so a commit can become visible after commits that sort later (a
// late arrival). The source defends in three layers:
//
//  1. It reads only commits whose commit id is older than a settle
//     watermark, now − Settle: a commit visible within Settle of its commit
//     id's time is read in order.
//  2. It reads every commit a second time, Overlap behind the watermark (a
//     sweep), and delivers what it had not seen: a commit visible within
//     Settle + Overlap is delivered late (and counted), not lost.
//  3. It repairs per-aggregate gaps: a version ahead of the next one
//     expected makes it read the missing versions from the table with a
//     strongly consistent Query and deliver them first.
type IndexOptions struct {
	// Settle is the watermark's distance behind now. Default 1 s: index
	// propagation is typically well under a second; clock skew between
	// writers with NTP is milliseconds. Live lag is about Settle plus one
	// poll interval.
	Settle time.Duration
	// Overlap is how far behind the watermark the sweep re-reads. Default
	// 30 s, which covers an SDK retry sequence with backoff. Each commit is
	// read twice; a negative value disables the sweep.
	Overlap time.Duration
	// PollMin is the delay between polls while commits flow. Default 100 ms.
	PollMin time.Duration
	// PollMax caps the delay while idle: it doubles from PollMin after each
	// empty poll up to PollMax, so an idle tailer costs about one query per
	// bucket per PollMax. Default 2 s.
	PollMax time.Duration
	// Buckets restricts the source to these index buckets (see
	// store.Config.IndexBuckets). Default: all.
	Buckets []string
}

func (o IndexOptions) withDefaults() IndexOptions {
	if o.Settle == 0 {
		o.Settle = time.Second
	}
	if o.Overlap == 0 {
		o.Overlap = 30 * time.Second
	}
	if o.PollMin == 0 {
		o.PollMin = 100 * time.Millisecond
	}
	if o.PollMax == 0 {
		o.PollMax = 2 * time.Second
	}
	return o
}

// Subscription registers a handler under a name with its own position and
// policies. Exactly one of Handler and BatchHandler is set.
type Subscription struct {
	// Name identifies the subscription and its checkpoint. Required.
	Name string
	// Handler handles one commit at a time.
	Handler Handler
	// BatchHandler handles runs of one aggregate's consecutive commits.
	BatchHandler BatchHandler
	// Middleware wrap Handler, the first outermost. Not used with
	// BatchHandler.
	Middleware []Middleware
	// Source is where commits are read from. Default SourceIndex.
	Source SourceMode
	// Start is where a subscription with no checkpoint begins. Default
	// StartBeginning.
	Start Start
	// Policy applies to a commit that failed permanently, or whose
	// retries ran out. Default PolicyPark.
	Policy Policy
	// Corrupt applies to items of the commits table that are not
	// well-formed commits, and to the version after a gap that cannot be
	// filled. Default CorruptPark.
	Corrupt CorruptPolicy
	// GapTimeout is how long an aggregate's versions wait behind a version
	// missing from the table (re-reading the table for it every eighth of
	// it) before the gap is reported and the version after it handled by
	// the Corrupt policy. It bounds how long a slow writer may take to
	// write a version after a later one is written. The stream source
	// waits StreamOptions.GapWait for the record before. Default 30 s.
	GapTimeout time.Duration
	// Retry says how a failing handler is retried.
	Retry RetryPolicy
	// Concurrency is how many aggregates are handled at once. One
	// aggregate's commits are always handled one after another. Default 8.
	Concurrency int
	// MaxBatch caps the commits given to one HandleBatch call. Default 100.
	MaxBatch int
	// MaxInFlight bounds the commits read but not yet handled: the
	// read-ahead, and so the memory a backlog takes. Default 1,000.
	MaxInFlight int
	// CheckpointInterval is how often the position is saved while it moves
	// (and once more at stop). Duplicates after a crash are bounded by what
	// is handled in this time. Default 1 s.
	CheckpointInterval time.Duration
	// MaxTrackedAggregates bounds the aggregates whose next expected version
	// the worker remembers, for ordering and gap repair. Aggregates idle
	// longest are forgotten first, never while their commits can still be
	// re-read by the sweep. Default 100,000 (about 10 MB).
	MaxTrackedAggregates int
	// Index tunes the index source (and the index catch-up of the stream
	// source).
	Index IndexOptions
	// Stream tunes the stream source.
	Stream StreamOptions
}

func (s Subscription) withDefaults() Subscription {
	if s.Concurrency == 0 {
		s.Concurrency = 8
	}
	if s.MaxBatch == 0 {
		s.MaxBatch = 100
	}
	if s.MaxInFlight == 0 {
		s.MaxInFlight = 1000
	}
	if s.CheckpointInterval == 0 {
		s.CheckpointInterval = time.Second
	}
	if s.MaxTrackedAggregates == 0 {
		s.MaxTrackedAggregates = 100_000
	}
	if s.GapTimeout == 0 {
		s.GapTimeout = DefaultGapTimeout
	}
	s.Retry = s.Retry.withDefaults()
	s.Index = s.Index.withDefaults()
	s.Stream = s.Stream.withDefaults()
	return s
}

func (s Subscription) validate() error {
	bad := func(field, why string, v any) error {
		return fmt.Errorf("%w: subscription %q: %s %v: %s", ErrInvalidConfig, s.Name, field, v, why)
	}
	switch {
	case s.Name == "":
		return fmt.Errorf("%w: subscription name is empty", ErrInvalidConfig)
	case (s.Handler == nil) == (s.BatchHandler == nil):
		return fmt.Errorf("%w: subscription %q: set exactly one of Handler and BatchHandler", ErrInvalidConfig, s.Name)
	case s.BatchHandler != nil && len(s.Middleware) > 0:
		return fmt.Errorf("%w: subscription %q: Middleware wraps Handler, not BatchHandler", ErrInvalidConfig, s.Name)
	case s.Source < SourceIndex || s.Source > SourceAuto:
		return bad("Source", "want index, stream or auto", s.Source)
	case s.Stream.GapWait < 0 || s.Stream.Margin < 0 || s.Stream.IdleMax < 0:
		return bad("Stream.GapWait", "want positive durations", s.Stream.GapWait)
	case s.Policy < PolicyPark || s.Policy > PolicySkip:
		return bad("Policy", "want park, stop or skip", s.Policy)
	case s.Corrupt < CorruptPark || s.Corrupt > CorruptSkip:
		return bad("Corrupt", "want park or skip", s.Corrupt)
	case s.GapTimeout < 0:
		return bad("GapTimeout", "want a positive duration", s.GapTimeout)
	case s.Concurrency < 1:
		return bad("Concurrency", "want 1 or more", s.Concurrency)
	case s.MaxBatch < 1:
		return bad("MaxBatch", "want 1 or more", s.MaxBatch)
	case s.MaxInFlight < s.MaxBatch:
		return bad("MaxInFlight", fmt.Sprintf("want at least MaxBatch (%d)", s.MaxBatch), s.MaxInFlight)
	case s.CheckpointInterval < 0:
		return bad("CheckpointInterval", "want a positive duration", s.CheckpointInterval)
	case s.MaxTrackedAggregates < 1:
		return bad("MaxTrackedAggregates", "want 1 or more", s.MaxTrackedAggregates)
	case s.Retry.MaxAttempts < 0:
		return bad("Retry.MaxAttempts", "want 0 (no limit) or more", s.Retry.MaxAttempts)
	case s.Retry.MaxElapsed < 0:
		return bad("Retry.MaxElapsed", "want 0 (no limit) or a positive duration", s.Retry.MaxElapsed)
	case s.Retry.InitialBackoff < 0:
		return bad("Retry.InitialBackoff", "want a positive duration", s.Retry.InitialBackoff)
	case s.Retry.MaxBackoff < s.Retry.InitialBackoff:
		return bad("Retry.MaxBackoff", "want at least InitialBackoff", s.Retry.MaxBackoff)
	case s.Retry.AttemptTimeout < 0:
		return bad("Retry.AttemptTimeout", "want a positive duration", s.Retry.AttemptTimeout)
	case s.Index.Settle < 0:
		return bad("Index.Settle", "want 0 or more", s.Index.Settle)
	case s.Index.PollMin <= 0 || s.Index.PollMax < s.Index.PollMin:
		return bad("Index.PollMax", "want PollMin > 0 and PollMax ≥ PollMin", s.Index.PollMax)
	}
	return nil
}
