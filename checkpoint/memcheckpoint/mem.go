package memcheckpoint

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/internal/input"
)

var (
	_ checkpoint.Store     = (*Mem)(nil)
	_ checkpoint.Lister    = (*Mem)(nil)
	_ checkpoint.Setter    = (*Mem)(nil)
	_ checkpoint.Leaser    = (*Mem)(nil)
	_ checkpoint.Deleter   = (*Mem)(nil)
	_ checkpoint.ParkStore = (*Mem)(nil)

	_ checkpoint.RequestStore = (*Mem)(nil)
)

// Mem is an in-memory checkpoint.Store, checkpoint.Lister,
// checkpoint.Setter, checkpoint.Leaser, checkpoint.Deleter,
// checkpoint.ParkStore and checkpoint.RequestStore. It is safe for
// concurrent use; every method is atomic. Methods return ctx.Err() when ctx
// is done before they start.
type Mem struct {
	clock func() time.Time

	mu     sync.Mutex
	cps    map[checkpoint.Key]checkpoint.Checkpoint
	parked map[parkKey]checkpoint.Parked
	reqs   map[reqKey]checkpoint.Request
}

type reqKey struct{ subscription, aggregateID string }

type parkKey struct {
	subscription, aggregateID string
	version                   int64
}

// New returns an empty Mem on the system clock.
func New() *Mem { return NewWithClock(nil) }

// NewWithClock returns an empty Mem whose UpdatedAt, Expires (Take,
// Renew), ParkedAt, RequestedAt and CompletedAt times come from clock (nil
// means time.Now), as does the time at which Set and Delete judge whether
// a holder's lease has expired. clock may be called from several
// goroutines at once.
func NewWithClock(clock func() time.Time) *Mem {
	if clock == nil {
		clock = time.Now
	}
	return &Mem{
		clock:  clock,
		cps:    make(map[checkpoint.Key]checkpoint.Checkpoint),
		parked: make(map[parkKey]checkpoint.Parked),
		reqs:   make(map[reqKey]checkpoint.Request),
	}
}

func (m *Mem) now() time.Time { return input.Millis(m.clock()) }

// Claim makes owner the holder of key, with no expiry, and increments its
// lease counter; see checkpoint.Store.
func (m *Mem) Claim(ctx context.Context, key checkpoint.Key, owner string) (checkpoint.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Owner(owner); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := m.cps[key]
	cp.Key = key
	cp.Owner = owner
	cp.Lease++
	cp.Expires = time.Time{}
	m.cps[key] = cp
	return cp, nil
}

// Take makes owner the holder of key until d from the clock if its lease
// counter is still seen.Lease and, when seen.Owner is not "" and the key
// has an owner, that owner and its Expires (in milliseconds) are still as
// seen; see checkpoint.Leaser.
func (m *Mem) Take(ctx context.Context, key checkpoint.Key, owner string, seen checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Owner(owner); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Seen(key, seen.Lease); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.LeaseDuration(d); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	expires := input.Expires(m.clock(), d)
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := m.cps[key] // counter 0 when the key has no checkpoint
	if cp.Lease != seen.Lease || renewedSince(cp, seen) {
		return checkpoint.Checkpoint{}, &checkpoint.FencedError{Key: key, Owner: cp.Owner, Lease: cp.Lease,
			PresentedOwner: owner, PresentedLease: seen.Lease}
	}
	cp.Key = key
	cp.Owner = owner
	cp.Lease++
	cp.Expires = expires
	m.cps[key] = cp
	return cp, nil
}

// renewedSince reports whether the key's holder, cur, is no longer the one
// seen: seen names an owner, cur has one, and it differs from seen's or
// its Expires does (compared as stored, in milliseconds). A key released
// since it was seen (no owner) is not.
func renewedSince(cur, seen checkpoint.Checkpoint) bool {
	if seen.Owner == "" || cur.Owner == "" {
		return false
	}
	if cur.Owner != seen.Owner || cur.Expires.IsZero() != seen.Expires.IsZero() {
		return true
	}
	return !cur.Expires.IsZero() && cur.Expires.UnixMilli() != seen.Expires.UnixMilli()
}

// Renew extends cp's lease to d from the clock if cp.Owner holds cp.Key at
// cp.Lease; see checkpoint.Leaser.
func (m *Mem) Renew(ctx context.Context, cp checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Holder(cp); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.LeaseDuration(d); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	expires := input.Expires(m.clock(), d)
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, err := m.heldLocked(cp)
	if err != nil {
		return checkpoint.Checkpoint{}, err
	}
	cur.Expires = expires
	m.cps[cp.Key] = cur
	return cur, nil
}

// Save stores cp.Position if cp.Owner holds cp.Key at cp.Lease; see
// checkpoint.Store.
func (m *Mem) Save(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := input.Held(cp); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, err := m.heldLocked(cp)
	if err != nil {
		return err
	}
	cur.Position = cp.Position
	cur.UpdatedAt = now
	m.cps[cp.Key] = cur
	return nil
}

// heldLocked returns the stored checkpoint of cp.Key if cp.Owner holds it at
// cp.Lease, and otherwise a *checkpoint.FencedError or ErrNotFound.
func (m *Mem) heldLocked(cp checkpoint.Checkpoint) (checkpoint.Checkpoint, error) {
	cur, ok := m.cps[cp.Key]
	if !ok {
		return checkpoint.Checkpoint{}, notFound(cp.Key)
	}
	if cur.Owner != cp.Owner || cur.Lease != cp.Lease {
		return checkpoint.Checkpoint{}, &checkpoint.FencedError{Key: cp.Key, Owner: cur.Owner, Lease: cur.Lease,
			PresentedOwner: cp.Owner, PresentedLease: cp.Lease}
	}
	return cur, nil
}

func notFound(key checkpoint.Key) error {
	return fmt.Errorf("%w: %s", checkpoint.ErrNotFound, key)
}

// Load returns key's checkpoint; see checkpoint.Store.
func (m *Mem) Load(ctx context.Context, key checkpoint.Key) (checkpoint.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[key]
	if !ok {
		return checkpoint.Checkpoint{}, notFound(key)
	}
	return cp, nil
}

// List returns the checkpoints of one subscription, or of all when
// subscription is "", ordered by subscription then unit; see
// checkpoint.Lister. It yields a snapshot taken when iteration starts.
func (m *Mem) List(ctx context.Context, subscription string) iter.Seq2[checkpoint.Checkpoint, error] {
	return func(yield func(checkpoint.Checkpoint, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(checkpoint.Checkpoint{}, err)
			return
		}
		if subscription != "" {
			if err := input.Subscription(subscription); err != nil {
				yield(checkpoint.Checkpoint{}, err)
				return
			}
		}
		m.mu.Lock()
		var out []checkpoint.Checkpoint
		for k, cp := range m.cps {
			if subscription == "" || k.Subscription == subscription {
				out = append(out, cp)
			}
		}
		m.mu.Unlock()
		slices.SortFunc(out, func(a, b checkpoint.Checkpoint) int {
			return cmp.Or(strings.Compare(a.Subscription, b.Subscription), strings.Compare(a.Unit, b.Unit))
		})
		for _, cp := range out {
			if err := ctx.Err(); err != nil {
				yield(checkpoint.Checkpoint{}, err)
				return
			}
			if !yield(cp, nil) {
				return
			}
		}
	}
}

// Set overwrites key's position, without force only if no live holder
// holds it at the clock's time; see checkpoint.Setter.
func (m *Mem) Set(ctx context.Context, key checkpoint.Key, position string, force bool) (checkpoint.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Position(position); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := m.cps[key]
	if cp.Live(now) && !force {
		return checkpoint.Checkpoint{}, &checkpoint.HeldError{Key: key, Owner: cp.Owner, Expires: cp.Expires}
	}
	cp.Key = key
	cp.Position = position
	cp.Owner = ""
	cp.Expires = time.Time{}
	cp.Lease++
	cp.UpdatedAt = now
	m.cps[key] = cp
	return cp, nil
}

// Release clears the key's owner and expiry if cp.Owner holds it at
// cp.Lease; see checkpoint.Setter.
func (m *Mem) Release(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := input.Held(cp); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, err := m.heldLocked(cp)
	if err != nil {
		return err
	}
	cur.Owner = ""
	cur.Expires = time.Time{}
	m.cps[cp.Key] = cur
	return nil
}

// Delete removes cp.Key's checkpoint if its lease counter is still
// cp.Lease and no live holder holds it at the clock's time; see
// checkpoint.Deleter. Parked commits and requests are kept.
func (m *Mem) Delete(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := input.Key(cp.Key); err != nil {
		return err
	}
	if err := input.Seen(cp.Key, cp.Lease); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.cps[cp.Key]
	switch {
	case !ok:
		return notFound(cp.Key)
	case cur.Lease != cp.Lease:
		return &checkpoint.FencedError{Key: cp.Key, Owner: cur.Owner, Lease: cur.Lease,
			PresentedOwner: cp.Owner, PresentedLease: cp.Lease}
	case cur.Live(now):
		return &checkpoint.HeldError{Key: cp.Key, Owner: cur.Owner, Expires: cur.Expires}
	}
	delete(m.cps, cp.Key)
	return nil
}

// Park stores p, overwriting the same subscription, aggregate and version;
// see checkpoint.ParkStore.
func (m *Mem) Park(ctx context.Context, p checkpoint.Parked) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := input.Parked(p, m.clock)
	if err != nil {
		return err
	}
	p.Commit.Events = bytes.Clone(p.Commit.Events)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parked[parkKey{p.Subscription, p.Commit.AggregateID, p.Commit.Version}] = p
	return nil
}

