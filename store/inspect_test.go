package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// writeWith appends version 0 of each aggregate through a store of n
// buckets on table.
func writeWith(t *testing.T, client *dynamodb.Client, table string, n int, aggs ...string) {
	t.Helper()
	s, err := store.New(client, store.Config{TableName: table, IndexBuckets: n})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range aggs {
		if _, err := s.Append(t.Context(), store.Commit{AggregateID: a, Version: 0, Events: json.RawMessage(`[1]`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func aggregates(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func TestCheckBuckets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, client := setup(t, store.Config{})
	table := s.Config().TableName
	check := func(n int) error {
		return store.CheckBuckets(ctx, client, store.Config{TableName: table, IndexBuckets: n})
	}
	// An empty table agrees with any count.
	for _, n := range []int{1, 2, 256} {
		if err := check(n); err != nil {
			t.Errorf("empty table, %d buckets: %v", n, err)
		}
	}

	// Written with 4 buckets.
	writeWith(t, client, table, 4, aggregates("four", 20)...)
	if err := check(4); err != nil {
		t.Errorf("4 buckets on a table of 4: %v", err)
	}
	for _, n := range []int{1, 2, 3, 8, 256} {
		err := check(n)
		var be *store.BucketMismatchError
		if !errors.As(err, &be) || !errors.Is(err, store.ErrBucketMismatch) {
			t.Errorf("%d buckets on a table of 4: %v, want a *BucketMismatchError", n, err)
			continue
		}
		if be.Configured != n || be.Table != table || !slices.Contains(be.Consistent, 4) || be.AggregateID == "" || be.Bucket == "" {
			t.Errorf("%d buckets on a table of 4: %+v, want the count, the table, an item and 4 among the consistent counts", n, be)
		}
	}
}

func TestCheckBucketsOneBucketTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, client := setup(t, store.Config{})
	table := s.Config().TableName
	// One aggregate is enough: every count above 1 puts it in "tK", never
	// in "t".
	writeWith(t, client, table, 1, "only")
	if err := store.CheckBuckets(ctx, client, store.Config{TableName: table}); err != nil {
		t.Errorf("1 bucket on a table of 1: %v", err)
	}
	err := store.CheckBuckets(ctx, client, store.Config{TableName: table, IndexBuckets: 2})
	var be *store.BucketMismatchError
	if !errors.As(err, &be) || !slices.Equal(be.Consistent, []int{1}) || be.Bucket != store.DefaultBucket || be.AggregateID != "only" {
		t.Fatalf("2 buckets on a table of 1: %v, want a mismatch on bucket \"t\" consistent with 1 only", err)
	}
	if got := err.Error(); got != `store: table `+table+`: aggregate "only" is in index bucket "t", where 2 buckets would not put it; its items were written with 1` {
		t.Errorf("message %q", got)
	}
}

func TestCheckBucketsMixedWriters(t *testing.T) {
	t.Parallel()
	s, client := setup(t, store.Config{})
	table := s.Config().TableName
	writeWith(t, client, table, 1, aggregates("one", 5)...)
	writeWith(t, client, table, 2, aggregates("two", 5)...)
	err := store.CheckBuckets(t.Context(), client, store.Config{TableName: table, IndexBuckets: 2})
	var be *store.BucketMismatchError
	if !errors.As(err, &be) || len(be.Consistent) != 0 {
		t.Fatalf("a table written with 1 and 2 buckets: %v, want a mismatch consistent with no count", err)
	}
}

func TestCheckBucketsMissingTable(t *testing.T) {
	t.Parallel()
	err := store.CheckBuckets(t.Context(), ddbtest.Client(t), store.Config{TableName: ddbtest.TableName(t)})
	if !errors.Is(err, store.ErrTableNotFound) {
		t.Errorf("CheckBuckets of a missing table = %v, want ErrTableNotFound", err)
	}
	if _, err := store.CountItems(t.Context(), ddbtest.Client(t), store.Config{TableName: ddbtest.TableName(t)}); !errors.Is(err, store.ErrTableNotFound) {
		t.Errorf("CountItems of a missing table = %v, want ErrTableNotFound", err)
	}
}

func TestCountItems(t *testing.T) {
	t.Parallel()
	s, client := setup(t, store.Config{})
	table := s.Config().TableName
	cfg := store.Config{TableName: table}
	if n, err := store.CountItems(t.Context(), client, cfg); err != nil || n != 0 {
		t.Errorf("CountItems of an empty table = %d, %v; want 0", n, err)
	}
	writeWith(t, client, table, 1, aggregates("c", 7)...)
	if n, err := store.CountItems(t.Context(), client, cfg); err != nil || n != 7 {
		t.Errorf("CountItems = %d, %v; want 7", n, err)
	}
}

// pagedScan answers a Select COUNT scan in pages of the given counts.
type pagedScan struct{ pages []int32 }

func (p *pagedScan) Scan(_ context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	if in.Select != types.SelectCount {
		return nil, fmt.Errorf("Select %q, want COUNT", in.Select)
	}
	i := 0
	if k, ok := in.ExclusiveStartKey["page"].(*types.AttributeValueMemberN); ok {
		fmt.Sscan(k.Value, &i)
	}
	out := &dynamodb.ScanOutput{Count: p.pages[i]}
	if i+1 < len(p.pages) {
		out.LastEvaluatedKey = map[string]types.AttributeValue{"page": &types.AttributeValueMemberN{Value: fmt.Sprint(i + 1)}}
	}
	return out, nil
}

func TestCountItemsReadsEveryPage(t *testing.T) {
	n, err := store.CountItems(context.Background(), &pagedScan{pages: []int32{1000, 1000, 0, 37}}, store.Config{TableName: "commits"})
	if err != nil || n != 2037 {
		t.Errorf("CountItems over 4 pages = %d, %v; want 2037", n, err)
	}
}

// BenchmarkCheckBuckets measures the bucket check a CLI command makes
// before its work, against one Append (the work of `eventstore append` of
// one commit), alternately on the same emulator, on a table of 1,000
// commits. It reports check-ms, append-ms and check/append.
//
//	go test -run '^$' -bench CheckBuckets ./store/
func BenchmarkCheckBuckets(b *testing.B) {
	s, client := benchSetup(b)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := s.Append(ctx, store.Commit{AggregateID: fmt.Sprintf("acc-%d", i%100), Version: int64(i / 100), Events: benchEvents}); err != nil {
			b.Fatal(err)
		}
	}
	cfg := s.Config()
	var check, app time.Duration
	for i := range b.N + 5 {
		t0 := time.Now()
		if err := store.CheckBuckets(ctx, client, cfg); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := s.Append(ctx, store.Commit{AggregateID: fmt.Sprintf("bench-%d", i), Version: 0, Events: benchEvents}); err != nil {
			b.Fatal(err)
		}
		if i >= 5 { // warm-up
			check += t1.Sub(t0)
			app += time.Since(t1)
		}
	}
	b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms")
	b.ReportMetric(float64(app.Microseconds())/1000/float64(b.N), "append-ms")
	b.ReportMetric(float64(check)/float64(app), "check/append")
}
