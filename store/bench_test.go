package store_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Each benchmark runs the store's operation and the same operation made with
// the bare SDK alternately, op by op, on the same emulator after a warm-up,
// so that their ratio is meaningful where absolute figures are not (the
// emulator's JIT warms up and its tables grow as a benchmark runs). Run with
//
//	go test -run '^$' -bench . ./store/
//
// Each reports store-commits/s, sdk-commits/s, their ratio store/sdk (1.0 is
// parity; the target is at least 0.95), and allocations per commit of each.

// sdkCommit is what a program using the bare SDK decodes an item into.
type sdkCommit struct {
	CommitID    string `dynamodbav:"commitId"`
	CommittedAt int64  `dynamodbav:"committedAt"`
	AggregateID string `dynamodbav:"aggregateId"`
	Version     int64  `dynamodbav:"version"`
	Events      string `dynamodbav:"events"`
}

func benchSetup(b *testing.B) (*store.Store, *dynamodb.Client) {
	b.Helper()
	client := ddbtest.Client(b)
	cfg := store.Config{TableName: ddbtest.TableName(b)}
	if err := store.CreateTable(context.Background(), client, cfg, store.TableOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	s, err := store.New(client, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return s, client
}

var benchEvents = json.RawMessage(`[{"type":"deposited","amount":125,"currency":"EUR","reference":"` + strings.Repeat("r", 200) + `"}]`)

// pair runs store and sdk alternately b.N times each after warm-up rounds,
// timing each side, and reports the throughputs, their ratio and the
// allocations per commit of each side. Each call of an op handles perOp
// commits.
func pair(b *testing.B, perOp, warmup int, storeOp, sdkOp func()) {
	b.Helper()
	for range warmup {
		storeOp()
		sdkOp()
	}
	var storeTime, sdkTime time.Duration
	i := 0
	for b.Loop() {
		first, second := storeOp, sdkOp
		if i%2 == 1 {
			first, second = sdkOp, storeOp
		}
		t0 := time.Now()
		first()
		t1 := time.Now()
		second()
		t2 := time.Now()
		if i%2 == 1 {
			sdkTime, storeTime = sdkTime+t1.Sub(t0), storeTime+t2.Sub(t1)
		} else {
			storeTime, sdkTime = storeTime+t1.Sub(t0), sdkTime+t2.Sub(t1)
		}
		i++
	}
	storeRate := float64(b.N*perOp) / storeTime.Seconds()
	sdkRate := float64(b.N*perOp) / sdkTime.Seconds()
	b.ReportMetric(storeRate, "store-commits/s")
	b.ReportMetric(sdkRate, "sdk-commits/s")
	b.ReportMetric(storeRate/sdkRate, "store/sdk")
	b.ReportMetric(testing.AllocsPerRun(5, storeOp)/float64(perOp), "store-allocs/commit")
	b.ReportMetric(testing.AllocsPerRun(5, sdkOp)/float64(perOp), "sdk-allocs/commit")
	b.ReportMetric(0, "ns/op") // both sides' time is in the metrics above
}

func BenchmarkAppend(b *testing.B) {
	s, client := benchSetup(b)
	ctx := context.Background()
	table := aws.String(s.Config().TableName)
	var n atomic.Int64
	storeOp := func() {
		id := "s-" + strconv.FormatInt(n.Add(1), 10)
		if _, err := s.Append(ctx, store.Commit{AggregateID: id, Version: 0, Events: benchEvents}); err != nil {
			b.Fatal(err)
		}
	}
	sdkOp := func() {
		id := "k-" + strconv.FormatInt(n.Add(1), 10)
		at := time.Now().UnixMilli()
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: table,
			Item: map[string]types.AttributeValue{
				"commitId":    &types.AttributeValueMemberS{Value: store.FormatCommitID(at, id)},
				"committedAt": &types.AttributeValueMemberN{Value: strconv.FormatInt(at, 10)},
				"aggregateId": &types.AttributeValueMemberS{Value: id},
				"version":     &types.AttributeValueMemberN{Value: "0"},
				"events":      &types.AttributeValueMemberS{Value: string(benchEvents)},
				"active":      &types.AttributeValueMemberS{Value: "t"},
			},
			ConditionExpression: aws.String("attribute_not_exists(version)"),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	pair(b, 1, 300, storeOp, sdkOp)
}

// loadAggregate appends n commits to one aggregate.
func loadAggregate(b *testing.B, s *store.Store, id string, n int) {
	b.Helper()
	commits := make([]store.Commit, 0, store.MaxTransactionCommits)
	for v := range n {
		commits = append(commits, store.Commit{AggregateID: id, Version: int64(v), Events: benchEvents})
		if len(commits) == cap(commits) || v == n-1 {
			if _, err := s.AppendAll(context.Background(), commits...); err != nil {
				b.Fatal(err)
			}
			commits = commits[:0]
		}
	}
}

// sdkRead pages through a query with the bare SDK and decodes each page as
// a program using the SDK would, returning the number of commits.
func sdkRead(b *testing.B, client *dynamodb.Client, in *dynamodb.QueryInput) int {
	p := dynamodb.NewQueryPaginator(client, in)
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		var cs []sdkCommit
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &cs); err != nil {
			b.Fatal(err)
		}
		n += len(cs)
	}
	return n
}

func count(b *testing.B, seq func(func(store.Commit, error) bool), want int) {
	n := 0
	for _, err := range seq {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != want {
		b.Fatalf("read %d commits, want %d", n, want)
	}
}

func BenchmarkQuery(b *testing.B) {
	s, client := benchSetup(b)
	ctx := context.Background()
	const perAggregate = 200
	loadAggregate(b, s, "q", perAggregate)
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.Config().TableName),
		KeyConditionExpression:    aws.String("aggregateId = :a AND version >= :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":a": &types.AttributeValueMemberS{Value: "q"}, ":v": &types.AttributeValueMemberN{Value: "0"}},
		ConsistentRead:            aws.Bool(true),
	}
	pair(b, perAggregate, 30,
		func() { count(b, s.Query(ctx, "q", 0), perAggregate) },
		func() {
			if n := sdkRead(b, client, in); n != perAggregate {
				b.Fatalf("read %d", n)
			}
		})
}

func BenchmarkScan(b *testing.B) {
	s, client := benchSetup(b)
	ctx := context.Background()
	const total = 1000
	for a := range total / 100 {
		loadAggregate(b, s, "agg-"+strconv.Itoa(a), 100)
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.Config().TableName),
		IndexName:                 aws.String(store.DefaultIndexName),
		KeyConditionExpression:    aws.String("active = :a AND commitId >= :c"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":a": &types.AttributeValueMemberS{Value: "t"}, ":c": &types.AttributeValueMemberS{Value: "0"}},
	}
	pair(b, total, 10,
		func() { count(b, s.Scan(ctx, store.Position{}), total) },
		func() {
			if n := sdkRead(b, client, in); n != total {
				b.Fatalf("read %d", n)
			}
		})
}
