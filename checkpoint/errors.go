package checkpoint

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error an implementation returns for one of these
// conditions matches the sentinel with errors.Is; the typed errors below
// carry the facts.
var (
	// ErrFenced: Save or Release presented an owner or lease that no longer
	// holds the key. Returned as a *FencedError.
	ErrFenced = errors.New("checkpoint: fenced")
	// ErrNotFound: the key has no checkpoint.
	ErrNotFound = errors.New("checkpoint: not found")
	// ErrHeld: Set without force found the key held by an owner. Returned
	// as a *HeldError.
	ErrHeld = errors.New("checkpoint: held")
	// ErrInvalidArgument: input was rejected before any call or write (an
	// empty subscription, an empty owner, a negative version, …).
	ErrInvalidArgument = errors.New("checkpoint: invalid argument")
)

// FencedError reports that a Save or Release presented an owner and lease
// that no longer hold the key. It matches ErrFenced.
type FencedError struct {
	Key Key
	// Owner and Lease are the key's current holder ("" if none) and lease
	// counter.
	Owner string
	Lease int64
	// PresentedOwner and PresentedLease are what the caller presented.
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

// HeldError reports that Set without force found the key held. It matches
// ErrHeld.
type HeldError struct {
	Key Key
	// Owner is the key's current holder.
	Owner string
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("checkpoint: held: %s is held by owner %q (force to overwrite)", e.Key, e.Owner)
}

// Is reports whether target is ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }
