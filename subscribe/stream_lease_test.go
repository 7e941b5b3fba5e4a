package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
)

// shardWorker is one leased worker of a fakeEnv.
type shardWorker struct {
	w     *Worker
	owner string
	log   *leaseLog
	stop  func() error
}

// startLeased runs a worker named owner with leases on the env's
// subscription, its log lines prefixed with its name.
func (e *fakeEnv) startLeased(t *testing.T, owner string, opts LeaseOptions) *shardWorker {
	t.Helper()
	return e.startLeasedWith(t, owner, opts, e.cps, logWriter{t})
}

// startLeasedWith is startLeased with a checkpoint store and a log of the
// test's choosing.
func (e *fakeEnv) startLeasedWith(t *testing.T, owner string, opts LeaseOptions, cps checkpoint.Store, log io.Writer) *shardWorker {
	t.Helper()
	sw := &shardWorker{owner: owner, log: &leaseLog{}}
	cfg := Config{Reader: e.s, Checkpoints: cps, Streams: e.f, Tables: fakeTables{TableDescriber: e.client, f: e.f},
		Owner: owner, Leases: &opts, Hooks: []any{e.hooks, sw.log}, DrainTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(log, nil)).With("worker", owner)}
	sub := Subscription{Name: fakeSub, Handler: e.hooks.wrap(e.rec), CheckpointInterval: 100 * time.Millisecond, Source: SourceStream}
	configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: 300 * time.Millisecond})
	sub.Stream = StreamOptions{GapWait: 200 * time.Millisecond, Margin: 500 * time.Millisecond, IdleMax: 100 * time.Millisecond}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	sw.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	sw.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = sw.stop() })
	return sw
}

// whole returns the subscription's checkpoint without a unit, decoded.
func (e *fakeEnv) whole(t testing.TB) (checkpoint.Checkpoint, hybridCheckpoint) {
	t.Helper()
	cp, err := e.cps.Load(context.Background(), checkpointKey(fakeSub))
	if err != nil {
		return cp, hybridCheckpoint{}
	}
	h, _ := decodeHybrid(cp.Position)
	return cp, h
}

// waitSplit waits until the stream has taken over and the whole checkpoint
// is released, in an epoch after the given one; it returns the epoch.
func (e *fakeEnv) waitSplit(t *testing.T, after int64) int64 {
	t.Helper()
	var epoch int64
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		cp, h := e.whole(t)
		if h.Phase != phaseStream || h.Stream == nil || h.Stream.Epoch <= after || cp.Live(time.Now()) {
			return false
		}
		epoch = h.Stream.Epoch
		return true
	}, "the stream never took over in an epoch after %d: %v", after, lazy(func() string {
		cp, _ := e.whole(t)
		return cpString(cp)
	}))
	return epoch
}

// shardOwners returns the live owner of each shard unit's checkpoint of the
// epoch, by shard.
func (e *fakeEnv) shardOwners(t testing.TB, epoch int64) map[string]string {
	t.Helper()
	out := map[string]string{}
	now := time.Now()
	for cp, err := range e.cps.List(context.Background(), fakeSub) {
		if err != nil {
			t.Fatal(err)
		}
		id, ok := strings.CutPrefix(cp.Unit, shardUnitPrefix)
		if !ok || !cp.Live(now) {
			continue
		}
		if _, ok := shardPosition(cp, epoch); ok || cp.Position == "" {
			out[id] = cp.Owner
		}
	}
	return out
}

// runningShards returns the shard units each worker runs.
func runningShards(ws ...*shardWorker) map[string][]string {
	out := map[string][]string{}
	for _, sw := range ws {
		for _, u := range running(sw.w) {
			out[strings.TrimPrefix(u, shardUnitPrefix)] = append(out[strings.TrimPrefix(u, shardUnitPrefix)], sw.owner)
		}
	}
	return out
}

// finishedShard reports whether a shard unit's checkpoint of the epoch
// says its shard is read to its end and handled.
func (e *fakeEnv) finishedShard(t testing.TB, shard string, epoch int64) bool {
	t.Helper()
	cp, err := e.cps.Load(context.Background(), checkpoint.Key{Subscription: fakeSub, Unit: shardUnit(shard)})
	if err != nil {
		return false
	}
	s, ok := shardPosition(cp, epoch)
	return ok && slices.Contains(s.Finished, shard)
}

// TestStreamShardsAreLeasedAcrossWorkers: three workers share a stream
// subscription. The first to take it catches up through the index and
// hands over to the stream; then each of the stream's three shards is a
// unit, held by exactly one worker, one each. A shard splits while the
// worker reading it cannot (its GetRecords calls are throttled), and that
// worker dies: its children are not opened while the parent is unread,
// another worker takes the parent once its lease expires and reads it to
// its end, and only then are the children taken, by whichever worker.
// Nothing is lost and per-aggregate order holds; the dead worker's
// duplicates are bounded.
func TestStreamShardsAreLeasedAcrossWorkers(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2", "s3")
	e.f.put(e.arn, "s1", e.appendNext(t, 2, "a", "b")...) // history: read through the index
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	ws := []*shardWorker{e.startLeased(t, "w1", opts), e.startLeased(t, "w2", opts), e.startLeased(t, "w3", opts)}
	epoch := e.waitSplit(t, 0)

	ddbtest.Eventually(t, 10*time.Second, func() bool {
		run, owners := runningShards(ws...), e.shardOwners(t, epoch)
		if len(run) != 3 || len(owners) != 3 {
			return false
		}
		seen := map[string]bool{}
		for shard, by := range run {
			if len(by) != 1 || owners[shard] != by[0] || seen[by[0]] {
				return false
			}
			seen[by[0]] = true
		}
		return true
	}, "the three shards are not held one per worker: running %v, leases %v", lazy(func() string { return fmt.Sprint(runningShards(ws...)) }), lazy(func() string { return fmt.Sprint(e.shardOwners(t, epoch)) }))

	for range 3 {
		e.f.put(e.arn, "s1", e.appendNext(t, 1, "a", "b")...)
		e.f.put(e.arn, "s2", e.appendNext(t, 1, "c", "d")...)
		e.f.put(e.arn, "s3", e.appendNext(t, 1, "e")...)
	}
	e.waitDelivered(t, 10*time.Second)

	// s1's reader is throttled: its next records, and its split, wait.
	owner := runningShards(ws...)["s1"][0]
	e.f.setFault(func(op, shard string, n int) error {
		if op == "GetRecords" && shard == "s1" {
			return throttled()
		}
		return nil
	})
	e.f.put(e.arn, "s1", e.appendNext(t, 2, "a", "b")...)
	e.f.split(e.arn, "s1", "s1a", "s1b")
	for range 2 {
		e.f.put(e.arn, "s1a", e.appendNext(t, 1, "a")...)
		e.f.put(e.arn, "s1b", e.appendNext(t, 1, "b")...)
		e.f.put(e.arn, "s2", e.appendNext(t, 1, "c")...)
	}
	time.Sleep(3 * opts.BalanceEvery)
	if got := append(e.f.openedOn("s1a"), e.f.openedOn("s1b")...); len(got) > 0 {
		t.Fatalf("children of s1 opened while s1 is unread: %v", got)
	}
	var dead *shardWorker
	for _, sw := range ws {
		if sw.owner == owner {
			dead = sw
		}
	}
	dead.w.abandon()
	if err := dead.stop(); err != nil {
		t.Fatalf("%s: Run = %v", owner, err)
	}
	killed := time.Now()
	e.f.setFault(nil)

	e.waitDelivered(t, 20*time.Second)
	if !e.finishedShard(t, "s1", epoch) {
		t.Fatal("s1 is not recorded as finished")
	}
	survivors := slices.DeleteFunc(slices.Clone(ws), func(sw *shardWorker) bool { return sw == dead })
	ddbtest.Eventually(t, 5*time.Second, func() bool {
		run := runningShards(survivors...)
		_, stillS1 := run["s1"]
		return len(run["s1a"]) == 1 && len(run["s1b"]) == 1 && len(run["s2"]) == 1 && len(run["s3"]) == 1 && !stillS1
	}, "the survivors do not run s1a, s1b, s2 and s3 once each: %v", lazy(func() string { return fmt.Sprint(runningShards(survivors...)) }))
	t.Logf("s1's records were handled again %v after its reader died", time.Since(killed).Round(time.Millisecond))

	if v := e.f.lineageViolations(); len(v) > 0 {
		t.Fatalf("children read before their parents: %v", v)
	}
	for _, sw := range survivors {
		if err := sw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", sw.owner, err)
		}
	}
	e.rec.check(t, e.want)
	e.rec.mu.Lock()
	dups := e.rec.duplicates
	e.rec.mu.Unlock()
	// Only s1's unit was cut off: at most its records since its last save
	// come again (a, b: 3 versions each before the fault).
	if dups > 6 {
		t.Fatalf("%d duplicates; want at most the 6 commits of s1 handled before its reader died", dups)
	}
	if _, h := e.whole(t); h.Stream == nil || h.Stream.Epoch != epoch {
		t.Fatalf("the subscription left epoch %d: %+v", epoch, h)
	}
}

