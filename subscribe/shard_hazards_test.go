package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/dynamodb-event-store/eventstore/subscribe/internal/streamreader"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

// racyCps runs onTake after each successful Take.
type racyCps struct {
	*memcheckpoint.Mem
	onTake func(key checkpoint.Key)
}

func (c *racyCps) Take(ctx context.Context, key checkpoint.Key, owner string, seen checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	cp, err := c.Mem.Take(ctx, key, owner, seen, d)
	if err == nil && c.onTake != nil {
		c.onTake(key)
	}
	return cp, err
}

type logCapture struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (w *logCapture) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *logCapture) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestShardUnitTakenAcrossARejoinReadsNothing: a fresh shard unit taken
// from a listing made before the whole checkpoint moved to phase rejoin
// finds, as it starts, that the hand-over changed: it stops, reading
// nothing (not the subscription's history from its Start), and leaves the
// catch-up to unit "".
func TestShardUnitTakenAcrossARejoinReadsNothing(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	e.f.put(e.arn, "s1", e.appendNext(t, 3, "a", "b")...) // history: read through the index
	cps := &racyCps{Mem: e.cps}
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	w1 := e.startLeasedWith(t, "w1", opts, cps, lc)
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 2 }, "the shards were not taken")
	e.waitDelivered(t, 10*time.Second)
	if err := w1.stop(); err != nil {
		t.Fatal(err)
	}
	e.rec.mu.Lock()
	before := e.rec.duplicates
	e.rec.mu.Unlock()
	t.Logf("duplicates before the race: %d", before)

	// Make s2 a fresh unit (as a child of a finished parent would be).
	ctx := context.Background()
	key := checkpoint.Key{Subscription: fakeSub, Unit: shardUnit("s2")}
	cp, err := e.cps.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cps.Delete(ctx, cp); err != nil {
		t.Fatal(err)
	}
	// The race: right after w2 takes s2 (having listed phase stream), another
	// worker writes phase rejoin (as startRejoin does).
	var fired atomic.Bool
	cps.onTake = func(k checkpoint.Key) {
		if k.Unit != shardUnit("s2") || !fired.CompareAndSwap(false, true) {
			return
		}
		whole, err := e.cps.Load(ctx, checkpointKey(fakeSub))
		if err != nil {
			t.Error(err)
			return
		}
		h, _ := decodeHybrid(whole.Position)
		b, _ := json.Marshal(hybridCheckpoint{Phase: phaseRejoin, Stream: h.Stream})
		if _, err := e.cps.Set(ctx, checkpointKey(fakeSub), string(b), true); err != nil {
			t.Error(err)
		}
	}
	opts2 := opts
	opts2.BalanceEvery = 2 * time.Second // the next balance, which stops the unit, comes late
	w2 := e.startLeasedWith(t, "w2", opts2, cps, lc)
	time.Sleep(1500 * time.Millisecond)
	e.rec.mu.Lock()
	after := e.rec.duplicates
	e.rec.mu.Unlock()
	if err := w2.stop(); err != nil {
		t.Logf("w2: %v", err)
	}
	scp, _ := e.cps.Load(ctx, key)
	t.Logf("duplicates after: %d; shard-s2 checkpoint now: %s", after, scp.Position)
	logs := lc.String()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "unit=shard-s2") && (strings.Contains(l, "catching up") || strings.Contains(l, "hand-over changed")) {
			t.Logf("LOG: %s", l)
		}
	}
	if !fired.Load() {
		t.Fatal("the rejoin was never written: the race did not happen")
	}
	if !strings.Contains(logs, "hand-over changed") {
		t.Fatal("the shard unit did not see that the hand-over changed")
	}
	if after != before {
		t.Fatalf("%d duplicates: the shard unit read the history again", after-before)
	}
}

// posOf returns a shard unit checkpoint of epoch 1.
func posOf(t testing.TB, shard string, s streamCheckpoint) checkpoint.Checkpoint {
	s.Epoch = 1
	b, _ := json.Marshal(hybridCheckpoint{Phase: phaseStream, Stream: &s})
	return checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: fakeSub, Unit: shardUnit(shard)}, Position: string(b), Lease: 1}
}

