package main

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

func TestHandleAppliesCommits(t *testing.T) {
	t.Parallel()
	client, table := newBalancesTable(t)
	h := NewHandler(client, table)
	mustHandle(t, h, commit(t, "acc-1", 0, opened("Ada"), deposit(100)))
	mustHandle(t, h, commit(t, "acc-2", 0, opened("Grace")))
	mustHandle(t, h, commit(t, "acc-1", 1, withdraw(30)))
	mustHandle(t, h, commit(t, "acc-2", 1, deposit(7)))
	mustHandle(t, h, commit(t, "acc-1", 2, deposit(5), withdraw(10), Event{Type: "AddressChanged"}))
	mustHandle(t, h, commit(t, "acc-2", 2, opened("Grace Hopper")))

	for _, want := range []Account{
		{AccountID: "acc-1", Owner: "Ada", Balance: 65, NextVersion: 3},
		{AccountID: "acc-2", Owner: "Grace Hopper", Balance: 7, NextVersion: 3},
	} {
		if got := account(t, client, table, want.AccountID); !reflect.DeepEqual(got, want) {
			t.Errorf("account %s = %+v, want %+v", want.AccountID, got, want)
		}
	}
	got, err := ReadAccounts(t.Context(), client, table)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].AccountID != "acc-1" || got[1].AccountID != "acc-2" {
		t.Errorf("ReadAccounts = %+v, want acc-1 and acc-2", got)
	}
}

func TestHandleTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	client, table := newBalancesTable(t)
	h := NewHandler(client, table)
	c0 := commit(t, "acc", 0, opened("Ada"), deposit(100))
	c1 := commit(t, "acc", 1, withdraw(40))
	mustHandle(t, h, c0)
	mustHandle(t, h, c1)
	before := item(t, client, table, "acc")

	for _, again := range []struct {
		name string
		c    subscribe.Commit
	}{{"the last one", c1}, {"an older one", c0}} {
		c := again.c
		if err := h.Handle(t.Context(), c); err != nil {
			t.Errorf("%s again: Handle = %v, want nil", again.name, err)
		}
		if after := item(t, client, table, "acc"); !reflect.DeepEqual(after, before) {
			t.Errorf("%s again: item changed from %v to %v", again.name, before, after)
		}
	}
	if a := account(t, client, table, "acc"); a.Balance != 60 || a.NextVersion != 2 {
		t.Errorf("account = %+v, want balance 60, next version 2", a)
	}
	// The next commit still applies after the repeats.
	mustHandle(t, h, commit(t, "acc", 2, deposit(1)))
	if a := account(t, client, table, "acc"); a.Balance != 61 || a.NextVersion != 3 {
		t.Errorf("after version 2: account = %+v, want balance 61, next version 3", a)
	}
}

// TestHandleConcurrentDuplicates delivers one commit from several
// goroutines at once (two workers around a lost lease): it is applied once,
// and every call succeeds.
func TestHandleConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	client, table := newBalancesTable(t)
	h := NewHandler(client, table)
	mustHandle(t, h, commit(t, "acc", 0, opened("Ada"), deposit(100)))
	c := commit(t, "acc", 1, deposit(10))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = h.Handle(context.Background(), c) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if a := account(t, client, table, "acc"); a.Balance != 110 || a.NextVersion != 2 {
		t.Errorf("account = %+v, want balance 110 (applied once), next version 2", a)
	}
}

