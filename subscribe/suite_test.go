package subscribe

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The source suite: the source-level guarantees of DESIGN.md §3 and the
// hazards of §4, as tests that every source (the index poller, the stream
// reader) runs against tables of DynamoDB Local. A source joins by
// registering a sourceHarness and calling runSourceSuite from a test of its
// own (see suite_index_test.go). The suite knows nothing of any source's
// internals: what it cannot do without them (set the timing, withhold a
// commit, read a saved checkpoint) it asks of the harness.

// sourceHarness is what the suite needs from a source under test.
type sourceHarness struct {
	// name identifies the harness; the crash case's child process finds the
	// harness by it in sourceHarnesses.
	name string
	// tableOptions are the options each table of the suite is created with
	// (a stream source needs the table's stream).
	tableOptions store.TableOptions
	// buckets says the source reads tables whose index has several buckets
	// (store.Config.IndexBuckets > 1); the bucketed case runs only then.
	buckets bool
	// countsLate says the source reports through HookLateArrival a commit
	// it delivers after having passed its position (the index source's
	// sweep). When false the late-arrival cases do not count such reports.
	countsLate bool
	// configure sets the subscription's source mode and its tuning for tn
	// (short delays and quick polls: the suite's cases wait for them).
	configure func(sub *Subscription, tn tuning)
	// prepare completes a worker's Config for table s: what it reads
	// through (cfg.Reader is s unless prepare replaces it) and anything
	// else the source needs, such as a streams client. nil: nothing.
	prepare func(t testing.TB, cfg *Config, s *store.Store)
	// withhold is prepare with a read path that can withhold commits:
	// after hide(p) the source does not see the commit at p (the index
	// does not return it, the stream does not yield its record) until
	// reveal(p); strongly consistent reads of the table (Reader.Query)
	// always see it. nil: the source cannot be made to withhold, and the
	// cases that need it are skipped.
	withhold func(t testing.TB, cfg *Config, s *store.Store) (hide, reveal func(store.Position))
	// claimed decodes a checkpoint position the source saved and returns
	// whether a worker restarted from it would take commit c as handled
	// (never deliver it again). The crash case checks after each kill that
	// every commit claimed had its handler finish. nil: the crash case does
	// not inspect checkpoints (it still checks every delivery).
	claimed func(t testing.TB, position string) func(c Commit) bool
	// unindexed says the source reads items that are not in the
	// commit-order index (an item without a commitId) as they are written,
	// not only when a later version of their aggregate is read.
	unindexed bool
	// live waits until the subscription reads what is written now the way
	// it does once started (the stream source: once the stream has taken
	// over from the index). nil: once it runs.
	live func(t *testing.T, cps checkpoint.Store, sub string)
}

// tuning is the timing a case asks of a source; the harness maps it onto
// the source's options. Zero fields take suiteTuning's values.
type tuning struct {
	// settle: commits written by clocks up to settle behind, or visible up
	// to settle after their commit time, are still delivered in position
	// order, none of them late (index: IndexOptions.Settle).
	settle time.Duration
	// reread: how long, beyond settle, the source keeps looking for
	// commits that became visible late, and delivers them (index:
	// IndexOptions.Overlap). Negative: not at all; only per-aggregate gap
	// repair finds such a commit, once its aggregate's next version comes.
	reread time.Duration
}

// suiteTuning is the default: short, so that the suite runs in seconds.
var suiteTuning = tuning{settle: 150 * time.Millisecond, reread: 2 * time.Second}

func (tn tuning) withDefaults() tuning {
	if tn.settle == 0 {
		tn.settle = suiteTuning.settle
	}
	if tn.reread == 0 {
		tn.reread = suiteTuning.reread
	}
	return tn
}

// quiet is how long a case waits, once everything expected has arrived, to
// see that nothing more does: past the source's re-reads, and a few polls.
func (tn tuning) quiet() time.Duration {
	tn = tn.withDefaults()
	return tn.settle + max(tn.reread, 0) + 400*time.Millisecond
}

// waitQuiet waits, once everything expected has arrived, until the source
// has re-read last (and everything before it) and polled a few more
// times: long enough to see a duplicate of any of them.
func (tn tuning) waitQuiet(last Commit) {
	time.Sleep(time.Until(last.Time().Add(tn.quiet())))
}

// sourceHarnesses holds every harness by name, for the crash case's child
// process.
var sourceHarnesses = map[string]sourceHarness{}

