package subscribe

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
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

// phaseOf returns the phase a stream subscription's checkpoint records.
func phaseOf(t testing.TB, cps *memcheckpoint.Mem, sub string) string {
	t.Helper()
	cp, err := cps.Load(context.Background(), checkpointKey(sub))
	if err != nil {
		return ""
	}
	var h hybridCheckpoint
	if json.Unmarshal([]byte(cp.Position), &h) != nil {
		return ""
	}
	return h.Phase
}

// streamWorker starts a stream subscription on s with a recorder.
func streamWorker(t *testing.T, s *store.Store, streams StreamsAPI, hooks ...any) (*recorder, *memcheckpoint.Mem, func() error) {
	t.Helper()
	rec := newRecorder()
	cps := memcheckpoint.New()
	cfg := Config{Reader: s, Checkpoints: cps, Streams: streams, Tables: ddbtest.Client(t), Hooks: hooks}
	sub := Subscription{Name: "stream", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
	configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: time.Second})
	return rec, cps, startWorker(t, cfg, sub)
}

// TestStreamTakesOverFromTheIndex: a first start catches up through the
// index, then the stream takes over, and later commits come from it.
func TestStreamTakesOverFromTheIndex(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	want := appendN(t, s, []string{"a", "b", "c"}, 5) // history: from the index
	ign := &ignoredCounter{}
	rec, cps, stop := streamWorker(t, s, streamsClient(t), nil, ign)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	// A record that is no new commit (a MODIFY) is passed over, counted.
	if _, err := ddbtest.Client(t).UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(s.Config().TableName),
		Key: map[string]ddbtypes.AttributeValue{
			store.AttrAggregateID: &ddbtypes.AttributeValueMemberS{Value: "a"},
			store.AttrVersion:     &ddbtypes.AttributeValueMemberN{Value: "0"},
		},
		UpdateExpression:          aws.String("SET note = :n"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":n": &ddbtypes.AttributeValueMemberS{Value: "touched"}},
	}); err != nil {
		t.Fatal(err)
	}
	for id, n := range appendN(t, s, []string{"d", "e"}, 4) {
		want[id] = n
	}
	for v := int64(5); v < 8; v++ { // and the history's aggregates go on
		if _, err := s.Append(context.Background(), store.Commit{AggregateID: "a", Version: v, Events: deposit(t)}); err != nil {
			t.Fatal(err)
		}
	}
	want["a"] = 8
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "not all delivered: %v", rec.delivered())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates across the hand-over", rec.duplicates)
	}
	if ign.n.Load() != 1 {
		t.Fatalf("%d records ignored, want the one MODIFY", ign.n.Load())
	}
}

type ignoredCounter struct{ n atomic.Int64 }

func (c *ignoredCounter) OnIgnoredRecord(string, string) { c.n.Add(1) }

