package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/store"
)

// events is the payload of every commit the benchmarks write: one event of
// about 270 bytes, the one store/bench_test.go uses, so that a commit's item
// is about 400 bytes, under DynamoDB's 1 KB write unit.
var events = json.RawMessage(`[{"type":"deposited","amount":125,"currency":"EUR","reference":"` + strings.Repeat("r", 200) + `"}]`)

// requestCounter is an HTTP client that counts the requests the SDK sends
// through it. Retries are counted: each attempt is a request. It is safe
// for concurrent use.
type requestCounter struct {
	next  *awshttp.BuildableClient
	total atomic.Int64
}

func newRequestCounter() *requestCounter {
	return &requestCounter{next: awshttp.NewBuildableClient()}
}

// Do counts the request and sends it.
func (c *requestCounter) Do(r *http.Request) (*http.Response, error) {
	c.total.Add(1)
	return c.next.Do(r)
}

// Total returns the requests sent so far.
func (c *requestCounter) Total() int64 { return c.total.Load() }

// env is what every section works with: the endpoint and where progress
// lines go.
type env struct {
	endpoint string
	logf     func(format string, args ...any)
	seq      atomic.Int64
	runID    string
}

func newEnv(endpoint string, logf func(string, ...any)) *env {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &env{endpoint: endpoint, logf: logf, runID: strconv.FormatUint(uint64(rand.Uint32()), 36)}
}

// client returns a new DynamoDB client for the endpoint whose requests are
// counted by the returned counter. Each client has its own connection pool,
// with the SDK's default transport settings.
func (e *env) client(ctx context.Context) (*dynamodb.Client, *requestCounter, error) {
	rc := newRequestCounter()
	c, err := dynamolocal.NewClient(ctx, e.endpoint, func(o *dynamodb.Options) { o.HTTPClient = rc })
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	return c, rc, nil
}

