package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// WorkerResult is section 3: the subscription worker (index source, default
// options unless said otherwise, in-memory checkpoints, a no-op handler).
type WorkerResult struct {
	// Backlog commits over Aggregates aggregates, caught up Rounds times.
	Backlog    int `json:"backlog"`
	Aggregates int `json:"aggregates"`
	Rounds     int `json:"rounds"`
	// Catchup compares the worker delivering a backlog (Store: from Run to
	// the handler's last commit) with the bare SDK's paginated read of the
	// same backlog from the index (Base), interleaved round by round; an op
	// is a round.
	Catchup Pair `json:"catchup"`
	// CatchupWithSweep is the worker timed to the end of the poll that read
	// the backlog, which includes the sweep re-reading it for late arrivals
	// (IndexOptions.Overlap); commits appended meanwhile wait for it.
	// CatchupWithSweepRatio is its rate over the SDK read's.
	CatchupWithSweep      Side    `json:"catchupWithSweep"`
	CatchupWithSweepRatio float64 `json:"catchupWithSweepRatio"`
	// InMemory is the worker catching up on a backlog of the same size
	// read from memory (no DynamoDB): the worker's own ceiling, and its
	// CPU per commit (fresh read and sweep of each commit).
	InMemory Side `json:"inMemory"`
	// Live is the lag from append to handler at a steady write rate.
	Live LiveResult `json:"live"`
	// Heap is the peak live heap while catching up on two backlog sizes.
	Heap HeapResult `json:"heap"`
	// Stream is the stream source beside the index source: live lag and
	// requests, on a table with a stream.
	Stream StreamResult `json:"stream"`
}

// LiveResult is the lag from Append to the handler while commits flow.
type LiveResult struct {
	// Rate is the write rate achieved, in commits per second, over Commits
	// measured commits (those appended after the warm-up).
	Rate    float64 `json:"commitsPerSecond"`
	Commits int     `json:"commits"`
	// Settle and PollMin are the index options, in milliseconds.
	SettleMillis  float64 `json:"settleMillis"`
	PollMinMillis float64 `json:"pollMinMillis"`
	// P50Millis, P99Millis and MaxMillis are the lag from the commit's
	// CommittedAt (set by Append just before its PutItem) to the handler's
	// call, in milliseconds.
	P50Millis float64 `json:"p50Millis"`
	P99Millis float64 `json:"p99Millis"`
	MaxMillis float64 `json:"maxMillis"`
	// TargetMillis is the p99 the design aims at: Settle + PollMin + 250
	// ms. Met says whether P99Millis is within it.
	TargetMillis float64 `json:"targetMillis"`
	Met          bool    `json:"met"`
}

// HeapResult is the peak live heap while the worker catches up (see
// heapSampler), above the heap live before it started; the higher of two
// runs per backlog.
type HeapResult struct {
	SmallBacklog int `json:"smallBacklog"`
	LargeBacklog int `json:"largeBacklog"`
	// SmallPeakBytes and LargePeakBytes are the peaks above the baseline.
	SmallPeakBytes uint64 `json:"smallPeakBytes"`
	LargePeakBytes uint64 `json:"largePeakBytes"`
	// Ratio is LargePeakBytes / SmallPeakBytes: about 1 when memory stays
	// flat, the backlog ratio when the worker loads what it reads.
	Ratio float64 `json:"ratio"`
}

// liveIndex is the index tuning of the live measure; the design's target
// for it is p99 ≤ Settle + PollMin + 250 ms.
var liveIndex = subscribe.IndexOptions{Settle: time.Second, PollMin: 100 * time.Millisecond}