// TestStreamShardTrimmedRejoinsTheIndex: with three workers on a stream
// subscription, records of one shard are trimmed before its reader could
// read them. Its unit gives way: every shard unit stops, one worker catches
// up through the index from the oldest shard position, and the stream takes
// over again in a new epoch, whose shard units ignore the old epoch's
// checkpoints. Nothing is lost, in per-aggregate order.
func TestStreamShardTrimmedRejoinsTheIndex(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	ws := []*shardWorker{e.startLeased(t, "w1", opts), e.startLeased(t, "w2", opts), e.startLeased(t, "w3", opts)}
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 2 }, "the shards were not taken")
	e.f.put(e.arn, "s1", e.appendNext(t, 2, "a")...)
	e.f.put(e.arn, "s2", e.appendNext(t, 2, "b")...)
	e.waitDelivered(t, 10*time.Second)

	e.f.setFault(func(op, shard string, n int) error {
		if op == "GetRecords" && shard == "s2" {
			return throttled()
		}
		return nil
	})
	e.f.put(e.arn, "s2", e.appendNext(t, 3, "b", "c")...)
	e.f.trim(e.arn, "s2")
	e.f.setFault(nil)

	next := e.waitSplit(t, epoch)
	e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
	e.f.put(e.arn, "s2", e.appendNext(t, 1, "b", "c")...)
	e.waitDelivered(t, 20*time.Second)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, next)) == 2 }, "the shards were not taken in epoch %d", next)
	for _, sw := range ws {
		if err := sw.stop(); err != nil {
			t.Fatalf("%s: Run = %v", sw.owner, err)
		}
	}
	e.rec.check(t, e.want)
	if _, h := e.whole(t); h.Phase != phaseStream || h.Stream == nil || h.Stream.Epoch != next {
		t.Fatalf("after the catch-up the subscription left epoch %d again: %+v", next, h)
	}
	t.Logf("epoch %d, then %d; %d duplicates", epoch, next, e.rec.duplicates)
}

