package streamreader

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

// noteEvent appends an event to c's events, in order with its emits and
// shard ends.
func noteEvent(c *collector, e string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

// eventsOf returns c's events, leaving out those starting with one of skip.
func eventsOf(c *collector, skip ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		if !slices.ContainsFunc(skip, func(p string) bool { return strings.HasPrefix(e, p) }) {
			out = append(out, e)
		}
	}
	return out
}

// countEvents returns how many of c's events start with prefix.
func countEvents(c *collector, prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

// shardOptions are fastOptions whose OnPositioned and OnCaughtUp note
// "positioned" and "caughtup SHARD" in c's events.
func shardOptions(t *testing.T, c *collector) Options {
	opts := fastOptions(c)
	opts.OnPositioned = func() { noteEvent(c, "positioned") }
	opts.OnCaughtUp = func(id string, at time.Time) {
		if at.IsZero() || at.After(time.Now()) {
			t.Errorf("OnCaughtUp(%s) at %v: want a time of a call made already", id, at)
		}
		noteEvent(c, "caughtup "+id)
	}
	return opts
}

// shardEvents returns the events of a RunShard of shard id that emits seqs:
// "positioned", an "emit" per record, and "end" if ended.
func shardEvents(id string, seqs []string, ended bool) []string {
	out := []string{"positioned"}
	for _, s := range seqs {
		out = append(out, "emit "+id+" "+s)
	}
	if ended {
		out = append(out, "end "+id)
	}
	return out
}

// runShard runs RunShard until it returns, within waitFor.
func runShard(t *testing.T, r *Reader, shardID, after string, emit func(context.Context, Record) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	err := r.RunShard(ctx, shardID, after, emit)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunShard(%s) did not return within %v", shardID, waitFor)
	}
	return err
}

// startShard runs RunShard in a goroutine.
func startShard(t *testing.T, r *Reader, shardID, after string, emit func(context.Context, Record) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ru := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { ru.done <- r.RunShard(ctx, shardID, after, emit) }()
	t.Cleanup(func() {
		cancel()
		<-ru.done
	})
	return ru
}

// fakeRecords returns the records of the fake's shard id from index from
// on, as the reader should emit them.
func fakeRecords(f *fakeStream, id string, from int) []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Record
	for _, raw := range f.shard(id).recs[from:] {
		d := raw.Dynamodb
		out = append(out, Record{
			ShardID:             id,
			SequenceNumber:      *d.SequenceNumber,
			EventName:           string(raw.EventName),
			Keys:                d.Keys,
			NewImage:            d.NewImage,
			ApproximateCreation: *d.ApproximateCreationDateTime,
		})
	}
	return out
}

func recordsOf(c *collector) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs)
}

func equalRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d records emitted, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestShards(t *testing.T) {
	t.Parallel()
	t.Run("pages, parents and closed shards", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name     string
			pageSize int
			starts   []string // ExclusiveStartShardId of each DescribeStream
		}{
			// A full last page carries LastEvaluatedShardId: an empty page
			// follows.
			{"full last page", 2, []string{"", "B", "D", "F"}},
			{"partial last page", 4, []string{"", "D"}},
			{"one page", 100, []string{""}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.pageSize = tc.pageSize
				f.addShard("A", "")  // root, closed
				f.addShard("X", "A") // trimmed away: not listed
				f.addShard("B", "A") // child, open
				f.addShard("C", "A") // child, closed
				f.addShard("D", "C") // grandchild, open
				f.addShard("E", "")  // root, open, no records
				f.addShard("F", "Z") // parent trimmed away
				for _, id := range []string{"A", "X", "B", "C", "D", "F"} {
					f.put(id, 2)
				}
				for _, id := range []string{"A", "X", "C"} {
					f.update(id, func(s *fakeShard) { s.closed = true })
				}
				f.update("X", func(s *fakeShard) { s.unlisted = true })
				c := newCollector(t)
				got, err := newReader(t, f, fastOptions(c)).Shards(t.Context())
				if err != nil {
					t.Fatalf("Shards = %v", err)
				}
				want := []Shard{
					{ID: "A", Closed: true},
					{ID: "B", ParentID: "A"},
					{ID: "C", ParentID: "A", Closed: true},
					{ID: "D", ParentID: "C"},
					{ID: "E"},
					{ID: "F", ParentID: "Z"},
				}
				if !slices.Equal(got, want) {
					t.Errorf("Shards:\n got %+v\nwant %+v", got, want)
				}
				var starts []string
				for _, call := range f.callsOf("DescribeStream") {
					starts = append(starts, call.start)
				}
				equal(t, "ExclusiveStartShardId of each DescribeStream", starts, tc.starts)
				if n := len(f.callsOf("GetShardIterator")) + len(f.callsOf("GetRecords")); n != 0 {
					t.Errorf("%d GetShardIterator or GetRecords calls, want none", n)
				}
			})
		}
	})

	t.Run("closed once split", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("P", "")
		f.put("P", 1)
		r := newReader(t, f, fastOptions(newCollector(t)))
		got, err := r.Shards(t.Context())
		if err != nil || !slices.Equal(got, []Shard{{ID: "P"}}) {
			t.Fatalf("Shards = %+v, %v; want P open", got, err)
		}
		f.update("P", func(s *fakeShard) { s.closed = true })
		f.addShard("C", "P")
		got, err = r.Shards(t.Context())
		if want := []Shard{{ID: "P", Closed: true}, {ID: "C", ParentID: "P"}}; err != nil || !slices.Equal(got, want) {
			t.Fatalf("Shards = %+v, %v; want %+v", got, err, want)
		}
	})

	t.Run("empty stream", func(t *testing.T) {
		t.Parallel()
		got, err := newReader(t, newFake(), fastOptions(newCollector(t))).Shards(t.Context())
		if err != nil || len(got) != 0 {
			t.Fatalf("Shards = %+v, %v; want no shard and no error", got, err)
		}
	})

	t.Run("throttled listing is retried", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.pageSize = 1
		f.addShard("A", "")
		f.addShard("B", "A")
		f.fault = func(op, _ string, n int) error {
			switch {
			case op == "DescribeStream" && n == 1:
				return &types.LimitExceededException{Message: aws.String("Rate exceeded")}
			case op == "DescribeStream" && n == 3:
				return &types.InternalServerError{Message: aws.String("oops")}
			}
			return nil
		}
		got, err := newReader(t, f, fastOptions(newCollector(t))).Shards(t.Context())
		if want := []Shard{{ID: "A"}, {ID: "B", ParentID: "A"}}; err != nil || !slices.Equal(got, want) {
			t.Fatalf("Shards = %+v, %v; want %+v", got, err, want)
		}
		var starts []string
		for _, call := range f.callsOf("DescribeStream") {
			starts = append(starts, call.start)
		}
		// Each failed page is asked for again, not skipped.
		equal(t, "ExclusiveStartShardId of each DescribeStream", starts, []string{"", "", "A", "A", "B"})
	})

	t.Run("duplicates, empty ids and self-parents", func(t *testing.T) {
		t.Parallel()
		api := &funcAPI{describe: func(in *dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error) {
			sd := &types.StreamDescription{StreamStatus: types.StreamStatusEnabled}
			switch aws.ToString(in.ExclusiveStartShardId) {
			case "":
				sd.Shards = []types.Shard{
					{ShardId: aws.String("A"), ParentShardId: aws.String("A")},
					{ShardId: aws.String("")},
					{},
					{ShardId: aws.String("B"), ParentShardId: aws.String("A"),
						SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("1")}},
				}
				sd.LastEvaluatedShardId = aws.String("B")
			case "B":
				sd.Shards = []types.Shard{
					{ShardId: aws.String("B"), ParentShardId: aws.String("A")},
					{ShardId: aws.String("C"), SequenceNumberRange: &types.SequenceNumberRange{
						StartingSequenceNumber: aws.String("1"), EndingSequenceNumber: aws.String("9")}},
				}
			default:
				t.Errorf("DescribeStream after %q", aws.ToString(in.ExclusiveStartShardId))
			}
			return &dynamodbstreams.DescribeStreamOutput{StreamDescription: sd}, nil
		}}
		got, err := newReader(t, api, Options{MaxDescribeRate: MaxDescribeRate}).Shards(t.Context())
		want := []Shard{{ID: "A"}, {ID: "B", ParentID: "A"}, {ID: "C", Closed: true}}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Shards = %+v, %v; want %+v", got, err, want)
		}
	})

	t.Run("stream gone", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name     string
			setup    func(f *fakeStream)
			arn      string
			notFound bool // the error is also a *types.ResourceNotFoundException
		}{
			{"DISABLED", func(f *fakeStream) { f.status = types.StreamStatusDisabled }, fakeARN, false},
			{"DISABLED on a later page", func(f *fakeStream) {
				f.pageSize = 1
				f.fault = func(op, _ string, n int) error {
					if op == "DescribeStream" && n == 2 {
						f.mu.Lock()
						f.status = types.StreamStatusDisabled
						f.mu.Unlock()
					}
					return nil
				}
			}, fakeARN, false},
			{"deleted", func(f *fakeStream) { f.gone = true }, fakeARN, true},
			{"another stream", func(*fakeStream) {}, fakeARN + "-old", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("A", "")
				f.addShard("B", "")
				tc.setup(f)
				r, err := New(f, tc.arn, fastOptions(newCollector(t)))
				if err != nil {
					t.Fatal(err)
				}
				got, err := r.Shards(t.Context())
				if !errors.Is(err, ErrStreamGone) {
					t.Fatalf("Shards = %+v, %v; want ErrStreamGone", got, err)
				}
				if got != nil {
					t.Errorf("Shards returned %+v with its error", got)
				}
				var nf *types.ResourceNotFoundException
				if errors.As(err, &nf) != tc.notFound {
					t.Errorf("errors.As(*types.ResourceNotFoundException) = %v, want %v", !tc.notFound, tc.notFound)
				}
				t.Log(err)
			})
		}
	})

	t.Run("stopped context", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("A", "")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got, err := newReader(t, f, fastOptions(newCollector(t))).Shards(ctx)
		if !errors.Is(err, context.Canceled) || got != nil {
			t.Fatalf("Shards = %+v, %v; want context.Canceled", got, err)
		}
	})

	t.Run("while RunShard runs", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("A", "")
		c := newCollector(t)
		r := newReader(t, f, shardOptions(t, c))
		ru := startShard(t, r, "A", "", c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return countEvents(c, "caughtup") > 0 }, "A read")
		got, err := r.Shards(t.Context())
		if err != nil || !slices.Equal(got, []Shard{{ID: "A"}}) {
			t.Errorf("Shards = %+v, %v; want A", got, err)
		}
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("RunShard = %v, want context.Canceled", err)
		}
	})
}