func worker(ctx context.Context, e *env, sz Sizes) (*WorkerResult, error) {
	res := &WorkerResult{Backlog: sz.Backlog, Aggregates: sz.BacklogAggregates, Rounds: sz.CatchupRounds}
	loader, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	// The backlog is an hour old, as a real backlog is: the worker reads it
	// at once (no settle wait); its sweep moves along with it.
	cfg, drop, err := e.table(ctx, loader, "backlog")
	if err != nil {
		return nil, err
	}
	defer drop()
	n, err := loadBacklog(ctx, loader, cfg, sz.Backlog, sz.BacklogAggregates)
	if err != nil {
		return nil, err
	}
	res.Backlog = n

	e.logf("catch-up: %d rounds of %d commits", sz.CatchupRounds, n)
	res.Catchup.Name = fmt.Sprintf("Catch-up, %s commits of %d aggregates", count(n), sz.BacklogAggregates)
	// Each side has its own client, warmed up by round -1.
	sdkClient, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	workerClient, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	for round := -1; round < sz.CatchupRounds; round++ { // round -1 warms up
		sdkRun := func() error {
			t0 := time.Now()
			err := expectRead(ctx, sdkClient, sdkScanInput(cfg.TableName), n)
			if round >= 0 {
				res.Catchup.Base.record(time.Since(t0))
			}
			return err
		}
		workerRun := func() error {
			r, err := catchUp(ctx, workerClient, cfg, n, false)
			if round >= 0 {
				res.Catchup.Store.record(r.delivered)
				res.CatchupWithSweep.record(r.polled)
			}
			return err
		}
		first, second := sdkRun, workerRun
		if round%2 != 0 {
			first, second = workerRun, sdkRun
		}
		if err := first(); err != nil {
			return nil, err
		}
		if err := second(); err != nil {
			return nil, err
		}
	}
	res.Catchup.finish(n, 1)
	res.CatchupWithSweep.finish(n, 1)
	if res.Catchup.Base.Rate > 0 {
		res.CatchupWithSweepRatio = res.CatchupWithSweep.Rate / res.Catchup.Base.Rate
	}

	// The same backlog from memory: what the worker itself costs.
	e.logf("catch-up from memory: %d rounds of %d commits", sz.CatchupRounds, n)
	mem := newMemReader(n, sz.BacklogAggregates)
	var cpu time.Duration
	for round := -1; round < sz.CatchupRounds; round++ {
		r, err := runCatchUp(ctx, mem, n, false)
		if err != nil {
			return nil, err
		}
		if round >= 0 {
			res.InMemory.record(r.delivered)
			cpu += r.cpu
		}
	}
	res.InMemory.finish(n, 1)
	res.InMemory.CPUPerCommit = float64(cpu.Microseconds()) / float64(n*sz.CatchupRounds)

	// Peak heap: this backlog, then a larger one, each caught up twice,
	// keeping the higher peak.
	e.logf("heap: catching up %d commits", n)
	small, err := peakHeap(ctx, workerClient, cfg, n)
	if err != nil {
		return nil, err
	}
	drop()
	lcfg, dropL, err := e.table(ctx, loader, "heap")
	if err != nil {
		return nil, err
	}
	defer dropL()
	ln, err := loadBacklog(ctx, loader, lcfg, sz.HeapBacklog, sz.BacklogAggregates)
	if err != nil {
		return nil, err
	}
	e.logf("heap: catching up %d commits", ln)
	large, err := peakHeap(ctx, workerClient, lcfg, ln)
	if err != nil {
		return nil, err
	}
	dropL()
	res.Heap = HeapResult{SmallBacklog: n, LargeBacklog: ln, SmallPeakBytes: small, LargePeakBytes: large}
	if small > 0 {
		res.Heap.Ratio = float64(large) / float64(small)
	}

	if res.Live, err = live(ctx, e, loader, sz); err != nil {
		return nil, err
	}
	if res.Stream, err = streamSection(ctx, e, sz); err != nil {
		return nil, err
	}
	return res, nil
}

// peakHeap catches up twice on a table of n commits and returns the higher
// peak of the live heap above its baseline.
func peakHeap(ctx context.Context, client *dynamodb.Client, cfg store.Config, n int) (uint64, error) {
	var peak uint64
	for range 2 {
		r, err := catchUp(ctx, client, cfg, n, true)
		if err != nil {
			return 0, err
		}
		peak = max(peak, r.heapPeak)
	}
	return peak, nil
}

// loadBacklog loads about n commits, committed an hour ago, over aggs
// aggregates, and returns how many.
func loadBacklog(ctx context.Context, client *dynamodb.Client, cfg store.Config, n, aggs int) (int, error) {
	cfg.Clock = func() time.Time { return time.Now().Add(-time.Hour) }
	s, err := store.New(client, cfg)
	if err != nil {
		return 0, err
	}
	aggs = max(min(aggs, n), 1)
	per := max(n/aggs, 1)
	err = within(ctx, 10*time.Minute, "loading the backlog", func(ctx context.Context) error {
		return load(ctx, s, ids("b", aggs), per)
	})
	return aggs * per, err
}

