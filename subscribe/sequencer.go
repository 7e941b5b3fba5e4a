package subscribe

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// sequencer puts each aggregate's commits in version order, drops versions
// already delivered, and repairs gaps by reading missing versions from the
// table with strongly consistent queries. It remembers the next expected
// version of at most max aggregates; one forgotten (or never seen by this
// process) is treated as having delivered everything up to floor.
//
// Items that are not well-formed commits (a *store.DecodeError) take their
// place in their aggregate's order like commits, and are delivered with
// their error as cause, for the dispatcher to apply the subscription's
// Corrupt policy; each is reported (an ERROR log and HookCorrupt) when it is
// delivered. An item whose version is not one of an order (KindBadVersion)
// is reported once and delivered out of order, or, when its version is not
// an integer at all, only reported.
//
// A version missing from the table holds its aggregate's later versions
// back, re-reading the table for it, until GapTimeout has passed since the
// gap was found; then the gap is reported (an ERROR log and HookGap) and the
// version after it delivered with a *GapError as cause. See docs/items.md.
//
// It is used by one source goroutine at a time; it is not safe for
// concurrent use.
type sequencer struct {
	sub     string
	reader  Reader
	hooks   *hooks
	log     *slog.Logger
	clock   func() time.Time
	max     int
	gapWait time.Duration

	aggs   map[string]*aggState
	lru    list.List            // of *aggState, least recently active first
	gapped map[string]*aggState // aggregates with commits held for a gap

	// floor: every commit at or before it is handled, unless it is one of
	// the late ones the checkpoint lists. It rises when an aggregate is
	// forgotten, to that aggregate's last position.
	floor store.Position

	// unordered remembers the items with a bad version already reported.
	unordered map[unorderedKey]bool
}

type unorderedKey struct{ aggregateID, version string }

// maxUnordered bounds the memory of reported items with a bad version; past
// it, they may be reported again.
const maxUnordered = 10_000

type aggState struct {
	id   string
	next int64          // next version to deliver
	last store.Position // position of the last delivered commit
	elem *list.Element

	held     []heldItem // versions after a gap, in version order
	gapSince time.Time  // when the gap before held[0] was found
	checked  time.Time  // when the table was last read for it
}

// seqItem is what a sequencer orders: a commit, or with cause (a
// *store.DecodeError) an item that is not a well-formed one.
type seqItem struct {
	c     Commit
	cause error
}

type heldItem struct {
	seqItem
	to sink
}

// sink is where a sequencer sends what a source offered.
type sink struct {
	// owner identifies the source: what it left held is dropped when it
	// stops (dropHeld).
	owner any
	// hold records that c is held for a gap: the source keeps its
	// checkpoint before c. nil: nothing to record.
	hold func(Commit)
	// emit hands c to the dispatcher, with cause when it is not a commit
	// to hand to the handler as it is (see emitFunc).
	emit func(c Commit, cause error) error
}

func newSequencer(w *Worker, s Subscription, floor store.Position) *sequencer {
	return &sequencer{sub: s.Name, reader: w.cfg.Reader, hooks: &w.hooks, log: w.log, clock: w.cfg.Clock,
		max: s.MaxTrackedAggregates, gapWait: s.GapTimeout, aggs: map[string]*aggState{}, gapped: map[string]*aggState{}, floor: floor}
}

// readItem returns the item a read gave: a commit, or an item that is not a
// well-formed commit (ok false: err is another error).
func readItem(c Commit, err error) (seqItem, bool) {
	if err == nil {
		return seqItem{c: c}, true
	}
	var de *store.DecodeError
	if !errors.As(err, &de) || de.AggregateID == "" {
		return seqItem{}, false
	}
	c = de.Commit
	if c.Events != nil && !json.Valid(c.Events) {
		// Kept as a JSON string of the text as stored, so that the parked
		// item can be listed and handed on as JSON.
		c.Events, _ = json.Marshal(string(c.Events)) // a string always marshals
	}
	return seqItem{c: c, cause: de}, true
}

// unordered reports whether it has no place in its aggregate's order: its
// version is not one from 0 to store.MaxVersion.
func (it seqItem) unordered() bool {
	var de *store.DecodeError
	return errors.As(it.cause, &de) && de.Kind == store.KindBadVersion
}

