package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// shardedPosition is a leased stream subscription's position as the stream
// source saves it, every commit handled before handled (resume is that
// plus the default margin, 10 s).
func shardedPosition(t *testing.T, epoch int64, handled time.Time, finished ...string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"phase": "stream", "stream": map[string]any{
		"streamArn": "arn:stream", "epoch": epoch, "resume": handled.Add(10 * time.Second).UnixMilli(), "finished": finished}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// subLagOf returns eventstore_daemon_subscription_lag_seconds of sub, and
// whether it is exported.
func subLagOf(t *testing.T, m *monitor, sub string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	return gathered(t, reg, "eventstore_daemon_subscription_lag_seconds", map[string]string{"subscription": sub})
}

// TestSubscriptionLagAcrossDaemons: two daemons each hold one shard unit
// of a stream subscription that has handed over to its shards, on
// DynamoDB Local's checkpoint table. Each exports the subscription's lag
// from the checkpoints of every unit: the same value, the greatest of the
// live shard units' lags, not the hand-over's, nor only its own units'.
// A unit no daemon holds any more counts too: its lag grows with the head.
func TestSubscriptionLagAcrossDaemons(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	cfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t) + "-cp"}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cfg) })
	cps, err := dynamocheckpoint.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	head := commitAt(t0, "a", 0)
	save := func(unit, owner, position string, release bool) checkpoint.Checkpoint {
		t.Helper()
		cp, err := cps.Claim(ctx, checkpoint.Key{Subscription: "orders", Unit: unit}, owner)
		if err != nil {
			t.Fatal(err)
		}
		cp.Position = position
		if err := cps.Save(ctx, cp); err != nil {
			t.Fatal(err)
		}
		if release {
			if err := cps.Release(ctx, cp); err != nil {
				t.Fatal(err)
			}
		}
		return cp
	}
	// The hand-over, 98 s before the head: unit "" saved with its lease
	// counter as the epoch, then released.
	whole, err := cps.Claim(ctx, checkpoint.Key{Subscription: "orders"}, "daemon-a")
	if err != nil {
		t.Fatal(err)
	}
	epoch := whole.Lease
	whole.Position = shardedPosition(t, epoch, t0.Add(-98*time.Second))
	if err := cps.Save(ctx, whole); err != nil {
		t.Fatal(err)
	}
	if err := cps.Release(ctx, whole); err != nil {
		t.Fatal(err)
	}
	save("shard-s-a", "daemon-a", shardedPosition(t, epoch, t0.Add(-300*time.Second), "s-a"), true) // read to its end
	save("shard-s-b", "daemon-a", shardedPosition(t, epoch, t0.Add(-13*time.Second)), false)
	c := save("shard-s-c", "daemon-b", shardedPosition(t, epoch, t0.Add(-8*time.Second)), false)

	daemon := func(unit string) (*fakeWorld, *monitor) {
		w := &fakeWorld{now: t0, head: head, health: []subscribe.Health{{Subscription: "orders", Unit: unit, State: subscribe.StateRunning}}}
		m := newMonitor(w, w, w.clock, time.Minute, slog.New(slog.DiscardHandler))
		m.lister = cps
		return w, m
	}
	wa, a := daemon("shard-s-b")
	wb, b := daemon("shard-s-c")
	want := func(lag float64) {
		t.Helper()
		for name, m := range map[string]*monitor{"daemon a": a, "daemon b": b} {
			m.probe(ctx)
			if got, ok := subLagOf(t, m, "orders"); !ok || got != lag {
				t.Errorf("%s: subscription lag %v (exported %v), want %v", name, got, ok, lag)
			}
		}
	}
	want(13)

	// Shard c falls behind on daemon b: both say so.
	c.Position = shardedPosition(t, epoch, t0.Add(-40*time.Second))
	if err := cps.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	want(40)

	// Daemon b dies: shard c is held by no live daemon, and its lag grows
	// with every commit; daemon a, which never held it, tells.
	wb.set(func(f *fakeWorld) { f.health = nil })
	for _, w := range []*fakeWorld{wa, wb} {
		w.set(func(f *fakeWorld) { f.head, f.now = commitAt(t0.Add(60*time.Second), "a", 1), t0.Add(60*time.Second) })
	}
	a.probe(ctx)
	if got, ok := subLagOf(t, a, "orders"); !ok || got != 100 {
		t.Errorf("daemon a: subscription lag %v (exported %v), want 100", got, ok)
	}
	b.probe(ctx)
	if _, ok := subLagOf(t, b, "orders"); ok {
		t.Error("daemon b runs no subscription, yet exports a lag")
	}
}

// fakeLister lists checkpoints through a function.
type fakeLister func(sub string) ([]checkpoint.Checkpoint, error)

func (f fakeLister) List(_ context.Context, sub string) iter.Seq2[checkpoint.Checkpoint, error] {
	return func(yield func(checkpoint.Checkpoint, error) bool) {
		cps, err := f(sub)
		for _, cp := range cps {
			if !yield(cp, nil) {
				return
			}
		}
		if err != nil {
			yield(checkpoint.Checkpoint{}, err)
		}
	}
}

// TestSubscriptionLagListing: a listing that fails keeps the last lag (the
// series does not vanish under an alert's "for"), and says so once; a lag
// that cannot be known (a unit at the beginning) is not exported; corrupt
// items are passed over; an empty index is caught up.
func TestSubscriptionLagListing(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var listErr error
	positions := map[string]string{"behind": indexPosition(commitAt(t0.Add(-30*time.Second), "a", 0)), "fresh": `{"after":{}}`}
	lister := fakeLister(func(sub string) ([]checkpoint.Checkpoint, error) {
		if listErr != nil {
			return nil, listErr
		}
		return []checkpoint.Checkpoint{{Key: checkpoint.Key{Subscription: sub}, Position: positions[sub]}}, fmt.Errorf("item: %w", dynamocheckpoint.ErrCorruptItem)
	})
	w := &fakeWorld{now: t0, head: commitAt(t0, "a", 1), health: []subscribe.Health{
		{Subscription: "behind", State: subscribe.StateRunning}, {Subscription: "fresh", State: subscribe.StateRunning}}}
	var logs strings.Builder
	m := newMonitor(w, w, w.clock, time.Minute, slog.New(slog.NewTextHandler(&logs, nil)))
	m.lister = lister
	m.probe(t.Context())
	if got, ok := subLagOf(t, m, "behind"); !ok || got != 30 {
		t.Errorf("behind: %v (exported %v), want 30", got, ok)
	}
	if _, ok := subLagOf(t, m, "fresh"); ok {
		t.Error("fresh: a lag exported for a subscription at the beginning")
	}
	listErr = errors.New("throttled")
	m.probe(t.Context())
	m.probe(t.Context())
	if got, ok := subLagOf(t, m, "behind"); !ok || got != 30 {
		t.Errorf("behind, listing failing: %v (exported %v), want the last, 30", got, ok)
	}
	if n := strings.Count(logs.String(), "listing a subscription's checkpoints for its lag failed"); n != 1 {
		t.Errorf("%d warnings for a listing failing twice, want 1:\n%s", n, logs.String())
	}
	listErr = nil
	w.set(func(f *fakeWorld) { f.head = store.Position{} }) // an empty index
	m.probe(t.Context())
	if got, ok := subLagOf(t, m, "behind"); !ok || got != 0 {
		t.Errorf("behind, empty index: %v (exported %v), want 0", got, ok)
	}
	if !strings.Contains(logs.String(), "works again") {
		t.Errorf("no word that the listing works again:\n%s", logs.String())
	}
}