// TestMergeShards: a catch-up after the shard units starts from the oldest
// position that may hold a commit not handled.
func TestMergeShards(t *testing.T) {
	pos := func(shard string, s streamCheckpoint) checkpoint.Checkpoint {
		s.Epoch = 7
		b := fmt.Appendf(nil, `{"phase":"stream","stream":%s}`, mustJSON(t, s))
		return checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s", Unit: shardUnit(shard)}, Position: string(b)}
	}
	type sh = streamreader.Shard
	ws := streamCheckpoint{Epoch: 7, Resume: 1000, Aggregates: map[string]aggregateMark{"a": {Next: 3}}, Finished: []string{"q"}}
	cases := []struct {
		name   string
		units  []checkpoint.Checkpoint
		shards []sh
		want   int64
	}{
		{"no units, no listing: the hand-over", nil, nil, 1000},
		{"units reading", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000}), pos("y", streamCheckpoint{Resume: 4000})},
			[]sh{{ID: "x"}, {ID: "y"}}, 4000},
		{"no listing: shards the units do not account for", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000})}, nil, 1000},
		{"a root no unit started", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000})}, []sh{{ID: "x"}, {ID: "z"}}, 1000},
		{"a unit that saved nothing", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000}), {Key: checkpoint.Key{Unit: shardUnit("y")}}},
			[]sh{{ID: "x"}, {ID: "y"}}, 1000},
		{"a finished parent whose child started", []checkpoint.Checkpoint{
			pos("p", streamCheckpoint{Resume: 2000, Finished: []string{"p"}}), pos("c", streamCheckpoint{Resume: 6000, Parent: "p"})},
			[]sh{{ID: "p"}, {ID: "c", ParentID: "p"}}, 6000},
		{"a finished parent with a child not started", []checkpoint.Checkpoint{
			pos("p", streamCheckpoint{Resume: 2000, Finished: []string{"p"}}), pos("c1", streamCheckpoint{Resume: 6000, Parent: "p"})},
			[]sh{{ID: "p"}, {ID: "c1", ParentID: "p"}, {ID: "c2", ParentID: "p"}}, 2000},
		{"a finished parent, no listing", []checkpoint.Checkpoint{
			pos("p", streamCheckpoint{Resume: 2000, Finished: []string{"p"}}), pos("c", streamCheckpoint{Resume: 6000, Parent: "p"})}, nil, 1000},
		{"the child of a shard finished at the hand-over, not started", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000})},
			[]sh{{ID: "q"}, {ID: "k", ParentID: "q"}, {ID: "x"}}, 1000},
		{"another epoch's unit is not there", []checkpoint.Checkpoint{pos("x", streamCheckpoint{Resume: 5000}),
			{Key: checkpoint.Key{Unit: shardUnit("old")}, Position: `{"phase":"stream","stream":{"streamArn":"a","resume":10,"epoch":3}}`}},
			[]sh{{ID: "x"}}, 5000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := mergeShards(ws, c.units, c.shards)
			if got.Resume != c.want {
				t.Fatalf("Resume = %d, want %d", got.Resume, c.want)
			}
			if got.Aggregates["a"].Next != 3 {
				t.Fatalf("aggregate a: %+v, want next 3 from the hand-over", got.Aggregates["a"])
			}
		})
	}
	got := mergeShards(ws, []checkpoint.Checkpoint{
		pos("x", streamCheckpoint{Resume: 5000, Aggregates: map[string]aggregateMark{"a": {Next: 9}, "b": {Next: 2}}}),
		pos("y", streamCheckpoint{Resume: 5000, Aggregates: map[string]aggregateMark{"b": {Next: 4}}}),
	}, []sh{{ID: "x"}, {ID: "y"}})
	if got.Aggregates["a"].Next != 9 || got.Aggregates["b"].Next != 4 {
		t.Fatalf("aggregates %+v: want the furthest version of each", got.Aggregates)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestShardListingSharedBySubscriptions: one worker runs three stream
// subscriptions of one table with leases. Their lease managers share the
// stream's shard listing: DescribeStream is called about once a balance
// round, not once per subscription (DynamoDB allows 10 calls per second
// for the whole account).
func TestShardListingSharedBySubscriptions(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 100 * time.Millisecond}
	cfg := Config{Reader: e.s, Checkpoints: e.cps, Streams: e.f, Tables: fakeTables{TableDescriber: e.client, f: e.f},
		Owner: "w1", Leases: &opts, Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil))}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c"}
	for _, name := range names {
		sub := Subscription{Name: name, Handler: newRecorder(), CheckpointInterval: 100 * time.Millisecond, Source: SourceStream}
		configureStream(&sub, tuning{settle: 150 * time.Millisecond, reread: 300 * time.Millisecond})
		sub.Stream = StreamOptions{GapWait: 200 * time.Millisecond, Margin: 500 * time.Millisecond, IdleMax: 100 * time.Millisecond}
		if err := w.Register(sub); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		shards := 0
		for _, name := range names {
			for cp, err := range e.cps.List(context.Background(), name) {
				if err == nil && strings.HasPrefix(cp.Unit, shardUnitPrefix) && cp.Live(time.Now()) {
					shards++
				}
			}
		}
		return shards == 2*len(names)
	}, "the three subscriptions did not each lease their two shards")
	e.f.setFault(nil) // resets the call counts
	const rounds = 20
	time.Sleep(rounds * opts.BalanceEvery)
	e.f.mu.Lock()
	calls := e.f.counts["DescribeStream/"]
	e.f.mu.Unlock()
	t.Logf("%d DescribeStream calls in %d balance rounds of %d subscriptions", calls, rounds, len(names))
	if calls > rounds*3/4 {
		t.Fatalf("%d DescribeStream calls in %d rounds: the subscriptions do not share the listing", calls, rounds)
	}
}
