package streamreader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

// waitFor bounds every wait of these tests.
const waitFor = 10 * time.Second

// fastOptions are options for tests against the fake: short intervals, the
// highest DescribeStream rate allowed.
func fastOptions(c *collector) Options {
	return Options{
		BusyInterval:     time.Millisecond,
		IdleMax:          5 * time.Millisecond,
		DescribeInterval: 20 * time.Millisecond,
		MaxDescribeRate:  MaxDescribeRate,
		OnShardEnd:       c.onEnd,
	}
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, r *Reader, pos Position, emit func(context.Context, Record) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ru := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { ru.done <- r.Run(ctx, pos, emit) }()
	t.Cleanup(func() {
		cancel()
		<-ru.done
	})
	return ru
}

// stop cancels Run and returns its error.
func (ru *running) stop(t *testing.T) error {
	t.Helper()
	ru.cancel()
	return ru.wait(t)
}

// wait returns Run's error once it returns by itself.
func (ru *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ru.done:
		ru.done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		t.Fatalf("Run did not return within %v", waitFor)
		return nil
	}
}

func newReader(t *testing.T, api API, opts Options) *Reader {
	t.Helper()
	r, err := New(api, fakeARN, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// iteratorCalls returns "TYPE SEQ" of each GetShardIterator call on shard.
func iteratorCalls(f *fakeStream, shard string) []string {
	var out []string
	for _, c := range f.callsOf("GetShardIterator") {
		if c.shard == shard {
			out = append(out, startSpec{typ: c.typ, seq: c.seq}.String())
		}
	}
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func TestLineage(t *testing.T) {
	t.Parallel()
	t.Run("children after parent whatever the listing order", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		// Listed children first, grandchild first of all.
		f.addShard("G", "C1")
		f.addShard("C2", "P")
		f.addShard("C1", "P")
		f.addShard("P", "")
		f.put("P", 5)
		f.put("C1", 3)
		f.put("C2", 3)
		f.put("G", 2)
		for _, id := range []string{"P", "C1"} {
			f.update(id, func(s *fakeShard) { s.closed = true })
		}
		c := newCollector(t)
		opts := fastOptions(c)
		opts.Limit = 2
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 13 }, "13 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		for _, id := range []string{"P", "C1", "C2", "G"} {
			equal(t, "records of "+id, c.seqs(id), f.seqs(id))
		}
		if p, c1, c2 := c.lastIndex("P"), c.firstIndex("C1"), c.firstIndex("C2"); p > c1 || p > c2 {
			t.Errorf("a child was emitted before its parent ended: last P at %d, first C1 at %d, first C2 at %d", p, c1, c2)
		}
		if c1, g := c.lastIndex("C1"), c.firstIndex("G"); c1 > g {
			t.Errorf("G emitted before C1 ended: last C1 at %d, first G at %d", c1, g)
		}
		if e, c1 := c.eventIndex("end P"), c.eventIndex("emit C1"); e < 0 || e > c1 {
			t.Errorf("OnShardEnd(P) at %d, first C1 record at %d: want it before", e, c1)
		}
		if c.ended("C2") {
			t.Error("OnShardEnd for C2, which is open")
		}
		for _, id := range []string{"P", "C1", "C2", "G"} {
			equal(t, "iterators of "+id, iteratorCalls(f, id), []string{"TRIM_HORIZON"})
		}
	})

	t.Run("split while reading", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("P", "")
		f.put("P", 3)
		c := newCollector(t)
		ru := start(t, newReader(t, f, fastOptions(c)), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records, have %d", c.count())
		// DynamoDB splits P: the children appear, P takes its last
		// records and closes, the children take the next ones.
		f.addShard("C1", "P")
		f.addShard("C2", "P")
		f.put("C1", 2)
		f.put("P", 2)
		f.update("P", func(s *fakeShard) { s.closed = true })
		f.put("C2", 2)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 9 }, "9 records, have %d", c.count())
		// P is trimmed away: the reader forgets it after a few listings;
		// the children go on, nothing is read again.
		f.update("P", func(s *fakeShard) { s.unlisted = true })
		n := len(f.callsOf("DescribeStream"))
		ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("DescribeStream")) > n+forgetAfter }, "more listings")
		f.put("C1", 1)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 10 }, "10 records, have %d", c.count())
		for _, id := range []string{"P", "C1", "C2"} {
			equal(t, "iterators of "+id, iteratorCalls(f, id), []string{"TRIM_HORIZON"})
		}
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		for _, id := range []string{"P", "C1", "C2"} {
			equal(t, "records of "+id, c.seqs(id), f.seqs(id))
		}
		if p, c1, c2 := c.lastIndex("P"), c.firstIndex("C1"), c.firstIndex("C2"); p > c1 || p > c2 {
			t.Errorf("a child was emitted before its parent ended: last P at %d, first C1 at %d, first C2 at %d", p, c1, c2)
		}
	})

	t.Run("parent trimmed away", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name    string
			initial types.ShardIteratorType
			pos     Position
			want    string
		}{
			{"first start", "", Position{}, "TRIM_HORIZON"},
			{"resumed", types.ShardIteratorTypeLatest, Position{Finished: []string{"Z"}}, "TRIM_HORIZON"},
			// On a first start a shard whose parent is gone is a root, so
			// InitialPosition applies.
			{"first start at LATEST", types.ShardIteratorTypeLatest, Position{}, "LATEST"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("X", "")
				f.addShard("C", "X")
				f.put("X", 2)
				f.put("C", 3)
				f.update("X", func(s *fakeShard) { s.closed, s.unlisted = true, true })
				c := newCollector(t)
				opts := fastOptions(c)
				opts.InitialPosition = tc.initial
				ru := start(t, newReader(t, f, opts), tc.pos, c.emit)
				ddbtest.Eventually(t, waitFor, func() bool { return len(iteratorCalls(f, "C")) > 0 }, "C opened")
				if tc.want == "TRIM_HORIZON" {
					ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records, have %d", c.count())
				}
				if err := ru.stop(t); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
				equal(t, "iterators of C", iteratorCalls(f, "C"), []string{tc.want})
				equal(t, "iterators of X", iteratorCalls(f, "X"), nil)
			})
		}
	})
}

