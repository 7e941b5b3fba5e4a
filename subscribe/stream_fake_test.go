package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The whole worker (NewWorker, Register with SourceStream, Run) against a
// fake of the Streams calls it declares (StreamsAPI), over a real commits
// table on DynamoDB Local: what the emulator cannot do, the fake does —
// shards that close and split, one aggregate's records out of order or
// missing, an expired iterator, trimmed records, a new stream ARN,
// throttling (DESIGN.md §4, hazards 2, 3, 5 and 6). The fake serves records
// whose images are the table's items, so gap repairs (strongly consistent
// Query) and the index catch-up read the same commits as the stream. Every
// case checks the guarantees of §3 with a recorder: every commit delivered,
// each aggregate's versions in order, no duplicates after clean stops. The
// fake itself checks that no shard is opened before its parent was read to
// its end.

// fakeStreams is DynamoDB Streams in memory, behind StreamsAPI: streams by
// ARN, shards with lineage that close and split, records the test puts (in
// any order, or never), trimming, a stream disabled or gone, iterators that
// expire once, and a fault hook (throttling). DescribeStream lists the
// newest shards first, so children come before their parents. Safe for
// concurrent use.
type fakeStreams struct {
	mu       sync.Mutex
	streams  map[string]*fakeStream
	current  string // the stream the table reports (fakeTables); "" for none
	seq      int    // last sequence number handed out, across streams
	nIter    int
	iters    map[string]fakeIter
	page     int // records per GetRecords, at most
	descPage int // shards per DescribeStream page, at most
	// fault, if set, runs before each call, without the lock; its error
	// fails the call. n counts the calls of op on that shard ("" for
	// DescribeStream), from 1.
	fault  func(op, shard string, n int) error
	counts map[string]int
	// expire holds, per shard, an iterator position: the next GetRecords
	// there fails once with ExpiredIteratorException.
	expire map[string]int
	served map[string]int       // times each sequence number was returned
	first  map[string]time.Time // when each sequence number was first returned
	errs   map[string]int       // errors returned, by type
	opened []fakeOpen           // GetShardIterator calls that succeeded
	// lineage lists the shards opened before their parent was read to its
	// end.
	lineage []string
	// local makes an iterator handed out while its shard held no record
	// fail with TrimmedDataAccessException once the shard has records, as
	// DynamoDB Local's do when any table was written in between (see
	// docs/stream.md). DynamoDB does not.
	local bool
}

type fakeStream struct {
	arn    string
	status streamtypes.StreamStatus
	gone   bool // every call: ResourceNotFoundException
	shards []*fakeShard
}

type fakeShard struct {
	id, parent string
	recs       []streamtypes.Record
	closed     bool
	trimmed    int  // recs[:trimmed] are trimmed
	ended      bool // a GetRecords returned its last record and no next iterator
	reads      int  // GetRecords calls answered
}

type fakeIter struct {
	arn, shard string
	pos        int
	empty      bool // handed out while its shard held no record
}

// fakeOpen is a GetShardIterator call that returned an iterator.
type fakeOpen struct {
	shard string
	typ   streamtypes.ShardIteratorType
	seq   string
}

var _ StreamsAPI = (*fakeStreams)(nil)

// newFakeStreams returns a fake with one enabled stream, arn, whose root
// shards are open, and which the table reports.
func newFakeStreams(arn string, shards ...string) *fakeStreams {
	f := &fakeStreams{streams: map[string]*fakeStream{}, iters: map[string]fakeIter{}, page: 5, descPage: 100,
		counts: map[string]int{}, expire: map[string]int{}, served: map[string]int{}, first: map[string]time.Time{}, errs: map[string]int{}}
	f.addStream(arn, shards...)
	f.current = arn
	return f
}

// addStream adds an enabled stream with open root shards. The table goes
// on reporting the current one (setCurrent).
func (f *fakeStreams) addStream(arn string, shards ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &fakeStream{arn: arn, status: streamtypes.StreamStatusEnabled}
	for _, id := range shards {
		st.shards = append(st.shards, &fakeShard{id: id})
	}
	f.streams[arn] = st
}

func (f *fakeStreams) setCurrent(arn string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = arn
}

func (f *fakeStreams) currentARN() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

func (st *fakeStream) shard(id string) *fakeShard {
	for _, s := range st.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

// shardOf returns a shard, panicking on a test's typo. Called under f.mu.
func (f *fakeStreams) shardOf(arn, id string) *fakeShard {
	st := f.streams[arn]
	if st == nil || st.shard(id) == nil {
		panic(fmt.Sprintf("fake: no shard %s in stream %s", id, arn))
	}
	return st.shard(id)
}

// put appends records to an open shard, in the order given, and returns
// their sequence numbers (increasing across the fake).
func (f *fakeStreams) put(arn, shard string, recs ...streamtypes.Record) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shardOf(arn, shard)
	if s.closed {
		panic("fake: put on closed shard " + shard)
	}
	var seqs []string
	for _, r := range recs {
		f.seq++
		seq := fmt.Sprintf("%021d", f.seq)
		d := *r.Dynamodb
		d.SequenceNumber = aws.String(seq)
		d.ApproximateCreationDateTime = aws.Time(time.Now().Truncate(time.Second))
		r.Dynamodb = &d
		r.EventID = aws.String("event-" + seq)
		s.recs = append(s.recs, r)
		seqs = append(seqs, seq)
	}
	return seqs
}

