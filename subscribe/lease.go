package subscribe

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// leaseManager shares one subscription's units with the other workers that
// run it, through leases in the checkpoint store: every BalanceEvery it
// lists the units' checkpoints and takes, steals or releases units by the
// rule documented on LeaseOptions. Each unit it holds runs in its own
// goroutine and renews its own lease.
type leaseManager struct {
	r    *subRunner
	opts LeaseOptions

	// held are the units this worker runs, by name; only the manager's
	// goroutine touches the map.
	held map[string]*heldUnit
	wg   sync.WaitGroup

	mu   sync.Mutex
	errs []error // final saves that failed at the stop

	// A stream subscription's: when a shard unit found that the stream
	// cannot give its records, the epoch of that unit plus one (0: none).
	rejoinFor atomic.Int64

	// claims are the units seen held by Claim (an owner with no expiry),
	// as first seen unchanged; only the manager's goroutine touches it.
	claims map[string]claimSeen

	// member is this worker's membership record, as last taken or renewed
	// (Lease 0: not held). Only keepMember touches it while it runs.
	member checkpoint.Checkpoint
	// roundFailed: the last balance round did not get through (a failed
	// listing); the membership is not renewed until one does.
	roundFailed atomic.Bool
	// takeRefused: a Take of the last round was refused (the unit changed
	// since it was listed: another worker took it, or a renewal of this
	// worker's, delayed by the network, landed). Only the manager's
	// goroutine touches it.
	takeRefused bool
	// listFailed: the last round's listing failed. Only the manager's
	// goroutine touches it.
	listFailed bool
	// roundAt is when a balance round last got through (Unix ns, of the
	// worker's clock). A round still under way is not a failed one (under
	// load a round can outlast RenewEvery), but rounds that have not got
	// through for a lease Duration (hung) stop the renewals too.
	roundAt atomic.Int64
	// idle counts, per member holding no unit, the rounds it has left
	// units free since it last held one.
	idle map[string]int
	// gaveBack are the units this worker released to balance the load,
	// with the rounds for which it leaves them to others.
	gaveBack map[string]int
	// stall is, per owner that holds at least two units more than this
	// worker, how many rounds in a row it has not given any back, and how
	// many it held; only the manager's goroutine touches it.
	stall map[string]stallSeen
	// roundNow asks for a balance round at once, without waiting for
	// BalanceEvery: a unit held has ended by itself (see unitEnded).
	roundNow chan struct{}
	// listNow: the round under way was asked for by unitEnded, and lists
	// the stream's shards afresh rather than share a listing up to a
	// round old, which may not show the shards it is asked for (a
	// finished shard's children). Only the manager's goroutine touches it.
	listNow bool
}

// stallSeen is an owner above this worker by two units or more, as seen.
type stallSeen struct{ held, rounds int }

// memberUnitPrefix starts the unit name of a worker's membership record.
const memberUnitPrefix = "member:"

// IsMemberUnit reports whether a checkpoint's unit name (checkpoint.Key.Unit)
// is a worker's membership record rather than a unit of work. With
// Config.Leases, each worker keeps such a record under each subscription
// it runs, "member:" followed by its Owner, leased and renewed as units
// are, so that the others count it among the owners while it holds no
// unit yet; it is deleted at a clean stop. It has no position.
func IsMemberUnit(unit string) bool { return strings.HasPrefix(unit, memberUnitPrefix) }

// memberUnit returns the unit name of owner's membership record: the
// prefix and the owner, or for an owner too long for a unit name, the
// prefix and the owner's SHA-256.
func memberUnit(owner string) string {
	if len(memberUnitPrefix)+len(owner) > checkpoint.MaxNameBytes {
		sum := sha256.Sum256([]byte(owner))
		return memberUnitPrefix + hex.EncodeToString(sum[:])
	}
	return memberUnitPrefix + owner
}

// stallRounds is how many balance rounds in a row an owner two units or
// more above this worker must have given none back before this worker
// steals one from it.
const stallRounds = 3

// claimSeen is a unit held by Claim, as seen: its owner, lease counter and
// last save, and when the manager first saw them so.
type claimSeen struct {
	owner   string
	lease   int64
	updated time.Time
	since   time.Time
}

