package checkpoint

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error an implementation returns for one of these
// conditions matches the sentinel with errors.Is; the typed errors below
// carry the facts.
var (
	// ErrFenced: Save, Release or Renew presented an owner or lease that no
	// longer holds the key; Take a lease counter that moved, or a holder
	// that renewed its lease since it was seen; Delete a lease counter
	// that moved. Returned as a *FencedError.
	ErrFenced = errors.New("checkpoint: fenced")
	// ErrNotFound: the key has no checkpoint.
	ErrNotFound = errors.New("checkpoint: not found")
	// ErrHeld: Set without force or Delete found the key held by a live
	// owner (see Checkpoint.Live). Returned as a *HeldError.
	ErrHeld = errors.New("checkpoint: held")
	// ErrInvalidArgument: input was rejected before any call or write (an
	// empty subscription, an empty owner, a negative version, …).
	ErrInvalidArgument = errors.New("checkpoint: invalid argument")
)

// FencedError reports that a Save, Release or Renew presented an owner and
// lease that no longer hold the key, that a Take or Delete presented a
// lease counter the key no longer has, or that a Take found the holder it
// saw renewed since (then Owner is that holder and Lease equals
// PresentedLease). It matches ErrFenced.
type FencedError struct {
	Key Key
	// Owner and Lease are the key's current holder ("" if none) and lease
	// counter.
	Owner string
	Lease int64
	// PresentedOwner and PresentedLease are what the caller presented: for
	// Take, the owner to be and seen.Lease; for Delete, cp.Owner and
	// cp.Lease.
	PresentedOwner string
	PresentedLease int64
}

func (e *FencedError) Error() string {
	holder := "no owner"
	if e.Owner != "" {
		holder = fmt.Sprintf("owner %q", e.Owner)
	}
	return fmt.Sprintf("checkpoint: fenced: %s is held by %s at lease %d, not by %q at lease %d",
		e.Key, holder, e.Lease, e.PresentedOwner, e.PresentedLease)
}

// Is reports whether target is ErrFenced.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// HeldError reports that Set without force or Delete found the key held
// by a live owner. It matches ErrHeld.
type HeldError struct {
	Key Key
	// Owner is the key's current holder.
	Owner string
	// Expires is when the holder's lease ends unless renewed, in UTC at
	// millisecond precision; zero for a holder by Claim, which does not
	// expire.
	Expires time.Time
}

func (e *HeldError) Error() string {
	if e.Expires.IsZero() {
		return fmt.Sprintf("checkpoint: held: %s is held by owner %q", e.Key, e.Owner)
	}
	return fmt.Sprintf("checkpoint: held: %s is held by owner %q under a lease ending %s unless renewed",
		e.Key, e.Owner, e.Expires.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// Is reports whether target is ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }
