package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The source suite's cases for items that are not well-formed commits and
// for gaps that cannot be filled (docs/items.md): each is reported (an
// ERROR log naming its key and kind, a hook), handled by the
// subscription's Corrupt policy, and other aggregates keep flowing.

// slogCapture is a slog handler that keeps every record, for tests that
// check what is logged.
type slogCapture struct {
	mu    *sync.Mutex
	recs  *[]loggedRecord
	attrs []slog.Attr
}

type loggedRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newSlogCapture() *slogCapture {
	return &slogCapture{mu: &sync.Mutex{}, recs: &[]loggedRecord{}}
}

func (h *slogCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *slogCapture) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *slogCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &slogCapture{mu: h.mu, recs: h.recs, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *slogCapture) WithGroup(string) slog.Handler { return h }

// errorsWith returns the ERROR records whose attributes include every one
// of want.
func (h *slogCapture) errorsWith(want map[string]string) []loggedRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []loggedRecord
	for _, r := range *h.recs {
		if r.level < slog.LevelError {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && r.attrs[k] == v
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// faultReports records what the corrupt, gap and skip hooks observe.
type faultReports struct {
	mu      sync.Mutex
	corrupt []*store.DecodeError
	gaps    []string // "aggregate from to"
	gapAt   []time.Time
	skipped []string // commitKey
}

func (r *faultReports) OnCorrupt(_ string, de *store.DecodeError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt = append(r.corrupt, de)
}

func (r *faultReports) OnGap(_, id string, from, to int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps = append(r.gaps, fmt.Sprintf("%s %d %d", id, from, to))
	r.gapAt = append(r.gapAt, time.Now())
}

func (r *faultReports) OnSkipped(_ string, c Commit, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped = append(r.skipped, commitKey(c))
}

func (r *faultReports) firstGapAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gapAt[0]
}

func (r *faultReports) counts() (corrupt, gaps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.corrupt), len(r.gaps)
}

// parkedOf returns the subscription's parked commits: key → reason.
func parkedOf(t testing.TB, cps checkpoint.Store, sub string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, err := range cps.(checkpoint.ParkStore).Parked(context.Background(), sub, "") {
		if err != nil {
			t.Fatal(err)
		}
		out[commitKey(p.Commit)] = p.Reason
	}
	return out
}

// checkParked fails unless exactly the keys of want are parked, each with a
// reason that contains want's.
func checkParked(t *testing.T, parked, want map[string]string) {
	t.Helper()
	if len(parked) != len(want) {
		t.Errorf("parked %v, want %v", parked, want)
	}
	for key, reason := range want {
		if !strings.Contains(parked[key], reason) {
			t.Errorf("%s parked with reason %q, want one naming %q", key, parked[key], reason)
		}
	}
}

// putRaw writes an item in the commits layout as another program might:
// a well-formed commit of aggregate id at version (DynamoDB's number text),
// changed by mutate.
func (e *suiteEnv) putRaw(t *testing.T, id, version string, mutate func(map[string]types.AttributeValue)) {
	t.Helper()
	now := time.Now().UnixMilli()
	item := map[string]types.AttributeValue{
		store.AttrAggregateID: &types.AttributeValueMemberS{Value: id},
		store.AttrVersion:     &types.AttributeValueMemberN{Value: version},
		store.AttrCommitID:    &types.AttributeValueMemberS{Value: store.FormatCommitID(now, id)},
		store.AttrCommittedAt: &types.AttributeValueMemberN{Value: strconv.FormatInt(now, 10)},
		store.AttrEvents:      &types.AttributeValueMemberS{Value: `[{"type":"deposited","amount":1}]`},
		store.AttrActive:      &types.AttributeValueMemberS{Value: e.s.Bucket(id)},
	}
	if mutate != nil {
		mutate(item)
	}
	if _, err := e.client.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(e.s.Config().TableName), Item: item}); err != nil {
		t.Fatal(err)
	}
}

