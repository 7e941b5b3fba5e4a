package subscribe

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The stream source against the index source (DESIGN.md §7). Run with
//
//	go test -run '^$' -bench 'StreamVsIndex' -benchtime 1x ./subscribe/
//
// and a larger -benchtime (e.g. 6x: six 5 s windows) for figures. One
// iteration is a 5 s measuring window; the set-up before the first (the
// stream subscription's hand-over, about Settle + Overlap + Margin = 41 s
// with the defaults, and a 20 s idle measure) is paid once.

// BenchmarkLiveLagStreamVsIndex runs two subscriptions at once on one table
// with a stream, each in its own Worker with its own DynamoDB client (so
// that their requests are counted apart) and in-memory checkpoints: one
// SourceIndex with the default IndexOptions, one SourceStream with the
// default StreamOptions and IndexOptions. The table holds a short history
// (10 versions of each of 20 aggregates), which the stream subscription
// reads through the index before the stream takes over.
//
//  1. Hand-over: from Run until the stream subscription's checkpoint is in
//     phase "stream" (handover-s), with no writes: the index catch-up hands
//     over only after a poll that found nothing new (see hybridSource).
//  2. Idle, 20 s: requests per minute of each subscription (the stream's
//     GetRecords, DescribeStream and GetShardIterator calls, counted by a
//     StreamsAPI wrapper; DynamoDB requests, counted by an HTTP client
//     wrapper, retries included) and checkpoint saves per minute (each one a
//     DynamoDB UpdateItem with dynamocheckpoint).
//  3. Live: 100 commits/s to the same 20 aggregates (four writers, one per
//     aggregate, paced by the clock); after a warm-up of Settle + PollMax +
//     500 ms, each iteration is a 5 s window. For each commit committed in
//     the windows: lag from CommittedAt to the handler call, per mode (p50,
//     p99, max; the stream's target is p99 < 1 s), and, for the stream, the
//     lag to the GetRecords response that carried it (read-p50/p99: what
//     the stream and its pacing take, before ordering and dispatch).
//     Requests per commit delivered in the windows, per mode.
func BenchmarkLiveLagStreamVsIndex(b *testing.B) {
	const (
		perSecond  = 100
		aggregates = 20
		history    = 10 // versions of each aggregate before the start
		window     = 5 * time.Second
		idle       = 20 * time.Second
	)
	s := newTableWith(b, store.Config{}, store.TableOptions{})
	ids := make([]string, aggregates)
	for i := range ids {
		ids[i] = "live-" + strconv.Itoa(i)
	}
	appendN(b, s, ids, history)

	idx := startBenchSub(b, s, "index", Subscription{}, nil)
	defer idx.stop(b)
	streams := &benchCountingStreams{StreamsAPI: streamsClient(b), reads: &lagRecorder{}}
	str := startBenchSub(b, s, "stream", Subscription{Source: SourceStream}, streams)
	defer str.stop(b)
	t0 := time.Now()
	ddbtest.Eventually(b, 3*time.Minute, func() bool { return phaseOf(b, str.cps, "stream") == phaseStream }, "the stream never took over")
	handover := time.Since(t0)
	want := int64(aggregates * history)
	ddbtest.Eventually(b, 30*time.Second, func() bool { return idx.rec.handled.Load() >= want && str.rec.handled.Load() >= want },
		"the history was not delivered: index %d, stream %d of %d", idx.rec.handled.Load(), str.rec.handled.Load(), want)

	// Idle.
	i0s, i0x, st0 := str.counts(), idx.counts(), streams.counts()
	idleFrom := time.Now()
	benchSleep(b, idle)
	idleMin := time.Since(idleFrom).Minutes()
	i1s, i1x, st1 := str.counts(), idx.counts(), streams.counts()

	// Live.
	eff := IndexOptions{}.withDefaults()
	wr := startBenchWriters(s, ids, history, perSecond)
	benchSleep(b, eff.Settle+eff.PollMax+500*time.Millisecond)
	from := time.Now()
	l0s, l0x, ls0, w0 := str.counts(), idx.counts(), streams.counts(), wr.total.Load()
	for b.Loop() {
		benchSleep(b, window)
	}
	to := time.Now()
	l1s, l1x, ls1, w1 := str.counts(), idx.counts(), streams.counts(), wr.total.Load()
	written, appendMax, err := wr.stop()
	if err != nil {
		b.Fatal(err)
	}
	total := want + written
	ddbtest.Eventually(b, time.Minute, func() bool { return idx.rec.handled.Load() >= total && str.rec.handled.Load() >= total },
		"not every commit was delivered: index %d, stream %d of %d", idx.rec.handled.Load(), str.rec.handled.Load(), total)

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	report := func(mode string, lags []time.Duration) {
		if len(lags) == 0 {
			b.Fatalf("%s: no commit in the measuring window", mode)
		}
		b.ReportMetric(ms(lagPercentile(lags, 0.50)), mode+"-p50-ms")
		b.ReportMetric(ms(lagPercentile(lags, 0.99)), mode+"-p99-ms")
		b.ReportMetric(ms(lags[len(lags)-1]), mode+"-max-ms")
	}
	sl, il := str.rec.between(from, to), idx.rec.between(from, to)
	report("stream", sl)
	report("index", il)
	const target = time.Second
	over := 0
	for _, l := range sl {
		if l >= target {
			over++
		}
	}
	b.ReportMetric(100*float64(over)/float64(len(sl)), "stream-%-over-1s")
	if reads := streams.reads.between(from, to); len(reads) > 0 {
		b.ReportMetric(ms(lagPercentile(reads, 0.50)), "stream-read-p50-ms")
		b.ReportMetric(ms(lagPercentile(reads, 0.99)), "stream-read-p99-ms")
	}
	if p := lagPercentile(sl, 0.99); p >= target {
		b.Logf("stream p99 %v misses the 1 s target", p)
	}

	// Requests per commit delivered in the windows, and per idle minute.
	ls, lx, lst := l1s.minus(l0s), l1x.minus(l0x), ls1.minus(ls0)
	per := func(n int64, commits int64) float64 { return float64(n) / float64(max(commits, 1)) }
	b.ReportMetric(per(lst.getRecords, ls.handled), "stream-getrecords/commit")
	b.ReportMetric(per(lst.describe, ls.handled), "stream-describe/commit")
	b.ReportMetric(per(lst.iterators, ls.handled), "stream-iterators/commit")
	b.ReportMetric(per(ls.requests, ls.handled), "stream-ddb-req/commit")
	b.ReportMetric(per(lst.records, lst.getRecords), "stream-records/getrecords")
	b.ReportMetric(per(lx.requests, lx.handled), "index-ddb-req/commit")
	is, ix, ist := i1s.minus(i0s), i1x.minus(i0x), st1.minus(st0)
	b.ReportMetric(float64(ist.getRecords)/idleMin, "idle-stream-getrecords/min")
	b.ReportMetric(float64(ist.describe)/idleMin, "idle-stream-describe/min")
	b.ReportMetric(float64(ist.iterators)/idleMin, "idle-stream-iterators/min")
	b.ReportMetric(float64(is.requests)/idleMin, "idle-stream-ddb-req/min")
	b.ReportMetric(float64(is.saves)/idleMin, "idle-stream-ckpt-saves/min")
	b.ReportMetric(float64(ix.requests)/idleMin, "idle-index-ddb-req/min")
	b.ReportMetric(float64(ix.saves)/idleMin, "idle-index-ckpt-saves/min")

	b.ReportMetric(handover.Seconds(), "handover-s")
	b.ReportMetric(float64(w1-w0)/to.Sub(from).Seconds(), "writes/s")
	b.ReportMetric(ms(appendMax), "append-max-ms")
	b.ReportMetric(float64(ls.gapRepairs), "stream-gap-repairs")
	b.ReportMetric(float64(ls.duplicates), "stream-duplicates")
	b.ReportMetric(float64(len(sl)), "samples")
	b.ReportMetric(0, "ns/op")
}

