package subscribe

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/store"
)

// TestBreaker drives the circuit breaker's decision through named
// sequences of calls and outcomes, with times given, and checks each step.
func TestBreaker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		ms    int    // time of the step
		admit bool   // an admit call, else a record
		agg   string // record: the aggregate
		probe bool   // record: the call was the probe
		o     outcome
		after time.Duration // record: RetryAfter
		// want, for admit: ok, probe, wait; for record: opened, closed
		ok, isProbe bool
		wait        time.Duration
		opened      bool
		closed      bool
		openSince   int // -1: closed after the step
	}
	admit := func(ms int, ok, probe bool, wait time.Duration, openSince int) step {
		return step{ms: ms, admit: true, ok: ok, isProbe: probe, wait: wait, openSince: openSince}
	}
	rec := func(ms int, agg string, probe bool, o outcome, opened, closed bool, openSince int) step {
		return step{ms: ms, agg: agg, probe: probe, o: o, opened: opened, closed: closed, openSince: openSince}
	}
	cases := []struct {
		name      string
		openAfter int
		steps     []step
	}{
		{"closed lets every call through", 3, []step{
			admit(0, true, false, 0, -1),
			admit(0, true, false, 0, -1),
		}},
		{"one aggregate failing again and again never opens it", 3, []step{
			rec(0, "a", false, outcomeTransient, false, false, -1),
			rec(10, "a", false, outcomeTransient, false, false, -1),
			rec(20, "a", false, outcomeTransient, false, false, -1),
			admit(30, true, false, 0, -1),
		}},
		{"a success between failures keeps it closed", 3, []step{
			rec(0, "a", false, outcomeTransient, false, false, -1),
			rec(1, "b", false, outcomeTransient, false, false, -1),
			rec(2, "c", false, outcomeOK, false, false, -1),
			rec(3, "d", false, outcomeTransient, false, false, -1),
			rec(4, "e", false, outcomeTransient, false, false, -1),
			admit(5, true, false, 0, -1),
		}},
		{"three aggregates in a row open it; one probe at a time after the backoff", 3, []step{
			rec(0, "a", false, outcomeTransient, false, false, -1),
			rec(1, "b", false, outcomeTransient, false, false, -1),
			rec(2, "c", false, outcomeTransient, true, false, 2),
			admit(3, false, false, 99*time.Millisecond, 2), // backoff 100 ms from 2
			admit(102, true, true, 0, 2),                   // the probe
			admit(102, false, false, 0, 2),                 // wait for the probe
			rec(150, "d", true, outcomeTransient, false, false, 2),
			admit(151, false, false, 199*time.Millisecond, 2), // doubled: 200 ms from 150
			admit(350, true, true, 0, 2),
			rec(360, "a", true, outcomeOK, false, true, -1),
			admit(361, true, false, 0, -1),
		}},
		{"the probe's backoff is capped", 1, []step{
			rec(0, "a", false, outcomeTransient, true, false, 0),
			admit(100, true, true, 0, 0),
			rec(100, "a", true, outcomeTransient, false, false, 0), // 200
			admit(300, true, true, 0, 0),
			rec(300, "a", true, outcomeTransient, false, false, 0), // 400 → cap 300
			admit(599, false, false, time.Millisecond, 0),
			admit(600, true, true, 0, 0),
		}},
		{"a probe asked to wait with RetryAfter waits that", 1, []step{
			rec(0, "a", false, outcomeTransient, true, false, 0),
			admit(100, true, true, 0, 0),
			{ms: 100, agg: "a", probe: true, o: outcomeTransient, after: 5 * time.Second, openSince: 0},
			admit(101, false, false, 4999*time.Millisecond, 0),
		}},
		{"a cancelled probe lets another go at once", 1, []step{
			rec(0, "a", false, outcomeTransient, true, false, 0),
			admit(100, true, true, 0, 0),
			rec(120, "a", true, outcomeNone, false, false, 0),
			admit(121, true, true, 0, 0),
		}},
		{"a permanent failure or a success of a call from before it opened closes it", 2, []step{
			rec(0, "a", false, outcomeTransient, false, false, -1),
			rec(0, "b", false, outcomeTransient, true, false, 0),
			rec(5, "c", false, outcomeOK, false, true, -1),
		}},
		{"a negative openAfter never opens it", -1, []step{
			rec(0, "a", false, outcomeTransient, false, false, -1),
			rec(1, "b", false, outcomeTransient, false, false, -1),
			rec(2, "c", false, outcomeTransient, false, false, -1),
			rec(3, "d", false, outcomeTransient, false, false, -1),
			admit(4, true, false, 0, -1),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := breaker{openAfter: tc.openAfter, initial: 100 * time.Millisecond, maxBackoff: 300 * time.Millisecond,
				jitter: func(d time.Duration) time.Duration { return d }}
			for i, s := range tc.steps {
				what := fmt.Sprintf("step %d (%d ms)", i, s.ms)
				if s.admit {
					ok, probe, wait := b.admit(at(s.ms))
					if ok != s.ok || probe != s.isProbe || wait != s.wait {
						t.Fatalf("%s: admit = %v, %v, %v; want %v, %v, %v", what, ok, probe, wait, s.ok, s.isProbe, s.wait)
					}
				} else {
					opened, closed := b.record(at(s.ms), s.agg, s.probe, s.o, s.after)
					if opened != s.opened || closed != s.closed {
						t.Fatalf("%s: record = opened %v, closed %v; want %v, %v", what, opened, closed, s.opened, s.closed)
					}
				}
				want := time.Time{}
				if s.openSince >= 0 {
					want = at(s.openSince)
				}
				if !b.openSince.Equal(want) {
					t.Fatalf("%s: open since %v; want %v", what, b.openSince, want)
				}
			}
		})
	}
}