// registerHarness adds h to sourceHarnesses and returns it:
//
//	var fooHarness = registerHarness(sourceHarness{name: "foo", …})
func registerHarness(h sourceHarness) sourceHarness {
	if _, dup := sourceHarnesses[h.name]; dup || h.name == "" || h.configure == nil {
		panic(fmt.Sprintf("source suite: harness %q: a unique name and configure are required", h.name))
	}
	sourceHarnesses[h.name] = h
	return h
}

// runSourceSuite runs every case of the suite against the source h makes.
// Each case has its own table.
func runSourceSuite(t *testing.T, h sourceHarness) {
	run := func(t *testing.T, name string, f func(*testing.T, sourceHarness)) {
		t.Run(name, func(t *testing.T) {
			f(t, h)
		})
	}
	run(t, "completeness", func(t *testing.T, h sourceHarness) { testCompleteness(t, h, store.Config{}) })
	run(t, "bucketed", func(t *testing.T, h sourceHarness) {
		if !h.buckets {
			t.Skipf("the %s source does not read bucketed index tables", h.name)
		}
		testCompleteness(t, h, store.Config{IndexBuckets: 4})
	})
	t.Run("late", func(t *testing.T) {
		run(t, "skewed_clocks_within_settle", testSkewedClocks)
		run(t, "hidden_within_reread", testHiddenWithinReread)
		run(t, "hidden_beyond_reread", testHiddenBeyondReread)
		run(t, "hidden_across_restart", testHiddenAcrossRestart)
	})
	t.Run("restart", func(t *testing.T) {
		run(t, "after_catch_up", testRestartAfterCatchUp)
		run(t, "mid_stream", testRestartMidStream)
		run(t, "start_now", testStartNow)
		run(t, "start_at_commit_id", testStartAtCommitID)
		run(t, "start_at_time", testStartAtTime)
	})
	run(t, "crash", testCrash)
	t.Run("corrupt", func(t *testing.T) {
		run(t, "kinds_park", func(t *testing.T, h sourceHarness) { testCorruptKinds(t, h, CorruptPark) })
		run(t, "kinds_skip", func(t *testing.T, h sourceHarness) { testCorruptKinds(t, h, CorruptSkip) })
		run(t, "alone", testCorruptAlone)
	})
	t.Run("gap", func(t *testing.T) {
		run(t, "unfillable_park", func(t *testing.T, h sourceHarness) { testGapUnfillable(t, h, CorruptPark) })
		run(t, "unfillable_skip", func(t *testing.T, h sourceHarness) { testGapUnfillable(t, h, CorruptSkip) })
		run(t, "filled_in_time", testGapFilledInTime)
		run(t, "across_restart", testGapAcrossRestart)
	})
}

// suiteEnv is one case's table and what its workers are configured with.
type suiteEnv struct {
	h      sourceHarness
	client *dynamodb.Client
	s      *store.Store
	// cfg is every worker's Config but Hooks: Reader and the harness's
	// additions, and one in-memory checkpoint store, so that a second
	// worker resumes where the first stopped.
	cfg Config
	// hide and reveal withhold commits; set by newWithholdingEnv.
	hide, reveal func(store.Position)
}

// newSuiteEnv creates a table for the case, with the harness's read path.
func newSuiteEnv(t *testing.T, h sourceHarness, cfg store.Config) *suiteEnv {
	t.Helper()
	e := &suiteEnv{h: h, client: ddbtest.Client(t)}
	e.s = newTableWith(t, cfg, h.tableOptions)
	e.cfg = Config{Reader: e.s, Checkpoints: memcheckpoint.New()}
	if h.prepare != nil {
		h.prepare(t, &e.cfg, e.s)
	}
	return e
}

// newWithholdingEnv is newSuiteEnv with a read path that withholds commits;
// it skips the test if the harness has none.
func newWithholdingEnv(t *testing.T, h sourceHarness) *suiteEnv {
	t.Helper()
	if h.withhold == nil {
		t.Skipf("the %s harness cannot withhold commits", h.name)
	}
	e := &suiteEnv{h: h, client: ddbtest.Client(t)}
	e.s = newTableWith(t, store.Config{}, h.tableOptions)
	e.cfg = Config{Reader: e.s, Checkpoints: memcheckpoint.New()}
	e.hide, e.reveal = h.withhold(t, &e.cfg, e.s)
	return e
}

