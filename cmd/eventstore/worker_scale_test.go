package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Scale-out settings of the tests below: short leases so that a dead
// process's units are taken within seconds.
const (
	scaleBuckets   = 6
	leaseDuration  = 3 * time.Second
	scaleSubscribe = "shared"
)

// scaleArgs are a worker's flags for the shared subscription.
func scaleArgs(recv *receiver, owner string) []string {
	return []string{"--subscription", scaleSubscribe, "--handler", "webhook", "--webhook-url", recv.url(),
		"--owner", owner, "--lease-duration", leaseDuration.String(), "--lease-renew", "500ms", "--balance-every", "500ms"}
}

// newScaleEnv is a daemonEnv whose commits table has a bucketed index.
func newScaleEnv(t testing.TB) *daemonEnv {
	t.Helper()
	d := newDaemonEnv(t, buildBinary(t), scaleBuckets)
	return d
}

// owners returns the owner of each unit of the shared subscription whose
// lease is live now ("" for a free or expired one).
func (d *daemonEnv) owners(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	now := time.Now()
	for cp, err := range d.cps.List(t.Context(), scaleSubscribe) {
		if err != nil {
			t.Fatal(err)
		}
		if subscribe.IsMemberUnit(cp.Unit) {
			continue
		}
		if cp.Live(now) {
			out[cp.Unit] = cp.Owner
		} else {
			out[cp.Unit] = ""
		}
	}
	return out
}

// waitOwners waits until every unit is held and ok accepts the layout:
// counts is units held per owner. It returns how long that took.
func (d *daemonEnv) waitOwners(t testing.TB, within time.Duration, what string, ok func(counts map[string]int) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		owners := d.owners(t)
		counts := map[string]int{}
		free := 0
		for _, o := range owners {
			if o == "" {
				free++
				continue
			}
			counts[o]++
		}
		if len(owners) == scaleBuckets && free == 0 && ok(counts) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: units %v", what, within, owners)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writer appends commits to random aggregates until stopped; it returns
// how many it appended.
type writer struct {
	stop func() int
}

func (d *daemonEnv) startWriter(t testing.TB, aggregates, perSecond int) *writer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	done := make(chan struct{})
	next := make([]int64, aggregates)
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			i := rng.IntN(aggregates)
			id := fmt.Sprintf("agg-%03d", i)
			if _, err := d.st.Append(context.Background(), store.Commit{AggregateID: id, Version: next[i], Events: json.RawMessage(`[{"type":"Tick"}]`)}); err != nil {
				t.Errorf("append %s v%d: %v", id, next[i], err)
				return
			}
			next[i]++
			n.Add(1)
		}
	}()
	return &writer{stop: func() int {
		cancel()
		<-done
		return int(n.Load())
	}}
}

func evenly(per int) func(map[string]int) bool {
	return func(counts map[string]int) bool {
		for _, c := range counts {
			if c != per {
				return false
			}
		}
		return true
	}
}

