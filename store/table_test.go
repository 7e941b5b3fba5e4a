package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// fakeTableAPI fakes the table management calls with function fields.
type fakeTableAPI struct {
	create   func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
	describe func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
}

func (f *fakeTableAPI) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return f.create(in)
}
func (f *fakeTableAPI) DeleteTable(context.Context, *dynamodb.DeleteTableInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteTableOutput, error) {
	return nil, errors.New("fakeTableAPI: DeleteTable not expected")
}
func (f *fakeTableAPI) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return f.describe(in)
}

// fastPolls makes table waits poll every millisecond for this test. The
// test must not be parallel.
func fastPolls(t *testing.T) {
	old := ddbtable.PollInterval
	ddbtable.PollInterval = time.Millisecond
	t.Cleanup(func() { ddbtable.PollInterval = old })
}

// TestCreateTableWaitsForAnotherCreation: when another process is still
// creating the table, CreateTable returns ErrTableExists only once the table
// and its index are no longer CREATING.
func TestCreateTableWaitsForAnotherCreation(t *testing.T) {
	fastPolls(t)
	inUse := func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
		return nil, &types.ResourceInUseException{Message: aws.String("Table already exists")}
	}
	desc := func(table, index types.TableStatus) *dynamodb.DescribeTableOutput {
		return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
			TableName:              aws.String("commits"),
			TableStatus:            table,
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{{IndexName: aws.String(store.DefaultIndexName), IndexStatus: types.IndexStatus(index)}},
		}}
	}
	cfg := store.Config{TableName: "commits"}

	t.Run("waits", func(t *testing.T) {
		states := []*dynamodb.DescribeTableOutput{
			desc(types.TableStatusCreating, types.TableStatusCreating),
			desc(types.TableStatusActive, types.TableStatusCreating),
			desc(types.TableStatusActive, types.TableStatusActive),
		}
		calls := 0
		api := &fakeTableAPI{create: inUse, describe: func(in *dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			if aws.ToString(in.TableName) != "commits" {
				t.Errorf("described %q", aws.ToString(in.TableName))
			}
			calls++
			return states[min(calls, len(states))-1], nil
		}}
		err := store.CreateTable(t.Context(), api, cfg, store.TableOptions{})
		if !errors.Is(err, store.ErrTableExists) || calls != 3 {
			t.Fatalf("CreateTable = %v after %d describes; want ErrTableExists after 3", err, calls)
		}
	})
	t.Run("active at once", func(t *testing.T) {
		calls := 0
		api := &fakeTableAPI{create: inUse, describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			calls++
			return desc(types.TableStatusActive, types.TableStatusActive), nil
		}}
		if err := store.CreateTable(t.Context(), api, cfg, store.TableOptions{}); !errors.Is(err, store.ErrTableExists) || calls != 1 {
			t.Fatalf("CreateTable = %v after %d describes; want ErrTableExists after 1", err, calls)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		api := &fakeTableAPI{create: inUse, describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return desc(types.TableStatusCreating, types.TableStatusCreating), nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		err := store.CreateTable(ctx, api, cfg, store.TableOptions{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrTableExists) || !strings.Contains(err.Error(), "commits") {
			t.Fatalf("CreateTable = %v; want the deadline, naming the table, and not ErrTableExists", err)
		}
	})
	t.Run("table deleted meanwhile", func(t *testing.T) {
		api := &fakeTableAPI{create: inUse, describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return nil, &types.ResourceNotFoundException{Message: aws.String("gone")}
		}}
		err := store.CreateTable(t.Context(), api, cfg, store.TableOptions{})
		if !errors.Is(err, store.ErrTableNotFound) || errors.Is(err, store.ErrTableExists) {
			t.Fatalf("CreateTable = %v; want ErrTableNotFound", err)
		}
	})
}

