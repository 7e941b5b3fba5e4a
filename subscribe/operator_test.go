package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestParseStart(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, tc := range []struct {
		in   string
		want Start
		pos  store.Position // the position it means at now
	}{
		{"beginning", StartBeginning, store.Position{}},
		{"", StartBeginning, store.Position{}},
		{" Beginning ", StartBeginning, store.Position{}},
		{"now", StartNow, store.FromCommitID("20310102030405600")},
		{"NOW\n", StartNow, store.FromCommitID("20310102030405600")},
		{"20240101000000000", StartAtCommitID("20240101000000000"), store.FromCommitID("20240101000000000")},
		{"20240101000000000:acc-1", StartAtCommitID("20240101000000000:acc-1"), store.FromCommitID("20240101000000000:acc-1")},
		{" 20240101000000000:acc:2 ", StartAtCommitID("20240101000000000:acc:2"), store.FromCommitID("20240101000000000:acc:2")},
		{"2026-11-26T08:00:00Z", StartAtTime(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)), store.FromCommitID("20261126080000000")},
		{"2026-11-26T09:00:00.25+01:00", StartAtTime(time.Date(2026, 11, 26, 8, 0, 0, 250_000_000, time.UTC)), store.FromCommitID("20261126080000250")},
		// Commits have millisecond ids: a time within a millisecond starts
		// at the next one.
		{"2026-11-26T08:00:00.0005Z", StartAtTime(time.Date(2026, 11, 26, 8, 0, 0, 500_000, time.UTC)), store.FromCommitID("20261126080000001")},
	} {
		got, err := ParseStart(tc.in)
		if err != nil {
			t.Errorf("ParseStart(%q): %v", tc.in, err)
			continue
		}
		if got.String() != tc.want.String() {
			t.Errorf("ParseStart(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if p := got.position(now); p != tc.pos {
			t.Errorf("ParseStart(%q) starts at %+v, want %+v", tc.in, p, tc.pos)
		}
	}
	for _, in := range []string{
		"yesterday", "begin", "now!",
		"2024010100000000",        // 16 digits
		"20241301000000000",       // month 13
		"20240230000000000",       // 30 February
		"20240101000000000x",      // not a colon after the time
		"20240101000000000 :a",    // nor here
		"2026-11-26T08:00:00",     // no zone
		"2026-11-26",              // a date only
		"-20240101000000000:acc1", // not digits first
	} {
		if s, err := ParseStart(in); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseStart(%q) = %v, %v; want ErrInvalidConfig", in, s, err)
		}
	}
}

func TestCheckpointAtEncodesAnIndexPosition(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, tc := range []struct {
		start Start
		want  store.Position
	}{
		{StartBeginning, store.Position{}},
		{StartNow, store.FromCommitID("20310102030405600")},
		{StartAtCommitID("20240101000000000:b"), store.FromCommitID("20240101000000000:b")},
		{StartAtTime(time.Date(2024, 1, 1, 0, 0, 0, 7_000_000, time.UTC)), store.FromCommitID("20240101000000007")},
	} {
		pos := CheckpointAt(tc.start, now)
		ic, err := decodeIndexCheckpoint(pos)
		if err != nil {
			t.Fatalf("CheckpointAt(%v) = %q: %v", tc.start, pos, err)
		}
		if ic.After != tc.want || ic.Sweep != tc.want || len(ic.Pending) != 0 || len(ic.Aggregates) != 0 {
			t.Errorf("CheckpointAt(%v) = %+v, want after and sweep %+v", tc.start, ic, tc.want)
		}
		info, err := DescribeCheckpoint(pos, 0)
		if err != nil || info.Phase != "index" || info.After != tc.want {
			t.Errorf("DescribeCheckpoint(CheckpointAt(%v)) = %+v, %v", tc.start, info, err)
		}
	}
}

// collector is a handler that keeps every commit it is given, in order.
type collector struct {
	mu      sync.Mutex
	commits []string
}

func (c *collector) Handle(_ context.Context, cm Commit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits = append(c.commits, cm.Position().String())
	return nil
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.commits)
}

