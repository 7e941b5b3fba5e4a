package subscribe

import (
	"container/heap"
	"slices"
	"sync"

	"github.com/dynamodb-event-store/eventstore/store"
)

// tracker follows the commits a position-ordered source has emitted until
// they are handled, and computes the checkpoint:
//
//   - a base position B: every emitted commit at or before B is handled,
//     except the late ones listed as pending (commits emitted after B had
//     passed them: late arrivals and repairs), which a restart delivers
//     first. B never moves backwards.
//   - the sweep position S (at most B), from which a restart re-reads for
//     late arrivals;
//   - for each aggregate handled after S, the next version to handle: a
//     restart drops versions below it as handled (so one slow handler does
//     not make everything handled after it come again) and knows which late
//     versions it has not delivered.
//
// It is safe for concurrent use: the source emits, handlers complete.
type tracker struct {
	mu       sync.Mutex
	base     store.Position         // the saved B
	frontier store.Position         // the source has emitted everything visible up to here
	sweep    store.Position         // the source's sweep cursor
	open     posHeap                // emitted, not handled, after base
	below    map[store.Position]int // emitted, not handled, at or before base: count
	aggs     map[string]handledAgg  // handled progress of aggregates active after the sweep position
	ages     map[store.Position]int64
	held     map[store.Position]bool // recorded by hold, not emitted yet
	// keep, if set, returns a position before which aggregates' progress
	// may be forgotten even when after the sweep position is not: the
	// stream taking over from an index catch-up learns from marksAfter
	// the aggregates handled within its Margin, which the sweep may have
	// passed. Set before the source runs.
	keep func() store.Position
}

// handledAgg is one aggregate's handled progress.
type handledAgg struct {
	next int64          // every version below it is handled
	last store.Position // position of the last handled
}

// moved returns a moved on past c, handled. A version above
// store.MaxVersion has no place in the aggregate's order (an item reported
// as corrupt): it moves nothing, and cannot overflow next.
func (a handledAgg) moved(c Commit) handledAgg {
	if c.Version > store.MaxVersion {
		return a
	}
	a.next = max(a.next, c.Version+1)
	if p := c.Position(); p.Compare(a.last) > 0 {
		a.last = p
	}
	return a
}

// maxListedAggregates caps the aggregates a checkpoint lists, at about 100
// bytes each: those with the oldest activity are left out first, and their
// commits after the sweep position may come again after a crash.
const maxListedAggregates = 2000

func newTracker(base, sweep store.Position, aggs map[string]handledAgg) *tracker {
	if aggs == nil {
		aggs = map[string]handledAgg{}
	}
	return &tracker{base: base, frontier: base, sweep: sweep, below: map[store.Position]int{}, aggs: aggs, ages: map[store.Position]int64{}}
}

// hold records a commit held back for a gap before it: it counts as emitted
// and not handled (the checkpoint stays before it) until handled; its
// emission later is not recorded again.
func (t *tracker) hold(c Commit) {
	t.emitted(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held == nil {
		t.held = map[store.Position]bool{}
	}
	t.held[c.Position()] = true
}

// emitted records a commit handed to the handlers.
func (t *tracker) emitted(c Commit) {
	p := c.Position()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[p] {
		delete(t.held, p)
		return
	}
	if p.Compare(t.base) <= 0 {
		t.below[p]++
	} else {
		heap.Push(&t.open, p)
	}
	t.ages[p] = c.CommittedAt
}

// handled records that a commit emitted earlier is done with.
func (t *tracker) handled(c Commit) {
	p := c.Position()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ages, p)
	t.aggs[c.AggregateID] = t.aggs[c.AggregateID].moved(c)
	if n, ok := t.below[p]; ok {
		if n <= 1 {
			delete(t.below, p)
		} else {
			t.below[p] = n - 1
		}
		return
	}
	t.open.done(p)
}