// Parked lists a subscription's parked commits, of one aggregate or of all,
// ordered by aggregate id then version; see checkpoint.ParkStore. It yields
// a snapshot taken when iteration starts.
func (m *Mem) Parked(ctx context.Context, subscription, aggregateID string) iter.Seq2[checkpoint.Parked, error] {
	return func(yield func(checkpoint.Parked, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(checkpoint.Parked{}, err)
			return
		}
		if err := input.ParkedFilter(subscription, aggregateID); err != nil {
			yield(checkpoint.Parked{}, err)
			return
		}
		m.mu.Lock()
		var out []checkpoint.Parked
		for k, p := range m.parked {
			if k.subscription == subscription && (aggregateID == "" || k.aggregateID == aggregateID) {
				p.Commit.Events = bytes.Clone(p.Commit.Events)
				out = append(out, p)
			}
		}
		m.mu.Unlock()
		slices.SortFunc(out, func(a, b checkpoint.Parked) int {
			return cmp.Or(strings.Compare(a.Commit.AggregateID, b.Commit.AggregateID), cmp.Compare(a.Commit.Version, b.Commit.Version))
		})
		for _, p := range out {
			if err := ctx.Err(); err != nil {
				yield(checkpoint.Parked{}, err)
				return
			}
			if !yield(p, nil) {
				return
			}
		}
	}
}

// Unpark removes one parked commit; see checkpoint.ParkStore.
func (m *Mem) Unpark(ctx context.Context, subscription, aggregateID string, version int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := input.ParkedKey(subscription, aggregateID, version); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.parked, parkKey{subscription, aggregateID, version})
	return nil
}

// Request stores r, replacing any request for the same subscription and
// aggregate, and returns it with ID (32 random hexadecimal digits, when
// empty) and RequestedAt set; see checkpoint.RequestStore. Done, Result,
// Handled and CompletedAt are cleared.
func (m *Mem) Request(ctx context.Context, r checkpoint.Request) (checkpoint.Request, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Request{}, err
	}
	r, err := input.Request(r, m.clock, input.NewRequestID)
	if err != nil {
		return checkpoint.Request{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs[reqKey{r.Subscription, r.AggregateID}] = r
	return r, nil
}

// Requests lists the requests of one subscription, or of all when
// subscription is "", ordered by subscription then aggregate id; see
// checkpoint.RequestStore. It yields a snapshot taken when iteration
// starts.
func (m *Mem) Requests(ctx context.Context, subscription string) iter.Seq2[checkpoint.Request, error] {
	return func(yield func(checkpoint.Request, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(checkpoint.Request{}, err)
			return
		}
		if err := input.Requests(subscription); err != nil {
			yield(checkpoint.Request{}, err)
			return
		}
		m.mu.Lock()
		var out []checkpoint.Request
		for k, r := range m.reqs {
			if subscription == "" || k.subscription == subscription {
				out = append(out, r)
			}
		}
		m.mu.Unlock()
		slices.SortFunc(out, func(a, b checkpoint.Request) int {
			return cmp.Or(strings.Compare(a.Subscription, b.Subscription), strings.Compare(a.AggregateID, b.AggregateID))
		})
		for _, r := range out {
			if err := ctx.Err(); err != nil {
				yield(checkpoint.Request{}, err)
				return
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Complete marks the request r.ID done with r.Result and r.Handled if it is
// still its aggregate's request, and otherwise returns an error matching
// checkpoint.ErrNotFound; see checkpoint.RequestStore. CompletedAt is set
// by the clock.
func (m *Mem) Complete(ctx context.Context, r checkpoint.Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := input.Completion(r)
	if err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	k := reqKey{r.Subscription, r.AggregateID}
	cur, ok := m.reqs[k]
	if !ok || cur.ID != r.ID {
		return fmt.Errorf("%w: request %q of subscription %q aggregate %q (replaced or deleted)", checkpoint.ErrNotFound, r.ID, r.Subscription, r.AggregateID)
	}
	cur.Done, cur.Result, cur.Handled, cur.CompletedAt = true, r.Result, r.Handled, now
	m.reqs[k] = cur
	return nil
}

// DeleteRequest removes the request id of an aggregate if it is still
// there; see checkpoint.RequestStore. An empty subscription, aggregate id
// or id returns an error matching checkpoint.ErrInvalidArgument.
func (m *Mem) DeleteRequest(ctx context.Context, subscription, aggregateID, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := input.RequestKey(subscription, aggregateID); err != nil {
		return err
	}
	if err := input.RequestID(id, true); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := reqKey{subscription, aggregateID}
	if cur, ok := m.reqs[k]; ok && cur.ID == id {
		delete(m.reqs, k)
	}
	return nil
}
