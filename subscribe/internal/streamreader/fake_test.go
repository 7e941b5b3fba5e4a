package streamreader

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// fakeStream is an in-memory DynamoDB stream behind API: shards with
// lineage, records, closing, trimming, expiry of shards and iterators,
// paged DescribeStream, and a fault hook. Safe for concurrent use.
type fakeStream struct {
	mu       sync.Mutex
	arn      string
	status   types.StreamStatus
	gone     bool // every call: ResourceNotFoundException
	shards   []*fakeShard
	pageSize int // shards per DescribeStream page
	clock    func() time.Time
	iters    map[string]fakeIter
	nIter    int
	seq      int
	calls    []fakeCall
	// fault, if set, runs before each call (without the lock); a non-nil
	// error fails the call. n counts the calls of that op on that shard
	// ("" for DescribeStream), from 1.
	fault  func(op, shard string, n int) error
	counts map[string]int
	// local makes an iterator handed out while its shard held no record
	// fail with TrimmedDataAccessException once the shard has records, as
	// DynamoDB Local's do when any table was written in between (see
	// docs/stream.md). DynamoDB does not.
	local bool
}

type fakeShard struct {
	id, parent string
	recs       []types.Record
	closed     bool
	trimmed    int  // recs[:trimmed] are trimmed
	expired    bool // listed, but GetShardIterator says it does not exist
	unlisted   bool // trimmed away: not listed, does not exist
}

type fakeIter struct {
	shard  string
	pos    int
	issued time.Time
	empty  bool // handed out while its shard held no record
}

type fakeCall struct {
	op, shard string
	typ       types.ShardIteratorType
	seq       string // GetShardIterator's SequenceNumber
	start     string // DescribeStream's ExclusiveStartShardId
	at        time.Time
	records   int
	err       error
}

var _ API = (*fakeStream)(nil)

const fakeARN = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000"

func newFake() *fakeStream {
	return &fakeStream{arn: fakeARN, status: types.StreamStatusEnabled, pageSize: 100, clock: time.Now,
		iters: map[string]fakeIter{}, counts: map[string]int{}}
}

func (f *fakeStream) shard(id string) *fakeShard {
	for _, s := range f.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

// addShard adds an open shard to the end of the listing.
func (f *fakeStream) addShard(id, parent string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards = append(f.shards, &fakeShard{id: id, parent: parent})
}

// put appends n records to a shard; their keys name the shard and a
// counter, their sequence numbers increase across the stream.
func (f *fakeStream) put(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(id)
	if s.closed {
		panic("put on closed shard " + id)
	}
	for range n {
		f.seq++
		seq := fmt.Sprintf("%021d", f.seq)
		keys := map[string]types.AttributeValue{
			"aggregateId": &types.AttributeValueMemberS{Value: id},
			"version":     &types.AttributeValueMemberN{Value: strconv.Itoa(len(s.recs))},
		}
		s.recs = append(s.recs, types.Record{
			EventName: types.OperationTypeInsert,
			Dynamodb: &types.StreamRecord{SequenceNumber: aws.String(seq), Keys: keys, NewImage: keys,
				ApproximateCreationDateTime: aws.Time(f.clock().Truncate(time.Second))},
		})
	}
}

// update runs fn on a shard under the lock.
func (f *fakeStream) update(id string, fn func(*fakeShard)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.shard(id))
}

// seqs returns the sequence numbers of a shard's records.
func (f *fakeStream) seqs(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.shard(id).recs {
		out = append(out, *r.Dynamodb.SequenceNumber)
	}
	return out
}

func (f *fakeStream) callsOf(op string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.op == op {
			out = append(out, c)
		}
	}
	return out
}

// begin counts and records a call, and runs the fault hook.
func (f *fakeStream) begin(c fakeCall) (int, error) {
	f.mu.Lock()
	key := c.op + "/" + c.shard
	f.counts[key]++
	n := f.counts[key]
	fault := f.fault
	c.at = f.clock()
	f.mu.Unlock()
	var err error
	if fault != nil {
		err = fault(c.op, c.shard, n)
	}
	if err != nil {
		f.record(c, 0, err)
	}
	return n, err
}

