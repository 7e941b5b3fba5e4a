package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// newStore creates a fresh commits table for the test.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	client := ddbtest.Client(t)
	cfg := store.Config{TableName: ddbtest.TableName(t)}
	if err := store.CreateTable(t.Context(), client, cfg, store.TableOptions{NoStream: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	st, err := store.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// appendAccounts appends commits for n accounts, interleaved, the way the
// demo's writer does: an opening deposit, then deposits and withdrawals. One
// commit, version 2 of the second account, has events the read model cannot
// decode. It returns the accounts the read model must end with, and the
// number of commits.
func appendAccounts(t *testing.T, st *store.Store, n, commitsEach int) (map[string]Account, int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]Account{}
	total := 0
	for v := range int64(commitsEach) {
		for i := range n {
			id := fmt.Sprintf("account-%03d", i)
			a := want[id]
			a.AccountID, a.NextVersion = id, v+1
			var c store.Commit
			switch {
			case i == 1 && v == 2:
				c = rawCommit(id, v, `[{"type":"MoneyDeposited","amount":"lots"}]`)
				a.SkippedVersions = append(a.SkippedVersions, v)
			case v == 0:
				a.Owner, a.Balance = fmt.Sprintf("owner %d", i), 100
				c = commit(t, id, v, opened(a.Owner), deposit(100))
			case a.Balance > 50 && rng.IntN(3) == 0:
				amount := 1 + rng.Int64N(a.Balance/2)
				a.Balance -= amount
				c = commit(t, id, v, withdraw(amount))
			default:
				amount := 1 + rng.Int64N(200)
				a.Balance += amount
				c = commit(t, id, v, deposit(amount))
			}
			if _, err := st.Append(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			want[id] = a
			total++
		}
	}
	return want, total
}

// watch wraps the handler under test and records what it returned.
type watch struct {
	h        subscribe.Handler
	mu       sync.Mutex
	seen     map[string]bool // "aggregate/version" handled with nil or a skip
	skipped  []string
	failures []string
}

func newWatch(h subscribe.Handler) *watch { return &watch{h: h, seen: map[string]bool{}} }

func (w *watch) Handle(ctx context.Context, c subscribe.Commit) error {
	err := w.h.Handle(ctx, c)
	key := fmt.Sprintf("%s/%d", c.AggregateID, c.Version)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		w.seen[key] = true
	case isSkip(err):
		w.seen[key] = true
		w.skipped = append(w.skipped, key)
	default:
		w.failures = append(w.failures, fmt.Sprintf("%s: %v", key, err))
	}
	return err
}

// progress describes a watch when printed: commits handled and failures.
type progress struct {
	w     *watch
	total int
}

func (p progress) String() string {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return fmt.Sprintf("%d of %d handled; failures %v", len(p.w.seen), p.total, p.w.failures)
}

func (w *watch) handled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// skipHook records the commits the worker skipped.
type skipHook struct {
	mu      sync.Mutex
	skipped []string
}

func (h *skipHook) OnSkipped(_ string, c subscribe.Commit, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.skipped = append(h.skipped, fmt.Sprintf("%s/%d", c.AggregateID, c.Version))
}

// runWorker runs a worker with a fresh in-memory checkpoint store (so from
// the beginning of the table) and the handler, until every commit is
// handled; then it stops the worker and checks it stopped cleanly.
func runWorker(t *testing.T, st *store.Store, h subscribe.Handler, total int) (*watch, *skipHook) {
	t.Helper()
	wh, skips := newWatch(h), &skipHook{}
	w, err := subscribe.NewWorker(subscribe.Config{Reader: st, Checkpoints: memcheckpoint.New(), Hooks: []any{skips}})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Register(subscribe.Subscription{Name: Subscription, Handler: wh, Policy: subscribe.PolicyStop,
		Index: subscribe.IndexOptions{Settle: 50 * time.Millisecond, PollMin: 20 * time.Millisecond, PollMax: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	ddbtest.Eventually(t, 30*time.Second, func() bool { return wh.handled() == total },
		"every commit handled: %v", progress{wh, total})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on a clean stop", err)
	}
	return wh, skips
}

// TestWorkerEndToEnd runs the handler under a real worker: the balances
// equal those computed from the commits; a second worker from the
// beginning, delivering everything again, leaves them unchanged.
func TestWorkerEndToEnd(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	client, table := newBalancesTable(t)
	want, total := appendAccounts(t, st, 6, 6)
	h := NewHandler(client, table)

	check := func(name string, wh *watch, skips *skipHook) []Account {
		t.Helper()
		got, err := ReadAccounts(t.Context(), client, table)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d accounts, want %d", name, len(got), len(want))
		}
		for _, a := range got {
			if !reflect.DeepEqual(a, want[a.AccountID]) {
				t.Errorf("%s: account %+v, want %+v", name, a, want[a.AccountID])
			}
		}
		if len(wh.failures) > 0 {
			t.Errorf("%s: the handler failed: %v", name, wh.failures)
		}
		if w := []string{"account-001/2"}; !reflect.DeepEqual(wh.skipped, w) || !reflect.DeepEqual(skips.skipped, w) {
			t.Errorf("%s: the handler skipped %v and the worker %v, want %v", name, wh.skipped, skips.skipped, w)
		}
		return got
	}
	wh, skips := runWorker(t, st, h, total)
	first := check("first run", wh, skips)
	wh, skips = runWorker(t, st, h, total)
	again := check("second run from the beginning", wh, skips)
	if !reflect.DeepEqual(again, first) {
		t.Errorf("the second run changed the balances from %+v to %+v", first, again)
	}
}
