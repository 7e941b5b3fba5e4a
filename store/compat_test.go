package store_test

// Compatibility with the original npm package dynamodb-event-store@2.2.0,
// run for real through internal/original against the same DynamoDB Local:
// tables, items and commits written by either side are read by the other.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/internal/original"
	"github.com/dynamodb-event-store/eventstore/store"
)

// compatEnv is one table shared by a Go store and the original package.
type compatEnv struct {
	cfg    store.Config
	client *dynamodb.Client
	store  *store.Store
	orig   *original.Client
}

// compatSetup starts the original package on a table of the test's own,
// created by the original's createTable when byOriginal is set, else by
// store.CreateTable.
func compatSetup(t *testing.T, byOriginal bool) *compatEnv {
	t.Helper()
	ctx := t.Context()
	env := &compatEnv{
		cfg:    store.Config{TableName: ddbtest.TableName(t)},
		client: ddbtest.Client(t),
	}
	// The first run installs the package with npm (a few seconds).
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	orig, err := original.Start(sctx, original.Options{
		Endpoint:  ddbtest.Endpoint(t),
		TableName: env.cfg.TableName,
		IndexName: store.DefaultIndexName,
	})
	if err != nil {
		t.Fatalf("start the original package: %v", err)
	}
	t.Cleanup(func() {
		if err := orig.Close(); err != nil {
			t.Errorf("close the original package: %v", err)
		}
	})
	env.orig = orig
	if byOriginal {
		err = orig.CreateTable(ctx)
	} else {
		err = store.CreateTable(ctx, env.client, env.cfg, store.TableOptions{})
	}
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), env.client, env.cfg) })
	if env.store, err = store.New(env.client, env.cfg); err != nil {
		t.Fatal(err)
	}
	return env
}

// compatEvents are events of every JSON kind, written by both sides.
var compatEvents = []string{
	`[{"type":"accountCreated","username":"john","email":"john@doe.com"},{"type":"profileEdited","name":"John Doe","company":"Doe, Inc."}]`,
	`[{"type":"unicode","text":"Zoë – 日本語 – 🚀 – Ελληνικά","escapes":"quote \" backslash \\ tab \t newline \n <b>&amp;</b> \u2028\u2029 \u0000"}]`,
	`[{"nested":{"a":[1,[2,[3,{"deep":{"deeper":[true,false,null]}}]]],"empty":{},"none":[]}},null,true,false,"bare string",42]`,
	`[{"numbers":[0,-1,3.14,-2.5e-7,1e21,9007199254740991,-9007199254740991,0.1,123456789.123]}]`,
	`[{"null":null,"emptyString":"","zero":0,"false":false}]`,
}

// compatAggregates are aggregate ids written by both sides.
var compatAggregates = []string{
	"00000000-0000-0000-0000-000000000000",
	"agg:with:colons",
	"agrégat-日本-🚀",
}

// compatCommitIDPattern is the original's commit id: 17 digits, a colon and
// the aggregate id.
var compatCommitIDPattern = regexp.MustCompile(`^[0-9]{17}:`)

func compatDecodeJSON(t *testing.T, what string, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	return v
}

// compatEqualJSON reports whether a and b decode to the same JSON value,
// failing the test with both when they do not.
func compatEqualJSON(t *testing.T, what string, a, b []byte) bool {
	t.Helper()
	if va, vb := compatDecodeJSON(t, what, a), compatDecodeJSON(t, what, b); !reflect.DeepEqual(va, vb) {
		t.Errorf("%s differ:\n  Go:       %s\n  original: %s", what, a, b)
		return false
	}
	return true
}

func compatCollect(t *testing.T, seq func(func(store.Commit, error) bool)) []store.Commit {
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

func compatMarshal(t *testing.T, c store.Commit) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal %+v: %v", c, err)
	}
	return b
}