// benchSub is one subscription of BenchmarkLiveLagStreamVsIndex in its own
// Worker.
type benchSub struct {
	rec      *lagRecorder
	cps      *memcheckpoint.Mem
	http     *benchHTTPCounter
	hooks    *benchStreamHooks
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// startBenchSub runs sub (named name, handled by a lagRecorder) in a Worker
// of its own reading s's table through a DynamoDB client of its own, whose
// requests are counted; streams, if not nil, reads the stream.
func startBenchSub(b *testing.B, s *store.Store, name string, sub Subscription, streams StreamsAPI) *benchSub {
	b.Helper()
	bs := &benchSub{rec: &lagRecorder{}, cps: memcheckpoint.New(), http: &benchHTTPCounter{next: awshttp.NewBuildableClient()},
		hooks: &benchStreamHooks{}, done: make(chan error, 1)}
	client := ddbtest.Client(b, func(o *dynamodb.Options) { o.HTTPClient = bs.http })
	r, err := store.New(client, s.Config())
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Reader: r, Checkpoints: bs.cps, Owner: "bench-" + name, Hooks: []any{bs.hooks}}
	if streams != nil {
		cfg.Streams, cfg.Tables = streams, client
	}
	w, err := NewWorker(cfg)
	if err != nil {
		b.Fatal(err)
	}
	sub.Name, sub.Handler = name, bs.rec
	if err := w.Register(sub); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bs.cancel = cancel
	go func() { bs.done <- w.Run(ctx) }()
	return bs
}

func (bs *benchSub) stop(b *testing.B) {
	bs.stopOnce.Do(func() {
		bs.cancel()
		if err := <-bs.done; err != nil {
			b.Error(err)
		}
	})
}

// benchSubCounts is what a benchSub has done so far.
type benchSubCounts struct {
	requests, handled, saves, gapRepairs, duplicates int64
}

