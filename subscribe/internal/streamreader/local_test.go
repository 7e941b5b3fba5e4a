package streamreader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go/logging"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

// localStream is a commits table on DynamoDB Local with its stream.
type localStream struct {
	table    string
	ddb      *dynamodb.Client
	streams  *countingAPI
	store    *store.Store
	appended int
}

func newLocalStream(t *testing.T) *localStream {
	t.Helper()
	ls := &localStream{table: ddbtest.TableName(t), ddb: ddbtest.Client(t)}
	cfg := store.Config{TableName: ls.table}
	if err := store.CreateTable(t.Context(), ls.ddb, cfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(ls.ddb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ls.store = s
	ls.streams = &countingAPI{API: dynamodbstreams.New(dynamodbstreams.Options{
		BaseEndpoint: aws.String(ddbtest.Endpoint(t)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		// The emulator's CRC32 header makes the SDK log a checksum
		// warning on every error response: noise.
		Logger: logging.Nop{},
	})}
	return ls
}

// arn returns the table's current stream ARN, once the table is ACTIVE.
func (ls *localStream) arn(t *testing.T) string {
	t.Helper()
	var arn string
	ddbtest.Eventually(t, waitFor, func() bool {
		out, err := ls.ddb.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(ls.table)})
		if err != nil {
			t.Fatal(err)
		}
		arn = aws.ToString(out.Table.LatestStreamArn)
		return out.Table.TableStatus == ddbtypes.TableStatusActive
	}, "table %s ACTIVE", ls.table)
	return arn
}

// setStream enables or disables the table's stream.
func (ls *localStream) setStream(t *testing.T, on bool) {
	t.Helper()
	ls.arn(t) // wait for ACTIVE
	spec := &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(on)}
	if on {
		spec.StreamViewType = ddbtypes.StreamViewTypeNewImage
	}
	if _, err := ls.ddb.UpdateTable(t.Context(), &dynamodb.UpdateTableInput{TableName: aws.String(ls.table), StreamSpecification: spec}); err != nil {
		t.Fatal(err)
	}
}