// split closes a shard and adds its children, open.
func (f *fakeStreams) split(arn, parent string, children ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[arn]
	f.shardOf(arn, parent).closed = true
	for _, id := range children {
		st.shards = append(st.shards, &fakeShard{id: id, parent: parent})
	}
}

// trim drops the records a shard holds now, as 24 hours do.
func (f *fakeStreams) trim(arn, shard string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shardOf(arn, shard)
	s.trimmed = len(s.recs)
}

// disable closes the stream's open shards and reports it DISABLED, as
// disabling a table's stream does.
func (f *fakeStreams) disable(arn string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[arn]
	st.status = streamtypes.StreamStatusDisabled
	for _, s := range st.shards {
		s.closed = true
	}
}

// remove makes the stream unknown: every call about it fails with
// ResourceNotFoundException.
func (f *fakeStreams) remove(arn string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams[arn].gone = true
}

// expireAt makes the next GetRecords at iterator position pos of a shard
// fail once with ExpiredIteratorException.
func (f *fakeStreams) expireAt(shard string, pos int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire[shard] = pos
}

// setFault sets the fault hook and starts its call counts afresh.
func (f *fakeStreams) setFault(fault func(op, shard string, n int) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault, f.counts = fault, map[string]int{}
}

// reads returns the GetRecords calls a shard answered.
func (f *fakeStreams) reads(arn, shard string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shardOf(arn, shard).reads
}

// ended reports whether a shard was read to its end.
func (f *fakeStreams) ended(arn, shard string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shardOf(arn, shard).ended
}

// errCount returns how many errors of a type (as %T prints it) the fake
// returned.
func (f *fakeStreams) errCount(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[kind]
}

// servedCount returns how many times a record was returned.
func (f *fakeStreams) servedCount(seq string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[seq]
}

// firstServed returns when a record was first returned.
func (f *fakeStreams) firstServed(seq string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first[seq]
}

// openedOn returns "TYPE SEQ" of each iterator handed out on a shard.
func (f *fakeStreams) openedOn(shard string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, o := range f.opened {
		if o.shard == shard {
			out = append(out, strings.TrimSpace(string(o.typ)+" "+o.seq))
		}
	}
	return out
}

func (f *fakeStreams) lineageViolations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lineage)
}

// begin counts a call and runs the fault hook.
func (f *fakeStreams) begin(op, shard string) error {
	f.mu.Lock()
	key := op + "/" + shard
	f.counts[key]++
	n, fault := f.counts[key], f.fault
	f.mu.Unlock()
	if fault == nil {
		return nil
	}
	err := fault(op, shard, n)
	if err != nil {
		f.mu.Lock()
		f.errs[fmt.Sprintf("%T", err)]++
		f.mu.Unlock()
	}
	return err
}

// fail counts an error the fake returns. Called under f.mu.
func (f *fakeStreams) fail(err error) error {
	f.errs[fmt.Sprintf("%T", err)]++
	return err
}

func notFoundErr(what string) error {
	return &streamtypes.ResourceNotFoundException{Message: aws.String("Requested resource not found: " + what)}
}

func throttled() error {
	return &streamtypes.LimitExceededException{Message: aws.String("Rate exceeded")}
}

func (f *fakeStreams) DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	if err := f.begin("DescribeStream", ""); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.StreamArn)
	st := f.streams[arn]
	if st == nil || st.gone {
		return nil, f.fail(notFoundErr("Stream: " + arn + " not found"))
	}
	listed := slices.Clone(st.shards)
	slices.Reverse(listed) // newest first: children before their parents
	i := 0
	if start := aws.ToString(in.ExclusiveStartShardId); start != "" {
		i = slices.IndexFunc(listed, func(s *fakeShard) bool { return s.id == start }) + 1
	}
	size := f.descPage
	if in.Limit != nil {
		size = min(size, int(*in.Limit))
	}
	page := listed[i:min(i+size, len(listed))]
	sd := &streamtypes.StreamDescription{StreamArn: aws.String(arn), StreamStatus: st.status, StreamViewType: streamtypes.StreamViewTypeNewImage}
	for _, s := range page {
		r := &streamtypes.SequenceNumberRange{StartingSequenceNumber: aws.String(fmt.Sprintf("%021d", 1))}
		if s.closed {
			r.EndingSequenceNumber = aws.String(fmt.Sprintf("%021d", f.seq))
		}
		sh := streamtypes.Shard{ShardId: aws.String(s.id), SequenceNumberRange: r}
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
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: sd}, nil
}

func (f *fakeStreams) GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	id := aws.ToString(in.ShardId)
	if err := f.begin("GetShardIterator", id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.StreamArn)
	st := f.streams[arn]
	if st == nil || st.gone {
		return nil, f.fail(notFoundErr("Stream: " + arn + " not found"))
	}
	s := st.shard(id)
	if s == nil {
		return nil, f.fail(notFoundErr("Shard does not exist"))
	}
	if p := st.shard(s.parent); p != nil && !p.ended {
		f.lineage = append(f.lineage, fmt.Sprintf("shard %s opened (%s) before its parent %s was read to its end", id, in.ShardIteratorType, p.id))
	}
	seq := aws.ToString(in.SequenceNumber)
	var pos int
	switch in.ShardIteratorType {
	case streamtypes.ShardIteratorTypeTrimHorizon:
		pos = s.trimmed
	case streamtypes.ShardIteratorTypeLatest:
		pos = len(s.recs)
	case streamtypes.ShardIteratorTypeAfterSequenceNumber, streamtypes.ShardIteratorTypeAtSequenceNumber:
		i := slices.IndexFunc(s.recs, func(r streamtypes.Record) bool { return *r.Dynamodb.SequenceNumber == seq })
		if i < 0 {
			return nil, f.fail(&streamtypes.InternalServerError{Message: aws.String("fake: unknown sequence number " + seq)})
		}
		if in.ShardIteratorType == streamtypes.ShardIteratorTypeAfterSequenceNumber {
			i++
		}
		if i < s.trimmed {
			return nil, f.fail(&streamtypes.TrimmedDataAccessException{Message: aws.String("the requested records are beyond the trim horizon")})
		}
		pos = i
	default:
		return nil, f.fail(fmt.Errorf("fake: iterator type %q", in.ShardIteratorType))
	}
	f.opened = append(f.opened, fakeOpen{shard: id, typ: in.ShardIteratorType, seq: seq})
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String(f.newIter(arn, id, pos))}, nil
}