func TestDescribePages(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.pageSize = 2
	ids := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	for _, id := range ids {
		f.addShard(id, "")
		f.put(id, 1)
	}
	c := newCollector(t)
	opts := fastOptions(c)
	opts.DescribeInterval = time.Hour
	ru := start(t, newReader(t, f, opts), Position{}, c.emit)
	ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 6 }, "6 records, have %d", c.count())
	if err := ru.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	var starts []string
	for _, call := range f.callsOf("DescribeStream") {
		starts = append(starts, call.start)
	}
	// The last page is full, so it carries LastEvaluatedShardId too, and an
	// empty page follows.
	equal(t, "ExclusiveStartShardId of each DescribeStream", starts, []string{"", "s2", "s4", "s6"})
	for _, id := range ids {
		equal(t, "records of "+id, c.seqs(id), f.seqs(id))
	}

	t.Run("LastEvaluatedShardId that does not advance", func(t *testing.T) {
		t.Parallel()
		api := &funcAPI{describe: func(in *dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error) {
			return &dynamodbstreams.DescribeStreamOutput{StreamDescription: &types.StreamDescription{
				StreamStatus: types.StreamStatusEnabled, LastEvaluatedShardId: aws.String("s1"),
				Shards: []types.Shard{{ShardId: aws.String("s1")}},
			}}, nil
		}}
		r := newReader(t, api, Options{MaxDescribeRate: MaxDescribeRate})
		err := r.Run(t.Context(), Position{}, newCollector(t).emit)
		if err == nil || errors.Is(err, ErrStreamGone) {
			t.Fatalf("Run = %v, want an error about LastEvaluatedShardId", err)
		}
		t.Log(err)
	})
}

