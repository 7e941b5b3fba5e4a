package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// ErrVersionTooLarge: the version is above MaxVersion.
	ErrVersionTooLarge = errors.New("version too large")
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
// ErrVersionTooLarge, ErrNoEvents, ErrEventsNotJSON, ErrItemTooLarge, …).
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

// MaxVersion is the largest version a commit may have: 2^53−1, the largest
// integer the original package (JavaScript, whose numbers are doubles) reads
// exactly. Append and AppendAll refuse a larger one (ErrVersionTooLarge);
// reads report an item with one as corrupt (KindBadVersion).
const MaxVersion = 1<<53 - 1

// MaxCommitIDAhead is how far a commit id's time may lie after the reader's
// clock: further is KindFutureCommitID. Writers' clocks differ by
// milliseconds under NTP; an hour allows for a badly set clock without
// letting one a year ahead pass (a subscription's index source would hold
// such a commit back until its time).
const MaxCommitIDAhead = time.Hour

// CorruptKind says why an item is not a well-formed commit (DecodeError.Kind).
// Its values are stable: they label metrics and logs (see docs/items.md).
type CorruptKind string

// The kinds of corrupt items.
const (
	// KindBadAggregateID: aggregateId is missing or not a non-empty string
	// (only an item not read from the table can lack its key).
	KindBadAggregateID CorruptKind = "bad-aggregate-id"
	// KindBadVersion: version is not an integer from 0 to MaxVersion.
	KindBadVersion CorruptKind = "bad-version"
	// KindMissingCommitID: commitId is missing or not a non-empty string.
	// Such an item is not in the commit-order index.
	KindMissingCommitID CorruptKind = "missing-commit-id"
	// KindMalformedCommitID: commitId is not YYYYMMDDHHmmssSSS:aggregateId
	// with a valid UTC time.
	KindMalformedCommitID CorruptKind = "malformed-commit-id"
	// KindForeignCommitID: commitId names another aggregate than the item's.
	KindForeignCommitID CorruptKind = "foreign-commit-id"
	// KindFutureCommitID: commitId's time lies more than MaxCommitIDAhead
	// after the reader's clock.
	KindFutureCommitID CorruptKind = "future-commit-id"
	// KindBadCommittedAt: committedAt is missing or not an integer.
	KindBadCommittedAt CorruptKind = "bad-committed-at"
	// KindEventsNotArray: events is missing, not a string, or not a JSON
	// array.
	KindEventsNotArray CorruptKind = "events-not-array"
)

// CorruptKinds lists every CorruptKind, in the order DecodeItemAt checks
// them.
var CorruptKinds = []CorruptKind{KindBadAggregateID, KindBadVersion, KindMissingCommitID, KindMalformedCommitID,
	KindForeignCommitID, KindFutureCommitID, KindBadCommittedAt, KindEventsNotArray}

// DecodeError reports an item in the table that is not a well-formed commit,
// for example one written by another program or with corrupt JSON events. It
// names the item by its key and says why (Kind). It matches ErrCorruptCommit.
type DecodeError struct {
	// AggregateID and Version are the item's table key as stored (Version
	// in DynamoDB's number notation); CommitID is its index key, if read
	// through the index.
	AggregateID string
	Version     string
	CommitID    string
	// Attribute names the attribute that failed to decode.
	Attribute string
	// Kind says why the item is not a well-formed commit.
	Kind CorruptKind
	Err  error
	// Commit holds what could be read of the item, each attribute as
	// stored (Events as the string it is, JSON or not; Version only when it
	// is an integer of int64's range, else 0): what a subscription parks of
	// it.
	Commit Commit
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("store: corrupt commit (%s) aggregateId=%q version=%s commitId=%q: attribute %q: %v",
		e.Kind, e.AggregateID, e.Version, e.CommitID, e.Attribute, e.Err)
}

// Unwrap returns ErrCorruptCommit and the underlying cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrCorruptCommit, e.Err} }