// corruption makes an item one kind of corrupt.
type corruption struct {
	kind   store.CorruptKind
	mutate func(id string, item map[string]types.AttributeValue)
	// indexed: the item is in the commit-order index.
	indexed bool
}

// corruptions lists a way to make each kind of corrupt item that has a
// key (every kind but KindBadAggregateID, which an item of the table
// cannot be; KindBadVersion is written by testCorruptKinds apart).
func corruptions() []corruption {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	return []corruption{
		{store.KindMissingCommitID, func(_ string, item map[string]types.AttributeValue) { delete(item, store.AttrCommitID) }, false},
		{store.KindMalformedCommitID, func(id string, item map[string]types.AttributeValue) { item[store.AttrCommitID] = s("garbage:" + id) }, true},
		{store.KindForeignCommitID, func(_ string, item map[string]types.AttributeValue) {
			item[store.AttrCommitID] = s(store.FormatCommitID(time.Now().UnixMilli(), "someone-else"))
		}, true},
		{store.KindFutureCommitID, func(id string, item map[string]types.AttributeValue) {
			item[store.AttrCommitID] = s(store.FormatCommitID(time.Now().AddDate(1, 0, 0).UnixMilli(), id))
		}, true},
		{store.KindBadCommittedAt, func(_ string, item map[string]types.AttributeValue) { delete(item, store.AttrCommittedAt) }, true},
		{store.KindEventsNotArray, func(_ string, item map[string]types.AttributeValue) {
			item[store.AttrEvents] = s(brokenEvents)
		}, true},
	}
}

// faultCase is one case's table, worker and what it observes.
type faultCase struct {
	*suiteEnv
	logs *slogCapture
	rep  *faultReports
	stop func() error
}

// faultTuning is the timing of the cases here.
var faultTuning = tuning{reread: 500 * time.Millisecond}

// startFaultCase runs a worker with sub on a table of its own, its logs
// captured and its corrupt, gap and skip hooks recorded, and waits until
// it reads as it does once started (see sourceHarness.live).
func startFaultCase(t *testing.T, h sourceHarness, sub Subscription) *faultCase {
	t.Helper()
	fc := &faultCase{suiteEnv: newSuiteEnv(t, h, store.Config{}), logs: newSlogCapture(), rep: &faultReports{}}
	fc.cfg.Logger = slog.New(fc.logs)
	var w *Worker
	w, fc.stop = fc.start(t, sub, faultTuning, fc.rep)
	waitRunning(t, w)
	if h.live != nil {
		h.live(t, fc.cfg.Checkpoints, sub.Name)
	}
	return fc
}

// brokenEvents are events that are not JSON.
const brokenEvents = `[{"type":"deposited","amount":`

// maxInt64Version is a version above store.MaxVersion: 2^63−1.
const maxInt64Version = "9223372036854775807"