// live reports whether cp, the checkpoint of unit name, has a live holder
// at now. A holder by Claim has no expiry (a worker without leases, or of
// a version before them): it counts as live until the manager has seen it
// unchanged (owner, lease counter, last save) for a lease Duration, and
// then as expired, so that a unit left by such a worker that died is taken
// over. Such a worker that is alive and idle loses the unit: its next save
// is fenced, which stops its subscription with ErrFenced.
func (m *leaseManager) live(name string, cp checkpoint.Checkpoint, now time.Time) bool {
	if !cp.Live(now) {
		delete(m.claims, name)
		return false
	}
	if !cp.Expires.IsZero() {
		delete(m.claims, name)
		return true
	}
	seen, ok := m.claims[name]
	if !ok || seen.owner != cp.Owner || seen.lease != cp.Lease || !seen.updated.Equal(cp.UpdatedAt) {
		if m.claims == nil {
			m.claims = map[string]claimSeen{}
		}
		m.claims[name] = claimSeen{owner: cp.Owner, lease: cp.Lease, updated: cp.UpdatedAt, since: now}
		return true
	}
	if now.Sub(seen.since) < m.opts.Duration {
		return true
	}
	if !seen.since.IsZero() {
		m.r.log.Warn("a unit held without a lease has not changed for a lease duration; taking it as abandoned",
			"unit", name, "owner", cp.Owner, "lease", cp.Lease, "updatedAt", cp.UpdatedAt)
		seen.since = time.Time{} // logged once
		m.claims[name] = seen
	}
	return false
}

// heldUnit is a unit the manager started.
type heldUnit struct {
	u      *unit
	cancel context.CancelFunc // a clean stop of the unit alone
	done   chan struct{}      // closed once the unit has stopped
}

func newLeaseManager(r *subRunner) *leaseManager {
	return &leaseManager{r: r, opts: *r.w.cfg.Leases, held: map[string]*heldUnit{}, roundNow: make(chan struct{}, 1)}
}

// run balances until ctx ends, then waits for every unit to stop (each
// drains, saves and releases its lease). It returns the errors of final
// saves that failed.
func (m *leaseManager) run(ctx context.Context) error {
	m.roundAt.Store(m.r.w.cfg.Clock().UnixNano())
	m.announce(ctx)
	memberDone := make(chan struct{})
	go func() {
		defer close(memberDone)
		m.keepMember(ctx)
	}()
	t := time.NewTimer(m.opts.BalanceEvery)
	defer t.Stop()
	for {
		m.balance(ctx)
		m.listNow = false
		t.Reset(m.nextRound())
		select {
		case <-ctx.Done():
			m.r.setState(StateStopping)
			m.wg.Wait()
			<-memberDone
			m.leave(ctx)
			m.mu.Lock()
			defer m.mu.Unlock()
			return errors.Join(m.errs...)
		case <-t.C:
		case <-m.roundNow:
			m.listNow = true
		}
	}
}

// unitEnded asks for a balance round at once after a unit held ended by
// itself (its source's errSplit, errShardFinished or errRejoin), once it
// has saved, released its lease and stopped: what runs next (the stream's
// shard units after a hand-over, a finished shard's children, a rejoin)
// is decided by a round, and waiting for the next one would pause delivery
// for up to BalanceEvery. A round already asked for is enough.
func (m *leaseManager) unitEnded() {
	select {
	case m.roundNow <- struct{}{}:
	default:
	}
}

// failedRoundRetry caps the wait before the next balance round after a
// round whose listing failed.
const failedRoundRetry = time.Second

// nextRound returns the wait before the next balance round: BalanceEvery,
// or at most failedRoundRetry after a round whose listing failed or whose
// Take was refused, or while a unit held is lost, so that a worker that
// lost its units through an outage takes them back soon after the outage
// ends.
func (m *leaseManager) nextRound() time.Duration {
	short := m.roundFailed.Load() || m.listFailed || m.takeRefused
	for _, h := range m.held {
		short = short || h.u.lostErr() != nil
	}
	if short {
		return min(m.opts.BalanceEvery, failedRoundRetry)
	}
	return m.opts.BalanceEvery
}

// keepMember renews this worker's membership every RenewEvery until ctx
// ends, while its balance rounds get through (see roundsGetThrough). A
// record that another worker deleted meanwhile (it saw it expired for a
// lease Duration) is taken again at the next renewal.
func (m *leaseManager) keepMember(ctx context.Context) {
	t := time.NewTicker(m.opts.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.roundsGetThrough() {
			m.announce(ctx)
		}
	}
}

