package subscribe_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// exampleStore creates a commits table for an example.
func exampleStore(ctx context.Context, table string) (*store.Store, func(), error) {
	client, err := dynamolocal.NewClient(ctx, ddbtest.ExampleEndpoint())
	if err != nil {
		return nil, nil, err
	}
	cfg := store.Config{TableName: table}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		return nil, nil, err
	}
	s, err := store.New(client, cfg)
	return s, func() { _ = store.DeleteTable(ctx, client, cfg) }, err
}

// printer prints each commit and signals when it has seen n of them.
type printer struct {
	mu   sync.Mutex
	left int
	done chan struct{}
}

func (p *printer) Handle(_ context.Context, c subscribe.Commit) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Println("handled", c.AggregateID, c.Version)
	if p.left--; p.left == 0 {
		close(p.done)
	}
	return nil
}

// A subscription runs until its context ends; Run then drains what is in
// flight, saves the checkpoint, and returns nil.
func ExampleWorker() {
	ctx := context.Background()
	s, drop, err := exampleStore(ctx, "ExampleWorker")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer drop()
	for v := range 3 {
		events, _ := store.MarshalEvents(map[string]any{"type": "MoneyDeposited", "amount": 10})
		if _, err := s.Append(ctx, store.Commit{AggregateID: "account-1", Version: int64(v), Events: events}); err != nil {
			fmt.Println(err)
			return
		}
	}

	w, err := subscribe.NewWorker(subscribe.Config{Reader: s, Checkpoints: memcheckpoint.New()})
	if err != nil {
		fmt.Println(err)
		return
	}
	p := &printer{left: 3, done: make(chan struct{})}
	if err := w.Register(subscribe.Subscription{Name: "balances", Handler: p,
		Index: subscribe.IndexOptions{Settle: 100 * time.Millisecond, PollMin: 20 * time.Millisecond}}); err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	result := make(chan error, 1)
	go func() { result <- w.Run(runCtx) }()
	<-p.done
	stop() // as on SIGTERM
	fmt.Println("Run returned", <-result)
	// Output:
	// handled account-1 0
	// handled account-1 1
	// handled account-1 2
	// Run returned <nil>
}

// A new worker on the same checkpoints resumes where the last one stopped.
func ExampleWorker_resume() {
	ctx := context.Background()
	s, drop, err := exampleStore(ctx, "ExampleWorker_resume")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer drop()
	checkpoints := memcheckpoint.New() // dynamocheckpoint in production: it outlives the process
	appendAt := func(v int64) {
		events, _ := store.MarshalEvents(map[string]any{"type": "MoneyDeposited", "amount": v})
		if _, err := s.Append(ctx, store.Commit{AggregateID: "account-1", Version: v, Events: events}); err != nil {
			fmt.Println(err)
		}
	}
	runUntil := func(n int) {
		w, err := subscribe.NewWorker(subscribe.Config{Reader: s, Checkpoints: checkpoints})
		if err != nil {
			fmt.Println(err)
			return
		}
		p := &printer{left: n, done: make(chan struct{})}
		if err := w.Register(subscribe.Subscription{Name: "balances", Handler: p,
			Index: subscribe.IndexOptions{Settle: 100 * time.Millisecond, PollMin: 20 * time.Millisecond}}); err != nil {
			fmt.Println(err)
			return
		}
		runCtx, stop := context.WithCancel(ctx)
		result := make(chan error, 1)
		go func() { result <- w.Run(runCtx) }()
		<-p.done
		stop()
		if err := <-result; err != nil {
			fmt.Println(err)
		}
	}

	appendAt(0)
	appendAt(1)
	runUntil(2)
	fmt.Println("-- restart")
	appendAt(2)
	runUntil(1)
	// Output:
	// handled account-1 0
	// handled account-1 1
	// -- restart
	// handled account-1 2
}