// newIter hands out an iterator. Called under f.mu.
func (f *fakeStreams) newIter(arn, shard string, pos int) string {
	f.nIter++
	tok := "iterator-" + strconv.Itoa(f.nIter)
	s := f.streams[arn].shard(shard)
	f.iters[tok] = fakeIter{arn: arn, shard: shard, pos: pos, empty: len(s.recs) == 0}
	return tok
}

func (f *fakeStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	it, ok := f.iters[aws.ToString(in.ShardIterator)]
	f.mu.Unlock()
	if err := f.begin("GetRecords", it.shard); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		return nil, f.fail(fmt.Errorf("fake: unknown iterator %q", aws.ToString(in.ShardIterator)))
	}
	st := f.streams[it.arn]
	if st.gone {
		return nil, f.fail(notFoundErr("Stream: " + it.arn + " not found"))
	}
	if pos, ok := f.expire[it.shard]; ok && pos == it.pos {
		delete(f.expire, it.shard)
		return nil, f.fail(&streamtypes.ExpiredIteratorException{Message: aws.String("Iterator expired")})
	}
	s := st.shard(it.shard)
	if it.pos < s.trimmed || f.local && it.empty && len(s.recs) > 0 {
		return nil, f.fail(&streamtypes.TrimmedDataAccessException{Message: aws.String("the requested records are beyond the trim horizon")})
	}
	limit := f.page
	if in.Limit != nil {
		limit = min(limit, int(*in.Limit))
	}
	end := min(it.pos+limit, len(s.recs))
	out := &dynamodbstreams.GetRecordsOutput{Records: slices.Clone(s.recs[it.pos:end])}
	if s.closed && end == len(s.recs) {
		s.ended = true // a closed shard read to its end: no next iterator
	} else {
		out.NextShardIterator = aws.String(f.newIter(it.arn, it.shard, end))
	}
	s.reads++
	now := time.Now()
	for _, r := range out.Records {
		seq := *r.Dynamodb.SequenceNumber
		if f.served[seq]++; f.served[seq] == 1 {
			f.first[seq] = now
		}
	}
	return out, nil
}

// fakeTables answers DescribeTable from the real table, with the fake's
// current stream as the table's stream.
type fakeTables struct {
	TableDescriber
	f *fakeStreams
}

func (t fakeTables) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	out, err := t.TableDescriber.DescribeTable(ctx, in, optFns...)
	if err != nil || out.Table == nil {
		return out, err
	}
	arn := t.f.currentARN()
	out.Table.StreamSpecification = &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(arn != "")}
	out.Table.LatestStreamArn = nil
	if arn != "" {
		out.Table.StreamSpecification.StreamViewType = ddbtypes.StreamViewTypeNewImage
		out.Table.LatestStreamArn = aws.String(arn)
	}
	return out, nil
}

