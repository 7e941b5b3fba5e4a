package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The tests of checkpoint.RequestStore, an optional ability of the
// ParkStore: skipped when it lacks it.

func requestStore(t *testing.T, ps checkpoint.ParkStore) checkpoint.RequestStore {
	t.Helper()
	rs, ok := ps.(checkpoint.RequestStore)
	if !ok {
		t.Skipf("%T does not implement checkpoint.RequestStore", ps)
	}
	return rs
}

func request(t *testing.T, rs checkpoint.RequestStore, r checkpoint.Request) checkpoint.Request {
	t.Helper()
	got, err := rs.Request(t.Context(), r)
	if err != nil {
		t.Fatalf("Request(%q, %q, %s): %v", r.Subscription, r.AggregateID, r.Kind, err)
	}
	return got
}

func requests(t *testing.T, rs checkpoint.RequestStore, sub string) []checkpoint.Request {
	t.Helper()
	return collect(t, fmt.Sprintf("Requests(%q)", sub), rs.Requests(t.Context(), sub))
}

func complete(t *testing.T, rs checkpoint.RequestStore, r checkpoint.Request) {
	t.Helper()
	if err := rs.Complete(t.Context(), r); err != nil {
		t.Fatalf("Complete(%q, %q, id %q): %v", r.Subscription, r.AggregateID, r.ID, err)
	}
}

// requestString describes a request's stored fields, times included, for
// comparisons.
func requestString(r checkpoint.Request) string {
	return fmt.Sprintf("%q/%q %s id=%q at=%d done=%v result=%q handled=%d completed=%d",
		r.Subscription, r.AggregateID, r.Kind, r.ID, r.RequestedAt.UnixMilli(), r.Done, r.Result, r.Handled, completedMillis(r))
}

func completedMillis(r checkpoint.Request) int64 {
	if r.CompletedAt.IsZero() {
		return 0
	}
	return r.CompletedAt.UnixMilli()
}

func requestStrings(rs []checkpoint.Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = requestString(r)
	}
	return out
}

func wantRequests(t *testing.T, what string, got []checkpoint.Request, want ...checkpoint.Request) {
	t.Helper()
	if g, w := requestStrings(got), requestStrings(want); !slices.Equal(g, w) {
		t.Fatalf("%s:\n got %q\nwant %q", what, g, w)
	}
}

func testRequestReplaces(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	check := clockWindow(t)
	first := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "acc-1", Kind: checkpoint.RequestReplay})
	if first.ID == "" || !utf8.ValidString(first.ID) || len(first.ID) > checkpoint.MaxNameBytes {
		t.Fatalf("Request set the id %q: want a non-empty valid one", first.ID)
	}
	check("RequestedAt set by Request", first.RequestedAt)
	if first.Subscription != "sub" || first.AggregateID != "acc-1" || first.Kind != checkpoint.RequestReplay || first.Done {
		t.Fatalf("Request returned %s", requestString(first))
	}
	wantRequests(t, "after one Request", requests(t, rs, "sub"), first)

	// A newer request for the same aggregate replaces it; a request for
	// another aggregate does not.
	second := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "acc-1", Kind: checkpoint.RequestDiscard})
	if second.ID == first.ID {
		t.Fatalf("two requests got the same id %q", first.ID)
	}
	other := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "acc-2", Kind: checkpoint.RequestReplay})
	wantRequests(t, "after a replacing Request", requests(t, rs, "sub"), second, other)

	// The caller's id and time are kept (at millisecond precision, in
	// UTC); fields only Complete sets are cleared.
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", -7200))
	given := request(t, rs, checkpoint.Request{
		Subscription: "sub", AggregateID: "acc-1", Kind: checkpoint.RequestReplay, ID: "op-7 ✓", RequestedAt: at,
		Done: true, Result: "stale", Handled: 9, CompletedAt: at,
	})
	want := checkpoint.Request{Subscription: "sub", AggregateID: "acc-1", Kind: checkpoint.RequestReplay, ID: "op-7 ✓",
		RequestedAt: time.Date(2031, 5, 6, 9, 8, 9, 123000000, time.UTC)}
	wantRequests(t, "Request with an id and a time", []checkpoint.Request{given}, want)
	got := requests(t, rs, "sub")
	wantRequests(t, "after a Request with an id and a time", got, want, other)
	if got[0].RequestedAt.Location() != time.UTC {
		t.Errorf("RequestedAt %v, want UTC", got[0].RequestedAt)
	}

	// A request done, then replaced, is pending again.
	complete(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "acc-2", ID: other.ID, Handled: 2})
	again := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "acc-2", Kind: checkpoint.RequestReplay})
	wantRequests(t, "after replacing a done request", requests(t, rs, "sub"), want, again)
}

