package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// InspectAPI is the DynamoDB calls of CheckBuckets and CountItems.
// *dynamodb.Client implements it.
type InspectAPI interface {
	dynamodb.ScanAPIClient
	dynamodb.QueryAPIClient
}

var _ InspectAPI = (*dynamodb.Client)(nil)

// BucketSample is how many items of the table CheckBuckets reads.
const BucketSample = 100

// ErrBucketMismatch matches a *BucketMismatchError.
var ErrBucketMismatch = errors.New("store: index bucket count does not match the table")

// BucketMismatchError reports a table whose items were written with
// another index bucket count (Config.IndexBuckets) than the one
// configured: a reader with that count would miss commits, and a writer
// would put commits where the table's readers do not look.
type BucketMismatchError struct {
	// Table is the commits table.
	Table string
	// Configured is the bucket count the caller configured.
	Configured int
	// AggregateID and Bucket are an item that count does not give: its
	// aggregate and the value of its index hash key (AttrActive).
	AggregateID, Bucket string
	// Consistent are the bucket counts, from 1 to MaxIndexBuckets, that
	// give every item read its bucket, smallest first; empty when none
	// does (writers with different counts wrote the table).
	Consistent []int
}

func (e *BucketMismatchError) Error() string {
	msg := fmt.Sprintf("store: table %s: aggregate %q is in index bucket %q, where %d %s would not put it",
		e.Table, e.AggregateID, e.Bucket, e.Configured, plural(e.Configured, "bucket", "buckets"))
	switch n := len(e.Consistent); {
	case n == 0:
		msg += "; its items agree with no one bucket count: writers with different counts wrote it"
	case n == 1:
		msg += fmt.Sprintf("; its items were written with %d", e.Consistent[0])
	default:
		shown := make([]string, 0, 3)
		for _, c := range e.Consistent[:min(n, 3)] {
			shown = append(shown, strconv.Itoa(c))
		}
		msg += "; its items agree with " + strings.Join(shown, ", ")
		if n > 3 {
			msg += fmt.Sprintf(" (and %d more counts)", n-3)
		}
	}
	return msg
}

// Is reports whether target is ErrBucketMismatch.
func (e *BucketMismatchError) Is(target error) bool { return target == ErrBucketMismatch }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// CheckBuckets reports whether the commits table was written with
// cfg.IndexBuckets buckets, from a sample: the first BucketSample items of
// a Scan of the table (one request), and the first item of each index
// bucket value just outside the configured ones (for one bucket, "t0" and
// "t1"; for n buckets, "t" and "t<n>"; one Query each). Each item read
// must be in the bucket cfg.IndexBuckets gives its aggregate; the first
// that is not returns a *BucketMismatchError (matching ErrBucketMismatch)
// saying which counts every item read agrees with.
//
// What it cannot see: an empty table (any count is right until a first
// writer picks one); items without an index hash key, or with a value that
// no bucket count gives (neither "t" nor "t" and a number), which it
// passes over; and a wrong count whose buckets agree with every item of
// the sample, which takes a table with few aggregates, all of them put in
// the same bucket by both counts, and nothing in the probed buckets (for
// example 2 configured on a table of 4 where only buckets t0 and t1 hold
// commits: a reader then misses nothing).
//
// A missing table returns an error matching ErrTableNotFound; an invalid
// cfg a *ConfigError.
func CheckBuckets(ctx context.Context, api InspectAPI, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	proj, err := expression.NewBuilder().WithProjection(expression.NamesList(expression.Name(AttrAggregateID), expression.Name(AttrActive))).Build()
	if err != nil {
		return fmt.Errorf("store: build projection: %w", err)
	}
	notFound := func(err error) error {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: %s: %w", ErrTableNotFound, cfg.TableName, err)
		}
		return err
	}
	out, err := api.Scan(ctx, &dynamodb.ScanInput{
		TableName:                aws.String(cfg.TableName),
		Limit:                    aws.Int32(BucketSample),
		ProjectionExpression:     proj.Projection(),
		ExpressionAttributeNames: proj.Names(),
	})
	if err != nil {
		return fmt.Errorf("store: sample the table: %w", notFound(err))
	}
	items := out.Items
	probes := []string{DefaultBucket + "0", DefaultBucket + "1"}
	if cfg.IndexBuckets > 1 {
		probes = []string{DefaultBucket, DefaultBucket + strconv.Itoa(cfg.IndexBuckets)}
	}
	for _, b := range probes {
		key, err := expression.NewBuilder().
			WithKeyCondition(expression.Key(AttrActive).Equal(expression.Value(b))).
			WithProjection(expression.NamesList(expression.Name(AttrAggregateID), expression.Name(AttrActive))).
			Build()
		if err != nil {
			return fmt.Errorf("store: build query: %w", err)
		}
		out, err := api.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(cfg.TableName),
			IndexName:                 aws.String(cfg.IndexName),
			KeyConditionExpression:    key.KeyCondition(),
			ProjectionExpression:      key.Projection(),
			ExpressionAttributeNames:  key.Names(),
			ExpressionAttributeValues: key.Values(),
			Limit:                     aws.Int32(1),
		})
		if err != nil {
			return fmt.Errorf("store: probe index bucket %q: %w", b, notFound(err))
		}
		items = append(items, out.Items...)
	}
	return judgeBuckets(cfg, items)
}

