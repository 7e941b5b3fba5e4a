package checkpoint

import (
	"context"
	"iter"
	"strconv"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// Limits every implementation enforces, so that they accept the same input.
// Input beyond them is rejected with an error matching ErrInvalidArgument
// before anything is written.
const (
	// MaxNameBytes is the longest Key.Subscription, Key.Unit and owner, in
	// bytes of UTF-8.
	MaxNameBytes = 1000
	// MaxPositionBytes is the longest Position, in bytes.
	MaxPositionBytes = 256 * 1024
	// MaxReasonBytes is the longest Parked.Reason stored: a longer reason is
	// cut to it (at a character boundary), not rejected.
	MaxReasonBytes = 4 * 1024
)

// Key names one unit of a subscription's work. Unit is "" for a whole
// subscription; later, a bucket or a stream shard.
//
// Subscription must be non-empty; both fields must be valid UTF-8 of at most
// MaxNameBytes bytes.
type Key struct {
	Subscription, Unit string
}

// String returns the key for messages: the quoted subscription, followed by
// "/" and the quoted unit when Unit is not empty, e.g. "orders"/"bucket-3".
func (k Key) String() string {
	if k.Unit == "" {
		return strconv.Quote(k.Subscription)
	}
	return strconv.Quote(k.Subscription) + "/" + strconv.Quote(k.Unit)
}

// Checkpoint is a key's saved state.
type Checkpoint struct {
	Key
	// Position is opaque, the source's encoding; "" when nothing was saved
	// yet. At most MaxPositionBytes of valid UTF-8.
	Position string
	// Owner is the process that holds the key; "" when none does (never
	// claimed, released, or moved by Setter.Set).
	Owner string
	// Lease is the fencing token: incremented by every Claim (and every
	// Set); Save must present the current one. It is 1 after a key's first
	// Claim or Set.
	Lease int64
	// UpdatedAt is when Position was last saved or set, in UTC at
	// millisecond precision; zero if never.
	UpdatedAt time.Time
}

// Store keeps checkpoints. Implementations are safe for concurrent use, and
// each method is atomic: concurrent calls on one key behave as if made one
// after the other.
type Store interface {
	// Claim makes owner the holder of key: it increments the key's lease
	// counter (creating the key, with an empty Position, if it has none)
	// and returns the checkpoint with the new counter. Any earlier holder's
	// later Save fails with ErrFenced. An invalid key or an empty owner
	// returns an error matching ErrInvalidArgument.
	Claim(ctx context.Context, key Key, owner string) (Checkpoint, error)
	// Save stores cp.Position for cp.Key if cp.Owner still holds it at lease
	// cp.Lease, and sets UpdatedAt to the store's clock; otherwise it
	// returns a *FencedError (errors.Is ErrFenced) naming the current owner
	// and lease, or an error matching ErrNotFound if the key has no
	// checkpoint. An invalid key, an empty owner, a lease below 1 or a
	// position that is not valid UTF-8 or longer than MaxPositionBytes
	// returns an error matching ErrInvalidArgument.
	Save(ctx context.Context, cp Checkpoint) error
	// Load returns key's checkpoint, or an error matching ErrNotFound. An
	// invalid key returns an error matching ErrInvalidArgument.
	Load(ctx context.Context, key Key) (Checkpoint, error)
}

// Lister is an optional ability of a Store (found by type assertion): every
// checkpoint, of one subscription or (subscription "") of all, ordered by
// subscription then unit (byte order).
//
// The sequence streams. An error that concerns one checkpoint (a stored
// record that does not decode) is yielded and the sequence goes on if the
// loop continues; any other error (ErrInvalidArgument, a failed call) is
// yielded once and ends it.
type Lister interface {
	List(ctx context.Context, subscription string) iter.Seq2[Checkpoint, error]
}

// Setter is an optional ability of a Store for operators.
type Setter interface {
	// Set overwrites key's Position whoever holds it, but only if force is
	// true or no owner holds it (Owner ""); otherwise it returns a
	// *HeldError (errors.Is ErrHeld) naming the owner. It creates the key
	// if it has no checkpoint, increments the lease counter, so that a live
	// holder's next Save is fenced, leaves the key with no owner, sets
	// UpdatedAt, and returns the new checkpoint. Errors for invalid input
	// are those of Save.
	Set(ctx context.Context, key Key, position string, force bool) (Checkpoint, error)
	// Release clears the key's Owner if cp.Owner still holds it at lease
	// cp.Lease (for a clean shutdown), so that another process may Claim it
	// and an operator may Set it without force. The position and the lease
	// counter are unchanged. Otherwise it returns a *FencedError or an
	// error matching ErrNotFound, as Save does.
	Release(ctx context.Context, cp Checkpoint) error
}

// Parked is a commit a subscription set aside.
type Parked struct {
	// Subscription is the subscription that parked the commit. Non-empty
	// valid UTF-8 of at most MaxNameBytes bytes.
	Subscription string
	// Commit is the commit, as read. Its AggregateID must be non-empty
	// valid UTF-8 of at most store.MaxAggregateIDBytes bytes and its
	// Version 0 or more; the other fields are stored as given.
	Commit store.Commit
	// Reason is the last error's text. Park stores it as valid UTF-8 (an
	// invalid byte becomes U+FFFD) of at most MaxReasonBytes bytes, cut at
	// a character boundary.
	Reason string
	// Attempts is how many times the handler was called; 0 or more.
	Attempts int
	// ParkedAt is when the commit was parked, stored in UTC at millisecond
	// precision. Zero means now, by the store's clock.
	ParkedAt time.Time
}

// ParkStore keeps parked commits durably, per subscription and aggregate, in
// version order. Implementations are safe for concurrent use.
type ParkStore interface {
	// Park stores p. Parking the same (subscription, aggregate, version)
	// again overwrites it (idempotent). Invalid input (see Parked) returns
	// an error matching ErrInvalidArgument before any write.
	Park(ctx context.Context, p Parked) error
	// Parked lists parked commits of a subscription, of one aggregate
	// (aggregateID != "") or of all, ordered by aggregate id (byte order)
	// then version ascending; it streams and reads every page. Errors are
	// yielded as Lister's are.
	Parked(ctx context.Context, subscription, aggregateID string) iter.Seq2[Parked, error]
	// Unpark removes one parked commit; removing one that is not there is
	// not an error. An empty subscription or aggregate id or a negative
	// version returns an error matching ErrInvalidArgument.
	Unpark(ctx context.Context, subscription, aggregateID string, version int64) error
}