// testClock is the real clock plus an offset the test moves forward, so
// that real timers still work.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func TestExpiredIterator(t *testing.T) {
	t.Parallel()
	t.Run("ExpiredIteratorException mid-shard", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 10)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" && n == 3 {
				return &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
			}
			return nil
		}
		c := newCollector(t)
		opts := fastOptions(c)
		opts.Limit = 2
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 10 }, "10 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		seqs := f.seqs("S")
		equal(t, "records", c.seqs("S"), seqs)
		// Two pages (4 records) emitted, then the third call failed.
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER " + seqs[3]})
	})

	t.Run("iterator older than 15 minutes while emit blocks", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		clock := &testClock{}
		f.clock = clock.now
		f.addShard("S", "")
		f.put("S", 10)
		c := newCollector(t)
		c.hook = func(_ context.Context, rec Record) error {
			if rec.SequenceNumber == f.seqs("S")[2] {
				clock.advance(16 * time.Minute) // emit blocked for 16 minutes
			}
			return nil
		}
		opts := fastOptions(c)
		opts.Limit = 4
		opts.Clock = clock.now
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 10 }, "10 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		seqs := f.seqs("S")
		equal(t, "records", c.seqs("S"), seqs)
		// The whole first page (4 records) was emitted; its iterator was
		// then too old, and renewed before use rather than failing.
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER " + seqs[3]})
		for _, call := range f.callsOf("GetRecords") {
			if call.err != nil {
				t.Errorf("GetRecords failed: %v", call.err)
			}
		}
	})

	t.Run("LATEST with nothing emitted renews at TRIM_HORIZON", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 2)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" && n == 1 {
				return &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
			}
			return nil
		}
		c := newCollector(t)
		opts := fastOptions(c)
		opts.InitialPosition = types.ShardIteratorTypeLatest
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 2 }, "2 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"LATEST", "TRIM_HORIZON"})
	})
}

func TestTrimmed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(f *fakeStream) Position
		shard   string
		seq     func(f *fakeStream) string
		sdkType bool // Err is a *types.TrimmedDataAccessException
	}{
		{
			name: "position older than the trim horizon",
			setup: func(f *fakeStream) Position {
				f.update("S", func(s *fakeShard) { s.trimmed = 3 })
				return Position{StreamARN: fakeARN, Shards: map[string]string{"S": f.seqs("S")[1]}}
			},
			shard: "S", seq: func(f *fakeStream) string { return f.seqs("S")[1] }, sdkType: true,
		},
		{
			name: "records trimmed under the iterator",
			setup: func(f *fakeStream) Position {
				f.fault = func(op, shard string, n int) error {
					if op == "GetRecords" && n == 3 {
						return &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
					}
					return nil
				}
				return Position{}
			},
			shard: "S", seq: func(f *fakeStream) string { return f.seqs("S")[3] }, sdkType: true,
		},
		{
			name: "shard of the position no longer listed",
			setup: func(f *fakeStream) Position {
				f.addShard("gone", "")
				f.put("gone", 2)
				f.update("gone", func(s *fakeShard) { s.closed, s.unlisted = true, true })
				return Position{Shards: map[string]string{"gone": f.seqs("gone")[0]}}
			},
			shard: "gone", seq: func(f *fakeStream) string { return f.seqs("gone")[0] },
		},
		{
			name: "resumed: a listed shard the position needs no longer exists",
			setup: func(f *fakeStream) Position {
				f.addShard("E", "")
				f.update("E", func(s *fakeShard) { s.closed, s.expired = true, true })
				return Position{Shards: map[string]string{"S": f.seqs("S")[0]}}
			},
			shard: "E", seq: func(*fakeStream) string { return "" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			f.addShard("S", "")
			f.put("S", 8)
			pos := tc.setup(f)
			c := newCollector(t)
			opts := fastOptions(c)
			opts.Limit = 2
			err := newReader(t, f, opts).Run(t.Context(), pos, c.emit)
			var te *TrimmedError
			if !errors.As(err, &te) || !errors.Is(err, ErrTrimmed) {
				t.Fatalf("Run = %v, want a *TrimmedError", err)
			}
			if te.ShardID != tc.shard || te.SequenceNumber != tc.seq(f) {
				t.Errorf("TrimmedError names shard %q after %q, want %q after %q", te.ShardID, te.SequenceNumber, tc.shard, tc.seq(f))
			}
			var sdk *types.TrimmedDataAccessException
			if errors.As(err, &sdk) != tc.sdkType {
				t.Errorf("errors.As(*types.TrimmedDataAccessException) = %v, want %v", !tc.sdkType, tc.sdkType)
			}
			t.Log(err)
		})
	}

	t.Run("first start: expired shards count as read", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("C", "P")
		f.addShard("P", "")
		f.put("C", 3)
		f.update("P", func(s *fakeShard) { s.closed, s.expired = true, true })
		c := newCollector(t)
		ru := start(t, newReader(t, f, fastOptions(c)), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		if !c.ended("P") {
			t.Error("no OnShardEnd for the expired shard P")
		}
		equal(t, "records of C", c.seqs("C"), f.seqs("C"))
	})

	t.Run("first start: oldest records expire before the first read", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 4)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" && n == 1 {
				f.update("S", func(s *fakeShard) { s.trimmed = 1 })
				return &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
			}
			return nil
		}
		c := newCollector(t)
		ru := start(t, newReader(t, f, fastOptions(c)), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		equal(t, "records", c.seqs("S"), f.seqs("S")[1:])
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "TRIM_HORIZON"})
	})
}