// compatOriginalCommits decodes the original's commits and checks that they
// come in commit id order, which is all the index promises. It then puts
// them, and raws in place, in Position order, the Go store's: commits that
// share a commit id (one aggregate, one millisecond) come in no defined
// order from the index.
func compatOriginalCommits(t *testing.T, what string, raws []json.RawMessage) []store.Commit {
	t.Helper()
	out := make([]store.Commit, len(raws))
	for i, r := range raws {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("%s: commit %d: %v: %s", what, i, err, r)
		}
		if i > 0 && out[i].CommitID < out[i-1].CommitID {
			t.Errorf("%s: commit %d (%s) comes after %s", what, i, out[i].CommitID, out[i-1].CommitID)
		}
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return out[a].Position().Compare(out[b].Position()) })
	sorted := make([]store.Commit, len(out))
	sortedRaw := make([]json.RawMessage, len(out))
	for i, j := range idx {
		sorted[i], sortedRaw[i] = out[j], raws[j]
	}
	copy(raws, sortedRaw)
	return sorted
}

// compatSameCommits checks that the Go store's commits and the original's
// (raw JSON, in the same order) are the same commits, field by field: the
// JSON of each Go commit decodes to the same value as the original's.
func compatSameCommits(t *testing.T, what string, goCommits []store.Commit, origRaw []json.RawMessage) {
	t.Helper()
	if len(goCommits) != len(origRaw) {
		var gp []string
		for _, c := range goCommits {
			gp = append(gp, c.Position().String())
		}
		t.Fatalf("%s: Go read %d commits %q, the original %d:\n%s", what, len(goCommits), gp, len(origRaw), origRaw)
	}
	for i, c := range goCommits {
		compatEqualJSON(t, fmt.Sprintf("%s: commit %d (%s)", what, i, c.Position()), compatMarshal(t, c), origRaw[i])
	}
}

// compatCheckCommitID checks the original's commit id rules on a commit.
func compatCheckCommitID(t *testing.T, c store.Commit, notBefore, notAfter int64) {
	t.Helper()
	if !compatCommitIDPattern.MatchString(c.CommitID) || c.CommitID != store.FormatCommitID(c.CommittedAt, c.AggregateID) {
		t.Errorf("%s: commitId %q, want %q (committedAt %d)", c.Position(), c.CommitID, store.FormatCommitID(c.CommittedAt, c.AggregateID), c.CommittedAt)
	}
	if at, err := store.ParseCommitIDTime(c.CommitID); err != nil || at.UnixMilli() != c.CommittedAt {
		t.Errorf("%s: commitId time %v (%v), committedAt %d", c.Position(), at, err, c.CommittedAt)
	}
	if c.CommittedAt < notBefore || c.CommittedAt > notAfter {
		t.Errorf("%s: committedAt %d outside the append calls [%d, %d]", c.Position(), c.CommittedAt, notBefore, notAfter)
	}
}

// TestCompatTableCreatedByOriginal: a table made by the original's
// createTable conforms to the Go store's definition, and the Go store
// writes and reads it.
func TestCompatTableCreatedByOriginal(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, true)
	ctx := t.Context()

	desc, mismatches, err := store.DescribeTable(ctx, env.client, env.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(mismatches) > 0 {
		t.Errorf("DescribeTable of the original's table reports mismatches: %q", mismatches)
	}
	// It really is the original's table: provisioned 15/15, no stream.
	if pt := desc.ProvisionedThroughput; pt == nil || aws.ToInt64(pt.ReadCapacityUnits) != 15 || aws.ToInt64(pt.WriteCapacityUnits) != 15 {
		t.Errorf("table throughput %+v, want 15/15", desc.ProvisionedThroughput)
	}
	if desc.StreamSpecification != nil && aws.ToBool(desc.StreamSpecification.StreamEnabled) {
		t.Errorf("the original's table has a stream: %+v", desc.StreamSpecification)
	}

	var written []store.Commit
	for v := range int64(3) {
		c, err := env.store.Append(ctx, store.Commit{AggregateID: "acc-1", Version: v, Events: json.RawMessage(compatEvents[v])})
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, c)
	}
	if _, err := env.store.Append(ctx, store.Commit{AggregateID: "acc-1", Version: 1, Events: json.RawMessage(`[1]`)}); !errors.Is(err, store.ErrVersionConflict) {
		t.Errorf("Append of a taken version: %v, want ErrVersionConflict", err)
	}
	for name, got := range map[string][]store.Commit{
		"Query": compatCollect(t, env.store.Query(ctx, "acc-1", 0)),
		"Scan":  compatCollect(t, env.store.Scan(ctx, store.Position{})),
	} {
		if len(got) != len(written) {
			t.Fatalf("%s read %d commits, want %d", name, len(got), len(written))
		}
		for i := range got {
			compatEqualJSON(t, fmt.Sprintf("%s commit %d", name, i), compatMarshal(t, got[i]), compatMarshal(t, written[i]))
		}
	}
}

