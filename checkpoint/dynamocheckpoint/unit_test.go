package dynamocheckpoint

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// fakeAPI fails every call; set a function field to answer one.
type fakeAPI struct {
	calls      int
	updateItem func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
}

func (f *fakeAPI) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	f.calls++
	return nil, errors.New("fake: GetItem")
}

func (f *fakeAPI) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	f.calls++
	if f.updateItem != nil {
		return f.updateItem(in)
	}
	return nil, errors.New("fake: UpdateItem")
}

func (f *fakeAPI) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	f.calls++
	return nil, errors.New("fake: PutItem")
}

func (f *fakeAPI) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	f.calls++
	return nil, errors.New("fake: DeleteItem")
}

func (f *fakeAPI) Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	f.calls++
	return nil, errors.New("fake: Query")
}

func (f *fakeAPI) Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	f.calls++
	return nil, errors.New("fake: Scan")
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		api  API
		cfg  Config
	}{
		{"nil API", nil, Config{}},
		{"short table name", &fakeAPI{}, Config{TableName: "ab"}},
		{"long table name", &fakeAPI{}, Config{TableName: strings.Repeat("t", 256)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.api, tc.cfg); !errors.Is(err, checkpoint.ErrInvalidArgument) {
				t.Errorf("New = %v, want ErrInvalidArgument", err)
			}
		})
	}
	s, err := New(&fakeAPI{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Config(); c.TableName != DefaultTableName || c.Clock == nil {
		t.Errorf("defaults not filled in: %+v", c)
	}
}

func TestCreateTableRejectsBadCapacity(t *testing.T) {
	for _, opts := range []TableOptions{{ReadCapacity: 1}, {WriteCapacity: 1}, {ReadCapacity: -1, WriteCapacity: -1}} {
		if err := CreateTable(t.Context(), nil, Config{}, opts); !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("CreateTable(%+v) = %v, want ErrInvalidArgument", opts, err)
		}
	}
}

// TestBadInputMakesNoCall checks the DynamoDB-specific input rules and that
// rejected input never reaches DynamoDB.
func TestBadInputMakesNoCall(t *testing.T) {
	api := &fakeAPI{}
	s, err := New(api, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	huge := store.Commit{AggregateID: "a", Events: []byte(`["` + strings.Repeat("x", MaxItemBytes) + `"]`)}
	longID := store.Commit{AggregateID: strings.Repeat("\x00", store.MaxAggregateIDBytes), Events: []byte(`[1]`)}
	for name, call := range map[string]func() error{
		"Claim": func() error { _, err := s.Claim(ctx, checkpoint.Key{}, "w"); return err },
		"Save": func() error {
			return s.Save(ctx, checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s"}, Owner: "w"})
		},
		"Load": func() error { _, err := s.Load(ctx, checkpoint.Key{}); return err },
		"Set":  func() error { _, err := s.Set(ctx, checkpoint.Key{}, "", true); return err },
		"Release": func() error {
			return s.Release(ctx, checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s"}, Lease: 1})
		},
		"Take": func() error {
			_, err := s.Take(ctx, checkpoint.Key{Subscription: "s"}, "w", checkpoint.Checkpoint{}, time.Millisecond-1)
			return err
		},
		"Take seen": func() error {
			_, err := s.Take(ctx, checkpoint.Key{Subscription: "s"}, "w", checkpoint.Checkpoint{Lease: -1}, time.Second)
			return err
		},
		"Renew": func() error {
			_, err := s.Renew(ctx, checkpoint.Checkpoint{Key: checkpoint.Key{Subscription: "s"}, Owner: "w", Lease: 1}, 0)
			return err
		},
		"Park":            func() error { return s.Park(ctx, checkpoint.Parked{Subscription: "s"}) },
		"Park huge":       func() error { return s.Park(ctx, checkpoint.Parked{Subscription: "s", Commit: huge}) },
		"Park long sk":    func() error { return s.Park(ctx, checkpoint.Parked{Subscription: "s", Commit: longID}) },
		"Unpark":          func() error { return s.Unpark(ctx, "s", "a", -1) },
		"Parked":          func() error { return firstErr(s.Parked(ctx, "", "")) },
		"List not UTF-8":  func() error { return firstErr(s.List(ctx, "\xff")) },
		"Parked not UTF8": func() error { return firstErr(s.Parked(ctx, "s", "\xff")) },
		"Request": func() error {
			_, err := s.Request(ctx, checkpoint.Request{Subscription: "s", AggregateID: "a"})
			return err
		},
		"Requests":      func() error { return firstErr(s.Requests(ctx, "\xff")) },
		"Complete":      func() error { return s.Complete(ctx, checkpoint.Request{Subscription: "s", AggregateID: "a"}) },
		"DeleteRequest": func() error { return s.DeleteRequest(ctx, "s", "", "id") },
	} {
		err := call()
		if !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
		}
		if name == "Park huge" && !strings.Contains(err.Error(), "bytes, DynamoDB's limit is 409600") {
			t.Errorf("%s: error %q does not give the size and the limit", name, err)
		}
	}
	if api.calls != 0 {
		t.Errorf("%d calls to DynamoDB for rejected input", api.calls)
	}
}

func firstErr[T any](seq func(func(T, error) bool)) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestSDKErrorsNameTheKey(t *testing.T) {
	sdkErr := errors.New("throttled")
	api := &fakeAPI{updateItem: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, sdkErr }}
	s, err := New(api, Config{})
	if err != nil {
		t.Fatal(err)
	}
	key := checkpoint.Key{Subscription: "orders", Unit: "3"}
	err = s.Save(t.Context(), checkpoint.Checkpoint{Key: key, Owner: "w1", Lease: 4, Position: "p"})
	if !errors.Is(err, sdkErr) || errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("err = %v, want the SDK's error wrapped", err)
	}
	if want := `checkpoint: save "orders"/"3" for "w1" at lease 4: throttled`; err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
}

