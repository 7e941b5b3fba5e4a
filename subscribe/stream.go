package subscribe

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
)

// streamCheckpoint is the stream source's saved position, as JSON.
type streamCheckpoint struct {
	// StreamARN names the stream the shards belong to.
	StreamARN string `json:"streamArn"`
	// Shards holds, per shard, the sequence number of the last record
	// handled with every record before it.
	Shards map[string]string `json:"shards,omitempty"`
	// Finished lists the shards read to their end and handled.
	Finished []string `json:"finished,omitempty"`
	// Resume is a time (Unix ms) such that every commit whose commit id
	// lies more than Margin before it was handled: where a restart must
	// tell by time, it takes the commits after Resume − Margin as not
	// handled.
	Resume int64 `json:"resume"`
	// Aggregates holds the next version to handle of the aggregates handled
	// after Resume − Margin.
	Aggregates map[string]aggregateMark `json:"aggregates,omitempty"`
	// Epoch, with leases, is the lease counter of the subscription's
	// checkpoint (unit "") when the stream took over from the index: the
	// shard units' checkpoints of an earlier epoch are left over from an
	// earlier hand-over and are not used.
	Epoch int64 `json:"epoch,omitempty"`
	// Parent, in a shard unit's checkpoint, is the shard the unit's shard
	// was split from, if any.
	Parent string `json:"parent,omitempty"`
}

// maxFinishedShards caps the finished shards a checkpoint lists. A closed
// shard stays listed for 24 hours; one dropped from the list earlier would
// be read again, its commits dropped as duplicates.
const maxFinishedShards = 2000

// recSlot is one record read from a shard, handled or not.
type recSlot struct {
	seq  string
	at   time.Time // the record's approximate creation time
	done bool
}

type shardQueue struct {
	slots  []*recSlot // in read order, from the first not handled
	base   string     // last sequence number handled with all before it
	readTo time.Time  // newest record read; the start's Resume until one is
	ended  bool       // read to its end
}

// streamTracker follows the records the stream source read until they are
// handled, per shard in read order, and computes the checkpoint. It is safe
// for concurrent use: shard readers add, handlers complete.
type streamTracker struct {
	mu     sync.Mutex
	arn    string
	epoch  int64
	parent string
	// single: the tracker follows one shard (a shard unit). A caught-up
	// shard with nothing pending then moves Resume on, which with several
	// shards the newest record of any does.
	single   bool
	margin   time.Duration
	shards   map[string]*shardQueue
	lastAt   time.Time // the newest record's approximate creation time
	finished []string
	byPos    map[store.Position][]*recSlot // commits emitted from records, not handled
	aggs     map[string]handledAgg
	ages     map[store.Position]int64
}

func newStreamTracker(arn string, margin time.Duration, clock func() time.Time, start streamCheckpoint) *streamTracker {
	t := &streamTracker{arn: arn, margin: margin, shards: map[string]*shardQueue{},
		byPos: map[store.Position][]*recSlot{}, aggs: map[string]handledAgg{}, ages: map[store.Position]int64{}}
	t.epoch, t.parent = start.Epoch, start.Parent
	if start.Resume > 0 {
		t.lastAt = time.UnixMilli(start.Resume)
	} else {
		t.lastAt = clock() // a first start: nothing before now is owed
	}
	if start.StreamARN == arn {
		for id, seq := range start.Shards {
			t.shards[id] = &shardQueue{base: seq, readTo: time.UnixMilli(start.Resume)}
		}
		t.finished = slices.Clone(start.Finished)
	}
	for id, m := range start.Aggregates {
		t.aggs[id] = handledAgg{next: m.Next, last: store.Position{CommitID: m.LastCommitID, AggregateID: id, Version: m.LastVersion}}
	}
	return t
}

// add records a record read from a shard, in the shard's order.
func (t *streamTracker) add(shard, seq string, at time.Time) *recSlot {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.shards[shard]
	if q == nil {
		q = &shardQueue{}
		t.shards[shard] = q
	}
	s := &recSlot{seq: seq, at: at}
	q.slots = append(q.slots, s)
	if at.After(q.readTo) {
		q.readTo = at
	}
	if at.After(t.lastAt) {
		t.lastAt = at
	}
	return s
}

