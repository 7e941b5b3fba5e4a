package input

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{checkpoint.ErrInvalidArgument}, args...)...)
}

// name checks a subscription, unit or owner: valid UTF-8 of at most
// checkpoint.MaxNameBytes bytes, and non-empty when required.
func name(what, s string, required bool) error {
	switch {
	case s == "" && required:
		return invalid("empty %s", what)
	case len(s) > checkpoint.MaxNameBytes:
		return invalid("%s is %d bytes, limit %d", what, len(s), checkpoint.MaxNameBytes)
	case !utf8.ValidString(s):
		return invalid("%s %q is not valid UTF-8", what, s)
	}
	return nil
}

// Subscription checks a subscription name.
func Subscription(s string) error { return name("subscription", s, true) }

// Key checks a key: a subscription, and a unit that may be empty.
func Key(k checkpoint.Key) error {
	if err := Subscription(k.Subscription); err != nil {
		return err
	}
	return name("unit", k.Unit, false)
}

// Owner checks an owner given to Claim.
func Owner(owner string) error { return name("owner", owner, true) }

// Position checks a position given to Save or Set.
func Position(p string) error {
	switch {
	case len(p) > checkpoint.MaxPositionBytes:
		return invalid("position is %d bytes, limit %d", len(p), checkpoint.MaxPositionBytes)
	case !utf8.ValidString(p):
		return invalid("position is not valid UTF-8")
	}
	return nil
}

// Held checks a checkpoint presented to Save or Release: a valid key and
// owner, a lease from 1 (see Holder) and a valid position.
func Held(cp checkpoint.Checkpoint) error {
	if err := Holder(cp); err != nil {
		return err
	}
	return Position(cp.Position)
}

// Holder checks the holder a checkpoint presents to Renew: a valid key and
// owner and a lease from 1. The position is not checked.
func Holder(cp checkpoint.Checkpoint) error {
	if err := Key(cp.Key); err != nil {
		return err
	}
	if err := Owner(cp.Owner); err != nil {
		return err
	}
	if cp.Lease < 1 {
		return invalid("%s: lease %d: want the lease Claim or Take returned (1 or more)", cp.Key, cp.Lease)
	}
	return nil
}

// Seen checks the lease counter presented to Take: 0 (a key with no
// checkpoint) or more.
func Seen(key checkpoint.Key, lease int64) error {
	if lease < 0 {
		return invalid("%s: seen lease %d: want the counter last read (0 for a key with no checkpoint)", key, lease)
	}
	return nil
}

// LeaseDuration checks the duration of a lease given to Take or Renew: one
// millisecond or more.
func LeaseDuration(d time.Duration) error {
	if d < time.Millisecond {
		return invalid("lease duration %v: want 1ms or more", d)
	}
	return nil
}

// Expires returns when a lease of d taken at now ends, as the stores keep
// it: in UTC at millisecond precision.
func Expires(now time.Time, d time.Duration) time.Time { return Millis(now.Add(d)) }

// AggregateID checks an aggregate id: non-empty valid UTF-8 of at most
// store.MaxAggregateIDBytes bytes.
func AggregateID(id string) error {
	switch {
	case id == "":
		return invalid("empty aggregate id")
	case len(id) > store.MaxAggregateIDBytes:
		return invalid("aggregate id is %d bytes, limit %d", len(id), store.MaxAggregateIDBytes)
	case !utf8.ValidString(id):
		return invalid("aggregate id %q is not valid UTF-8", id)
	}
	return nil
}

// Version checks a commit version.
func Version(v int64) error {
	if v < 0 {
		return invalid("negative version %d", v)
	}
	return nil
}

// ParkedKey checks the arguments of Unpark.
func ParkedKey(subscription, aggregateID string, version int64) error {
	if err := Subscription(subscription); err != nil {
		return err
	}
	if err := AggregateID(aggregateID); err != nil {
		return err
	}
	return Version(version)
}