func testRequestOrdering(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	ctx := t.Context()
	aggs := []string{"ab", "a#1", "a", "a\x01b", "a\x00", "a#", "b", "日本", strings.Repeat("z", store.MaxAggregateIDBytes)}
	subs := []string{"sub", "sub#2", "su", "orders"}
	byKey := map[[2]string]checkpoint.Request{}
	for i, agg := range aggs {
		for j, sub := range subs {
			kind := checkpoint.RequestReplay
			if (i+j)%2 == 1 {
				kind = checkpoint.RequestDiscard
			}
			byKey[[2]string{sub, agg}] = request(t, rs, checkpoint.Request{Subscription: sub, AggregateID: agg, Kind: kind})
		}
	}
	sortedAggs := slices.Clone(aggs)
	slices.Sort(sortedAggs)
	sortedSubs := slices.Clone(subs)
	slices.Sort(sortedSubs)
	var all []checkpoint.Request
	for _, sub := range sortedSubs {
		var want []checkpoint.Request
		for _, agg := range sortedAggs {
			want = append(want, byKey[[2]string{sub, agg}])
		}
		wantRequests(t, fmt.Sprintf("Requests(%q)", sub), requests(t, rs, sub), want...)
		all = append(all, want...)
	}
	wantRequests(t, `Requests("")`, requests(t, rs, ""), all...)
	if got := requests(t, rs, "nobody"); len(got) != 0 {
		t.Errorf("Requests of a subscription with none: %q", requestStrings(got))
	}

	n := 0
	for _, err := range rs.Requests(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("breaking out of Requests after three saw %d", n)
	}

	// Parked commits and checkpoints are not requests, and requests are
	// neither.
	park(t, ps, checkpoint.Parked{Subscription: "parked-only", Commit: commit("a", 0, `[1]`)})
	if got := requests(t, rs, "parked-only"); len(got) != 0 {
		t.Errorf("Requests of a subscription with parked commits only: %q", requestStrings(got))
	}
	wantRequests(t, `Requests("") after a Park`, requests(t, rs, ""), all...)
	if got := parked(t, ps, "sub", ""); len(got) != 0 {
		t.Errorf("Parked(sub) lists requests: %v", parkedKeys(got))
	}
}

