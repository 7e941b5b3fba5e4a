package subscribe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// fast is index tuning for tests: a short settle time and quick polls.
var fast = IndexOptions{Settle: 150 * time.Millisecond, Overlap: 2 * time.Second, PollMin: 20 * time.Millisecond, PollMax: 100 * time.Millisecond}

func TestReadModelEqualsTableWithConcurrentWriters(t *testing.T) {
	s := newTable(t, store.Config{})
	cps := memcheckpoint.New()
	w, err := NewWorker(Config{Reader: s, Checkpoints: cps})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := w.Register(Subscription{Name: "balances", Handler: rec, Index: fast, Concurrency: 6}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()

	want := writers(t, ctx, s, 8, 60, 640)
	ddbtest.Eventually(t, 30*time.Second, func() bool { return covers(rec.delivered(), want) }, "the worker did not deliver every commit")
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.check(t, want)
	if rec.duplicates != 0 {
		t.Fatalf("%d duplicates without any crash", rec.duplicates)
	}
	// The table itself agrees with what the writers think they wrote.
	for id, n := range want {
		got := int64(0)
		for c, err := range s.Query(context.Background(), id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			if c.Version != got {
				t.Fatalf("table: %s has version %d at %d", id, c.Version, got)
			}
			got++
		}
		if got != n {
			t.Fatalf("table: %s has %d versions, writers wrote %d", id, got, n)
		}
	}
	// The checkpoint was saved at stop and covers everything.
	cp, err := cps.Load(context.Background(), checkpointKey("balances"))
	if err != nil || cp.Position == "" {
		t.Fatalf("checkpoint after stop: %+v, %v", cp, err)
	}
	if cp.Owner != "" {
		t.Fatalf("a clean stop releases the checkpoint; owner is %q", cp.Owner)
	}
}

func TestRegisterRejectsBadSubscriptions(t *testing.T) {
	w, err := NewWorker(Config{Reader: newTable(t, store.Config{}), Checkpoints: memcheckpoint.New()})
	if err != nil {
		t.Fatal(err)
	}
	h := HandlerFunc(func(context.Context, Commit) error { return nil })
	cases := map[string]Subscription{
		"no name":         {Handler: h},
		"no handler":      {Name: "a"},
		"two handlers":    {Name: "a", Handler: h, BatchHandler: BatchHandlerFunc(func(context.Context, []Commit) error { return nil })},
		"bad concurrency": {Name: "a", Handler: h, Concurrency: -1},
		"bad policy":      {Name: "a", Handler: h, Policy: Policy(9)},
		"bad polls":       {Name: "a", Handler: h, Index: IndexOptions{PollMin: time.Second, PollMax: time.Millisecond}},
		"bad corrupt":     {Name: "a", Handler: h, Corrupt: CorruptPolicy(7)},
		"bad gap timeout": {Name: "a", Handler: h, GapTimeout: -time.Second},
	}
	for name, sub := range cases {
		if err := w.Register(sub); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Register = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := w.Register(Subscription{Name: "a", Handler: h}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "a", Handler: h}); !errors.Is(err, ErrDuplicateSubscription) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := NewWorker(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewWorker without reader: %v", err)
	}
	// Parking corrupt items (the default) needs a park store, even when
	// failed commits are skipped.
	noPark, err := NewWorker(Config{Reader: newTable(t, store.Config{}), Checkpoints: struct{ checkpoint.Store }{memcheckpoint.New()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := noPark.Register(Subscription{Name: "p", Handler: h, Policy: PolicySkip}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Corrupt park") {
		t.Fatalf("Register parking corrupt items without a park store = %v, want ErrInvalidConfig naming Corrupt", err)
	}
	if err := noPark.Register(Subscription{Name: "p", Handler: h, Policy: PolicySkip, Corrupt: CorruptSkip}); err != nil {
		t.Fatalf("Register skipping both without a park store: %v", err)
	}
	for _, s := range []string{"park", "skip"} {
		if p, err := ParseCorruptPolicy(s); err != nil || p.String() != s {
			t.Errorf("ParseCorruptPolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParseCorruptPolicy("stop"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseCorruptPolicy(stop) = %v, want ErrInvalidConfig", err)
	}
}
