package subscribe

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// callCounter counts a worker's GetRecords calls.
type callCounter struct {
	StreamsAPI
	getRecords atomic.Int64
}

func (c *callCounter) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	c.getRecords.Add(1)
	return c.StreamsAPI.GetRecords(ctx, in, optFns...)
}

// logLines passes a worker's log to the test and keeps its lines.
type logLines struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	l.t.Log(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	return len(p), nil
}

// count returns how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// TestStreamIdleTakeOverThenWrites runs on DynamoDB Local's stream: two
// workers with leases (their checkpoints in a DynamoDB table) share a
// stream subscription of an empty table. The stream takes over while
// nothing is written, so the shard unit starts with no sequence number,
// from TRIM_HORIZON, and its holder polls an empty shard while other
// tables are written (the checkpoints'). The first commits, written after
// that, come from the stream: the subscription does not leave it for the
// index (see docs/stream.md).
func TestStreamIdleTakeOverThenWrites(t *testing.T) {
	client := ddbtest.Client(t)
	s := newTableWith(t, store.Config{}, store.TableOptions{})
	cpCfg := dynamocheckpoint.Config{TableName: s.Config().TableName + "-cp"}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	cps, err := dynamocheckpoint.New(client, cpCfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	logs := &logLines{t: t}
	streams := &callCounter{StreamsAPI: streamsClient(t)}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	var stops []func() error
	for _, owner := range []string{"w1", "w2"} {
		cfg := Config{Reader: s, Checkpoints: cps, Streams: streams, Tables: client, Owner: owner, Leases: &opts,
			DrainTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil)).With("worker", owner)}
		sub := Subscription{Name: "idle", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
		configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: 300 * time.Millisecond})
		stops = append(stops, startWorker(t, cfg, sub))
	}
	whole := func() (checkpoint.Checkpoint, hybridCheckpoint) {
		cp, err := cps.Load(t.Context(), checkpoint.Key{Subscription: "idle"})
		if err != nil {
			return cp, hybridCheckpoint{}
		}
		var h hybridCheckpoint
		_ = json.Unmarshal([]byte(cp.Position), &h)
		return cp, h
	}
	var epoch int64
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		cp, h := whole()
		if h.Phase != phaseStream || h.Stream == nil || cp.Live(time.Now()) {
			return false
		}
		epoch = h.Stream.Epoch
		return true
	}, "the stream never took over")
	// The shard unit is held, and its reader has polled the empty shard.
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		for cp, err := range cps.List(t.Context(), "idle") {
			if err == nil && strings.HasPrefix(cp.Unit, shardUnitPrefix) && cp.Live(time.Now()) {
				return true
			}
		}
		return false
	}, "no shard unit held")
	polled := streams.getRecords.Load()
	ddbtest.Eventually(t, 10*time.Second, func() bool { return streams.getRecords.Load() >= polled+5 }, "the shard is not polled")
	// Another table is written meanwhile, as a daemon's checkpoints are.
	if _, err := cps.Claim(t.Context(), checkpoint.Key{Subscription: "other"}, "someone"); err != nil {
		t.Fatal(err)
	}
	want := appendN(t, s, []string{"a", "b", "c"}, 3)
	ddbtest.Eventually(t, 15*time.Second, func() bool { return covers(rec.delivered(), want) }, "not all delivered: %v", lazy(func() string {
		_, h := whole()
		return h.Phase
	}))
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	rec.check(t, want)
	if _, h := whole(); h.Phase != phaseStream || h.Stream == nil || h.Stream.Epoch != epoch {
		t.Errorf("the subscription left the stream: phase %s, epoch %v, want phase stream in epoch %d", h.Phase, h.Stream, epoch)
	}
	if n := logs.count("leaves the stream"); n > 0 {
		t.Errorf("the subscription left the stream for the index %d times", n)
	}
}