func TestStreamGone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(f *fakeStream) Position
	}{
		{"DescribeStream: ResourceNotFoundException", func(f *fakeStream) Position {
			f.gone = true
			return Position{}
		}},
		{"GetShardIterator: ResourceNotFoundException", func(f *fakeStream) Position {
			f.fault = func(op, _ string, _ int) error {
				if op == "GetShardIterator" {
					f.mu.Lock()
					f.gone = true // deleted between DescribeStream and here
					f.mu.Unlock()
					return notFound("Requested resource not found: Stream not found")
				}
				return nil
			}
			return Position{}
		}},
		{"GetRecords: ResourceNotFoundException", func(f *fakeStream) Position {
			f.fault = func(op, _ string, _ int) error {
				if op == "GetRecords" {
					f.mu.Lock()
					f.gone = true
					f.mu.Unlock()
				}
				return nil
			}
			return Position{}
		}},
		{"stream DISABLED", func(f *fakeStream) Position {
			f.status = types.StreamStatusDisabled
			return Position{}
		}},
		{"position of another stream", func(*fakeStream) Position {
			return Position{StreamARN: fakeARN + "-old", Shards: map[string]string{"S": "000000000000000000001"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			f.addShard("S", "")
			f.put("S", 2)
			pos := tc.setup(f)
			c := newCollector(t)
			err := newReader(t, f, fastOptions(c)).Run(t.Context(), pos, c.emit)
			if !errors.Is(err, ErrStreamGone) {
				t.Fatalf("Run = %v, want ErrStreamGone", err)
			}
			t.Log(err)
		})
	}

	t.Run("disabled while reading", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 2)
		c := newCollector(t)
		ru := start(t, newReader(t, f, fastOptions(c)), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 2 }, "2 records, have %d", c.count())
		f.put("S", 1)
		f.mu.Lock()
		f.status = types.StreamStatusDisabled
		f.mu.Unlock()
		f.update("S", func(s *fakeShard) { s.closed = true })
		if err := ru.wait(t); !errors.Is(err, ErrStreamGone) {
			t.Fatalf("Run = %v, want ErrStreamGone", err)
		}
	})
}