func (f *fakeStream) record(c fakeCall, records int, err error) {
	c.records, c.err = records, err
	if c.at.IsZero() {
		c.at = f.clock()
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func notFound(msg string) error { return &types.ResourceNotFoundException{Message: aws.String(msg)} }

func (f *fakeStream) DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	c := fakeCall{op: "DescribeStream", start: aws.ToString(in.ExclusiveStartShardId), at: f.clock()}
	if _, err := f.begin(c); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c.records = -1
	if f.gone || aws.ToString(in.StreamArn) != f.arn {
		err := notFound("Requested resource not found: Stream: " + aws.ToString(in.StreamArn) + " not found")
		f.calls = append(f.calls, fakeCall{op: c.op, at: c.at, err: err})
		return nil, err
	}
	var listed []*fakeShard
	for _, s := range f.shards {
		if !s.unlisted {
			listed = append(listed, s)
		}
	}
	i := 0
	if start := aws.ToString(in.ExclusiveStartShardId); start != "" {
		i = slices.IndexFunc(listed, func(s *fakeShard) bool { return s.id == start }) + 1
	}
	size := f.pageSize
	if in.Limit != nil {
		size = min(size, int(*in.Limit))
	}
	page := listed[i:min(i+size, len(listed))]
	sd := &types.StreamDescription{StreamArn: aws.String(f.arn), StreamStatus: f.status}
	for _, s := range page {
		r := &types.SequenceNumberRange{StartingSequenceNumber: aws.String("000000000000000000001")}
		if s.closed {
			r.EndingSequenceNumber = aws.String(fmt.Sprintf("%021d", f.seq))
		}
		sh := types.Shard{ShardId: aws.String(s.id), SequenceNumberRange: r}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		sd.Shards = append(sd.Shards, sh)
	}
	// Like DynamoDB, a full page carries LastEvaluatedShardId even when
	// nothing follows.
	if len(page) == size && len(page) > 0 {
		sd.LastEvaluatedShardId = aws.String(page[len(page)-1].id)
	}
	f.calls = append(f.calls, fakeCall{op: c.op, start: c.start, at: c.at, records: len(page)})
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: sd}, nil
}

func (f *fakeStream) GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	c := fakeCall{op: "GetShardIterator", shard: aws.ToString(in.ShardId), typ: in.ShardIteratorType, seq: aws.ToString(in.SequenceNumber), at: f.clock()}
	if _, err := f.begin(c); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(err error) (*dynamodbstreams.GetShardIteratorOutput, error) {
		c.err = err
		f.calls = append(f.calls, c)
		return nil, err
	}
	if f.gone || aws.ToString(in.StreamArn) != f.arn {
		return fail(notFound("Requested resource not found: Stream not found"))
	}
	s := f.shard(c.shard)
	if s == nil || s.unlisted || s.expired {
		return fail(notFound("Requested resource not found: Shard does not exist"))
	}
	var pos int
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
		pos = s.trimmed
	case types.ShardIteratorTypeLatest:
		pos = len(s.recs)
	case types.ShardIteratorTypeAfterSequenceNumber:
		i := slices.IndexFunc(s.recs, func(r types.Record) bool { return *r.Dynamodb.SequenceNumber == c.seq })
		if i < 0 || i < s.trimmed {
			if i < 0 && (len(s.recs) == 0 || c.seq > *s.recs[len(s.recs)-1].Dynamodb.SequenceNumber) {
				return fail(&types.InternalServerError{Message: aws.String("fake: unknown sequence number " + c.seq)})
			}
			return fail(&types.TrimmedDataAccessException{Message: aws.String("trimmed")})
		}
		pos = i + 1
	default:
		return fail(fmt.Errorf("fake: iterator type %q not supported", in.ShardIteratorType))
	}
	f.nIter++
	tok := fmt.Sprintf("it-%d", f.nIter)
	f.iters[tok] = fakeIter{shard: s.id, pos: pos, issued: f.clock(), empty: len(s.recs) == 0}
	f.calls = append(f.calls, c)
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String(tok)}, nil
}