// TestStreamRecoversWhenTheStreamIsReplaced disables the table's stream,
// writes commits that no stream holds, and enables a new stream (a new
// ARN): the commits written in between are read from the index, and the
// new stream takes over.
func TestStreamRecoversWhenTheStreamIsReplaced(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	client := ddbtest.Client(t)
	rec, cps, stop := streamWorker(t, s, streamsClient(t))
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	want := appendN(t, s, []string{"a", "b"}, 3)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "first commits not delivered")

	setStream := func(on bool) {
		t.Helper()
		spec := &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(on)}
		if on {
			spec.StreamViewType = ddbtypes.StreamViewTypeNewImage
		}
		if _, err := client.UpdateTable(context.Background(), &dynamodb.UpdateTableInput{TableName: aws.String(s.Config().TableName), StreamSpecification: spec}); err != nil {
			t.Fatal(err)
		}
	}
	setStream(false)
	for v := int64(3); v < 6; v++ { // in no stream
		for _, id := range []string{"a", "b"} {
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: v, Events: deposit(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	setStream(true)
	for v := int64(6); v < 8; v++ {
		for _, id := range []string{"a", "b", "c"} {
			nv := v
			if id == "c" {
				nv = v - 6
			}
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: nv, Events: deposit(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want = map[string]int64{"a": 8, "b": 8, "c": 2}
	ddbtest.Eventually(t, 30*time.Second, func() bool { return covers(rec.delivered(), want) }, "commits written while the stream was off were lost: %v", rec.delivered())
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the new stream never took over")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)
}

// trimmingStreams loses records, as a stream does past its 24 hours: once
// armed, the next GetRecords fails with TrimmedDataAccessException and
// every record that was in the stream until then is gone.
type trimmingStreams struct {
	StreamsAPI
	mu    sync.Mutex
	armed bool
	lost  map[string]bool // sequence numbers gone
	cut   bool
}

func (f *trimmingStreams) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = true
}

func (f *trimmingStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	armed := f.armed
	f.armed = false
	f.mu.Unlock()
	if armed {
		// Everything up to now is trimmed: remember it as lost.
		out, err := f.StreamsAPI.GetRecords(ctx, in, optFns...)
		if err != nil {
			return out, err
		}
		f.mu.Lock()
		f.lost = map[string]bool{}
		for _, r := range out.Records {
			f.lost[aws.ToString(r.Dynamodb.SequenceNumber)] = true
		}
		f.cut = true
		f.mu.Unlock()
		return nil, &streamtypes.TrimmedDataAccessException{Message: aws.String("records trimmed")}
	}
	out, err := f.StreamsAPI.GetRecords(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := out.Records[:0]
	for _, r := range out.Records {
		if !f.lost[aws.ToString(r.Dynamodb.SequenceNumber)] {
			kept = append(kept, r)
		}
	}
	out.Records = kept
	return out, nil
}

// TestStreamRecoversTrimmedRecords: records the stream lost (trimmed before
// they were read) are read from the index, never skipped.
func TestStreamRecoversTrimmedRecords(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	trim := &trimmingStreams{StreamsAPI: streamsClient(t)}
	cnt := &counters{}
	rec, cps, stop := streamWorker(t, s, trim, cnt)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	want := appendN(t, s, []string{"a"}, 2)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "first commits not delivered")
	trim.arm()
	for id, n := range appendN(t, s, []string{"b", "c"}, 3) {
		want[id] = n
	}
	ddbtest.Eventually(t, 5*time.Second, func() bool {
		trim.mu.Lock()
		defer trim.mu.Unlock()
		return trim.cut
	}, "the trim was never injected")
	for v := int64(2); v < 4; v++ {
		if _, err := s.Append(context.Background(), store.Commit{AggregateID: "a", Version: v, Events: deposit(t)}); err != nil {
			t.Fatal(err)
		}
	}
	want["a"] = 4
	ddbtest.Eventually(t, 30*time.Second, func() bool { return covers(rec.delivered(), want) }, "trimmed records were lost: %v", rec.delivered())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, want)
}

// TestStreamTakesOverWhileWritesFlow starts a stream subscription while a
// writer appends steadily: no poll of the catch-up is ever empty, yet the
// stream must take over once the index has read the backlog.
func TestStreamTakesOverWhileWritesFlow(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	ctx, stopWriting := context.WithCancel(context.Background())
	var mu sync.Mutex
	written := map[string]int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			id := []string{"a", "b", "c"}[i%3]
			mu.Lock()
			v := written[id]
			mu.Unlock()
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: v, Events: deposit(t)}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			written[id] = v + 1
			mu.Unlock()
			time.Sleep(3 * time.Millisecond) // a commit every few ms: every poll finds some
		}
	}()
	time.Sleep(500 * time.Millisecond) // a backlog, and writes flowing
	rec, cps := newRecorder(), memcheckpoint.New()
	sub := Subscription{Name: "stream", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
	configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: time.Second})
	// Polls far apart: every one finds commits, none is ever empty.
	sub.Index.PollMin, sub.Index.PollMax = 200*time.Millisecond, 400*time.Millisecond
	stop := startWorker(t, Config{Reader: s, Checkpoints: cps, Streams: streamsClient(t), Tables: ddbtest.Client(t)}, sub)
	ddbtest.Eventually(t, 20*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over while writes flowed")
	time.Sleep(300 * time.Millisecond)
	stopWriting()
	<-done
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), written) }, "not all delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.check(t, written)
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates", rec.duplicates)
	}
}

// TestIdleStreamCheckpointStaysPut: with nothing written, the stream's
// checkpoint does not change, so it is not saved over and over.
func TestIdleStreamCheckpointStaysPut(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	appendN(t, s, []string{"a"}, 2)
	saves := &saveCounter{}
	rec, cps, stop := streamWorker(t, s, streamsClient(t), saves)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	ddbtest.Eventually(t, 5*time.Second, func() bool { return rec.delivered()["a"] == 2 }, "not delivered")
	time.Sleep(300 * time.Millisecond)
	before := saves.n.Load()
	time.Sleep(time.Second) // ten checkpoint intervals, idle
	if n := saves.n.Load() - before; n > 1 {
		t.Fatalf("%d checkpoint saves while idle", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

type saveCounter struct{ n atomic.Int64 }

func (c *saveCounter) OnCheckpoint(string, error) { c.n.Add(1) }

// TestAutoCatchesUpThroughTheIndexAtEveryStart: a SourceAuto subscription
// resumes a stream checkpoint through the index (its backlog meanwhile),
// then the stream takes over again; nothing is lost or delivered twice.
func TestAutoCatchesUpThroughTheIndexAtEveryStart(t *testing.T) {
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	rec, cps := newRecorder(), memcheckpoint.New()
	run := func() func() error {
		sub := Subscription{Name: "stream", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
		configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: time.Second})
		sub.Source = SourceAuto
		return startWorker(t, Config{Reader: s, Checkpoints: cps, Streams: streamsClient(t), Tables: ddbtest.Client(t)}, sub)
	}
	stop := run()
	want := appendN(t, s, []string{"a", "b"}, 3)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "first commits not delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for v := int64(3); v < 6; v++ { // a backlog while no worker runs
		for _, id := range []string{"a", "b"} {
			if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: v, Events: deposit(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want = map[string]int64{"a": 6, "b": 6}
	phases := map[string]bool{}
	stop = run()
	ddbtest.Eventually(t, 15*time.Second, func() bool {
		phases[phaseOf(t, cps, "stream")] = true
		return covers(rec.delivered(), want) && phaseOf(t, cps, "stream") == phaseStream
	}, "the backlog was not delivered, or the stream did not take over again")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !phases[phaseCatchUp] {
		t.Fatal("the restart never caught up through the index")
	}
	rec.check(t, want)
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates across the restart", rec.duplicates)
	}
}