// TestStreamIdleTakeOverThenWritesFake is TestStreamIdleTakeOverThenWrites
// through the fake of the Streams API, as DynamoDB documents it and as
// DynamoDB Local behaves: two leased workers share a stream subscription;
// the stream takes over while nothing is written; the shard's holder stops
// while the shard is still empty, and the other takes it, with no sequence
// number either. The commits written then come from the stream: no
// fall-back to the index.
func TestStreamIdleTakeOverThenWritesFake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		local bool
	}{{"DynamoDB", false}, {"DynamoDB Local", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, "s1")
			e.f.local = tc.local
			logs := &logLines{t: t}
			opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
			ws := map[string]*shardWorker{}
			for _, owner := range []string{"w1", "w2"} {
				ws[owner] = e.startLeasedWith(t, owner, opts, e.cps, logs)
			}
			epoch := e.waitSplit(t, 0)
			held := func() string {
				var live []*shardWorker
				for _, sw := range ws {
					live = append(live, sw)
				}
				run := runningShards(live...)["s1"]
				if owner := e.shardOwners(t, epoch)["s1"]; len(run) == 1 && run[0] == owner {
					return owner
				}
				return ""
			}
			ddbtest.Eventually(t, 10*time.Second, func() bool { return held() != "" }, "the shard unit is not held")
			first := held()
			polled := func() {
				t.Helper()
				reads := e.f.reads(e.arn, "s1")
				ddbtest.Eventually(t, 10*time.Second, func() bool { return e.f.reads(e.arn, "s1") >= reads+3 }, "the shard is not polled")
			}
			polled()
			if err := ws[first].stop(); err != nil {
				t.Fatalf("%s: Run = %v", first, err)
			}
			delete(ws, first)
			ddbtest.Eventually(t, 10*time.Second, func() bool { return held() != "" && held() != first }, "the shard unit was not taken over")
			polled()
			e.f.put(e.arn, "s1", e.appendNext(t, 3, "a", "b")...)
			e.waitDelivered(t, 10*time.Second)
			for _, sw := range ws {
				if err := sw.stop(); err != nil {
					t.Fatalf("%s: Run = %v", sw.owner, err)
				}
			}
			e.rec.check(t, e.want)
			if _, h := e.whole(t); h.Phase != phaseStream || h.Stream == nil || h.Stream.Epoch != epoch {
				t.Errorf("the subscription left the stream: %+v, want phase stream in epoch %d", h, epoch)
			}
			if n := logs.count("leaves the stream"); n > 0 {
				t.Errorf("the subscription left the stream for the index %d times", n)
			}
		})
	}
}

// TestRejoinWaitsOnlyForHeldShardUnits: a shard whose records were trimmed
// sends the subscription back to the index. Its unit releases its lease as
// it stops, so the worker that takes unit "" to catch up finds no shard unit
// held at its first listing and starts at once: it neither lists again a
// balance round later nor waits for a lease to expire (default Duration,
// 20 s).
func TestRejoinWaitsOnlyForHeldShardUnits(t *testing.T) {
	e := newFakeEnv(t, "s1")
	logs := &logLines{t: t}
	opts := LeaseOptions{BalanceEvery: time.Second}
	ws := []*shardWorker{e.startLeasedWith(t, "w1", opts, e.cps, logs), e.startLeasedWith(t, "w2", opts, e.cps, logs)}
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 1 }, "the shard was not taken")
	e.f.put(e.arn, "s1", e.appendNext(t, 2, "a")...)
	e.waitDelivered(t, 10*time.Second)

	e.f.setFault(func(op, shard string, n int) error {
		if op == "GetRecords" {
			return throttled()
		}
		return nil
	})
	e.f.put(e.arn, "s1", e.appendNext(t, 3, "a", "b")...)
	e.f.trim(e.arn, "s1")
	e.f.setFault(nil)
	const done = "the stream's shard units have stopped"
	ddbtest.Eventually(t, 30*time.Second, func() bool { return logs.count(done) > 0 }, "no catch-up after the trim")
	if n := logs.count(done); n != 1 {
		t.Fatalf("%d catch-ups logged, want 1", n)
	}
	if n := logs.count("listings=1"); n != 1 {
		t.Errorf("the catch-up started after more than one listing of the shard units: %d lines with listings=1", n)
	}
	if n := logs.count("waiting for the stream's shard units to stop"); n != 0 {
		t.Errorf("the catch-up waited for shard units already released (%d times)", n)
	}
	e.waitSplit(t, epoch)
	e.waitDelivered(t, 20*time.Second)
	for _, sw := range ws {
		if err := sw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", sw.owner, err)
		}
	}
	e.rec.check(t, e.want)
}

// TestEpochShardUnits: the shard units a rejoin waits for are those of the
// epoch (or with no position yet) whose lease is live: not one released,
// expired, or of an earlier epoch.
func TestEpochShardUnits(t *testing.T) {
	now := time.Now()
	at := func(epoch int64) string {
		return mustJSON(t, hybridCheckpoint{Phase: phaseStream, Stream: &streamCheckpoint{Epoch: epoch, Resume: 1}})
	}
	unit := func(name, owner string, expires time.Time, pos string) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s", Unit: name}, Owner: owner, Expires: expires, Position: pos}
	}
	all := []checkpoint.Checkpoint{
		unit("", "w1", now.Add(time.Second), ""),
		unit("member:w1", "w1", now.Add(time.Second), ""),
		unit("shard-live", "w1", now.Add(time.Second), at(2)),
		unit("shard-new", "w2", now.Add(time.Second), ""),
		unit("shard-released", "", time.Time{}, at(2)),
		unit("shard-expired", "w3", now.Add(-time.Millisecond), at(2)),
		unit("shard-old", "w1", now.Add(time.Second), at(1)),
	}
	units, held := epochShardUnits(all, 2, now)
	var names []string
	for _, cp := range units {
		names = append(names, cp.Unit)
	}
	if want := []string{"shard-live", "shard-new", "shard-released", "shard-expired"}; !slices.Equal(names, want) {
		t.Errorf("units %v, want %v", names, want)
	}
	if want := []string{"shard-live", "shard-new"}; !slices.Equal(held, want) {
		t.Errorf("held %v, want %v", held, want)
	}
}
