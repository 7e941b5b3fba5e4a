package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// Commit is what a handler receives: a stored commit with its aggregate id,
// version, commit id, commit time and raw events. Commit.DecodeEvents
// decodes the events.
type Commit = store.Commit

// Handler handles one commit at a time. Delivery is at least once: around a
// crash or a lost lease a commit may come again, so Handle should be
// idempotent; the commit's AggregateID and Version identify it. One
// aggregate's commits come in version order, never two at once; different
// aggregates may be handled concurrently.
//
// A nil error means done. Any other error is a failure, transient or
// permanent (see Classify): a transient one is retried under the
// subscription's RetryPolicy, until the commit passes its maximum record
// age; a permanent one is not retried. Then the subscription's Policy
// applies. Skip, Permanent, Transient and RetryAfter steer that.
type Handler interface {
	Handle(ctx context.Context, c Commit) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c Commit) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, c Commit) error { return f(ctx, c) }

// BatchHandler handles consecutive commits of one aggregate at once, in
// version order (read models often write faster in batches). The same
// at-least-once and ordering rules as Handler's apply. To say that the
// commits before the i-th were handled and the i-th failed, return a
// *BatchError; any other error counts as a failure of the first commit.
type BatchHandler interface {
	HandleBatch(ctx context.Context, commits []Commit) error
}

// BatchHandlerFunc adapts a function to BatchHandler.
type BatchHandlerFunc func(ctx context.Context, commits []Commit) error

// HandleBatch calls f.
func (f BatchHandlerFunc) HandleBatch(ctx context.Context, commits []Commit) error {
	return f(ctx, commits)
}

// Middleware wraps a Handler. Middleware given to a Subscription apply in
// order: the first is the outermost, so it sees each commit first and each
// result last.
type Middleware func(next Handler) Handler

// BatchError reports that a batch failed at commit Index: the commits before
// it were handled.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("commit %d of the batch: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *BatchError) Unwrap() error { return e.Err }

// skipError marks an error as "skip this commit".
type skipError struct{ err error }

func (e *skipError) Error() string { return "skip: " + e.err.Error() }
func (e *skipError) Unwrap() error { return e.err }

// Skip returns an error that tells the worker to skip the commit at once,
// without retrying and whatever the subscription's Policy: the skip is
// counted and logged. err says why; nil is allowed.
func Skip(err error) error {
	if err == nil {
		err = errors.New("skipped by the handler")
	}
	return &skipError{err}
}

// retryAfterError asks for a retry after a delay.
type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %v: %v", e.after, e.err)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter returns an error that tells the worker to retry the commit after
// d instead of the backoff it would choose: a transient failure. The
// attempt still counts against the RetryPolicy's limits.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested by the handler")
	}
	return &retryAfterError{after: d, err: err}
}

// permanentError marks an error as permanent.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent returns an error that tells the worker that the commit will
// never be handled, however often it is tried (the handler refuses it, or
// cannot decode it): it is not retried, and the subscription's Policy
// applies at once (PolicyPark parks it after this one attempt). err says
// why; nil is allowed.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("refused by the handler")
	}
	return &permanentError{err}
}

// transientError marks an error as transient.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Transient returns an error that tells the worker to retry the commit,
// whatever err wraps: use it for an error Classify would take as
// permanent (a JSON error from something other than the commit's events).
// err says why; nil is allowed.
func Transient(err error) error {
	if err == nil {
		err = errors.New("retry requested by the handler")
	}
	return &transientError{err}
}

// Failure is the class of a handler's error (see Classify).
type Failure int

const (
	// FailureTransient: retried with backoff until the commit passes its
	// maximum record age (RetryPolicy.MaxRecordAge).
	FailureTransient Failure = iota
	// FailurePermanent: not retried; the subscription's Policy applies at
	// once.
	FailurePermanent
	// FailureSkip: the commit is skipped at once (Skip).
	FailureSkip
)

func (f Failure) String() string {
	switch f {
	case FailureTransient:
		return "transient"
	case FailurePermanent:
		return "permanent"
	case FailureSkip:
		return "skip"
	}
	return fmt.Sprintf("Failure(%d)", int(f))
}

// Classify tells how the worker treats a handler's error, the outermost
// marker first:
//
//   - Skip: FailureSkip.
//   - Permanent: FailurePermanent.
//   - Transient and RetryAfter: FailureTransient.
//   - An error that says the commit cannot be decoded (it wraps
//     store.ErrCorruptCommit, a *json.SyntaxError or a
//     *json.UnmarshalTypeError, as Commit.DecodeEvents' errors do):
//     FailurePermanent, since the same bytes fail the same way.
//   - Any other error, a panic and the attempt timeout included:
//     FailureTransient. An unclassified error is retried because that is
//     the safe choice for at-least-once delivery; the maximum record age
//     bounds it.
//
// A nil error is FailureTransient too; the worker never asks.
func Classify(err error) Failure {
	for e := err; e != nil; {
		switch e.(type) {
		case *skipError:
			return FailureSkip
		case *permanentError:
			return FailurePermanent
		case *transientError, *retryAfterError:
			return FailureTransient
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	var skip *skipError
	var perm *permanentError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &skip):
		return FailureSkip
	case errors.As(err, &perm):
		return FailurePermanent
	case errors.Is(err, store.ErrCorruptCommit), errors.As(err, &syntax), errors.As(err, &typ):
		return FailurePermanent
	}
	return FailureTransient
}

// batchOf adapts a Handler, with its middleware applied, to a BatchHandler
// that stops at the first failure.
func batchOf(h Handler, mw []Middleware) BatchHandler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return BatchHandlerFunc(func(ctx context.Context, commits []Commit) error {
		for i, c := range commits {
			if err := h.Handle(ctx, c); err != nil {
				return &BatchError{Index: i, Err: err}
			}
		}
		return nil
	})
}