// complete marks a record handled (or nothing to handle).
func (t *streamTracker) complete(s *recSlot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.done = true
}

// attach ties a record to the commit it carries, completed when the commit
// is handled.
func (t *streamTracker) attach(c Commit, s *recSlot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := c.Position()
	t.byPos[p] = append(t.byPos[p], s)
}

// emitted records a commit handed to the handlers.
func (t *streamTracker) emitted(c Commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ages[c.Position()] = c.CommittedAt
}

// handled records a commit handled: its records complete, its aggregate
// moves on.
func (t *streamTracker) handled(c Commit) {
	p := c.Position()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ages, p)
	for _, s := range t.byPos[p] {
		s.done = true
	}
	delete(t.byPos, p)
	t.aggs[c.AggregateID] = t.aggs[c.AggregateID].moved(c)
}

// owedFrom returns the position the tracker's checkpoint keeps
// aggregates' progress after: Margin before the newest record read, or
// before the tracker was made if none was.
func (t *streamTracker) owedFrom() store.Position {
	t.mu.Lock()
	defer t.mu.Unlock()
	return timeFloor(t.lastAt.Add(-t.margin))
}

// learn records the handled progress of aggregates handled before the
// tracker was made (by the index catch-up it takes over from), so that its
// checkpoint knows them until they lie Margin before Resume.
func (t *streamTracker) learn(marks map[string]handledAgg) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, m := range marks {
		a := t.aggs[id]
		a.next = max(a.next, m.next)
		if m.last.Compare(a.last) > 0 {
			a.last = m.last
		}
		t.aggs[id] = a
	}
}

// caughtUp records that a shard had nothing unread at time at, so that an
// idle shard does not hold Resume back while others move. It moves the
// shard's bound in steps of half the Margin: an idle checkpoint changes
// seldom.
func (t *streamTracker) caughtUp(shard string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.shards[shard]
	if q == nil {
		q = &shardQueue{}
		t.shards[shard] = q
	}
	if at.Sub(q.readTo) >= t.margin/2 {
		q.readTo = at
		if t.single && q.readTo.After(t.lastAt) && !slices.ContainsFunc(q.slots, func(s *recSlot) bool { return !s.done }) {
			t.lastAt = q.readTo
		}
	}
}

// ended records that a shard was read to its end.
func (t *streamTracker) ended(shard string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.shards[shard]
	if q == nil {
		q = &shardQueue{}
		t.shards[shard] = q
	}
	q.ended = true
}

// inFlight returns the commits emitted and not handled, and the commit time
// of the oldest (Unix ms, 0 if none).
func (t *streamTracker) inFlight() (int, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	oldest := int64(0)
	for _, at := range t.ages {
		if oldest == 0 || at < oldest {
			oldest = at
		}
	}
	return len(t.ages), oldest
}

// checkpoint returns the state to save.
func (t *streamTracker) checkpoint() streamCheckpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	// With nothing pending, everything read is handled: Resume is the
	// newest record read (not now, which would move an idle checkpoint
	// every interval, and claim records not read yet).
	cp := streamCheckpoint{StreamARN: t.arn, Shards: map[string]string{}, Resume: t.lastAt.UnixMilli(), Epoch: t.epoch, Parent: t.parent}
	for id, q := range t.shards {
		i := 0
		for i < len(q.slots) && q.slots[i].done {
			q.base = q.slots[i].seq
			i++
		}
		clear(q.slots[:i])
		q.slots = q.slots[i:]
		if len(q.slots) > 0 && q.slots[0].at.UnixMilli() < cp.Resume {
			cp.Resume = q.slots[0].at.UnixMilli()
		}
		if !q.ended && !q.readTo.IsZero() && q.readTo.UnixMilli() < cp.Resume {
			cp.Resume = q.readTo.UnixMilli()
		}
		if q.ended && len(q.slots) == 0 {
			t.finished = append(t.finished, id)
			delete(t.shards, id)
			continue
		}
		if q.base != "" {
			cp.Shards[id] = q.base
		}
	}
	if n := len(t.finished); n > maxFinishedShards {
		t.finished = slices.Delete(t.finished, 0, n-maxFinishedShards)
	}
	cp.Finished = slices.Clone(t.finished)
	for _, at := range t.ages {
		cp.Resume = min(cp.Resume, at)
	}
	floor := timeFloor(time.UnixMilli(cp.Resume).Add(-t.margin))
	for id, a := range t.aggs {
		if a.last.Compare(floor) <= 0 {
			delete(t.aggs, id)
			continue
		}
		if cp.Aggregates == nil {
			cp.Aggregates = map[string]aggregateMark{}
		}
		cp.Aggregates[id] = aggregateMark{Next: a.next, LastCommitID: a.last.CommitID, LastVersion: a.last.Version}
	}
	return cp
}

