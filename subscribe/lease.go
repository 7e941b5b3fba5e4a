package subscribe

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
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
	byName := make(map[string]bool, len(r.specs))
	for _, spec := range r.specs {
		byName[spec.name] = true
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
		if byName[cp.Unit] {
			listed[cp.Unit] = cp
		}
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
	for _, spec := range r.specs {
		if m.held[spec.name] != nil {
			continue
		}
		cp := listed[spec.name]
		// A unit named for this worker that it does not run was held by an
		// earlier run under the same Owner: it is free to take again.
		if cp.Owner == self || !cp.Live(now) {
			free = append(free, spec.name)
			continue
		}
		counts[cp.Owner]++
		byOwner[cp.Owner] = append(byOwner[cp.Owner], spec.name)
	}
	owners := len(counts) + 1
	target := (len(r.specs) + owners - 1) / owners
	switch {
	case mine < target:
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, name := range free {
			if mine >= target || ctx.Err() != nil {
				break
			}
			if m.take(ctx, name, listed[name], "") {
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
			m.take(ctx, name, listed[name], victim)
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

// take takes unit name, seen as listed, and starts it; from names the
// owner it is stolen from ("" for a free unit). It reports whether it took
// it.
func (m *leaseManager) take(ctx context.Context, name string, seen checkpoint.Checkpoint, from string) bool {
	r := m.r
	key := checkpoint.Key{Subscription: r.s.Name, Unit: name}
	started := time.Now()
	cp, err := r.w.leaser.Take(ctx, key, r.w.cfg.Owner, seen, m.opts.Duration)
	if err != nil {
		switch {
		case errors.Is(err, checkpoint.ErrFenced):
			r.log.Debug("another worker took the unit first", "unit", name, "err", err)
		case ctx.Err() == nil:
			r.log.Warn("taking a unit failed", "unit", name, "err", err)
		}
		return false
	}
	var spec unitSpec
	for _, s := range r.specs {
		if s.name == name {
			spec = s
		}
	}
	u := r.newUnit(spec, true)
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