// catchUpRun is one worker catching up on a backlog.
type catchUpRun struct {
	// delivered: from Run to the handler's call for the last commit.
	delivered time.Duration
	// polled: from Run to the end of the poll(s) that read every commit
	// (fresh read and sweep).
	polled time.Duration
	// cpu is this process's CPU time until then.
	cpu time.Duration
	// heapPeak is the peak live heap above the baseline, when measured.
	heapPeak uint64
}

// catchUp runs a worker with default options, reading through client, on a
// table holding want commits until it has delivered all and finished the
// poll that read them.
func catchUp(ctx context.Context, client *dynamodb.Client, cfg store.Config, want int, measureHeap bool) (catchUpRun, error) {
	s, err := store.New(client, cfg)
	if err != nil {
		return catchUpRun{}, err
	}
	return runCatchUp(ctx, s, want, measureHeap)
}

// runCatchUp runs a worker with default options reading through r until it
// has delivered want commits and finished the poll that read them.
func runCatchUp(ctx context.Context, r subscribe.Reader, want int, measureHeap bool) (catchUpRun, error) {
	var run catchUpRun
	p := newProbe(int64(want), nil)
	var heap *heapSampler
	if measureHeap {
		heap = startHeapSampler()
	}
	cpu0 := cpuTime()
	w, err := startWorker(ctx, r, p, subscribe.IndexOptions{})
	if err != nil {
		return run, err
	}
	err = p.wait(ctx, 5*time.Minute)
	run.cpu = cpuTime() - cpu0
	if serr := w.stop(); err == nil {
		err = serr
	}
	if heap != nil {
		base, peak := heap.finish()
		if peak > base {
			run.heapPeak = peak - base
		}
	}
	if err != nil {
		return run, err
	}
	run.delivered, run.polled = p.deliveredAfter, p.polledAfter
	return run, nil
}

// probe is the no-op handler and poll hook of a measured worker.
type probe struct {
	start   time.Time
	want    int64
	counter *requestCounter

	handled atomic.Int64
	read    atomic.Int64
	// onCommit, when set, is called with each commit and the time it was
	// handled.
	onCommit func(c subscribe.Commit, at time.Time)
	// capacity, when set, returns the capacity consumed so far.
	capacity func() float64

	deliveredOnce, polledOnce sync.Once
	delivered, polled         chan struct{}
	deliveredAfter            time.Duration
	polledAfter               time.Duration
	requestsAtPoll            int64
	capacityAtPoll            float64
}

func newProbe(want int64, counter *requestCounter) *probe {
	return &probe{want: want, counter: counter, delivered: make(chan struct{}), polled: make(chan struct{})}
}

// Handle counts the commit.
func (p *probe) Handle(_ context.Context, c subscribe.Commit) error {
	now := time.Now()
	if p.onCommit != nil {
		p.onCommit(c, now)
	}
	if p.handled.Add(1) == p.want {
		p.deliveredOnce.Do(func() {
			p.deliveredAfter = now.Sub(p.start)
			close(p.delivered)
		})
	}
	return nil
}

// OnPoll notes the end of the poll that read the last wanted commit.
func (p *probe) OnPoll(_ string, commits int, _ time.Duration, err error) {
	if err != nil || p.read.Add(int64(commits)) < p.want {
		return
	}
	p.polledOnce.Do(func() {
		p.polledAfter = time.Since(p.start)
		if p.counter != nil {
			p.requestsAtPoll = p.counter.Total()
		}
		if p.capacity != nil {
			p.capacityAtPoll = p.capacity()
		}
		close(p.polled)
	})
}

// wait waits until the wanted commits are delivered and their poll is over.
func (p *probe) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, ch := range []chan struct{}{p.delivered, p.polled} {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("bench: the worker delivered %d of %d commits and read %d within %v", p.handled.Load(), p.want, p.read.Load(), timeout)
		}
	}
	return nil
}

// runningWorker is a worker started by startWorker.
type runningWorker struct {
	cancel context.CancelFunc
	errc   chan error
	once   sync.Once
	err    error
}

