package dynamocheckpoint_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/checkpointtest"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

// setup creates a fresh checkpoints table for the test and returns a store
// on it.
func setup(t *testing.T, cfg dynamocheckpoint.Config) (*dynamocheckpoint.Store, *dynamodb.Client) {
	t.Helper()
	client := ddbtest.Client(t)
	cfg.TableName = ddbtest.TableName(t)
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = dynamocheckpoint.DeleteTable(ctx, client, cfg)
	})
	s, err := dynamocheckpoint.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, client
}

func TestConformance(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T, clock func() time.Time) (checkpoint.Store, checkpoint.ParkStore) {
		s, _ := setup(t, dynamocheckpoint.Config{Clock: clock})
		return s, s
	})
}

func TestTableLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := ddbtest.Client(t)
	cfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t)}
	if _, _, err := dynamocheckpoint.DescribeTable(ctx, client, cfg); !errors.Is(err, dynamocheckpoint.ErrTableNotFound) {
		t.Fatalf("DescribeTable before CreateTable = %v, want ErrTableNotFound", err)
	}
	if err := dynamocheckpoint.CreateTable(ctx, client, cfg, dynamocheckpoint.TableOptions{ReadCapacity: 5, WriteCapacity: 5}); err != nil {
		t.Fatal(err)
	}
	d, mismatches, err := dynamocheckpoint.DescribeTable(ctx, client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(mismatches) != 0 {
		t.Errorf("mismatches of a table CreateTable made: %q", mismatches)
	}
	if d.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", d.TableStatus)
	}
	if d.ProvisionedThroughput == nil || aws.ToInt64(d.ProvisionedThroughput.WriteCapacityUnits) != 5 {
		t.Errorf("provisioned throughput %+v, want 5 write units", d.ProvisionedThroughput)
	}
	if err := dynamocheckpoint.CreateTable(ctx, client, cfg, dynamocheckpoint.TableOptions{}); !errors.Is(err, dynamocheckpoint.ErrTableExists) {
		t.Errorf("second CreateTable = %v, want ErrTableExists", err)
	}
	if err := dynamocheckpoint.DeleteTable(ctx, client, cfg); err != nil {
		t.Fatal(err)
	}
	if err := dynamocheckpoint.DeleteTable(ctx, client, cfg); !errors.Is(err, dynamocheckpoint.ErrTableNotFound) {
		t.Errorf("second DeleteTable = %v, want ErrTableNotFound", err)
	}
	if _, _, err := dynamocheckpoint.DescribeTable(ctx, client, cfg); !errors.Is(err, dynamocheckpoint.ErrTableNotFound) {
		t.Errorf("DescribeTable after DeleteTable = %v, want ErrTableNotFound", err)
	}
}

func TestDescribeTableReportsMismatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := ddbtest.Client(t)
	cfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t)}
	// A table of that name with a numeric sort key.
	def := dynamocheckpoint.TableDefinition(cfg, dynamocheckpoint.TableOptions{})
	def.AttributeDefinitions[1].AttributeType = types.ScalarAttributeTypeN
	if _, err := client.CreateTable(ctx, def); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cfg) })
	_, mismatches, err := dynamocheckpoint.DescribeTable(ctx, client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"table: attribute sk has type N, want S"}; !slices.Equal(mismatches, want) {
		t.Errorf("mismatches = %q, want %q", mismatches, want)
	}
}

func TestTableDefinition(t *testing.T) {
	t.Parallel()
	def := dynamocheckpoint.TableDefinition(dynamocheckpoint.Config{}, dynamocheckpoint.TableOptions{})
	if got := aws.ToString(def.TableName); got != "eventstoreCheckpoints" {
		t.Errorf("default table name %q", got)
	}
	if def.BillingMode != types.BillingModePayPerRequest || def.ProvisionedThroughput != nil {
		t.Errorf("billing %s %+v, want on-demand", def.BillingMode, def.ProvisionedThroughput)
	}
	if len(def.GlobalSecondaryIndexes) != 0 || def.StreamSpecification != nil {
		t.Errorf("want no index and no stream")
	}
	var keys []string
	for _, k := range def.KeySchema {
		keys = append(keys, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	if want := []string{"pk HASH", "sk RANGE"}; !slices.Equal(keys, want) {
		t.Errorf("key schema %q, want %q", keys, want)
	}
}

func put(t *testing.T, client *dynamodb.Client, s *dynamocheckpoint.Store, item map[string]types.AttributeValue) {
	t.Helper()
	if _, err := client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(s.Config().TableName), Item: item}); err != nil {
		t.Fatal(err)
	}
}

