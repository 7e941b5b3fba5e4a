package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Settings of the stream scale-out test below.
const (
	// streamKillRate is the writer's commits per second while a daemon is
	// killed.
	streamKillRate = 40
	// streamCheckpointInterval is startWorker's --checkpoint-interval.
	streamCheckpointInterval = 200 * time.Millisecond
	// streamReadInterval is the stream source's delay between reads of a
	// shard while records come (see subscribe.StreamOptions.IdleMax).
	streamReadInterval = 250 * time.Millisecond
	// leaseRenew and balanceEvery are scaleArgs' --lease-renew and
	// --balance-every.
	leaseRenew   = 500 * time.Millisecond
	balanceEvery = 500 * time.Millisecond
	shardPrefix  = "shard-"
)

// streamLayout is what the checkpoints of the shared stream subscription
// say at one moment.
type streamLayout struct {
	whole     checkpoint.Checkpoint    // unit ""
	wholeInfo subscribe.CheckpointInfo // whole's position, decoded
	shards    map[string]checkpoint.Checkpoint
	// holders is, per owner of a live lease, the units it holds.
	holders map[string][]string
	at      time.Time
}

// streamLayout lists the shared subscription's checkpoints.
func (d *daemonEnv) streamLayout(t testing.TB) streamLayout {
	t.Helper()
	l := streamLayout{shards: map[string]checkpoint.Checkpoint{}, holders: map[string][]string{}, at: time.Now()}
	for cp, err := range d.cps.List(t.Context(), scaleSubscribe) {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case subscribe.IsMemberUnit(cp.Unit):
			continue
		case cp.Unit == "":
			l.whole = cp
			info, err := subscribe.DescribeCheckpoint(cp.Position, 0)
			if err != nil {
				t.Fatalf("the subscription's checkpoint: %v", err)
			}
			l.wholeInfo = info
		case strings.HasPrefix(cp.Unit, shardPrefix):
			l.shards[cp.Unit] = cp
		default:
			t.Fatalf("unit %q of a stream subscription: want \"\" or %s…", cp.Unit, shardPrefix)
		}
		if cp.Live(l.at) {
			l.holders[cp.Owner] = append(l.holders[cp.Owner], cp.Unit)
		}
	}
	return l
}

// onShards reports whether the stream has taken over (the whole checkpoint
// in phase stream, free) and one daemon of names holds the single shard
// unit, alone; it returns that unit.
func (l streamLayout) onShards(names []string) (string, bool) {
	if l.wholeInfo.Phase != "stream" || l.wholeInfo.Epoch <= 0 || l.whole.Live(l.at) || len(l.shards) != 1 || len(l.holders) != 1 {
		return "", false
	}
	for unit, cp := range l.shards {
		if cp.Live(l.at) && slices.Contains(names, cp.Owner) {
			return unit, true
		}
	}
	return "", false
}

func (l streamLayout) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "whole: phase %q epoch %d owner %q live %v;", l.wholeInfo.Phase, l.wholeInfo.Epoch, l.whole.Owner, l.whole.Live(l.at))
	for unit, cp := range l.shards {
		fmt.Fprintf(&b, " %s: owner %q live %v lease %d;", unit, cp.Owner, cp.Live(l.at), cp.Lease)
	}
	fmt.Fprintf(&b, " holders %v", l.holders)
	return b.String()
}

// allLogs joins the daemons' logs, for failure messages.
type allLogs map[string]*daemon

func (a allLogs) String() string {
	var b strings.Builder
	names := make([]string, 0, len(a))
	for name := range a {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "--- %s\n%s", name, a[name].logs)
	}
	return b.String()
}