// newTableWith is newTable with table options.
func newTableWith(t testing.TB, cfg store.Config, opts store.TableOptions) *store.Store {
	t.Helper()
	client := ddbtest.Client(t)
	cfg.TableName = ddbtest.TableName(t)
	if err := store.CreateTable(context.Background(), client, cfg, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	s, err := store.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs a worker with one subscription, configured by the harness
// for tn, until the returned stop is called (or the test ends); stop
// returns Run's error.
func (e *suiteEnv) start(t *testing.T, sub Subscription, tn tuning, hooks ...any) (*Worker, func() error) {
	t.Helper()
	e.h.configure(&sub, tn.withDefaults())
	cfg := e.cfg
	cfg.Hooks = hooks
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return w, stop
}

// waitRunning waits until the worker's subscription reads: its start
// position is fixed.
func waitRunning(t *testing.T, w *Worker) {
	t.Helper()
	ddbtest.Eventually(t, 10*time.Second, func() bool { return w.Health()[0].State == StateRunning }, "the subscription did not start")
}

// mustStop stops a worker and fails the test unless Run returned nil.
func mustStop(t *testing.T, stop func() error) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// appendVersions appends versions from … to-1 of each aggregate,
// interleaved, and returns the commits in the order appended.
func appendVersions(t testing.TB, s *store.Store, aggs []string, from, to int64) []Commit {
	t.Helper()
	var out []Commit
	for v := from; v < to; v++ {
		for _, id := range aggs {
			c, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: v, Events: deposit(t)})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
	}
	return out
}

func aggNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func totalVersions(versions map[string]int64) int {
	n := 0
	for _, v := range versions {
		n += int(v)
	}
	return n
}

// loadPosition returns the subscription's saved position, failing the test
// if there is none.
func loadPosition(t *testing.T, cps checkpoint.Store, sub string) checkpoint.Checkpoint {
	t.Helper()
	cp, err := cps.Load(context.Background(), checkpointKey(sub))
	if err != nil || cp.Position == "" {
		t.Fatalf("checkpoint of %q: %+v, %v", sub, cp, err)
	}
	return cp
}

// balances is a read model: each aggregate's sum of its events' amounts.
type balances struct {
	mu  sync.Mutex
	sum map[string]int64
}

func amountOf(c Commit) (int64, error) {
	var evs []struct {
		Amount int64 `json:"amount"`
	}
	if err := c.DecodeEvents(&evs); err != nil {
		return 0, err
	}
	n := int64(0)
	for _, e := range evs {
		n += e.Amount
	}
	return n, nil
}

// handler applies each commit to the read model, then hands it to next.
func (b *balances) handler(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, c Commit) error {
		n, err := amountOf(c)
		if err != nil {
			return Skip(err) // reported as a skip, and fails the comparison
		}
		b.mu.Lock()
		b.sum[c.AggregateID] += n
		b.mu.Unlock()
		return next.Handle(ctx, c)
	})
}

// balancesFromTable computes the read model from the table by Query, and
// checks that each aggregate's versions there are 0 … want-1.
func balancesFromTable(t *testing.T, s *store.Store, want map[string]int64) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for id, n := range want {
		v := int64(0)
		for c, err := range s.Query(context.Background(), id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			if c.Version != v {
				t.Fatalf("table: %s has version %d at %d", id, c.Version, v)
			}
			a, err := amountOf(c)
			if err != nil {
				t.Fatal(err)
			}
			out[id] += a
			v++
		}
		if v != n {
			t.Fatalf("table: %s has %d versions, the writers wrote %d", id, v, n)
		}
	}
	return out
}

// testCompleteness: 8 writers append about 600 commits to 60 aggregates
// while the worker runs. Every commit is delivered once, each aggregate's in
// version order, and the read model built from them equals the one computed
// from the table.
func testCompleteness(t *testing.T, h sourceHarness, cfg store.Config) {
	e := newSuiteEnv(t, h, cfg)
	rec := newRecorder()
	model := &balances{sum: map[string]int64{}}
	cnt := &counters{}
	_, stop := e.start(t, Subscription{Name: "balances", Handler: model.handler(rec), Concurrency: 6}, tuning{}, cnt)
	want := writers(t, context.Background(), e.s, 8, 60, 600)
	if len(want) != 60 || totalVersions(want) != 600 {
		t.Fatalf("the writers wrote %d commits to %d aggregates, want 600 to 60", totalVersions(want), len(want))
	}
	ddbtest.Eventually(t, 30*time.Second, func() bool { return covers(rec.delivered(), want) }, "the worker did not deliver every commit")
	mustStop(t, stop)
	rec.check(t, want)
	if rec.duplicates != 0 || rec.total != totalVersions(want) {
		t.Fatalf("%d deliveries with %d duplicates for %d commits, without any crash", rec.total, rec.duplicates, totalVersions(want))
	}
	fromTable := balancesFromTable(t, e.s, want)
	model.mu.Lock()
	defer model.mu.Unlock()
	for id, n := range fromTable {
		if model.sum[id] != n {
			t.Fatalf("read model: %s has balance %d, the table says %d", id, model.sum[id], n)
		}
	}
	if len(model.sum) != len(fromTable) {
		t.Fatalf("read model has %d aggregates, the table %d", len(model.sum), len(fromTable))
	}
	loadPosition(t, e.cfg.Checkpoints, "balances") // saved at stop
	t.Logf("late arrivals %d, gap repairs %d, duplicates dropped %d", cnt.late.Load(), cnt.repaired.Load(), cnt.dups.Load())
}