func str(v string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: v} }
func num(v string) *types.AttributeValueMemberN { return &types.AttributeValueMemberN{Value: v} }

// TestCorruptItemsAreReportedWithTheirKey writes items by hand with
// attributes of the wrong type: every call that reads them reports an error
// naming the item's key, and listing goes on past them.
func TestCorruptItemsAreReportedWithTheirKey(t *testing.T) {
	t.Parallel()
	s, client := setup(t, dynamocheckpoint.Config{})
	ctx := t.Context()
	// "sub"/"" has a lease that is a string; "sub"/"b" an owner that is a
	// number; "sub"/"c" is fine.
	put(t, client, s, map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#"), "lease": str("seven"), "owner": str("w1")})
	put(t, client, s, map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#b"), "lease": num("3"), "owner": num("12")})
	put(t, client, s, map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#c"), "lease": num("2"), "owner": str("w9"), "position": str("p")})

	wantCorrupt := func(what string, err error, sk, attr string) {
		t.Helper()
		var de *dynamocheckpoint.DecodeError
		if !errors.Is(err, dynamocheckpoint.ErrCorruptItem) || !errors.As(err, &de) {
			t.Fatalf("%s: err = %v, want a *DecodeError", what, err)
		}
		if de.PK != "cp#sub" || de.SK != sk || de.Attribute != attr {
			t.Errorf("%s: DecodeError %+v, want pk cp#sub sk %q attribute %q", what, de, sk, attr)
		}
		if !strings.Contains(err.Error(), `sk="`+sk+`"`) || !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Errorf("%s: error text %q does not name the key", what, err)
		}
	}
	_, err := s.Load(ctx, checkpoint.Key{Subscription: "sub"})
	wantCorrupt("Load", err, "u#", "lease")
	_, err = s.Load(ctx, checkpoint.Key{Subscription: "sub", Unit: "b"})
	wantCorrupt("Load", err, "u#b", "owner")
	err = s.Save(ctx, checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "b"}, Owner: "w1", Lease: 3, Position: "x"})
	wantCorrupt("Save", err, "u#b", "owner")

	// DynamoDB itself refuses to ADD to a string: its error is wrapped with
	// the key.
	_, err = s.Claim(ctx, checkpoint.Key{Subscription: "sub"}, "w2")
	if err == nil || errors.Is(err, checkpoint.ErrFenced) || !strings.Contains(err.Error(), `claim "sub"`) {
		t.Errorf("Claim of an item whose lease is a string: err = %v, want DynamoDB's error naming the key", err)
	}

	var errs []error
	var units []string
	for cp, err := range s.List(ctx, "sub") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		units = append(units, cp.Unit)
	}
	if len(errs) != 2 || !slices.Equal(units, []string{"c"}) {
		t.Errorf("List yielded errors %v and units %q, want 2 errors and unit c", errs, units)
	}
	for _, err := range errs {
		if !errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
			t.Errorf("List error %v, want ErrCorruptItem", err)
		}
	}

	// A parked commit whose version is a string, next to a good one.
	if err := s.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: store.Commit{AggregateID: "a", Version: 1, Events: []byte(`[1]`)}}); err != nil {
		t.Fatal(err)
	}
	put(t, client, s, map[string]types.AttributeValue{"pk": str("park#sub"), "sk": str("a\x01\x01a0"), "aggregateId": str("a"), "version": str("zero"), "parkedAt": num("1")})
	errs, units = nil, nil
	for p, err := range s.Parked(ctx, "sub", "a") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		units = append(units, p.Commit.AggregateID)
	}
	var de *dynamocheckpoint.DecodeError
	if len(errs) != 1 || !errors.As(errs[0], &de) || de.Attribute != "version" || de.PK != "park#sub" || len(units) != 1 {
		t.Errorf("Parked yielded errors %v and %d commits, want one DecodeError on version and one commit", errs, len(units))
	}
}