// TestUnlistedShardWithRecordsOwedRejoins: a parent shard with a checkpoint
// of the epoch, not finished, that the stream no longer lists (trimmed
// after 24 h, e.g. every worker was down): its records are gone, so the
// subscription catches up through the index, as a reader of it would be
// told; its child is not made a unit meanwhile.
func TestUnlistedShardWithRecordsOwedRejoins(t *testing.T) {
	e := newFakeEnv(t, "P")
	e.f.split(e.arn, "P", "C")
	e.f.mu.Lock()
	st := e.f.streams[e.arn]
	st.shards = st.shards[1:] // P is no longer listed
	e.f.mu.Unlock()

	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	cfg := Config{Reader: e.s, Checkpoints: e.cps, Streams: e.f, Tables: fakeTables{TableDescriber: e.client, f: e.f},
		Owner: "w", Leases: &opts, Logger: slog.New(slog.NewTextHandler(lc, nil))}
	sub := Subscription{Name: fakeSub, Handler: e.hooks.wrap(e.rec), Source: SourceStream}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	r := w.byName[fakeSub]
	m := newLeaseManager(r)
	ws := streamCheckpoint{StreamARN: e.arn, Epoch: 1, Resume: 1000}
	b, _ := json.Marshal(hybridCheckpoint{Phase: phaseStream, Stream: &ws})
	all := map[string]checkpoint.Checkpoint{
		"":             {Key: checkpoint.Key{Subscription: fakeSub}, Position: string(b), Lease: 1},
		shardUnit("P"): posOf(t, "P", streamCheckpoint{StreamARN: e.arn, Shards: map[string]string{"P": "000000000000000000001"}, Resume: 2000}),
	}
	specs, ok := m.streamSpecs(context.Background(), all, time.Now())
	t.Logf("specs %+v ok %v", specs, ok)
	if len(specs) > 0 || !strings.Contains(lc.String(), "no longer in the stream") {
		t.Errorf("P's records are gone and no catch-up was asked for (units %+v)", specs)
	}
}

// TestMergeShardsWithASiblingNotStarted: P split into C1 and C2; C1
// started and saved, C2 was not taken yet when the rejoin came. The
// catch-up starts no later than P's end, where C2's records begin.
func TestMergeShardsWithASiblingNotStarted(t *testing.T) {
	ws := streamCheckpoint{Epoch: 1, Resume: 1000}
	units := []checkpoint.Checkpoint{
		posOf(t, "P", streamCheckpoint{Resume: 2000, Finished: []string{"P"}}),
		posOf(t, "C1", streamCheckpoint{Resume: 9000, Parent: "P"}),
	}
	got := mergeShards(ws, units, []streamreader.Shard{{ID: "P"}, {ID: "C1", ParentID: "P"}, {ID: "C2", ParentID: "P"}})
	t.Logf("catch-up Resume %d (P ended at 2000)", got.Resume)
	if got.Resume > 2000 {
		t.Errorf("Resume %d passes C2's records after P's end (2000)", got.Resume)
	}
}

// TestUnlistedHandOverShardRejoins: the hand-over read shard P (ws.Shards
// names it), no unit of P saved anything, and P is no longer listed: P's
// records after the hand-over's position are gone, so the subscription
// catches up through the index, rather than start P's child from the
// hand-over (a reader of P would get a TrimmedError).
func TestUnlistedHandOverShardRejoins(t *testing.T) {
	e := newFakeEnv(t, "P")
	e.f.split(e.arn, "P", "C")
	e.f.mu.Lock()
	st := e.f.streams[e.arn]
	st.shards = st.shards[1:]
	e.f.mu.Unlock()
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	cfg := Config{Reader: e.s, Checkpoints: e.cps, Streams: e.f, Tables: fakeTables{TableDescriber: e.client, f: e.f},
		Owner: "w", Leases: &opts, Logger: slog.New(slog.NewTextHandler(lc, nil))}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: fakeSub, Handler: e.hooks.wrap(e.rec), Source: SourceStream}); err != nil {
		t.Fatal(err)
	}
	m := newLeaseManager(w.byName[fakeSub])
	ws := streamCheckpoint{StreamARN: e.arn, Epoch: 1, Resume: 1000, Shards: map[string]string{"P": "000000000000000000001"}}
	b, _ := json.Marshal(hybridCheckpoint{Phase: phaseStream, Stream: &ws})
	all := map[string]checkpoint.Checkpoint{"": {Key: checkpoint.Key{Subscription: fakeSub}, Position: string(b), Lease: 1}}
	specs, ok := m.streamSpecs(context.Background(), all, time.Now())
	t.Logf("specs %+v ok %v", specs, ok)
	if len(specs) > 0 || !strings.Contains(lc.String(), "no longer in the stream") {
		t.Errorf("C starts from the hand-over while P's records after %s were never read; no rejoin", ws.Shards["P"])
	}
}