// streamImage converts a table item into a stream record's image.
func streamImage(item map[string]ddbtypes.AttributeValue) (map[string]streamtypes.AttributeValue, error) {
	out := make(map[string]streamtypes.AttributeValue, len(item))
	for k, v := range item {
		av, err := streamAttribute(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

func streamAttribute(v ddbtypes.AttributeValue) (streamtypes.AttributeValue, error) {
	switch v := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return &streamtypes.AttributeValueMemberS{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberN:
		return &streamtypes.AttributeValueMemberN{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberB:
		return &streamtypes.AttributeValueMemberB{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberBOOL:
		return &streamtypes.AttributeValueMemberBOOL{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberNULL:
		return &streamtypes.AttributeValueMemberNULL{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberSS:
		return &streamtypes.AttributeValueMemberSS{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberNS:
		return &streamtypes.AttributeValueMemberNS{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberBS:
		return &streamtypes.AttributeValueMemberBS{Value: v.Value}, nil
	case *ddbtypes.AttributeValueMemberL:
		l := make([]streamtypes.AttributeValue, len(v.Value))
		for i, e := range v.Value {
			av, err := streamAttribute(e)
			if err != nil {
				return nil, err
			}
			l[i] = av
		}
		return &streamtypes.AttributeValueMemberL{Value: l}, nil
	case *ddbtypes.AttributeValueMemberM:
		m, err := streamImage(v.Value)
		if err != nil {
			return nil, err
		}
		return &streamtypes.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unknown attribute value type %T", v)
}

// fakeSub names the subscription of every case.
const fakeSub = "fake"

// fakeHooks observe gap repairs and duplicates dropped by the source, and
// when each commit first reached the handler.
type fakeHooks struct {
	mu      sync.Mutex
	repairs []string // "aggregate from-to found"
	dups    []string // commitKey of records dropped as duplicates
	handled map[string]time.Time
}

func (h *fakeHooks) OnGapRepair(_, id string, from, to int64, found int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repairs = append(h.repairs, fmt.Sprintf("%s %d-%d %d", id, from, to, found))
}

func (h *fakeHooks) OnDuplicate(_ string, c Commit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dups = append(h.dups, commitKey(c))
}

// wrap returns next, noting when each commit first reached it.
func (h *fakeHooks) wrap(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, c Commit) error {
		h.mu.Lock()
		if _, ok := h.handled[commitKey(c)]; !ok {
			h.handled[commitKey(c)] = time.Now()
		}
		h.mu.Unlock()
		return next.Handle(ctx, c)
	})
}

func (h *fakeHooks) repaired() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.repairs)
}

func (h *fakeHooks) duplicates() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.dups)
}

func (h *fakeHooks) handledAt(key string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.handled[key]
}

// fakeEnv is one case: a commits table on DynamoDB Local, a fake stream
// serving its items, and the workers' shared checkpoints and recorder.
type fakeEnv struct {
	s      *store.Store
	client *dynamodb.Client
	f      *fakeStreams
	arn    string // the first stream: the table's own stream ARN
	cps    *memcheckpoint.Mem
	rec    *recorder
	hooks  *fakeHooks
	want   map[string]int64 // versions appended, per aggregate
	// started is when the last worker started.
	started time.Time
}

// newFakeEnv creates the table and a fake whose stream, under the table's
// real stream ARN, has the given open root shards.
func newFakeEnv(t *testing.T, shards ...string) *fakeEnv {
	t.Helper()
	e := &fakeEnv{s: newTableWith(t, store.Config{}, store.TableOptions{}), client: ddbtest.Client(t),
		cps: memcheckpoint.New(), rec: newRecorder(), hooks: &fakeHooks{handled: map[string]time.Time{}}, want: map[string]int64{}}
	out, err := e.client.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(e.s.Config().TableName)})
	if err != nil {
		t.Fatal(err)
	}
	if e.arn = aws.ToString(out.Table.LatestStreamArn); e.arn == "" {
		t.Fatal("the table has no stream")
	}
	e.f = newFakeStreams(e.arn, shards...)
	return e
}

// logWriter passes the worker's log lines to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a worker with the case's subscription until the returned stop
// (or the test's end). adjust, if any, changes the subscription.
func (e *fakeEnv) start(t *testing.T, adjust ...func(*Subscription)) func() error {
	t.Helper()
	cfg := Config{Reader: e.s, Checkpoints: e.cps, Streams: e.f, Tables: fakeTables{TableDescriber: e.client, f: e.f},
		Hooks:  []any{e.hooks},
		Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil))}
	sub := Subscription{Name: fakeSub, Handler: e.hooks.wrap(e.rec), CheckpointInterval: 100 * time.Millisecond}
	configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: 300 * time.Millisecond})
	sub.Stream = StreamOptions{GapWait: 200 * time.Millisecond, Margin: 500 * time.Millisecond, IdleMax: 100 * time.Millisecond}
	for _, f := range adjust {
		f(&sub)
	}
	e.started = time.Now()
	return startWorker(t, cfg, sub)
}

// saved returns the subscription's saved checkpoint (zero if none), and
// whether the worker started last saved it.
func (e *fakeEnv) saved(t testing.TB) (hybridCheckpoint, bool) {
	t.Helper()
	var h hybridCheckpoint
	cp, err := e.cps.Load(context.Background(), checkpointKey(fakeSub))
	if err != nil || cp.Position == "" {
		return h, false
	}
	if err := json.Unmarshal([]byte(cp.Position), &h); err != nil {
		t.Fatalf("checkpoint %q: %v", cp.Position, err)
	}
	return h, !cp.UpdatedAt.Before(e.started.Truncate(time.Millisecond))
}

// waitPhase waits until the worker started last has saved a checkpoint in
// phase (of stream arn, for phaseStream).
func (e *fakeEnv) waitPhase(t *testing.T, phase, arn string) {
	t.Helper()
	ddbtest.Eventually(t, 15*time.Second, func() bool {
		h, ours := e.saved(t)
		return ours && h.Phase == phase && (phase != phaseStream || h.Stream != nil && h.Stream.StreamARN == arn)
	}, "the worker never saved phase %s %s: checkpoint %v", phase, arn, lazy(func() string {
		h, ours := e.saved(t)
		return fmt.Sprintf("%+v (saved by this worker: %v)", h, ours)
	}))
}

// waitStream waits until the stream arn has taken over (the worker saved
// a checkpoint that says so) and every open shard of it has been read
// since: records put from now on are read from the stream.
func (e *fakeEnv) waitStream(t *testing.T, arn string) {
	t.Helper()
	e.waitPhase(t, phaseStream, arn)
	e.f.mu.Lock()
	reads := map[string]int{}
	for _, s := range e.f.streams[arn].shards {
		if !s.closed {
			reads[s.id] = s.reads
		}
	}
	e.f.mu.Unlock()
	for id, n := range reads {
		ddbtest.Eventually(t, 5*time.Second, func() bool { return e.f.reads(arn, id) > n }, "shard %s is not read", id)
	}
}