func (bs *benchSub) counts() benchSubCounts {
	return benchSubCounts{
		requests:   bs.http.n.Load(),
		handled:    bs.rec.handled.Load(),
		saves:      bs.hooks.saves.Load(),
		gapRepairs: bs.hooks.gapRepairs.Load(),
		duplicates: bs.hooks.duplicates.Load(),
	}
}

func (c benchSubCounts) minus(d benchSubCounts) benchSubCounts {
	return benchSubCounts{c.requests - d.requests, c.handled - d.handled, c.saves - d.saves, c.gapRepairs - d.gapRepairs, c.duplicates - d.duplicates}
}

// benchStreamHooks counts checkpoint saves, gap repairs and duplicates.
type benchStreamHooks struct {
	saves, gapRepairs, duplicates atomic.Int64
}

func (h *benchStreamHooks) OnCheckpoint(_ string, err error) {
	if err == nil {
		h.saves.Add(1)
	}
}

func (h *benchStreamHooks) OnGapRepair(string, string, int64, int64, int) { h.gapRepairs.Add(1) }

func (h *benchStreamHooks) OnDuplicate(string, Commit) { h.duplicates.Add(1) }

// benchHTTPCounter is the HTTP client of a DynamoDB client: it counts the
// requests sent, retries included.
type benchHTTPCounter struct {
	next *awshttp.BuildableClient
	n    atomic.Int64
}

func (c *benchHTTPCounter) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.Do(r)
}

// benchCountingStreams counts the stream calls, and records for each commit
// a GetRecords response carried its lag then (in reads).
type benchCountingStreams struct {
	StreamsAPI
	describe, iterators, getRecords, records atomic.Int64
	reads                                    *lagRecorder
}

// benchStreamCounts is what a benchCountingStreams has counted so far.
type benchStreamCounts struct{ describe, iterators, getRecords, records int64 }

func (c *benchCountingStreams) counts() benchStreamCounts {
	return benchStreamCounts{c.describe.Load(), c.iterators.Load(), c.getRecords.Load(), c.records.Load()}
}

func (c benchStreamCounts) minus(d benchStreamCounts) benchStreamCounts {
	return benchStreamCounts{c.describe - d.describe, c.iterators - d.iterators, c.getRecords - d.getRecords, c.records - d.records}
}

func (c *benchCountingStreams) DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	c.describe.Add(1)
	return c.StreamsAPI.DescribeStream(ctx, in, optFns...)
}

func (c *benchCountingStreams) GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	c.iterators.Add(1)
	return c.StreamsAPI.GetShardIterator(ctx, in, optFns...)
}

func (c *benchCountingStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	c.getRecords.Add(1)
	out, err := c.StreamsAPI.GetRecords(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	c.records.Add(int64(len(out.Records)))
	for _, rec := range out.Records {
		if rec.Dynamodb == nil {
			continue
		}
		n, ok := rec.Dynamodb.NewImage[store.AttrCommittedAt].(*streamtypes.AttributeValueMemberN)
		if !ok {
			continue
		}
		if at, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			_ = c.reads.Handle(ctx, Commit{CommittedAt: at})
		}
	}
	return out, nil
}

// benchWriters append perSecond commits per second to ids, continuing
// each aggregate from version from: commit k at start + k/perSecond
// (catching up if an append was slow) to aggregate k%len(ids), from four
// goroutines, goroutine g appending the commits k%4 == g, so that each
// aggregate (len(ids) a multiple of 4) has one writer.
type benchWriters struct {
	total     atomic.Int64
	appendMax atomic.Int64 // ns
	cancel    context.CancelFunc
	errs      chan error
}

const benchWriterCount = 4

func startBenchWriters(s *store.Store, ids []string, from int64, perSecond int) *benchWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &benchWriters{cancel: cancel, errs: make(chan error, benchWriterCount)}
	start := time.Now()
	for g := range benchWriterCount {
		go func() {
			versions := make([]int64, len(ids))
			for i := range versions {
				versions[i] = from
			}
			for k := g; ; k += benchWriterCount {
				select {
				case <-ctx.Done():
					w.errs <- nil
					return
				case <-time.After(time.Until(start.Add(time.Duration(k) * time.Second / time.Duration(perSecond)))):
				}
				a := k % len(ids)
				t0 := time.Now()
				if _, err := s.Append(ctx, store.Commit{AggregateID: ids[a], Version: versions[a], Events: benchEvents}); err != nil {
					if ctx.Err() != nil {
						err = nil
					}
					w.errs <- err
					return
				}
				for d := int64(time.Since(t0)); ; {
					if m := w.appendMax.Load(); d <= m || w.appendMax.CompareAndSwap(m, d) {
						break
					}
				}
				versions[a]++
				w.total.Add(1)
			}
		}()
	}
	return w
}

// stop stops the writers and returns the commits they wrote, the slowest
// append and the first error.
func (w *benchWriters) stop() (int64, time.Duration, error) {
	w.cancel()
	var first error
	for range benchWriterCount {
		if err := <-w.errs; err != nil && first == nil {
			first = err
		}
	}
	return w.total.Load(), time.Duration(w.appendMax.Load()), first
}
