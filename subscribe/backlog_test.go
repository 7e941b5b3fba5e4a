package subscribe

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// loadBacklog appends total commits carrying events over aggregates
// aggregates (backlog-0 …), version by version, in AppendAll transactions of
// up to 100 commits from four goroutines that own disjoint aggregates. It
// returns the versions per aggregate.
func loadBacklog(tb testing.TB, s *store.Store, total, aggregates int, events []byte) map[string]int64 {
	tb.Helper()
	const goroutines = 4
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			var mine []string
			for a := g; a < aggregates; a += goroutines {
				mine = append(mine, fmt.Sprintf("backlog-%d", a))
			}
			// This goroutine's share: the commits i ≡ a (mod aggregates)
			// of its aggregates a.
			n := 0
			for i := range total {
				if i%aggregates%goroutines == g {
					n++
				}
			}
			batch := make([]store.Commit, 0, store.MaxTransactionCommits)
			for i := range n {
				batch = append(batch, store.Commit{AggregateID: mine[i%len(mine)], Version: int64(i / len(mine)), Events: events})
				if len(batch) == cap(batch) || i == n-1 {
					if _, err := s.AppendAll(context.Background(), batch...); err != nil {
						errs <- err
						return
					}
					batch = batch[:0]
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	want := map[string]int64{}
	for i := range total {
		want[fmt.Sprintf("backlog-%d", i%aggregates)]++
	}
	return want
}

// backlogHeap reads the bytes of heap objects, live or not yet swept.
type backlogHeap struct{ s []metrics.Sample }

func newBacklogHeap() *backlogHeap {
	return &backlogHeap{s: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

func (h *backlogHeap) read() uint64 {
	metrics.Read(h.s)
	return h.s[0].Value.Uint64()
}

// backlogRun is what one catch-up measured.
type backlogRun struct {
	commits  int
	base     uint64 // heap after a GC, before the worker started
	peak     uint64 // highest heap sampled while catching up
	held     uint64 // live heap with the read-ahead full, after a GC
	inFlight int    // commits read and not handled then
	took     time.Duration
}

// catchUpMeasured catches up on a loaded backlog with a fresh subscription
// (MaxInFlight maxInFlight, 0 for the default), sampling the heap every
// 2 ms. Its handler first blocks, so that the source reads as far ahead as
// it may (a handler slower than the reader, in the extreme); once the
// read-ahead stops growing, the live heap is measured and the handler let
// go. It checks that every commit is delivered in per-aggregate order.
func catchUpMeasured(t *testing.T, s *store.Store, want map[string]int64, maxInFlight int) backlogRun {
	t.Helper()
	total := 0
	for _, n := range want {
		total += int(n)
	}
	rec := newRecorder()
	gate := make(chan struct{})
	var handled atomic.Int64
	h := HandlerFunc(func(ctx context.Context, c Commit) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		handled.Add(1)
		return rec.Handle(ctx, c)
	})
	w, err := NewWorker(Config{Reader: s, Checkpoints: memcheckpoint.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "backlog", Handler: h, Index: fast, MaxInFlight: maxInFlight}); err != nil {
		t.Fatal(err)
	}

	heap := newBacklogHeap()
	runtime.GC()
	run := backlogRun{commits: total, base: heap.read()}
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		hb := newBacklogHeap()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := hb.read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	t0 := time.Now()
	go func() { runErr <- w.Run(ctx) }()

	// Wait until the read-ahead has stopped growing for 300 ms.
	last, since := -1, time.Now()
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		n := w.Health()[0].InFlight
		if n != last {
			last, since = n, time.Now()
		}
		return n > 0 && time.Since(since) > 300*time.Millisecond
	}, "the read-ahead did not settle")
	runtime.GC()
	run.held, run.inFlight = heap.read(), last
	close(gate)

	ddbtest.Eventually(t, 60*time.Second, func() bool { return handled.Load() >= int64(total) },
		"the subscription did not catch up on %d commits", total)
	run.took = time.Since(t0)
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	close(stopSampling)
	<-sampled
	run.peak = peak.Load()
	rec.check(t, want)
	return run
}

// TestBacklogCatchUpKeepsMemoryFlat: catching up on a backlog four times
// larger does not take more memory, because the worker streams it, holding
// at most MaxInFlight commits read ahead (DESIGN.md §3, "bounded memory").
//
// Two tables hold 1,500 and 6,000 commits of about 2 KB over the same 60
// aggregates (so per-aggregate state is the same). Each is caught up on
// with the default MaxInFlight (1,000) while the heap is sampled; the
// handler holds back until the read-ahead is full, as a handler slower than
// the reader would. Both the peak heap and the live heap with the
// read-ahead full, above the heap at start, must stay within 1.25 times the
// smaller backlog's plus 3 MB: bounded, both backlogs peak near +7.5 MB and
// hold +3.5 MB. A worker that buffered the backlog fails both: with
// MaxInFlight raised to 100,000 below, the peaks were about +10 MB against
// +22 MB and the live heaps +3.5 MB against +13.5 to +20 MB (with -race
// too). The GC runs at GOGC=25 meanwhile, so that the heap sampled follows
// what is live.
func TestBacklogCatchUpKeepsMemoryFlat(t *testing.T) {
	const aggregates, small, large = 60, 1500, 6000
	const slack = 3 << 20 // bytes
	events := []byte(`[{"type":"note","text":"` + strings.Repeat("x", 2000) + `"}]`)
	tables := []*store.Store{newTable(t, store.Config{}), newTable(t, store.Config{})}
	wants := make([]map[string]int64, 2)
	var wg sync.WaitGroup
	for i, n := range []int{small, large} {
		wg.Go(func() { wants[i] = loadBacklog(t, tables[i], n, aggregates, events) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runs := make([]backlogRun, 2)
	for i := range runs {
		runs[i] = catchUpMeasured(t, tables[i], wants[i], 0)
		r := runs[i]
		t.Logf("%5d commits: caught up in %v; heap %.1f MB at start, peak +%.1f MB; read-ahead full at %d commits holding +%.1f MB live",
			r.commits, r.took.Round(time.Millisecond), backlogMB(r.base), backlogMB(r.peak-min(r.peak, r.base)), r.inFlight, backlogMB(r.held-min(r.held, r.base)))
	}
	// Peak heap over the whole catch-up, and live heap with the read-ahead
	// full, each above the heap at start: the larger backlog may take at
	// most 1.25 times as much as the smaller one, plus slack for GC timing
	// and page buffers.
	for _, m := range []struct {
		what string
		of   func(backlogRun) uint64
	}{
		{"peak heap", func(r backlogRun) uint64 { return r.peak }},
		{"live heap with the read-ahead full", func(r backlogRun) uint64 { return r.held }},
	} {
		got, ref := m.of(runs[1])-min(m.of(runs[1]), runs[1].base), m.of(runs[0])-min(m.of(runs[0]), runs[0].base)
		if limit := ref*5/4 + slack; got > limit {
			t.Errorf("%s grew %.1f MB for %d commits, over %.1f MB (1.25 × %.1f MB for %d commits + %.0f MB): memory grows with the backlog",
				m.what, backlogMB(got), large, backlogMB(limit), backlogMB(ref), small, backlogMB(slack))
		}
	}
}

func backlogMB(b uint64) float64 { return float64(b) / (1 << 20) }
