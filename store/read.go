package store

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// QueryOptions tunes one Query.
type QueryOptions struct {
	// ToVersion, when above 0, is an exclusive upper bound on versions.
	ToVersion int64
	// Backward returns the commits in descending version order, from the
	// highest (below ToVersion) down to fromVersion.
	Backward bool
	// PageSize caps the items per page; 0 means the Store's PageSize. A
	// small page suits a backward probe for the few latest versions.
	PageSize int32
}

// Query returns every commit of an aggregate from fromVersion on (inclusive),
// in version order, read with strongly consistent reads, every page.
//
// The sequence streams: it holds one page (at most 1 MB) at a time. It yields
// a *DecodeError (ErrCorruptCommit) for an item that is not a well-formed
// commit and goes on with the next one if the loop continues; any other error
// (an empty aggregate id or negative fromVersion, matching
// ErrInvalidArgument; a missing table, matching ErrTableNotFound; a failed
// call) is yielded once and ends the sequence.
func (s *Store) Query(ctx context.Context, aggregateID string, fromVersion int64, optFns ...func(*QueryOptions)) iter.Seq2[Commit, error] {
	return func(yield func(Commit, error) bool) {
		var opts QueryOptions
		for _, fn := range optFns {
			fn(&opts)
		}
		if aggregateID == "" || fromVersion < 0 || opts.ToVersion < 0 || opts.PageSize < 0 {
			yield(Commit{}, fmt.Errorf("%w: Query(%q, %d, to %d): want a non-empty aggregate id and versions from 0", ErrInvalidArgument, aggregateID, fromVersion, opts.ToVersion))
			return
		}
		if opts.ToVersion > 0 && opts.ToVersion <= fromVersion {
			return
		}
		versions := expression.Key(AttrVersion).GreaterThanEqual(expression.Value(fromVersion))
		if opts.ToVersion > 0 {
			versions = expression.Key(AttrVersion).Between(expression.Value(fromVersion), expression.Value(opts.ToVersion-1))
		}
		key := expression.Key(AttrAggregateID).Equal(expression.Value(aggregateID)).And(versions)
		expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
		if err != nil {
			yield(Commit{}, fmt.Errorf("store: query %q: build expression: %w", aggregateID, err))
			return
		}
		in := &dynamodb.QueryInput{
			TableName:                 aws.String(s.cfg.TableName),
			KeyConditionExpression:    expr.KeyCondition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
			ConsistentRead:            aws.Bool(true),
			ScanIndexForward:          aws.Bool(!opts.Backward),
			ReturnConsumedCapacity:    s.capacity,
		}
		if size := cmp.Or(opts.PageSize, s.cfg.PageSize); size > 0 {
			in.Limit = aws.Int32(size)
		}
		p := dynamodb.NewQueryPaginator(s.api, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(Commit{}, fmt.Errorf("store: query %q from version %d: %w", aggregateID, fromVersion, s.callErr(err)))
				return
			}
			s.reportCapacity(OpQuery, page.ConsumedCapacity)
			for _, item := range page.Items {
				if !yield(decode(item, s.cfg.Clock())) {
					return
				}
			}
		}
	}
}

// ScanOptions tunes one Scan.
type ScanOptions struct {
	// Before, when set, is an exclusive upper bound on commit ids: the scan
	// ends before the first commit whose CommitID is Before or later.
	Before string
	// Buckets restricts the scan to these index buckets (values of
	// Store.Buckets). Default: every bucket.
	Buckets []string
}