func (f *fakeStream) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	it, ok := f.iters[aws.ToString(in.ShardIterator)]
	f.mu.Unlock()
	c := fakeCall{op: "GetRecords", shard: it.shard, at: f.clock()}
	if _, err := f.begin(c); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(err error) (*dynamodbstreams.GetRecordsOutput, error) {
		c.err = err
		f.calls = append(f.calls, c)
		return nil, err
	}
	if !ok {
		return fail(fmt.Errorf("fake: unknown iterator %q", aws.ToString(in.ShardIterator)))
	}
	if f.gone {
		return fail(notFound("Requested resource not found: Stream not found"))
	}
	if f.clock().Sub(it.issued) > 15*time.Minute {
		return fail(&types.ExpiredIteratorException{Message: aws.String("Iterator expired")})
	}
	s := f.shard(it.shard)
	if s.unlisted || s.expired {
		return fail(notFound("Requested resource not found: Shard does not exist"))
	}
	if it.pos < s.trimmed || f.local && it.empty && len(s.recs) > 0 {
		return fail(&types.TrimmedDataAccessException{Message: aws.String("trimmed")})
	}
	limit := 1000
	if in.Limit != nil {
		limit = int(*in.Limit)
	}
	end := min(it.pos+limit, len(s.recs))
	out := &dynamodbstreams.GetRecordsOutput{Records: slices.Clone(s.recs[it.pos:end])}
	if !s.closed || end < len(s.recs) {
		f.nIter++
		tok := fmt.Sprintf("it-%d", f.nIter)
		f.iters[tok] = fakeIter{shard: s.id, pos: end, issued: f.clock(), empty: len(s.recs) == 0}
		out.NextShardIterator = aws.String(tok)
	}
	c.records = len(out.Records)
	f.calls = append(f.calls, c)
	return out, nil
}

// collector records what Run emits and checks that one shard's records are
// never emitted concurrently.
type collector struct {
	t      testing.TB
	mu     sync.Mutex
	recs   []Record
	ends   []string
	events []string // "emit SHARD SEQ" and "end SHARD", in order
	inside map[string]bool
	// hook, if set, runs inside emit (without the lock) before the record
	// is kept; an error is returned by emit.
	hook func(ctx context.Context, rec Record) error
}

func newCollector(t testing.TB) *collector { return &collector{t: t, inside: map[string]bool{}} }

func (c *collector) emit(ctx context.Context, rec Record) error {
	c.mu.Lock()
	if c.inside[rec.ShardID] {
		c.t.Errorf("shard %s: emit called concurrently", rec.ShardID)
	}
	c.inside[rec.ShardID] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inside[rec.ShardID] = false
		c.mu.Unlock()
	}()
	if c.hook != nil {
		if err := c.hook(ctx, rec); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	c.events = append(c.events, "emit "+rec.ShardID+" "+rec.SequenceNumber)
	c.mu.Unlock()
	return nil
}

func (c *collector) onEnd(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ends = append(c.ends, id)
	c.events = append(c.events, "end "+id)
}

// eventIndex returns the place of the first event with that prefix, or -1.
func (c *collector) eventIndex(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.IndexFunc(c.events, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

func (c *collector) ended(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.ends, id)
}

// seqs returns the sequence numbers emitted from a shard, in order.
func (c *collector) seqs(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.recs {
		if r.ShardID == id {
			out = append(out, r.SequenceNumber)
		}
	}
	return out
}

// firstIndex and lastIndex return the place of a shard's first and last
// record in the emission order (-1 if none).
func (c *collector) firstIndex(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.IndexFunc(c.recs, func(r Record) bool { return r.ShardID == id })
}

func (c *collector) lastIndex(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.recs) - 1; i >= 0; i-- {
		if c.recs[i].ShardID == id {
			return i
		}
	}
	return -1
}