func testRequestComplete(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	ctx := t.Context()
	r := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestReplay})
	check := clockWindow(t)
	done := r
	done.Result, done.Handled = "subscribe: version 3 still fails", 2
	// Complete takes its fields from r: another kind or time is not stored.
	arg := done
	arg.Kind, arg.RequestedAt = checkpoint.RequestDiscard, time.Unix(1, 0)
	complete(t, rs, arg)
	got := requests(t, rs, "sub")
	if len(got) != 1 {
		t.Fatalf("after Complete: %q", requestStrings(got))
	}
	check("CompletedAt", got[0].CompletedAt)
	done.Done, done.CompletedAt = true, got[0].CompletedAt
	wantRequests(t, "after Complete", got, done)

	// Completing again overwrites the result; an empty one is stored empty.
	done.Result, done.Handled = "", 0
	complete(t, rs, done)
	got = requests(t, rs, "sub")
	if len(got) != 1 {
		t.Fatalf("after a second Complete: %q", requestStrings(got))
	}
	done.CompletedAt = got[0].CompletedAt
	wantRequests(t, "after a second Complete", got, done)

	// A long result with an invalid byte is stored cut and valid.
	done.Result = "bad \xff byte " + strings.Repeat("é", checkpoint.MaxReasonBytes)
	complete(t, rs, done)
	got = requests(t, rs, "sub")
	if res := got[0].Result; len(res) > checkpoint.MaxReasonBytes || len(res) < checkpoint.MaxReasonBytes-1 || !utf8.ValidString(res) || !strings.HasPrefix(res, "bad \uFFFD byte éé") {
		t.Errorf("stored result: %d bytes, valid UTF-8 %v; want %d bytes or one less, valid, starting %q",
			len(res), utf8.ValidString(res), checkpoint.MaxReasonBytes, "bad \uFFFD byte éé")
	}

	// Complete of a replaced request changes nothing.
	newer := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestDiscard})
	stale := r
	stale.Handled = 5
	if err := rs.Complete(ctx, stale); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Complete of a replaced request = %v, want ErrNotFound", err)
	} else if !strings.HasPrefix(err.Error(), "checkpoint: ") {
		t.Errorf("error text %q lacks the prefix %q", err, "checkpoint: ")
	}
	wantRequests(t, "after Complete of a replaced request", requests(t, rs, "sub"), newer)

	// Complete of a deleted request, or of one never made, creates nothing.
	if err := rs.DeleteRequest(ctx, "sub", "a", newer.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []checkpoint.Request{
		newer,
		{Subscription: "sub", AggregateID: "never", ID: "x"},
		{Subscription: "nobody", AggregateID: "a", ID: newer.ID},
	} {
		c.Handled = 1
		if err := rs.Complete(ctx, c); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("Complete(%q, %q, %q) of nothing = %v, want ErrNotFound", c.Subscription, c.AggregateID, c.ID, err)
		}
	}
	if got := requests(t, rs, ""); len(got) != 0 {
		t.Errorf("Complete of requests not there created %q", requestStrings(got))
	}
}

func testRequestDelete(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	ctx := t.Context()
	a := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestReplay})
	b := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "b", Kind: checkpoint.RequestDiscard})
	for _, tc := range []struct{ sub, agg, id string }{
		{"sub", "a", b.ID},   // another aggregate's id
		{"sub", "a", "nope"}, // an id never made
		{"sub", "zz", a.ID},  // an aggregate with no request
		{"nobody", "a", a.ID},
	} {
		if err := rs.DeleteRequest(ctx, tc.sub, tc.agg, tc.id); err != nil {
			t.Errorf("DeleteRequest(%q, %q, %q) = %v, want nil", tc.sub, tc.agg, tc.id, err)
		}
	}
	wantRequests(t, "after DeleteRequests that match nothing", requests(t, rs, "sub"), a, b)

	// A replaced request's id deletes nothing.
	newer := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestDiscard})
	if err := rs.DeleteRequest(ctx, "sub", "a", a.ID); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "after DeleteRequest of a replaced id", requests(t, rs, "sub"), newer, b)

	if err := rs.DeleteRequest(ctx, "sub", "a", newer.ID); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "after DeleteRequest", requests(t, rs, "sub"), b)
	if err := rs.DeleteRequest(ctx, "sub", "a", newer.ID); err != nil {
		t.Errorf("second DeleteRequest = %v, want nil", err)
	}
	// A done request is deleted as well.
	complete(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "b", ID: b.ID})
	if err := rs.DeleteRequest(ctx, "sub", "b", b.ID); err != nil {
		t.Fatal(err)
	}
	if got := requests(t, rs, ""); len(got) != 0 {
		t.Errorf("after deleting every request: %q", requestStrings(got))
	}
}

