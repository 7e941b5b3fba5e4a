package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Default names, those of the original dynamodb-event-store package.
const (
	DefaultTableName = "commitsByAggregateIdAndVersion"
	DefaultIndexName = "commitsByCommitId"
	// DefaultBucket is the value of the index hash key `active` when the
	// index has one bucket, as the original package writes it.
	DefaultBucket = "t"
)

// Item attribute names. The first six are the original package's layout;
// AttrCommitToken is this package's addition, ignored by the original.
const (
	AttrAggregateID = "aggregateId"
	AttrVersion     = "version"
	AttrCommitID    = "commitId"
	AttrCommittedAt = "committedAt"
	AttrEvents      = "events"
	AttrActive      = "active"
	// AttrCommitToken holds a random token per append call, so that an
	// append whose outcome was unknown and that the SDK retried recognises
	// its own item instead of reporting a conflict.
	AttrCommitToken = "commitToken"
)

// DynamoDB limits the store checks before writing.
const (
	// MaxItemBytes is DynamoDB's item size limit: 400 KB.
	MaxItemBytes = 400 * 1024
	// MaxTransactionCommits is the number of actions one TransactWriteItems
	// call takes.
	MaxTransactionCommits = 100
	// MaxTransactionBytes is the aggregate item size one TransactWriteItems
	// call takes: 4 MB.
	MaxTransactionBytes = 4 * 1024 * 1024
	// MaxAggregateIDBytes keeps a commit id within DynamoDB's 1,024-byte
	// limit on an index sort key: 1,024 less the 17 digits and the colon.
	MaxAggregateIDBytes = 1024 - commitIDLayoutLen - 1
)