func TestThrottling(t *testing.T) {
	t.Parallel()
	t.Run("retried, nothing lost", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 10)
		f.update("S", func(s *fakeShard) { s.closed = true })
		limit := func() error { return &types.LimitExceededException{Message: aws.String("Rate exceeded")} }
		f.fault = func(op, shard string, n int) error {
			switch {
			case op == "DescribeStream" && n <= 2:
				return limit()
			case op == "GetShardIterator" && n == 1:
				return &smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException", Message: "slow down"}
			case op == "GetRecords" && (n == 2 || n == 3 || n == 5):
				return limit()
			case op == "GetRecords" && n == 4:
				return &types.InternalServerError{Message: aws.String("oops")}
			}
			return nil
		}
		c := newCollector(t)
		opts := fastOptions(c)
		opts.Limit = 2
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.ended("S") }, "S read to its end")
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		equal(t, "records", c.seqs("S"), f.seqs("S"))
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "TRIM_HORIZON"})
	})

	t.Run("gives up after MaxRetries", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 1)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" {
				return &types.LimitExceededException{Message: aws.String("Rate exceeded")}
			}
			return nil
		}
		c := newCollector(t)
		opts := fastOptions(c)
		opts.MaxRetries = 3
		opts.BusyInterval = 4 * time.Millisecond
		opts.IdleMax = opts.BusyInterval
		var outcomes struct {
			mu         sync.Mutex
			ok, failed int
		}
		opts.OnCall = func(err error, _ time.Time) {
			outcomes.mu.Lock()
			defer outcomes.mu.Unlock()
			if err != nil {
				outcomes.failed++
			} else {
				outcomes.ok++
			}
		}
		err := newReader(t, f, opts).Run(t.Context(), Position{}, c.emit)
		var le *types.LimitExceededException
		if !errors.As(err, &le) {
			t.Fatalf("Run = %v, want the LimitExceededException", err)
		}
		calls := f.callsOf("GetRecords")
		if len(calls) != 4 {
			t.Errorf("%d GetRecords calls, want 4 (1 + 3 retries)", len(calls))
		}
		// OnCall learned every attempt: the successes, then each failure.
		outcomes.mu.Lock()
		failed, ok := outcomes.failed, outcomes.ok
		outcomes.mu.Unlock()
		if failed != 4 || ok < 2 {
			t.Errorf("OnCall saw %d failed and %d successful calls, want the 4 failed GetRecords after DescribeStream and GetShardIterator", failed, ok)
		}
		// Backoff with equal jitter: retry n waits at least half of
		// BusyInterval·2^(n-1).
		for i := 1; i < len(calls); i++ {
			if gap, least := calls[i].at.Sub(calls[i-1].at), opts.BusyInterval<<(i-1)/2; gap < least-slack {
				t.Errorf("retry %d after %v, want at least %v", i, gap, least)
			}
		}
	})
}

func TestResume(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.addShard("A", "")  // finished
	f.addShard("B", "A") // resumes after its 2nd record
	f.addShard("C", "A") // not in the position: its parent is finished
	f.addShard("D", "")  // root not in the position
	f.addShard("E", "")  // both Finished and in Shards: Finished wins
	for _, id := range []string{"A", "B", "C", "D", "E"} {
		f.put(id, 4)
	}
	f.update("A", func(s *fakeShard) { s.closed = true })
	pos := Position{
		StreamARN: fakeARN,
		Shards:    map[string]string{"B": f.seqs("B")[1], "E": f.seqs("E")[0]},
		Finished:  []string{"A", "E"},
	}
	c := newCollector(t)
	opts := fastOptions(c)
	opts.InitialPosition = types.ShardIteratorTypeLatest // ignored when resuming
	ru := start(t, newReader(t, f, opts), pos, c.emit)
	ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 10 }, "10 records, have %d", c.count())
	if err := ru.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	equal(t, "records of B", c.seqs("B"), f.seqs("B")[2:])
	equal(t, "records of C", c.seqs("C"), f.seqs("C"))
	equal(t, "records of D", c.seqs("D"), f.seqs("D"))
	equal(t, "iterators of A", iteratorCalls(f, "A"), nil)
	equal(t, "iterators of E", iteratorCalls(f, "E"), nil)
	equal(t, "iterators of B", iteratorCalls(f, "B"), []string{"AFTER_SEQUENCE_NUMBER " + f.seqs("B")[1]})
	equal(t, "iterators of C", iteratorCalls(f, "C"), []string{"TRIM_HORIZON"})
	equal(t, "iterators of D", iteratorCalls(f, "D"), []string{"TRIM_HORIZON"})
}