// TestCheckpointAtCommitIDResumesThere: an index subscription whose
// checkpoint an operator set with CheckpointAt(StartAtCommitID(x)) delivers
// x and every commit after it, and nothing before, even commits of the
// same millisecond that sort before x and the earlier versions of the
// aggregates it delivers. Its Start (the beginning) no longer matters.
// DescribeCheckpoint then reads the checkpoint the run saved.
func TestCheckpointAtCommitIDResumesThere(t *testing.T) {
	t0 := time.Date(2020, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	at := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
	setClock := func(t time.Time) { mu.Lock(); at = t; mu.Unlock() }
	s := newTable(t, store.Config{Clock: clock})
	ctx := context.Background()
	appendAt := func(ms int, agg string, v int64) store.Position {
		t.Helper()
		setClock(t0.Add(time.Duration(ms) * time.Millisecond))
		c, err := s.Append(ctx, store.Commit{AggregateID: agg, Version: v, Events: deposit(t)})
		if err != nil {
			t.Fatal(err)
		}
		return c.Position()
	}
	// ms 0: a#0 b#0; ms 1: a#1 b#1 c#0 (one commit id each); ms 2: a#2 b#2.
	appendAt(0, "a", 0)
	appendAt(0, "b", 0)
	a1, b1, c0 := appendAt(1, "a", 1), appendAt(1, "b", 1), appendAt(1, "c", 0)
	a2, b2 := appendAt(2, "a", 2), appendAt(2, "b", 2)

	mem := memcheckpoint.New()
	now := time.Now()
	cases := []struct {
		sub  string
		from string // the commit id the checkpoint is set at
		want []store.Position
	}{
		{"from-b", b1.CommitID, []store.Position{b1, c0, a2, b2}},
		{"from-ms", b1.CommitID[:17], []store.Position{a1, b1, c0, a2, b2}},
	}
	w, err := NewWorker(Config{Reader: s, Checkpoints: mem})
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]*collector{}
	for _, tc := range cases {
		if _, err := mem.Set(ctx, checkpoint.Key{Subscription: tc.sub}, CheckpointAt(StartAtCommitID(tc.from), now), false); err != nil {
			t.Fatal(err)
		}
		handlers[tc.sub] = &collector{}
		if err := w.Register(Subscription{Name: tc.sub, Handler: handlers[tc.sub], Index: fast, Start: StartBeginning, CheckpointInterval: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	allDelivered := func() bool {
		for _, tc := range cases {
			if len(handlers[tc.sub].got()) < len(tc.want) {
				return false
			}
		}
		return true
	}
	ddbtest.Eventually(t, 15*time.Second, allDelivered, "the subscriptions did not deliver their commits")
	// Give a few more polls and a sweep the chance to deliver what they
	// must not.
	time.Sleep(4 * fast.PollMax)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		var want []string
		for _, p := range tc.want {
			want = append(want, p.String())
		}
		got := handlers[tc.sub].got()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s, from %s: delivered %v, want %v", tc.sub, tc.from, got, want)
		}

		// The checkpoint the run saved: an index position past the last
		// commit, everything before it handled.
		cp, err := mem.Load(ctx, checkpoint.Key{Subscription: tc.sub})
		if err != nil {
			t.Fatal(err)
		}
		info, err := DescribeCheckpoint(cp.Position, 0)
		if err != nil {
			t.Fatalf("%s: DescribeCheckpoint(%q): %v", tc.sub, cp.Position, err)
		}
		when, _ := store.ParseCommitIDTime(info.After.CommitID)
		if info.Phase != "index" || info.After.Compare(b2) < 0 || info.Pending != 0 || !info.HandledBefore.Equal(when) || when.Before(t0.Add(2*time.Millisecond)) {
			t.Errorf("%s: DescribeCheckpoint(%q) = %+v; want the index phase, after %v, nothing pending, handled before the time of After", tc.sub, cp.Position, info, b2)
		}
		if info.StreamARN != "" || info.Shards != 0 {
			t.Errorf("%s: an index checkpoint described with stream fields: %+v", tc.sub, info)
		}
	}
}

func TestDescribeCheckpoint(t *testing.T) {
	t1 := time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	t0 := t1.Add(-time.Minute)
	p1 := store.Position{CommitID: store.FormatCommitID(t1.UnixMilli(), "b"), AggregateID: "b", Version: 4}
	p0 := store.Position{CommitID: store.FormatCommitID(t0.UnixMilli(), "a"), AggregateID: "a", Version: 2}
	marshal := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	index := indexCheckpoint{After: p1, Sweep: p0, Aggregates: map[string]aggregateMark{"a": {Next: 3}, "b": {Next: 5}}}
	withPending := index
	withPending.Pending = []store.Position{p0, p1}
	stream := streamCheckpoint{
		StreamARN: "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2030-01-01T00:00:00.000",
		Shards:    map[string]string{"shard-1": "100", "shard-2": "200"}, Finished: []string{"shard-0"},
		Resume: t1.UnixMilli(), Aggregates: map[string]aggregateMark{"a": {Next: 3}},
	}
	for _, tc := range []struct {
		name     string
		position string
		margin   time.Duration
		want     CheckpointInfo
	}{
		{"empty", "", 0, CheckpointInfo{}},
		{"index", marshal(index), 0, CheckpointInfo{Phase: "index", After: p1, HandledBefore: t1, Aggregates: 2}},
		// A late commit pending before After: not everything before
		// After's time is handled.
		{"index with pending", marshal(withPending), 0, CheckpointInfo{Phase: "index", After: p1, Pending: 2, HandledBefore: t0, Aggregates: 2}},
		{"index at the beginning", marshal(indexCheckpoint{}), 0, CheckpointInfo{Phase: "index"}},
		{"catch-up", marshal(hybridCheckpoint{Phase: phaseCatchUp, Index: &withPending}), 0,
			CheckpointInfo{Phase: "catchup", After: p1, Pending: 2, HandledBefore: t0, Aggregates: 2}},
		{"stream", marshal(hybridCheckpoint{Phase: phaseStream, Stream: &stream}), 0,
			CheckpointInfo{Phase: "stream", StreamARN: stream.StreamARN, Shards: 2, Finished: 1, HandledBefore: t1.Add(-10 * time.Second), Aggregates: 1}},
		{"stream with a margin", marshal(hybridCheckpoint{Phase: phaseStream, Stream: &stream}), time.Minute,
			CheckpointInfo{Phase: "stream", StreamARN: stream.StreamARN, Shards: 2, Finished: 1, HandledBefore: t0, Aggregates: 1}},
	} {
		got, err := DescribeCheckpoint(tc.position, tc.margin)
		if err != nil {
			t.Errorf("%s: DescribeCheckpoint: %v", tc.name, err)
			continue
		}
		if !got.HandledBefore.Equal(tc.want.HandledBefore) {
			t.Errorf("%s: HandledBefore %v, want %v", tc.name, got.HandledBefore, tc.want.HandledBefore)
		}
		got.HandledBefore, tc.want.HandledBefore = time.Time{}, time.Time{}
		if got != tc.want {
			t.Errorf("%s: DescribeCheckpoint = %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{
		"42", "null", "[]", `"x"`, "{", "{}", `{"foo":1}`, `{"phase":"catchup"}`, `{"phase":"stream","index":{}}`,
		`{"phase":"rewind","index":{}}`, "12345",
	} {
		if info, err := DescribeCheckpoint(bad, 0); err == nil {
			t.Errorf("DescribeCheckpoint(%q) = %+v, want an error", bad, info)
		}
	}
}

// TestDescribeHybridCheckpoints describes the checkpoints the stream source
// writes: while it catches up through the index, from a checkpoint an
// operator set with CheckpointAt, and once a real stream on DynamoDB Local
// has taken over.
func TestDescribeHybridCheckpoints(t *testing.T) {
	w, err := NewWorker(Config{Reader: memNopReader{}, Checkpoints: memcheckpoint.New()})
	if err != nil {
		t.Fatal(err)
	}
	from := "20240101000000000:b"
	h, err := newHybridSource(w, Subscription{Name: "h", Source: SourceStream}.withDefaults(), CheckpointAt(StartAtCommitID(from), time.Now()), hybridMode{})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := h.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	info, err := DescribeCheckpoint(pos, 0)
	want, _ := store.ParseCommitIDTime(from)
	if err != nil || info.Phase != "catchup" || info.After != store.FromCommitID(from) || !info.HandledBefore.Equal(want) {
		t.Fatalf("DescribeCheckpoint(%q) = %+v, %v; want the catch-up phase from %s", pos, info, err, from)
	}

	// A stream subscription on DynamoDB Local, after the stream took over
	// and delivered a commit.
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	appendN(t, s, []string{"a", "b"}, 2)
	before := time.Now()
	rec, cps, stop := streamWorker(t, s, streamsClient(t))
	ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps, "stream") == phaseStream }, "the stream never took over")
	// A commit read from the stream gives its shard a position.
	if _, err := s.Append(context.Background(), store.Commit{AggregateID: "a", Version: 2, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 15*time.Second, func() bool { return rec.delivered()["a"] == 3 }, "a#2 was not delivered")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cp, err := cps.Load(context.Background(), checkpointKey("stream"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ddbtest.Client(t).DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(s.Config().TableName)})
	if err != nil {
		t.Fatal(err)
	}
	const margin = 10 * time.Second
	info, err = DescribeCheckpoint(cp.Position, margin)
	if err != nil {
		t.Fatal(err)
	}
	if info.Phase != "stream" || info.StreamARN != aws.ToString(out.Table.LatestStreamArn) || info.Shards < 1 {
		t.Fatalf("DescribeCheckpoint(%q) = %+v; want the stream phase on %s with a shard", cp.Position, info, aws.ToString(out.Table.LatestStreamArn))
	}
	// Resume is the time the stream was opened, or later.
	if info.HandledBefore.Before(before.Add(-margin-2*time.Second)) || info.HandledBefore.After(time.Now().Add(-margin)) {
		t.Fatalf("HandledBefore %v: want between the start less the margin and now less the margin", info.HandledBefore)
	}
}
