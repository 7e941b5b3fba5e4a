package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
)

// Sentinel errors. Every error the store returns for one of these conditions
// matches the sentinel with errors.Is; the typed errors below carry the facts.
var (
	// ErrVersionConflict: the aggregate already has a commit at that version.
	// Returned as a *VersionConflictError.
	ErrVersionConflict = errors.New("store: version conflict")

	// ErrInvalidCommit: a commit was rejected before any write. Returned as
	// an *InvalidCommitError, which also matches one of the Err… reasons
	// below.
	ErrInvalidCommit = errors.New("store: invalid commit")
	// ErrEmptyAggregateID: the aggregate id is empty.
	ErrEmptyAggregateID = errors.New("empty aggregate id")
	// ErrAggregateIDTooLong: the aggregate id is longer than
	// MaxAggregateIDBytes, so its commit id would exceed DynamoDB's 1,024-byte
	// limit on an index sort key.
	ErrAggregateIDTooLong = errors.New("aggregate id too long")
	// ErrAggregateIDNotUTF8: the aggregate id is not valid UTF-8.
	ErrAggregateIDNotUTF8 = errors.New("aggregate id is not valid UTF-8")
	// ErrNegativeVersion: the version is below zero.
	ErrNegativeVersion = errors.New("negative version")
	// ErrNoEvents: the events are missing or an empty JSON array.
	ErrNoEvents = errors.New("no events")
	// ErrEventsNotJSON: the events are not a valid JSON array.
	ErrEventsNotJSON = errors.New("events are not a JSON array")
	// ErrItemTooLarge: the commit's item exceeds DynamoDB's 400 KB limit.
	ErrItemTooLarge = errors.New("item too large")
	// ErrDuplicateCommit: AppendAll was given two commits for the same
	// aggregate and version.
	ErrDuplicateCommit = errors.New("duplicate commit in one transaction")

	// ErrTransactionTooLarge: AppendAll was given more commits or bytes than
	// one DynamoDB transaction takes (MaxTransactionCommits,
	// MaxTransactionBytes), or none.
	ErrTransactionTooLarge = errors.New("store: transaction too large")

	// ErrCorruptCommit: an item read from the table does not decode as a
	// commit. Returned as a *DecodeError.
	ErrCorruptCommit = errors.New("store: corrupt commit")

	// ErrInvalidArgument: a call was given an argument it cannot use: a
	// read an empty aggregate id, a negative version or an unknown bucket;
	// New a bad Config (returned as a *ConfigError); ParsePosition
	// malformed text.
	ErrInvalidArgument = errors.New("store: invalid argument")

	// ErrTableExists: CreateTable found the table already there.
	ErrTableExists = ddbtable.ErrExists
	// ErrTableNotFound: the table does not exist. Append, AppendAll, Query
	// and Scan return it, naming the table, for DynamoDB's
	// ResourceNotFoundException (which stays in the chain); so do
	// DescribeTable and DeleteTable.
	ErrTableNotFound = ddbtable.ErrNotFound
)

// ConfigError reports a Config field New cannot use. It matches
// ErrInvalidArgument.
type ConfigError struct {
	// Field is the Config field's name: "TableName", "IndexName",
	// "IndexBuckets" or "PageSize".
	Field string
	// Value is the field's value, with defaults filled in.
	Value any
	// Reason says what is wanted, e.g. "want 1 to 256".
	Reason string
}

func (e *ConfigError) Error() string {
	v := fmt.Sprint(e.Value)
	if s, ok := e.Value.(string); ok {
		v = strconv.Quote(s)
	}
	return fmt.Sprintf("%v: Config.%s %s: %s", ErrInvalidArgument, e.Field, v, e.Reason)
}

// Unwrap returns ErrInvalidArgument.
func (e *ConfigError) Unwrap() error { return ErrInvalidArgument }

// VersionConflictError reports that an aggregate already has a commit at the
// version an append asked for. It matches ErrVersionConflict.
type VersionConflictError struct {
	AggregateID string
	Version     int64
	// Index is the position of the conflicting commit in the AppendAll call,
	// or -1 for Append.
	Index int
	// Existing is the commit already stored at that version, when DynamoDB
	// returned it and it decodes; nil otherwise.
	Existing *Commit
}

func (e *VersionConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: version conflict: aggregate %q already has version %d", e.AggregateID, e.Version)
	if e.Index >= 0 {
		fmt.Fprintf(&b, " (commit %d of the transaction)", e.Index)
	}
	if e.Existing != nil {
		fmt.Fprintf(&b, ", written as %s", e.Existing.CommitID)
	}
	return b.String()
}

// Is reports whether target is ErrVersionConflict.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

// InvalidCommitError reports a commit rejected before any write. It matches
// ErrInvalidCommit and its Reason (ErrEmptyAggregateID, ErrNegativeVersion,
// ErrNoEvents, ErrEventsNotJSON, ErrItemTooLarge, …).
type InvalidCommitError struct {
	// Index is the commit's position in the AppendAll call, or -1 for Append.
	Index       int
	AggregateID string
	Version     int64
	// Reason is one of the Err… reasons above.
	Reason error
	// Detail says more, for example the item's size and the limit.
	Detail string
}

func (e *InvalidCommitError) Error() string {
	var b strings.Builder
	b.WriteString("store: invalid commit")
	if e.Index >= 0 {
		fmt.Fprintf(&b, " %d", e.Index)
	}
	if e.AggregateID != "" && e.Reason != ErrAggregateIDTooLong && e.Reason != ErrAggregateIDNotUTF8 {
		fmt.Fprintf(&b, " (aggregate %q version %d)", e.AggregateID, e.Version)
	} else {
		fmt.Fprintf(&b, " (version %d)", e.Version)
	}
	fmt.Fprintf(&b, ": %v", e.Reason)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns ErrInvalidCommit and the Reason.
func (e *InvalidCommitError) Unwrap() []error { return []error{ErrInvalidCommit, e.Reason} }

// DecodeError reports an item in the table that is not a well-formed commit,
// for example one written by another program or with corrupt JSON events. It
// names the item by its key. It matches ErrCorruptCommit.
type DecodeError struct {
	// AggregateID and Version are the item's table key as stored (Version
	// in DynamoDB's number notation); CommitID is its index key, if read
	// through the index.
	AggregateID string
	Version     string
	CommitID    string
	// Attribute names the attribute that failed to decode.
	Attribute string
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("store: corrupt commit aggregateId=%q version=%s commitId=%q: attribute %q: %v",
		e.AggregateID, e.Version, e.CommitID, e.Attribute, e.Err)
}

// Unwrap returns ErrCorruptCommit and the underlying cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrCorruptCommit, e.Err} }
