package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// A daemon around a Go handler: the program takes the flags, variables,
// configuration file, endpoints and signals of `eventstore worker`, and
// runs the handler as the subscription "balances" (settings for it, such
// as --concurrency or a file's "balances" entry, apply).
func Example_goHandler() {
	balances := subscribe.HandlerFunc(func(ctx context.Context, c subscribe.Commit) error {
		// Update the read model, idempotently on (c.AggregateID, c.Version).
		return nil
	})
	if len(os.Args) > 1 && os.Args[1] == "run-the-example" { // keeps the example from running as a test
		daemon.Main(daemon.Options{Handlers: map[string]subscribe.Handler{"balances": balances}})
	}
}

// JSONLines writes one line of JSON per commit, the handler behind
// --handler stdout.
func ExampleJSONLines() {
	h := daemon.JSONLines(os.Stdout)
	c := store.Commit{CommitID: "20240102030405006:account-1", CommittedAt: 1704164645006, AggregateID: "account-1", Version: 3,
		Events: json.RawMessage(`[{"type":"MoneyDeposited","amount":10}]`)}
	if err := h.Handle(context.Background(), c); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"commitId":"20240102030405006:account-1","committedAt":1704164645006,"aggregateId":"account-1","version":3,"events":[{"type":"MoneyDeposited","amount":10}]}
}

// A configuration file with two subscriptions, each with its handler and
// policy; the webhook's secret comes from the environment.
func ExampleLoadFile() {
	f, err := os.CreateTemp("", "worker-*.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(f.Name())
	_, _ = f.WriteString(`{
	  "checkpointTable": "eventstoreCheckpoints",
	  "subscriptions": [
	    {"name": "orders", "policy": "stop",
	     "handler": {"type": "webhook", "url": "https://orders.example.com/hook", "secretEnv": "ORDERS_WEBHOOK_SECRET"}},
	    {"name": "audit", "source": "stream", "handler": {"type": "stdout"}}
	  ]
	}`)
	_ = f.Close()
	cfg, err := daemon.LoadFile(f.Name())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range cfg.Subscriptions {
		fmt.Printf("%s: %s handler, policy %q, source %q\n", s.Name, s.Handler.Type, s.Policy, s.Source)
	}
	// Output:
	// orders: webhook handler, policy "stop", source ""
	// audit: stdout handler, policy "", source "stream"
}
