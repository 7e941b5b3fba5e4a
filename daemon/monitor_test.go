package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// fakes of the worker's health, the head of the index and the clock.
type fakeWorld struct {
	mu      sync.Mutex
	health  []subscribe.Health
	head    store.Position
	headErr error
	now     time.Time
}

func (f *fakeWorld) Health() []subscribe.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]subscribe.Health(nil), f.health...)
}

func (f *fakeWorld) Head(context.Context) (store.Position, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head, f.head != (store.Position{}), f.headErr
}

func (f *fakeWorld) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeWorld) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fakeWorld) set(fn func(f *fakeWorld)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

// commitAt returns the position of a commit at t.
func commitAt(t time.Time, agg string, v int64) store.Position {
	return store.Position{CommitID: store.FormatCommitID(t.UnixMilli(), agg), AggregateID: agg, Version: v}
}

// indexPosition is an index source's checkpoint with everything up to p
// handled.
func indexPosition(p store.Position) string {
	return fmt.Sprintf(`{"after":{"commitId":%q,"aggregateId":%q,"version":%d}}`, p.CommitID, p.AggregateID, p.Version)
}

// streamPosition is a stream source's checkpoint.
func streamPosition(seq string) string {
	return `{"phase":"stream","stream":{"streamArn":"arn:stream","shards":{"shard-1":"` + seq + `"},"resume":1}}`
}

func stuckOf(t *testing.T, m *monitor, sub string) (stuck, ready bool, why string) {
	t.Helper()
	for _, s := range m.status() {
		if s.h.Subscription == sub {
			ok, why := s.ready()
			return s.stuck, ok, why
		}
	}
	t.Fatalf("no subscription %q", sub)
	return
}

func TestMonitorStuck(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const after = 5 * time.Minute
	c1, c2 := commitAt(t0, "a", 0), commitAt(t0.Add(time.Second), "b", 0)

	t.Run("index checkpoint at the head is never stuck", func(t *testing.T) {
		w := &fakeWorld{now: t0, head: c1, health: []subscribe.Health{{Subscription: "s", State: subscribe.StateRunning, Position: indexPosition(c1)}}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.DiscardHandler))
		m.probe(t.Context())
		w.advance(time.Hour)
		m.probe(t.Context())
		if stuck, ready, why := stuckOf(t, m, "s"); stuck || !ready {
			t.Errorf("stuck %v, ready %v (%s); want ready", stuck, ready, why)
		}
	})

	t.Run("head past an index checkpoint that does not move", func(t *testing.T) {
		w := &fakeWorld{now: t0, head: c1, health: []subscribe.Health{{Subscription: "s", State: subscribe.StateRunning, Position: indexPosition(c1)}}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.DiscardHandler))
		m.probe(t.Context())
		w.advance(time.Minute)
		w.set(func(f *fakeWorld) { f.head = c2 }) // a new commit
		m.probe(t.Context())
		w.advance(after - time.Second)
		m.probe(t.Context())
		if stuck, _, _ := stuckOf(t, m, "s"); stuck {
			t.Fatal("stuck before --stuck-after")
		}
		w.advance(time.Second)
		stuck, ready, why := stuckOf(t, m, "s")
		if !stuck || ready || !strings.Contains(why, "stuck: checkpoint unchanged for 5m0s") {
			t.Fatalf("stuck %v, ready %v (%s); want stuck", stuck, ready, why)
		}
		ok, body := m.readiness()
		if ok || body != "s: running, not ready: stuck: checkpoint unchanged for 5m0s while commits wait (--stuck-after 5m0s)\n" {
			t.Errorf("readiness %v %q", ok, body)
		}
		// The checkpoint moves (not yet to the head): no longer stuck, and
		// stuck again only after another --stuck-after.
		w.set(func(f *fakeWorld) {
			f.health[0].Position = indexPosition(commitAt(t0.Add(500*time.Millisecond), "a", 1))
		})
		if stuck, ready, _ := stuckOf(t, m, "s"); stuck || !ready {
			t.Fatalf("stuck %v, ready %v after the checkpoint moved", stuck, ready)
		}
		w.advance(after)
		if stuck, _, _ := stuckOf(t, m, "s"); !stuck {
			t.Fatal("not stuck after the checkpoint stayed put again")
		}
		w.set(func(f *fakeWorld) { f.health[0].Position = indexPosition(c2) })
		w.advance(time.Hour)
		if stuck, ready, _ := stuckOf(t, m, "s"); stuck || !ready {
			t.Fatalf("stuck %v, ready %v at the head", stuck, ready)
		}
	})

	t.Run("a backlog at start counts without a new commit", func(t *testing.T) {
		w := &fakeWorld{now: t0, head: c2, health: []subscribe.Health{{Subscription: "s", State: subscribe.StateRunning, Position: indexPosition(c1)}}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.DiscardHandler))
		m.probe(t.Context())
		w.advance(after)
		if stuck, _, _ := stuckOf(t, m, "s"); !stuck {
			t.Fatal("a checkpoint behind the head from the start is not stuck after --stuck-after")
		}
	})

	t.Run("stream checkpoints compare by save time", func(t *testing.T) {
		w := &fakeWorld{now: t0.Add(2 * time.Second), head: c2, health: []subscribe.Health{
			{Subscription: "saved-after", State: subscribe.StateRunning, Position: streamPosition("100"), SavedAt: t0.Add(2 * time.Second)},
			{Subscription: "within-skew", State: subscribe.StateRunning, Position: streamPosition("100"), SavedAt: t0.Add(-5 * time.Second)},
			{Subscription: "saved-before", State: subscribe.StateRunning, Position: streamPosition("100"), SavedAt: t0.Add(-time.Minute)},
		}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.DiscardHandler))
		m.probe(t.Context())
		w.advance(after)
		for sub, want := range map[string]bool{"saved-after": false, "within-skew": false, "saved-before": true} {
			if stuck, _, _ := stuckOf(t, m, sub); stuck != want {
				t.Errorf("%s: stuck %v, want %v", sub, stuck, want)
			}
		}
	})

	t.Run("stopped and starting subscriptions are not ready, never stuck", func(t *testing.T) {
		w := &fakeWorld{now: t0, head: c2, health: []subscribe.Health{
			{Subscription: "stopped", State: subscribe.StateStopped, Position: indexPosition(c1), Err: errors.New("subscribe: subscription \"stopped\" stopped at aggregate \"a\" version 1:\nboom")},
			{Subscription: "starting", State: subscribe.StateStarting},
			{Subscription: "failing", State: subscribe.StateRunning, Position: indexPosition(c2), Err: errors.New("throttled"), SaveErr: errors.New("throttled"), SaveErrSince: t0},
		}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.DiscardHandler))
		m.probe(t.Context())
		w.advance(time.Hour)
		ok, body := m.readiness()
		want := "stopped: stopped, not ready: subscribe: subscription \"stopped\" stopped at aggregate \"a\" version 1: boom\n" +
			"starting: starting, not ready\n" +
			"failing: running, not ready: saving the checkpoint failing for 1h0m0s (--fail-after 10s): throttled\n"
		if ok || body != want {
			t.Errorf("readiness %v\n%s\nwant\n%s", ok, body, want)
		}
		if stuck, _, _ := stuckOf(t, m, "stopped"); stuck {
			t.Error("a stopped subscription counts as stuck")
		}
	})

	t.Run("head read errors", func(t *testing.T) {
		var logs strings.Builder
		w := &fakeWorld{now: t0, headErr: errors.New("throttled"), health: []subscribe.Health{{Subscription: "s", State: subscribe.StateRunning, Position: indexPosition(c1)}}}
		m := newMonitor(w, w, w.clock, after, slog.New(slog.NewTextHandler(&logs, nil)))
		for range 3 {
			m.probe(t.Context())
		}
		w.set(func(f *fakeWorld) { f.headErr = nil; f.head = c1 })
		m.probe(t.Context())
		if m.probes != 4 || m.probeErr != 3 {
			t.Errorf("probes %v, errors %v; want 4, 3", m.probes, m.probeErr)
		}
		if n := strings.Count(logs.String(), "reading the head of the commit-order index failed"); n != 1 {
			t.Errorf("%d warnings for one run of failures:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), "works again") {
			t.Errorf("no line for the recovery:\n%s", logs.String())
		}
		if ok, _ := m.readiness(); !ok {
			t.Error("not ready")
		}
	})
}

func TestProbeInterval(t *testing.T) {
	for _, c := range []struct{ stuckAfter, want time.Duration }{
		{5 * time.Minute, 15 * time.Second},
		{20 * time.Second, 5 * time.Second},
		{time.Millisecond, 10 * time.Millisecond},
	} {
		m := newMonitor(nil, nil, time.Now, c.stuckAfter, nil)
		if got := m.probeInterval(); got != c.want {
			t.Errorf("stuck after %v: probe every %v, want %v", c.stuckAfter, got, c.want)
		}
	}
}
