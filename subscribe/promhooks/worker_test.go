package promhooks_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/subscribe/promhooks"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

// value returns the value of the series name{labels} in reg (a
// histogram's sample count), and whether it exists.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// TestWithWorkerAndStore wires Metrics into a real store and worker on
// DynamoDB Local: the worker finds the hooks, and the store reports the
// capacity of its table and index.
func TestWithWorkerAndStore(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	client := ddbtest.Client(t)
	cfg := store.Config{TableName: ddbtest.TableName(t), ConsumedCapacity: m.ConsumedCapacity}
	ctx := t.Context()
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{NoStream: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	st, err := store.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// a: 3 commits, the last skipped by its handler; b: 2 commits, the
	// second failing once; c: 1 commit that always fails and is parked.
	for _, c := range []struct {
		id string
		n  int
	}{{"a", 3}, {"b", 2}, {"c", 1}} {
		for v := range c.n {
			if _, err := st.Append(ctx, store.Commit{AggregateID: c.id, Version: int64(v), Events: []byte(`[{"n":1},{"n":2}]`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	failedB := false
	h := subscribe.HandlerFunc(func(_ context.Context, c subscribe.Commit) error {
		switch key := fmt.Sprintf("%s/%d", c.AggregateID, c.Version); key {
		case "a/2":
			return subscribe.Skip(errors.New("not interesting"))
		case "b/1":
			mu.Lock()
			defer mu.Unlock()
			if !failedB {
				failedB = true
				return errors.New("transient")
			}
		case "c/0":
			return errors.New("permanent")
		}
		return nil
	})
	cps := memcheckpoint.New()
	w, err := subscribe.NewWorker(subscribe.Config{Reader: st, Checkpoints: cps, Hooks: []any{m}, RequestPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const sub = "projector"
	err = w.Register(subscribe.Subscription{
		Name:               sub,
		Handler:            h,
		Retry:              subscribe.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		CheckpointInterval: 50 * time.Millisecond,
		Index:              subscribe.IndexOptions{Settle: 150 * time.Millisecond, Overlap: 2 * time.Second, PollMin: 20 * time.Millisecond, PollMax: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(runCtx) }()

	s := func(name string) float64 {
		v, _ := value(t, reg, "eventstore_subscription_"+name, "subscription", sub)
		return v
	}
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		return s("commits_handled_total") == 4 && s("skipped_commits_total") == 1 && s("parked_commits_total") == 1 &&
			s("checkpoint_writes_total") >= 1
	}, "the worker did not handle, skip and park the commits")
	// Lag is reported once per checkpoint interval; wait for a report
	// after everything was handled.
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		v, ok := value(t, reg, "eventstore_subscription_lag_commits", "subscription", sub)
		return ok && v == 0
	}, "lag not reported as caught up")
	// An operator discards c's parked commit.
	if _, err := cps.Request(ctx, checkpoint.Request{Subscription: sub, AggregateID: "c", Kind: checkpoint.RequestDiscard}); err != nil {
		t.Fatal(err)
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		v, _ := value(t, reg, "eventstore_subscription_requests_total", "subscription", sub, "kind", "discard", "result", "ok")
		return v == 1
	}, "the discard request was not counted")
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}

	for _, c := range []struct {
		name string
		want float64
	}{
		{"commits_handled_total", 4},
		{"events_handled_total", 8},
		{"retries_total", 2},        // b/1 once, c/0 once
		{"handler_errors_total", 4}, // a/2, b/1, c/0 twice
		{"skipped_commits_total", 1},
		{"parked_commits_total", 1},
		{"late_arrivals_total", 0},
		{"duplicates_total", 0},
		{"corrupt_items_total", 0},
		{"poll_errors_total", 0},
		{"checkpoint_write_errors_total", 0},
		{"stopped", 0}, // a clean stop
	} {
		if got := s(c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if got := s("commits_read_total"); got < 6 {
		t.Errorf("commits_read_total = %v, want 6 or more", got)
	}
	for _, name := range []string{"polls_total", "poll_duration_seconds", "handler_duration_seconds", "checkpoint_writes_total"} {
		if got := s(name); got < 1 {
			t.Errorf("%s = %v, want 1 or more", name, got)
		}
	}
	// Appends consume capacity on the table and its index; the worker's
	// scans read the index.
	for _, c := range []struct{ op, resource string }{
		{"Append", cfg.TableName},
		{"Append", store.DefaultIndexName},
		{"Scan", store.DefaultIndexName},
	} {
		v, ok := value(t, reg, "eventstore_store_consumed_capacity_units_total", "operation", c.op, "resource", c.resource)
		if !ok || v <= 0 {
			t.Errorf("consumed capacity of %s on %s = %v (present %v), want more than 0", c.op, c.resource, v, ok)
		}
	}
}