// TestListAllSkipsParkedCommits checks that listing every subscription's
// checkpoints does not take the partitions of parked commits or requests
// for subscriptions.
func TestListAllSkipsParkedCommits(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, dynamocheckpoint.Config{})
	ctx := t.Context()
	if err := s.Park(ctx, checkpoint.Parked{Subscription: "parked-only", Commit: store.Commit{AggregateID: "a", Events: []byte(`[1]`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Request(ctx, checkpoint.Request{Subscription: "requested-only", AggregateID: "a", Kind: checkpoint.RequestReplay}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, checkpoint.Key{Subscription: "s"}, "w"); err != nil {
		t.Fatal(err)
	}
	var keys []checkpoint.Key
	for cp, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, cp.Key)
	}
	if !slices.Equal(keys, []checkpoint.Key{{Subscription: "s"}}) {
		t.Errorf("List(\"\") = %v", keys)
	}
}

// TestInjectedClock checks that updatedAt and parkedAt come from
// Config.Clock, in Unix milliseconds.
func TestInjectedClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6789012, time.UTC)
	s, client := setup(t, dynamocheckpoint.Config{Clock: func() time.Time { return at }})
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	cp, err := s.Claim(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	cp.Position = "p"
	if err := s.Save(ctx, cp); err != nil {
		t.Fatal(err)
	}
	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.Config().TableName),
		Key:       map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#u")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := out.Item["updatedAt"].(*types.AttributeValueMemberN); got == nil || got.Value != "1893553445006" {
		t.Errorf("updatedAt item attribute %#v, want N 1893553445006", out.Item["updatedAt"])
	}
	got, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if want := at.Truncate(time.Millisecond); !got.UpdatedAt.Equal(want) {
		t.Errorf("UpdatedAt %v, want %v", got.UpdatedAt, want)
	}
}

// TestLeaseItemLayout checks the expires attribute: Unix milliseconds of
// Config.Clock plus the lease's duration, set by Take and Renew, removed by
// Claim, Release and Set, and reported with the item's key when it does not
// decode (by Load, and by Set and Delete from a failed condition).
func TestLeaseItemLayout(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6789012, time.UTC)
	s, client := setup(t, dynamocheckpoint.Config{Clock: func() time.Time { return at }})
	ctx := t.Context()
	key := checkpoint.Key{Subscription: "sub", Unit: "u"}
	raw := func() map[string]types.AttributeValue {
		t.Helper()
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(s.Config().TableName),
			Key:       map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#u")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	wantExpires := func(what, want string) {
		t.Helper()
		got, ok := raw()[dynamocheckpoint.AttrExpires]
		switch {
		case want == "" && ok:
			t.Errorf("%s: expires = %#v, want none", what, got)
		case want != "" && (!ok || got.(*types.AttributeValueMemberN).Value != want):
			t.Errorf("%s: expires = %#v, want N %s", what, got, want)
		}
	}
	cp, err := s.Take(ctx, key, "w1", checkpoint.Checkpoint{}, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	wantExpires("Take", "1893553446506") // 2030-01-02T03:04:05.006Z + 1.5 s
	if want := time.UnixMilli(1893553446506).UTC(); !cp.Expires.Equal(want) {
		t.Errorf("Expires %v, want %v", cp.Expires, want)
	}
	if _, err := s.Renew(ctx, cp, time.Minute); err != nil {
		t.Fatal(err)
	}
	wantExpires("Renew", "1893553505006")
	cp, err = s.Claim(ctx, key, "w2")
	if err != nil {
		t.Fatal(err)
	}
	wantExpires("Claim", "")
	if cp, err = s.Take(ctx, key, "w3", cp, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	wantExpires("Release", "")
	if item := raw(); item[dynamocheckpoint.AttrOwner] != nil {
		t.Errorf("owner after Release: %#v", item[dynamocheckpoint.AttrOwner])
	}
	if _, err := s.Take(ctx, key, "w4", checkpoint.Checkpoint{Lease: 3}, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, key, "p", true); err != nil {
		t.Fatal(err)
	}
	wantExpires("Set", "")

	put(t, client, s, map[string]types.AttributeValue{"pk": str("cp#sub"), "sk": str("u#bad"), "lease": num("1"), "owner": str("w1"), "expires": str("soon")})
	_, err = s.Load(ctx, checkpoint.Key{Subscription: "sub", Unit: "bad"})
	var de *dynamocheckpoint.DecodeError
	if !errors.As(err, &de) || de.SK != "u#bad" || de.Attribute != "expires" {
		t.Errorf("Load of an item whose expires is a string: %v, want a DecodeError on expires", err)
	}
	// Set without force reads the holder from the failed condition.
	_, err = s.Set(ctx, checkpoint.Key{Subscription: "sub", Unit: "bad"}, "p", false)
	if !errors.As(err, &de) || de.Attribute != "expires" {
		t.Errorf("Set of an item whose expires is a string: %v, want a DecodeError on expires", err)
	}
	// So does Delete.
	err = s.Delete(ctx, checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "sub", Unit: "bad"}, Lease: 1})
	if !errors.As(err, &de) || de.SK != "u#bad" || de.Attribute != "expires" {
		t.Errorf("Delete of an item whose expires is a string: %v, want a DecodeError on expires", err)
	}
}