// judgeBuckets returns a *BucketMismatchError when an item is not in the
// bucket cfg.IndexBuckets gives its aggregate.
func judgeBuckets(cfg Config, items []map[string]types.AttributeValue) error {
	type placed struct{ agg, bucket string }
	var seen []placed
	bad := -1
	want := &Store{buckets: Buckets(cfg.IndexBuckets)}
	for _, it := range items {
		agg, ok1 := it[AttrAggregateID].(*types.AttributeValueMemberS)
		b, ok2 := it[AttrActive].(*types.AttributeValueMemberS)
		if !ok1 || !ok2 || !bucketValue(b.Value) {
			continue
		}
		p := placed{agg.Value, b.Value}
		seen = append(seen, p)
		if bad < 0 && want.Bucket(p.agg) != p.bucket {
			bad = len(seen) - 1
		}
	}
	if bad < 0 {
		return nil
	}
	e := &BucketMismatchError{Table: cfg.TableName, Configured: cfg.IndexBuckets, AggregateID: seen[bad].agg, Bucket: seen[bad].bucket}
	for n := 1; n <= MaxIndexBuckets; n++ {
		s := &Store{buckets: Buckets(n)}
		if !slices.ContainsFunc(seen, func(p placed) bool { return s.Bucket(p.agg) != p.bucket }) {
			e.Consistent = append(e.Consistent, n)
		}
	}
	return e
}

// bucketValue reports whether v is a value some bucket count gives: "t",
// or "t" and a number without a leading zero below MaxIndexBuckets.
func bucketValue(v string) bool {
	if v == DefaultBucket {
		return true
	}
	digits, ok := strings.CutPrefix(v, DefaultBucket)
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(digits)
	return err == nil && n >= 0 && n < MaxIndexBuckets
}

// CountItems counts the items of the commits table with a paginated Scan
// that returns counts only (Select COUNT): it reads, and is billed for,
// the whole table. A missing table returns an error matching
// ErrTableNotFound.
func CountItems(ctx context.Context, api dynamodb.ScanAPIClient, cfg Config) (int64, error) {
	cfg = cfg.withDefaults()
	var n int64
	p := dynamodb.NewScanPaginator(api, &dynamodb.ScanInput{
		TableName: aws.String(cfg.TableName),
		Select:    types.SelectCount,
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			var nf *types.ResourceNotFoundException
			if errors.As(err, &nf) {
				return n, fmt.Errorf("store: count the items: %w: %s: %w", ErrTableNotFound, cfg.TableName, err)
			}
			return n, fmt.Errorf("store: count the items: %w", err)
		}
		n += int64(out.Count)
	}
	return n, nil
}
