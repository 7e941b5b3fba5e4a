package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// A receiver reads the raw body, verifies its signature with the shared
// secret, and only then decodes the commit. It answers 2xx once the commit
// is handled; any other answer makes the worker retry.
func ExampleVerify() {
	secret := []byte("shared secret")

	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := webhook.Verify(secret, body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var c store.Commit
		if err := json.Unmarshal(body, &c); err != nil {
			http.Error(w, "not a commit", http.StatusBadRequest)
			return
		}
		fmt.Printf("%s from %s: %s version %d: %s\n", r.Header.Get(webhook.DeliveryHeader),
			r.Header.Get(webhook.SubscriptionHeader), c.AggregateID, c.Version, c.Events)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(receiver)
	defer srv.Close()

	c := store.Commit{
		CommitID:    "20240102030405006:account-1",
		CommittedAt: 1704164645006,
		AggregateID: "account-1",
		Version:     3,
		Events:      json.RawMessage(`[{"type":"MoneyDeposited","amount":10}]`),
	}
	ctx := context.Background()

	signed, err := webhook.New(webhook.Config{URL: srv.URL, Secret: secret, Subscription: "balances"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("signed:", signed.Handle(ctx, c))

	forged, err := webhook.New(webhook.Config{URL: srv.URL, Secret: []byte("guess"), Subscription: "balances"})
	if err != nil {
		fmt.Println(err)
		return
	}
	var se *webhook.StatusError
	if err := forged.Handle(ctx, c); errors.As(err, &se) {
		fmt.Printf("forged: status %d, body %q\n", se.StatusCode, se.Body)
	}
	// Output:
	// account-1/3 from balances: account-1 version 3: [{"type":"MoneyDeposited","amount":10}]
	// signed: <nil>
	// forged: status 401, body "bad signature\n"
}

// A webhook is registered with a worker like any handler; the subscription's
// retry and failure policies apply to failed deliveries.
func ExampleNew() {
	h, err := webhook.New(webhook.Config{
		URL:          "https://projections.example.com/hooks/commits",
		Secret:       []byte("shared secret"),
		Header:       http.Header{"Authorization": {"Bearer token"}},
		Subscription: "balances",
		Timeout:      5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	sub := subscribe.Subscription{
		Name:         "balances",
		BatchHandler: h, // or Handler: h, for one commit per request
		Policy:       subscribe.PolicyPark,
		MaxBatch:     50,
	}
	fmt.Println(sub.Name, "posts to the webhook")
	// Output: balances posts to the webhook
}