func TestRunShard(t *testing.T) {
	t.Parallel()
	t.Run("reads only its shard", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("P", "")
		f.addShard("S", "")
		f.addShard("C1", "P")
		f.addShard("C2", "P")
		// Interleaved, so that the stream's sequence numbers of P are not
		// consecutive.
		f.put("P", 3)
		f.put("S", 2)
		f.put("C1", 2)
		f.put("P", 4)
		f.update("P", func(s *fakeShard) { s.closed = true })
		f.put("C2", 2)
		f.put("S", 1)
		c := newCollector(t)
		opts := shardOptions(t, c)
		opts.Limit = 2
		if err := runShard(t, newReader(t, f, opts), "P", "", c.emit); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equalRecords(t, recordsOf(c), fakeRecords(f, "P", 0))
		equal(t, "events", eventsOf(c), shardEvents("P", f.seqs("P"), true))
		equal(t, "iterators of P", iteratorCalls(f, "P"), []string{"TRIM_HORIZON"})
		for _, id := range []string{"S", "C1", "C2"} {
			equal(t, "iterators of "+id, iteratorCalls(f, id), nil)
		}
		if n := len(f.callsOf("DescribeStream")); n != 0 {
			t.Errorf("%d DescribeStream calls, want none", n)
		}
		for _, call := range f.callsOf("GetRecords") {
			if call.shard != "P" {
				t.Errorf("GetRecords on shard %s", call.shard)
			}
		}
	})

	t.Run("start", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name    string
			after   int // index of the record to read after; -1 for ""
			initial types.ShardIteratorType
		}{
			{"TRIM_HORIZON", -1, ""},
			{"TRIM_HORIZON whatever InitialPosition", -1, types.ShardIteratorTypeLatest},
			{"after the first record", 0, ""},
			{"after a middle record", 3, ""},
			{"after the last but one record", 5, ""},
			{"after the last record", 6, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("S", "")
				f.addShard("T", "")
				for range 7 {
					f.put("S", 1)
					f.put("T", 1) // sequence numbers between S's
				}
				f.update("S", func(s *fakeShard) { s.closed = true })
				seqs := f.seqs("S")
				after, wantIter := "", "TRIM_HORIZON"
				if tc.after >= 0 {
					after = seqs[tc.after]
					wantIter = "AFTER_SEQUENCE_NUMBER " + after
				}
				c := newCollector(t)
				opts := shardOptions(t, c)
				opts.Limit = 3
				opts.InitialPosition = tc.initial
				if err := runShard(t, newReader(t, f, opts), "S", after, c.emit); err != nil {
					t.Fatalf("RunShard = %v, want nil", err)
				}
				equalRecords(t, recordsOf(c), fakeRecords(f, "S", tc.after+1))
				equal(t, "events", eventsOf(c), shardEvents("S", seqs[tc.after+1:], true))
				equal(t, "iterators", iteratorCalls(f, "S"), []string{wantIter})
			})
		}
	})

	t.Run("closed and empty", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.update("S", func(s *fakeShard) { s.closed = true })
		c := newCollector(t)
		if err := runShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equal(t, "events", eventsOf(c), shardEvents("S", nil, true))
	})

	t.Run("open shard runs until ctx ends", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.addShard("T", "")
		f.put("S", 3)
		c := newCollector(t)
		ru := startShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return countEvents(c, "caughtup S") >= 3 }, "idle calls on S")
		if n := c.count(); n != 3 {
			t.Fatalf("%d records emitted, want 3", n)
		}
		// The first call returned every record: OnCaughtUp only after.
		events := eventsOf(c)
		if i, j := slices.Index(events, "emit S "+f.seqs("S")[2]), slices.Index(events, "caughtup S"); i < 0 || j < i {
			t.Errorf("events %q: want OnCaughtUp only after the last record", events)
		}
		f.put("T", 2)
		f.put("S", 2)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 5 }, "5 records, have %d", c.count())
		n := countEvents(c, "caughtup S")
		ddbtest.Eventually(t, waitFor, func() bool { return countEvents(c, "caughtup S") > n }, "idle again")
		select {
		case err := <-ru.done:
			t.Fatalf("RunShard returned %v on an open shard", err)
		default:
		}
		if err := ru.stop(t); err != context.Canceled {
			t.Fatalf("RunShard = %v, want context.Canceled", err)
		}
		equalRecords(t, recordsOf(c), fakeRecords(f, "S", 0))
		equal(t, "events", eventsOf(c, "caughtup"), shardEvents("S", f.seqs("S"), false))
		equal(t, "iterators of S", iteratorCalls(f, "S"), []string{"TRIM_HORIZON"})
		equal(t, "iterators of T", iteratorCalls(f, "T"), nil)
		if n := countEvents(c, "caughtup "); n != countEvents(c, "caughtup S") {
			t.Errorf("OnCaughtUp for another shard than S: %q", eventsOf(c))
		}
	})

	t.Run("open shard until the deadline", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 2)
		c := newCollector(t)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		err := newReader(t, f, shardOptions(t, c)).RunShard(ctx, "S", "", c.emit)
		if err != context.DeadlineExceeded {
			t.Fatalf("RunShard = %v, want context.DeadlineExceeded", err)
		}
		equal(t, "events", eventsOf(c, "caughtup"), shardEvents("S", f.seqs("S"), false))
	})

	t.Run("closed while reading", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 2)
		c := newCollector(t)
		ru := startShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return countEvents(c, "caughtup S") > 0 }, "S read")
		// DynamoDB splits S: its children appear, it takes its last
		// records and closes.
		f.addShard("C1", "S")
		f.addShard("C2", "S")
		f.put("C1", 1)
		f.put("S", 3)
		f.update("S", func(s *fakeShard) { s.closed = true })
		f.put("C2", 1)
		if err := ru.wait(t); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equalRecords(t, recordsOf(c), fakeRecords(f, "S", 0))
		equal(t, "events", eventsOf(c, "caughtup"), shardEvents("S", f.seqs("S"), true))
		for _, id := range []string{"C1", "C2"} {
			equal(t, "iterators of "+id, iteratorCalls(f, id), nil)
		}
	})

	t.Run("throttling is retried", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 10)
		f.update("S", func(s *fakeShard) { s.closed = true })
		limit := func() error { return &types.LimitExceededException{Message: aws.String("Rate exceeded")} }
		f.fault = func(op, shard string, n int) error {
			switch {
			case op == "GetShardIterator" && n == 1:
				return &smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException", Message: "slow down"}
			case op == "GetRecords" && (n == 1 || n == 3 || n == 4 || n == 7):
				return limit()
			case op == "GetRecords" && n == 5:
				return &types.InternalServerError{Message: aws.String("oops")}
			}
			return nil
		}
		c := newCollector(t)
		opts := shardOptions(t, c)
		opts.Limit = 3
		if err := runShard(t, newReader(t, f, opts), "S", "", c.emit); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equalRecords(t, recordsOf(c), fakeRecords(f, "S", 0))
		equal(t, "events", eventsOf(c), shardEvents("S", f.seqs("S"), true))
		// The failed GetShardIterator and its retry; no renewal.
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "TRIM_HORIZON"})
		// 4 pages (3, 3, 3, 1 records), each asked for again after its
		// failures.
		var got []int
		for _, call := range f.callsOf("GetRecords") {
			if call.err == nil {
				got = append(got, call.records)
			}
		}
		if want := []int{3, 3, 3, 1}; !slices.Equal(got, want) {
			t.Errorf("records of each successful GetRecords: %v, want %v", got, want)
		}
	})

	t.Run("throttling: gives up after MaxRetries", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 4)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" && n > 1 {
				return &types.LimitExceededException{Message: aws.String("Rate exceeded")}
			}
			return nil
		}
		c := newCollector(t)
		opts := shardOptions(t, c)
		opts.Limit = 2
		opts.MaxRetries = 2
		err := runShard(t, newReader(t, f, opts), "S", "", c.emit)
		var le *types.LimitExceededException
		if !errors.As(err, &le) {
			t.Fatalf("RunShard = %v, want the LimitExceededException", err)
		}
		if n := len(f.callsOf("GetRecords")); n != 4 {
			t.Errorf("%d GetRecords calls, want 4 (1 + 1 + 2 retries)", n)
		}
		equal(t, "events", eventsOf(c), shardEvents("S", f.seqs("S")[:2], false))
	})

	t.Run("expired iterator", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name    string
			after   int // index of the record to read after; -1 for ""
			expired int // the GetRecords call that fails
			renewed int // index of the record the renewed iterator is after
		}{
			// Limit 2: two pages (4 records) emitted, then the third call
			// fails.
			{"mid-shard from TRIM_HORIZON", -1, 3, 3},
			{"mid-shard from a sequence number", 1, 3, 5},
			{"at the first call from a sequence number", 1, 1, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("S", "")
				f.put("S", 10)
				f.update("S", func(s *fakeShard) { s.closed = true })
				f.fault = func(op, shard string, n int) error {
					if op == "GetRecords" && n == tc.expired {
						return &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
					}
					return nil
				}
				seqs := f.seqs("S")
				after, first := "", "TRIM_HORIZON"
				if tc.after >= 0 {
					after = seqs[tc.after]
					first = "AFTER_SEQUENCE_NUMBER " + after
				}
				c := newCollector(t)
				opts := shardOptions(t, c)
				opts.Limit = 2
				if err := runShard(t, newReader(t, f, opts), "S", after, c.emit); err != nil {
					t.Fatalf("RunShard = %v, want nil", err)
				}
				equalRecords(t, recordsOf(c), fakeRecords(f, "S", tc.after+1))
				equal(t, "events", eventsOf(c), shardEvents("S", seqs[tc.after+1:], true))
				equal(t, "iterators", iteratorCalls(f, "S"), []string{first, "AFTER_SEQUENCE_NUMBER " + seqs[tc.renewed]})
			})
		}
	})

	t.Run("expired iterator at TRIM_HORIZON before any record", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 3)
		f.update("S", func(s *fakeShard) { s.closed = true })
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" && n == 1 {
				return &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
			}
			return nil
		}
		c := newCollector(t)
		if err := runShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equal(t, "events", eventsOf(c), shardEvents("S", f.seqs("S"), true))
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "TRIM_HORIZON"})
	})

	t.Run("iterator older than 15 minutes while emit blocks", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		clock := &testClock{}
		f.clock = clock.now
		f.addShard("S", "")
		f.put("S", 10)
		f.update("S", func(s *fakeShard) { s.closed = true })
		seqs := f.seqs("S")
		c := newCollector(t)
		c.hook = func(_ context.Context, rec Record) error {
			if rec.SequenceNumber == seqs[2] {
				clock.advance(16 * time.Minute) // emit blocked for 16 minutes
			}
			return nil
		}
		opts := shardOptions(t, c)
		opts.Limit = 4
		opts.Clock = clock.now
		opts.OnCaughtUp = nil // its check uses the real clock
		if err := runShard(t, newReader(t, f, opts), "S", "", c.emit); err != nil {
			t.Fatalf("RunShard = %v, want nil", err)
		}
		equalRecords(t, recordsOf(c), fakeRecords(f, "S", 0))
		equal(t, "events", eventsOf(c), shardEvents("S", seqs, true))
		// The whole first page (4 records) was emitted; its iterator was
		// then too old, and renewed before use rather than failing.
		equal(t, "iterators", iteratorCalls(f, "S"), []string{"TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER " + seqs[3]})
		for _, call := range f.callsOf("GetRecords") {
			if call.err != nil {
				t.Errorf("GetRecords failed: %v", call.err)
			}
		}
	})

	t.Run("iterators that keep expiring", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 3)
		f.fault = func(op, shard string, n int) error {
			if op == "GetRecords" {
				return &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
			}
			return nil
		}
		c := newCollector(t)
		err := runShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit)
		var ee *types.ExpiredIteratorException
		if !errors.As(err, &ee) {
			t.Fatalf("RunShard = %v, want the ExpiredIteratorException", err)
		}
		if n := len(iteratorCalls(f, "S")); n != 1+maxRenewals {
			t.Errorf("%d GetShardIterator calls, want %d", n, 1+maxRenewals)
		}
		equal(t, "events", eventsOf(c), shardEvents("S", nil, false))
	})

	t.Run("trimmed", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name    string
			after   int                        // index of the record to read after; -1 for ""
			setup   func(f *fakeStream)        // after the records are put
			emitted int                        // records emitted, from after
			seq     func(seqs []string) string // TrimmedError.SequenceNumber
		}{
			{
				name:  "position older than the trim horizon",
				after: 1,
				setup: func(f *fakeStream) { f.update("S", func(s *fakeShard) { s.trimmed = 3 }) },
				seq:   func(seqs []string) string { return seqs[1] },
			},
			{
				// Unlike a first start of Run, the shard's records are
				// owed: no new start at the new oldest record.
				name:  "from TRIM_HORIZON, trimmed before the first read",
				after: -1,
				setup: func(f *fakeStream) {
					f.fault = func(op, shard string, n int) error {
						if op == "GetRecords" && n == 1 {
							f.update("S", func(s *fakeShard) { s.trimmed = 1 })
							return &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
						}
						return nil
					}
				},
				seq: func([]string) string { return "" },
			},
			{
				name:  "from TRIM_HORIZON, trimmed under the iterator",
				after: -1,
				setup: func(f *fakeStream) {
					f.fault = func(op, shard string, n int) error {
						if op == "GetRecords" && n == 3 {
							return &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
						}
						return nil
					}
				},
				emitted: 4,
				seq:     func(seqs []string) string { return seqs[3] },
			},
			{
				name:  "from a sequence number, trimmed under the iterator",
				after: 0,
				setup: func(f *fakeStream) {
					f.fault = func(op, shard string, n int) error {
						if op == "GetRecords" && n == 2 {
							return &types.TrimmedDataAccessException{Message: aws.String("trimmed")}
						}
						return nil
					}
				},
				emitted: 2,
				seq:     func(seqs []string) string { return seqs[2] },
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("S", "")
				f.put("S", 8)
				tc.setup(f)
				seqs := f.seqs("S")
				after := ""
				if tc.after >= 0 {
					after = seqs[tc.after]
				}
				c := newCollector(t)
				opts := shardOptions(t, c)
				opts.Limit = 2
				err := runShard(t, newReader(t, f, opts), "S", after, c.emit)
				var te *TrimmedError
				if !errors.As(err, &te) || !errors.Is(err, ErrTrimmed) {
					t.Fatalf("RunShard = %v, want a *TrimmedError", err)
				}
				if te.ShardID != "S" || te.SequenceNumber != tc.seq(seqs) {
					t.Errorf("TrimmedError names shard %q after %q, want %q after %q", te.ShardID, te.SequenceNumber, "S", tc.seq(seqs))
				}
				var sdk *types.TrimmedDataAccessException
				if !errors.As(err, &sdk) {
					t.Errorf("RunShard = %v, want it to wrap the TrimmedDataAccessException", err)
				}
				equalRecords(t, recordsOf(c), fakeRecords(f, "S", tc.after+1)[:tc.emitted])
				if c.ended("S") {
					t.Error("OnShardEnd called")
				}
				t.Log(err)
			})
		}
	})

	t.Run("missing shard", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name       string
			shard      string
			after      int // index of the record of S to read after; -1 for ""
			setup      func(f *fakeStream)
			emitted    int  // records of S emitted, from after
			seq        int  // index of TrimmedError.SequenceNumber in S's records; -1 for ""
			positioned bool // OnPositioned called
		}{
			{name: "never existed", shard: "nope", after: -1, seq: -1},
			{
				name: "trimmed away", shard: "S", after: 0, seq: 0,
				setup: func(f *fakeStream) { f.update("S", func(s *fakeShard) { s.closed, s.unlisted = true, true }) },
			},
			{
				name: "listed but no longer readable", shard: "S", after: -1, seq: -1,
				setup: func(f *fakeStream) { f.update("S", func(s *fakeShard) { s.closed, s.expired = true, true }) },
			},
			{
				name: "gone while reading", shard: "S", after: -1, emitted: 2, seq: 1, positioned: true,
				setup: func(f *fakeStream) {
					f.fault = func(op, shard string, n int) error {
						if op == "GetRecords" && n == 2 {
							f.update("S", func(s *fakeShard) { s.unlisted = true })
						}
						return nil
					}
				},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("S", "")
				f.addShard("T", "")
				f.put("S", 6)
				f.put("T", 1)
				if tc.setup != nil {
					tc.setup(f)
				}
				seqs := f.seqs("S")
				after, wantSeq := "", ""
				if tc.after >= 0 {
					after = seqs[tc.after]
				}
				if tc.seq >= 0 {
					wantSeq = seqs[tc.seq]
				}
				c := newCollector(t)
				opts := shardOptions(t, c)
				opts.Limit = 2
				err := runShard(t, newReader(t, f, opts), tc.shard, after, c.emit)
				var te *TrimmedError
				if !errors.As(err, &te) || !errors.Is(err, ErrTrimmed) {
					t.Fatalf("RunShard = %v, want a *TrimmedError", err)
				}
				if errors.Is(err, ErrStreamGone) {
					t.Errorf("RunShard = %v: the stream is still there", err)
				}
				if te.ShardID != tc.shard || te.SequenceNumber != wantSeq {
					t.Errorf("TrimmedError names shard %q after %q, want %q after %q", te.ShardID, te.SequenceNumber, tc.shard, wantSeq)
				}
				var nf *types.ResourceNotFoundException
				if !errors.As(err, &nf) {
					t.Errorf("RunShard = %v, want it to wrap the ResourceNotFoundException", err)
				}
				equalRecords(t, recordsOf(c), fakeRecords(f, "S", tc.after+1)[:tc.emitted])
				if got := countEvents(c, "positioned"); got != map[bool]int{false: 0, true: 1}[tc.positioned] {
					t.Errorf("OnPositioned called %d times, want positioned=%v", got, tc.positioned)
				}
				if c.ended(tc.shard) {
					t.Error("OnShardEnd called")
				}
				t.Log(err)
			})
		}
	})

	t.Run("stream gone", func(t *testing.T) {
		t.Parallel()
		gone := func(f *fakeStream) {
			f.mu.Lock()
			f.gone = true
			f.mu.Unlock()
		}
		for _, tc := range []struct {
			name    string
			setup   func(f *fakeStream)
			emitted int
		}{
			{"deleted before", func(f *fakeStream) { f.gone = true }, 0},
			{"deleted while reading", func(f *fakeStream) {
				f.fault = func(op, _ string, n int) error {
					if op == "GetRecords" && n == 2 {
						gone(f)
					}
					return nil
				}
			}, 2},
			{"deleted before the iterator", func(f *fakeStream) {
				f.fault = func(op, _ string, _ int) error {
					if op == "GetShardIterator" {
						gone(f)
					}
					return nil
				}
			}, 0},
			{"DISABLED and the shard gone", func(f *fakeStream) {
				f.status = types.StreamStatusDisabled
				f.update("S", func(s *fakeShard) { s.closed, s.expired = true, true })
			}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.addShard("S", "")
				f.put("S", 6)
				tc.setup(f)
				c := newCollector(t)
				opts := shardOptions(t, c)
				opts.Limit = 2
				err := runShard(t, newReader(t, f, opts), "S", "", c.emit)
				if !errors.Is(err, ErrStreamGone) {
					t.Fatalf("RunShard = %v, want ErrStreamGone", err)
				}
				var te *TrimmedError
				if errors.As(err, &te) {
					t.Errorf("RunShard = %v, want no TrimmedError", err)
				}
				equalRecords(t, recordsOf(c), fakeRecords(f, "S", 0)[:tc.emitted])
				if c.ended("S") {
					t.Error("OnShardEnd called")
				}
				t.Log(err)
			})
		}
	})

	t.Run("emit error", func(t *testing.T) {
		t.Parallel()
		const id = "shardId-00000001"
		f := newFake()
		f.addShard(id, "")
		f.put(id, 5)
		f.update(id, func(s *fakeShard) { s.closed = true })
		seqs := f.seqs(id)
		errHandler := errors.New("handler failed")
		c := newCollector(t)
		c.hook = func(_ context.Context, rec Record) error {
			if rec.SequenceNumber == seqs[2] {
				return errHandler
			}
			return nil
		}
		err := runShard(t, newReader(t, f, shardOptions(t, c)), id, "", c.emit)
		if !errors.Is(err, errHandler) {
			t.Fatalf("RunShard = %v, want the emit error", err)
		}
		if err == errHandler || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), seqs[2]) {
			t.Errorf("RunShard = %q, want the emit error wrapped with the shard id and sequence number", err)
		}
		equal(t, "events", eventsOf(c), shardEvents(id, seqs[:2], false))
		if n := len(f.callsOf("GetRecords")); n != 1 {
			t.Errorf("%d GetRecords calls, want 1: nothing read after the error", n)
		}
	})

	t.Run("blocked emit and a stop", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.put("S", 3)
		f.update("S", func(s *fakeShard) { s.closed = true })
		seqs := f.seqs("S")
		blocked := make(chan struct{})
		c := newCollector(t)
		c.hook = func(ctx context.Context, rec Record) error {
			if rec.SequenceNumber == seqs[1] {
				close(blocked)
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		ru := startShard(t, newReader(t, f, shardOptions(t, c)), "S", "", c.emit)
		select {
		case <-blocked:
		case <-time.After(waitFor):
			t.Fatal("emit not called for the second record")
		}
		if err := ru.stop(t); err != context.Canceled {
			t.Fatalf("RunShard = %v, want context.Canceled", err)
		}
		equal(t, "events", eventsOf(c), shardEvents("S", seqs[:1], false))
	})

	t.Run("ErrRunning", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.addShard("T", "")
		f.put("S", 2)
		c := newCollector(t)
		r := newReader(t, f, shardOptions(t, c))

		ru := start(t, r, Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 2 }, "Run reading")
		if err := r.RunShard(t.Context(), "T", "", c.emit); !errors.Is(err, ErrRunning) {
			t.Errorf("RunShard during Run = %v, want ErrRunning", err)
		}
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}

		rs := startShard(t, r, "S", "", c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 4 }, "RunShard reading")
		n := len(iteratorCalls(f, "T"))
		if err := r.RunShard(t.Context(), "T", "", c.emit); !errors.Is(err, ErrRunning) {
			t.Errorf("second RunShard = %v, want ErrRunning", err)
		}
		if err := r.Run(t.Context(), Position{}, c.emit); !errors.Is(err, ErrRunning) {
			t.Errorf("Run during RunShard = %v, want ErrRunning", err)
		}
		// The refused calls left the first one in charge.
		if err := r.RunShard(t.Context(), "T", "", c.emit); !errors.Is(err, ErrRunning) {
			t.Errorf("third RunShard = %v, want ErrRunning", err)
		}
		if got := len(iteratorCalls(f, "T")); got != n {
			t.Errorf("a refused call opened T")
		}
		f.put("S", 1)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 5 }, "RunShard still reading")
		if err := rs.stop(t); err != context.Canceled {
			t.Fatalf("RunShard = %v, want context.Canceled", err)
		}

		// Once stopped, it may run again.
		f.update("T", func(s *fakeShard) { s.closed = true })
		if err := runShard(t, r, "T", "", c.emit); err != nil {
			t.Errorf("RunShard after the others stopped = %v, want nil", err)
		}
	})

	t.Run("invalid arguments", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.addShard("S", "")
		f.update("S", func(s *fakeShard) { s.closed = true })
		c := newCollector(t)
		r := newReader(t, f, shardOptions(t, c))
		for _, tc := range []struct {
			name         string
			shard, after string
			emit         func(context.Context, Record) error
		}{
			{"empty shard id", "", "", c.emit},
			{"empty shard id with a sequence number", "", "000000000000000000001", c.emit},
			{"nil emit", "S", "", nil},
		} {
			if err := r.RunShard(t.Context(), tc.shard, tc.after, tc.emit); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("%s: RunShard = %v, want ErrInvalidOptions", tc.name, err)
			}
		}
		f.mu.Lock()
		calls := len(f.calls)
		f.mu.Unlock()
		if calls != 0 {
			t.Errorf("%d calls to the API, want none", calls)
		}
		if n := len(eventsOf(c)); n != 0 {
			t.Errorf("events %q, want none", eventsOf(c))
		}
		// Refused arguments leave the Reader free.
		if err := runShard(t, r, "S", "", c.emit); err != nil {
			t.Errorf("RunShard = %v, want nil", err)
		}
	})
}