// slack is how much earlier than the reader paced a call the fake may see
// it: the reader takes the time just before calling, the fake just after.
const slack = 2 * time.Millisecond

// maxPerWindow returns the most of times that fall in any window of length
// w starting at one of them (times in order).
func maxPerWindow(times []time.Time, w time.Duration) int {
	most := 0
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < w; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

func TestRates(t *testing.T) {
	t.Parallel()
	t.Run("DescribeStream per second", func(t *testing.T) {
		t.Parallel()
		for _, rate := range []float64{0, MaxDescribeRate} {
			t.Run(fmt.Sprint("MaxDescribeRate=", rate), func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.pageSize = 1
				for i := range 4 {
					f.addShard(fmt.Sprint("s", i), "")
				}
				c := newCollector(t)
				opts := fastOptions(c)
				opts.MaxDescribeRate = rate
				opts.DescribeInterval = time.Millisecond // list again at once
				want := int(rate)
				if rate == 0 {
					want = DefaultMaxDescribeRate
				}
				ru := start(t, newReader(t, f, opts), Position{}, c.emit)
				ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("DescribeStream")) >= 2*want+1 }, "DescribeStream calls")
				_ = ru.stop(t)
				var times []time.Time
				for _, call := range f.callsOf("DescribeStream") {
					times = append(times, call.at)
				}
				if got := maxPerWindow(times, time.Second-5*slack); got > want {
					t.Errorf("%d DescribeStream calls in one second, want at most %d", got, want)
				}
				// The limiter, not something else, is what holds the calls
				// back (loosely: a loaded machine adds delay).
				if got := maxPerWindow(times, time.Second); got < want/2 {
					t.Errorf("only %d DescribeStream calls in one second, want about %d: is the limiter too strict?", got, want)
				}
			})
		}
	})

	t.Run("GetRecords per shard while busy", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 100)
		c := newCollector(t)
		opts := Options{Limit: 1, OnShardEnd: c.onEnd} // default BusyInterval: 250 ms
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("GetRecords")) >= 6 }, "6 GetRecords calls")
		_ = ru.stop(t)
		var times []time.Time
		for _, call := range f.callsOf("GetRecords") {
			times = append(times, call.at)
			if call.records != 1 {
				t.Errorf("a GetRecords call returned %d records, want 1", call.records)
			}
		}
		if got := maxPerWindow(times, time.Second-5*slack); got > 4 {
			t.Errorf("%d GetRecords calls in one second, want at most 4", got)
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < DefaultBusyInterval-slack {
				t.Errorf("GetRecords %d came %v after the previous one, want at least %v", i, gap, DefaultBusyInterval)
			}
		}
	})

	t.Run("GetRecords backs off while idle", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		c := newCollector(t)
		opts := Options{BusyInterval: 10 * time.Millisecond, IdleMax: 160 * time.Millisecond, OnShardEnd: c.onEnd}
		ru := start(t, newReader(t, f, opts), Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("GetRecords")) >= 7 }, "7 GetRecords calls")
		f.put("S", 3)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records")
		n := len(f.callsOf("GetRecords"))
		ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("GetRecords")) >= n+3 }, "3 more GetRecords calls")
		_ = ru.stop(t)
		calls := f.callsOf("GetRecords")
		// Gaps before the records: 10, 20, 40, 80, 160, 160 ms (the first
		// call comes at once). After the call that returned records, 10 ms.
		want := []time.Duration{10, 20, 40, 80, 160, 160}
		for i, w := range want {
			// A call's time is taken inside the fake, which a loaded
			// machine may reach late: one late stamp shortens the next
			// gap, so allow a quarter.
			gap := calls[i+1].at.Sub(calls[i].at)
			if gap < w*time.Millisecond*3/4 {
				t.Errorf("idle gap %d: %v, want at least %v", i+1, gap, w*time.Millisecond)
			}
		}
		// Timers never fire early, but may late on a loaded machine: the
		// gaps above are lower bounds; the schedule itself is checked
		// exactly by TestNextDelay.
		busy := slices.IndexFunc(calls, func(c fakeCall) bool { return c.records > 0 })
		for i := busy + 1; i < len(calls); i++ {
			if gap := calls[i].at.Sub(calls[i-1].at); gap < 10*time.Millisecond-slack {
				t.Errorf("gap %d after records: %v, want at least 10 ms", i-busy, gap)
			}
		}
	})
}