// TestCompatGoReadsOriginalCommits: commits the original appended are read
// by the Go store's Query and Scan with every field equal to what the
// original itself reads.
func TestCompatGoReadsOriginalCommits(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, true)
	ctx := t.Context()

	before := time.Now().UnixMilli()
	n := 0
	for v := range int64(3) {
		for _, agg := range compatAggregates {
			if err := env.orig.Append(ctx, agg, v, json.RawMessage(compatEvents[n%len(compatEvents)])); err != nil {
				t.Fatalf("original append %s/%d: %v", agg, v, err)
			}
			n++
		}
	}
	// The original accepts an empty events array; the Go store reads it.
	if err := env.orig.Append(ctx, "empty", 0, json.RawMessage(`[]`)); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()

	for _, agg := range append(slices.Clone(compatAggregates), "empty") {
		for _, from := range []int64{0, 1} {
			want, err := env.orig.Query(ctx, agg, from)
			if err != nil {
				t.Fatal(err)
			}
			got := compatCollect(t, env.store.Query(ctx, agg, from))
			compatSameCommits(t, fmt.Sprintf("Query(%q, %d)", agg, from), got, want)
			for i, c := range got {
				compatCheckCommitID(t, c, before, after)
				// Not only the same values: the very text the original
				// stored (JSON.stringify) comes back.
				var o struct{ Events json.RawMessage }
				if err := json.Unmarshal(want[i], &o); err == nil && string(c.Events) != string(o.Events) {
					t.Errorf("%s events text %s, the original's %s", c.Position(), c.Events, o.Events)
				}
			}
		}
	}

	wantAll, err := env.orig.Scan(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	origAll := compatOriginalCommits(t, "original scan", wantAll)
	gotAll := compatCollect(t, env.store.Scan(ctx, store.Position{}))
	compatSameCommits(t, "Scan from the start", gotAll, wantAll)
	if len(gotAll) != n+1 {
		t.Errorf("Scan read %d commits, want %d", len(gotAll), n+1)
	}

	mid := origAll[len(origAll)/2].CommitID
	wantFrom, err := env.orig.Scan(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	compatOriginalCommits(t, "original scan from "+mid, wantFrom)
	compatSameCommits(t, "Scan from "+mid, compatCollect(t, env.store.Scan(ctx, store.FromCommitID(mid))), wantFrom)
}

// TestCompatGoReadsOriginalNonArrayEvents: the original stores
// JSON.stringify of whatever `events` it is given; the Go store reports a
// commit whose events are not an array as a *DecodeError naming it, and
// reads on.
func TestCompatGoReadsOriginalNonArrayEvents(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, false)
	ctx := t.Context()
	for v, ev := range []string{`[1]`, `{"type":"notAnArray"}`, `[2]`} {
		if err := env.orig.Append(ctx, "odd", int64(v), json.RawMessage(ev)); err != nil {
			t.Fatal(err)
		}
	}
	var versions []int64
	var decodeErrs []*store.DecodeError
	for c, err := range env.store.Query(ctx, "odd", 0) {
		var de *store.DecodeError
		switch {
		case errors.As(err, &de):
			decodeErrs = append(decodeErrs, de)
		case err != nil:
			t.Fatal(err)
		default:
			versions = append(versions, c.Version)
		}
	}
	if !slices.Equal(versions, []int64{0, 2}) || len(decodeErrs) != 1 ||
		decodeErrs[0].Version != "1" || decodeErrs[0].Attribute != store.AttrEvents || !errors.Is(decodeErrs[0], store.ErrCorruptCommit) {
		t.Errorf("Query read versions %v and errors %v; want 0 and 2, and a DecodeError for version 1's events", versions, decodeErrs)
	}
}