// placeless reports whether it has no position in the commit order: its
// commit id is missing or malformed.
func (it seqItem) placeless() bool {
	var de *store.DecodeError
	return errors.As(it.cause, &de) && (de.Kind == store.KindMissingCommitID || de.Kind == store.KindMalformedCommitID)
}

// offer takes an item a source read and delivers, through to, it and any
// missing versions before it, in order, or holds it while a version before
// it is missing. It reports whether the item was taken (false: already
// delivered). A commit already delivered is reported as a duplicate unless
// reread says the source reads every commit twice on purpose (the index
// sweep). An error (a failed repair query, or emit's) means nothing past
// the items already emitted happened; the source reads it again later.
func (q *sequencer) offer(ctx context.Context, it seqItem, reread bool, to sink) (bool, error) {
	if it.unordered() {
		return q.offerUnordered(it, to)
	}
	c := it.c
	st := q.aggs[c.AggregateID]
	switch {
	case st != nil && c.Version < st.next:
		if !reread && it.cause == nil {
			for _, h := range q.hooks.duplicate {
				h.OnDuplicate(q.sub, c)
			}
		}
		return false, nil
	case st != nil && len(st.held) > 0:
		if q.hold(st, []seqItem{it}, to) == 0 {
			return false, nil
		}
		return true, q.deliverHeld(st) // it may be the missing version
	case st != nil && c.Version == st.next:
		return true, q.deliver(st, it, to)
	case st != nil:
		found, err := q.fetch(ctx, c.AggregateID, st.next, c.Version, to)
		if err != nil {
			return false, err
		}
		for _, h := range q.hooks.gap {
			h.OnGapRepair(q.sub, c.AggregateID, st.next, c.Version, len(found))
		}
		return true, q.place(st, append(found, it), to)
	case c.Version == 0:
		return true, q.deliver(q.state(c.AggregateID, 0), it, to)
	}
	from, found, err := q.predecessors(ctx, it, to)
	if err != nil {
		return false, err
	}
	if from < c.Version {
		for _, h := range q.hooks.gap {
			h.OnGapRepair(q.sub, c.AggregateID, from, c.Version, len(found))
		}
	}
	return true, q.place(q.state(c.AggregateID, from), append(found, it), to)
}

// offerUnordered reports an item with a bad version, once, and delivers it
// out of order when its version is an integer the park store can hold.
func (q *sequencer) offerUnordered(it seqItem, to sink) (bool, error) {
	de := it.cause.(*store.DecodeError)
	k := unorderedKey{de.AggregateID, de.Version}
	if q.unordered[k] {
		return false, nil
	}
	if v, err := strconv.ParseInt(de.Version, 10, 64); err == nil && v > store.MaxVersion {
		if err := to.emit(it.c, it.cause); err != nil {
			return false, err
		}
	}
	if q.unordered == nil || len(q.unordered) >= maxUnordered {
		q.unordered = map[unorderedKey]bool{}
	}
	q.unordered[k] = true
	q.report(de)
	return false, nil
}

// state returns the aggregate's state, made with next if new.
func (q *sequencer) state(id string, next int64) *aggState {
	st := q.aggs[id]
	if st == nil {
		st = &aggState{id: id, next: next}
		st.elem = q.lru.PushBack(st)
		q.aggs[id] = st
	}
	return st
}

// place delivers items (sorted here) from the aggregate's next version on
// while they follow one another, and holds the rest behind the gap.
func (q *sequencer) place(st *aggState, items []seqItem, to sink) error {
	slices.SortStableFunc(items, func(a, b seqItem) int { return cmpVersion(a.c.Version, b.c.Version) })
	for len(items) > 0 && items[0].c.Version <= st.next {
		if items[0].c.Version == st.next {
			if err := q.deliver(st, items[0], to); err != nil {
				return err
			}
		}
		items = items[1:]
	}
	q.hold(st, items, to)
	return nil
}

