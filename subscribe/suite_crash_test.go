package subscribe

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The crash case of the source suite runs the worker in a child process
// (this test binary, run for TestCrashChild alone) and kills it with SIGKILL
// at random moments. The child reads through the source of the harness
// whose name crashEnv holds.

// crashEnv names, in the child's environment, the harness it runs.
const crashEnv = "EVENTSTORE_CRASH_CHILD"

// crashLog appends lines to a file with one write each, so that every line
// before a SIGKILL is whole.
type crashLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *crashLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = fmt.Fprintf(l.f, format+"\n", args...)
}

func (l *crashLog) OnCheckpoint(_ string, err error) {
	if err == nil {
		l.printf("checkpoint")
	}
}

// TestCrashChild is the worker process of the crash case; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	name := os.Getenv(crashEnv)
	if name == "" {
		t.Skip("the worker process of the crash case of the source suite")
	}
	h, ok := sourceHarnesses[name]
	if !ok {
		t.Fatalf("%s=%q: no such source harness", crashEnv, name)
	}
	client := ddbtest.Client(t)
	s, err := store.New(client, store.Config{TableName: os.Getenv("CRASH_TABLE")})
	if err != nil {
		t.Fatal(err)
	}
	cps, err := dynamocheckpoint.New(client, dynamocheckpoint.Config{TableName: os.Getenv("CRASH_CHECKPOINTS")})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(os.Getenv("CRASH_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	log := &crashLog{f: f}
	log.printf("start")
	saving := &savingLog{Store: cps, log: log}
	handler := HandlerFunc(func(ctx context.Context, c Commit) error {
		log.printf("begin %s %d", c.AggregateID, c.Version)
		// Mostly quick, sometimes slow: at a kill, slow commits are still
		// running while later ones have finished.
		d := time.Duration(rand.IntN(10)) * time.Millisecond
		if rand.IntN(10) == 0 {
			d = time.Duration(200+rand.IntN(400)) * time.Millisecond
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		log.printf("end %s %d", c.AggregateID, c.Version)
		return nil
	})
	cfg := Config{Reader: s, Checkpoints: saving, Hooks: []any{log}}
	if h.prepare != nil {
		h.prepare(t, &cfg, s)
	}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub := Subscription{Name: "crash", Handler: handler, Concurrency: crashConcurrency, CheckpointInterval: 200 * time.Millisecond}
	h.configure(&sub, suiteTuning)
	if err := w.Register(sub); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// crashConcurrency is the crash child's Subscription.Concurrency.
const crashConcurrency = 16

type crashRun struct {
	t       *testing.T
	logPath string
	env     []string
}

func (r *crashRun) start() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { // a child left running by a failure
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// savingLog notes in the crash log when each checkpoint save starts: its
// position was computed just before.
type savingLog struct {
	*dynamocheckpoint.Store
	log *crashLog
}

func (s *savingLog) Save(ctx context.Context, cp checkpoint.Checkpoint) error {
	s.log.printf("save")
	return s.Store.Save(ctx, cp)
}

type logLine struct {
	kind    string // start, begin, end, save, checkpoint
	agg     string
	version int64
}

func readCrashLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		l := logLine{kind: fields[0]}
		if len(fields) == 3 {
			l.agg = fields[1]
			l.version, _ = strconv.ParseInt(fields[2], 10, 64)
		}
		out = append(out, l)
	}
	return out
}

// testCrash kills the worker with SIGKILL at random moments while writers
// append, with handlers of random duration running in parallel. After each
// kill the saved checkpoint is inspected (if the harness can read it): it
// must not claim handled a commit whose handler had not finished. After the
// last restart: every commit was delivered at least once, each aggregate's
// versions came in order within each process, and the duplicates after each
// restart stay within what the processes before it handled after their last
// checkpoint save began, however long their slowest handler took.
func testCrash(t *testing.T, h sourceHarness) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	s := newTableWith(t, store.Config{}, h.tableOptions)
	client := ddbtest.Client(t)
	cpCfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t) + "-cp"}
	if err := dynamocheckpoint.CreateTable(context.Background(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	cps, err := dynamocheckpoint.New(client, cpCfg)
	if err != nil {
		t.Fatal(err)
	}
	run := &crashRun{t: t, logPath: filepath.Join(t.TempDir(), "deliveries.log")}
	if keep := os.Getenv("CRASH_KEEP"); keep != "" {
		keep = fmt.Sprintf("%s-%d", keep, time.Now().UnixNano()) // one per run, with -count
		t.Logf("delivery log kept in %s", keep)
		run.logPath = keep
		_ = os.Remove(keep)
	}
	run.env = []string{crashEnv + "=" + h.name, "AWS_ENDPOINT_URL_DYNAMODB=" + ddbtest.Endpoint(t),
		"CRASH_TABLE=" + s.Config().TableName, "CRASH_CHECKPOINTS=" + cpCfg.TableName, "CRASH_LOG=" + run.logPath}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	ctx, stopWriters := context.WithCancel(context.Background())
	var written map[string]int64
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		written = writeUntil(ctx, t, s, 4, 30)
	}()
	t.Cleanup(func() { // on a failure, before the table goes
		stopWriters()
		<-writersDone
	})

	const kills = 4
	for k := range kills {
		cmd := run.start()
		time.Sleep(time.Duration(700+rng.IntN(1300)) * time.Millisecond)
		kill(t, cmd)
		inspectCheckpoint(t, h, s, cps, readCrashLog(t, run.logPath), k)
	}
	stopWriters()
	<-writersDone
	cmd := run.start()
	ddbtest.Eventually(t, 60*time.Second, func() bool {
		return covers(endedVersions(readCrashLog(t, run.logPath)), written)
	}, "the restarted worker did not catch up")
	kill(t, cmd)

	lines := readCrashLog(t, run.logPath)
	checkCrashLog(t, lines, written)
}