// failFinished fails every Save of a position that lists a finished shard.
type failFinished struct{ *memcheckpoint.Mem }

func (c *failFinished) Save(ctx context.Context, cp checkpoint.Checkpoint) error {
	if strings.Contains(cp.Position, `"finished":[`) && strings.HasPrefix(cp.Unit, shardUnitPrefix) {
		return context.DeadlineExceeded // a transient failure: e.g. throttled until FinalSaveTimeout
	}
	return c.Mem.Save(ctx, cp)
}

// TestShardFinishedWhoseLastSaveFailsIsHandedOver: a shard unit reads its
// shard to its end, and its last save fails with a transient error: the
// subscription goes on (the unit's lease expires, and the shard is read
// again from its last save), and Run returns nil.
func TestShardFinishedWhoseLastSaveFailsIsHandedOver(t *testing.T) {
	e := newFakeEnv(t, "s1")
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	sw := e.startLeasedWith(t, "w1", opts, &failFinished{Mem: e.cps}, lc)
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 1 }, "the shard was not taken")
	e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
	e.waitDelivered(t, 10*time.Second)
	e.f.split(e.arn, "s1", "s1a")
	ddbtest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(lc.String(), "its last save failed") },
		"the finished shard's last save did not fail")
	time.Sleep(300 * time.Millisecond)
	for _, h := range sw.w.Health() {
		if h.State == StateStopped {
			t.Fatalf("the subscription stopped: %+v", h)
		}
	}
	err := sw.stop()
	t.Logf("Run = %v", err)
	if err != nil {
		t.Errorf("a transient failure of a finished shard's last save stopped the subscription: %v", err)
	}
}

// TestClaimHeldStreamWhole: a worker without leases holds the whole
// checkpoint by Claim, in phase stream, idle. Leased workers run the shard
// units next to it once it looks abandoned, but never take unit "": the
// Claim holder is never fenced (LeaseOptions says its next save fails with
// ErrFenced).
func TestClaimHeldStreamWholeIsFenced(t *testing.T) {
	e := newFakeEnv(t, "s1")
	stop := e.start(t, func(s *Subscription) { s.Source = SourceStream })
	e.waitStream(t, e.arn)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, err := e.cps.Claim(ctx, checkpointKey(fakeSub), "old-worker")
	if err != nil {
		t.Fatal(err)
	}
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1000 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	sw := e.startLeasedWith(t, "w1", opts, e.cps, lc)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(running(sw.w)) > 0 }, "no shard unit ran")
	t.Logf("leased worker runs %v while old-worker holds the whole by Claim", running(sw.w))
	old.Position = strings.Replace(old.Position, `"resume":`, `"resume":1`, 1)
	err = e.cps.Save(ctx, old)
	t.Logf("old-worker's save: %v", err)
	if err == nil {
		t.Errorf("the Claim holder was not fenced while shard units run")
	}
}

// TestJoinFourUnitsThreeWorkers: two workers hold two units each of four;
// a third joins. The share is ceil(4/3) = 2, which nobody is above; the
// two give units back because they hold two more than the joiner, and it
// gets its units by hand-overs, not by a steal that would cut a lease.
func TestJoinFourUnitsThreeWorkers(t *testing.T) {
	opts := LeaseOptions{Duration: 600 * time.Millisecond, RenewEvery: 100 * time.Millisecond, BalanceEvery: 30 * time.Millisecond}
	e := newLeaseEnv(t, 200, 8, 4, opts)
	e.allow.Store(1 << 40)
	w1 := e.start("w1", nil)
	w2 := e.start("w2", nil)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(running(w1.w)) == 2 && len(running(w2.w)) == 2 }, "not 2+2")
	w3 := e.start("w3", nil)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(running(w3.w)) >= 1 }, "w3 got nothing")
	l1, l2 := w1.log.losses(), w2.log.losses()
	t.Logf("layout %v %v %v; leases lost (cut, not released) by w1 %v, w2 %v", running(w1.w), running(w2.w), running(w3.w), l1, l2)
	if len(l1)+len(l2) > 0 {
		t.Errorf("the joiner got its unit by a steal, not a hand-over")
	}
}