// hold adds items to the aggregate's held ones, each version once, and
// returns how many it added. A new gap is timed from now.
func (q *sequencer) hold(st *aggState, items []seqItem, to sink) int {
	n := 0
	for _, it := range items {
		if it.c.Version < st.next {
			continue
		}
		i, found := slices.BinarySearchFunc(st.held, it.c.Version, func(h heldItem, v int64) int { return cmpVersion(h.c.Version, v) })
		if found {
			continue
		}
		st.held = slices.Insert(st.held, i, heldItem{seqItem: it, to: to})
		if to.hold != nil {
			to.hold(it.c)
		}
		n++
	}
	if n > 0 && st.gapSince.IsZero() {
		now := q.clock()
		st.gapSince, st.checked = now, now
		q.gapped[st.id] = st
		q.log.Warn("a version is missing from the table; holding the aggregate's later versions until it comes or the gap timeout passes",
			"subscription", q.sub, "aggregate", st.id, "missing", st.next, "held", st.held[0].c.Version, "gapTimeout", q.gapWait)
	}
	return n
}

func cmpVersion(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (q *sequencer) deliver(st *aggState, it seqItem, to sink) error {
	if err := to.emit(it.c, it.cause); err != nil {
		return err
	}
	q.lru.MoveToBack(st.elem)
	st.next = max(st.next, it.c.Version+1) // Version ≤ store.MaxVersion: no overflow
	if de, ok := it.cause.(*store.DecodeError); ok {
		// Its commit id may place it anywhere (a year ahead, "garbage"):
		// it does not count as the aggregate's last position, which
		// decides when the aggregate may be forgotten.
		q.report(de)
		return nil
	}
	if p := it.c.Position(); p.Compare(st.last) > 0 {
		st.last = p
	}
	return nil
}

// report logs and counts an item that is not a well-formed commit.
func (q *sequencer) report(de *store.DecodeError) {
	q.log.Error("item in the commits table is not a well-formed commit", "subscription", q.sub,
		"aggregate", de.AggregateID, "version", de.Version, "kind", string(de.Kind), "commitId", de.CommitID, "err", de.Err)
	for _, h := range q.hooks.corrupt {
		h.OnCorrupt(q.sub, de)
	}
}

// recheck reads the table again for the gaps of aggregates holding
// versions back, at most every gapCheckEvery, delivering what the gaps'
// versions free, and handles each gap found GapTimeout ago or more as
// unfillable. Versions read from the table go to to.
func (q *sequencer) recheck(ctx context.Context, to sink) error {
	now := q.clock()
	for _, st := range q.gapped {
		due := now.Sub(st.gapSince) >= q.gapWait
		if !due && now.Sub(st.checked) < q.gapCheckEvery() {
			continue
		}
		if err := q.resolve(ctx, st, now, due, to); err != nil {
			return err
		}
	}
	return nil
}

// gapCheckEvery is how often the table is read again for a gap.
func (q *sequencer) gapCheckEvery() time.Duration {
	return max(q.gapWait/8, 50*time.Millisecond)
}

// resolve delivers an aggregate's held versions as far as the table fills
// their gaps, and, with unfillable, across the gaps it does not fill.
func (q *sequencer) resolve(ctx context.Context, st *aggState, now time.Time, unfillable bool, to sink) error {
	for len(st.held) > 0 {
		if err := q.deliverHeld(st); err != nil || len(st.held) == 0 {
			return err
		}
		first := st.held[0]
		found, err := q.fetch(ctx, st.id, st.next, first.c.Version, to)
		if err != nil {
			return err
		}
		st.checked = now
		if q.hold(st, found, to) > 0 {
			continue
		}
		if !unfillable {
			return nil
		}
		gap := &GapError{AggregateID: st.id, From: st.next, To: first.c.Version, Waited: now.Sub(st.gapSince)}
		q.log.Error("versions missing from the table: the gap cannot be filled", "subscription", q.sub,
			"aggregate", st.id, "fromVersion", gap.From, "toVersion", gap.To-1, "waited", gap.Waited, "next", first.c.Version)
		for _, h := range q.hooks.gapFailed {
			h.OnGap(q.sub, st.id, gap.From, gap.To)
		}
		cause := first.cause
		if cause == nil {
			cause = gap
		}
		if err := q.deliver(st, seqItem{c: first.c, cause: cause}, first.to); err != nil {
			return err
		}
		st.held = st.held[1:]
	}
	q.ungap(st)
	return nil
}

// deliverHeld delivers the held versions that follow on from the next one,
// without reading the table; the gap is closed once none is held.
func (q *sequencer) deliverHeld(st *aggState) error {
	for len(st.held) > 0 && st.held[0].c.Version <= st.next {
		if first := st.held[0]; first.c.Version == st.next {
			if err := q.deliver(st, first.seqItem, first.to); err != nil {
				return err
			}
		}
		st.held = st.held[1:]
	}
	if len(st.held) == 0 {
		q.ungap(st)
	}
	return nil
}

// ungap forgets the aggregate's gap: it holds nothing.
func (q *sequencer) ungap(st *aggState) {
	st.held, st.gapSince = nil, time.Time{}
	delete(q.gapped, st.id)
}

// holding returns how many items owner left held.
func (q *sequencer) holding(owner any) int {
	n := 0
	for _, st := range q.gapped {
		for _, h := range st.held {
			if h.to.owner == owner {
				n++
			}
		}
	}
	return n
}

// dropHeld forgets the items owner left held (the source stopped and reads
// them again), and the gaps nothing holds any more.
func (q *sequencer) dropHeld(owner any) {
	for _, st := range q.gapped {
		st.held = slices.DeleteFunc(st.held, func(h heldItem) bool { return h.to.owner == owner })
		if len(st.held) == 0 {
			q.ungap(st)
		}
	}
}

// known records, from a checkpoint, that an aggregate's versions below next
// were handled, the last of them at or before last.
func (q *sequencer) known(id string, next int64, last store.Position) {
	st := &aggState{id: id, next: next, last: last}
	st.elem = q.lru.PushBack(st)
	q.aggs[id] = st
}

// fetch reads versions [from, to) of an aggregate from the table: commits
// and items that are not well-formed ones, in version order. Items with a
// bad version are offered as they are met.
func (q *sequencer) fetch(ctx context.Context, id string, from, to int64, dst sink) ([]seqItem, error) {
	var out []seqItem
	for c, err := range q.reader.Query(ctx, id, from, func(o *store.QueryOptions) { o.ToVersion = to }) {
		it, ok := readItem(c, err)
		if !ok {
			return nil, fmt.Errorf("subscribe: repair %q versions %d to %d: %w", id, from, to-1, err)
		}
		if it.unordered() {
			if _, err := q.offerUnordered(it, dst); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, it)
	}
	return out, nil
}

// predecessors returns, in version order, the versions before it of an
// aggregate this sequencer does not know whose positions lie after the
// floor (those were not delivered), and the version from which they were
// expected: the one after the last at or before the floor, or 0. An item
// without a position of its own (its commit id missing or malformed) is
// taken as not delivered.
func (q *sequencer) predecessors(ctx context.Context, it seqItem, dst sink) (int64, []seqItem, error) {
	c := it.c
	var out []seqItem
	from := int64(0)
	for p, err := range q.reader.Query(ctx, c.AggregateID, 0, func(o *store.QueryOptions) {
		o.ToVersion, o.Backward, o.PageSize = c.Version, true, 4
	}) {
		pi, ok := readItem(p, err)
		if !ok {
			return 0, nil, fmt.Errorf("subscribe: check versions before %q version %d: %w", c.AggregateID, c.Version, err)
		}
		if pi.unordered() {
			if _, err := q.offerUnordered(pi, dst); err != nil {
				return 0, nil, err
			}
			continue
		}
		if !pi.placeless() && pi.c.Position().Compare(q.floor) <= 0 {
			from = pi.c.Version + 1
			break
		}
		out = append(out, pi)
	}
	slices.Reverse(out)
	return from, out, nil
}

// forget drops the least recently active aggregates beyond max whose last
// delivered position is before keepFrom (commits after it may still be read
// again) and that hold nothing for a gap, raising the floor to their last
// positions.
func (q *sequencer) forget(keepFrom store.Position) {
	for e := q.lru.Front(); e != nil && len(q.aggs) > q.max; {
		st := e.Value.(*aggState)
		if st.last.Compare(keepFrom) >= 0 {
			return
		}
		next := e.Next()
		if len(st.held) == 0 {
			q.lru.Remove(e)
			delete(q.aggs, st.id)
			if st.last.Compare(q.floor) > 0 {
				q.floor = st.last
			}
		}
		e = next
	}
}