// position returns where the shard reader resumes.
func (cp streamCheckpoint) position() streamreader.Position {
	return streamreader.Position{StreamARN: cp.StreamARN, Shards: cp.Shards, Finished: cp.Finished}
}

// timeFloor returns the position before every commit id of instant t.
func timeFloor(t time.Time) store.Position { return store.FromCommitID(commitIDPrefix(t)) }

// heldCommit is a commit (or an item that is not a well-formed one)
// waiting for its predecessor.
type heldCommit struct {
	seqItem
	slot  *recSlot
	since time.Time
}

// streamSource reads the commits table's stream. It shares its sequencer,
// under the hybrid source's lock, with the index catch-up.
type streamSource struct {
	h          *hybridSource
	arn        string
	rd         *streamreader.Reader
	track      *streamTracker
	start      streamreader.Position
	shard      string                  // the one shard read (a shard unit), or "" for every shard
	held       map[string][]heldCommit // under h.mu
	positioned chan struct{}           // closed once the first shards hold iterators
	// holding counts the held commits, for lag reports that must not wait
	// for h.mu (a delivery holds it while the read-ahead is full).
	holding atomic.Int64
	// owedSince is when the records the start position owes begin: those
	// older than its Resume − Margin were handled. Zero when unknown.
	owedSince time.Time
}

func (h *hybridSource) newStreamSource(arn string, start streamCheckpoint, initial streamtypes.ShardIteratorType) (*streamSource, error) {
	st := &streamSource{positioned: make(chan struct{}), h: h, arn: arn, shard: h.shard,
		track: newStreamTracker(arn, h.s.Stream.Margin, h.w.cfg.Clock, start), held: map[string][]heldCommit{}}
	st.track.single = h.shard != ""
	st.start = start.position()
	if start.StreamARN != arn {
		st.start = streamreader.Position{StreamARN: arn}
	} else if start.Resume > 0 {
		st.owedSince = time.UnixMilli(start.Resume).Add(-h.s.Stream.Margin)
	}
	rd, err := streamreader.New(h.w.cfg.Streams, arn, streamreader.Options{
		InitialPosition: initial,
		BusyInterval:    min(250*time.Millisecond, h.s.Stream.IdleMax),
		IdleMax:         h.s.Stream.IdleMax,
		Logger:          h.log,
		OnShardEnd:      st.track.ended,
		OnPositioned:    func() { close(st.positioned) },
		OnCaughtUp:      st.track.caughtUp,
		OnCall:          h.onRead,
	})
	if err != nil {
		return nil, err
	}
	st.rd = rd
	return st, nil
}

// run reads the stream until ctx ends or it cannot go on (trimmed data, a
// gone stream: errors the hybrid source recovers from). Reading one shard,
// it returns errShardFinished once the shard is read to its end and every
// commit held for a gap has been delivered.
func (st *streamSource) run(ctx context.Context) error {
	flushDone := make(chan struct{})
	fctx, stopFlush := context.WithCancel(ctx)
	go func() {
		defer close(flushDone)
		st.flushLoop(fctx)
	}()
	defer func() {
		stopFlush()
		<-flushDone
	}()
	if st.shard == "" {
		return st.rd.Run(ctx, st.start, st.onRecord)
	}
	if slices.Contains(st.start.Finished, st.shard) {
		return errShardFinished
	}
	from := streamreader.ShardStart{After: st.start.Shards[st.shard], OwedSince: st.owedSince}
	if err := st.rd.RunShardFrom(ctx, st.shard, from, st.onRecord); err != nil {
		return err
	}
	// The shard is read: nothing will come to fill the gaps of commits held,
	// but a child shard may; deliver them now, repairing from the table, so
	// that the shard counts as finished.
	stopFlush()
	<-flushDone
	if err := st.flushAll(ctx); err != nil {
		return err
	}
	return errShardFinished
}

