package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go/logging"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// StreamResult is the stream source (subscribe.SourceStream, default
// StreamOptions) beside the index source (default IndexOptions), measured
// at once on the same commits of one table with a stream: each
// subscription runs in its own worker, with its own DynamoDB client, so
// that their requests are counted apart. Part of section 3.
type StreamResult struct {
	// Aggregates is how many aggregates the commits go to; History the
	// commits in the table before the subscriptions start (the stream
	// subscription reads them through the index, then hands over).
	Aggregates int `json:"aggregates"`
	History    int `json:"history"`
	// HandoverSeconds is the time from the stream subscription's start to
	// its checkpoint's phase "stream", with nothing appended meanwhile;
	// CatchupOverlapMillis is the IndexOptions.Overlap of its index
	// catch-up (see streamCatchupOverlap).
	HandoverSeconds      float64 `json:"handoverSeconds"`
	CatchupOverlapMillis float64 `json:"catchupOverlapMillis"`

	// Rate is the write rate reached in the measured window, in commits per
	// second, over Commits commits appended in it.
	Rate    float64 `json:"commitsPerSecond"`
	Commits int     `json:"commits"`
	// Stream and Index are the lags from a commit's CommittedAt to its
	// handler call, for the commits appended in the measured window.
	Stream LagFigures `json:"stream"`
	Index  LagFigures `json:"index"`
	// Read is the stream's lag from CommittedAt to the GetRecords response
	// that carried the commit: the stream and the reader's pacing, before
	// ordering and dispatch.
	Read LagFigures `json:"read"`
	// TargetMillis is the stream's p99 target (1 s); Met says whether
	// Stream.P99Millis is under it.
	TargetMillis float64 `json:"targetMillis"`
	Met          bool    `json:"met"`

	// PerCommit is the stream subscription's requests per commit it
	// delivered in the measured window; IndexPerCommit the index
	// subscription's DynamoDB requests per commit it delivered.
	PerCommit      StreamRequests `json:"requestsPerCommit"`
	IndexPerCommit float64        `json:"indexRequestsPerCommit"`
	// IdlePerMinute is the stream subscription's requests per minute while
	// nothing is appended, measured over IdleSeconds after the hand-over;
	// IndexIdlePerMinute the index subscription's.
	IdlePerMinute      StreamRequests `json:"idleRequestsPerMinute"`
	IndexIdlePerMinute float64        `json:"indexIdleRequestsPerMinute"`
	IdleSeconds        float64        `json:"idleSeconds"`
	// IdleCheckpointsPerMinute and IndexIdleCheckpointsPerMinute are the
	// checkpoint saves per minute while idle (in-memory here; each is an
	// UpdateItem with dynamocheckpoint).
	IdleCheckpointsPerMinute      float64 `json:"idleCheckpointsPerMinute"`
	IndexIdleCheckpointsPerMinute float64 `json:"indexIdleCheckpointsPerMinute"`
	// GapRepairs and Duplicates are the stream subscription's, in the
	// measured window.
	GapRepairs int `json:"gapRepairs"`
	Duplicates int `json:"duplicates"`
}

// LagFigures are percentiles of a lag, in milliseconds.
type LagFigures struct {
	P50Millis float64 `json:"p50Millis"`
	P99Millis float64 `json:"p99Millis"`
	MaxMillis float64 `json:"maxMillis"`
}

// StreamRequests counts a stream subscription's requests: DynamoDB Streams
// calls (counted by a wrapper of subscribe.StreamsAPI) and DynamoDB requests
// (index catch-up, gap repairs, DescribeTable; counted by an HTTP client
// wrapper, retries included). Total is their sum.
type StreamRequests struct {
	GetRecords       float64 `json:"getRecords"`
	DescribeStream   float64 `json:"describeStream"`
	GetShardIterator float64 `json:"getShardIterator"`
	DynamoDB         float64 `json:"dynamodb"`
	Total            float64 `json:"total"`
}

// streamTarget is the stream source's live lag target at p99.
const streamTarget = time.Second

// streamCatchupOverlap is the IndexOptions.Overlap of the stream
// subscription's index catch-up. The hand-over waits until the index sweep
// has covered the commits until the stream opened plus StreamOptions.Margin,
// about Settle + Overlap + Margin: 41 s with the defaults (1 s, 30 s, 10 s),
// 13 s with this. It does not change what is measured after the hand-over.
const streamCatchupOverlap = 2 * time.Second