// Scan returns every commit after position after, in global commit order
// (Position order), reading the commit-order index, every page of every
// bucket, merged. The zero Position starts at the beginning;
// FromCommitID(id) starts at id inclusive; the Position of the last commit
// returned resumes exactly, with no duplicate and no skip.
//
// The index is eventually consistent: a commit may become visible after
// commits that sort later. Scan reports what the index holds when each page
// is read; tailing it safely is the subscribe package's work.
//
// The sequence streams: it holds about one page (1 MB) per bucket. It yields
// a *DecodeError (ErrCorruptCommit) for an item that is not a well-formed
// commit and goes on if the loop continues; any other error (a missing
// table, matching ErrTableNotFound; a failed call) is yielded once and ends
// the sequence.
func (s *Store) Scan(ctx context.Context, after Position, optFns ...func(*ScanOptions)) iter.Seq2[Commit, error] {
	return func(yield func(Commit, error) bool) {
		var opts ScanOptions
		for _, fn := range optFns {
			fn(&opts)
		}
		buckets := opts.Buckets
		if len(buckets) == 0 {
			buckets = s.buckets
		}
		readers := make([]*bucketReader, 0, len(buckets))
		for _, b := range buckets {
			if !slices.Contains(s.buckets, b) {
				yield(Commit{}, fmt.Errorf("%w: bucket %q is not one of %q", ErrInvalidArgument, b, s.buckets))
				return
			}
			r, err := s.newBucketReader(b, after, opts.Before)
			if err != nil {
				yield(Commit{}, err)
				return
			}
			if r != nil {
				readers = append(readers, r)
			}
		}
		for {
			var next *bucketReader
			for _, r := range readers {
				if err := r.fill(ctx); err != nil {
					yield(Commit{}, err)
					return
				}
				if r.empty() {
					continue
				}
				if next == nil || r.head().pos.Compare(next.head().pos) < 0 {
					next = r
				}
			}
			if next == nil {
				return
			}
			it := next.pop()
			if !yield(decode(it.item, s.cfg.Clock())) {
				return
			}
		}
	}
}

// indexedItem is an index item with its position.
type indexedItem struct {
	pos  Position
	item map[string]types.AttributeValue
}

// bucketReader reads one bucket of the index in Position order. DynamoDB
// orders the index by commitId only; items that share one (one aggregate's
// commits in one millisecond) are put in version order here, which needs a
// run of equal commit ids to be read whole before its first item is given
// out.
type bucketReader struct {
	s      *Store
	after  Position
	before string
	p      *dynamodb.QueryPaginator
	buf    []indexedItem // buf[:ready] is final and sorted
	ready  int
	done   bool
}

// newBucketReader returns nil when the range is empty.
func (s *Store) newBucketReader(bucket string, after Position, before string) (*bucketReader, error) {
	key := expression.Key(AttrActive).Equal(expression.Value(bucket))
	switch {
	case before != "" && after.CommitID >= before:
		return nil, nil
	case before != "" && after.CommitID != "":
		key = key.And(expression.Key(AttrCommitID).Between(expression.Value(after.CommitID), expression.Value(before)))
	case before != "":
		key = key.And(expression.Key(AttrCommitID).LessThan(expression.Value(before)))
	case after.CommitID != "":
		key = key.And(expression.Key(AttrCommitID).GreaterThanEqual(expression.Value(after.CommitID)))
	}
	expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
	if err != nil {
		return nil, fmt.Errorf("store: scan bucket %q: build expression: %w", bucket, err)
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.cfg.TableName),
		IndexName:                 aws.String(s.cfg.IndexName),
		KeyConditionExpression:    expr.KeyCondition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnConsumedCapacity:    s.capacity,
	}
	if s.cfg.PageSize > 0 {
		in.Limit = aws.Int32(s.cfg.PageSize)
	}
	return &bucketReader{s: s, after: after, before: before, p: dynamodb.NewQueryPaginator(s.api, in)}, nil
}

func (r *bucketReader) empty() bool        { return r.ready == 0 }
func (r *bucketReader) head() *indexedItem { return &r.buf[0] }

func (r *bucketReader) pop() indexedItem {
	it := r.buf[0]
	r.buf[0] = indexedItem{}
	r.buf = r.buf[1:]
	r.ready--
	return it
}

// fill reads pages until the head is final or the bucket is exhausted.
func (r *bucketReader) fill(ctx context.Context) error {
	for r.ready == 0 && !r.done {
		page, err := r.p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("store: scan index %q after %s: %w", r.s.cfg.IndexName, r.after, r.s.callErr(err))
		}
		r.s.reportCapacity(OpScan, page.ConsumedCapacity)
		r.done = !r.p.HasMorePages()
		if len(r.buf) == 0 {
			r.buf = nil // let the previous page's array go
		}
		for _, item := range page.Items {
			it := indexedItem{item: item}
			it.pos.CommitID, _ = stringAttr(item, AttrCommitID)
			it.pos.AggregateID, _ = stringAttr(item, AttrAggregateID)
			v, _ := numberAttr(item, AttrVersion)
			it.pos.Version, _ = strconv.ParseInt(v, 10, 64)
			if it.pos.Compare(r.after) <= 0 || (r.before != "" && it.pos.CommitID >= r.before) {
				continue
			}
			r.buf = append(r.buf, it)
		}
		// The last run of equal commit ids may go on in the next page.
		end := len(r.buf)
		if !r.done {
			for end > 0 && r.buf[end-1].pos.CommitID == r.buf[len(r.buf)-1].pos.CommitID {
				end--
			}
		}
		slices.SortStableFunc(r.buf[:end], func(a, b indexedItem) int { return a.pos.Compare(b.pos) })
		r.ready = end
	}
	return nil
}