// table creates a fresh commits table (no stream) named after what, and
// returns its store Config and a function that deletes it (once, however
// often it is called).
func (e *env) table(ctx context.Context, client *dynamodb.Client, what string) (store.Config, func(), error) {
	cfg := store.Config{TableName: fmt.Sprintf("bench-%s-%s-%d", e.runID, what, e.seq.Add(1))}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{NoStream: true}); err != nil {
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

// load appends versions 0 … perAggregate-1 of each aggregate with AppendAll.
// The aggregates are split into four groups loaded in parallel; each group
// appends one version of each of its aggregates per transaction (up to 100),
// version after version, so that each aggregate's commit ids rise with its
// versions, aggregates interleave in commit order, and no two commits share
// a commit id, as with single appends.
func load(ctx context.Context, s *store.Store, aggregates []string, perAggregate int) error {
	const groups = 4
	g, gctx := errgroup.WithContext(ctx)
	for gi := range groups {
		var mine []string
		for i := gi; i < len(aggregates); i += groups {
			mine = append(mine, aggregates[i])
		}
		g.Go(func() error {
			for v := range perAggregate {
				for i := 0; i < len(mine); i += store.MaxTransactionCommits {
					chunk := mine[i:min(i+store.MaxTransactionCommits, len(mine))]
					batch := make([]store.Commit, len(chunk))
					for j, id := range chunk {
						batch[j] = store.Commit{AggregateID: id, Version: int64(v), Events: events}
					}
					if _, err := s.AppendAll(gctx, batch...); err != nil {
						return fmt.Errorf("bench: load: %w", err)
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// loadOne appends n commits to one aggregate, one at a time, so that each
// has its own commit id.
func loadOne(ctx context.Context, s *store.Store, id string, n int) error {
	for v := range n {
		if _, err := s.Append(ctx, store.Commit{AggregateID: id, Version: int64(v), Events: events}); err != nil {
			return fmt.Errorf("bench: load %s: %w", id, err)
		}
	}
	return nil
}

// ids returns n aggregate ids prefix-0 … prefix-(n-1).
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}

// sdkCommit is what a program using the bare SDK decodes an item into.
type sdkCommit struct {
	CommitID    string `dynamodbav:"commitId"`
	CommittedAt int64  `dynamodbav:"committedAt"`
	AggregateID string `dynamodbav:"aggregateId"`
	Version     int64  `dynamodbav:"version"`
	Events      string `dynamodbav:"events"`
}

// sdkPut is the store's Append made with the bare SDK, as the original
// package makes it: one PutItem of the item, conditional on the version
// being free.
func sdkPut(ctx context.Context, client *dynamodb.Client, table, id string, version int64) error {
	at := time.Now().UnixMilli()
	_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			store.AttrCommitID:    &types.AttributeValueMemberS{Value: store.FormatCommitID(at, id)},
			store.AttrCommittedAt: &types.AttributeValueMemberN{Value: strconv.FormatInt(at, 10)},
			store.AttrAggregateID: &types.AttributeValueMemberS{Value: id},
			store.AttrVersion:     &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)},
			store.AttrEvents:      &types.AttributeValueMemberS{Value: string(events)},
			store.AttrActive:      &types.AttributeValueMemberS{Value: store.DefaultBucket},
		},
		ConditionExpression: aws.String("attribute_not_exists(version)"),
	})
	if err != nil {
		return fmt.Errorf("bench: sdk put %s: %w", id, err)
	}
	return nil
}

// sdkQueryInput is the store's Query made with the bare SDK: one
// aggregate's commits from version 0, strongly consistent.
func sdkQueryInput(table, id string) *dynamodb.QueryInput {
	return &dynamodb.QueryInput{
		TableName:              aws.String(table),
		KeyConditionExpression: aws.String("aggregateId = :a AND version >= :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":a": &types.AttributeValueMemberS{Value: id},
			":v": &types.AttributeValueMemberN{Value: "0"},
		},
		ConsistentRead: aws.Bool(true),
	}
}

// sdkScanInput is the store's Scan made with the bare SDK: the commit-order
// index from the start, as the original package's scan queries it.
func sdkScanInput(table string) *dynamodb.QueryInput {
	return &dynamodb.QueryInput{
		TableName:              aws.String(table),
		IndexName:              aws.String(store.DefaultIndexName),
		KeyConditionExpression: aws.String("active = :a AND commitId >= :c"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":a": &types.AttributeValueMemberS{Value: store.DefaultBucket},
			":c": &types.AttributeValueMemberS{Value: "0"},
		},
	}
}

// sdkRead reads every page of a query with the bare SDK's paginator and
// decodes each page as a program using the SDK would. It returns the number
// of commits and their item bytes as DynamoDB counts them.
func sdkRead(ctx context.Context, client *dynamodb.Client, in *dynamodb.QueryInput) (n, bytes int, err error) {
	p := dynamodb.NewQueryPaginator(client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, bytes, fmt.Errorf("bench: sdk query: %w", err)
		}
		var cs []sdkCommit
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &cs); err != nil {
			return n, bytes, fmt.Errorf("bench: sdk decode: %w", err)
		}
		n += len(cs)
		for _, it := range page.Items {
			bytes += itemBytes(it)
		}
	}
	return n, bytes, nil
}

// expectRead is sdkRead that fails unless it read want commits.
func expectRead(ctx context.Context, client *dynamodb.Client, in *dynamodb.QueryInput, want int) error {
	n, _, err := sdkRead(ctx, client, in)
	if err == nil && n != want {
		err = fmt.Errorf("bench: sdk read %d commits, want %d", n, want)
	}
	return err
}

// drain reads a store sequence to its end and fails unless it yielded want
// commits.
func drain(seq func(func(store.Commit, error) bool), want int) error {
	n := 0
	for _, err := range seq {
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		n++
	}
	if n != want {
		return fmt.Errorf("bench: read %d commits, want %d", n, want)
	}
	return nil
}

// itemBytes is an item's size as DynamoDB bills it: each attribute's name
// and value; a string at its UTF-8 length, a number at about one byte per
// two significant digits plus one.
func itemBytes(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			digits := len(strings.TrimLeft(strings.TrimPrefix(v.Value, "-"), "0"))
			n += (digits+1)/2 + 1
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		default:
			n += 1 // booleans and nulls; the store writes none
		}
	}
	return n
}