// flushAll delivers every commit held for a gap, repairing from the table;
// a gap the table does not fill is handled by the Corrupt policy once
// GapTimeout has passed, as while the shard was read.
func (st *streamSource) flushAll(ctx context.Context) error {
	for {
		st.h.mu.Lock()
		n := len(st.held) + st.h.seq.holding(st)
		st.h.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := st.flush(ctx, st.h.w.cfg.Clock().Add(24*time.Hour)); err != nil {
			return err
		}
		st.h.mu.Lock()
		err := st.h.seq.recheck(ctx, st.sink(ctx))
		holding := st.h.seq.holding(st)
		st.h.mu.Unlock()
		if err != nil {
			return err
		}
		if holding > 0 && !sleep(ctx, st.h.seq.gapCheckEvery()) {
			return ctx.Err()
		}
	}
}

// sink returns where the sequencer sends what this source offers.
func (st *streamSource) sink(ctx context.Context) sink {
	return sink{owner: st, emit: st.h.out(ctx, st.track)}
}

// onRecord takes one record from a shard reader.
func (st *streamSource) onRecord(ctx context.Context, rec streamreader.Record) error {
	slot := st.track.add(rec.ShardID, rec.SequenceNumber, rec.ApproximateCreation)
	if rec.EventName != string(streamtypes.OperationTypeInsert) {
		st.track.complete(slot) // commits are only ever inserted
		st.ignored(rec.EventName)
		return nil
	}
	item, err := itemOf(rec.NewImage)
	var c Commit
	if err == nil {
		c, err = store.DecodeItemAt(item, st.h.w.cfg.Clock())
	}
	it, ok := readItem(c, err)
	if !ok {
		st.ignored(rec.EventName) // an item that is not a commit
		st.track.complete(slot)
		return nil
	}
	st.h.mu.Lock()
	defer st.h.mu.Unlock()
	if it.unordered() {
		return st.deliver(ctx, it, slot)
	}
	return st.admit(ctx, it, slot, rec.ApproximateCreation)
}

// ignored reports a record passed over.
func (st *streamSource) ignored(eventName string) {
	for _, hk := range st.h.w.hooks.ignored {
		hk.OnIgnoredRecord(st.h.s.Name, eventName)
	}
}

// admit delivers it if it is its aggregate's next version, drops it if it
// was delivered, and holds it otherwise. at is its record's creation time,
// which places an item without a commit id of its own. Called under h.mu.
func (st *streamSource) admit(ctx context.Context, it seqItem, slot *recSlot, at time.Time) error {
	c := it.c
	agg := st.h.seq.aggs[c.AggregateID]
	pos := c.Position()
	if it.placeless() {
		pos.CommitID = commitIDPrefix(at)
	}
	switch {
	case agg == nil && pos.Compare(st.h.seq.floor) <= 0:
		// Handled before the position the source started from (a shard
		// read again from TRIM_HORIZON): not delivered again.
		st.track.complete(slot)
		return nil
	case agg != nil && c.Version < agg.next:
		if !st.h.catchingUp() && it.cause == nil { // while the index catches up, both read the same commits
			for _, hk := range st.h.w.hooks.duplicate {
				hk.OnDuplicate(st.h.s.Name, c)
			}
		}
		st.track.complete(slot)
		return nil
	case (agg != nil && c.Version == agg.next) || (agg == nil && c.Version == 0):
		if err := st.deliver(ctx, it, slot); err != nil {
			return err
		}
		return st.release(ctx, c.AggregateID)
	}
	held := st.held[c.AggregateID]
	i, _ := slices.BinarySearchFunc(held, c.Version, func(h heldCommit, v int64) int { return cmpVersion(h.c.Version, v) })
	st.held[c.AggregateID] = slices.Insert(held, i, heldCommit{seqItem: it, slot: slot, since: st.h.w.cfg.Clock()})
	st.holding.Add(1)
	return nil
}

