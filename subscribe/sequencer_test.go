package subscribe

import (
	"context"
	"errors"
	"iter"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// mapReader is a table in memory: Query reads it, in version order.
type mapReader struct {
	mu    sync.Mutex
	items map[string]map[int64]seqItem
}

func (r *mapReader) put(it seqItem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.items == nil {
		r.items = map[string]map[int64]seqItem{}
	}
	if r.items[it.c.AggregateID] == nil {
		r.items[it.c.AggregateID] = map[int64]seqItem{}
	}
	r.items[it.c.AggregateID][it.c.Version] = it
}

func (r *mapReader) Scan(context.Context, store.Position, ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error] {
	return func(func(store.Commit, error) bool) {}
}

func (r *mapReader) Query(_ context.Context, id string, from int64, optFns ...func(*store.QueryOptions)) iter.Seq2[store.Commit, error] {
	var o store.QueryOptions
	for _, fn := range optFns {
		fn(&o)
	}
	r.mu.Lock()
	var out []seqItem
	for v, it := range r.items[id] {
		if v >= from && (o.ToVersion == 0 || v < o.ToVersion) {
			out = append(out, it)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b seqItem) int { return cmpVersion(a.c.Version, b.c.Version) })
	if o.Backward {
		slices.Reverse(out)
	}
	return func(yield func(store.Commit, error) bool) {
		for _, it := range out {
			if !yield(it.c, it.cause) {
				return
			}
		}
	}
}

// seqHarness is a sequencer on a mapReader with a clock the test moves,
// recording what it emits and holds.
type seqHarness struct {
	r       *mapReader
	now     time.Time
	q       *sequencer
	emitted []string // "agg#v" plus " gap" or " corrupt"
	held    []string
	rep     *faultReports
}

func newSeqHarness(t *testing.T, sub Subscription) *seqHarness {
	t.Helper()
	h := &seqHarness{r: &mapReader{}, now: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), rep: &faultReports{}}
	w, err := NewWorker(Config{Reader: h.r, Checkpoints: memcheckpoint.New(), Clock: func() time.Time { return h.now }, Hooks: []any{h.rep}})
	if err != nil {
		t.Fatal(err)
	}
	sub.Name = "seq"
	h.q = newSequencer(w, sub.withDefaults(), store.Position{})
	return h
}

func (h *seqHarness) sink() sink {
	return sink{
		hold: func(c Commit) { h.held = append(h.held, commitKey(c)) },
		emit: func(c Commit, cause error) error {
			k := commitKey(c)
			var gap *GapError
			var de *store.DecodeError
			switch {
			case errors.As(cause, &gap):
				k += " gap"
			case errors.As(cause, &de):
				k += " corrupt"
			}
			h.emitted = append(h.emitted, k)
			return nil
		},
	}
}

func (h *seqHarness) commit(id string, v int64) seqItem {
	c := Commit{AggregateID: id, Version: v, CommitID: store.FormatCommitID(h.now.UnixMilli(), id), CommittedAt: h.now.UnixMilli()}
	return seqItem{c: c}
}

func (h *seqHarness) offer(t *testing.T, it seqItem) {
	t.Helper()
	if _, err := h.q.offer(context.Background(), it, false, h.sink()); err != nil {
		t.Fatal(err)
	}
}

func (h *seqHarness) recheck(t *testing.T) {
	t.Helper()
	if err := h.q.recheck(context.Background(), h.sink()); err != nil {
		t.Fatal(err)
	}
}

func (h *seqHarness) want(t *testing.T, emitted ...string) {
	t.Helper()
	if !slices.Equal(h.emitted, emitted) {
		t.Fatalf("emitted %q, want %q", h.emitted, emitted)
	}
}