// streamAggregates and streamHistory size the table before the start.
const (
	streamAggregates = 10
	streamHistory    = 10 // versions of each aggregate
)

func streamSection(ctx context.Context, e *env, sz Sizes) (StreamResult, error) {
	res := StreamResult{Aggregates: streamAggregates, History: streamAggregates * streamHistory,
		CatchupOverlapMillis: float64(streamCatchupOverlap.Milliseconds()), TargetMillis: float64(streamTarget.Milliseconds())}
	admin, _, err := e.client(ctx)
	if err != nil {
		return res, err
	}
	cfg, drop, err := e.streamTable(ctx, admin, "stream")
	if err != nil {
		return res, err
	}
	defer drop()
	writer, err := store.New(admin, cfg)
	if err != nil {
		return res, err
	}
	aggs := ids("s", streamAggregates)
	if err := within(ctx, time.Minute, "loading the history", func(ctx context.Context) error {
		return load(ctx, writer, aggs, streamHistory)
	}); err != nil {
		return res, err
	}

	idx, err := e.startLagSub(ctx, cfg, subscribe.Subscription{Name: "index"}, nil)
	if err != nil {
		return res, err
	}
	defer func() { _ = idx.w.stop() }()
	streams := &countingStreams{StreamsAPI: e.streamsClient(), reads: &lagLog{}}
	str, err := e.startLagSub(ctx, cfg, subscribe.Subscription{Name: "stream", Source: subscribe.SourceStream,
		Index: subscribe.IndexOptions{Overlap: streamCatchupOverlap}}, streams)
	if err != nil {
		return res, err
	}
	defer func() { _ = str.w.stop() }()

	e.logf("stream: waiting for the stream to take over")
	t0 := time.Now()
	if err := waitFor(ctx, 3*time.Minute, func() bool { return str.phase() == "stream" }); err != nil {
		return res, fmt.Errorf("bench: stream: the stream did not take over: %w", err)
	}
	res.HandoverSeconds = time.Since(t0).Seconds()
	want := int64(res.History)
	if err := waitFor(ctx, 30*time.Second, func() bool { return idx.handled.Load() >= want && str.handled.Load() >= want }); err != nil {
		return res, fmt.Errorf("bench: stream: the history was not delivered (index %d, stream %d of %d): %w", idx.handled.Load(), str.handled.Load(), want, err)
	}

	e.logf("stream: idle for %v", sz.StreamIdle)
	s0, x0, c0 := str.counts(), idx.counts(), streams.counts()
	idleFrom := time.Now()
	if !sleepCtx(ctx, sz.StreamIdle) {
		return res, ctx.Err()
	}
	idleMin := time.Since(idleFrom).Minutes()
	s1, x1, c1 := str.counts(), idx.counts(), streams.counts()
	res.IdleSeconds = idleMin * 60
	res.IdlePerMinute = streamRequests(c1.minus(c0), s1.requests-s0.requests, idleMin)
	res.IndexIdlePerMinute = float64(x1.requests-x0.requests) / idleMin
	res.IdleCheckpointsPerMinute = float64(s1.saves-s0.saves) / idleMin
	res.IndexIdleCheckpointsPerMinute = float64(x1.saves-x0.saves) / idleMin

	e.logf("stream: %d commits/s for %v + %v", sz.LiveRate, sz.LiveWarmup, sz.StreamDuration)
	interval := time.Second / time.Duration(sz.LiveRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	next := map[string]int64{}
	for _, id := range aggs {
		next[id] = streamHistory
	}
	appended, measured := 0, 0
	start := time.Now()
	var from time.Time
	var lc0 streamCounts
	var lstr0, lidx0 subCounts
	end := start.Add(sz.LiveWarmup + sz.StreamDuration)
	for now := start; now.Before(end); now = <-tick.C {
		if from.IsZero() && !now.Before(start.Add(sz.LiveWarmup)) {
			from = time.Now()
			lstr0, lidx0, lc0 = str.counts(), idx.counts(), streams.counts()
		}
		id := aggs[appended%len(aggs)]
		if _, err := writer.Append(ctx, store.Commit{AggregateID: id, Version: next[id], Events: events}); err != nil {
			return res, fmt.Errorf("bench: stream: %w", err)
		}
		next[id]++
		appended++
		if !from.IsZero() {
			measured++
		}
	}
	to := time.Now()
	lstr1, lidx1, lc1 := str.counts(), idx.counts(), streams.counts()
	res.Commits = measured
	res.Rate = float64(measured) / to.Sub(from).Seconds()
	total := want + int64(appended)
	if err := waitFor(ctx, 30*time.Second, func() bool { return idx.handled.Load() >= total && str.handled.Load() >= total }); err != nil {
		return res, fmt.Errorf("bench: stream: not every commit was delivered (index %d, stream %d of %d): %w", idx.handled.Load(), str.handled.Load(), total, err)
	}
	if err := str.w.stop(); err != nil {
		return res, err
	}
	if err := idx.w.stop(); err != nil {
		return res, err
	}

	var ok bool
	if res.Stream, ok = str.lags.figures(from, to); !ok {
		return res, fmt.Errorf("bench: stream: no commit of the measured window reached the stream subscription")
	}
	if res.Index, ok = idx.lags.figures(from, to); !ok {
		return res, fmt.Errorf("bench: stream: no commit of the measured window reached the index subscription")
	}
	res.Read, _ = streams.reads.figures(from, to)
	res.Met = res.Stream.P99Millis < res.TargetMillis
	delivered := float64(max(lstr1.handled-lstr0.handled, 1))
	res.PerCommit = streamRequests(lc1.minus(lc0), lstr1.requests-lstr0.requests, delivered)
	res.IndexPerCommit = float64(lidx1.requests-lidx0.requests) / float64(max(lidx1.handled-lidx0.handled, 1))
	res.GapRepairs = int(lstr1.gaps - lstr0.gaps)
	res.Duplicates = int(lstr1.duplicates - lstr0.duplicates)
	return res, nil
}

// streamRequests divides the calls counted by per.
func streamRequests(c streamCounts, dynamo int64, per float64) StreamRequests {
	r := StreamRequests{
		GetRecords:       float64(c.getRecords) / per,
		DescribeStream:   float64(c.describe) / per,
		GetShardIterator: float64(c.iterators) / per,
		DynamoDB:         float64(dynamo) / per,
	}
	r.Total = r.GetRecords + r.DescribeStream + r.GetShardIterator + r.DynamoDB
	return r
}

// streamTable creates a fresh commits table with its stream (NEW_IMAGE),
// like table.
func (e *env) streamTable(ctx context.Context, client *dynamodb.Client, what string) (store.Config, func(), error) {
	cfg := store.Config{TableName: fmt.Sprintf("bench-%s-%s-%d", e.runID, what, e.seq.Add(1))}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		return cfg, nil, fmt.Errorf("bench: create table %s: %w", cfg.TableName, err)
	}
	var once sync.Once
	drop := func() {
		once.Do(func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := store.DeleteTable(dctx, client, cfg); err != nil {
				e.logf("deleting table %s: %v", cfg.TableName, err)
			}
		})
	}
	return cfg, drop, nil
}