// testRestartAfterCatchUp: a worker delivers everything and stops cleanly;
// more commits are appended, to known and new aggregates, while none runs; a
// new worker on the same checkpoint store delivers exactly those. Its
// subscription says StartNow, which a saved checkpoint overrides.
func testRestartAfterCatchUp(t *testing.T, h sourceHarness) {
	e := newSuiteEnv(t, h, store.Config{})
	rec := newRecorder()
	tn := tuning{reread: 500 * time.Millisecond}
	// No periodic save: only the one at stop, which must be exact.
	sub := Subscription{Name: "restart", Handler: rec, CheckpointInterval: time.Hour}
	_, stop := e.start(t, sub, tn)
	aggs := aggNames("acc-", 20)
	appendVersions(t, e.s, aggs, 0, 3)
	want := map[string]int64{}
	for _, id := range aggs {
		want[id] = 3
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return covers(rec.delivered(), want) }, "the first worker did not deliver every commit")
	mustStop(t, stop)
	first := rec.total
	if first != totalVersions(want) || rec.duplicates != 0 {
		t.Fatalf("first worker: %d deliveries, %d duplicates; want %d, 0", first, rec.duplicates, totalVersions(want))
	}
	loadPosition(t, e.cfg.Checkpoints, "restart")

	appendVersions(t, e.s, aggs, 3, 5)
	fresh := aggNames("new-", 5)
	appendVersions(t, e.s, fresh, 0, 2)
	for _, id := range aggs {
		want[id] = 5
	}
	for _, id := range fresh {
		want[id] = 2
	}
	sub.Start = StartNow
	_, stop = e.start(t, sub, tn)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return covers(rec.delivered(), want) }, "the restarted worker did not deliver the new commits")
	time.Sleep(tn.quiet()) // nothing more comes
	mustStop(t, stop)
	rec.check(t, want)
	if second := rec.total - first; second != 2*len(aggs)+2*len(fresh) || rec.duplicates != 0 {
		t.Fatalf("restarted worker: %d deliveries (%d duplicates); want exactly the %d new commits", second, rec.duplicates, 2*len(aggs)+2*len(fresh))
	}
}

// testRestartMidStream stops a worker cleanly while writers append, then
// starts a new one on the same checkpoint store: every commit arrives once
// over both, in order.
func testRestartMidStream(t *testing.T, h sourceHarness) {
	e := newSuiteEnv(t, h, store.Config{})
	rec := newRecorder()
	tn := tuning{reread: 500 * time.Millisecond}
	sub := Subscription{Name: "midstream", Handler: rec, CheckpointInterval: 100 * time.Millisecond}
	_, stop := e.start(t, sub, tn)
	var want map[string]int64
	written := make(chan struct{})
	go func() {
		defer close(written)
		want = writers(t, context.Background(), e.s, 4, 40, 400)
	}()
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.total >= 100
	}, "the first worker delivered too little")
	mustStop(t, stop)
	rec.mu.Lock()
	first := rec.total
	rec.mu.Unlock()
	<-written
	if t.Failed() {
		return
	}
	if first >= totalVersions(want) {
		t.Fatalf("the first worker delivered all %d commits before it stopped: the case tests nothing", first)
	}
	_, stop = e.start(t, sub, tn)
	ddbtest.Eventually(t, 20*time.Second, func() bool { return covers(rec.delivered(), want) }, "the restarted worker did not catch up")
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	rec.check(t, want)
	if rec.duplicates != 0 || rec.total != totalVersions(want) {
		t.Fatalf("%d deliveries with %d duplicates for %d commits after a clean stop (%d before it)", rec.total, rec.duplicates, totalVersions(want), first)
	}
}

// commitCollector keeps every commit it is handed, in order: for cases that do
// not start at version 0 or expect a version to be passed over.
type commitCollector struct {
	mu  sync.Mutex
	got []Commit
}

