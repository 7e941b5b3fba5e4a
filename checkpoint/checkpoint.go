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
	// claimed, released, or moved by Setter.Set). An owner whose lease has
	// expired (see Expires and Live) is still named here until the key is
	// taken, claimed, released or set.
	Owner string
	// Lease is the fencing token: incremented by every Claim, Take
	// (Leaser) and Set; Save must present the current one. It is 1 after
	// a key's first Claim, Take or Set.
	Lease int64
	// UpdatedAt is when Position was last saved or set, in UTC at
	// millisecond precision; zero if never.
	UpdatedAt time.Time
	// Expires is when the owner's lease ends unless renewed (Leaser), in
	// UTC at millisecond precision; zero when the key is not held under a
	// lease (no owner, or held by Claim, which does not expire).
	Expires time.Time
}

// Live reports whether cp is held by an owner whose lease has not expired
// at now: an owner, and Expires zero (Claim) or after now.
func (cp Checkpoint) Live(now time.Time) bool {
	return cp.Owner != "" && (cp.Expires.IsZero() || cp.Expires.After(now))
}

// Store keeps checkpoints. Implementations are safe for concurrent use, and
// each method is atomic: concurrent calls on one key behave as if made one
// after the other.
type Store interface {
	// Claim makes owner the holder of key: it increments the key's lease
	// counter (creating the key, with an empty Position, if it has none)
	// and returns the checkpoint with the new counter. Any earlier holder's
	// later Save fails with ErrFenced. Claim clears Expires: a key held by
	// Claim does not expire. An invalid key or an empty owner returns an
	// error matching ErrInvalidArgument.
	Claim(ctx context.Context, key Key, owner string) (Checkpoint, error)
	// Save stores cp.Position for cp.Key if cp.Owner still holds it at lease
	// cp.Lease, and sets UpdatedAt to the store's clock (Owner, Lease and
	// Expires are unchanged); otherwise it returns a *FencedError
	// (errors.Is ErrFenced) naming the current owner and lease, or an error
	// matching ErrNotFound if the key has no checkpoint. An invalid key, an
	// empty owner, a lease below 1 or a position that is not valid UTF-8 or
	// longer than MaxPositionBytes returns an error matching
	// ErrInvalidArgument.
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
	// true or no live holder holds it: no owner, or an owner whose lease
	// has expired (Checkpoint.Live is false at the store's clock; a holder
	// by Claim never expires). Otherwise it returns a *HeldError (errors.Is
	// ErrHeld) naming the owner and its lease's Expires. It creates the key
	// if it has no checkpoint, increments the lease counter, so that the
	// holder's next Save (and Renew) is fenced, leaves the key with no owner
	// and no Expires, sets UpdatedAt, and returns the new checkpoint. Errors
	// for invalid input are those of Save.
	Set(ctx context.Context, key Key, position string, force bool) (Checkpoint, error)
	// Release clears the key's Owner and Expires if cp.Owner still holds it
	// at lease cp.Lease (for a clean shutdown), so that another process may
	// Claim or Take it and an operator may Set it without force. The
	// position and the lease counter are unchanged. Otherwise it returns a
	// *FencedError or an error matching ErrNotFound, as Save does.
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

// RequestKind says what a Request asks of the worker that runs a
// subscription.
type RequestKind string

// Request kinds.
const (
	// RequestReplay asks for an aggregate's parked commits to be handled
	// again, in version order (subscribe.Worker.Replay).
	RequestReplay RequestKind = "replay"
	// RequestDiscard asks for an aggregate's parked commits to be dropped
	// unhandled, so that its later commits are handled again.
	RequestDiscard RequestKind = "discard"
)

// Request is an operator's request to the worker that runs a subscription,
// about one aggregate's parked commits. Operators write it from another
// process (eventstore parked replay); the worker polls for it, carries it
// out in the aggregate's turn, and marks it done.
type Request struct {
	// Subscription and AggregateID name the parked aggregate: non-empty
	// valid UTF-8 of at most MaxNameBytes and store.MaxAggregateIDBytes
	// bytes.
	Subscription, AggregateID string
	// Kind is RequestReplay or RequestDiscard.
	Kind RequestKind
	// ID tells one request from a later one for the same aggregate; the
	// store sets it when empty. At most MaxNameBytes bytes.
	ID string
	// RequestedAt is when the request was made, in UTC at millisecond
	// precision; zero means now by the store's clock.
	RequestedAt time.Time
	// Done is set by Complete: the worker carried the request out.
	Done bool
	// Result is what the worker reports: "" for success, else the error
	// that stopped it (at most MaxReasonBytes, cut as Parked.Reason is).
	Result string
	// Handled is how many parked commits the worker replayed or discarded.
	Handled int
	// CompletedAt is when Complete was called, by the store's clock.
	CompletedAt time.Time
}

// RequestStore keeps operators' requests, one per subscription and
// aggregate: a newer request for the same aggregate replaces an older one.
// It is an optional ability of a ParkStore (found by type assertion).
// Implementations are safe for concurrent use.
type RequestStore interface {
	// Request stores r, replacing any request for the same subscription
	// and aggregate, and returns it with ID and RequestedAt set. Invalid
	// input (see Request, and a Kind other than the two) returns an error
	// matching ErrInvalidArgument before any write.
	Request(ctx context.Context, r Request) (Request, error)
	// Requests lists the requests of a subscription (or of all, for ""),
	// done or not, ordered by subscription then aggregate id (byte order).
	// Errors are yielded as Lister's are.
	Requests(ctx context.Context, subscription string) iter.Seq2[Request, error]
	// Complete marks the request r.ID done with r.Result and r.Handled,
	// if it is still the aggregate's request; otherwise (replaced, or
	// deleted) it returns an error matching ErrNotFound and changes
	// nothing.
	Complete(ctx context.Context, r Request) error
	// DeleteRequest removes the request id of an aggregate; removing one
	// that is not there (or was replaced by another id) is not an error and
	// changes nothing.
	DeleteRequest(ctx context.Context, subscription, aggregateID, id string) error
}

// Leaser is an optional ability of a Store (found by type assertion):
// leases that expire, so that several processes share a subscription's
// units of work and take over those of a process that died. The store
// decides races by the lease counter and, for a Take of a key seen held,
// by the holder's Expires as seen; whether a lease has expired is for the
// caller to judge from Expires and its own clock (hosts' clocks must agree
// to well within a lease's duration).
type Leaser interface {
	// Take makes owner the holder of key for d from the store's clock, if
	// the key is still as the caller saw it: its lease counter is still
	// seen.Lease (0 for a key that has no checkpoint yet) and, when
	// seen.Owner is not "" and the key still has an owner, that owner is
	// seen.Owner with Expires equal to seen.Expires (compared at
	// millisecond precision; zero for a holder by Claim). Take then
	// increments the counter (fencing any earlier holder's Save and
	// Renew), sets Owner and Expires, keeps Position, and returns the new
	// checkpoint. The caller takes a free key (Owner ""), an expired one,
	// or steals a live one to balance the load; a key released since it
	// was seen is free and is taken. When the counter moved meanwhile, or
	// the holder renewed its lease since it was seen (Expires moved, so
	// that a steal never wins over a renewal it did not see), it returns a
	// *FencedError naming the current owner and lease (errors.Is
	// ErrFenced; no owner and lease 0 for a key that has no checkpoint)
	// and changes nothing. With seen.Owner "" the counter alone decides,
	// as it does for seen.Lease 0. An invalid key, an empty owner, a
	// negative seen.Lease or a d below one millisecond returns an error
	// matching ErrInvalidArgument.
	Take(ctx context.Context, key Key, owner string, seen Checkpoint, d time.Duration) (Checkpoint, error)
	// Renew extends cp's lease to d from the store's clock if cp.Owner
	// still holds cp.Key at lease cp.Lease, and returns the checkpoint as
	// stored, with the new Expires (the counter is unchanged). Otherwise it
	// returns a *FencedError, or an error matching ErrNotFound if the key
	// has no checkpoint. Invalid input returns an error matching
	// ErrInvalidArgument.
	Renew(ctx context.Context, cp Checkpoint, d time.Duration) (Checkpoint, error)
}

// Deleter is an optional ability of a Store (found by type assertion):
// removing a unit's checkpoint that is no longer needed (a stream shard
// read to its end, whose children have started). Only the checkpoint is
// removed: the subscription's parked commits and operators' requests are
// other records and stay.
type Deleter interface {
	// Delete removes cp.Key's checkpoint if its lease counter is still
	// cp.Lease and no live holder holds it: no owner, or an owner whose
	// lease has expired (Checkpoint.Live is false at the store's clock; a
	// holder by Claim never expires). A holder that wants its own key gone
	// releases it first (Setter.Release keeps the counter), then deletes
	// it at the same counter. cp.Position, cp.Owner and the times are not
	// compared.
	//
	// The checks are made atomically with the removal, in this order: a
	// key with no checkpoint returns an error matching ErrNotFound; a
	// counter other than cp.Lease returns a *FencedError (errors.Is
	// ErrFenced) naming the current owner and lease, with cp.Owner and
	// cp.Lease as presented; a live holder returns a *HeldError (errors.Is
	// ErrHeld) naming the owner and its lease's Expires, as Setter.Set
	// without force does. Each of these changes nothing. Once deleted, the
	// key is as if it never had a checkpoint: Load returns ErrNotFound,
	// List skips it, an earlier holder's Save, Release and Renew return
	// ErrNotFound, and Claim, Setter.Set or Leaser.Take with seen.Lease 0
	// create it again from counter 0. The counter restarting, a Checkpoint
	// from before the deletion may match a new one: delete only a key that
	// no process goes on using.
	//
	// An invalid key or a negative cp.Lease returns an error matching
	// ErrInvalidArgument.
	Delete(ctx context.Context, cp Checkpoint) error
}