// streamsClient returns a DynamoDB Streams client for the endpoint, with
// the credentials and region of dynamolocal.NewClient (DynamoDB Local keeps
// tables apart by both).
func (e *env) streamsClient() *dynamodbstreams.Client {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	return dynamodbstreams.New(dynamodbstreams.Options{
		BaseEndpoint: aws.String(e.endpoint),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		Logger:       logging.Nop{}, // the emulator's checksum header makes the SDK warn
	})
}

// lagSub is a subscription in a worker of its own that records each
// commit's lag, with its DynamoDB requests counted.
type lagSub struct {
	name     string
	w        *runningWorker
	cps      *memcheckpoint.Mem
	requests *requestCounter
	lags     *lagLog
	handled  atomic.Int64
	saves    atomic.Int64
	gaps     atomic.Int64
	dups     atomic.Int64
}

// startLagSub starts sub, handled by the returned lagSub, in a worker of
// its own with in-memory checkpoints, reading cfg's table through a new
// counted client; streams, if not nil, reads the table's stream.
func (e *env) startLagSub(ctx context.Context, cfg store.Config, sub subscribe.Subscription, streams subscribe.StreamsAPI) (*lagSub, error) {
	client, rc, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	r, err := store.New(client, cfg)
	if err != nil {
		return nil, err
	}
	ls := &lagSub{name: sub.Name, cps: memcheckpoint.New(), requests: rc, lags: &lagLog{}}
	wcfg := subscribe.Config{Reader: r, Checkpoints: ls.cps, Hooks: []any{ls}}
	if streams != nil {
		wcfg.Streams, wcfg.Tables = streams, client
	}
	w, err := subscribe.NewWorker(wcfg)
	if err != nil {
		return nil, err
	}
	sub.Handler = ls
	if err := w.Register(sub); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	rw := &runningWorker{cancel: cancel, errc: make(chan error, 1)}
	go func() { rw.errc <- w.Run(ctx) }()
	ls.w = rw
	return ls, nil
}

