package store_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Appending a version that is taken returns a *VersionConflictError.
func ExampleStore_Append() {
	ctx := context.Background()
	client, err := dynamolocal.NewClient(ctx, ddbtest.ExampleEndpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := store.Config{TableName: "ExampleStore_Append"}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = store.DeleteTable(ctx, client, cfg) }()
	s, err := store.New(client, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}

	opened, _ := store.MarshalEvents(map[string]any{"type": "AccountOpened", "owner": "Ada"})
	c, err := s.Append(ctx, store.Commit{AggregateID: "account-1", Version: 0, Events: opened})
	fmt.Println("appended version", c.Version, err)

	// A second writer that also read the empty history appends version 0.
	_, err = s.Append(ctx, store.Commit{AggregateID: "account-1", Version: 0, Events: opened})
	var conflict *store.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Printf("conflict: %s already has version %d\n", conflict.AggregateID, conflict.Version)
	}
	fmt.Println(errors.Is(err, store.ErrVersionConflict))

	for c, err := range s.Query(ctx, "account-1", 0) {
		fmt.Println(c.AggregateID, c.Version, string(c.Events), err)
	}
	// Output:
	// appended version 0 <nil>
	// conflict: account-1 already has version 0
	// true
	// account-1 0 [{"owner":"Ada","type":"AccountOpened"}] <nil>
}