// appendCommits appends n commits, round robin over three aggregates, and
// returns them in append order.
func (ls *localStream) appendCommits(t *testing.T, n int) []store.Commit {
	t.Helper()
	var out []store.Commit
	for range n {
		i := ls.appended
		ls.appended++
		c, err := ls.store.Append(t.Context(), store.Commit{AggregateID: fmt.Sprint("agg-", i%3), Version: int64(i / 3), Events: []byte(`[{"n":1}]`)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// localOptions are the defaults, with a shorter idle backoff so that live
// records arrive within half a second.
func localOptions(c *collector) Options {
	return Options{IdleMax: 500 * time.Millisecond, OnShardEnd: c.onEnd}
}

// checkCommits checks that recs are INSERT records of commits, in order.
func checkCommits(t *testing.T, recs []Record, commits []store.Commit) {
	t.Helper()
	if len(recs) != len(commits) {
		t.Fatalf("%d records, want %d", len(recs), len(commits))
	}
	for i, rec := range recs {
		c := commits[i]
		agg, _ := rec.Keys[store.AttrAggregateID].(*types.AttributeValueMemberS)
		ver, _ := rec.Keys[store.AttrVersion].(*types.AttributeValueMemberN)
		id, _ := rec.NewImage[store.AttrCommitID].(*types.AttributeValueMemberS)
		if rec.EventName != "INSERT" || agg == nil || ver == nil || id == nil ||
			agg.Value != c.AggregateID || ver.Value != fmt.Sprint(c.Version) || id.Value != c.CommitID {
			t.Errorf("record %d: %s %v %v %v, want INSERT of %s version %d (%s)", i, rec.EventName, agg, ver, id, c.AggregateID, c.Version, c.CommitID)
		}
		if i > 0 && rec.SequenceNumber <= recs[i-1].SequenceNumber {
			t.Errorf("record %d: sequence number %s after %s", i, rec.SequenceNumber, recs[i-1].SequenceNumber)
		}
		if rec.ApproximateCreation.IsZero() {
			t.Errorf("record %d: no ApproximateCreation", i)
		}
	}
}

func (c *collector) records() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs)
}

func TestLocal(t *testing.T) {
	t.Parallel()

	t.Run("reads commits as INSERT records in order, then resumes", func(t *testing.T) {
		t.Parallel()
		ls := newLocalStream(t)
		arn := ls.arn(t)
		commits := ls.appendCommits(t, 25) // a backlog
		c := newCollector(t)
		r, err := New(ls.streams, arn, localOptions(c))
		if err != nil {
			t.Fatal(err)
		}
		ru := start(t, r, Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 25 }, "25 records, have %d", c.count())
		commits = append(commits, ls.appendCommits(t, 5)...) // live
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 30 }, "30 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		recs := c.records()
		checkCommits(t, recs, commits)
		shard := recs[0].ShardID
		for _, rec := range recs {
			if rec.ShardID != shard {
				t.Fatalf("records from shards %s and %s; DynamoDB Local has one", shard, rec.ShardID)
			}
		}
		if c.ended(shard) {
			t.Error("OnShardEnd for the open shard")
		}

		// Resume after the 10th record, with more commits written while
		// stopped.
		commits = append(commits, ls.appendCommits(t, 3)...)
		pos := Position{StreamARN: arn, Shards: map[string]string{shard: recs[9].SequenceNumber}}
		c2 := newCollector(t)
		ru = start(t, r, pos, c2.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c2.count() == 23 }, "23 records, have %d", c2.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		checkCommits(t, c2.records(), commits[10:])
	})

	t.Run("LATEST reads only what comes after", func(t *testing.T) {
		t.Parallel()
		ls := newLocalStream(t)
		ls.appendCommits(t, 3)
		c := newCollector(t)
		opts := localOptions(c)
		opts.InitialPosition = types.ShardIteratorTypeLatest
		r, err := New(ls.streams, ls.arn(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		ru := start(t, r, Position{}, c.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return ls.streams.getRecords.Load() > 0 }, "a GetRecords call")
		later := ls.appendCommits(t, 2)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 2 }, "2 records, have %d", c.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		checkCommits(t, c.records(), later)
	})

	t.Run("stream disabled and enabled again", func(t *testing.T) {
		t.Parallel()
		ls := newLocalStream(t)
		oldARN := ls.arn(t)
		c := newCollector(t)
		opts := localOptions(c)
		opts.DescribeInterval = time.Hour // only the shard's end lists again
		r, err := New(ls.streams, oldARN, opts)
		if err != nil {
			t.Fatal(err)
		}
		ru := start(t, r, Position{}, c.emit)
		before := ls.appendCommits(t, 3)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 3 }, "3 records, have %d", c.count())
		shard := c.records()[0].ShardID

		// Disabling closes the shard: the reader reads it to its end, then
		// finds the stream DISABLED.
		ls.setStream(t, false)
		if err := ru.wait(t); !errors.Is(err, ErrStreamGone) {
			t.Fatalf("Run = %v, want ErrStreamGone", err)
		} else {
			t.Logf("after disabling: %v", err)
		}
		if !c.ended(shard) {
			t.Error("no OnShardEnd for the shard closed by disabling the stream")
		}
		checkCommits(t, c.records(), before)
		ls.appendCommits(t, 2) // written while disabled: in no stream
		ls.setStream(t, true)
		newARN := ls.arn(t)
		if newARN == oldARN {
			t.Fatalf("the re-enabled stream kept its ARN %s", oldARN)
		}
		after := ls.appendCommits(t, 2)

		// The old ARN: still describable, DISABLED.
		pos := Position{StreamARN: oldARN, Shards: map[string]string{shard: c.records()[2].SequenceNumber}}
		if err := r.Run(t.Context(), pos, c.emit); !errors.Is(err, ErrStreamGone) {
			t.Errorf("Run on the old ARN = %v, want ErrStreamGone", err)
		} else {
			t.Logf("old ARN: %v", err)
		}
		// The new ARN with the old position.
		r2, err := New(ls.streams, newARN, localOptions(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := r2.Run(t.Context(), pos, c.emit); !errors.Is(err, ErrStreamGone) {
			t.Errorf("Run on the new ARN from the old position = %v, want ErrStreamGone", err)
		}
		// The new ARN from scratch: only what was written after enabling.
		c2 := newCollector(t)
		ru = start(t, r2, Position{}, c2.emit)
		ddbtest.Eventually(t, waitFor, func() bool { return c2.count() == 2 }, "2 records, have %d", c2.count())
		if err := ru.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		checkCommits(t, c2.records(), after)
	})

	t.Run("no such stream", func(t *testing.T) {
		t.Parallel()
		ls := newLocalStream(t)
		c := newCollector(t)
		r, err := New(ls.streams, ls.arn(t)+"0", localOptions(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(t.Context(), Position{}, c.emit); !errors.Is(err, ErrStreamGone) {
			t.Fatalf("Run = %v, want ErrStreamGone", err)
		} else {
			t.Log(err)
		}
	})

	t.Run("table deleted", func(t *testing.T) {
		t.Parallel()
		ls := newLocalStream(t)
		c := newCollector(t)
		r, err := New(ls.streams, ls.arn(t), localOptions(c))
		if err != nil {
			t.Fatal(err)
		}
		ru := start(t, r, Position{}, c.emit)
		commits := ls.appendCommits(t, 2)
		ddbtest.Eventually(t, waitFor, func() bool { return c.count() == 2 }, "2 records, have %d", c.count())
		if err := store.DeleteTable(t.Context(), ls.ddb, store.Config{TableName: ls.table}); err != nil {
			t.Fatal(err)
		}
		if err := ru.wait(t); !errors.Is(err, ErrStreamGone) {
			t.Fatalf("Run = %v, want ErrStreamGone", err)
		} else {
			t.Log(err)
		}
		checkCommits(t, c.records(), commits)
	})
}

// countingAPI counts GetRecords calls.
type countingAPI struct {
	API
	getRecords atomic.Int64
}

func (c *countingAPI) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	c.getRecords.Add(1)
	return c.API.GetRecords(ctx, in, optFns...)
}