// Handle records the commit's lag.
func (s *lagSub) Handle(_ context.Context, c subscribe.Commit) error {
	s.lags.add(c.CommittedAt, time.Now())
	s.handled.Add(1)
	return nil
}

// OnCheckpoint counts checkpoint saves.
func (s *lagSub) OnCheckpoint(_ string, err error) {
	if err == nil {
		s.saves.Add(1)
	}
}

// OnGapRepair counts gap repairs.
func (s *lagSub) OnGapRepair(string, string, int64, int64, int) { s.gaps.Add(1) }

// OnDuplicate counts duplicates dropped.
func (s *lagSub) OnDuplicate(string, subscribe.Commit) { s.dups.Add(1) }

// phase returns the phase the subscription's checkpoint records: "stream"
// once a stream subscription's stream has taken over. It reads the stream
// source's checkpoint encoding (a JSON object with a "phase" field), which
// the subscribe package does not export.
func (s *lagSub) phase() string {
	cp, err := s.cps.Load(context.Background(), checkpoint.Key{Subscription: s.name})
	if err != nil {
		return ""
	}
	var h struct {
		Phase string `json:"phase"`
	}
	if json.Unmarshal([]byte(cp.Position), &h) != nil {
		return ""
	}
	return h.Phase
}

// subCounts is what a lagSub has done so far.
type subCounts struct{ requests, handled, saves, gaps, duplicates int64 }

func (s *lagSub) counts() subCounts {
	return subCounts{s.requests.Total(), s.handled.Load(), s.saves.Load(), s.gaps.Load(), s.dups.Load()}
}

// lagLog records lags by commit time. It is safe for concurrent use.
type lagLog struct {
	mu   sync.Mutex
	at   []int64 // CommittedAt, Unix ms
	lags []time.Duration
}

// add records the lag at now of a commit committed at (Unix ms).
func (l *lagLog) add(at int64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, at)
	l.lags = append(l.lags, now.Sub(time.UnixMilli(at)))
}

// figures returns the percentiles of the lags of the commits committed in
// [from, to), and false if there are none.
func (l *lagLog) figures(from, to time.Time) (LagFigures, bool) {
	l.mu.Lock()
	var ds []time.Duration
	for i, at := range l.at {
		if at >= from.UnixMilli() && at < to.UnixMilli() {
			ds = append(ds, l.lags[i])
		}
	}
	l.mu.Unlock()
	if len(ds) == 0 {
		return LagFigures{}, false
	}
	sortDurations(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return LagFigures{P50Millis: ms(percentile(ds, 50)), P99Millis: ms(percentile(ds, 99)), MaxMillis: ms(ds[len(ds)-1])}, true
}

// countingStreams counts the stream calls, and records in reads the lag of
// each commit when a GetRecords response carries it.
type countingStreams struct {
	subscribe.StreamsAPI
	describe, iterators, getRecords atomic.Int64
	reads                           *lagLog
}

// streamCounts is what a countingStreams has counted so far.
type streamCounts struct{ describe, iterators, getRecords int64 }

func (c *countingStreams) counts() streamCounts {
	return streamCounts{c.describe.Load(), c.iterators.Load(), c.getRecords.Load()}
}

func (c streamCounts) minus(d streamCounts) streamCounts {
	return streamCounts{c.describe - d.describe, c.iterators - d.iterators, c.getRecords - d.getRecords}
}

func (c *countingStreams) DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	c.describe.Add(1)
	return c.StreamsAPI.DescribeStream(ctx, in, optFns...)
}

func (c *countingStreams) GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	c.iterators.Add(1)
	return c.StreamsAPI.GetShardIterator(ctx, in, optFns...)
}

func (c *countingStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	c.getRecords.Add(1)
	out, err := c.StreamsAPI.GetRecords(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	now := time.Now()
	for _, rec := range out.Records {
		if rec.Dynamodb == nil {
			continue
		}
		if n, ok := rec.Dynamodb.NewImage[store.AttrCommittedAt].(*streamtypes.AttributeValueMemberN); ok {
			if at, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				c.reads.add(at, now)
			}
		}
	}
	return out, nil
}

// waitFor checks cond every 50 ms until it holds, ctx ends or timeout
// passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}
