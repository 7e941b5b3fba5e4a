package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// setup creates a fresh commits table for the test and returns a store on it.
func setup(t *testing.T, cfg store.Config, optFns ...func(*dynamodb.Options)) (*store.Store, *dynamodb.Client) {
	t.Helper()
	client := ddbtest.Client(t, optFns...)
	cfg.TableName = ddbtest.TableName(t)
	ctx := context.Background()
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	s, err := store.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, client
}

func events(t testing.TB, evs ...any) json.RawMessage {
	t.Helper()
	b, err := store.MarshalEvents(evs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func collect(t testing.TB, seq func(func(store.Commit, error) bool)) []store.Commit {
	t.Helper()
	var out []store.Commit
	for c, err := range seq {
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, c)
	}
	return out
}

func positions(cs []store.Commit) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Position().String()
	}
	return out
}

func TestAppendThenQueryRoundTrips(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	in := store.Commit{AggregateID: "acc-1", Version: 0, Events: events(t, map[string]any{"type": "opened", "owner": "Zoë"}, map[string]any{"type": "deposited", "amount": 10})}
	got, err := s.Append(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.CommitID, ":acc-1") || len(got.CommitID) != 17+1+5 {
		t.Fatalf("commit id %q, want YYYYMMDDHHmmssSSS:acc-1", got.CommitID)
	}
	if at, _ := store.ParseCommitIDTime(got.CommitID); at.UnixMilli() != got.CommittedAt {
		t.Fatalf("commitId %s and committedAt %d disagree", got.CommitID, got.CommittedAt)
	}
	if _, err := s.Append(ctx, store.Commit{AggregateID: "acc-1", Version: 1, Events: events(t, "closed")}); err != nil {
		t.Fatal(err)
	}
	all := collect(t, s.Query(ctx, "acc-1", 0))
	if len(all) != 2 || all[0].Version != 0 || all[1].Version != 1 {
		t.Fatalf("query = %v", positions(all))
	}
	if all[0].CommitID != got.CommitID || all[0].CommittedAt != got.CommittedAt || string(all[0].Events) != string(in.Events) {
		t.Fatalf("read back %+v, appended %+v", all[0], got)
	}
	if from1 := collect(t, s.Query(ctx, "acc-1", 1)); len(from1) != 1 || from1[0].Version != 1 {
		t.Fatalf("query from version 1 = %v, want just version 1 (inclusive)", positions(from1))
	}
	if none := collect(t, s.Query(ctx, "nobody", 0)); len(none) != 0 {
		t.Fatalf("query of an unknown aggregate = %v", positions(none))
	}
	// The JSON shape of the original package's README, keys in its order.
	b, _ := json.Marshal(all[0])
	want := fmt.Sprintf(`{"commitId":%q,"committedAt":%d,"aggregateId":"acc-1","version":0,"events":%s}`, got.CommitID, got.CommittedAt, in.Events)
	if string(b) != want {
		t.Fatalf("commit JSON\n got %s\nwant %s", b, want)
	}
	var evs []struct{ Type string }
	if err := all[0].DecodeEvents(&evs); err != nil || len(evs) != 2 || evs[1].Type != "deposited" {
		t.Fatalf("DecodeEvents = %v, %v", evs, err)
	}
}

func TestQueryRejectsBadArguments(t *testing.T) {
	s, _ := setup(t, store.Config{})
	for _, tc := range []struct {
		id string
		v  int64
	}{{"", 0}, {"a", -1}} {
		for _, err := range s.Query(context.Background(), tc.id, tc.v) {
			if !errors.Is(err, store.ErrInvalidArgument) {
				t.Fatalf("Query(%q, %d) = %v, want ErrInvalidArgument", tc.id, tc.v, err)
			}
		}
	}
}