// Head returns the position of the latest commit in global commit order,
// as the commit-order index shows it now (eventually consistent: a commit
// appended a moment ago may not be there yet), reading the last items of
// every bucket: one Query per bucket, and more when more than a few commits
// share a bucket's latest commit id (one aggregate's commits appended
// within one millisecond), which the index returns in no particular version
// order. ok is false when the index holds no commit. Errors are those of
// Scan: a missing table matches ErrTableNotFound.
func (s *Store) Head(ctx context.Context) (head Position, ok bool, err error) {
	for _, b := range s.buckets {
		p, found, err := s.bucketHead(ctx, b)
		if err != nil {
			return Position{}, false, err
		}
		if found && (!ok || p.Compare(head) > 0) {
			head, ok = p, true
		}
	}
	return head, ok, nil
}

// HeadOf is Head for one bucket of the index (one of Buckets): the latest
// commit of the aggregates that bucket holds. A bucket that is not the
// store's returns an error matching ErrInvalidArgument.
func (s *Store) HeadOf(ctx context.Context, bucket string) (head Position, ok bool, err error) {
	if !slices.Contains(s.buckets, bucket) {
		return Position{}, false, fmt.Errorf("%w: bucket %q is not one of %q", ErrInvalidArgument, bucket, s.buckets)
	}
	return s.bucketHead(ctx, bucket)
}

// bucketHead returns the latest position in bucket b.
func (s *Store) bucketHead(ctx context.Context, b string) (head Position, ok bool, err error) {
	consider := func(items []map[string]types.AttributeValue) string {
		top := ""
		for _, item := range items {
			var p Position
			p.CommitID, _ = stringAttr(item, AttrCommitID)
			p.AggregateID, _ = stringAttr(item, AttrAggregateID)
			v, _ := numberAttr(item, AttrVersion)
			p.Version, _ = strconv.ParseInt(v, 10, 64)
			if !ok || p.Compare(head) > 0 {
				head, ok = p, true
			}
			top = max(top, p.CommitID)
		}
		return top
	}
	key := expression.Key(AttrActive).Equal(expression.Value(b))
	out, err := s.headQuery(ctx, b, key, aws.Int32(headProbe), nil)
	if err != nil {
		return Position{}, false, err
	}
	top := consider(out.Items)
	if len(out.LastEvaluatedKey) == 0 || len(out.Items) == 0 {
		return head, ok, nil
	}
	if last, _ := stringAttr(out.Items[len(out.Items)-1], AttrCommitID); last != top {
		return head, ok, nil
	}
	// Every item read shares the latest commit id, and more may: read the
	// whole run.
	key = key.And(expression.Key(AttrCommitID).Equal(expression.Value(top)))
	var start map[string]types.AttributeValue
	for {
		out, err := s.headQuery(ctx, b, key, nil, start)
		if err != nil {
			return Position{}, false, err
		}
		consider(out.Items)
		if start = out.LastEvaluatedKey; len(start) == 0 {
			return head, ok, nil
		}
	}
}

// headQuery reads one page of a bucket's index items under key, latest
// first, from start.
func (s *Store) headQuery(ctx context.Context, bucket string, key expression.KeyConditionBuilder, limit *int32, start map[string]types.AttributeValue) (*dynamodb.QueryOutput, error) {
	expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
	if err != nil {
		return nil, fmt.Errorf("store: head of bucket %q: build expression: %w", bucket, err)
	}
	out, err := s.api.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.cfg.TableName),
		IndexName:                 aws.String(s.cfg.IndexName),
		KeyConditionExpression:    expr.KeyCondition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ScanIndexForward:          aws.Bool(false),
		Limit:                     limit,
		ExclusiveStartKey:         start,
		ReturnConsumedCapacity:    s.capacity,
	})
	if err != nil {
		return nil, fmt.Errorf("store: head of index %q bucket %q: %w", s.cfg.IndexName, bucket, s.callErr(err))
	}
	s.reportCapacity(OpScan, out.ConsumedCapacity)
	return out, nil
}

// headProbe is how many of a bucket's latest index items Head reads first.
const headProbe = 10
