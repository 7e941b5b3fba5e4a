package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Side is one side of a comparison: what it did and what it cost.
//
// Its Rate comes from the median time of an operation, not the mean: the
// emulator is a Java process whose garbage collection pauses now and then
// stall whichever operation is running, and a few such outliers landing on
// one side move a mean by ±20% between two runs of the very same code. The
// median does not see them; MeanRate, which does, is kept too.
type Side struct {
	// Ops is how many operations were measured, and Commits how many
	// commits they handled in all.
	Ops     int `json:"ops"`
	Commits int `json:"commits"`
	// Seconds is the time the operations took, summed.
	Seconds float64 `json:"seconds"`
	// MedianMillis is the median time of one operation, in milliseconds.
	MedianMillis float64 `json:"medianMillis"`
	// Rate is the commits per second at the median operation time: the
	// commits an operation handles (times the operations in flight, for a
	// concurrent run) over MedianMillis.
	Rate float64 `json:"commitsPerSecond"`
	// MeanRate is the same at the mean operation time.
	MeanRate float64 `json:"meanCommitsPerSecond"`
	// AllocsPerCommit is the heap allocations per commit of one operation
	// run alone, from runtime.MemStats (0 when not measured: the original
	// package runs in node).
	AllocsPerCommit float64 `json:"allocsPerCommit,omitempty"`
	// CPUPerCommit is this process's CPU time (user and system) per commit,
	// in microseconds, summed over the measured operations (0 when not
	// measured: concurrent runs, and the original package).
	CPUPerCommit float64 `json:"cpuMicrosPerCommit,omitempty"`

	times []time.Duration
}

// record adds the time of one operation.
func (s *Side) record(d time.Duration) { s.times = append(s.times, d) }

// finish computes the figures from the recorded times: each operation
// handled perOp commits, with inFlight operations running at once.
func (s *Side) finish(perOp, inFlight int) {
	s.Ops = len(s.times)
	s.Commits = s.Ops * perOp
	if s.Ops == 0 {
		return
	}
	var sum time.Duration
	for _, d := range s.times {
		sum += d
	}
	s.Seconds = sum.Seconds()
	med := percentile(sortDurations(slices.Clone(s.times)), 50)
	s.MedianMillis = float64(med.Microseconds()) / 1000
	if med > 0 {
		s.Rate = float64(perOp*inFlight) / med.Seconds()
	}
	if sum > 0 {
		s.MeanRate = float64(s.Commits*inFlight) / sum.Seconds()
	}
}

// Pair is a comparison of the store with a baseline measured side by side
// in one run.
type Pair struct {
	// Name says what was measured.
	Name string `json:"name"`
	// Store is the Go store's side (or the worker's).
	Store Side `json:"store"`
	// Base is the baseline: the bare SDK, or the original package.
	Base Side `json:"base"`
	// Ratio is Store.Rate / Base.Rate: 1 is parity, above 1 the store is
	// faster. MeanRatio is the same from the mean rates.
	Ratio     float64 `json:"ratio"`
	MeanRatio float64 `json:"meanRatio"`
}

func (p *Pair) finish(perOp, inFlight int) {
	p.Store.finish(perOp, inFlight)
	p.Base.finish(perOp, inFlight)
	if p.Base.Rate > 0 {
		p.Ratio = p.Store.Rate / p.Base.Rate
	}
	if p.Base.MeanRate > 0 {
		p.MeanRatio = p.Store.MeanRate / p.Base.MeanRate
	}
}

// cpuTime returns this process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// interleave runs a and b alternately, op by op, after warmup rounds of
// both, for rounds rounds, swapping which goes first every round, records
// each op's time in sa and sb, and sets their CPU per commit. Each op
// handles perOp commits. Call Pair.finish afterwards.
func interleave(ctx context.Context, warmup, rounds, perOp int, sa, sb *Side, a, b func() error) error {
	for range warmup {
		if err := a(); err != nil {
			return err
		}
		if err := b(); err != nil {
			return err
		}
	}
	var cpuA, cpuB time.Duration
	run := func(op func() error, s *Side, cpu *time.Duration) error {
		c0, t0 := cpuTime(), time.Now()
		err := op()
		s.record(time.Since(t0))
		*cpu += cpuTime() - c0
		return err
	}
	for i := range rounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		first, second := func() error { return run(a, sa, &cpuA) }, func() error { return run(b, sb, &cpuB) }
		if i%2 == 1 {
			first, second = second, first
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	n := float64(rounds * perOp)
	sa.CPUPerCommit = float64(cpuA.Microseconds()) / n
	sb.CPUPerCommit = float64(cpuB.Microseconds()) / n
	return nil
}

// allocsPerCommit runs op once to warm it, then runs times times and
// returns the mean heap allocations per commit (op handles perOp commits),
// as testing.AllocsPerRun does. Background goroutines of the HTTP transport
// that serve op are counted with it, which is what op costs.
func allocsPerCommit(runs, perOp int, op func() error) (float64, error) {
	if err := op(); err != nil {
		return 0, err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if err := op(); err != nil {
			return 0, err
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs*perOp), nil
}

// measureAllocs fills the AllocsPerCommit of both sides of p.
func measureAllocs(runs, perOp int, p *Pair, a, b func() error) error {
	var err error
	if p.Store.AllocsPerCommit, err = allocsPerCommit(runs, perOp, a); err != nil {
		return err
	}
	p.Base.AllocsPerCommit, err = allocsPerCommit(runs, perOp, b)
	return err
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted values by
// the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// heapSampler follows the live heap, as marked by each garbage collection
// (runtime/metrics /gc/heap/live:bytes), every millisecond and keeps its
// peak. While it runs, the collector runs whenever the heap has grown 5%
// (GOGC=5), so that what it marks live follows what the code holds closely
// instead of the garbage the default pacing lets pile up. That slows the
// code measured: use it apart from timed runs.
type heapSampler struct {
	base    uint64
	oldGOGC int
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	peak    uint64
	sample  []metrics.Sample
}

const liveHeapMetric = "/gc/heap/live:bytes"

// startHeapSampler collects garbage, notes the live heap as the baseline and
// starts sampling.
func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), sample: []metrics.Sample{{Name: liveHeapMetric}}}
	h.oldGOGC = debug.SetGCPercent(5)
	runtime.GC()
	h.base = h.read()
	h.peak = h.base
	h.done.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			v := h.read()
			h.mu.Lock()
			h.peak = max(h.peak, v)
			h.mu.Unlock()
		}
	})
	return h
}

func (h *heapSampler) read() uint64 {
	metrics.Read(h.sample)
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return h.sample[0].Value.Uint64()
}

// finish stops sampling, restores GOGC and returns the baseline and the
// peak, in bytes.
func (h *heapSampler) finish() (base, peak uint64) {
	close(h.stop)
	h.done.Wait()
	debug.SetGCPercent(h.oldGOGC)
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.base, h.peak
}

// within runs f with a deadline, so that a stuck emulator fails the run
// instead of hanging it.
func within(ctx context.Context, d time.Duration, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := f(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench: %s: not done within %v: %w", what, d, err)
		}
		return err
	}
	return nil
}

// sortDurations sorts and returns ds.
func sortDurations(ds []time.Duration) []time.Duration {
	slices.Sort(ds)
	return ds
}