// queryCounter counts Query calls (pages).
type queryCounter struct {
	*dynamodb.Client
	queries atomic.Int32
}

func (q *queryCounter) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	q.queries.Add(1)
	return q.Client.Query(ctx, in, optFns...)
}

// TestParkedReadsEveryPage checks that the conformance suite's large case
// does span several DynamoDB pages here, and that every one is read.
func TestParkedReadsEveryPage(t *testing.T) {
	t.Parallel()
	base, client := setup(t, dynamocheckpoint.Config{})
	counter := &queryCounter{Client: client}
	s, err := dynamocheckpoint.New(counter, base.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	events := []byte(`["` + strings.Repeat("x", 20*1024) + `"]`)
	for v := range int64(60) {
		if err := s.Park(ctx, checkpoint.Parked{Subscription: "sub", Commit: store.Commit{AggregateID: "big", Version: v, Events: events}}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for p, err := range s.Parked(ctx, "sub", "big") {
		if err != nil {
			t.Fatal(err)
		}
		if p.Commit.Version != int64(n) {
			t.Fatalf("commit %d has version %d", n, p.Commit.Version)
		}
		n++
	}
	if n != 60 || counter.queries.Load() < 2 {
		t.Errorf("read %d commits in %d pages, want 60 in 2 or more", n, counter.queries.Load())
	}
}

// TestCorruptRequestIsReportedWithItsKey writes request items by hand with
// attributes of the wrong type: Requests yields an error naming each and
// goes on past them, and Complete of a good one still works.
func TestCorruptRequestIsReportedWithItsKey(t *testing.T) {
	t.Parallel()
	s, client := setup(t, dynamocheckpoint.Config{})
	ctx := t.Context()
	good, err := s.Request(ctx, checkpoint.Request{Subscription: "sub", AggregateID: "b", Kind: checkpoint.RequestDiscard})
	if err != nil {
		t.Fatal(err)
	}
	put(t, client, s, map[string]types.AttributeValue{"pk": str("req#sub"), "sk": str("a"), "requestId": str("r1"), "kind": str("replay"), "requestedAt": str("yesterday")})
	put(t, client, s, map[string]types.AttributeValue{"pk": str("req#sub"), "sk": str("c"), "requestId": str("r2"), "kind": str("replay"), "requestedAt": num("1"), "done": str("yes")})
	put(t, client, s, map[string]types.AttributeValue{"pk": str("req#sub"), "sk": str("d"), "kind": str("replay"), "requestedAt": num("1")})
	var errs []error
	var aggs []string
	for r, err := range s.Requests(ctx, "sub") {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		aggs = append(aggs, r.AggregateID)
	}
	wantAttrs := []string{"requestedAt", "done", "requestId"}
	if len(errs) != len(wantAttrs) || !slices.Equal(aggs, []string{"b"}) {
		t.Fatalf("Requests yielded errors %v and aggregates %q, want %d errors and aggregate b", errs, aggs, len(wantAttrs))
	}
	for i, err := range errs {
		var de *dynamocheckpoint.DecodeError
		if !errors.As(err, &de) || !errors.Is(err, dynamocheckpoint.ErrCorruptItem) || de.PK != "req#sub" || de.Attribute != wantAttrs[i] {
			t.Errorf("error %d: %v, want a DecodeError of pk req#sub on %s", i, err, wantAttrs[i])
		}
	}
	good.Handled = 4
	if err := s.Complete(ctx, good); err != nil {
		t.Fatal(err)
	}
}

// TestCompleteSaysWhy checks that the ErrNotFound of Complete tells a
// replaced request from a deleted one.
func TestCompleteSaysWhy(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, dynamocheckpoint.Config{})
	ctx := t.Context()
	old, err := s.Request(ctx, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestReplay})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := s.Request(ctx, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestReplay, ID: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, old); !errors.Is(err, checkpoint.ErrNotFound) || !strings.Contains(err.Error(), `replaced by request "second"`) {
		t.Errorf("Complete of a replaced request = %v, want ErrNotFound naming the newer request", err)
	}
	if err := s.DeleteRequest(ctx, "sub", "a", newer.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, newer); !errors.Is(err, checkpoint.ErrNotFound) || !strings.Contains(err.Error(), "(deleted)") {
		t.Errorf("Complete of a deleted request = %v, want ErrNotFound saying deleted", err)
	}
}