// TestRunShardIdleThenWritten: a shard read from TRIM_HORIZON while it holds
// no record, polled idle, then written. DynamoDB hands the records over. A
// TrimmedDataAccessException before the first record (DynamoDB Local's, or
// DynamoDB's when records expire under the iterator) trims nothing owed
// when the records are owed only from less than Retention minus an hour
// ago: the shard is opened again at TRIM_HORIZON. Otherwise, or when
// reading resumes after a record, it is a *TrimmedError.
func TestRunShardIdleThenWritten(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name    string
		local   bool      // DynamoDB Local's iterators of an empty shard
		expire  int       // records trimmed under the first iterator
		backlog int       // records before the start
		after   bool      // resume after the backlog's first record
		owed    time.Time // ShardStart.OwedSince
		want    []string  // iterators taken; nil: a *TrimmedError
	}{
		{name: "DynamoDB, every record owed", want: []string{"TRIM_HORIZON"}},
		{name: "DynamoDB, owed since a minute ago", owed: now.Add(-time.Minute), want: []string{"TRIM_HORIZON"}},
		{name: "DynamoDB Local, owed since a minute ago", local: true, owed: now.Add(-time.Minute), want: []string{"TRIM_HORIZON", "TRIM_HORIZON"}},
		{name: "DynamoDB Local, owed since 22 h ago", local: true, owed: now.Add(-22 * time.Hour), want: []string{"TRIM_HORIZON", "TRIM_HORIZON"}},
		{name: "DynamoDB Local, every record owed", local: true},
		{name: "DynamoDB Local, owed since 23.5 h ago", local: true, owed: now.Add(-23*time.Hour - 30*time.Minute)},
		{name: "expired under the iterator, owed since a minute ago", backlog: 4, expire: 2, owed: now.Add(-time.Minute), want: []string{"TRIM_HORIZON", "TRIM_HORIZON"}},
		{name: "expired under the iterator, owed since 25 h ago", backlog: 4, expire: 2, owed: now.Add(-25 * time.Hour)},
		{name: "expired after the record handled", backlog: 4, expire: 2, after: true, owed: now.Add(-time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			f.local = tc.local
			f.addShard("S", "")
			f.put("S", tc.backlog)
			after := ""
			if tc.after {
				after = f.seqs("S")[0]
			}
			f.fault = func(op, shard string, n int) error {
				if op == "GetRecords" && n == 1 && tc.expire > 0 {
					f.update("S", func(s *fakeShard) { s.trimmed = tc.expire })
				}
				return nil
			}
			c := newCollector(t)
			r := newReader(t, f, fastOptions(c))
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.RunShardFrom(ctx, "S", ShardStart{After: after, OwedSince: tc.owed}, c.emit) }()
			if tc.backlog == 0 {
				// Idle: several empty polls, then the first writes.
				ddbtest.Eventually(t, waitFor, func() bool { return len(f.callsOf("GetRecords")) >= 5 }, "no idle polls")
				f.put("S", 3)
			}
			if tc.want == nil {
				var te *TrimmedError
				if err := <-done; !errors.As(err, &te) || te.ShardID != "S" {
					t.Fatalf("RunShardFrom = %v, want a *TrimmedError of S", err)
				}
				return
			}
			want := fakeRecords(f, "S", tc.expire)
			ddbtest.Eventually(t, waitFor, func() bool { return c.count() >= len(want) }, "%d records, want %d", c.count(), len(want))
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("RunShardFrom = %v, want context.Canceled", err)
			}
			equalRecords(t, recordsOf(c), want)
			equal(t, "iterators", iteratorCalls(f, "S"), tc.want)
		})
	}
}