// testCorruptKinds: for each kind, an aggregate whose version 1 is an item
// of that kind between good versions 0 and 2, and an aggregate with an item
// at version 2^63−1 between good ones. Each item is reported once (hook and
// an ERROR log naming its key and kind); with CorruptPark it is parked with
// its kind as reason and version 2 parks behind it; with CorruptSkip it is
// skipped and version 2 is delivered. The item at 2^63−1 is never
// delivered, and its aggregate's versions go on. Other aggregates flow.
func testCorruptKinds(t *testing.T, h sourceHarness, policy CorruptPolicy) {
	col := &commitCollector{}
	e := startFaultCase(t, h, Subscription{Name: "corrupt", Handler: col, Corrupt: policy})
	logs, rep, stop, tn := e.logs, e.rep, e.stop, faultTuning
	oks := []string{"ok0", "ok1"}
	want := appendVersions(t, e.s, oks, 0, 2)
	wantParked := map[string]string{}
	for _, k := range corruptions() {
		id := "k-" + string(k.kind)
		want = append(want, appendVersions(t, e.s, []string{id}, 0, 1)...)
		e.putRaw(t, id, "1", func(item map[string]types.AttributeValue) { k.mutate(id, item) })
		after := appendVersions(t, e.s, []string{id}, 2, 3)
		if policy == CorruptSkip {
			want = append(want, after...)
		} else {
			wantParked[id+"#1"] = string(k.kind)
			wantParked[id+"#2"] = "parked behind"
		}
	}
	big := "k-" + string(store.KindBadVersion)
	want = append(want, appendVersions(t, e.s, []string{big}, 0, 1)...)
	e.putRaw(t, big, maxInt64Version, nil)
	want = append(want, appendVersions(t, e.s, []string{big}, 1, 3)...)
	if policy == CorruptPark {
		wantParked[big+"#"+maxInt64Version] = string(store.KindBadVersion)
	}
	want = append(want, appendVersions(t, e.s, oks, 2, 4)...)
	kinds := len(corruptions()) + 1

	ddbtest.Eventually(t, 15*time.Second, func() bool {
		n, _ := rep.counts()
		return col.count() >= len(want) && n >= kinds && len(parkedOf(t, e.cfg.Checkpoints, "corrupt")) >= len(wantParked)
	}, "not all delivered, reported and parked: %d of %d delivered, parked %v", col.count(), len(want), parkedOf(t, e.cfg.Checkpoints, "corrupt"))
	time.Sleep(tn.quiet()) // past the re-reads: nothing more is reported or delivered
	mustStop(t, stop)
	col.check(t, want)

	reported := map[string]int{}
	for _, de := range rep.corrupt {
		key := de.AggregateID + "#" + de.Version
		reported[key]++
		if !strings.HasSuffix(de.AggregateID, string(de.Kind)) {
			t.Errorf("%s reported as %s", key, de.Kind)
		}
		if len(logs.errorsWith(map[string]string{"aggregate": de.AggregateID, "version": de.Version, "kind": string(de.Kind)})) == 0 {
			t.Errorf("no ERROR log names %s and its kind %s", key, de.Kind)
		}
	}
	for _, k := range corruptions() {
		if key := "k-" + string(k.kind) + "#1"; reported[key] != 1 {
			t.Errorf("%s reported %d times, want once", key, reported[key])
		}
	}
	if key := big + "#" + maxInt64Version; reported[key] != 1 {
		t.Errorf("%s reported %d times, want once", key, reported[key])
	}
	if len(rep.corrupt) != kinds {
		t.Errorf("%d reports, want %d: %v", len(rep.corrupt), kinds, reported)
	}

	checkParked(t, parkedOf(t, e.cfg.Checkpoints, "corrupt"), wantParked)
	if policy == CorruptPark {
		// Events that are not JSON are parked as a JSON string of their
		// text, so that the parked item lists and replays as JSON.
		id := "k-" + string(store.KindEventsNotArray)
		for p, err := range e.cfg.Checkpoints.(checkpoint.ParkStore).Parked(context.Background(), "corrupt", id) {
			if err != nil {
				t.Fatal(err)
			}
			if p.Commit.Version != 1 {
				continue
			}
			var text string
			if err := json.Unmarshal(p.Commit.Events, &text); err != nil || text != brokenEvents {
				t.Errorf("%s#1 parked with events %s, want the JSON string of %q", id, p.Commit.Events, brokenEvents)
			}
		}
	}
	if policy == CorruptSkip {
		slices.Sort(rep.skipped)
		var wantSkipped []string
		for _, k := range corruptions() {
			wantSkipped = append(wantSkipped, "k-"+string(k.kind)+"#1")
		}
		wantSkipped = append(wantSkipped, big+"#"+maxInt64Version)
		slices.Sort(wantSkipped)
		if !slices.Equal(rep.skipped, wantSkipped) {
			t.Errorf("skipped %v, want %v", rep.skipped, wantSkipped)
		}
	}
}