// TestConcurrentCreateTable: of several processes creating one table at
// once, one creates it, the others get ErrTableExists, and every one finds
// the table ACTIVE when its call returns.
func TestConcurrentCreateTable(t *testing.T) {
	t.Parallel()
	cfg := store.Config{TableName: ddbtest.TableName(t)}
	cleanupClient := ddbtest.Client(t)
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), cleanupClient, cfg) })
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	status := make([]types.TableStatus, n)
	for i := range n {
		client := ddbtest.Client(t)
		wg.Go(func() {
			errs[i] = store.CreateTable(t.Context(), client, cfg, store.TableOptions{})
			if errs[i] == nil || errors.Is(errs[i], store.ErrTableExists) {
				d, _, err := store.DescribeTable(t.Context(), client, cfg)
				if err != nil {
					errs[i] = err
					return
				}
				status[i] = d.TableStatus
			}
		})
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrTableExists):
			t.Errorf("CreateTable %d: %v", i, err)
		}
		if status[i] != types.TableStatusActive {
			t.Errorf("CreateTable %d returned (%v) with the table %s", i, err, status[i])
		}
	}
	if created != 1 {
		t.Errorf("%d of %d calls created the table, want 1: %v", created, n, errs)
	}
}

// TestDescribeTableForTheStream: DescribeTable accepts a table without a
// stream (the original package's tables); DescribeTableFor requires it
// unless NoStream.
func TestDescribeTableForTheStream(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		created store.TableOptions
		asked   store.TableOptions
		want    string // the one mismatch, or ""
	}{
		{"no stream, not asked", store.TableOptions{NoStream: true}, store.TableOptions{NoStream: true}, ""},
		{"no stream, asked", store.TableOptions{NoStream: true}, store.TableOptions{}, "stream: disabled, want NEW_IMAGE"},
		{"stream, asked", store.TableOptions{}, store.TableOptions{}, ""},
		{"stream, not asked", store.TableOptions{}, store.TableOptions{NoStream: true}, ""},
		{"capacity is not compared", store.TableOptions{ReadCapacity: 1, WriteCapacity: 1}, store.TableOptions{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := store.Config{TableName: ddbtest.TableName(t)}
			if err := store.CreateTable(ctx, client, cfg, tc.created); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
			_, mismatches, err := store.DescribeTableFor(ctx, client, cfg, tc.asked)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(mismatches, "; "); got != tc.want {
				t.Fatalf("DescribeTableFor mismatches %q, want %q", got, tc.want)
			}
			if _, mismatches, err := store.DescribeTable(ctx, client, cfg); err != nil || len(mismatches) != 0 {
				t.Fatalf("DescribeTable = %v, %v; want a conforming table", mismatches, err)
			}
		})
	}
	_, _, err := store.DescribeTableFor(ctx, client, store.Config{TableName: ddbtest.TableName(t)}, store.TableOptions{})
	if !errors.Is(err, store.ErrTableNotFound) {
		t.Fatalf("DescribeTableFor of a missing table = %v, want ErrTableNotFound", err)
	}
}

// TestMissingTable: appends and reads on a table that does not exist return
// ErrTableNotFound naming it, with DynamoDB's error still in the chain.
func TestMissingTable(t *testing.T) {
	t.Parallel()
	client := ddbtest.Client(t)
	table := ddbtest.TableName(t)
	s, err := store.New(client, store.Config{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first := func(seq func(func(store.Commit, error) bool)) error {
		for _, err := range seq {
			return err
		}
		return nil
	}
	for name, err := range map[string]error{
		"Append": func() error {
			_, err := s.Append(ctx, store.Commit{AggregateID: "a", Events: events(t, 1)})
			return err
		}(),
		"AppendAll": func() error {
			_, err := s.AppendAll(ctx, store.Commit{AggregateID: "a", Events: events(t, 1)}, store.Commit{AggregateID: "b", Events: events(t, 2)})
			return err
		}(),
		"Query": first(s.Query(ctx, "a", 0)),
		"Scan":  first(s.Scan(ctx, store.Position{})),
	} {
		var rnf *types.ResourceNotFoundException
		if !errors.Is(err, store.ErrTableNotFound) || !strings.Contains(err.Error(), "table not found: "+table) || !errors.As(err, &rnf) {
			t.Errorf("%s on a missing table: %v; want ErrTableNotFound naming %s, wrapping DynamoDB's error", name, err, table)
		}
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s on a missing table: %v matches another sentinel", name, err)
		}
	}
}