func TestHandleGap(t *testing.T) {
	t.Parallel()
	client, table := newBalancesTable(t)
	h := NewHandler(client, table)
	mustHandle(t, h, commit(t, "acc", 0, opened("Ada"), deposit(100)))
	before := item(t, client, table, "acc")

	tests := []struct {
		name    string
		account string
		version int64
		raw     string // the events' text; default a deposit
		next    int64
	}{
		{"a version missing", "acc", 2, "", 1},
		{"an account with no item", "new", 1, "", 0},
		{"an undecodable commit past a gap", "acc", 3, `{"not":"an array"}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := commit(t, tt.account, tt.version, deposit(5))
			if tt.raw != "" {
				c = rawCommit(tt.account, tt.version, tt.raw)
			}
			err := h.Handle(t.Context(), c)
			var gap *GapError
			if !errors.Is(err, ErrGap) || !errors.As(err, &gap) || isSkip(err) {
				t.Fatalf("Handle = %v, want a *GapError matching ErrGap", err)
			}
			if want := (GapError{AccountID: tt.account, Version: tt.version, Next: tt.next}); *gap != want {
				t.Errorf("GapError = %+v, want %+v", *gap, want)
			}
		})
	}
	if after := item(t, client, table, "acc"); !reflect.DeepEqual(after, before) {
		t.Errorf("item changed from %v to %v", before, after)
	}
	if it := item(t, client, table, "new"); it != nil {
		t.Errorf("a gap on a new account wrote %v", it)
	}
}

func TestHandleUndecodable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events string
	}{
		{"not an array", `{"type":"MoneyDeposited","amount":5}`},
		{"amount not a number", `[{"type":"MoneyDeposited","amount":"ten"}]`},
		{"negative amount", `[{"type":"MoneyDeposited","amount":5},{"type":"MoneyWithdrawn","amount":-5}]`},
		{"beyond int64", `[{"type":"MoneyDeposited","amount":9223372036854775807},{"type":"MoneyDeposited","amount":1}]`},
	}
	client, table := newBalancesTable(t)
	h := NewHandler(client, table)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "acc-" + tt.name // an account of its own
			mustHandle(t, h, commit(t, id, 0, opened("Ada"), deposit(100)))
			bad := rawCommit(id, 1, tt.events)
			err := h.Handle(t.Context(), bad)
			if !isSkip(err) || !errors.Is(err, ErrUndecodable) {
				t.Fatalf("Handle = %v, want subscribe.Skip wrapping ErrUndecodable", err)
			}
			want := Account{AccountID: id, Owner: "Ada", Balance: 100, NextVersion: 2, SkippedVersions: []int64{1}}
			if got := account(t, client, table, id); !reflect.DeepEqual(got, want) {
				t.Errorf("after the skip: %+v, want %+v", got, want)
			}
			// A repeat is the same skip, and changes nothing.
			before := item(t, client, table, id)
			if err := h.Handle(t.Context(), bad); !isSkip(err) {
				t.Errorf("again: Handle = %v, want a skip", err)
			}
			if after := item(t, client, table, id); !reflect.DeepEqual(after, before) {
				t.Errorf("again: item changed from %v to %v", before, after)
			}
			// The account goes on.
			mustHandle(t, h, commit(t, id, 2, deposit(5)))
			want.Balance, want.NextVersion = 105, 3
			if got := account(t, client, table, id); !reflect.DeepEqual(got, want) {
				t.Errorf("after version 2: %+v, want %+v", got, want)
			}
		})
	}
}

func TestEnsureTable(t *testing.T) {
	t.Parallel()
	client, table := newBalancesTable(t) // created by EnsureTable
	d, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkKey(d.Table); err != nil {
		t.Error(err)
	}
	if d.Table.BillingModeSummary == nil || d.Table.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode %+v, want PAY_PER_REQUEST", d.Table.BillingModeSummary)
	}
	// Again: it exists, nothing to do, and what it holds stays.
	mustHandle(t, NewHandler(client, table), commit(t, "acc", 0, deposit(1)))
	if err := EnsureTable(t.Context(), client, table); err != nil {
		t.Fatalf("EnsureTable on an existing table: %v", err)
	}
	if a := account(t, client, table, "acc"); a.Balance != 1 {
		t.Errorf("account after EnsureTable again: %+v", a)
	}

	// A table of that name with another key is refused.
	other := ddbtest.TableName(t)
	_, err = client.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(other),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(other)})
	})
	if err := EnsureTable(t.Context(), client, other); !errors.Is(err, ErrTableMismatch) {
		t.Errorf("EnsureTable on a table keyed by id: %v, want ErrTableMismatch", err)
	}
}
