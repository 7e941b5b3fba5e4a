package main

import (
	"context"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// newBalancesTable creates a balances table for the test with EnsureTable,
// deleted at the end.
func newBalancesTable(t *testing.T) (*dynamodb.Client, string) {
	t.Helper()
	client := ddbtest.Client(t)
	table := ddbtest.TableName(t)
	if err := EnsureTable(t.Context(), client, table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	return client, table
}

// commit returns a commit of events for the account at version v.
func commit(t testing.TB, account string, v int64, events ...Event) subscribe.Commit {
	t.Helper()
	evs := make([]any, len(events))
	for i, e := range events {
		evs[i] = e
	}
	raw, err := store.MarshalEvents(evs...)
	if err != nil {
		t.Fatal(err)
	}
	return subscribe.Commit{AggregateID: account, Version: v, Events: raw,
		CommitID: store.FormatCommitID(946684800000+v, account), CommittedAt: 946684800000 + v}
}

// rawCommit returns a commit whose events are the given text.
func rawCommit(account string, v int64, events string) subscribe.Commit {
	return subscribe.Commit{AggregateID: account, Version: v, Events: []byte(events),
		CommitID: store.FormatCommitID(946684800000+v, account), CommittedAt: 946684800000 + v}
}

func opened(owner string) Event { return Event{Type: AccountOpened, Owner: owner} }
func deposit(n int64) Event     { return Event{Type: MoneyDeposited, Amount: n} }
func withdraw(n int64) Event    { return Event{Type: MoneyWithdrawn, Amount: n} }

// item returns the account's item as stored (strongly consistent), nil when
// there is none.
func item(t testing.TB, client *dynamodb.Client, table, account string) map[string]types.AttributeValue {
	t.Helper()
	out, err := client.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{attrAccountID: &types.AttributeValueMemberS{Value: account}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// account returns the account's item decoded; it fails the test when there
// is none.
func account(t testing.TB, client *dynamodb.Client, table, id string) Account {
	t.Helper()
	it := item(t, client, table, id)
	if it == nil {
		t.Fatalf("account %s: no item", id)
	}
	var a Account
	if err := attributevalue.UnmarshalMap(it, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// isSkip reports whether err is what subscribe.Skip returns.
func isSkip(err error) bool {
	return err != nil && reflect.TypeOf(err) == reflect.TypeOf(subscribe.Skip(nil))
}

// mustHandle applies c and fails the test on an error.
func mustHandle(t testing.TB, h *Handler, c subscribe.Commit) {
	t.Helper()
	if err := h.Handle(context.Background(), c); err != nil {
		t.Fatalf("Handle(%s v%d): %v", c.AggregateID, c.Version, err)
	}
}
