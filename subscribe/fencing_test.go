package subscribe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestFencedWorkerStopsAndCannotMoveTheCheckpoint: another process claims a
// running worker's checkpoint. The worker's next save is refused, it stops
// with the fencing error, and the position the new owner holds is not moved
// by it, not even by its final save.
func TestFencedWorkerStopsAndCannotMoveTheCheckpoint(t *testing.T) {
	s := newTable(t, store.Config{})
	cps := memcheckpoint.New()
	rec := newRecorder()
	w, err := NewWorker(Config{Reader: s, Checkpoints: cps, Owner: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Register(Subscription{Name: "fenced", Handler: rec, Index: fast, CheckpointInterval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	appendN(t, s, []string{"a"}, 2)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["a"] == 2 }, "not delivered")

	key := checkpoint.Key{Subscription: "fenced"}
	taken, err := cps.Claim(context.Background(), key, "new")
	if err != nil {
		t.Fatal(err)
	}
	// The old worker handles more and tries to save.
	if _, err := s.Append(context.Background(), store.Commit{AggregateID: "b", Version: 0, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, checkpoint.ErrFenced) {
			t.Fatalf("Run = %v, want the fencing error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fenced worker did not stop")
	}
	if h := w.Health()[0]; h.State != StateStopped || !errors.Is(h.Err, checkpoint.ErrFenced) {
		t.Fatalf("health %+v", h)
	}
	now, err := cps.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if now.Owner != "new" || now.Lease != taken.Lease || now.Position != taken.Position {
		t.Fatalf("the fenced worker moved the checkpoint: %+v, claimed %+v", now, taken)
	}
}