// TestCompatOriginalReadsGoCommits: commits the Go store appended are read
// by the original's query and scan, each equal, field by field, to the JSON
// of the Go commit.
func TestCompatOriginalReadsGoCommits(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, false)
	ctx := t.Context()

	// Besides the shared events: JSON the Go store keeps as given (spaces,
	// number spellings) and the original reads through JSON.parse.
	goEvents := append(slices.Clone(compatEvents),
		" [ {\"spaced\" : [ 1 , 2 ] } ,\n\t\"x\" ] ",
		`[1.50,1E3,-0,0.000001,1e-7,12345678901234567890]`,
	)
	before := time.Now().UnixMilli()
	var written []store.Commit
	n := 0
	for v := range int64(3) {
		for _, agg := range compatAggregates {
			c, err := env.store.Append(ctx, store.Commit{AggregateID: agg, Version: v, Events: json.RawMessage(goEvents[n%len(goEvents)])})
			if err != nil {
				t.Fatal(err)
			}
			written = append(written, c)
			n++
		}
	}
	for v, ev := range goEvents[len(compatEvents):] {
		c, err := env.store.Append(ctx, store.Commit{AggregateID: "spelling", Version: int64(v), Events: json.RawMessage(ev)})
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, c)
	}
	after := time.Now().UnixMilli()
	for _, c := range written {
		compatCheckCommitID(t, c, before, after)
	}

	byAggregate := map[string][]store.Commit{}
	for _, c := range written {
		byAggregate[c.AggregateID] = append(byAggregate[c.AggregateID], c)
	}
	for _, agg := range slices.Sorted(maps.Keys(byAggregate)) {
		for _, from := range []int64{0, 1} {
			got, err := env.orig.Query(ctx, agg, from)
			if err != nil {
				t.Fatal(err)
			}
			compatSameCommits(t, fmt.Sprintf("original query(%q, %d)", agg, from), byAggregate[agg][from:], got)
		}
	}

	slices.SortFunc(written, func(a, b store.Commit) int { return a.Position().Compare(b.Position()) })
	got, err := env.orig.Scan(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	compatOriginalCommits(t, "original scan", got)
	compatSameCommits(t, "original scan", written, got)

	mid := written[len(written)/2].CommitID
	got, err = env.orig.Scan(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	compatOriginalCommits(t, "original scan from "+mid, got)
	var want []store.Commit
	for _, c := range written {
		if c.CommitID >= mid {
			want = append(want, c)
		}
	}
	compatSameCommits(t, "original scan from "+mid, want, got)
}

// TestCompatVersionConflicts: a version taken by one side is a version
// conflict for the other, reported as each side's own conflict error, and
// the stored commit is left alone.
func TestCompatVersionConflicts(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, true)
	ctx := t.Context()

	goCommit, err := env.store.Append(ctx, store.Commit{AggregateID: "by-go", Version: 0, Events: json.RawMessage(`["go"]`)})
	if err != nil {
		t.Fatal(err)
	}
	err = env.orig.Append(ctx, "by-go", 0, json.RawMessage(`["original"]`))
	var oe *original.Error
	if !errors.Is(err, original.ErrVersionConflict) || !errors.As(err, &oe) || oe.Name != "EventStoreVersionConflictError" {
		t.Errorf("original append of a version Go wrote: %v, want its VersionConflictError", err)
	}

	if err := env.orig.Append(ctx, "by-original", 0, json.RawMessage(`["original"]`)); err != nil {
		t.Fatal(err)
	}
	origRaw, err := env.orig.Query(ctx, "by-original", 0)
	if err != nil || len(origRaw) != 1 {
		t.Fatalf("original query: %s, %v", origRaw, err)
	}
	_, err = env.store.Append(ctx, store.Commit{AggregateID: "by-original", Version: 0, Events: json.RawMessage(`["go"]`)})
	var ce *store.VersionConflictError
	if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &ce) {
		t.Fatalf("Go append of a version the original wrote: %v, want ErrVersionConflict", err)
	}
	if ce.AggregateID != "by-original" || ce.Version != 0 || ce.Existing == nil {
		t.Errorf("conflict error %+v, want aggregate by-original version 0 with the existing commit", ce)
	} else {
		compatEqualJSON(t, "conflict's existing commit", compatMarshal(t, *ce.Existing), origRaw[0])
	}

	// Both stored commits are unchanged.
	compatSameCommits(t, "by-go", []store.Commit{goCommit}, compatOrigQuery(t, env.orig, "by-go"))
	compatSameCommits(t, "by-original", compatCollect(t, env.store.Query(ctx, "by-original", 0)), origRaw)
}

