package subscribe

import (
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The hook interfaces. A value in Config.Hooks implements any of them; the
// worker finds which by type assertion when it is created. Hooks are called
// synchronously from the worker's goroutines: they must be quick and safe
// for concurrent use. sub is always the subscription's name.

// HookHandled observes each call of a handler that succeeded or failed:
// commits is how many commits it covered, events how many events they
// carried.
type HookHandled interface {
	OnHandled(sub string, commits, events int, d time.Duration, err error)
}

// HookRetry observes a retry of a failed handler call after delay.
type HookRetry interface {
	OnRetry(sub string, c Commit, attempt int, delay time.Duration, err error)
}

// HookParked observes a commit set aside by PolicyPark (err is the last
// error, nil for a commit parked behind an earlier one of its aggregate).
type HookParked interface {
	OnParked(sub string, c Commit, err error)
}

// HookSkipped observes a commit skipped by PolicySkip or by Skip.
type HookSkipped interface {
	OnSkipped(sub string, c Commit, err error)
}

// HookLateArrival observes a commit that became visible after the source
// had read past its position, delivered late.
type HookLateArrival interface {
	OnLateArrival(sub string, c Commit)
}

// HookGapRepair observes a per-aggregate gap: versions [from, to) were
// missing before version to arrived; found of them were read from the table
// and delivered first.
type HookGapRepair interface {
	OnGapRepair(sub, aggregateID string, from, to int64, found int)
}

// HookDuplicate observes a commit dropped because its version was already
// delivered.
type HookDuplicate interface {
	OnDuplicate(sub string, c Commit)
}

// HookPoll observes one poll of the source: commits read, how long it took,
// and its error.
type HookPoll interface {
	OnPoll(sub string, commits int, d time.Duration, err error)
}

// HookCheckpoint observes a checkpoint write and its error.
type HookCheckpoint interface {
	OnCheckpoint(sub string, err error)
}

// HookLag observes the subscription's lag about once per checkpoint
// interval: age is how old the oldest commit not yet handled is (zero when
// caught up), commits how many commits are read but not yet handled. The
// age is computed from the clock at each call: while reads fail it is at
// least the time since they began to fail, and after a unit is lost through
// a failure it goes on growing, so that it never stays frozen while nothing
// is read. A worker that holds no unit of the subscription reports 0 once,
// then nothing.
type HookLag interface {
	OnLag(sub string, age time.Duration, commits int)
}

// HookRequest observes an operator's request carried out by the worker
// (see Config.RequestPoll): r is the request as completed (Handled, and
// Result, the error's text or ""), err the error that stopped it, nil on
// success. It is called once per request carried out, before the request
// is marked done in the store.
type HookRequest interface {
	OnRequest(sub string, r checkpoint.Request, err error)
}

// HookLease observes the leases a worker holds on units of its
// subscriptions (see Config.Leases); unit is the unit's name,
// checkpoint.Key.Unit ("" for a subscription run whole). Each
// OnLeaseGained is followed, once the unit has stopped, by exactly one
// OnLeaseLost, except when the process dies first.
//
// OnLeaseGained: the worker took the unit (free, expired, or stolen to
// balance the load) and starts its work.
//
// OnLeaseLost: the unit's work has ended. err is nil when the worker let
// it go (a clean stop, a hand-over to balance the load, or the unit's part
// is done: a stream shard read to its end, or the stream taking over from
// the index; it drained, saved and released it); otherwise err says why it was lost, and its work
// was cancelled at once: errors.Is(err, checkpoint.ErrFenced) when another
// worker took it (a refused renewal or save), ErrLeaseExpired when
// renewals failed until the lease expired.
//
// OnLeaseRenewFailed: a renewal failed otherwise than by fencing (a
// timeout, throttling); it is retried while the lease lasts.
type HookLease interface {
	OnLeaseGained(sub, unit string)
	OnLeaseLost(sub, unit string, err error)
	OnLeaseRenewFailed(sub, unit string, err error)
}

// HookCircuit observes the subscription's circuit (see RetryPolicy)
// opening (open true: transient failures of several aggregates in a row,
// the handler's receiver is likely down) and closing (a call succeeded),
// at the time at, by Config.Clock. The circuit is the subscription's in
// this worker, shared by its units.
type HookCircuit interface {
	OnCircuit(sub string, open bool, at time.Time)
}

// HookParkedNow observes the number of the subscription's aggregates
// parked and of their commits parked, in this worker, each time it
// changes: when a unit starts and finds commits parked, when a commit is
// parked, and when parked commits are replayed or discarded. With
// Config.Leases, each worker counts the aggregates of the units it runs
// (every stream shard unit counts every parked aggregate).
type HookParkedNow interface {
	OnParkedNow(sub string, aggregates, commits int)
}

// HookStopped observes a subscription that stopped on an error.
type HookStopped interface {
	OnStopped(sub string, err error)
}

// hooks holds the Config's hooks sorted by interface.
type hooks struct {
	handled    []HookHandled
	retry      []HookRetry
	parked     []HookParked
	skipped    []HookSkipped
	late       []HookLateArrival
	gap        []HookGapRepair
	duplicate  []HookDuplicate
	poll       []HookPoll
	checkpoint []HookCheckpoint
	lag        []HookLag
	stopped    []HookStopped
	corrupt    []HookCorrupt
	gapFailed  []HookGap
	ignored    []HookIgnoredRecord
	request    []HookRequest
	lease      []HookLease
	circuit    []HookCircuit
	parkedNow  []HookParkedNow
}

func newHooks(hs []any) hooks {
	var h hooks
	for _, x := range hs {
		if v, ok := x.(HookHandled); ok {
			h.handled = append(h.handled, v)
		}
		if v, ok := x.(HookRetry); ok {
			h.retry = append(h.retry, v)
		}
		if v, ok := x.(HookParked); ok {
			h.parked = append(h.parked, v)
		}
		if v, ok := x.(HookSkipped); ok {
			h.skipped = append(h.skipped, v)
		}
		if v, ok := x.(HookLateArrival); ok {
			h.late = append(h.late, v)
		}
		if v, ok := x.(HookGapRepair); ok {
			h.gap = append(h.gap, v)
		}
		if v, ok := x.(HookDuplicate); ok {
			h.duplicate = append(h.duplicate, v)
		}
		if v, ok := x.(HookPoll); ok {
			h.poll = append(h.poll, v)
		}
		if v, ok := x.(HookCheckpoint); ok {
			h.checkpoint = append(h.checkpoint, v)
		}
		if v, ok := x.(HookLag); ok {
			h.lag = append(h.lag, v)
		}
		if v, ok := x.(HookStopped); ok {
			h.stopped = append(h.stopped, v)
		}
		if v, ok := x.(HookCorrupt); ok {
			h.corrupt = append(h.corrupt, v)
		}
		if v, ok := x.(HookGap); ok {
			h.gapFailed = append(h.gapFailed, v)
		}
		if v, ok := x.(HookIgnoredRecord); ok {
			h.ignored = append(h.ignored, v)
		}
		if v, ok := x.(HookRequest); ok {
			h.request = append(h.request, v)
		}
		if v, ok := x.(HookLease); ok {
			h.lease = append(h.lease, v)
		}
		if v, ok := x.(HookCircuit); ok {
			h.circuit = append(h.circuit, v)
		}
		if v, ok := x.(HookParkedNow); ok {
			h.parkedNow = append(h.parkedNow, v)
		}
	}
	return h
}

// HookCorrupt observes an item in the commits table that is not a
// well-formed commit of its key (written by another program, or damaged);
// err.Kind says why. It is logged at ERROR and handled by the
// subscription's Corrupt policy: parked or skipped, never handed to the
// handler. Each item is reported once per process when its aggregate's
// order reaches it (see docs/items.md).
type HookCorrupt interface {
	OnCorrupt(sub string, err *store.DecodeError)
}

// HookGap observes a gap that cannot be filled: versions [from, to) of an
// aggregate were still missing from the table GapTimeout after the gap was
// found. It is logged at ERROR, and version to is handled by the
// subscription's Corrupt policy (see GapError).
type HookGap interface {
	OnGap(sub, aggregateID string, from, to int64)
}

// HookIgnoredRecord observes a stream record passed over because it does
// not carry a new commit: a MODIFY or REMOVE, or an INSERT of an item that
// is not a commit. eventName is the record's (INSERT, MODIFY, REMOVE).
type HookIgnoredRecord interface {
	OnIgnoredRecord(sub, eventName string)
}