// writeUntil appends deposits to aggs aggregates from several goroutines
// until ctx ends, and returns the versions written per aggregate.
func writeUntil(ctx context.Context, t *testing.T, s *store.Store, goroutines, aggs int) map[string]int64 {
	var mu sync.Mutex
	next := map[string]int64{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("agg-%d", (g*7+i)%aggs)
				mu.Lock()
				v := next[id]
				next[id] = v + 1 // reserve the version: no conflicts between our writers
				mu.Unlock()
				if _, err := s.Append(context.Background(), store.Commit{AggregateID: id, Version: v, Events: deposit(t)}); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(3 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return next
}

// endedVersions returns, per aggregate, how many versions have had a handler
// finish (versions 0 … n-1 all ended).
func endedVersions(lines []logLine) map[string]int64 {
	ended := map[string]map[int64]bool{}
	for _, l := range lines {
		if l.kind == "end" {
			if ended[l.agg] == nil {
				ended[l.agg] = map[int64]bool{}
			}
			ended[l.agg][l.version] = true
		}
	}
	out := map[string]int64{}
	for agg, vs := range ended {
		n := int64(0)
		for vs[n] {
			n++
		}
		out[agg] = n
	}
	return out
}

// inspectCheckpoint checks that the saved checkpoint claims as handled
// (a restart would not deliver them again) only commits whose handler
// finished, as the harness's claimed reads the checkpoint.
func inspectCheckpoint(t *testing.T, h sourceHarness, s *store.Store, cps checkpoint.Store, lines []logLine, kill int) {
	t.Helper()
	cp, err := cps.Load(context.Background(), checkpointKey("crash"))
	if err != nil {
		t.Fatalf("kill %d: load checkpoint: %v", kill, err)
	}
	if cp.Position == "" || h.claimed == nil {
		return
	}
	if os.Getenv("CRASH_DEBUG") != "" {
		t.Logf("kill %d: checkpoint %s", kill, cp.Position)
	}
	claimed := h.claimed(t, cp.Position)
	ended := map[string]bool{}
	for _, l := range lines {
		if l.kind == "end" {
			ended[fmt.Sprintf("%s %d", l.agg, l.version)] = true
		}
	}
	covered := 0
	for c, err := range s.Scan(context.Background(), store.Position{}) {
		if err != nil {
			t.Fatal(err)
		}
		if !claimed(c) {
			continue
		}
		if !ended[fmt.Sprintf("%s %d", c.AggregateID, c.Version)] {
			t.Fatalf("kill %d: the checkpoint claims %s version %d handled, but its handler never finished\n%s\n%s", kill, c.AggregateID, c.Version, cp.Position, historyOf(lines, c.AggregateID))
		}
		covered++
	}
	t.Logf("kill %d: the checkpoint claims %d commits handled", kill, covered)
}

// checkCrashLog checks at-least-once, per-aggregate order within each
// process, and the duplicate bound.
func checkCrashLog(t *testing.T, lines []logLine, written map[string]int64) {
	t.Helper()
	ended := endedVersions(lines)
	for agg, n := range written {
		if ended[agg] < n {
			t.Fatalf("%s: versions up to %d were handled, %d were written", agg, ended[agg], n)
		}
	}
	delivered := map[string]int64{} // highest version+1 begun, over all processes
	endedEarlier := map[string]map[int64]bool{}
	var incarnations [][]logLine
	for _, l := range lines {
		if l.kind == "start" {
			incarnations = append(incarnations, nil)
			continue
		}
		incarnations[len(incarnations)-1] = append(incarnations[len(incarnations)-1], l)
	}
	totalDups := 0
	for k, inc := range incarnations {
		last := map[string]int64{}
		dups := 0
		for _, l := range inc {
			if l.kind == "end" {
				if endedEarlier[l.agg] == nil {
					endedEarlier[l.agg] = map[int64]bool{}
				}
				endedEarlier[l.agg][l.version] = true
			}
			if l.kind != "begin" {
				continue
			}
			if prev, seen := last[l.agg]; seen {
				// Within one process the versions go up by one, passing
				// over only versions an earlier process handled.
				if l.version <= prev {
					t.Fatalf("process %d: %s version %d began after %d", k, l.agg, l.version, prev)
				}
				for v := prev + 1; v < l.version; v++ {
					if !endedEarlier[l.agg][v] {
						t.Fatalf("process %d: %s version %d began after %d, and version %d was never handled\n%s", k, l.agg, l.version, prev, v, historyOf(lines, l.agg))
					}
				}
			} else if l.version > delivered[l.agg] {
				t.Fatalf("process %d: %s began at version %d, but only %d versions were delivered before: a gap", k, l.agg, l.version, delivered[l.agg])
			}
			last[l.agg] = l.version
			if endedEarlier[l.agg][l.version] {
				dups++ // handled before: a true duplicate
				if os.Getenv("CRASH_DEBUG") != "" && dups < 4 {
					t.Logf("dup in process %d: %s %d\n%s", k, l.agg, l.version, historyOf(lines, l.agg))
				}
			}
			if l.version >= delivered[l.agg] {
				delivered[l.agg] = l.version + 1
			}
		}
		// A commit handled after its process's last save (that landed)
		// began is not covered by any checkpoint, and comes again in a
		// later process: the next, or a later one when the next is killed
		// before it reads that far. Every other commit is covered by every
		// checkpoint after. Up to crashConcurrency more per process: a
		// handler logs its end just before the worker learns of it.
		if k > 0 {
			bound := 0
			for _, before := range incarnations[:k] {
				bound += handledAfterLastSave(before) + crashConcurrency
			}
			if os.Getenv("CRASH_DEBUG") != "" {
				t.Logf("process %d: %d duplicates; bound %d", k, dups, bound)
			}
			if dups > bound {
				t.Fatalf("process %d re-delivered %d handled commits; only %d were handled after the last save of a process before it began, or in flight then", k, dups, bound)
			}
		}
		totalDups += dups
	}
	t.Logf("%d processes, %d duplicates in all", len(incarnations), totalDups)
}

// handledAfterLastSave counts the handlers of one process that finished
// after its last save that landed (the save line before its last
// checkpoint line) began: all of them if no save landed.
func handledAfterLastSave(inc []logLine) int {
	from := 0
	landed := false
	for i := len(inc) - 1; i >= 0; i-- {
		if inc[i].kind == "checkpoint" {
			landed = true
		}
		if inc[i].kind == "save" && landed {
			from = i
			break
		}
	}
	n := 0
	for _, l := range inc[from:] {
		if l.kind == "end" {
			n++
		}
	}
	return n
}

// historyOf renders one aggregate's lines, with process starts and
// checkpoints, for a failure message.
func historyOf(lines []logLine, agg string) string {
	var b strings.Builder
	for _, l := range lines {
		switch {
		case l.kind == "start":
			b.WriteString("-- process start\n")
		case l.kind == "checkpoint":
			b.WriteString("-- checkpoint saved\n")
		case l.agg == agg:
			fmt.Fprintf(&b, "%s %d\n", l.kind, l.version)
		}
	}
	return b.String()
}