// TestScaleOutStreamKill runs three daemons on one stream subscription.
// The first catches up through the index, the stream takes over, and the
// stream's one shard (DynamoDB Local has one) becomes a unit held by one
// daemon while the others stand by. That daemon is killed with SIGKILL
// while a writer runs: another takes the shard once the dead daemon's lease
// has expired, and resumes from the shard's checkpoint; nothing is lost,
// order holds, duplicates stay within what the killed daemon handled since
// its last save, and the subscription never falls back to the index.
func TestScaleOutStreamKill(t *testing.T) {
	t.Parallel()
	d := newDaemonEnv(t, buildBinary(t))
	recv := newReceiver(t, "s3cret-for-tests")
	d.appendCommits(200, 20) // history the stream cannot give
	names := []string{"k1", "k2", "k3"}
	ws := allLogs{}
	for _, name := range names {
		ws[name] = d.startWorker(append(scaleArgs(recv, name), "--source", "stream", "--overlap", "2s", "--stream-margin", "2s")...)
	}
	recv.waitFor(t, d.appended, 60*time.Second, ws)

	// The stream takes over: the whole checkpoint is saved in phase
	// stream and released, and the shard unit is held by one daemon. The
	// catch-up ends only once the index's sweep (--overlap behind the
	// settle watermark, 1 s) has covered the stream's start plus
	// --stream-margin: about 5 s here, 41 s with the defaults.
	start := time.Now()
	var l streamLayout
	var shard string
	for {
		l = d.streamLayout(t)
		var ok bool
		if shard, ok = l.onShards(names); ok {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the stream did not take over with one daemon on its shard: %v\n%s", l, ws)
		}
		time.Sleep(100 * time.Millisecond)
	}
	epoch, wholeLease := l.wholeInfo.Epoch, l.whole.Lease
	t.Logf("stream on its shard %v after the history was delivered: %v", time.Since(start).Round(10*time.Millisecond), l)

	wr := d.startWriter(t, 30, streamKillRate)
	recv.waitFor(t, d.appended+2*streamKillRate, 30*time.Second, ws)

	// Kill the shard's holder. Its lease, as last seen, must expire
	// before another daemon takes the shard.
	l = d.streamLayout(t)
	killed := l.shards[shard].Owner
	if !l.shards[shard].Live(l.at) || len(l.holders) != 1 {
		t.Fatalf("before the kill: %v", l)
	}
	var survivors []string
	for _, name := range names {
		if name != killed {
			survivors = append(survivors, name)
		}
	}
	_, _, dupsBefore, _, _ := recv.counts()
	if err := ws[killed].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-ws[killed].exited
	lastExpires := l.shards[shard].Expires
	var heir string
	var took time.Duration
	for {
		l = d.streamLayout(t)
		cp, ok := l.shards[shard]
		switch {
		case ok && cp.Owner == killed && cp.Expires.After(lastExpires):
			lastExpires = cp.Expires // a renewal under way at the kill
		case ok && cp.Live(l.at) && cp.Owner != killed:
			heir, took = cp.Owner, l.at.Sub(killedAt)
		}
		if heir != "" {
			break
		}
		if time.Since(killedAt) > leaseDuration+10*time.Second {
			t.Fatalf("no daemon took the shard within %v of the kill: %v\n%s", leaseDuration+10*time.Second, l, ws)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stream shard hand-over after SIGKILL: %v (lease %v, renewed every %v; the lease expired %v after the kill; taken by %s)",
		took.Round(10*time.Millisecond), leaseDuration, leaseRenew, lastExpires.Sub(killedAt).Round(10*time.Millisecond), heir)
	if !slices.Contains(survivors, heir) || len(l.holders) != 1 {
		t.Errorf("after the kill: %v; want one of %v alone on the shard", l, survivors)
	}
	if taken := killedAt.Add(took); taken.Before(lastExpires) {
		t.Errorf("%s took the shard %v before %s's lease expired", heir, lastExpires.Sub(taken), killed)
	}
	if took < leaseDuration-2*leaseRenew {
		t.Errorf("hand-over after SIGKILL took %v, want about the lease (%v) less at most a renewal interval (%v)", took, leaseDuration, leaseRenew)
	}
	if took > leaseDuration+5*time.Second {
		t.Errorf("hand-over after SIGKILL took %v, want within the lease (%v) and a few balance rounds (%v)", took, leaseDuration, balanceEvery)
	}

	// The heir delivers live commits; then the writer stops, and every
	// commit comes through.
	distinctAtTake, _, _, _, _ := recv.counts()
	for {
		if distinct, _, _, _, _ := recv.counts(); distinct > distinctAtTake {
			break
		}
		if time.Since(killedAt) > took+30*time.Second {
			t.Fatalf("%s did not deliver within 30 s of taking the shard\n%s", heir, ws)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("deliveries resumed %v after the kill", time.Since(killedAt).Round(10*time.Millisecond))
	recv.waitFor(t, distinctAtTake+streamKillRate, 30*time.Second, ws)
	appended := d.appended + wr.stop()
	recv.waitFor(t, appended, 60*time.Second, ws)
	distinct, _, dupsAfter, _, problems := recv.counts()
	if distinct != appended || len(problems) > 0 {
		t.Errorf("received %d distinct commits of %d; problems %q", distinct, appended, problems)
	}
	// The heir resumes after the last record the killed daemon saved as
	// handled: what it handled after that comes again. It saved every
	// checkpoint interval and read a batch every read interval; at the
	// writer's rate that is about rate × (interval + read interval), here
	// allowed a second more for a slow machine.
	dups := dupsAfter - dupsBefore
	bound := int(float64(streamKillRate) * (streamCheckpointInterval + streamReadInterval + time.Second).Seconds())
	t.Logf("%d duplicates after the kill (bound %d); %d commits appended in all", dups, bound, appended)
	if dups > bound {
		t.Errorf("%d duplicates after the kill; want at most %d, about what %s handled in one checkpoint interval", dups, bound, killed)
	}

	// A clean stop of the survivors releases the shard; the subscription
	// stays on the stream, in the same epoch.
	for _, name := range survivors {
		if name != heir {
			ws[name].stop(t)
		}
	}
	ws[heir].stop(t)
	l = d.streamLayout(t)
	if l.wholeInfo.Phase != "stream" || l.wholeInfo.Epoch != epoch || l.whole.Owner != "" || l.whole.Lease != wholeLease {
		t.Errorf("the subscription's checkpoint after the stop: phase %q epoch %d owner %q lease %d; want phase stream, epoch %d, no owner, lease %d as before",
			l.wholeInfo.Phase, l.wholeInfo.Epoch, l.whole.Owner, l.whole.Lease, epoch, wholeLease)
	}
	if cp, ok := l.shards[shard]; !ok || cp.Owner != "" || len(l.shards) != 1 {
		t.Errorf("the shard units after the stop: %v; want %s alone, released", l, shard)
	} else if info, err := subscribe.DescribeCheckpoint(cp.Position, 0); err != nil || info.Phase != "stream" || info.Epoch != epoch {
		t.Errorf("%s's checkpoint after the stop: phase %q epoch %d (%v); want phase stream, epoch %d", shard, info.Phase, info.Epoch, err, epoch)
	}
}
