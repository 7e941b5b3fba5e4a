package subscribe

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
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

	// A stream subscription's: the reader that lists the shards, and, when
	// a shard unit found that the stream cannot give its records, the
	// epoch of that unit plus one (0: none).
	rd        *streamreader.Reader
	rejoinFor atomic.Int64

	// claims are the units seen held by Claim (an owner with no expiry),
	// as first seen unchanged; only the manager's goroutine touches it.
	claims map[string]claimSeen
}

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
	return &leaseManager{r: r, opts: *r.w.cfg.Leases, held: map[string]*heldUnit{}}
}

// run balances until ctx ends, then waits for every unit to stop (each
// drains, saves and releases its lease). It returns the errors of final
// saves that failed.
func (m *leaseManager) run(ctx context.Context) error {
	t := time.NewTicker(m.opts.BalanceEvery)
	defer t.Stop()
	for {
		m.balance(ctx)
		select {
		case <-ctx.Done():
			m.r.setState(StateStopping)
			m.wg.Wait()
			m.mu.Lock()
			defer m.mu.Unlock()
			return errors.Join(m.errs...)
		case <-t.C:
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
	if ctx.Err() != nil {
		return
	}
	// A record that cannot be read leaves its unit looking free: a Take
	// of it presents lease 0 and is refused if the unit exists.
	listed := map[string]checkpoint.Checkpoint{}
	var listErr error
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
		r.log.Warn("listing the subscription's leases failed", "err", listErr)
	}
	r.setErr(listErr)

	now := r.w.cfg.Clock()
	self := r.w.cfg.Owner
	specs := r.specs
	if r.s.Source != SourceIndex {
		var ok bool
		if specs, ok = m.streamSpecs(ctx, listed, now); !ok {
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
		if _, ok := byName[name]; !ok && !h.u.releasing.Load() && h.u.lostErr() == nil {
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
	owners := len(counts) + 1
	target := (len(specs) + owners - 1) / owners
	switch {
	case mine < target:
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, name := range free {
			if mine >= target || ctx.Err() != nil {
				break
			}
			if m.take(ctx, byName[name], listed[name], "") {
				mine++
			}
		}
		if mine >= target || len(free) > 0 {
			return
		}
		// Nothing free: steal one unit from the owner holding the most, if
		// it holds at least two more.
		victim := ""
		for o, n := range counts {
			if c := cmp.Compare(n, counts[victim]); victim == "" || c > 0 || c == 0 && o < victim {
				victim = o
			}
		}
		if victim != "" && counts[victim] >= mine+2 {
			names := byOwner[victim]
			name := names[rand.N(len(names))]
			m.take(ctx, byName[name], listed[name], victim)
		}
	case mine > target:
		var names []string
		for name, h := range m.held {
			if !h.u.releasing.Load() && h.u.lostErr() == nil {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		h := m.held[names[rand.N(len(names))]]
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
		defer close(h.done)
		defer cancel()
		err := u.run(uctx, cp, started.Add(m.opts.Duration))
		u.remove()
		if errors.Is(u.ended, errRejoin) {
			m.rejoinFor.Store(spec.epoch + 1)
		}
		if err != nil {
			if ctx.Err() == nil && !u.releasing.Load() {
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