// TestClassify checks the class of each kind of handler error.
func TestClassify(t *testing.T) {
	var events []int
	decodeErr := Commit{AggregateID: "a", Events: []byte(`[{"x":1}]`)}.DecodeEvents(&events)
	syntaxErr := Commit{AggregateID: "a", Events: []byte(`[`)}.DecodeEvents(&events)
	plain := errors.New("connection refused")
	cases := []struct {
		name string
		err  error
		want Failure
	}{
		{"a plain error is transient", plain, FailureTransient},
		{"a wrapped plain error is transient", fmt.Errorf("post: %w", plain), FailureTransient},
		{"the attempt timeout is transient", fmt.Errorf("post: %w", context.DeadlineExceeded), FailureTransient},
		{"RetryAfter is transient", RetryAfter(time.Second, plain), FailureTransient},
		{"Permanent is permanent", Permanent(plain), FailurePermanent},
		{"Permanent(nil) is permanent", Permanent(nil), FailurePermanent},
		{"a wrapped Permanent is permanent", fmt.Errorf("handler: %w", Permanent(plain)), FailurePermanent},
		{"Permanent in a batch error is permanent", &BatchError{Index: 1, Err: Permanent(plain)}, FailurePermanent},
		{"Skip skips", Skip(plain), FailureSkip},
		{"RetryAfter around Permanent: the outer wins", RetryAfter(time.Second, Permanent(plain)), FailureTransient},
		{"Permanent around RetryAfter: the outer wins", Permanent(RetryAfter(time.Second, plain)), FailurePermanent},
		{"events of the wrong type are permanent", decodeErr, FailurePermanent},
		{"events that are not JSON are permanent", syntaxErr, FailurePermanent},
		{"a corrupt commit is permanent", &store.DecodeError{AggregateID: "a", Err: plain}, FailurePermanent},
		{"Transient overrides a decode error", Transient(decodeErr), FailureTransient},
		{"Permanent and a plain error joined are permanent", errors.Join(plain, Permanent(plain)), FailurePermanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %v; want %v", tc.err, got, tc.want)
			}
		})
	}
}