// noteHandled records a commit handled that another source emitted (the
// stream, while it takes over): a restart from this checkpoint must know the
// aggregate moved on.
func (t *tracker) noteHandled(c Commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.aggs[c.AggregateID] = t.aggs[c.AggregateID].moved(c)
}

// marksAfter returns the handled progress of the aggregates whose last
// handled commit lies after p.
func (t *tracker) marksAfter(p store.Position) map[string]handledAgg {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]handledAgg{}
	for id, a := range t.aggs {
		if a.last.Compare(p) > 0 {
			out[id] = a
		}
	}
	return out
}

// swept records the sweep cursor.
func (t *tracker) swept(p store.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Compare(t.sweep) > 0 {
		t.sweep = p
	}
}

// advance records that the source has emitted every visible commit up to p.
func (t *tracker) advance(p store.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Compare(t.frontier) > 0 {
		t.frontier = p
	}
}

// checkpoint returns the state to save and makes its base the new one:
// call it only for a checkpoint about to be saved.
func (t *tracker) checkpoint() indexCheckpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open.prune()
	b := t.frontier
	if len(t.open.items) > 0 {
		if m := before(t.open.items[0]); m.Compare(b) < 0 {
			b = m
		}
	}
	if b.Compare(t.base) > 0 {
		t.base = b
	}
	cp := indexCheckpoint{After: t.base, Sweep: t.sweep}
	if cp.Sweep.Compare(cp.After) > 0 {
		cp.Sweep = cp.After
	}
	for p := range t.below {
		cp.Pending = append(cp.Pending, p)
	}
	slices.SortFunc(cp.Pending, store.Position.Compare)
	type entry struct {
		id string
		handledAgg
	}
	forget := cp.Sweep
	if t.keep != nil {
		if k := t.keep(); k.Compare(forget) < 0 {
			forget = k
		}
	}
	var active []entry
	for id, a := range t.aggs {
		if a.last.Compare(cp.Sweep) <= 0 {
			if a.last.Compare(forget) <= 0 {
				delete(t.aggs, id) // a restart re-reads nothing of it
			}
			continue
		}
		active = append(active, entry{id, a})
	}
	if len(active) > maxListedAggregates {
		slices.SortFunc(active, func(x, y entry) int { return y.last.Compare(x.last) })
		active = active[:maxListedAggregates]
	}
	if len(active) > 0 {
		cp.Aggregates = make(map[string]aggregateMark, len(active))
		for _, e := range active {
			cp.Aggregates[e.id] = aggregateMark{Next: e.next, LastCommitID: e.last.CommitID, LastVersion: e.last.Version}
		}
	}
	return cp
}

// inFlight returns the commits emitted and not handled, and the commit time
// (Unix ms) of the oldest of them, 0 if none.
func (t *tracker) inFlight() (int, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	oldest := int64(0)
	for _, at := range t.ages {
		if oldest == 0 || at < oldest {
			oldest = at
		}
	}
	return len(t.ages), oldest
}

// before returns the position just before p: scanning after it includes p.
func before(p store.Position) store.Position {
	p.Version--
	return p
}

// posHeap is a min-heap of positions with lazy removal of handled ones.
type posHeap struct {
	items []store.Position
	gone  map[store.Position]int
}

func (h *posHeap) Len() int           { return len(h.items) }
func (h *posHeap) Less(i, j int) bool { return h.items[i].Compare(h.items[j]) < 0 }
func (h *posHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *posHeap) Push(x any)         { h.items = append(h.items, x.(store.Position)) }
func (h *posHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

func (h *posHeap) done(p store.Position) {
	if h.gone == nil {
		h.gone = map[store.Position]int{}
	}
	h.gone[p]++
	h.prune()
}

// prune pops handled positions off the top.
func (h *posHeap) prune() {
	for len(h.items) > 0 {
		top := h.items[0]
		n := h.gone[top]
		if n == 0 {
			return
		}
		if n == 1 {
			delete(h.gone, top)
		} else {
			h.gone[top] = n - 1
		}
		heap.Pop(h)
	}
}