// testCorruptAlone: an item of each kind that is its aggregate's only
// version, with no later version to make the source read the aggregate
// from the table, is still reported and parked: the index source finds a
// commit id far ahead or malformed past the future bound. An item without
// a commit id is not in the index: only a source that reads the table's
// writes (the stream) finds it alone (docs/items.md).
func testCorruptAlone(t *testing.T, h sourceHarness) {
	rec := newRecorder()
	e := startFaultCase(t, h, Subscription{Name: "alone", Handler: rec})
	logs, rep, stop, tn := e.logs, e.rep, e.stop, faultTuning
	appendVersions(t, e.s, []string{"a", "b"}, 0, 2)
	wantParked := map[string]string{}
	for _, k := range corruptions() {
		if !k.indexed && !h.unindexed {
			continue
		}
		id := "k-" + string(k.kind)
		e.putRaw(t, id, "0", func(item map[string]types.AttributeValue) { k.mutate(id, item) })
		wantParked[id+"#0"] = string(k.kind)
	}
	appendVersions(t, e.s, []string{"a", "b"}, 2, 4)
	want := map[string]int64{"a": 4, "b": 4}
	ddbtest.Eventually(t, 15*time.Second, func() bool {
		return covers(rec.delivered(), want) && len(parkedOf(t, e.cfg.Checkpoints, "alone")) >= len(wantParked)
	}, "not all delivered and parked: %v", parkedOf(t, e.cfg.Checkpoints, "alone"))
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	rec.check(t, want)
	parked := parkedOf(t, e.cfg.Checkpoints, "alone")
	for key, kind := range wantParked {
		if !strings.Contains(parked[key], kind) {
			t.Errorf("%s parked with reason %q, want one naming %s", key, parked[key], kind)
		}
		id := strings.TrimSuffix(key, "#0")
		if len(logs.errorsWith(map[string]string{"aggregate": id, "version": "0", "kind": kind})) != 1 {
			t.Errorf("%s: want one ERROR log naming it and its kind", key)
		}
	}
	if len(rep.corrupt) != len(wantParked) || len(parked) != len(wantParked) {
		t.Errorf("%d reported, %d parked; want %d each: %v", len(rep.corrupt), len(parked), len(wantParked), parked)
	}
}

// testGapUnfillable: version 2 of an aggregate is never written, version 3
// is. The source waits GapTimeout for version 2, then reports the gap (a
// hook and an ERROR log) and handles version 3 by the Corrupt policy:
// parked with the gap as reason, version 4 behind it (park), or delivered
// across the gap (skip). Never before GapTimeout; other aggregates flow
// meanwhile.
func testGapUnfillable(t *testing.T, h sourceHarness, policy CorruptPolicy) {
	col := &commitCollector{}
	const gapTimeout = 800 * time.Millisecond
	e := startFaultCase(t, h, Subscription{Name: "gap", Handler: col, Corrupt: policy, GapTimeout: gapTimeout})
	logs, rep, stop, tn := e.logs, e.rep, e.stop, faultTuning
	want := appendVersions(t, e.s, []string{"g", "ok"}, 0, 2)
	v3, err := e.s.Append(context.Background(), store.Commit{AggregateID: "g", Version: 3, Events: deposit(t)})
	if err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	flowing := appendVersions(t, e.s, []string{"ok"}, 2, 4)
	want = append(want, flowing...)
	// Other aggregates flow while g waits.
	ddbtest.Eventually(t, 10*time.Second, func() bool { return col.count() >= len(want) }, "other aggregates did not flow during the gap")
	ddbtest.Eventually(t, 10*time.Second, func() bool { _, n := rep.counts(); return n > 0 }, "the gap was not reported")
	if waited := rep.firstGapAt().Sub(written); waited < gapTimeout {
		t.Errorf("the gap was handled %v after version 3 was written, before GapTimeout %v", waited, gapTimeout)
	}
	after := appendVersions(t, e.s, []string{"g"}, 4, 5)
	wantParked := map[string]string{}
	if policy == CorruptSkip {
		want = append(want, v3)
		want = append(want, after...)
	} else {
		wantParked["g#3"] = "version 2 missing"
		wantParked["g#4"] = "parked behind"
	}
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		return col.count() >= len(want) && len(parkedOf(t, e.cfg.Checkpoints, "gap")) >= len(wantParked)
	}, "version 3 and after not handled by the policy")
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	col.check(t, want)
	if !slices.Equal(rep.gaps, []string{"g 2 3"}) {
		t.Errorf("gaps reported %v, want [g 2 3]", rep.gaps)
	}
	if len(logs.errorsWith(map[string]string{"aggregate": "g", "fromVersion": "2", "toVersion": "2"})) != 1 {
		t.Error("want one ERROR log naming g and its missing version 2")
	}
	checkParked(t, parkedOf(t, e.cfg.Checkpoints, "gap"), wantParked)
}