// TestGapTimeoutDefault: with the default GapTimeout (30 s, tested here by
// its value and its effect under a clock the test moves), versions after a
// version missing from the table are held, not delivered across, until 30 s
// have passed; then the gap is reported and the version after it emitted
// with a *GapError, the next in order after it.
func TestGapTimeoutDefault(t *testing.T) {
	if got := (Subscription{}).withDefaults().GapTimeout; got != 30*time.Second {
		t.Fatalf("default GapTimeout %v, want 30s", got)
	}
	h := newSeqHarness(t, Subscription{})
	for v := range int64(2) {
		h.r.put(h.commit("a", v))
		h.offer(t, h.commit("a", v))
	}
	h.r.put(h.commit("a", 3))
	h.r.put(h.commit("a", 4))
	h.offer(t, h.commit("a", 3)) // version 2 is not in the table
	h.offer(t, h.commit("a", 4))
	h.want(t, "a#0", "a#1")
	if !slices.Equal(h.held, []string{"a#3", "a#4"}) {
		t.Fatalf("held %v, want a#3 a#4 recorded as held", h.held)
	}
	for _, d := range []time.Duration{time.Second, 10 * time.Second, 29*time.Second + 999*time.Millisecond} {
		h.now = h.now.Add(d - h.since(t))
		h.recheck(t)
		h.want(t, "a#0", "a#1")
		if _, gaps := h.rep.counts(); gaps != 0 {
			t.Fatalf("gap reported after %v", d)
		}
	}
	h.now = h.now.Add(time.Millisecond)
	h.recheck(t)
	h.want(t, "a#0", "a#1", "a#3 gap", "a#4")
	if !slices.Equal(h.rep.gaps, []string{"a 2 3"}) {
		t.Fatalf("gaps reported %v, want a 2 3", h.rep.gaps)
	}
	// Nothing is held any more: the next version goes straight through.
	h.offer(t, h.commit("a", 5))
	h.want(t, "a#0", "a#1", "a#3 gap", "a#4", "a#5")
}

// since returns how long the first gap has been waited for.
func (h *seqHarness) since(t *testing.T) time.Duration {
	t.Helper()
	st := h.q.aggs["a"]
	if st == nil || st.gapSince.IsZero() {
		t.Fatal("no gap held")
	}
	return h.now.Sub(st.gapSince)
}

// TestGapFilledBeforeTimeout: a missing version written late (within
// GapTimeout) is read from the table at a recheck and delivered in order,
// with no gap reported.
func TestGapFilledBeforeTimeout(t *testing.T) {
	h := newSeqHarness(t, Subscription{GapTimeout: time.Minute})
	h.r.put(h.commit("a", 0))
	h.offer(t, h.commit("a", 0))
	h.r.put(h.commit("a", 2))
	h.offer(t, h.commit("a", 2))
	h.now = h.now.Add(10 * time.Second)
	h.recheck(t)
	h.want(t, "a#0")
	h.r.put(h.commit("a", 1)) // the slow writer's version
	h.now = h.now.Add(10 * time.Second)
	h.recheck(t)
	h.want(t, "a#0", "a#1", "a#2")
	// A missing version the source itself reads frees the held ones at
	// once, with no read of the table.
	h.offer(t, h.commit("b", 0))
	h.offer(t, h.commit("b", 2))
	h.offer(t, h.commit("b", 1))
	h.want(t, "a#0", "a#1", "a#2", "b#0", "b#1", "b#2")
	if c, g := h.rep.counts(); c != 0 || g != 0 {
		t.Fatalf("reported %d corrupt, %d gaps; want none", c, g)
	}
}

// TestCorruptMiddleVersion: a corrupt version read in a gap repair takes
// its place in order (emitted with its error, reported once); a version
// outside the order (2^63−1) is reported once, emitted once, and moves no
// counter, so that versions after it are not delivered again.
func TestCorruptMiddleVersion(t *testing.T) {
	h := newSeqHarness(t, Subscription{})
	bad := h.commit("a", 1)
	bad.cause = &store.DecodeError{AggregateID: "a", Version: "1", Kind: store.KindEventsNotArray, Commit: bad.c}
	h.r.put(h.commit("a", 0))
	h.r.put(bad)
	h.r.put(h.commit("a", 2))
	h.offer(t, h.commit("a", 0))
	h.offer(t, h.commit("a", 2)) // version 1 comes from the table, corrupt
	h.offer(t, bad)              // and again from the source: dropped
	h.want(t, "a#0", "a#1 corrupt", "a#2")

	huge := h.commit("a", math.MaxInt64)
	huge.cause = &store.DecodeError{AggregateID: "a", Version: "9223372036854775807", Kind: store.KindBadVersion, Commit: huge.c}
	h.offer(t, huge)
	h.offer(t, huge)
	h.offer(t, h.commit("a", 3))
	h.offer(t, h.commit("a", 3))
	h.want(t, "a#0", "a#1 corrupt", "a#2", "a#9223372036854775807 corrupt", "a#3")
	if c, _ := h.rep.counts(); c != 2 {
		t.Fatalf("%d reports, want 2 (version 1 and 2^63-1, once each)", c)
	}
	if next := h.q.aggs["a"].next; next != 4 {
		t.Fatalf("next version %d, want 4", next)
	}
	a := handledAgg{next: 4}.moved(huge.c)
	if a.next != 4 {
		t.Fatalf("handling version 2^63-1 moved the next version to %d", a.next)
	}
}