// appendNext appends n more versions of each aggregate, interleaved, to
// the table, and returns their stream records (each image read back from
// the table), in the order appended.
func (e *fakeEnv) appendNext(t testing.TB, n int, aggs ...string) []streamtypes.Record {
	t.Helper()
	var out []streamtypes.Record
	for range n {
		for _, id := range aggs {
			c, err := e.s.Append(context.Background(), store.Commit{AggregateID: id, Version: e.want[id], Events: deposit(t)})
			if err != nil {
				t.Fatal(err)
			}
			e.want[id]++
			out = append(out, e.recordOf(t, c))
		}
	}
	return out
}

// recordOf returns the INSERT record of a commit, its image the table's
// item.
func (e *fakeEnv) recordOf(t testing.TB, c store.Commit) streamtypes.Record {
	t.Helper()
	key := map[string]ddbtypes.AttributeValue{
		store.AttrAggregateID: &ddbtypes.AttributeValueMemberS{Value: c.AggregateID},
		store.AttrVersion:     &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(c.Version, 10)},
	}
	out, err := e.client.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(e.s.Config().TableName), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil || out.Item == nil {
		t.Fatalf("reading back %s: %v", commitKey(c), err)
	}
	image, err := streamImage(out.Item)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := streamImage(key)
	if err != nil {
		t.Fatal(err)
	}
	return streamtypes.Record{
		EventName:   streamtypes.OperationTypeInsert,
		EventSource: aws.String("aws:dynamodb"),
		Dynamodb:    &streamtypes.StreamRecord{Keys: keys, NewImage: image, StreamViewType: streamtypes.StreamViewTypeNewImage},
	}
}

// pick returns the records of the given commits ("aggregate#version"), in
// that order.
func pick(t testing.TB, recs []streamtypes.Record, keys ...string) []streamtypes.Record {
	t.Helper()
	var out []streamtypes.Record
	for _, k := range keys {
		i := slices.IndexFunc(recs, func(r streamtypes.Record) bool {
			p, ok := recordPosition(r)
			return ok && fmt.Sprintf("%s#%d", p.AggregateID, p.Version) == k
		})
		if i < 0 {
			t.Fatalf("no record of %s", k)
		}
		out = append(out, recs[i])
	}
	return out
}

// lazy prints as what it returns when printed: a failure message of
// ddbtest.Eventually shows the state at the failure, not at the call.
type lazy func() string

func (l lazy) String() string { return l() }

// waitDelivered waits until every commit appended has been delivered.
func (e *fakeEnv) waitDelivered(t *testing.T, timeout time.Duration) {
	t.Helper()
	ddbtest.Eventually(t, timeout, func() bool { return covers(e.rec.delivered(), e.want) },
		"not every commit was delivered: %v", lazy(func() string {
			e.rec.mu.Lock()
			violations := slices.Clone(e.rec.violations)
			e.rec.mu.Unlock()
			return fmt.Sprintf("got %v, want %v (order violations %v, records dropped as duplicates %v, gap repairs %v)",
				e.rec.delivered(), e.want, violations, e.hooks.duplicates(), e.hooks.repaired())
		}))
}

// check fails unless every commit appended was delivered, in per-aggregate
// order, and none twice (the workers stopped cleanly); and unless the fake
// saw no shard opened before its parent was read to its end.
func (e *fakeEnv) check(t *testing.T) {
	t.Helper()
	e.rec.check(t, e.want)
	e.rec.mu.Lock()
	dups, total := e.rec.duplicates, e.rec.total
	e.rec.mu.Unlock()
	if dups != 0 || total != totalVersions(e.want) {
		t.Fatalf("%d deliveries with %d duplicates for %d commits, with clean stops only", total, dups, totalVersions(e.want))
	}
	if v := e.f.lineageViolations(); len(v) > 0 {
		t.Fatalf("children read before their parents: %v", v)
	}
}

// newARN returns another stream ARN of the table.
func (e *fakeEnv) newARN(label string) string {
	return e.arn[:strings.LastIndex(e.arn, "/")+1] + label
}

// TestFakeStreamShardSplit: the stream's shard closes and splits in two,
// and one child splits again, while records of the same aggregates go to
// the parent, then to both children (one aggregate alternating between
// them), then to the grandchild. DescribeStream lists children before
// parents, two shards a page. Every commit is delivered once, in
// per-aggregate order, and no shard is opened before its parent was read to
// its end.
func TestFakeStreamShardSplit(t *testing.T) {
	e := newFakeEnv(t, "shard-P")
	e.f.descPage = 2
	e.f.put(e.arn, "shard-P", e.appendNext(t, 2, "a", "b")...) // before the worker: from the index
	stop := e.start(t)
	e.waitStream(t, e.arn)

	e.f.put(e.arn, "shard-P", e.appendNext(t, 4, "a", "b", "c", "d", "e")...)
	e.f.split(e.arn, "shard-P", "shard-C1", "shard-C2")
	for range 4 {
		e.f.put(e.arn, "shard-C1", e.appendNext(t, 1, "a", "b")...)
		e.f.put(e.arn, "shard-C2", e.appendNext(t, 1, "c", "d")...)
		e.f.put(e.arn, "shard-C1", e.appendNext(t, 1, "e")...)
		e.f.put(e.arn, "shard-C2", e.appendNext(t, 1, "e")...)
	}
	e.f.split(e.arn, "shard-C1", "shard-G")
	e.f.put(e.arn, "shard-G", e.appendNext(t, 2, "a", "b", "e")...)
	e.f.put(e.arn, "shard-C2", e.appendNext(t, 2, "c", "d")...)

	e.waitDelivered(t, 15*time.Second)
	mustStop(t, stop)
	e.check(t)
	for _, id := range []string{"shard-P", "shard-C1"} {
		if !e.f.ended(e.arn, id) {
			t.Errorf("closed shard %s was not read to its end", id)
		}
	}
	for _, id := range []string{"shard-C1", "shard-C2", "shard-G"} {
		if got := e.f.openedOn(id); len(got) == 0 || got[0] != string(streamtypes.ShardIteratorTypeTrimHorizon) {
			t.Errorf("child %s opened %v, want at TRIM_HORIZON first", id, got)
		}
	}
	t.Logf("gap repairs %v, records dropped as duplicates %d", e.hooks.repaired(), len(e.hooks.duplicates()))
}