// deliver hands c to the sequencer; a gap before it is repaired from the
// table. Called under h.mu.
func (st *streamSource) deliver(ctx context.Context, it seqItem, slot *recSlot) error {
	if slot != nil {
		st.track.attach(it.c, slot)
	}
	delivered, err := st.h.seq.offer(ctx, it, false, st.sink(ctx))
	if err == nil && !delivered && slot != nil {
		st.track.complete(slot)
	}
	return err
}

// release delivers held commits of an aggregate that are now next in line.
// Called under h.mu.
func (st *streamSource) release(ctx context.Context, id string) error {
	for {
		held := st.held[id]
		agg := st.h.seq.aggs[id]
		if len(held) == 0 || agg == nil {
			if len(held) == 0 {
				delete(st.held, id)
			}
			return nil
		}
		first := held[0]
		switch {
		case first.c.Version < agg.next:
			st.track.complete(first.slot)
		case first.c.Version == agg.next:
			if err := st.deliver(ctx, first.seqItem, first.slot); err != nil {
				return err
			}
		default:
			return nil
		}
		st.held[id] = held[1:]
		st.holding.Add(-1)
	}
}

// flushLoop delivers held commits whose predecessor did not turn up within
// GapWait, repairing the gap from the table, and lets the sequencer read
// the table again for gaps it did not fill (see Subscription.GapTimeout).
func (st *streamSource) flushLoop(ctx context.Context) {
	wait := st.h.s.Stream.GapWait
	t := time.NewTicker(max(wait/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := st.flush(ctx, st.h.w.cfg.Clock().Add(-wait))
		if err == nil {
			st.h.mu.Lock()
			err = st.h.seq.recheck(ctx, st.sink(ctx))
			st.h.mu.Unlock()
		}
		if err != nil && ctx.Err() == nil {
			st.h.log.Warn("repairing a gap in the stream failed; retrying", "subscription", st.h.s.Name, "err", err)
		}
	}
}

// flush delivers the held commits that have waited since before, oldest
// aggregate first.
func (st *streamSource) flush(ctx context.Context, before time.Time) error {
	st.h.mu.Lock()
	defer st.h.mu.Unlock()
	for id, held := range st.held {
		if len(held) == 0 || held[0].since.After(before) {
			continue
		}
		first := held[0]
		if err := st.deliver(ctx, first.seqItem, first.slot); err != nil {
			return err
		}
		st.held[id] = held[1:]
		st.holding.Add(-1)
		if err := st.release(ctx, id); err != nil {
			return err
		}
	}
	// Forget aggregates idle for longer than a restart would look back, so
	// that memory stays bounded; one seen again is checked against the
	// table.
	st.h.seq.forget(timeFloor(before.Add(-st.h.s.Stream.Margin)))
	return nil
}

// itemOf converts a stream record's image into a table item.
func itemOf(image map[string]streamtypes.AttributeValue) (map[string]ddbtypes.AttributeValue, error) {
	out := make(map[string]ddbtypes.AttributeValue, len(image))
	for k, v := range image {
		av, err := attributeOf(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

func attributeOf(v streamtypes.AttributeValue) (ddbtypes.AttributeValue, error) {
	switch v := v.(type) {
	case *streamtypes.AttributeValueMemberS:
		return &ddbtypes.AttributeValueMemberS{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberN:
		return &ddbtypes.AttributeValueMemberN{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberB:
		return &ddbtypes.AttributeValueMemberB{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberBOOL:
		return &ddbtypes.AttributeValueMemberBOOL{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberNULL:
		return &ddbtypes.AttributeValueMemberNULL{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberSS:
		return &ddbtypes.AttributeValueMemberSS{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberNS:
		return &ddbtypes.AttributeValueMemberNS{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberBS:
		return &ddbtypes.AttributeValueMemberBS{Value: v.Value}, nil
	case *streamtypes.AttributeValueMemberL:
		l := make([]ddbtypes.AttributeValue, len(v.Value))
		for i, e := range v.Value {
			av, err := attributeOf(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			l[i] = av
		}
		return &ddbtypes.AttributeValueMemberL{Value: l}, nil
	case *streamtypes.AttributeValueMemberM:
		m, err := itemOf(v.Value)
		if err != nil {
			return nil, err
		}
		return &ddbtypes.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unknown attribute value type %T", v)
}