func (c *commitCollector) Handle(_ context.Context, cm Commit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, cm)
	return nil
}

func (c *commitCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func commitKey(c Commit) string { return fmt.Sprintf("%s#%d", c.AggregateID, c.Version) }

// check fails unless the commits delivered are exactly want, once each,
// each aggregate's in ascending version order.
func (c *commitCollector) check(t *testing.T, want []Commit) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	last := map[string]int64{}
	var got []string
	for _, cm := range c.got {
		if prev, ok := last[cm.AggregateID]; ok && cm.Version <= prev {
			t.Fatalf("%s came after version %d", commitKey(cm), prev)
		}
		last[cm.AggregateID] = cm.Version
		got = append(got, commitKey(cm))
	}
	var exp []string
	for _, cm := range want {
		exp = append(exp, commitKey(cm))
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Fatalf("delivered %v, want %v", got, exp)
	}
}

// testStartNow: a subscription with no checkpoint that starts now gets the
// commits appended after it started, and none before, not even the earlier
// versions of an aggregate whose later ones it gets.
func testStartNow(t *testing.T, h sourceHarness) {
	e := newSuiteEnv(t, h, store.Config{})
	appendVersions(t, e.s, []string{"a", "b"}, 0, 2)
	time.Sleep(5 * time.Millisecond) // the start's millisecond is after theirs
	col := &commitCollector{}
	tn := tuning{reread: 300 * time.Millisecond}
	w, stop := e.start(t, Subscription{Name: "now", Handler: col, Start: StartNow}, tn)
	waitRunning(t, w)
	want := appendVersions(t, e.s, []string{"a"}, 2, 3)
	want = append(want, appendVersions(t, e.s, []string{"c"}, 0, 2)...)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return col.count() >= len(want) }, "the new commits were not delivered")
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	col.check(t, want)
}

// appendSpaced appends one commit to each aggregate in turn, 3 ms apart, so that
// their commit ids differ in time.
func appendSpaced(t *testing.T, s *store.Store, versions map[string]int64, aggs ...string) []Commit {
	t.Helper()
	var out []Commit
	for _, id := range aggs {
		time.Sleep(3 * time.Millisecond)
		c, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: versions[id], Events: deposit(t)})
		if err != nil {
			t.Fatal(err)
		}
		versions[id]++
		out = append(out, c)
	}
	return out
}

// testStartAtCommitID: a subscription with no checkpoint that starts at a
// commit id gets that commit and every later one, and nothing earlier.
func testStartAtCommitID(t *testing.T, h sourceHarness) {
	e := newSuiteEnv(t, h, store.Config{})
	versions := map[string]int64{}
	all := appendSpaced(t, e.s, versions, "a", "b", "a", "b", "c", "a")
	from := all[2].CommitID // a#1
	var want []Commit
	for _, c := range all {
		if c.CommitID >= from {
			want = append(want, c)
		}
	}
	col := &commitCollector{}
	tn := tuning{reread: 300 * time.Millisecond}
	w, stop := e.start(t, Subscription{Name: "at-id", Handler: col, Start: StartAtCommitID(from)}, tn)
	waitRunning(t, w)
	want = append(want, appendSpaced(t, e.s, versions, "b", "d")...)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return col.count() >= len(want) }, "not delivered")
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	col.check(t, want)
}

// testStartAtTime: a subscription with no checkpoint that starts at a time
// gets the commits from then on, and nothing earlier.
func testStartAtTime(t *testing.T, h sourceHarness) {
	e := newSuiteEnv(t, h, store.Config{})
	versions := map[string]int64{}
	appendSpaced(t, e.s, versions, "a", "b", "a")
	time.Sleep(3 * time.Millisecond)
	at := time.Now()
	time.Sleep(3 * time.Millisecond)
	want := appendSpaced(t, e.s, versions, "b", "c", "a")
	for _, c := range want {
		if c.CommittedAt <= at.UnixMilli() {
			t.Fatalf("%s committed at %d, not after the start %d", commitKey(c), c.CommittedAt, at.UnixMilli())
		}
	}
	col := &commitCollector{}
	tn := tuning{reread: 300 * time.Millisecond}
	w, stop := e.start(t, Subscription{Name: "at-time", Handler: col, Start: StartAtTime(at)}, tn)
	waitRunning(t, w)
	want = append(want, appendSpaced(t, e.s, versions, "d", "b")...)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return col.count() >= len(want) }, "not delivered")
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	col.check(t, want)
}