// roundsGetThrough reports whether this worker's balance rounds get
// through: the last one did not fail, and one got through less than a
// lease Duration ago.
func (m *leaseManager) roundsGetThrough() bool {
	since := m.r.w.cfg.Clock().Sub(time.Unix(0, m.roundAt.Load()))
	return !m.roundFailed.Load() && since < m.opts.Duration
}

// announce takes or renews this worker's membership record, so that the
// other workers count it among the owners even while it holds no unit,
// and give units back to it rather than have it steal them. The record's
// lease lasts Duration, as a unit's does, so that a worker that dies stops
// being counted when its units become free. A failure is logged.
func (m *leaseManager) announce(ctx context.Context) {
	r := m.r
	d := m.opts.Duration
	if m.member.Lease > 0 {
		cp, err := r.w.leaser.Renew(ctx, m.member, d)
		if err == nil {
			m.member = cp
			return
		}
		if !isLost(err) {
			if ctx.Err() == nil {
				r.log.Warn("renewing this worker's membership failed", "err", err)
			}
			return
		}
		m.member = checkpoint.Checkpoint{}
	}
	key := checkpoint.Key{Subscription: r.s.Name, Unit: memberUnit(r.w.cfg.Owner)}
	seen, err := r.w.cfg.Checkpoints.Load(ctx, key)
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		if ctx.Err() == nil {
			r.log.Warn("reading this worker's membership failed", "err", err)
		}
		return
	}
	cp, err := r.w.leaser.Take(ctx, key, r.w.cfg.Owner, seen, d)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("announcing this worker failed", "err", err)
		}
		return
	}
	m.member = cp
}

// leave deletes this worker's membership record at a clean stop (releasing
// it without a checkpoint.Deleter), so that the others stop counting it.
func (m *leaseManager) leave(ctx context.Context) {
	if m.member.Lease == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.r.w.cfg.FinalSaveTimeout)
	defer cancel()
	setter, ok := m.r.w.cfg.Checkpoints.(checkpoint.Setter)
	if !ok {
		return
	}
	if err := setter.Release(ctx, m.member); err != nil {
		m.r.log.Debug("releasing this worker's membership failed; it expires by itself", "err", err)
		return
	}
	if d, ok := m.r.w.cfg.Checkpoints.(checkpoint.Deleter); ok {
		cp := m.member
		cp.Owner, cp.Expires = "", time.Time{}
		if err := d.Delete(ctx, cp); err != nil {
			m.r.log.Debug("deleting this worker's membership failed", "err", err)
		}
	}
}

// reap forgets the units that have stopped.
func (m *leaseManager) reap() {
	for name, h := range m.held {
		select {
		case <-h.done:
			delete(m.held, name)
		default:
		}
	}
}