// TestScaleOutKill runs three daemons on one subscription over a 6-bucket
// index: each holds two units. One is killed with SIGKILL while writers
// run: the others take its units within the lease duration (plus a
// balance round), and nothing is lost, order holds, and duplicates stay
// within what the killed process handled since its last checkpoint.
func TestScaleOutKill(t *testing.T) {
	t.Parallel()
	d := newScaleEnv(t)
	recv := newReceiver(t, "s3cret-for-tests")
	ws := map[string]*daemon{}
	for _, name := range []string{"w1", "w2", "w3"} {
		ws[name] = d.startWorker(scaleArgs(recv, name)...)
	}
	wr := d.startWriter(t, 60, 60)
	d.waitOwners(t, 30*time.Second, "three workers share the units", func(c map[string]int) bool {
		return len(c) == 3 && evenly(2)(c)
	})
	time.Sleep(2 * time.Second)
	_, _, dupsBefore, _, _ := recv.counts()
	if err := ws["w1"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := d.waitOwners(t, leaseDuration+10*time.Second, "the survivors take w1's units", func(c map[string]int) bool {
		return c["w1"] == 0 && evenly(3)(c)
	})
	t.Logf("hand-over after SIGKILL: %v (lease %v)", took.Round(10*time.Millisecond), leaseDuration)
	if took > leaseDuration+5*time.Second {
		t.Errorf("hand-over after SIGKILL took %v, want within the lease (%v) and a few balance rounds", took, leaseDuration)
	}
	time.Sleep(2 * time.Second)
	appended := wr.stop()
	recv.waitFor(t, appended, 60*time.Second, ws["w2"].logs)
	distinct, _, dupsAfter, _, problems := recv.counts()
	if distinct != appended || len(problems) > 0 {
		t.Errorf("received %d distinct commits of %d; problems %q", distinct, appended, problems)
	}
	// w1 saved its checkpoints every 200 ms: what it handled after its last
	// save comes again, about 60 commits/s × 1/3 of the units × 0.2 s, with
	// a wide margin for a slow machine.
	if dups := dupsAfter - dupsBefore; dups > 40 {
		t.Errorf("%d duplicates after the kill; want about what w1 handled in one checkpoint interval", dups)
	}
	for _, name := range []string{"w2", "w3"} {
		ws[name].stop(t)
	}
}

// TestScaleOutPausedProcess pauses one of two daemons (SIGSTOP) past its
// lease: the other takes its units; resumed, its late checkpoint writes
// are refused and its in-flight work for those units is cancelled, and the
// new owner's positions do not move back.
func TestScaleOutPausedProcess(t *testing.T) {
	t.Parallel()
	d := newScaleEnv(t)
	recv := newReceiver(t, "s3cret-for-tests")
	a := d.startWorker(scaleArgs(recv, "pa")...)
	b := d.startWorker(scaleArgs(recv, "pb")...)
	wr := d.startWriter(t, 30, 40)
	d.waitOwners(t, 30*time.Second, "two workers share the units", func(c map[string]int) bool { return evenly(3)(c) && len(c) == 2 })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	d.waitOwners(t, leaseDuration+10*time.Second, "pb takes the paused process's units", func(c map[string]int) bool { return c["pb"] == scaleBuckets })
	time.Sleep(time.Second)
	positions := d.positions(t)
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for unit, before := range positions {
		if after := d.positions(t)[unit]; after.Compare(before) < 0 {
			t.Errorf("unit %s moved back from %v to %v after the paused process resumed", unit, before, after)
		}
	}
	if logs := a.logs.String(); !strings.Contains(logs, "lease") || !strings.Contains(logs, "lost") {
		t.Errorf("the resumed process did not report its lost leases:\n%s", logs)
	}
	appended := wr.stop()
	recv.waitFor(t, appended, 60*time.Second, b.logs)
	if distinct, _, _, _, problems := recv.counts(); distinct != appended || len(problems) > 0 {
		t.Errorf("received %d distinct commits of %d; problems %q", distinct, appended, problems)
	}
	a.stop(t)
	b.stop(t)
}

// positions returns each unit's checkpoint position (where every commit
// before is handled).
func (d *daemonEnv) positions(t testing.TB) map[string]store.Position {
	t.Helper()
	out := map[string]store.Position{}
	for cp, err := range d.cps.List(t.Context(), scaleSubscribe) {
		if err != nil {
			t.Fatal(err)
		}
		if subscribe.IsMemberUnit(cp.Unit) {
			continue
		}
		info, err := subscribe.DescribeCheckpoint(cp.Position, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[cp.Unit] = info.After
	}
	return out
}

// TestScaleOutRollingRestart restarts three daemons one by one while
// writers run: nothing is lost, and each graceful hand-over takes about a
// balance round, not a lease duration.
func TestScaleOutRollingRestart(t *testing.T) {
	t.Parallel()
	d := newScaleEnv(t)
	recv := newReceiver(t, "s3cret-for-tests")
	names := []string{"r1", "r2", "r3"}
	ws := map[string]*daemon{}
	for _, name := range names {
		ws[name] = d.startWorker(scaleArgs(recv, name)...)
	}
	wr := d.startWriter(t, 60, 40)
	d.waitOwners(t, 30*time.Second, "three workers share the units", func(c map[string]int) bool { return len(c) == 3 && evenly(2)(c) })
	var handovers []time.Duration
	var mu sync.Mutex
	for _, name := range names {
		ws[name].stop(t)
		took := d.waitOwners(t, leaseDuration, "the others take "+name+"'s units", func(c map[string]int) bool { return c[name] == 0 })
		mu.Lock()
		handovers = append(handovers, took)
		mu.Unlock()
		ws[name] = d.startWorker(scaleArgs(recv, name)...)
		d.waitOwners(t, 30*time.Second, name+" back with its share", func(c map[string]int) bool { return len(c) == 3 && evenly(2)(c) })
	}
	appended := wr.stop()
	recv.waitFor(t, appended, 60*time.Second, ws["r1"].logs)
	if distinct, _, _, _, problems := recv.counts(); distinct != appended || len(problems) > 0 {
		t.Errorf("received %d distinct commits of %d; problems %q", distinct, appended, problems)
	}
	sort.Slice(handovers, func(i, j int) bool { return handovers[i] < handovers[j] })
	t.Logf("graceful hand-overs: %v (lease %v)", handovers, leaseDuration)
	for _, name := range names {
		ws[name].stop(t)
	}
}

// BenchmarkScaleOutBacklog measures how fast 1, 2 and 3 daemons work
// through the same backlog of a subscription over a 6-bucket index, each
// webhook request taking 5 ms as a read model's write would. It reports
// commits per second with one process and the ratios with two and three,
// measured in the same run. Run it with -benchtime 1x.
func BenchmarkScaleOutBacklog(b *testing.B) {
	const backlog = 3000
	bin := buildBinary(b)
	var rates [4]float64
	for range b.N {
		for procs := 1; procs <= 3; procs++ {
			rates[procs] += scaleRun(b, bin, procs, backlog)
		}
	}
	n := float64(b.N)
	b.ReportMetric(rates[1]/n, "commits/s-1proc")
	b.ReportMetric(rates[2]/rates[1], "x-2procs")
	b.ReportMetric(rates[3]/rates[1], "x-3procs")
}

// scaleRun appends backlog commits to fresh tables, starts procs daemons
// and returns commits delivered per second, from their start to the last
// delivery.
func scaleRun(b *testing.B, bin string, procs, backlog int) float64 {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	d := newDaemonEnv(b, bin, scaleBuckets)
	recv := newReceiver(b, "s3cret-for-tests")
	recv.latency = 5 * time.Millisecond
	batch := make([]store.Commit, 0, 25)
	for i := range backlog {
		batch = append(batch, store.Commit{AggregateID: fmt.Sprintf("agg-%03d-%d", i%120, i/120), Events: json.RawMessage(`[{"type":"Tick"}]`)})
		if len(batch) == cap(batch) {
			if _, err := d.st.AppendAll(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	start := time.Now()
	ws := make([]*daemon, procs)
	for i := range ws {
		ws[i] = d.startWorker(scaleArgs(recv, fmt.Sprintf("b%d", i))...)
	}
	recv.waitFor(b, backlog, 5*time.Minute, ws[0].logs)
	rate := float64(backlog) / time.Since(start).Seconds()
	for _, w := range ws {
		w.stop(b)
	}
	return rate
}