func compatOrigQuery(t *testing.T, o *original.Client, aggregateID string) []json.RawMessage {
	t.Helper()
	raws, err := o.Query(t.Context(), aggregateID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return raws
}

// TestCompatMixedWriters: both sides append to the same aggregates, in turn
// and racing for the same versions; both readers then see the same complete
// history.
func TestCompatMixedWriters(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, false)
	ctx := t.Context()

	const versions = 6
	aggs := []string{"mix-a", "mix-b", "mix-c"}
	for v := range int64(versions) {
		for i, agg := range aggs {
			events := json.RawMessage(fmt.Sprintf(`[{"v":%d,"agg":%q}]`, v, agg))
			var err error
			if (int(v)+i)%2 == 0 {
				_, err = env.store.Append(ctx, store.Commit{AggregateID: agg, Version: v, Events: events})
			} else {
				err = env.orig.Append(ctx, agg, v, events)
			}
			if err != nil {
				t.Fatalf("append %s/%d: %v", agg, v, err)
			}
		}
	}

	// Racing: each side tries every version of one aggregate; exactly one
	// append wins each version, the other gets its own conflict error.
	const raced = 15
	var goWon, origWon [raced]bool
	var wg sync.WaitGroup
	errc := make(chan error, 2*raced)
	wg.Go(func() {
		for v := range raced {
			_, err := env.store.Append(ctx, store.Commit{AggregateID: "mix-race", Version: int64(v), Events: json.RawMessage(`["go"]`)})
			switch {
			case err == nil:
				goWon[v] = true
			case !errors.Is(err, store.ErrVersionConflict):
				errc <- fmt.Errorf("Go append mix-race/%d: %w", v, err)
			}
		}
	})
	wg.Go(func() {
		for v := range raced {
			err := env.orig.Append(ctx, "mix-race", int64(v), json.RawMessage(`["original"]`))
			switch {
			case err == nil:
				origWon[v] = true
			case !errors.Is(err, original.ErrVersionConflict):
				errc <- fmt.Errorf("original append mix-race/%d: %w", v, err)
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for v := range raced {
		if goWon[v] == origWon[v] {
			t.Errorf("mix-race version %d: Go won %v, the original won %v; want exactly one", v, goWon[v], origWon[v])
		}
	}
	aggs = append(aggs, "mix-race")

	for _, agg := range aggs {
		got := compatCollect(t, env.store.Query(ctx, agg, 0))
		for i, c := range got {
			if c.Version != int64(i) {
				t.Fatalf("Query(%q): commit %d has version %d", agg, i, c.Version)
			}
		}
		want := versions
		if agg == "mix-race" {
			want = raced
		}
		if len(got) != want {
			t.Errorf("Query(%q) read %d commits, want %d", agg, len(got), want)
		}
		compatSameCommits(t, "history of "+agg, got, compatOrigQuery(t, env.orig, agg))
	}
	origAll, err := env.orig.Scan(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	compatOriginalCommits(t, "original scan", origAll)
	goAll := compatCollect(t, env.store.Scan(ctx, store.Position{}))
	if want := len(aggs[:3])*versions + raced; len(goAll) != want {
		t.Errorf("Scan read %d commits, want %d", len(goAll), want)
	}
	compatSameCommits(t, "scan", goAll, origAll)
}

// TestCompatRawItem: the item the Go store writes has the original's six
// attributes with the original's types, and only commitToken besides.
func TestCompatRawItem(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, true)
	ctx := t.Context()

	events := `[{"type":"x","text":"Zoë"}]`
	goCommit, err := env.store.Append(ctx, store.Commit{AggregateID: "raw-go", Version: 0, Events: json.RawMessage(events)})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.orig.Append(ctx, "raw-original", 0, json.RawMessage(events)); err != nil {
		t.Fatal(err)
	}
	getItem := func(aggregateID string) map[string]types.AttributeValue {
		t.Helper()
		out, err := env.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(env.cfg.TableName),
			Key: map[string]types.AttributeValue{
				store.AttrAggregateID: &types.AttributeValueMemberS{Value: aggregateID},
				store.AttrVersion:     &types.AttributeValueMemberN{Value: "0"},
			},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil || out.Item == nil {
			t.Fatalf("GetItem %s: %v (item %v)", aggregateID, err, out)
		}
		return out.Item
	}
	typeOf := func(v types.AttributeValue) string {
		switch v.(type) {
		case *types.AttributeValueMemberS:
			return "S"
		case *types.AttributeValueMemberN:
			return "N"
		default:
			return fmt.Sprintf("%T", v)
		}
	}
	schema := func(item map[string]types.AttributeValue) map[string]string {
		out := map[string]string{}
		for k, v := range item {
			out[k] = typeOf(v)
		}
		return out
	}

	origSchema := schema(getItem("raw-original"))
	wantOrig := map[string]string{"aggregateId": "S", "version": "N", "commitId": "S", "committedAt": "N", "events": "S", "active": "S"}
	if !maps.Equal(origSchema, wantOrig) {
		t.Errorf("the original's item has attributes %v, want %v", origSchema, wantOrig)
	}
	goItem := getItem("raw-go")
	wantGo := maps.Clone(origSchema)
	wantGo[store.AttrCommitToken] = "S"
	if got := schema(goItem); !maps.Equal(got, wantGo) {
		t.Errorf("Go's item has attributes %v, want the original's plus commitToken: %v", got, wantGo)
	}
	wantValues := map[string]string{
		"aggregateId": "raw-go",
		"version":     "0",
		"commitId":    goCommit.CommitID,
		"committedAt": fmt.Sprint(goCommit.CommittedAt),
		"events":      events,
		"active":      "t",
	}
	for k, want := range wantValues {
		var got string
		switch v := goItem[k].(type) {
		case *types.AttributeValueMemberS:
			got = v.Value
		case *types.AttributeValueMemberN:
			got = v.Value
		}
		if got != want {
			t.Errorf("Go's item: %s = %q, want %q", k, got, want)
		}
	}
	if tok, ok := goItem[store.AttrCommitToken].(*types.AttributeValueMemberS); !ok || tok.Value == "" {
		t.Errorf("Go's item: commitToken %v, want a non-empty string", goItem[store.AttrCommitToken])
	}
}

// TestCompatSameMillisecondCommits: commits of one aggregate appended in one
// millisecond share a commit id. The original's scan returns them all, from
// the start and from that commit id (inclusive), and the Go store's Scan
// returns the same commits in version order.
func TestCompatSameMillisecondCommits(t *testing.T) {
	t.Parallel()
	env := compatSetup(t, false)
	ctx := t.Context()
	frozen := env.cfg
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	frozen.Clock = func() time.Time { return at }
	s, err := store.New(env.client, frozen)
	if err != nil {
		t.Fatal(err)
	}
	// The original's commits come from the real clock, before 2030.
	if err := env.orig.Append(ctx, "before", 0, json.RawMessage(`[0]`)); err != nil {
		t.Fatal(err)
	}
	for _, agg := range []string{"tie-b", "tie-a"} {
		for v := range int64(4) {
			if _, err := s.Append(ctx, store.Commit{AggregateID: agg, Version: v, Events: json.RawMessage(fmt.Sprintf(`[%d]`, v))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tieID := store.FormatCommitID(at.UnixMilli(), "tie-b")
	for _, from := range []string{"", tieID} {
		got, err := env.orig.Scan(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		var order []string // as the index gives them
		for _, r := range got {
			var c store.Commit
			if err := json.Unmarshal(r, &c); err != nil {
				t.Fatal(err)
			}
			order = append(order, c.Position().String())
		}
		t.Logf("original scan from %q: %q", from, order)
		compatOriginalCommits(t, "original scan", got)
		after := store.Position{}
		if from != "" {
			after = store.FromCommitID(from)
		}
		// Read by a store whose clock is at the commits' time: to a reader
		// with the real clock, commit ids in 2030 lie past
		// store.MaxCommitIDAhead, which makes them corrupt.
		compatSameCommits(t, fmt.Sprintf("scan from %q", from), compatCollect(t, s.Scan(ctx, after)), got)
	}
}