// startWorker starts a worker with one subscription, handled by p, reading
// through r, with in-memory checkpoints. It sets p.start just before Run.
func startWorker(ctx context.Context, r subscribe.Reader, p *probe, idx subscribe.IndexOptions) (*runningWorker, error) {
	w, err := subscribe.NewWorker(subscribe.Config{Reader: r, Checkpoints: memcheckpoint.New(), Hooks: []any{p}})
	if err != nil {
		return nil, err
	}
	if err := w.Register(subscribe.Subscription{Name: "bench", Handler: p, Index: idx}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	rw := &runningWorker{cancel: cancel, errc: make(chan error, 1)}
	p.start = time.Now()
	go func() { rw.errc <- w.Run(ctx) }()
	return rw, nil
}

// stop stops the worker and returns Run's error. Later calls return the
// same.
func (w *runningWorker) stop() error {
	w.once.Do(func() {
		w.cancel()
		if err := <-w.errc; err != nil {
			w.err = fmt.Errorf("bench: worker: %w", err)
		}
	})
	return w.err
}

// live measures the lag from append to handler at sz.LiveRate commits per
// second.
func live(ctx context.Context, e *env, client *dynamodb.Client, sz Sizes) (LiveResult, error) {
	res := LiveResult{
		SettleMillis:  float64(liveIndex.Settle.Milliseconds()),
		PollMinMillis: float64(liveIndex.PollMin.Milliseconds()),
	}
	res.TargetMillis = res.SettleMillis + res.PollMinMillis + 250
	cfg, drop, err := e.table(ctx, client, "live")
	if err != nil {
		return res, err
	}
	defer drop()
	writer, err := store.New(client, cfg)
	if err != nil {
		return res, err
	}
	wclient, _, err := e.client(ctx)
	if err != nil {
		return res, err
	}
	reader, err := store.New(wclient, cfg)
	if err != nil {
		return res, err
	}

	var mu sync.Mutex
	var lags []time.Duration
	var measureFrom atomic.Int64 // Unix ms; commits from then on are measured
	measureFrom.Store(1<<63 - 1)
	p := newProbe(-1, nil)
	p.onCommit = func(c subscribe.Commit, at time.Time) {
		if c.CommittedAt >= measureFrom.Load() {
			mu.Lock()
			lags = append(lags, at.Sub(time.UnixMilli(c.CommittedAt)))
			mu.Unlock()
		}
	}
	w, err := startWorker(ctx, reader, p, liveIndex)
	if err != nil {
		return res, err
	}
	defer func() { _ = w.stop() }()

	e.logf("live: %d commits/s for %v + %v", sz.LiveRate, sz.LiveWarmup, sz.LiveDuration)
	interval := time.Second / time.Duration(sz.LiveRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var appended, measured int
	next := map[string]int64{}
	start := time.Now()
	measureStart := start.Add(sz.LiveWarmup)
	end := measureStart.Add(sz.LiveDuration)
	measuring := false
	for now := start; now.Before(end); now = <-tick.C {
		if !measuring && !now.Before(measureStart) {
			measuring = true
			measureFrom.Store(time.Now().UnixMilli())
			measureStart = time.Now()
		}
		id := "live-" + strconv.Itoa(appended%10)
		if _, err := writer.Append(ctx, store.Commit{AggregateID: id, Version: next[id], Events: events}); err != nil {
			return res, err
		}
		next[id]++
		appended++
		if measuring {
			measured++
		}
	}
	res.Commits = measured
	res.Rate = float64(measured) / time.Since(measureStart).Seconds()
	// Wait for the worker to deliver everything appended.
	deadline := time.Now().Add(liveIndex.Settle + 30*time.Second)
	for p.handled.Load() < int64(appended) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("bench: live: the worker delivered %d of %d commits", p.handled.Load(), appended)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := w.stop(); err != nil {
		return res, err
	}
	mu.Lock()
	sorted := sortDurations(lags)
	mu.Unlock()
	if len(sorted) < measured {
		return res, fmt.Errorf("bench: live: %d lags for %d measured commits", len(sorted), measured)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.P50Millis, res.P99Millis, res.MaxMillis = ms(percentile(sorted, 50)), ms(percentile(sorted, 99)), ms(sorted[len(sorted)-1])
	res.Met = res.P99Millis <= res.TargetMillis
	return res, nil
}