// TestMemberThatTakesNothingIsNotCounted: a worker that announces itself
// but does not take units (here a membership record renewed and nothing
// else) would lower everyone's target and leave a unit free: once it has
// left units free for a few rounds it is not counted, and the two working
// workers take all three units.
func TestMemberThatTakesNothingIsNotCounted(t *testing.T) {
	opts := LeaseOptions{Duration: 600 * time.Millisecond, RenewEvery: 100 * time.Millisecond, BalanceEvery: 30 * time.Millisecond}
	e := newLeaseEnv(t, 200, 9, 3, opts)
	e.allow.Store(1 << 40)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The ghost: a live membership, renewed, and nothing else.
	ghost, err := e.mem.Take(ctx, checkpoint.Key{Subscription: "shared", Unit: memberUnit("ghost")}, "ghost", checkpoint.Checkpoint{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			if cp, err := e.mem.Renew(ctx, ghost, time.Second); err == nil {
				ghost = cp
			}
		}
	}()
	w1 := e.start("w1", nil)
	w2 := e.start("w2", nil)
	time.Sleep(2 * time.Second)
	r1, r2 := running(w1.w), running(w2.w)
	t.Logf("w1 runs %v, w2 runs %v", r1, r2)
	if len(r1)+len(r2) < 3 {
		t.Errorf("a unit stays free while two workers run: %v %v", r1, r2)
	}
}

// TestIdleShardResume: an idle shard unit's Resume never moves (its
// tracker's lastAt moves only with its own records; caughtUp moves readTo,
// which can only lower Resume), so a rejoin catches up from it.
func TestIdleShardResumeMovesOn(t *testing.T) {
	e := newFakeEnv(t, "s1", "s2")
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	lc := &logCapture{t: t}
	sw := e.startLeasedWith(t, "w1", opts, e.cps, lc)
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 2 }, "the shards were not taken")
	for range 6 {
		e.f.put(e.arn, "s1", e.appendNext(t, 1, "a")...)
		time.Sleep(500 * time.Millisecond)
	}
	e.waitDelivered(t, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if err := sw.stop(); err != nil {
		t.Fatal(err)
	}
	res := map[string]int64{}
	for _, s := range []string{"s1", "s2"} {
		cp, _ := e.cps.Load(context.Background(), checkpoint.Key{Subscription: fakeSub, Unit: shardUnit(s)})
		p, _ := shardPosition(cp, epoch)
		res[s] = p.Resume
	}
	_, h := e.whole(t)
	t.Logf("hand-over Resume %d; s1 Resume %d; s2 (idle) Resume %d: s2 is %v behind s1", h.Stream.Resume, res["s1"], res["s2"], time.Duration(res["s1"]-res["s2"])*time.Millisecond)
	if res["s1"]-res["s2"] > 2000 {
		t.Errorf("the idle shard's Resume stays at the hand-over")
	}
}

// TestSplitDrainTimeoutLosesIndexCommits: unit "" hands over to the
// stream while index-emitted commits are still queued behind a slow
// handler. It stops (errSplit), its drain times out and cancels them, and
// its last save is the stream tracker's position, which knows nothing of
// the index's commits in flight: the shard units start past them.
func TestSplitWaitsForIndexCommitsInFlight(t *testing.T) {
	e := newFakeEnv(t, "s1")
	e.appendNext(t, 8, "a", "b", "c", "d") // history, through the index only
	e.rec.delay = func() time.Duration { return 300 * time.Millisecond }
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	sw := e.startLeasedWith(t, "w1", opts, e.cps, lc) // DrainTimeout 1 s
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 1 }, "the shard was not taken")
	time.Sleep(4 * time.Second)
	if err := sw.stop(); err != nil {
		t.Fatal(err)
	}
	_, h := e.whole(t)
	t.Logf("delivered %v, want %v; hand-over %+v", e.rec.delivered(), e.want, h.Stream)
	for _, l := range strings.Split(lc.String(), "\n") {
		if strings.Contains(l, "drain timeout") {
			t.Logf("LOG: %s", l)
		}
	}
	if !covers(e.rec.delivered(), e.want) {
		t.Errorf("commits lost at the hand-over")
	}
}