// balance runs one round: see LeaseOptions for the rule.
func (m *leaseManager) balance(ctx context.Context) {
	r := m.r
	m.reap()
	m.takeRefused, m.listFailed = false, false
	if ctx.Err() != nil {
		return
	}
	// A worker whose rounds fail does not renew its membership: counted
	// as an owner, it would lower the others' targets and leave units
	// free. A round under way is not a failed one: renewals go on while it
	// runs (see roundsGetThrough).
	//
	// A record that cannot be read leaves its unit looking free: a Take
	// of it presents lease 0 and is refused if the unit exists.
	listed := map[string]checkpoint.Checkpoint{}
	var listErr error
	began := r.w.cfg.Clock()
	for cp, err := range r.w.lister.List(ctx, r.s.Name) {
		if err != nil {
			listErr = err
			continue
		}
		listed[cp.Unit] = cp
	}
	if ctx.Err() != nil {
		return
	}
	if listErr != nil {
		m.listFailed = true
		r.log.Warn("listing the subscription's leases failed", "err", listErr)
	}
	r.setErr(listErr)
	r.mu.Lock()
	switch {
	case listErr == nil:
		r.health.ListErrSince = time.Time{}
	case r.health.ListErrSince.IsZero():
		r.health.ListErrSince = began
	}
	r.mu.Unlock()
	if listErr != nil && r.s.Source != SourceIndex {
		// A stream subscription's mode is told by its checkpoint without
		// a unit: a listing that may lack it decides nothing.
		m.roundFailed.Store(true)
		return
	}

	now := r.w.cfg.Clock()
	self := r.w.cfg.Owner
	specs := r.specs
	if r.s.Source != SourceIndex {
		var ok bool
		if specs, ok = m.streamSpecs(ctx, listed, now); !ok {
			m.roundFailed.Store(true)
			return
		}
	}
	byName := make(map[string]unitSpec, len(specs))
	first := ""
	for _, spec := range specs {
		byName[spec.name] = spec
		if spec.shard != "" && (first == "" || spec.name < first) {
			first = spec.name
		}
	}
	r.mu.Lock()
	r.requestUnit = first
	r.mu.Unlock()
	// Units that are no longer units (a stream subscription changed mode)
	// are handed over.
	for name, h := range m.held {
		spec, ok := byName[name]
		if (!ok || spec.epoch != h.u.epoch) && !h.u.releasing.Load() && h.u.lostErr() == nil {
			h.u.releasing.Store(true)
			h.u.log.Info("the subscription's units changed; stopping the unit")
			h.cancel()
		}
	}
	// Units being handed over, or lost and still stopping, are no longer
	// counted as this worker's.
	mine := 0
	for _, h := range m.held {
		if !h.u.releasing.Load() && h.u.lostErr() == nil {
			mine++
		}
	}
	var free []string
	counts := map[string]int{}
	byOwner := map[string][]string{}
	for _, spec := range specs {
		if m.held[spec.name] != nil {
			continue
		}
		cp := listed[spec.name]
		// A unit named for this worker that it does not run was held by an
		// earlier run under the same Owner: it is free to take again.
		if cp.Owner == self || !m.live(spec.name, cp, now) {
			free = append(free, spec.name)
			continue
		}
		counts[cp.Owner]++
		byOwner[cp.Owner] = append(byOwner[cp.Owner], spec.name)
	}
	if listErr == nil && len(free) == 0 && len(m.held) == 0 {
		// Every unit is held by a live worker, seen through a listing that
		// worked: whatever this one lost before, it is now a standby.
		r.lossRecovered()
	}
	// The owners are the live owners of units and the workers whose
	// membership is live, this one included.
	ownerSet := map[string]bool{self: true}
	for o := range counts {
		ownerSet[o] = true
	}
	members := map[string]bool{}
	for name, cp := range listed {
		if !strings.HasPrefix(name, memberUnitPrefix) || cp.Owner == self {
			continue
		}
		switch {
		case cp.Live(now):
			members[cp.Owner] = true
		case cp.Owner == "" || now.Sub(cp.Expires) > m.opts.Duration:
			m.forget(ctx, cp) // a worker gone for a while
		}
	}
	// A member that holds nothing while units stay free round after round
	// does not take them (its Takes fail, say): it is not counted, so that
	// the others take the units.
	if m.idle == nil {
		m.idle = map[string]int{}
	}
	for o := range m.idle {
		if !members[o] || counts[o] > 0 {
			delete(m.idle, o)
		}
	}
	for o := range members {
		if counts[o] == 0 && len(free) > 0 {
			m.idle[o]++ // reset only once it holds a unit
		}
		if m.idle[o] < stallRounds {
			ownerSet[o] = true
		}
	}
	m.roundFailed.Store(false)
	m.roundAt.Store(now.UnixNano())
	owners := len(ownerSet)
	target := (len(specs) + owners - 1) / owners
	// The fewest units another owner holds: a member holding none counts.
	fewest := -1
	for o := range ownerSet {
		if o != self && (fewest < 0 || counts[o] < fewest) {
			fewest = counts[o]
		}
	}
	for name, rounds := range m.gaveBack {
		if rounds <= 1 {
			delete(m.gaveBack, name)
		} else {
			m.gaveBack[name] = rounds - 1
		}
	}
	switch {
	case mine < target:
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, name := range free {
			if mine >= target || ctx.Err() != nil {
				break
			}
			if m.gaveBack[name] > 0 {
				continue // given back to a worker with fewer: leave it to it
			}
			if m.take(ctx, byName[name], listed[name], "") {
				mine++
			}
		}
		if mine >= target || len(free) > 0 {
			return
		}
		// Nothing free: the owners above their share give units back by
		// themselves, one a round, since they count this worker. One that
		// holds at least two more than this worker and has given none back
		// for stallRounds rounds in a row has a unit stolen.
		victim := ""
		for o, n := range counts {
			if c := cmp.Compare(n, counts[victim]); victim == "" || c > 0 || c == 0 && o < victim {
				victim = o
			}
		}
		if victim == "" || counts[victim] < mine+2 {
			clear(m.stall)
			return
		}
		if m.stall == nil {
			m.stall = map[string]stallSeen{}
		}
		st := m.stall[victim]
		if counts[victim] < st.held {
			st.rounds = 0
		}
		st.held = counts[victim]
		st.rounds++
		m.stall[victim] = st
		if st.rounds >= stallRounds {
			names := byOwner[victim]
			name := names[rand.N(len(names))]
			m.take(ctx, byName[name], listed[name], victim)
			delete(m.stall, victim)
		}
	case mine > target || fewest >= 0 && mine >= fewest+2:
		// Above the share, or two units above another owner (with 4 units
		// and 3 owners the share is 2, and a joiner would hold none).
		var names []string
		for name, h := range m.held {
			if !h.u.releasing.Load() && h.u.lostErr() == nil {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		name := names[rand.N(len(names))]
		h := m.held[name]
		if m.gaveBack == nil {
			m.gaveBack = map[string]int{}
		}
		m.gaveBack[name] = stallRounds
		h.u.releasing.Store(true)
		h.u.log.Info("handing the unit over to balance the load", "held", mine, "target", target, "owners", owners)
		h.cancel()
	}
}

// take takes the unit of spec, seen as listed, and starts it; from names
// the owner it is stolen from ("" for a free unit). It reports whether it
// took it.
func (m *leaseManager) take(ctx context.Context, spec unitSpec, seen checkpoint.Checkpoint, from string) bool {
	r := m.r
	name := spec.name
	key := checkpoint.Key{Subscription: r.s.Name, Unit: name}
	started := time.Now()
	cp, err := r.w.leaser.Take(ctx, key, r.w.cfg.Owner, seen, m.opts.Duration)
	if err != nil {
		switch {
		case errors.Is(err, checkpoint.ErrFenced):
			m.takeRefused = true
			r.log.Debug("another worker took the unit first, or its holder renewed it since it was listed", "unit", name, "err", err)
		case ctx.Err() == nil:
			r.log.Warn("taking a unit failed", "unit", name, "err", err)
		}
		return false
	}
	u := r.newUnit(spec, true)
	if from != "" {
		u.startAfter = seen.Expires
	}
	uctx, cancel := context.WithCancel(ctx)
	h := &heldUnit{u: u, cancel: cancel, done: make(chan struct{})}
	m.held[name] = h
	if from != "" {
		u.log.Info("lease gained: stolen to balance the load", "from", from, "lease", cp.Lease)
	} else {
		u.log.Info("lease gained", "previousOwner", seen.Owner, "lease", cp.Lease)
	}
	for _, hk := range r.w.hooks.lease {
		hk.OnLeaseGained(r.s.Name, name)
	}
	m.wg.Go(func() {
		defer func() {
			close(h.done) // before the round asked for below: it reaps the unit
			if u.ended != nil && ctx.Err() == nil {
				m.unitEnded()
			}
		}()
		defer cancel()
		err := u.run(uctx, cp, started.Add(m.opts.Duration))
		u.remove()
		if errors.Is(u.ended, errRejoin) {
			m.rejoinFor.Store(spec.epoch + 1)
		}
		if err != nil {
			// A unit ended by its source (a shard read, the stream's
			// hand-over) is handed over like a released one: another
			// worker takes it once its lease expires, from its last save.
			if ctx.Err() == nil && !u.releasing.Load() && u.ended == nil {
				r.stop(err)
			} else if ctx.Err() != nil {
				m.mu.Lock()
				m.errs = append(m.errs, err)
				m.mu.Unlock()
			} else {
				u.log.Error("handing the unit over: its last save failed; its lease expires by itself", "err", err)
			}
		}
		if u.lostErr() == nil && !r.w.abandoned.Load() {
			for _, hk := range r.w.hooks.lease {
				hk.OnLeaseLost(r.s.Name, name, nil)
			}
		}
	})
	return true
}