// testRequestRaces races a worker completing a request with an operator
// replacing or deleting it: whatever the order, the newer request is never
// marked done with the older one's result, and a delete of the older one
// never removes the newer.
func testRequestRaces(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	const rounds = 12
	completedFirst, replacedFirst := 0, 0
	for round := range rounds {
		agg := fmt.Sprintf("r%02d", round)
		old := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: agg, Kind: checkpoint.RequestReplay})
		done := old
		done.Result, done.Handled = "worker's result", 3
		var (
			wg          sync.WaitGroup
			start       = make(chan struct{})
			newer       checkpoint.Request
			reqErr      error
			completeErr error
			deleteErr   error
		)
		wg.Go(func() {
			<-start
			newer, reqErr = rs.Request(t.Context(), checkpoint.Request{Subscription: "sub", AggregateID: agg, Kind: checkpoint.RequestDiscard})
		})
		wg.Go(func() { <-start; completeErr = rs.Complete(t.Context(), done) })
		wg.Go(func() { <-start; deleteErr = rs.DeleteRequest(t.Context(), "sub", agg, old.ID) })
		close(start)
		wg.Wait()
		if reqErr != nil || deleteErr != nil {
			t.Fatalf("round %d: Request: %v; DeleteRequest: %v", round, reqErr, deleteErr)
		}
		switch {
		case completeErr == nil:
			completedFirst++
		case errors.Is(completeErr, checkpoint.ErrNotFound):
			replacedFirst++
		default:
			t.Fatalf("round %d: Complete: %v", round, completeErr)
		}
		var got []checkpoint.Request
		for _, r := range requests(t, rs, "sub") {
			if r.AggregateID == agg {
				got = append(got, r)
			}
		}
		wantRequests(t, fmt.Sprintf("round %d: after Request, Complete and DeleteRequest raced", round), got, newer)
	}
	t.Logf("%d rounds: Complete came before the replacement %d times, after it %d times", rounds, completedFirst, replacedFirst)

	// Two operators' requests race: one wins whole.
	for round := range rounds {
		agg := fmt.Sprintf("two%02d", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			made  [2]checkpoint.Request
			errs  [2]error
		)
		for i, kind := range []checkpoint.RequestKind{checkpoint.RequestReplay, checkpoint.RequestDiscard} {
			wg.Go(func() {
				<-start
				made[i], errs[i] = rs.Request(t.Context(), checkpoint.Request{Subscription: "race", AggregateID: agg, Kind: kind})
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
		got := requests(t, rs, "race")
		last := got[len(got)-1]
		if len(got) != round+1 || (requestString(last) != requestString(made[0]) && requestString(last) != requestString(made[1])) {
			t.Fatalf("round %d: after two racing Requests: %q; want one of %q", round, requestStrings(got), requestStrings(made[:]))
		}
	}
}

func testRequestInvalidInput(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	ctx := t.Context()
	kept := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "agg", Kind: checkpoint.RequestReplay})
	long := strings.Repeat("n", checkpoint.MaxNameBytes+1)
	good := checkpoint.Request{Subscription: "sub", AggregateID: "agg", Kind: checkpoint.RequestDiscard}
	with := func(f func(*checkpoint.Request)) checkpoint.Request {
		r := good
		f(&r)
		return r
	}
	done := kept
	done.Result = "ok"
	withDone := func(f func(*checkpoint.Request)) checkpoint.Request {
		r := done
		f(&r)
		return r
	}
	seqErr := func(seq func(func(checkpoint.Request, error) bool)) error {
		for _, err := range seq {
			if err != nil {
				return err
			}
		}
		return nil
	}
	req := func(r checkpoint.Request) func() error {
		return func() error { _, err := rs.Request(ctx, r); return err }
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Request empty subscription", req(with(func(r *checkpoint.Request) { r.Subscription = "" }))},
		{"Request subscription too long", req(with(func(r *checkpoint.Request) { r.Subscription = long }))},
		{"Request subscription not UTF-8", req(with(func(r *checkpoint.Request) { r.Subscription = "s\xff" }))},
		{"Request empty aggregate id", req(with(func(r *checkpoint.Request) { r.AggregateID = "" }))},
		{"Request aggregate id too long", req(with(func(r *checkpoint.Request) {
			r.AggregateID = strings.Repeat("a", store.MaxAggregateIDBytes+1)
		}))},
		{"Request aggregate id not UTF-8", req(with(func(r *checkpoint.Request) { r.AggregateID = "a\xc3" }))},
		{"Request empty kind", req(with(func(r *checkpoint.Request) { r.Kind = "" }))},
		{"Request unknown kind", req(with(func(r *checkpoint.Request) { r.Kind = "Replay" }))},
		{"Request id too long", req(with(func(r *checkpoint.Request) { r.ID = long }))},
		{"Request id not UTF-8", req(with(func(r *checkpoint.Request) { r.ID = "\xff" }))},
		{"Requests subscription not UTF-8", func() error { return seqErr(rs.Requests(ctx, "\xff")) }},
		{"Requests subscription too long", func() error { return seqErr(rs.Requests(ctx, long)) }},
		{"Complete empty subscription", func() error {
			return rs.Complete(ctx, withDone(func(r *checkpoint.Request) { r.Subscription = "" }))
		}},
		{"Complete empty aggregate id", func() error {
			return rs.Complete(ctx, withDone(func(r *checkpoint.Request) { r.AggregateID = "" }))
		}},
		{"Complete empty id", func() error { return rs.Complete(ctx, withDone(func(r *checkpoint.Request) { r.ID = "" })) }},
		{"Complete negative handled", func() error {
			return rs.Complete(ctx, withDone(func(r *checkpoint.Request) { r.Handled = -1 }))
		}},
		{"DeleteRequest empty subscription", func() error { return rs.DeleteRequest(ctx, "", "agg", kept.ID) }},
		{"DeleteRequest empty aggregate id", func() error { return rs.DeleteRequest(ctx, "sub", "", kept.ID) }},
		{"DeleteRequest empty id", func() error { return rs.DeleteRequest(ctx, "sub", "agg", "") }},
		{"DeleteRequest aggregate id not UTF-8", func() error { return rs.DeleteRequest(ctx, "sub", "agg\xff", kept.ID) }},
	} {
		err := c.call()
		if !errors.Is(err, checkpoint.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Errorf("%s: error text %q lacks the prefix %q", c.name, err, "checkpoint: ")
		}
	}
	// Nothing was written: the one request is there, not done, not
	// replaced.
	wantRequests(t, "after rejected calls", requests(t, rs, ""), kept)
}

func testRequestCancelledContext(t *testing.T, _ checkpoint.Store, ps checkpoint.ParkStore) {
	rs := requestStore(t, ps)
	kept := request(t, rs, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestReplay})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wantCancelled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", what, err)
		}
	}
	_, err := rs.Request(ctx, checkpoint.Request{Subscription: "sub", AggregateID: "a", Kind: checkpoint.RequestDiscard})
	wantCancelled("Request", err)
	done := kept
	done.Handled = 1
	wantCancelled("Complete", rs.Complete(ctx, done))
	wantCancelled("DeleteRequest", rs.DeleteRequest(ctx, "sub", "a", kept.ID))
	for _, sub := range []string{"sub", ""} {
		n := 0
		for _, err := range rs.Requests(ctx, sub) {
			n++
			wantCancelled(fmt.Sprintf("Requests(%q)", sub), err)
		}
		if n != 1 {
			t.Errorf("Requests(%q) with a cancelled context yielded %d times, want once (the error)", sub, n)
		}
	}
	wantRequests(t, "after cancelled calls", requests(t, rs, ""), kept)
}
