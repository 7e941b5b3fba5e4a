package subscribe

import (
	"context"
	"fmt"
	"iter"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The worker's benchmarks (DESIGN.md §7). Run them with
//
//	go test -run '^$' -bench 'Dispatch|CatchUp|LiveLag' -benchtime 1x ./subscribe/
//
// and with a larger -benchtime (e.g. 20x for Dispatch, 10x for CatchUp, 3x
// for LiveLag) for figures. Dispatch needs no DynamoDB; add -cpu 1,2 for its
// single-core figure. ns/op is reported as 0: each benchmark's figures are in
// its own metrics.
//
//   - BenchmarkDispatch: the worker's own overhead. An in-memory source
//     (memsource_test.go) emits pre-built commits as fast as the worker takes
//     them; a no-op handler. Reports commits/s (target ≥ 100,000 on one
//     core), CPU time, allocations and bytes per commit.
//   - BenchmarkCatchUp: a fresh subscription catching up on a backlog in
//     DynamoDB Local, against reading the whole index with the bare SDK (and
//     with store.Scan), in the same run, in turns. Reports the rates and
//     worker/sdk (target ≥ 0.8).
//   - BenchmarkLiveLag: append→handler lag at a steady write rate, with
//     the default Settle (1 s) and PollMin (100 ms), and with Settle 200 ms.
//     Reports p50, p99 and max in ms, and the target Settle + PollMin +
//     250 ms.

// benchEvents is a commit's events: one deposit of about 260 bytes, as in
// store/bench_test.go.
var benchEvents = []byte(`[{"type":"deposited","amount":125,"currency":"EUR","reference":"` + strings.Repeat("r", 200) + `"}]`)

// BenchmarkDispatch runs the real Worker (memcheckpoint, default MaxInFlight
// and checkpoint interval) over 50,000 in-memory commits on 1,000
// aggregates per iteration, with a no-op Handler or BatchHandler. Each
// iteration creates, runs and stops a Worker; the time and allocations
// counted are all of it. cpu-ns/commit is this process's CPU time (user and
// system, all threads, GC included): on a shared machine it is steadier
// than the rate. The commits come round-robin over the aggregates,
// so the 1,000 read ahead hold about one per aggregate and a BatchHandler
// gets batches of one: this measures the per-commit path.
func BenchmarkDispatch(b *testing.B) {
	const commits, aggregates = 50_000, 1_000
	m := newMemCommits(commits, aggregates, benchEvents)
	nop := HandlerFunc(func(context.Context, Commit) error { return nil })
	nopBatch := BatchHandlerFunc(func(context.Context, []Commit) error { return nil })
	for _, conc := range []int{1, 8} {
		for _, kind := range []string{"Handler", "BatchHandler"} {
			sub := Subscription{Name: "bench", Concurrency: conc}
			if kind == "Handler" {
				sub.Handler = nop
			} else {
				sub.BatchHandler = nopBatch
			}
			b.Run(fmt.Sprintf("Concurrency=%d/%s", conc, kind), func(b *testing.B) {
				var elapsed time.Duration
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				cpu := processCPU(b)
				for b.Loop() {
					elapsed += dispatchOnce(b, m, sub)
				}
				cpu = processCPU(b) - cpu
				runtime.ReadMemStats(&after)
				total := float64(b.N * commits)
				b.ReportMetric(total/elapsed.Seconds(), "commits/s")
				b.ReportMetric(float64(elapsed.Nanoseconds())/total, "ns/commit")
				b.ReportMetric(float64(cpu.Nanoseconds())/total, "cpu-ns/commit")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/commit")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/total, "B/commit")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// dispatchOnce runs a Worker with sub over a memSource of m until every
// commit is handled, stops it, and returns the time it all took.
func dispatchOnce(b *testing.B, m *memCommits, sub Subscription) time.Duration {
	made := make(chan *memSource, 1)
	t0 := time.Now()
	w, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: memcheckpoint.New(), Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	w.sourceFactory = memSourceFactory(m, made)
	if err := w.Register(sub); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	src := <-made
	<-src.all
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	if n := src.count.Load(); n != int64(len(m.commits)) {
		b.Fatalf("handled %d commits, want %d", n, len(m.commits))
	}
	return d
}

// BenchmarkCatchUp loads 3,000 commits over 100 aggregates into DynamoDB
// Local, then per iteration, in rotating order:
//
//   - sdk: reads the whole commit-order index with the bare SDK (a
//     paginated Query on the GSI, each page decoded with attributevalue);
//   - store: reads it with store.Scan, to tell the store's share of the
//     difference from the worker's;
//   - worker: runs a fresh subscription (index source, Settle 10 ms,
//     otherwise defaults: Concurrency 8, MaxInFlight 1,000, Overlap 30 s)
//     from the beginning until its no-op handler has had every commit.
//
// The worker is timed from Run to the last commit handled, so claiming the
// checkpoint is included and its stop (the final checkpoint save) is not.
// Its poll also sweeps: a second index Query after the fresh read, which
// finds nothing while the backlog is younger than Settle + Overlap (the
// first ~30 s of the benchmark) and re-reads it after that; it starts once
// the fresh read has emitted everything, so it overlaps only the last
// commits' handling. scans/catch-up counts both.
//
// Reported: each leg's commits/s, worker/sdk (target ≥ 0.8) and store/sdk,
// and per commit this process's CPU time (µs, user + system: on a two-core
// machine it is taken from the emulator) and allocations.
func BenchmarkCatchUp(b *testing.B) {
	const total, aggregates = 3000, 100
	s := newTable(b, store.Config{})
	client := ddbtest.Client(b)
	loadBacklog(b, s, total, aggregates, benchEvents)
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.Config().TableName),
		IndexName:                 aws.String(s.Config().IndexName),
		KeyConditionExpression:    aws.String("active = :a"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":a": &types.AttributeValueMemberS{Value: "t"}},
	}
	sdkOp := func() {
		if n := sdkReadIndex(b, client, in); n != total {
			b.Fatalf("the SDK read %d commits, want %d", n, total)
		}
	}
	storeOp := func() {
		n := 0
		for _, err := range s.Scan(context.Background(), store.Position{}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != total {
			b.Fatalf("store.Scan read %d commits, want %d", n, total)
		}
	}
	reader := &benchCountingReader{Reader: s}
	workerOp := func() time.Duration { return catchUpOnce(b, reader, total) }
	// The three legs, each timed, run in a rotating order.
	type leg struct {
		run    func() time.Duration
		time   time.Duration
		cpu    time.Duration // this process's, user and system
		allocs uint64
	}
	timed := func(f func()) func() time.Duration {
		return func() time.Duration { t0 := time.Now(); f(); return time.Since(t0) }
	}
	legs := []*leg{{run: timed(sdkOp)}, {run: timed(storeOp)}, {run: workerOp}}
	sdk, str, worker := legs[0], legs[1], legs[2]

	for range 2 { // warm-up: the emulator's JIT, connections
		for _, l := range legs {
			l.run()
		}
	}
	reader.scans.Store(0)
	reader.queries.Store(0)
	var ms runtime.MemStats
	mallocs := func() uint64 { runtime.ReadMemStats(&ms); return ms.Mallocs }
	i := 0
	for b.Loop() {
		for j := range legs {
			l := legs[(i+j)%len(legs)]
			a, c := mallocs(), processCPU(b)
			l.time += l.run()
			l.cpu += processCPU(b) - c
			l.allocs += mallocs() - a
		}
		i++
	}
	n := float64(b.N * total)
	rate := func(l *leg) float64 { return n / l.time.Seconds() }
	b.ReportMetric(rate(sdk), "sdk-commits/s")
	b.ReportMetric(rate(str), "store-commits/s")
	b.ReportMetric(rate(worker), "worker-commits/s")
	b.ReportMetric(rate(worker)/rate(sdk), "worker/sdk")
	b.ReportMetric(rate(str)/rate(sdk), "store/sdk")
	for _, l := range []struct {
		name string
		*leg
	}{{"sdk", sdk}, {"store", str}, {"worker", worker}} {
		b.ReportMetric(float64(l.cpu.Microseconds())/n, l.name+"-cpu-µs/commit")
	}
	b.ReportMetric(float64(sdk.allocs)/n, "sdk-allocs/commit")
	b.ReportMetric(float64(str.allocs)/n, "store-allocs/commit")
	b.ReportMetric(float64(worker.allocs)/n, "worker-allocs/commit")
	b.ReportMetric(float64(reader.scans.Load())/float64(b.N), "scans/catch-up")
	b.ReportMetric(float64(reader.queries.Load())/float64(b.N), "repairs/catch-up")
	b.ReportMetric(0, "ns/op")
}

// processCPU returns the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCountingReader counts the Scans (fresh reads and sweeps of the
// index) and Queries (gap repairs) the worker makes.
type benchCountingReader struct {
	Reader
	scans, queries atomic.Int64
}

func (r *benchCountingReader) Scan(ctx context.Context, after store.Position, optFns ...func(*store.ScanOptions)) iter.Seq2[store.Commit, error] {
	r.scans.Add(1)
	return r.Reader.Scan(ctx, after, optFns...)
}

func (r *benchCountingReader) Query(ctx context.Context, aggregateID string, fromVersion int64, optFns ...func(*store.QueryOptions)) iter.Seq2[store.Commit, error] {
	r.queries.Add(1)
	return r.Reader.Query(ctx, aggregateID, fromVersion, optFns...)
}

// catchUpOnce runs a fresh subscription from the beginning until its no-op
// handler has had total commits, and returns the time from Run to then.
func catchUpOnce(b *testing.B, s Reader, total int) time.Duration {
	var n atomic.Int64
	all := make(chan struct{})
	h := HandlerFunc(func(context.Context, Commit) error {
		if n.Add(1) == int64(total) {
			close(all)
		}
		return nil
	})
	w, err := NewWorker(Config{Reader: s, Checkpoints: memcheckpoint.New(), Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "catch-up", Handler: h, Index: IndexOptions{Settle: 10 * time.Millisecond}}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- w.Run(ctx) }()
	select {
	case <-all:
	case err := <-done:
		b.Fatalf("Run ended before catching up: %v", err)
	case <-time.After(time.Minute):
		b.Fatalf("caught up on %d of %d commits in a minute", n.Load(), total)
	}
	d := time.Since(t0)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if got := n.Load(); got != int64(total) {
		b.Fatalf("handled %d commits, want %d", got, total)
	}
	return d
}

// benchSDKCommit is what a program using the bare SDK decodes an item into.
type benchSDKCommit struct {
	CommitID    string `dynamodbav:"commitId"`
	CommittedAt int64  `dynamodbav:"committedAt"`
	AggregateID string `dynamodbav:"aggregateId"`
	Version     int64  `dynamodbav:"version"`
	Events      string `dynamodbav:"events"`
}

// sdkReadIndex pages through a query with the bare SDK, decoding each page,
// and returns the number of commits.
func sdkReadIndex(b *testing.B, client *dynamodb.Client, in *dynamodb.QueryInput) int {
	p := dynamodb.NewQueryPaginator(client, in)
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		var cs []benchSDKCommit
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &cs); err != nil {
			b.Fatal(err)
		}
		n += len(cs)
	}
	return n
}

// BenchmarkLiveLag appends 100 commits/s to 20 aggregates (paced by the
// clock from four writers, one per aggregate) while a subscription tails
// the table, and measures, for each commit, the time from its CommittedAt
// (set by Append) to its handler call. Each iteration is a 3 s measuring
// window; before the first, a warm-up of Settle + PollMax + 500 ms lets the
// source leave the idle backoff of an empty table (its lags are logged, not
// counted: after an idle spell the first commits may wait up to Settle +
// PollMax). Reported: p50, p99 and max lag in ms, the target (Settle +
// PollMin + 250 ms), the share of commits over it, the write rate reached,
// and, to explain a tail, the slowest append and the poll durations (a
// poll's time adds to the lag of the commits it reads and of those that
// wait for the next one).
func BenchmarkLiveLag(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts IndexOptions
	}{
		{"Settle=1s,PollMin=100ms", IndexOptions{}}, // the defaults
		{"Settle=200ms,PollMin=100ms", IndexOptions{Settle: 200 * time.Millisecond}},
	} {
		b.Run(tc.name, func(b *testing.B) { liveLag(b, tc.opts, 100, 3*time.Second) })
	}
}

// lagRecorder records, per commit handled, its CommittedAt and its lag.
type lagRecorder struct {
	mu      sync.Mutex
	at      []int64
	lags    []time.Duration
	handled atomic.Int64
}

func (r *lagRecorder) Handle(_ context.Context, c Commit) error {
	lag := time.Since(time.UnixMilli(c.CommittedAt))
	r.mu.Lock()
	r.at = append(r.at, c.CommittedAt)
	r.lags = append(r.lags, lag)
	r.mu.Unlock()
	r.handled.Add(1)
	return nil
}

// between returns the lags of commits committed in [from, to), sorted.
func (r *lagRecorder) between(from, to time.Time) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for i, at := range r.at {
		if at >= from.UnixMilli() && at < to.UnixMilli() {
			out = append(out, r.lags[i])
		}
	}
	slices.Sort(out)
	return out
}

// benchPollTimes records how long each poll of the source took.
type benchPollTimes struct {
	mu    sync.Mutex
	ended []time.Time
	took  []time.Duration
}

func (p *benchPollTimes) OnPoll(_ string, _ int, d time.Duration, _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = append(p.ended, time.Now())
	p.took = append(p.took, d)
}

// between returns the durations of the polls that ended in [from, to),
// sorted.
func (p *benchPollTimes) between(from, to time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for i, at := range p.ended {
		if !at.Before(from) && at.Before(to) {
			out = append(out, p.took[i])
		}
	}
	slices.Sort(out)
	return out
}

func liveLag(b *testing.B, opts IndexOptions, perSecond int, window time.Duration) {
	const aggregates = 20
	eff := opts.withDefaults()
	s := newTable(b, store.Config{})
	rec := &lagRecorder{}
	polls := &benchPollTimes{}
	w, err := NewWorker(Config{Reader: s, Checkpoints: memcheckpoint.New(), Owner: "bench", Hooks: []any{polls}})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "live", Handler: rec, Index: opts}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()

	// Writers append commit k at start + k/perSecond (catching up if an
	// append was slow) to aggregate k%aggregates, from four goroutines: g
	// appends the commits k%4 == g, so each aggregate has one writer and
	// its versions are appended in order.
	const writers = 4
	var written atomic.Int64
	var appendMax atomic.Int64 // ns
	writeCtx, stopWriting := context.WithCancel(ctx)
	writerErr := make(chan error, writers)
	start := time.Now()
	for g := range writers {
		go func() {
			versions := make([]int64, aggregates)
			for k := g; ; k += writers {
				select {
				case <-writeCtx.Done():
					writerErr <- nil
					return
				case <-time.After(time.Until(start.Add(time.Duration(k) * time.Second / time.Duration(perSecond)))):
				}
				a := k % aggregates
				t0 := time.Now()
				_, err := s.Append(writeCtx, store.Commit{AggregateID: "live-" + strconv.Itoa(a), Version: versions[a], Events: benchEvents})
				if err != nil {
					if writeCtx.Err() != nil {
						writerErr <- nil
					} else {
						writerErr <- err
					}
					return
				}
				for d := int64(time.Since(t0)); ; {
					if m := appendMax.Load(); d <= m || appendMax.CompareAndSwap(m, d) {
						break
					}
				}
				versions[a]++
				written.Add(1)
			}
		}()
	}

	warmStart := time.Now()
	benchSleep(b, eff.Settle+eff.PollMax+500*time.Millisecond)
	from := time.Now()
	writtenFrom := written.Load()
	for b.Loop() {
		benchSleep(b, window)
	}
	to := time.Now()
	rate := float64(written.Load()-writtenFrom) / to.Sub(from).Seconds()
	stopWriting()
	for range writers {
		if err := <-writerErr; err != nil {
			b.Fatal(err)
		}
	}
	ddbtest.Eventually(b, 30*time.Second, func() bool { return rec.handled.Load() >= written.Load() },
		"the subscription did not handle every commit written")
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}

	warm := rec.between(warmStart, from)
	lags := rec.between(from, to)
	if len(lags) == 0 {
		b.Fatal("no commit in the measuring window")
	}
	if len(warm) > 0 {
		b.Logf("warm-up (from an idle, empty table): %d commits, max lag %v", len(warm), warm[len(warm)-1])
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	target := eff.Settle + eff.PollMin + 250*time.Millisecond
	b.ReportMetric(ms(lagPercentile(lags, 0.50)), "p50-ms")
	b.ReportMetric(ms(lagPercentile(lags, 0.99)), "p99-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
	b.ReportMetric(ms(target), "target-ms")
	b.ReportMetric(rate, "writes/s")
	b.ReportMetric(ms(time.Duration(appendMax.Load())), "append-max-ms")
	if p := polls.between(from, to); len(p) > 0 {
		b.ReportMetric(ms(lagPercentile(p, 0.50)), "poll-p50-ms")
		b.ReportMetric(ms(lagPercentile(p, 0.99)), "poll-p99-ms")
	}
	over := 0
	for _, l := range lags {
		if l > target {
			over++
		}
	}
	b.ReportMetric(100*float64(over)/float64(len(lags)), "%-over-target")
	b.ReportMetric(float64(len(lags)), "samples")
	b.ReportMetric(0, "ns/op")
}

// lagPercentile returns the q-quantile of sorted (nearest rank).
func lagPercentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// benchSleep waits d: the benchmark's measuring time, not a condition.
func benchSleep(b *testing.B, d time.Duration) {
	select {
	case <-time.After(d):
	case <-b.Context().Done():
	}
}