// ParkedFilter checks the arguments of Parked: a subscription, and an
// aggregate id that may be empty (all aggregates).
func ParkedFilter(subscription, aggregateID string) error {
	if err := Subscription(subscription); err != nil {
		return err
	}
	if aggregateID == "" {
		return nil
	}
	return AggregateID(aggregateID)
}

// Parked checks a commit given to Park and returns it as it is to be stored:
// Reason made valid UTF-8 and cut to checkpoint.MaxReasonBytes, ParkedAt set
// to now() when zero, and ParkedAt in UTC at millisecond precision.
func Parked(p checkpoint.Parked, now func() time.Time) (checkpoint.Parked, error) {
	if err := ParkedKey(p.Subscription, p.Commit.AggregateID, p.Commit.Version); err != nil {
		return checkpoint.Parked{}, err
	}
	if p.Attempts < 0 {
		return checkpoint.Parked{}, invalid("negative attempts %d", p.Attempts)
	}
	p.Reason = Reason(p.Reason)
	if p.ParkedAt.IsZero() {
		p.ParkedAt = now()
	}
	p.ParkedAt = Millis(p.ParkedAt)
	return p, nil
}

// Reason returns s as valid UTF-8 of at most checkpoint.MaxReasonBytes
// bytes, cut at a character boundary.
func Reason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= checkpoint.MaxReasonBytes {
		return s
	}
	cut := checkpoint.MaxReasonBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Millis returns t in UTC truncated to the millisecond, as the stores keep
// times.
func Millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// RequestKey checks the subscription and aggregate id of a request.
func RequestKey(subscription, aggregateID string) error {
	if err := Subscription(subscription); err != nil {
		return err
	}
	return AggregateID(aggregateID)
}

// RequestID checks a request id: valid UTF-8 of at most
// checkpoint.MaxNameBytes bytes, non-empty when required.
func RequestID(id string, required bool) error { return name("request id", id, required) }

// Requests checks the argument of Requests: "" (every subscription) or a
// subscription.
func Requests(subscription string) error {
	if subscription == "" {
		return nil
	}
	return Subscription(subscription)
}

// Request checks a request given to RequestStore.Request and returns it as
// it is to be stored: ID set to newID() when empty, RequestedAt set to
// now() when zero and kept in UTC at millisecond precision, and Done,
// Result, Handled and CompletedAt cleared (a new request is not done).
func Request(r checkpoint.Request, now func() time.Time, newID func() string) (checkpoint.Request, error) {
	if err := RequestKey(r.Subscription, r.AggregateID); err != nil {
		return checkpoint.Request{}, err
	}
	switch r.Kind {
	case checkpoint.RequestReplay, checkpoint.RequestDiscard:
	default:
		return checkpoint.Request{}, invalid("request kind %q: want %q or %q", r.Kind, checkpoint.RequestReplay, checkpoint.RequestDiscard)
	}
	if err := RequestID(r.ID, false); err != nil {
		return checkpoint.Request{}, err
	}
	if r.ID == "" {
		r.ID = newID()
	}
	if r.RequestedAt.IsZero() {
		r.RequestedAt = now()
	}
	r.RequestedAt = Millis(r.RequestedAt)
	r.Done, r.Result, r.Handled, r.CompletedAt = false, "", 0, time.Time{}
	return r, nil
}

// Completion checks a request given to RequestStore.Complete and returns it
// with Result made valid UTF-8 and cut to checkpoint.MaxReasonBytes.
func Completion(r checkpoint.Request) (checkpoint.Request, error) {
	if err := RequestKey(r.Subscription, r.AggregateID); err != nil {
		return checkpoint.Request{}, err
	}
	if err := RequestID(r.ID, true); err != nil {
		return checkpoint.Request{}, err
	}
	if r.Handled < 0 {
		return checkpoint.Request{}, invalid("negative handled count %d", r.Handled)
	}
	r.Result = Reason(r.Result)
	return r, nil
}

// NewRequestID returns a new random request id: 32 hexadecimal digits.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