// PutItemAPI is the DynamoDB PutItem call the store makes.
type PutItemAPI interface {
	PutItem(ctx context.Context, params *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// TransactWriteItemsAPI is the DynamoDB TransactWriteItems call AppendAll
// makes.
type TransactWriteItemsAPI interface {
	TransactWriteItems(ctx context.Context, params *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// API is every DynamoDB call a Store makes. *dynamodb.Client implements it.
type API interface {
	PutItemAPI
	TransactWriteItemsAPI
	dynamodb.QueryAPIClient
}

var _ API = (*dynamodb.Client)(nil)

// Operation names a store call, for consumed-capacity reports.
type Operation string

// Operations reported to Config.ConsumedCapacity.
const (
	OpAppend    Operation = "Append"
	OpAppendAll Operation = "AppendAll"
	OpQuery     Operation = "Query"
	OpScan      Operation = "Scan"
)

// Config configures a Store. The zero value is the original package's
// layout: table commitsByAggregateIdAndVersion, index commitsByCommitId with
// one bucket "t", the system clock.
type Config struct {
	// TableName is the commits table. Default DefaultTableName.
	TableName string
	// IndexName is the commit-order global secondary index. Default
	// DefaultIndexName.
	IndexName string
	// IndexBuckets is the number of values the index hash key `active`
	// takes. 1 (the default) writes "t", as the original package does and
	// reads. B > 1 writes "t0" … "t{B-1}", chosen by an FNV-1a hash of the
	// aggregate id, so that each aggregate stays in one bucket; readers
	// query every bucket and merge. The original package reads only "t":
	// it does not see commits of a bucketed table. Every writer and reader
	// of a table must use the same value.
	IndexBuckets int
	// Clock returns the wall-clock time commit ids are made from. Default
	// time.Now. Commit ids from one Store never go backwards, even when the
	// clock does: a reading before the last one used is replaced by it.
	Clock func() time.Time
	// PageSize caps the items per Query page (DynamoDB's Limit). 0, the
	// default, lets DynamoDB fill each page up to 1 MB.
	PageSize int32
	// ConsumedCapacity, when set, asks DynamoDB for the capacity every call
	// consumes (ReturnConsumedCapacity INDEXES) and receives it. It may be
	// called from several goroutines at once. Default nil: not requested.
	ConsumedCapacity func(op Operation, cc types.ConsumedCapacity)
}

func (c Config) withDefaults() Config {
	if c.TableName == "" {
		c.TableName = DefaultTableName
	}
	if c.IndexName == "" {
		c.IndexName = DefaultIndexName
	}
	if c.IndexBuckets == 0 {
		c.IndexBuckets = 1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// MaxIndexBuckets is the largest Config.IndexBuckets.
const MaxIndexBuckets = 256

func (c Config) validate() error {
	switch {
	case c.IndexBuckets < 1 || c.IndexBuckets > MaxIndexBuckets:
		return &ConfigError{Field: "IndexBuckets", Value: c.IndexBuckets, Reason: fmt.Sprintf("want 1 to %d", MaxIndexBuckets)}
	case c.PageSize < 0:
		return &ConfigError{Field: "PageSize", Value: c.PageSize, Reason: "want 0 or more"}
	case len(c.TableName) < 3 || len(c.TableName) > 255:
		return &ConfigError{Field: "TableName", Value: c.TableName, Reason: "want 3 to 255 characters"}
	case len(c.IndexName) < 3 || len(c.IndexName) > 255:
		return &ConfigError{Field: "IndexName", Value: c.IndexName, Reason: "want 3 to 255 characters"}
	}
	return nil
}

// Buckets returns the index hash key values of a table with n buckets.
func Buckets(n int) []string {
	if n <= 1 {
		return []string{DefaultBucket}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = DefaultBucket + strconv.Itoa(i)
	}
	return out
}

// Store appends commits to a DynamoDB table and reads them back. It is safe
// for concurrent use.
type Store struct {
	api     API
	cfg     Config
	buckets []string

	putCond  expression.Expression
	capacity types.ReturnConsumedCapacity

	mu        sync.Mutex
	lastMilli int64
}

// New returns a Store that calls DynamoDB through api. An invalid cfg
// returns a *ConfigError naming the field, and a nil api an error; both
// match ErrInvalidArgument. It starts no goroutines and makes no calls.
func New(api API, cfg Config) (*Store, error) {
	if api == nil {
		return nil, fmt.Errorf("%w: nil API", ErrInvalidArgument)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cond, err := expression.NewBuilder().
		WithCondition(expression.AttributeNotExists(expression.Name(AttrVersion))).
		Build()
	if err != nil {
		return nil, fmt.Errorf("store: build condition: %w", err)
	}
	s := &Store{api: api, cfg: cfg, buckets: Buckets(cfg.IndexBuckets), putCond: cond, capacity: types.ReturnConsumedCapacityNone}
	if cfg.ConsumedCapacity != nil {
		s.capacity = types.ReturnConsumedCapacityIndexes
	}
	return s, nil
}

// Config returns the store's configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Buckets returns the index hash key values this store writes and reads.
func (s *Store) Buckets() []string { return append([]string(nil), s.buckets...) }

// Bucket returns the index hash key value of an aggregate's commits.
func (s *Store) Bucket(aggregateID string) string {
	if len(s.buckets) == 1 {
		return s.buckets[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(aggregateID))
	return s.buckets[h.Sum32()%uint32(len(s.buckets))]
}

// nextMilli returns the clock's reading in Unix milliseconds, never below the
// last one returned.
func (s *Store) nextMilli() int64 {
	now := s.cfg.Clock().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.lastMilli {
		now = s.lastMilli
	}
	s.lastMilli = now
	return now
}

// callErr returns err, from a DynamoDB call on the table, so that it also
// matches ErrTableNotFound, naming the table, when DynamoDB reports the table
// missing (a *types.ResourceNotFoundException, kept in the chain).
func (s *Store) callErr(err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: %s: %w", ErrTableNotFound, s.cfg.TableName, err)
	}
	return err
}

func (s *Store) reportCapacity(op Operation, cc *types.ConsumedCapacity) {
	if s.cfg.ConsumedCapacity != nil && cc != nil {
		s.cfg.ConsumedCapacity(op, *cc)
	}
}