// TestFakeStreamSplitAcrossRestart: a worker stops while the parent shard
// is partly read and its children already hold records; the next worker
// resumes the parent after its checkpoint and reads the children only once
// the parent is read to its end. Nothing is lost or delivered twice.
func TestFakeStreamSplitAcrossRestart(t *testing.T) {
	e := newFakeEnv(t, "shard-P")
	stop := e.start(t)
	e.waitStream(t, e.arn)
	aggs := aggNames("acc-", 6)
	e.f.put(e.arn, "shard-P", e.appendNext(t, 6, aggs...)...) // 36 records: 8 pages
	e.f.split(e.arn, "shard-P", "shard-C1", "shard-C2")
	e.f.put(e.arn, "shard-C1", e.appendNext(t, 2, aggs[:3]...)...)
	e.f.put(e.arn, "shard-C2", e.appendNext(t, 2, aggs[3:]...)...)
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return e.rec.total >= 10
	}, "the first worker delivered too little")
	mustStop(t, stop)
	cp, _ := e.saved(t)
	if e.f.ended(e.arn, "shard-P") || cp.Stream == nil || cp.Stream.Shards["shard-P"] == "" {
		t.Fatalf("the first worker read the parent to its end or saved no position in it (%+v): the case tests nothing", cp)
	}

	stop = e.start(t)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)
	e.check(t)
	if got, want := e.f.openedOn("shard-P"), []string{"LATEST", "AFTER_SEQUENCE_NUMBER " + cp.Stream.Shards["shard-P"]}; !slices.Equal(got, want) {
		t.Fatalf("iterators on the parent: %q, want %q", got, want)
	}
}

// TestFakeStreamOutOfOrder: one shard gives an aggregate's records as v2,
// v1, v0 (held, then released in order, no repair); versions whose records
// never come, of a known aggregate and of an aggregate first seen at
// version 1, are read from the table once GapWait has passed; a record that
// comes after its version was repaired is dropped.
func TestFakeStreamOutOfOrder(t *testing.T) {
	e := newFakeEnv(t, "shard-0")
	gapWait := 200 * time.Millisecond
	stop := e.start(t)
	e.waitStream(t, e.arn)

	recs := e.appendNext(t, 3, "a", "b")
	recs = append(recs, e.appendNext(t, 1, "b")...)
	recs = append(recs, e.appendNext(t, 2, "c", "d")...)
	// b#2 and c#0 never come, d#0 comes late.
	order := []string{"a#2", "a#1", "a#0", "b#0", "b#1", "b#3", "c#1", "d#1"}
	e.f.mu.Lock()
	e.f.page = len(order) // one GetRecords: a's order is restored at once
	e.f.mu.Unlock()
	seqs := e.f.put(e.arn, "shard-0", pick(t, recs, order...)...)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return e.rec.delivered()["d"] == 2 }, "d#0 was not repaired")
	e.f.put(e.arn, "shard-0", pick(t, recs, "d#0")...)
	e.waitDelivered(t, 10*time.Second)
	ddbtest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(e.hooks.duplicates(), "d#0") }, "the late record of d#0 was not dropped as a duplicate")
	mustStop(t, stop)
	e.check(t)

	repaired := e.hooks.repaired()
	slices.Sort(repaired)
	if want := []string{"b 2-3 1", "c 0-1 1", "d 0-1 1"}; !slices.Equal(repaired, want) {
		t.Fatalf("gap repairs %v, want %v (a's records, out of order in one page, need none)", repaired, want)
	}
	// A repaired version waited GapWait for its record, from the moment
	// its successor's record was read.
	for _, r := range []struct{ missing, successor string }{{"b#2", "b#3"}, {"c#0", "c#1"}, {"d#0", "d#1"}} {
		read := e.f.firstServed(seqs[slices.Index(order, r.successor)])
		if waited := e.hooks.handledAt(r.missing).Sub(read); waited < gapWait {
			t.Errorf("%s repaired %v after %s was read, before GapWait %v", r.missing, waited, r.successor, gapWait)
		}
	}
}

// TestFakeStreamExpiredIterator: GetRecords reports the iterator expired
// once, in the middle of a shard: the reader renews it after the last
// record read, and every record is read once; nothing is lost or delivered
// twice.
func TestFakeStreamExpiredIterator(t *testing.T) {
	e := newFakeEnv(t, "shard-0")
	stop := e.start(t)
	e.waitStream(t, e.arn)
	e.f.expireAt("shard-0", 10) // after two pages of five
	seqs := e.f.put(e.arn, "shard-0", e.appendNext(t, 5, "a", "b", "c", "d")...)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)
	e.check(t)
	if n := e.f.errCount("*types.ExpiredIteratorException"); n != 1 {
		t.Fatalf("ExpiredIteratorException returned %d times, want once", n)
	}
	got := e.f.openedOn("shard-0")
	if want := []string{"LATEST", "AFTER_SEQUENCE_NUMBER " + seqs[9]}; !slices.Equal(got, want) {
		t.Fatalf("iterators on shard-0: %q, want %q", got, want)
	}
	for i, seq := range seqs {
		if n := e.f.servedCount(seq); n != 1 {
			t.Errorf("record %d served %d times, want once", i, n)
		}
	}
	if d := e.hooks.duplicates(); len(d) != 0 {
		t.Fatalf("records read twice: %v", d)
	}
}