// TestStreamResumePassesInFlight (pre-existing code path, in a shard
// unit): the stream read fails with an error that is neither trimmed nor
// gone; the hybrid source restarts a new stream source from the tracker's
// checkpoint; the re-read records of commits still in flight are dropped as
// duplicates and complete in the new tracker, so the next save passes
// them. A crash then loses them.
func TestStreamResumeWaitsForCommitsInFlight(t *testing.T) {
	e := newFakeEnv(t, "s1")
	lc := &logCapture{t: t}
	opts := LeaseOptions{Duration: 1500 * time.Millisecond, RenewEvery: 200 * time.Millisecond, BalanceEvery: 50 * time.Millisecond}
	sw := e.startLeasedWith(t, "w1", opts, e.cps, lc)
	epoch := e.waitSplit(t, 0)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(e.shardOwners(t, epoch)) == 1 }, "the shard was not taken")
	e.rec.delay = func() time.Duration { return 700 * time.Millisecond }
	e.f.put(e.arn, "s1", e.appendNext(t, 5, "a")...)
	time.Sleep(300 * time.Millisecond)
	var once atomic.Bool
	e.f.setFault(func(op, shard string, n int) error {
		if op == "GetRecords" && once.CompareAndSwap(false, true) {
			return errBoom
		}
		return nil
	})
	time.Sleep(1200 * time.Millisecond)
	cp, _ := e.cps.Load(context.Background(), checkpoint.Key{Subscription: fakeSub, Unit: shardUnit("s1")})
	sw.w.abandon() // killed
	_ = sw.stop()
	t.Logf("delivered before the kill %v; saved %s", e.rec.delivered(), cp.Position)
	e.rec.delay = nil
	sw2 := e.startLeasedWith(t, "w2", opts, e.cps, lc)
	time.Sleep(4 * time.Second)
	_ = sw2.stop()
	t.Logf("delivered %v want %v", e.rec.delivered(), e.want)
	if !covers(e.rec.delivered(), e.want) {
		t.Errorf("commits in flight at the stream's resume were lost by the crash")
	}
}

var errBoom = errorString("boom")

type errorString string

func (e errorString) Error() string { return string(e) }

// nopSource is a source whose commits are handed to a dispatcher by the
// test itself.
type nopSource struct{}

func (nopSource) run(ctx context.Context, _ emitFunc) error { <-ctx.Done(); return ctx.Err() }
func (nopSource) checkpoint() (string, error)               { return "", nil }
func (nopSource) lag(time.Time) (int, time.Duration)        { return 0, 0 }
func (nopSource) done(Commit)                               {}

// TestShardUnitParksOnlyWhileTheStoreHoldsTheAggregate: a stream shard
// unit marked two aggregates parked when it started. One was replayed
// since by another shard unit (the park store holds none of its commits
// now): its next commit is handled, not parked behind nothing, which would
// stall it. The other is still parked: its next commit is parked behind
// the ones there, in order.
func TestShardUnitParksOnlyWhileTheStoreHoldsTheAggregate(t *testing.T) {
	e := newLeaseEnv(t, 10, 2, 1, LeaseOptions{})
	ctx := context.Background()
	var handled []string
	w, err := NewWorker(Config{Reader: e.st, Checkpoints: e.mem, Parking: e.mem})
	if err != nil {
		t.Fatal(err)
	}
	sub := Subscription{Name: "s", Handler: HandlerFunc(func(_ context.Context, c Commit) error {
		handled = append(handled, fmt.Sprintf("%s %d", c.AggregateID, c.Version))
		return nil
	})}
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	r := w.byName["s"]
	u := r.newUnit(unitSpec{name: shardUnit("x"), shard: "x"}, true)
	u.src = nopSource{}
	still := Commit{AggregateID: "still", Version: 0, CommitID: "20260101000000000:still"}
	if err := e.mem.Park(ctx, checkpoint.Parked{Subscription: "s", Commit: still, Reason: "failed"}); err != nil {
		t.Fatal(err)
	}
	d := newDispatcher(r, u, map[string]bool{"replayed": true, "still": true})
	for _, c := range []Commit{
		{AggregateID: "replayed", Version: 3, CommitID: "20260101000000001:replayed"},
		{AggregateID: "still", Version: 1, CommitID: "20260101000000002:still"},
	} {
		d.slots <- struct{}{}
		d.inflight++
		if left := d.handle(ctx, []Commit{c}, []time.Time{time.Now()}, true); left != 0 {
			t.Fatalf("%s: %d left unhandled", c.AggregateID, left)
		}
	}
	if len(handled) != 1 || handled[0] != "replayed 3" {
		t.Fatalf("handled %v; want only the replayed aggregate's commit", handled)
	}
	var parked []int64
	for p, err := range e.mem.Parked(ctx, "s", "still") {
		if err != nil {
			t.Fatal(err)
		}
		parked = append(parked, p.Commit.Version)
	}
	if !slices.Equal(parked, []int64{0, 1}) {
		t.Fatalf("parked versions of the still parked aggregate %v, want [0 1]", parked)
	}
	if d.parked["replayed"] || !d.parked["still"] {
		t.Fatalf("marks %v: want the replayed aggregate no longer marked", d.parked)
	}
}