// testGapFilledInTime: version 3 is written before version 2, which comes
// within GapTimeout (a slow writer): both are delivered in order, with no
// gap reported and nothing parked.
func testGapFilledInTime(t *testing.T, h sourceHarness) {
	rec := newRecorder()
	e := startFaultCase(t, h, Subscription{Name: "slow", Handler: rec, GapTimeout: 20 * time.Second})
	rep, stop, tn := e.rep, e.stop, faultTuning
	appendVersions(t, e.s, []string{"g", "ok"}, 0, 2)
	if _, err := e.s.Append(context.Background(), store.Commit{AggregateID: "g", Version: 3, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	appendVersions(t, e.s, []string{"ok"}, 2, 3)
	// The source has read past version 3 once the commit after it came.
	ddbtest.Eventually(t, 10*time.Second, func() bool { return rec.delivered()["ok"] == 3 }, "ok#2 not delivered")
	if got := rec.delivered()["g"]; got != 2 {
		t.Fatalf("g delivered up to %d before its version 2 was written", got)
	}
	appendVersions(t, e.s, []string{"g"}, 2, 3)
	want := map[string]int64{"g": 4, "ok": 3}
	ddbtest.Eventually(t, 10*time.Second, func() bool { return covers(rec.delivered(), want) }, "not delivered once the gap filled: %v", rec.delivered())
	time.Sleep(tn.quiet())
	mustStop(t, stop)
	rec.check(t, want)
	if c, g := rep.counts(); c != 0 || g != 0 {
		t.Errorf("%d corrupt items and %d gaps reported, want none", c, g)
	}
	if p := parkedOf(t, e.cfg.Checkpoints, "slow"); len(p) != 0 {
		t.Errorf("parked %v, want nothing", p)
	}
}

// testGapAcrossRestart: a version held behind a gap when the worker stops
// is not lost: the checkpoint stays before it, the next worker reads it
// again, waits its own GapTimeout and parks it with the gap as reason.
func testGapAcrossRestart(t *testing.T, h sourceHarness) {
	col := &commitCollector{}
	sub := Subscription{Name: "restart", Handler: col, GapTimeout: time.Minute}
	e := startFaultCase(t, h, sub)
	want := appendVersions(t, e.s, []string{"g", "ok"}, 0, 2)
	if _, err := e.s.Append(context.Background(), store.Commit{AggregateID: "g", Version: 3, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	last := appendVersions(t, e.s, []string{"ok"}, 2, 3)
	want = append(want, last...)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return col.count() >= len(want) }, "ok#2 not delivered")
	faultTuning.waitQuiet(last[0]) // the source has read g#3 and holds it
	mustStop(t, e.stop)
	if _, gaps := e.rep.counts(); gaps != 0 || len(parkedOf(t, e.cfg.Checkpoints, "restart")) != 0 {
		t.Fatal("the gap was handled before GapTimeout")
	}
	sub.GapTimeout = 500 * time.Millisecond
	_, stop := e.start(t, sub, faultTuning, e.rep)
	ddbtest.Eventually(t, 10*time.Second, func() bool { return len(parkedOf(t, e.cfg.Checkpoints, "restart")) > 0 }, "g#3 was not parked after the restart")
	mustStop(t, stop)
	col.check(t, want)
	checkParked(t, parkedOf(t, e.cfg.Checkpoints, "restart"), map[string]string{"g#3": "version 2 missing"})
}
