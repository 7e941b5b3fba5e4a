package subscribe

import (
	"errors"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// A unit's runs of failures. Each activity (reading commits, saving the
// checkpoint, renewing the lease) keeps the last error of its current run
// of failures and when the first call of that run began; a success ends
// the run. Health reports them, so that a caller can tell a blip from an
// outage by how long it has lasted (see docs/health.md).

// recordOutcome updates a run of failures with the outcome of a call that
// began at began: err nil ends the run; otherwise err becomes the last
// error, and began the run's start unless a run is going on.
func recordOutcome(last *error, since *time.Time, err error, began time.Time) {
	if err == nil {
		*last, *since = nil, time.Time{}
		return
	}
	if *last == nil || since.IsZero() {
		*since = began
	}
	*last = err
}

// readDone records the outcome of one read of commits by the unit's source
// (a poll of the index, a call to the stream, a read that repairs a gap)
// that began at began.
func (u *unit) readDone(err error, began time.Time) {
	now := u.r.w.cfg.Clock()
	u.r.mu.Lock()
	defer u.r.mu.Unlock()
	recordOutcome(&u.h.ReadErr, &u.h.ReadErrSince, err, began)
	if err == nil {
		u.h.ReadAt = now
	}
}

// saveDone records the outcome of a checkpoint save that began at began.
func (u *unit) saveDone(err error, began time.Time) {
	u.r.mu.Lock()
	defer u.r.mu.Unlock()
	recordOutcome(&u.h.SaveErr, &u.h.SaveErrSince, err, began)
}

// renewDone records the outcome of a lease renewal that began at began.
func (u *unit) renewDone(err error, began time.Time) {
	u.r.mu.Lock()
	defer u.r.mu.Unlock()
	recordOutcome(&u.h.RenewErr, &u.h.RenewErrSince, err, began)
}

// lostByError reports whether a lease lost with err was lost through a
// failure of this worker (renewals that failed until it expired, a
// checkpoint that vanished) rather than taken by another worker, which
// answered a call: errors.Is(err, checkpoint.ErrFenced).
func lostByError(err error) bool {
	return err != nil && !errors.Is(err, checkpoint.ErrFenced)
}

// unitLost records, for the subscription, that unit u's lease was lost
// through err at now, with the unit's lag then; see Health.LostErr.
func (r *subRunner) unitLost(u *unit, err error, now time.Time) {
	r.mu.Lock()
	src, h := u.src, *u.h
	r.mu.Unlock()
	lag := readFailureLag(h, now, r.readDue())
	if src != nil {
		_, l := src.lag(now)
		lag = max(lag, l)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.health.LostErr == nil {
		r.health.LostAt, r.lostLag = now, lag
	}
	r.health.LostErr = err
}

// lossRecovered forgets a unit lost through a failure (Health.LostErr):
// a unit's lease was renewed since, or a listing of the leases that
// worked shows every unit held by another live worker, so that this one
// is a standby.
func (r *subRunner) lossRecovered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.health.LostErr, r.health.LostAt, r.lostLag = nil, time.Time{}, 0
}

// readFailureLag returns the lag a unit's health implies while it reads
// nothing: nothing is known to be handled past the start of its failed
// reads, nor past its last successful read once a read is overdue (due is
// the longest a source waits between two reads), so the oldest commit not
// handled is at least that old. It is 0 while reads succeed in time, and
// counts reads that hang as well as reads that fail.
func readFailureLag(h Health, now time.Time, due time.Duration) time.Duration {
	lag := time.Duration(0)
	if !h.ReadErrSince.IsZero() {
		lag = now.Sub(h.ReadErrSince)
	}
	if !h.ReadAt.IsZero() {
		lag = max(lag, now.Sub(h.ReadAt)-due)
	}
	return max(lag, 0)
}

// readDue is how long after a successful read the next one is overdue:
// twice the longest a source of the subscription waits between two reads
// while they succeed (the index's idle poll interval, or the stream's),
// so that a slow read in time is no lag.
func (r *subRunner) readDue() time.Duration {
	return 2 * max(r.s.Index.PollMax, r.s.Stream.IdleMax)
}
