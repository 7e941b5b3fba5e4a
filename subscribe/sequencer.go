package subscribe

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dynamodb-event-store/eventstore/store"
)

// sequencer puts each aggregate's commits in version order, drops versions
// already delivered, and repairs gaps by reading missing versions from the
// table with strongly consistent queries. It remembers the next expected
// version of at most max aggregates; one forgotten (or never seen by this
// process) is treated as having delivered everything up to floor.
//
// It is used by one source goroutine; it is not safe for concurrent use.
type sequencer struct {
	sub    string
	reader Reader
	hooks  *hooks
	max    int

	aggs map[string]*aggState
	lru  list.List // of *aggState, least recently active first

	// floor: every commit at or before it is handled, unless it is one of
	// the late ones the checkpoint lists. It rises when an aggregate is
	// forgotten, to that aggregate's last position.
	floor store.Position
}

type aggState struct {
	id   string
	next int64          // next version to deliver
	last store.Position // position of the last delivered commit
	elem *list.Element
}

func newSequencer(sub string, reader Reader, h *hooks, maxAggs int, floor store.Position) *sequencer {
	return &sequencer{sub: sub, reader: reader, hooks: h, max: maxAggs, aggs: map[string]*aggState{}, floor: floor}
}

// offer takes a commit the source read and delivers, through emit, it and
// any missing versions before it, in order. It reports whether c was
// delivered (false: already delivered). A commit already delivered is
// reported as a duplicate unless reread says the source reads every commit
// twice on purpose (the index sweep). An error (a failed repair query, or
// emit's) means nothing past the commits already emitted happened; the
// source reads c again later.
func (q *sequencer) offer(ctx context.Context, c Commit, reread bool, emit func(Commit) error) (bool, error) {
	st := q.aggs[c.AggregateID]
	var missing []Commit
	switch {
	case st != nil && c.Version < st.next:
		if !reread {
			for _, h := range q.hooks.duplicate {
				h.OnDuplicate(q.sub, c)
			}
		}
		return false, nil
	case st != nil && c.Version > st.next:
		var err error
		if missing, err = q.fetch(ctx, c.AggregateID, st.next, c.Version); err != nil {
			return false, err
		}
		for _, h := range q.hooks.gap {
			h.OnGapRepair(q.sub, c.AggregateID, st.next, c.Version, len(missing))
		}
	case st == nil && c.Version > 0:
		var err error
		if missing, err = q.predecessors(ctx, c); err != nil {
			return false, err
		}
		if len(missing) > 0 {
			for _, h := range q.hooks.gap {
				h.OnGapRepair(q.sub, c.AggregateID, missing[0].Version, c.Version, len(missing))
			}
		}
	}
	for _, m := range missing {
		if err := q.deliver(m, emit); err != nil {
			return false, err
		}
	}
	return true, q.deliver(c, emit)
}

func (q *sequencer) deliver(c Commit, emit func(Commit) error) error {
	if err := emit(c); err != nil {
		return err
	}
	st := q.aggs[c.AggregateID]
	if st == nil {
		st = &aggState{id: c.AggregateID}
		st.elem = q.lru.PushBack(st)
		q.aggs[c.AggregateID] = st
	} else {
		q.lru.MoveToBack(st.elem)
	}
	st.next = max(st.next, c.Version+1)
	if p := c.Position(); p.Compare(st.last) > 0 {
		st.last = p
	}
	return nil
}

// known records, from a checkpoint, that an aggregate's versions below next
// were handled, the last of them at or before last.
func (q *sequencer) known(id string, next int64, last store.Position) {
	st := &aggState{id: id, next: next, last: last}
	st.elem = q.lru.PushBack(st)
	q.aggs[id] = st
}

// fetch reads versions [from, to) of an aggregate from the table.
func (q *sequencer) fetch(ctx context.Context, id string, from, to int64) ([]Commit, error) {
	var out []Commit
	for c, err := range q.reader.Query(ctx, id, from, func(o *store.QueryOptions) { o.ToVersion = to }) {
		if errors.Is(err, store.ErrCorruptCommit) {
			continue // reported when the source read it; it cannot be delivered
		}
		if err != nil {
			return nil, fmt.Errorf("subscribe: repair %q versions %d to %d: %w", id, from, to-1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// predecessors returns, in version order, the versions before c of an
// aggregate this sequencer does not know whose positions lie after the
// floor: those were not delivered.
func (q *sequencer) predecessors(ctx context.Context, c Commit) ([]Commit, error) {
	var out []Commit
	for p, err := range q.reader.Query(ctx, c.AggregateID, 0, func(o *store.QueryOptions) {
		o.ToVersion, o.Backward, o.PageSize = c.Version, true, 4
	}) {
		if errors.Is(err, store.ErrCorruptCommit) {
			continue // reported when the source read it; it cannot be delivered
		}
		if err != nil {
			return nil, fmt.Errorf("subscribe: check versions before %q version %d: %w", c.AggregateID, c.Version, err)
		}
		if p.Position().Compare(q.floor) <= 0 {
			break
		}
		out = append(out, p)
	}
	slices.Reverse(out)
	return out, nil
}

// forget drops the least recently active aggregates beyond max whose last
// delivered position is before keepFrom (commits after it may still be read
// again), raising the floor to their last positions.
func (q *sequencer) forget(keepFrom store.Position) {
	for len(q.aggs) > q.max {
		front := q.lru.Front()
		st := front.Value.(*aggState)
		if st.last.Compare(keepFrom) >= 0 {
			return
		}
		q.lru.Remove(front)
		delete(q.aggs, st.id)
		if st.last.Compare(q.floor) > 0 {
			q.floor = st.last
		}
	}
}