// TestFakeStreamTrimmedOnResume: a worker stops with a stream checkpoint;
// while none runs, commits are appended and their records trimmed away
// with the old position (TrimmedDataAccessException), then more are
// appended whose records the stream still holds. The next worker starts
// longer than Margin after them: it catches up through the index from its
// checkpoint, delivers them, and hands over to the stream again, from which
// the later commits come.
func TestFakeStreamTrimmedOnResume(t *testing.T) {
	e := newFakeEnv(t, "shard-0")
	stop := e.start(t)
	e.waitStream(t, e.arn)
	seqs := e.f.put(e.arn, "shard-0", e.appendNext(t, 3, "a", "b")...)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)
	if cp, _ := e.saved(t); cp.Phase != phaseStream || cp.Stream.Shards["shard-0"] != seqs[len(seqs)-1] {
		t.Fatalf("the first worker saved %+v, want the stream position after %s", cp, seqs[len(seqs)-1])
	}

	// While no worker runs: records trimmed, with the position.
	e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a", "b", "c")...)
	e.f.trim(e.arn, "shard-0")
	e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "d")...) // still in the stream
	time.Sleep(700 * time.Millisecond)                    // longer than Margin

	stop = e.start(t)
	e.waitPhase(t, phaseCatchUp, "")
	e.waitStream(t, e.arn)
	if e.f.errCount("*types.TrimmedDataAccessException") == 0 {
		t.Fatal("the new worker did not meet the trim")
	}
	// Then the stream gives the later commits.
	later := e.f.put(e.arn, "shard-0", e.appendNext(t, 1, "a", "c", "d", "e")...)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)
	e.check(t)
	for _, seq := range later {
		if n := e.f.servedCount(seq); n != 1 {
			t.Fatalf("record %s of a later commit served %d times, want once", seq, n)
		}
	}
}

// TestFakeStreamTrimmedBehindAnotherShard: as TestFakeStreamTrimmedOnResume,
// but with two shards: the records trimmed while no worker ran are on one,
// which the next worker opens late (throttled); a newer record on the other
// is read first. The catch-up must still start from where the lagging
// shard was.
func TestFakeStreamTrimmedBehindAnotherShard(t *testing.T) {
	e := newFakeEnv(t, "shard-A", "shard-B")
	stop := e.start(t)
	e.waitStream(t, e.arn)
	e.f.put(e.arn, "shard-A", e.appendNext(t, 2, "a")...)
	e.f.put(e.arn, "shard-B", e.appendNext(t, 2, "b")...)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)

	e.f.put(e.arn, "shard-B", e.appendNext(t, 2, "b", "c")...) // lost from the stream
	e.f.trim(e.arn, "shard-B")
	time.Sleep(2 * time.Second) // records are dated to the second
	e.f.put(e.arn, "shard-A", e.appendNext(t, 1, "a", "x")...)
	e.f.setFault(func(op, shard string, n int) error {
		if op == "GetShardIterator" && shard == "shard-B" && n <= 3 {
			return throttled()
		}
		return nil
	})
	stop = e.start(t)
	e.waitPhase(t, phaseCatchUp, "")
	e.waitStream(t, e.arn)
	e.f.put(e.arn, "shard-B", e.appendNext(t, 1, "b", "c")...)
	e.waitDelivered(t, 10*time.Second)
	mustStop(t, stop)
	e.check(t)
}

// TestFakeStreamNewARN: the table's stream goes (DISABLED, or unknown:
// ResourceNotFoundException), for a while the table has none, then a new
// one under a new ARN replaces it. Commits written meanwhile are only in
// the table: the worker catches up through the index, then the new stream
// takes over.
func TestFakeStreamNewARN(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gone    func(f *fakeStreams, arn string)
		restart time.Duration // >0: the worker stops first, and restarts this long (> Margin) after the last commit
	}{
		{name: "disabled_while_running", gone: (*fakeStreams).disable},
		{name: "removed_while_running", gone: (*fakeStreams).remove},
		{name: "removed_across_restart", gone: (*fakeStreams).remove, restart: 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, "shard-0")
			stop := e.start(t)
			e.waitStream(t, e.arn)
			e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a", "b")...)
			e.waitDelivered(t, 10*time.Second)
			if tc.restart > 0 {
				mustStop(t, stop)
			}

			e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a", "b")...) // perhaps read before it goes
			tc.gone(e.f, e.arn)
			e.f.setCurrent("") // for a while the table has no stream
			e.appendNext(t, 2, "a", "c")
			next := e.newARN("2099-01-01T00:00:00.000")
			e.f.addStream(next, "shard-new")
			e.f.setCurrent(next)
			e.f.put(next, "shard-new", e.appendNext(t, 1, "a", "d")...)
			if tc.restart > 0 {
				time.Sleep(tc.restart)
				stop = e.start(t)
			}
			e.waitPhase(t, phaseCatchUp, "")
			e.waitStream(t, next)
			later := e.f.put(next, "shard-new", e.appendNext(t, 1, "a", "b", "c", "e")...)
			e.waitDelivered(t, 10*time.Second)
			mustStop(t, stop)
			e.check(t)
			for _, seq := range later {
				if n := e.f.servedCount(seq); n != 1 {
					t.Fatalf("record %s of the new stream served %d times, want once", seq, n)
				}
			}
		})
	}
}

