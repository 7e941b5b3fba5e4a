package memcheckpoint_test

import (
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/checkpointtest"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestConformance(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T, clock func() time.Time) (checkpoint.Store, checkpoint.ParkStore) {
		m := memcheckpoint.NewWithClock(clock)
		return m, m
	})
}

func TestInjectedClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6789012, time.FixedZone("X", 3600))
	m := memcheckpoint.NewWithClock(func() time.Time { return at })
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub"}
	cp, err := m.Claim(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = "p"
	if err := m.Save(ctx, cp); err != nil {
		t.Fatal(err)
	}
	got, err := m.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 2, 4, 5, 6000000, time.UTC)
	if !got.UpdatedAt.Equal(want) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("UpdatedAt = %v, want %v", got.UpdatedAt, want)
	}
	if err := m.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: store.Commit{AggregateID: "a", Events: []byte(`[1]`)}}); err != nil {
		t.Fatal(err)
	}
	for p, err := range m.Parked(ctx, "sub", "") {
		if err != nil {
			t.Fatal(err)
		}
		if !p.ParkedAt.Equal(want) {
			t.Errorf("ParkedAt = %v, want %v", p.ParkedAt, want)
		}
	}
}

// TestParkedCopiesEvents checks that callers cannot change what is stored
// through the Events slice they passed in or got back.
func TestParkedCopiesEvents(t *testing.T) {
	m := memcheckpoint.New()
	ctx := t.Context()
	events := []byte(`[1]`)
	if err := m.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: store.Commit{AggregateID: "a", Events: events}}); err != nil {
		t.Fatal(err)
	}
	events[1] = '2'
	for p := range m.Parked(ctx, "sub", "a") {
		p.Commit.Events[1] = '3'
	}
	for p := range m.Parked(ctx, "sub", "a") {
		if string(p.Commit.Events) != `[1]` {
			t.Errorf("events = %s, want [1]", p.Commit.Events)
		}
	}
}