func TestRacingAppendsOneWinner(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	const racers = 24
	var wins atomic.Int32
	var winner store.Commit
	var mu sync.Mutex
	var g errgroup.Group
	for i := range racers {
		g.Go(func() error {
			c, err := s.Append(ctx, store.Commit{AggregateID: "hot", Version: 0, Events: events(t, i)})
			if err == nil {
				wins.Add(1)
				mu.Lock()
				winner = c
				mu.Unlock()
				return nil
			}
			var vc *store.VersionConflictError
			if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &vc) {
				return fmt.Errorf("racer %d: %v, want a version conflict", i, err)
			}
			if vc.AggregateID != "hot" || vc.Version != 0 || !strings.Contains(err.Error(), `"hot"`) {
				return fmt.Errorf("conflict error does not name aggregate and version: %v", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if wins.Load() != 1 {
		t.Fatalf("%d racers won version 0, want exactly 1", wins.Load())
	}
	stored := collect(t, s.Query(ctx, "hot", 0))
	if len(stored) != 1 || string(stored[0].Events) != string(winner.Events) {
		t.Fatalf("stored %v, winner %v", stored, winner)
	}
}

func TestAppendAllIsAtomicAndNamesTheConflict(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	if _, err := s.Append(ctx, store.Commit{AggregateID: "b", Version: 1, Events: events(t, "first")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.AppendAll(ctx,
		store.Commit{AggregateID: "a", Version: 0, Events: events(t, 1)},
		store.Commit{AggregateID: "b", Version: 1, Events: events(t, 2)},
		store.Commit{AggregateID: "c", Version: 0, Events: events(t, 3)},
	)
	var vc *store.VersionConflictError
	if !errors.As(err, &vc) || !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("AppendAll = %v, want a version conflict", err)
	}
	if vc.Index != 1 || vc.AggregateID != "b" || vc.Version != 1 || vc.Existing == nil || string(vc.Existing.Events) != `["first"]` {
		t.Fatalf("conflict %+v, want commit 1 (b, 1) with the stored commit", vc)
	}
	if got := collect(t, s.Scan(ctx, store.Position{})); len(got) != 1 {
		t.Fatalf("after a failed transaction the table holds %v, want only b#1", positions(got))
	}
	out, err := s.AppendAll(ctx,
		store.Commit{AggregateID: "a", Version: 0, Events: events(t, 1)},
		store.Commit{AggregateID: "b", Version: 2, Events: events(t, 2)},
		store.Commit{AggregateID: "a", Version: 1, Events: events(t, 3)},
	)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].CommittedAt != out[2].CommittedAt || out[1].CommitID != store.FormatCommitID(out[0].CommittedAt, "b") {
		t.Fatalf("commits of one transaction share one instant: %+v", out)
	}
	if got := collect(t, s.Query(ctx, "a", 0)); len(got) != 2 {
		t.Fatalf("aggregate a = %v", positions(got))
	}
}

func TestAppendAllLimits(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	many := make([]store.Commit, store.MaxTransactionCommits+1)
	for i := range many {
		many[i] = store.Commit{AggregateID: "a", Version: int64(i), Events: events(t, i)}
	}
	if _, err := s.AppendAll(ctx, many...); !errors.Is(err, store.ErrTransactionTooLarge) || !strings.Contains(err.Error(), "101") {
		t.Fatalf("101 commits: %v, want ErrTransactionTooLarge naming the count", err)
	}
	if _, err := s.AppendAll(ctx); !errors.Is(err, store.ErrTransactionTooLarge) {
		t.Fatalf("no commits: %v", err)
	}
	big := json.RawMessage(`["` + strings.Repeat("x", 390*1024) + `"]`)
	heavy := make([]store.Commit, 11)
	for i := range heavy {
		heavy[i] = store.Commit{AggregateID: "h" + strconv.Itoa(i), Events: big}
	}
	if _, err := s.AppendAll(ctx, heavy...); !errors.Is(err, store.ErrTransactionTooLarge) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("11 × 390 KB: %v, want ErrTransactionTooLarge naming the bytes", err)
	}
	_, err := s.AppendAll(ctx,
		store.Commit{AggregateID: "d", Version: 0, Events: events(t, 1)},
		store.Commit{AggregateID: "e", Version: 0, Events: events(t, 1)},
		store.Commit{AggregateID: "d", Version: 0, Events: events(t, 2)},
	)
	var ice *store.InvalidCommitError
	if !errors.Is(err, store.ErrDuplicateCommit) || !errors.As(err, &ice) || ice.Index != 2 {
		t.Fatalf("duplicate: %v, want ErrDuplicateCommit at index 2", err)
	}
	if got := collect(t, s.Scan(ctx, store.Position{})); len(got) != 0 {
		t.Fatalf("rejected transactions wrote %v", positions(got))
	}
	// 100 commits is allowed.
	if _, err := s.AppendAll(ctx, many[:100]...); err != nil {
		t.Fatalf("100 commits: %v", err)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	ok := events(t, "x")
	// An events array that makes the item exactly DynamoDB's limit.
	sized := func(extra int) json.RawMessage {
		c := store.Commit{CommitID: store.FormatCommitID(0, "big"), CommittedAt: time.Now().UnixMilli(), AggregateID: "big", Version: 0, Events: json.RawMessage(`[""]`)}
		pad := store.MaxItemBytes - store.ItemSize(c, "t", strings.Repeat("0", store.TokenLen)) + extra
		return json.RawMessage(`["` + strings.Repeat("y", pad) + `"]`)
	}
	cases := []struct {
		name   string
		commit store.Commit
		want   error
		says   string
	}{
		{"empty aggregate id", store.Commit{Events: ok}, store.ErrEmptyAggregateID, "empty aggregate id"},
		{"negative version", store.Commit{AggregateID: "a", Version: -2, Events: ok}, store.ErrNegativeVersion, "version -2"},
		{"version 2^53", store.Commit{AggregateID: "a", Version: store.MaxVersion + 1, Events: ok}, store.ErrVersionTooLarge, "9007199254740992 is above 9007199254740991 (2^53-1)"},
		{"version 2^63-1", store.Commit{AggregateID: "a", Version: math.MaxInt64, Events: ok}, store.ErrVersionTooLarge, "above 9007199254740991"},
		{"no events", store.Commit{AggregateID: "a", Events: json.RawMessage(`[]`)}, store.ErrNoEvents, "no events"},
		{"events not JSON", store.Commit{AggregateID: "a", Events: json.RawMessage(`[{"a":1]`)}, store.ErrEventsNotJSON, "not a JSON array"},
		{"one byte over 400 KB", store.Commit{AggregateID: "big", Events: sized(1)}, store.ErrItemTooLarge, fmt.Sprintf("item is %d bytes, DynamoDB's limit is %d", store.MaxItemBytes+1, store.MaxItemBytes)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(ctx, tc.commit)
			if !errors.Is(err, tc.want) || !errors.Is(err, store.ErrInvalidCommit) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Append = %v, want %v saying %q", err, tc.want, tc.says)
			}
			_, err = s.AppendAll(ctx, store.Commit{AggregateID: "fine", Events: ok}, tc.commit)
			var ice *store.InvalidCommitError
			if !errors.Is(err, tc.want) || !errors.As(err, &ice) || ice.Index != 1 {
				t.Fatalf("AppendAll = %v, want %v at index 1", err, tc.want)
			}
		})
	}
	if got := collect(t, s.Scan(ctx, store.Position{})); len(got) != 0 {
		t.Fatalf("bad input wrote %v", positions(got))
	}
	// At exactly the limit DynamoDB takes the item: the estimate is not short.
	c, err := s.Append(ctx, store.Commit{AggregateID: "big", Events: sized(0)})
	if err != nil {
		t.Fatalf("an item of exactly %d bytes: %v", store.MaxItemBytes, err)
	}
	if got := collect(t, s.Query(ctx, "big", 0)); len(got) != 1 || len(got[0].Events) != len(c.Events) {
		t.Fatal("the largest item did not read back whole")
	}
}

// TestReadsAreComplete appends 1,500 commits of 2 KB (about 3 MB) to one
// aggregate: Query and Scan must read every page, where one DynamoDB page
// stops at 1 MB.
func TestReadsAreComplete(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	payload := strings.Repeat("p", 2048)
	const n = 1500
	var g errgroup.Group
	g.SetLimit(16)
	for v := range n {
		g.Go(func() error {
			_, err := s.Append(ctx, store.Commit{AggregateID: "big", Version: int64(v), Events: events(t, payload)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	got := collect(t, s.Query(ctx, "big", 0))
	if len(got) != n {
		t.Fatalf("query read %d commits, want %d", len(got), n)
	}
	for i, c := range got {
		if c.Version != int64(i) {
			t.Fatalf("query: commit %d has version %d", i, c.Version)
		}
	}
	if got := collect(t, s.Query(ctx, "big", 700)); len(got) != n-700 || got[0].Version != 700 {
		t.Fatalf("query from 700 read %d", len(got))
	}
	scanned := collect(t, s.Scan(ctx, store.Position{}))
	if len(scanned) != n {
		t.Fatalf("scan read %d commits, want %d", len(scanned), n)
	}
	if !slices.IsSortedFunc(scanned, func(a, b store.Commit) int { return a.Position().Compare(b.Position()) }) {
		t.Fatal("scan is not in position order")
	}
}

// frozenClock returns a clock that advances one millisecond every `every`
// readings, so that runs of appends share a commit id's millisecond.
func frozenClock(every int) func() time.Time {
	var n atomic.Int64
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		return base.Add(time.Duration((n.Add(1)-1)/int64(every)) * time.Millisecond)
	}
}

func TestScanResumesExactly(t *testing.T) {
	s, _ := setup(t, store.Config{PageSize: 7, Clock: frozenClock(3)})
	ctx := context.Background()
	aggs := []string{"a", "b", "c", "d", "e"}
	next := map[string]int64{}
	for i := range 60 {
		agg := aggs[(i/3)%len(aggs)] // three commits of one aggregate per millisecond
		if _, err := s.Append(ctx, store.Commit{AggregateID: agg, Version: next[agg], Events: events(t, i)}); err != nil {
			t.Fatal(err)
		}
		next[agg]++
	}
	all := collect(t, s.Scan(ctx, store.Position{}))
	if len(all) != 60 {
		t.Fatalf("scan read %d, want 60", len(all))
	}
	if !slices.IsSortedFunc(all, func(a, b store.Commit) int { return a.Position().Compare(b.Position()) }) {
		t.Fatalf("not in position order: %v", positions(all))
	}
	if all[0].CommitID != all[1].CommitID {
		t.Fatal("the test needs commits that share a commit id")
	}
	for k := range all {
		rest := collect(t, s.Scan(ctx, all[k].Position()))
		if !slices.Equal(positions(rest), positions(all[k+1:])) {
			t.Fatalf("resumed after %v:\n got %v\nwant %v", all[k].Position(), positions(rest), positions(all[k+1:]))
		}
	}
	// FromCommitID is inclusive, as in the original package: it includes
	// every commit of a shared commit id.
	from := collect(t, s.Scan(ctx, store.FromCommitID(all[4].CommitID)))
	if !slices.Equal(positions(from), positions(all[3:])) {
		t.Fatalf("from commit id %s: got %v", all[4].CommitID, positions(from))
	}
	// Before is an exclusive upper bound on commit ids.
	upTo := collect(t, s.Scan(ctx, all[2].Position(), func(o *store.ScanOptions) { o.Before = all[9].CommitID }))
	if !slices.Equal(positions(upTo), positions(all[3:9])) {
		t.Fatalf("after #2 before %s: got %v", all[9].CommitID, positions(upTo))
	}
}

func TestScanMergesBuckets(t *testing.T) {
	s, _ := setup(t, store.Config{IndexBuckets: 4, PageSize: 10})
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(8)
	for a := range 40 {
		g.Go(func() error {
			for v := range 5 {
				if _, err := s.Append(ctx, store.Commit{AggregateID: fmt.Sprintf("agg-%02d", a), Version: int64(v), Events: events(t, v)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	all := collect(t, s.Scan(ctx, store.Position{}))
	if len(all) != 200 {
		t.Fatalf("scan read %d, want 200", len(all))
	}
	if !slices.IsSortedFunc(all, func(a, b store.Commit) int { return a.Position().Compare(b.Position()) }) {
		t.Fatal("buckets not merged in position order")
	}
	total := 0
	for _, b := range s.Buckets() {
		part := collect(t, s.Scan(ctx, store.Position{}, func(o *store.ScanOptions) { o.Buckets = []string{b} }))
		for _, c := range part {
			if s.Bucket(c.AggregateID) != b {
				t.Fatalf("bucket %s returned %s of bucket %s", b, c.AggregateID, s.Bucket(c.AggregateID))
			}
		}
		total += len(part)
	}
	if total != 200 {
		t.Fatalf("buckets hold %d commits in all, want 200", total)
	}
	for _, err := range s.Scan(ctx, store.Position{}, func(o *store.ScanOptions) { o.Buckets = []string{"t"} }) {
		if !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("unknown bucket: %v", err)
		}
	}
	// The original package's reader sees only bucket "t": a bucketed table
	// writes none there.
	orig, _ := store.New(ddbtest.Client(t), store.Config{TableName: s.Config().TableName})
	if got := collect(t, orig.Scan(ctx, store.Position{})); len(got) != 0 {
		t.Fatalf("bucket t holds %d commits", len(got))
	}
}

// dropFirstResponse lets the first request of one operation reach DynamoDB,
// then throws its response away and reports a connection reset, as when a
// response is lost on the way back: the SDK retries a write that succeeded.
type dropFirstResponse struct {
	op      string
	dropped atomic.Bool
	inner   *http.Client
}

func (d *dropFirstResponse) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.inner.Do(req)
	if err == nil && req.Header.Get("X-Amz-Target") == "DynamoDB_20120810."+d.op && d.dropped.CompareAndSwap(false, true) {
		resp.Body.Close()
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	}
	return resp, err
}

func TestAmbiguousRetryIsNotAConflict(t *testing.T) {
	for _, op := range []string{"PutItem", "TransactWriteItems"} {
		t.Run(op, func(t *testing.T) {
			drop := &dropFirstResponse{op: op, inner: &http.Client{}}
			s, _ := setup(t, store.Config{}, func(o *dynamodb.Options) { o.HTTPClient = drop })
			ctx := context.Background()
			var got []store.Commit
			var err error
			if op == "PutItem" {
				var c store.Commit
				c, err = s.Append(ctx, store.Commit{AggregateID: "a", Version: 0, Events: events(t, "once")})
				got = []store.Commit{c}
			} else {
				got, err = s.AppendAll(ctx,
					store.Commit{AggregateID: "a", Version: 0, Events: events(t, "once")},
					store.Commit{AggregateID: "b", Version: 0, Events: events(t, "once")})
			}
			if !drop.dropped.Load() {
				t.Fatal("the fault was not injected")
			}
			if err != nil {
				t.Fatalf("retried append: %v, want success", err)
			}
			stored := collect(t, s.Scan(ctx, store.Position{}))
			if len(stored) != len(got) || stored[0].CommitID != got[0].CommitID {
				t.Fatalf("stored %v, returned %v", positions(stored), positions(got))
			}
			// A second, independent append of the same version is a conflict.
			if _, err := s.Append(ctx, store.Commit{AggregateID: "a", Version: 0, Events: events(t, "again")}); !errors.Is(err, store.ErrVersionConflict) {
				t.Fatalf("independent append of a taken version: %v, want a conflict", err)
			}
		})
	}
}

func TestCorruptItemsAreReportedWithTheirKey(t *testing.T) {
	s, client := setup(t, store.Config{})
	ctx := context.Background()
	table := s.Config().TableName
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	raw := func(version, committedAt, evs string) map[string]types.AttributeValue {
		item := map[string]types.AttributeValue{
			"aggregateId": &types.AttributeValueMemberS{Value: "x"},
			"version":     &types.AttributeValueMemberN{Value: version},
			"commitId":    &types.AttributeValueMemberS{Value: "2020010100000000" + version[:1] + ":x"},
			"active":      &types.AttributeValueMemberS{Value: "t"},
			"events":      &types.AttributeValueMemberS{Value: evs},
		}
		if committedAt != "" {
			item["committedAt"] = &types.AttributeValueMemberN{Value: committedAt}
		}
		return item
	}
	put(raw("0", "1", `[1]`))
	put(raw("1", "1", `[1, oops`))
	put(raw("2", "", `[1]`))
	put(raw("3.5", "1", `[1]`))
	put(raw("4", "1", `[4]`))
	wantErrs := map[string]string{"1": "events", "2": "committedAt", "3.5": "version"}
	check := func(name string, seq func(func(store.Commit, error) bool)) {
		var good []int64
		bad := map[string]string{}
		for c, err := range seq {
			if err != nil {
				var de *store.DecodeError
				if !errors.As(err, &de) || !errors.Is(err, store.ErrCorruptCommit) || de.AggregateID != "x" {
					t.Fatalf("%s: %v, want a *DecodeError naming aggregate x", name, err)
				}
				bad[de.Version] = de.Attribute
				continue
			}
			good = append(good, c.Version)
		}
		if !slices.Equal(good, []int64{0, 4}) {
			t.Fatalf("%s: good commits %v, want [0 4]", name, good)
		}
		if fmt.Sprint(bad) != fmt.Sprint(wantErrs) {
			t.Fatalf("%s: reported %v, want %v", name, bad, wantErrs)
		}
	}
	check("query", s.Query(ctx, "x", 0))
	check("scan", s.Scan(ctx, store.Position{}))
}

func TestTableLifecycle(t *testing.T) {
	client := ddbtest.Client(t)
	ctx := context.Background()
	cfg := store.Config{TableName: ddbtest.TableName(t)}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); !errors.Is(err, store.ErrTableExists) {
		t.Fatalf("second create: %v, want ErrTableExists", err)
	}
	d, mismatches, err := store.DescribeTable(ctx, client, cfg)
	if err != nil || len(mismatches) != 0 {
		t.Fatalf("describe: %v %v", mismatches, err)
	}
	if d.StreamSpecification == nil || !aws.ToBool(d.StreamSpecification.StreamEnabled) || d.StreamSpecification.StreamViewType != types.StreamViewTypeNewImage {
		t.Fatalf("stream %+v, want NEW_IMAGE", d.StreamSpecification)
	}
	if d.BillingModeSummary != nil && d.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Fatalf("billing %v, want on-demand", d.BillingModeSummary.BillingMode)
	}
	if err := store.DeleteTable(ctx, client, cfg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.DescribeTable(ctx, client, cfg); !errors.Is(err, store.ErrTableNotFound) {
		t.Fatalf("describe after delete: %v", err)
	}
	if err := store.DeleteTable(ctx, client, cfg); !errors.Is(err, store.ErrTableNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{ReadCapacity: 5}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("half-provisioned: %v", err)
	}
	// A table whose index is keyed differently is reported.
	def := store.TableDefinition(cfg, store.TableOptions{})
	def.GlobalSecondaryIndexes[0].KeySchema[1].AttributeName = aws.String("committedAt")
	def.AttributeDefinitions[3] = types.AttributeDefinition{AttributeName: aws.String("committedAt"), AttributeType: types.ScalarAttributeTypeN}
	if _, err := client.CreateTable(ctx, def); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	_, mismatches, err = store.DescribeTable(ctx, client, cfg)
	if err != nil || len(mismatches) == 0 || !strings.Contains(strings.Join(mismatches, ";"), "commitId") {
		t.Fatalf("mismatches %v, %v; want the index's range key named", mismatches, err)
	}
}

func TestReadsStopOnCancelledContext(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.Append(ctx, store.Commit{AggregateID: "a", Events: events(t, 1)}); err != nil {
		t.Fatal(err)
	}
	cancel()
	for _, seq := range []func(func(store.Commit, error) bool){s.Query(ctx, "a", 0), s.Scan(ctx, store.Position{})} {
		n := 0
		for _, err := range seq {
			n++
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("read with a cancelled context: %v", err)
			}
		}
		if n != 1 {
			t.Fatalf("yielded %d times, want one error", n)
		}
	}
}

func TestQueryBoundsAndDirection(t *testing.T) {
	s, _ := setup(t, store.Config{})
	ctx := context.Background()
	for v := range 10 {
		if _, err := s.Append(ctx, store.Commit{AggregateID: "a", Version: int64(v), Events: events(t, v)}); err != nil {
			t.Fatal(err)
		}
	}
	versions := func(seq func(func(store.Commit, error) bool)) []int64 {
		var out []int64
		for _, c := range collect(t, seq) {
			out = append(out, c.Version)
		}
		return out
	}
	cases := []struct {
		name string
		from int64
		opts store.QueryOptions
		want []int64
	}{
		{"bounded", 3, store.QueryOptions{ToVersion: 6}, []int64{3, 4, 5}},
		{"backward", 7, store.QueryOptions{Backward: true}, []int64{9, 8, 7}},
		{"backward bounded, pages of one", 0, store.QueryOptions{ToVersion: 4, Backward: true, PageSize: 1}, []int64{3, 2, 1, 0}},
		{"empty range", 5, store.QueryOptions{ToVersion: 5}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := versions(s.Query(ctx, "a", tc.from, func(o *store.QueryOptions) { *o = tc.opts }))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Stopping early reads no further pages.
	n := 0
	for range s.Query(ctx, "a", 0, func(o *store.QueryOptions) { o.Backward, o.PageSize = true, 1 }) {
		n++
		break
	}
	if n != 1 {
		t.Fatal("break did not stop the sequence")
	}
}