// TestFakeStreamThrottled: LimitExceededException on every other
// GetRecords of each shard, on the first GetShardIterator of each, and on
// three DescribeStream calls in a row, across a shard split. Every commit
// is delivered once; a retried call reuses its iterator, so no record is
// read twice.
func TestFakeStreamThrottled(t *testing.T) {
	e := newFakeEnv(t, "shard-P")
	e.f.page = 3
	stop := e.start(t)
	e.waitStream(t, e.arn)
	e.f.setFault(func(op, _ string, n int) error {
		switch {
		case op == "GetRecords" && n%2 == 0,
			op == "GetShardIterator" && n == 1,
			op == "DescribeStream" && n <= 3:
			return throttled()
		}
		return nil
	})
	var seqs []string
	seqs = append(seqs, e.f.put(e.arn, "shard-P", e.appendNext(t, 4, "a", "b", "c")...)...)
	e.f.split(e.arn, "shard-P", "shard-C1", "shard-C2")
	seqs = append(seqs, e.f.put(e.arn, "shard-C1", e.appendNext(t, 3, "a", "b")...)...)
	seqs = append(seqs, e.f.put(e.arn, "shard-C2", e.appendNext(t, 3, "c", "d")...)...)
	e.waitDelivered(t, 20*time.Second)
	mustStop(t, stop)
	e.check(t)
	if n := e.f.errCount("*types.LimitExceededException"); n < 8 {
		t.Fatalf("%d calls throttled: the case tests little", n)
	}
	for i, seq := range seqs {
		if n := e.f.servedCount(seq); n != 1 {
			t.Errorf("record %d served %d times, want once", i, n)
		}
	}
	t.Logf("%d calls throttled", e.f.errCount("*types.LimitExceededException"))
}

// TestFakeStreamThrottledAtHandOver: DescribeStream is throttled for a few
// seconds just as the stream is opened for the hand-over, while commits of
// new aggregates keep coming: each is delivered, by the index or by the
// stream.
func TestFakeStreamThrottledAtHandOver(t *testing.T) {
	e := newFakeEnv(t, "shard-0")
	e.f.setFault(func(op, _ string, n int) error {
		if op == "DescribeStream" && n <= 6 {
			return throttled()
		}
		return nil
	})
	stop := e.start(t)
	var tookOver time.Time
	for i := 0; tookOver.IsZero() || time.Since(tookOver) < 500*time.Millisecond; i++ {
		if i > 500 {
			t.Fatal("the stream never took over")
		}
		e.f.put(e.arn, "shard-0", e.appendNext(t, 1, fmt.Sprintf("h-%03d", i))...)
		if h, _ := e.saved(t); tookOver.IsZero() && h.Phase == phaseStream {
			tookOver = time.Now()
		}
		time.Sleep(30 * time.Millisecond)
	}
	e.waitDelivered(t, 5*time.Second)
	mustStop(t, stop)
	e.check(t)
}

// TestFakeStreamStartNowBeforeStreamOpens: a subscription that starts now
// gets the commits appended once it runs, even while opening the stream is
// slow (DescribeStream throttled).
func TestFakeStreamStartNowBeforeStreamOpens(t *testing.T) {
	e := newFakeEnv(t, "shard-0")
	e.f.put(e.arn, "shard-0", e.appendNext(t, 1, "old")...) // before the start
	delete(e.want, "old")
	e.f.setFault(func(op, _ string, n int) error {
		if op == "DescribeStream" && n <= 4 {
			return throttled()
		}
		return nil
	})
	stop := e.start(t, func(s *Subscription) { s.Start = StartNow })
	ddbtest.Eventually(t, 5*time.Second, func() bool { return e.f.errCount("*types.LimitExceededException") > 0 }, "the stream source did not start")
	e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a")...) // the subscription runs: these are owed
	e.waitStream(t, e.arn)
	e.f.put(e.arn, "shard-0", e.appendNext(t, 1, "b")...) // not a: its gap would be repaired
	e.waitDelivered(t, 5*time.Second)
	mustStop(t, stop)
	e.check(t)
}

// TestFakeStreamOldRecordsNotRedelivered: records a shard still holds from
// before the subscription's position (its start, or its checkpoint) are not
// delivered again when the shard is read from TRIM_HORIZON.
func TestFakeStreamOldRecordsNotRedelivered(t *testing.T) {
	t.Run("restart_before_any_record", func(t *testing.T) {
		restartAfterHistory(t, 700*time.Millisecond) // older than Margin at the hand-over
	})
	t.Run("expired_before_any_record_start_now", func(t *testing.T) {
		e := newFakeEnv(t, "shard-0")
		e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "old")...) // before the start
		delete(e.want, "old")
		time.Sleep(5 * time.Millisecond)
		e.f.expireAt("shard-0", 2) // the LATEST iterator, before any record
		stop := e.start(t, func(s *Subscription) { s.Start = StartNow })
		e.waitStream(t, e.arn)
		e.f.put(e.arn, "shard-0", e.appendNext(t, 2, "a")...)
		e.waitDelivered(t, 5*time.Second)
		mustStop(t, stop)
		e.check(t)
	})
}