// TestParkedSortKeyOrder checks that parked commits' sort keys order as
// (aggregate id, version) do, byte for byte, that each is valid UTF-8, and
// that an aggregate's prefix starts no other aggregate's keys.
func TestParkedSortKeyOrder(t *testing.T) {
	alphabet := []string{"\x00", "\x01", "\x02", "#", "0", "a", "b", "é", "\U0001F600"}
	r := rand.New(rand.NewPCG(1, 2))
	type entry struct {
		id string
		v  int64
	}
	var entries []entry
	for range 2000 {
		var b strings.Builder
		for range r.IntN(5) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		if b.Len() == 0 {
			b.WriteString("a")
		}
		v := []int64{0, 1, 9, 10, 99, 100, 12345, 1 << 62, r.Int64N(1 << 40)}[r.IntN(9)]
		entries = append(entries, entry{b.String(), v})
	}
	byEntry := slices.Clone(entries)
	slices.SortFunc(byEntry, func(a, b entry) int { return cmp.Or(strings.Compare(a.id, b.id), cmp.Compare(a.v, b.v)) })
	byKey := slices.Clone(entries)
	slices.SortStableFunc(byKey, func(a, b entry) int {
		return strings.Compare(parkedSortKey(a.id, a.v), parkedSortKey(b.id, b.v))
	})
	for i := range byEntry {
		if byEntry[i] != byKey[i] {
			t.Fatalf("position %d: by (id, version) %q@%d, by sort key %q@%d", i, byEntry[i].id, byEntry[i].v, byKey[i].id, byKey[i].v)
		}
	}
	for _, a := range entries {
		k := parkedSortKey(a.id, a.v)
		if !utf8.ValidString(k) || strings.Contains(k, "\x00") {
			t.Fatalf("sort key %q: not valid UTF-8 or contains NUL", k)
		}
		for _, b := range entries[:50] {
			if a.id != b.id && strings.HasPrefix(k, parkedAggregatePrefix(b.id)) {
				t.Fatalf("sort key of %q starts with the prefix of %q", a.id, b.id)
			}
		}
	}
	if got := len(parkedSortKey(strings.Repeat("a", store.MaxAggregateIDBytes), 1e12)); got > MaxSortKeyBytes {
		t.Errorf("the longest aggregate id with a 13-digit version makes a %d-byte sort key, limit %d", got, MaxSortKeyBytes)
	}
}