func TestNextDelay(t *testing.T) {
	t.Parallel()
	o := Options{BusyInterval: 250 * time.Millisecond, IdleMax: 2 * time.Second}
	var (
		delay time.Duration
		idle  bool
		got   []time.Duration
	)
	// Records, then nothing eight times, then records, then nothing.
	for _, n := range []int{3, 0, 0, 0, 0, 0, 0, 0, 0, 1000, 0, 0} {
		delay, idle = o.nextDelay(delay, idle, n)
		got = append(got, delay)
	}
	ms := time.Millisecond
	want := []time.Duration{250 * ms, 250 * ms, 500 * ms, 1000 * ms, 2000 * ms, 2000 * ms, 2000 * ms, 2000 * ms, 2000 * ms, 250 * ms, 250 * ms, 500 * ms}
	if !slices.Equal(got, want) {
		t.Errorf("delays:\n got %v\nwant %v", got, want)
	}
}

func TestEmit(t *testing.T) {
	t.Parallel()
	t.Run("error stops Run", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 5)
		errHandler := errors.New("handler failed")
		c := newCollector(t)
		c.hook = func(_ context.Context, rec Record) error {
			if rec.SequenceNumber == f.seqs("S")[2] {
				return errHandler
			}
			return nil
		}
		err := newReader(t, f, fastOptions(c)).Run(t.Context(), Position{}, c.emit)
		if !errors.Is(err, errHandler) {
			t.Fatalf("Run = %v, want the emit error", err)
		}
		equal(t, "records", c.seqs("S"), f.seqs("S")[:2])
	})

	t.Run("blocked emit and a clean stop", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		for _, id := range []string{"S1", "S2"} {
			f.addShard(id, "")
			f.put(id, 3)
		}
		c := newCollector(t)
		c.hook = func(ctx context.Context, rec Record) error {
			if rec.ShardID == "S1" {
				<-ctx.Done() // backpressure: S1's consumer is stuck
				return ctx.Err()
			}
			return nil
		}
		ru := start(t, newReader(t, f, fastOptions(c)), Position{}, c.emit)
		// S2 goes on while S1 is blocked.
		ddbtest.Eventually(t, waitFor, func() bool { return len(c.seqs("S2")) == 3 }, "S2's records")
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		if n := len(c.seqs("S1")); n != 0 {
			t.Errorf("%d records of S1 kept, want 0", n)
		}
	})

	t.Run("malformed record", func(t *testing.T) {
		t.Parallel()
		api := &funcAPI{
			describe: func(*dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error) {
				return &dynamodbstreams.DescribeStreamOutput{StreamDescription: &types.StreamDescription{
					StreamStatus: types.StreamStatusEnabled, Shards: []types.Shard{{ShardId: aws.String("S")}},
				}}, nil
			},
			records: func(*dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error) {
				return &dynamodbstreams.GetRecordsOutput{Records: []types.Record{{EventName: types.OperationTypeInsert}}, NextShardIterator: aws.String("i")}, nil
			},
		}
		err := newReader(t, api, Options{}).Run(t.Context(), Position{}, newCollector(t).emit)
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want an error about the record", err)
		}
		t.Log(err)
	})
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.addShard("S", "")
	c := newCollector(t)
	r := newReader(t, f, fastOptions(c))
	ru := start(t, r, Position{}, c.emit)
	ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("GetRecords")) > 0 }, "reading")
	if err := r.Run(t.Context(), Position{}, c.emit); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	if err := ru.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// Once stopped it may run again.
	ru = start(t, r, Position{}, c.emit)
	if err := ru.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Run = %v, want context.Canceled", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	f := newFake()
	for _, tc := range []struct {
		name string
		api  API
		arn  string
		opts Options
		ok   bool
	}{
		{"defaults", f, fakeARN, Options{}, true},
		{"LATEST", f, fakeARN, Options{InitialPosition: types.ShardIteratorTypeLatest}, true},
		{"no api", nil, fakeARN, Options{}, false},
		{"no ARN", f, "", Options{}, false},
		{"AT_SEQUENCE_NUMBER", f, fakeARN, Options{InitialPosition: types.ShardIteratorTypeAtSequenceNumber}, false},
		{"MaxDescribeRate above 10", f, fakeARN, Options{MaxDescribeRate: 11}, false},
		{"MaxDescribeRate negative", f, fakeARN, Options{MaxDescribeRate: -1}, false},
		{"negative DescribeInterval", f, fakeARN, Options{DescribeInterval: -time.Second}, false},
		{"negative BusyInterval", f, fakeARN, Options{BusyInterval: -time.Second}, false},
		{"IdleMax below BusyInterval", f, fakeARN, Options{BusyInterval: time.Second, IdleMax: time.Millisecond}, false},
		{"BusyInterval above the default IdleMax", f, fakeARN, Options{BusyInterval: 3 * time.Second}, true},
		{"Limit above 1000", f, fakeARN, Options{Limit: 1001}, false},
		{"negative Limit", f, fakeARN, Options{Limit: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.api, tc.arn, tc.opts)
			if tc.ok != (err == nil) {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("New = %v, want ErrInvalidOptions", err)
			}
			if err == nil && tc.name == "defaults" {
				o := r.opts
				if o.InitialPosition != types.ShardIteratorTypeTrimHorizon || o.DescribeInterval != 10*time.Second ||
					o.MaxDescribeRate != 5 || o.BusyInterval != 250*time.Millisecond || o.IdleMax != 2*time.Second ||
					o.Limit != 1000 || o.MaxRetries != 10 {
					t.Errorf("defaults: %+v", o)
				}
			}
		})
	}
	r := newReader(t, f, Options{})
	if err := r.Run(t.Context(), Position{}, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Run with a nil emit = %v, want ErrInvalidOptions", err)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error {
		return &smithy.OperationError{ServiceID: "DynamoDB Streams", OperationName: "GetRecords", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want errKind
	}{
		{"expired", wrap(&types.ExpiredIteratorException{}), kindExpired},
		{"trimmed", wrap(&types.TrimmedDataAccessException{}), kindTrimmed},
		{"not found", wrap(&types.ResourceNotFoundException{}), kindNotFound},
		{"limit", wrap(&types.LimitExceededException{}), kindRetry},
		{"internal", wrap(&types.InternalServerError{}), kindRetry},
		{"provisioned throughput", wrap(&smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException"}), kindRetry},
		{"throttling", wrap(&smithy.GenericAPIError{Code: "ThrottlingException"}), kindRetry},
		{"server fault", wrap(&smithy.GenericAPIError{Code: "Whatever", Fault: smithy.FaultServer}), kindRetry},
		{"validation", wrap(&smithy.GenericAPIError{Code: "ValidationException"}), kindOther},
		{"canceled", wrap(context.Canceled), kindOther},
		{"plain", errors.New("boom"), kindOther},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// funcAPI is an API of function fields; a nil field fails the call.
type funcAPI struct {
	describe func(*dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error)
	records  func(*dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error)
}

func (a *funcAPI) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	if a.describe == nil {
		return nil, errors.New("funcAPI: no DescribeStream")
	}
	return a.describe(in)
}

func (a *funcAPI) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String("i")}, nil
}

func (a *funcAPI) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	if a.records == nil {
		return nil, errors.New("funcAPI: no GetRecords")
	}
	return a.records(in)
}
