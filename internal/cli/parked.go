package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// parkedCommands are the subcommands of "eventstore parked".
var parkedCommands = []*command{
	parkedListCommand,
	parkedReplayCommand,
	parkedDiscardCommand,
}

// requestPollInterval is how often replay and discard read the request
// while they wait for a worker to carry it out.
const requestPollInterval = 250 * time.Millisecond

var parkedListCommand = &command{
	name:       "list",
	summary:    "list parked commits per subscription and aggregate, and pending requests",
	synopsis:   "[SUBSCRIPTION] [--aggregate ID] [--json] [flags]",
	positional: true,
	help: `
Lists the commits subscriptions parked (set aside after their handler kept
failing, with every later commit of the same aggregate, in order), of every
subscription with a checkpoint or of SUBSCRIPTION, of every aggregate or of
--aggregate:

  the parked commits: subscription, aggregate, version, commit id, attempts,
  when parked, and the last error (its first line; --json has it all);
  a summary per aggregate: how many commits, which versions, since when;
  the replay and discard requests not yet carried out, and the outcome of
  the last one for an aggregate still parked.

--json prints one JSON object a line per aggregate instead:
  {"subscription":…,"aggregateId":…,"commits":[{"commit":{…},"attempts":…,
   "parkedAt":…,"reason":…}],"request":{…}}
where each commit is in the commit shape, events included.

Exit status: 0 success (also when nothing is parked), 1 a failure or an
unknown SUBSCRIPTION, 2 a usage error.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		aggregate := fs.String("aggregate", "", "list only this aggregate's parked commits (`ID`)")
		asJSON := fs.Bool("json", false, "print one JSON object a line per aggregate")
		return func(ctx context.Context, s *session) error {
			pos, err := parseInterleaved(fs, s.args)
			if err != nil {
				return err
			}
			if len(pos) > 1 {
				return flagErrorf("unexpected argument %q", pos[1])
			}
			_, cps, err := cf.open(ctx, s)
			if err != nil {
				return err
			}
			var subs []string
			if len(pos) == 1 {
				if pos[0] == "" {
					return flagErrorf("empty SUBSCRIPTION")
				}
				if _, err := subscriptionState(ctx, cf, cps, pos[0]); err != nil {
					return err
				}
				subs = []string{pos[0]}
			} else if subs, err = knownSubscriptions(ctx, cps); err != nil {
				return cf.explain(err)
			}
			var groups []*parkedGroup
			corrupt := 0
			for _, sub := range subs {
				g, n, err := readParked(ctx, s, cps, sub, *aggregate)
				if err != nil {
					return cf.explain(err)
				}
				groups, corrupt = append(groups, g...), corrupt+n
			}
			if *asJSON {
				enc := json.NewEncoder(jsonSafeWriter{w: s.stdout})
				enc.SetEscapeHTML(false)
				for _, g := range groups {
					if err := enc.Encode(g); err != nil {
						return fmt.Errorf("write stdout: %w", err)
					}
				}
			} else {
				printParked(s, groups, time.Now())
			}
			if corrupt > 0 {
				return fmt.Errorf("%d corrupt %s not listed", corrupt, plural(corrupt, "item", "items"))
			}
			return nil
		}
	},
}

// parkedGroup is one aggregate's parked commits and its request, as
// parked list shows them.
type parkedGroup struct {
	Subscription string         `json:"subscription"`
	AggregateID  string         `json:"aggregateId"`
	Commits      []parkedCommit `json:"commits"`
	Request      *requestView   `json:"request,omitempty"`
	req          *checkpoint.Request
}

type parkedCommit struct {
	Commit   store.Commit `json:"commit"`
	Attempts int          `json:"attempts"`
	ParkedAt time.Time    `json:"parkedAt"`
	Reason   string       `json:"reason"`
}

type requestView struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	RequestedAt time.Time  `json:"requestedAt"`
	Done        bool       `json:"done"`
	Result      string     `json:"result,omitempty"`
	Handled     int        `json:"handled"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
}

func newRequestView(r checkpoint.Request) *requestView {
	v := &requestView{ID: r.ID, Kind: string(r.Kind), RequestedAt: r.RequestedAt, Done: r.Done, Result: r.Result, Handled: r.Handled}
	if !r.CompletedAt.IsZero() {
		t := r.CompletedAt
		v.CompletedAt = &t
	}
	return v
}

// readParked returns the parked commits of sub (of one aggregate, or all
// for ""), grouped by aggregate in order, with their requests: an
// aggregate with nothing parked appears only for a request not done yet.
// Corrupt items are reported on stderr and counted.
func readParked(ctx context.Context, s *session, cps *dynamocheckpoint.Store, sub, aggregate string) ([]*parkedGroup, int, error) {
	var groups []*parkedGroup
	byID := map[string]*parkedGroup{}
	corrupt := 0
	for p, err := range cps.Parked(ctx, sub, aggregate) {
		if err != nil {
			if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
				corrupt++
				s.warnf("%v", err)
				continue
			}
			return nil, 0, err
		}
		g := byID[p.Commit.AggregateID]
		if g == nil {
			g = &parkedGroup{Subscription: sub, AggregateID: p.Commit.AggregateID}
			byID[g.AggregateID] = g
			groups = append(groups, g)
		}
		g.Commits = append(g.Commits, parkedCommit{Commit: p.Commit, Attempts: p.Attempts, ParkedAt: p.ParkedAt, Reason: p.Reason})
	}
	for r, err := range cps.Requests(ctx, sub) {
		if err != nil {
			if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
				corrupt++
				s.warnf("%v", err)
				continue
			}
			return nil, 0, err
		}
		if aggregate != "" && r.AggregateID != aggregate {
			continue
		}
		g := byID[r.AggregateID]
		if g == nil {
			if r.Done {
				continue // history of an aggregate no longer parked
			}
			g = &parkedGroup{Subscription: sub, AggregateID: r.AggregateID, Commits: []parkedCommit{}}
			byID[g.AggregateID] = g
			groups = append(groups, g)
		}
		g.req, g.Request = &r, newRequestView(r)
	}
	return groups, corrupt, nil
}

func printParked(s *session, groups []*parkedGroup, now time.Time) {
	commits, requests := 0, 0
	for _, g := range groups {
		commits += len(g.Commits)
		if g.req != nil {
			requests++
		}
	}
	if commits == 0 && requests == 0 {
		s.warnf("parked list: nothing parked")
		return
	}
	w := s.stdout
	if commits > 0 {
		t := newTextTable(w)
		t.row("SUBSCRIPTION", "AGGREGATE", "VERSION", "COMMIT ID", "ATTEMPTS", "PARKED", "REASON")
		for _, g := range groups {
			for _, c := range g.Commits {
				t.row(g.Subscription, g.AggregateID, c.Commit.Version, c.Commit.CommitID,
					c.Attempts, ago(c.ParkedAt, now), firstLine(c.Reason, 80))
			}
		}
		t.flush()
		fmt.Fprintf(w, "\n%d parked %s:\n", commits, plural(commits, "commit", "commits"))
		t = newTextTable(w)
		t.row("SUBSCRIPTION", "AGGREGATE", "COMMITS", "VERSIONS", "PARKED SINCE")
		for _, g := range groups {
			if len(g.Commits) == 0 {
				continue
			}
			first, last := g.Commits[0], g.Commits[len(g.Commits)-1]
			versions := fmt.Sprint(first.Commit.Version)
			if len(g.Commits) > 1 {
				versions += fmt.Sprintf("–%d", last.Commit.Version)
			}
			oldest := first.ParkedAt
			for _, c := range g.Commits {
				if c.ParkedAt.Before(oldest) {
					oldest = c.ParkedAt
				}
			}
			t.row(g.Subscription, g.AggregateID, len(g.Commits), versions, ago(oldest, now))
		}
		t.flush()
	}
	if requests > 0 {
		if commits > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "Requests:")
		t := newTextTable(w)
		t.row("SUBSCRIPTION", "AGGREGATE", "KIND", "REQUESTED", "STATE")
		for _, g := range groups {
			if r := g.req; r != nil {
				t.row(g.Subscription, g.AggregateID, r.Kind, ago(r.RequestedAt, now), requestState(*r))
			}
		}
		t.flush()
	}
}

// requestState says where a request stands, in a few words.
func requestState(r checkpoint.Request) string {
	switch {
	case !r.Done:
		return "pending: carried out when a worker runs the subscription"
	case r.Result != "":
		return fmt.Sprintf("failed after %d: %s", r.Handled, firstLine(r.Result, 80))
	case r.Kind == checkpoint.RequestDiscard:
		return fmt.Sprintf("done: %d discarded", r.Handled)
	}
	return fmt.Sprintf("done: %d replayed", r.Handled)
}

// firstLine returns the first line of s, cut to at most n characters.
func firstLine(s string, n int) string {
	line, _, more := strings.Cut(s, "\n")
	if utf8.RuneCountInString(line) > n {
		line, more = string([]rune(line)[:n-1]), true
	}
	if more {
		line += "…"
	}
	return line
}

// subscriptionState returns sub's checkpoints, or, when it has none, an
// error (exit status 1) naming it and listing the known subscriptions.
func subscriptionState(ctx context.Context, cf *checkpointFlags, cps *dynamocheckpoint.Store, sub string) ([]checkpoint.Checkpoint, error) {
	var out []checkpoint.Checkpoint
	for cp, err := range cps.List(ctx, sub) {
		if err != nil {
			if errors.Is(err, checkpoint.ErrInvalidArgument) {
				return nil, flagErrorf("%w", err)
			}
			return nil, cf.explain(err)
		}
		out = append(out, cp)
	}
	if len(out) == 0 {
		return nil, cf.unknownSubscription(ctx, cps, fmt.Sprintf("unknown subscription %q: it has no checkpoint", sub), ExitFailure, "")
	}
	return out, nil
}

// openSubscription opens the checkpoint table and returns it with sub's
// checkpoints, or an error when sub has none (see subscriptionState).
func openSubscription(ctx context.Context, s *session, cf *checkpointFlags, sub string) (*dynamocheckpoint.Store, []checkpoint.Checkpoint, error) {
	_, cps, err := cf.open(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	state, err := subscriptionState(ctx, cf, cps, sub)
	if err != nil {
		return nil, nil, err
	}
	return cps, state, nil
}

// holder returns the checkpoint of cps whose owner is set, if any.
func holder(cps []checkpoint.Checkpoint) (checkpoint.Checkpoint, bool) {
	for _, cp := range cps {
		if cp.Owner != "" {
			return cp, true
		}
	}
	return checkpoint.Checkpoint{}, false
}

var parkedReplayCommand = &command{
	name:       "replay",
	summary:    "ask the worker to handle an aggregate's parked commits again",
	synopsis:   "SUBSCRIPTION (AGGREGATE | --all) [--wait=false] [--timeout D] [flags]",
	positional: true,
	help: `
Asks the worker that runs SUBSCRIPTION to hand the parked commits of
AGGREGATE (with --all, of every aggregate with commits parked: one request
per aggregate) to the handler again, in version order, in the aggregate's turn
(no other commit of it is handled meanwhile). Each commit handled is
unparked; once all are, the aggregate's later commits are handled as usual.
A commit that still fails stops the replay: it and the commits after it
stay parked.

The request is written to the checkpoint table; the worker polls for it. If
no worker runs the subscription now, the replay runs when one starts it.
A newer request for the same aggregate replaces a pending one.

With --wait (the default) it waits up to --timeout for the outcome and
prints it. Without, it returns once the request is written.

Exit status: 0 replayed (or, with --wait=false, requested), 1 the replay
(of any aggregate, with --all) failed, no outcome within --timeout (the
request stays pending), nothing parked for AGGREGATE (or SUBSCRIPTION), an
unknown SUBSCRIPTION or another failure, 2 a usage error.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		all := fs.Bool("all", false, "replay the parked commits of every aggregate of SUBSCRIPTION")
		wait, timeout := addWaitFlags(fs)
		return func(ctx context.Context, s *session) error {
			sub, agg, err := parkedArgs(fs, s, all, timeout)
			if err != nil {
				return err
			}
			if *all {
				return parkedRequestAll(ctx, s, cf, sub, checkpoint.RequestReplay, true, *wait, *timeout)
			}
			return parkedRequest(ctx, s, cf, sub, agg, checkpoint.RequestReplay, true, *wait, *timeout)
		}
	},
}

// parkedArgs parses the arguments of parked replay and discard and returns
// SUBSCRIPTION and AGGREGATE: AGGREGATE is "" with --all, which refuses
// one.
func parkedArgs(fs *flag.FlagSet, s *session, all *bool, timeout *time.Duration) (sub, agg string, err error) {
	pos, err := parseInterleaved(fs, s.args)
	if err != nil {
		return "", "", err
	}
	want := []string{"SUBSCRIPTION", "AGGREGATE"}
	if *all {
		if len(pos) > 1 {
			return "", "", flagErrorf("--all and AGGREGATE %q: give one or the other", pos[1])
		}
		want = want[:1]
	}
	if err := checkPositionals(pos, want...); err != nil {
		return "", "", err
	}
	if *timeout <= 0 {
		return "", "", flagErrorf("--timeout %v: want a positive duration", *timeout)
	}
	if *all {
		return pos[0], "", nil
	}
	return pos[0], pos[1], nil
}

var parkedDiscardCommand = &command{
	name:       "discard",
	summary:    "drop an aggregate's parked commits unhandled",
	synopsis:   "SUBSCRIPTION (AGGREGATE | --all) --yes [--wait=false] [--timeout D] [flags]",
	positional: true,
	help: `
Drops the parked commits of AGGREGATE (with --all, of every aggregate with
commits parked) for SUBSCRIPTION without handling them: the handler never
sees them, and the aggregate's later commits are handled as usual.

Without --yes it only lists what would be discarded, and exits with status
4: nothing is changed.

While a worker holds the subscription, the discard is a request to it, as
for replay, carried out in the aggregate's turn; --wait and --timeout work
as for replay. When no worker holds it, the commits are removed at once,
and a pending request for the aggregate is dropped.

Exit status: 0 discarded (or, with --wait=false, requested), 1 a failure,
no outcome within --timeout (the request stays pending), nothing parked for
AGGREGATE (or, with --all, for SUBSCRIPTION), an unknown SUBSCRIPTION,
2 a usage error, 4 not confirmed with --yes.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		yes := fs.Bool("yes", false, "discard them: without it, only list what would be discarded")
		all := fs.Bool("all", false, "discard the parked commits of every aggregate of SUBSCRIPTION")
		wait, timeout := addWaitFlags(fs)
		return func(ctx context.Context, s *session) error {
			sub, agg, err := parkedArgs(fs, s, all, timeout)
			if err != nil {
				return err
			}
			if *all {
				return parkedRequestAll(ctx, s, cf, sub, checkpoint.RequestDiscard, *yes, *wait, *timeout)
			}
			return parkedRequest(ctx, s, cf, sub, agg, checkpoint.RequestDiscard, *yes, *wait, *timeout)
		}
	},
}

func addWaitFlags(fs *flag.FlagSet) (wait *bool, timeout *time.Duration) {
	wait = fs.Bool("wait", true, "wait for the worker to carry the request out, and print the outcome")
	timeout = fs.Duration("timeout", time.Minute, "how long to wait for the outcome (`DURATION`)")
	return wait, timeout
}

// parkedRequest replays or discards (kind) the parked commits of agg for
// sub: a request to the worker holding the subscription, or, for a discard
// with no worker, directly. confirmed is false for a discard without --yes.
func parkedRequest(ctx context.Context, s *session, cf *checkpointFlags, sub, agg string, kind checkpoint.RequestKind,
	confirmed, wait bool, timeout time.Duration) error {
	cps, state, err := openSubscription(ctx, s, cf, sub)
	if err != nil {
		return err
	}
	var parked []checkpoint.Parked
	for p, err := range cps.Parked(ctx, sub, agg) {
		if err != nil {
			if errors.Is(err, checkpoint.ErrInvalidArgument) {
				return flagErrorf("%w", err)
			}
			return cf.explain(err)
		}
		parked = append(parked, p)
	}
	what := fmt.Sprintf("aggregate %q of subscription %q", agg, sub)
	if len(parked) == 0 {
		return fmt.Errorf("nothing parked for %s (eventstore parked list %s shows what is)", what, sub)
	}
	n := len(parked)
	commits := fmt.Sprintf("%d parked %s (%s)", n, plural(n, "commit", "commits"), versionRange(parked))
	if !confirmed {
		printParkedCommits(s.stdout, parked)
		return withCode(ExitRefused, fmt.Errorf("not discarded: would discard the %s of %s, unhandled; the aggregate's later commits are then handled as usual. Run again with --yes to discard them", commits, what))
	}
	held, isHeld := holder(state)
	if kind == checkpoint.RequestDiscard && !isHeld {
		return discardDirectly(ctx, s, cf, cps, parked, what, commits)
	}
	req, err := cps.Request(ctx, checkpoint.Request{Subscription: sub, AggregateID: agg, Kind: kind})
	if err != nil {
		return cf.explain(err)
	}
	if isHeld {
		s.warnf("parked %s: %s of the %s of %s requested (id %s); worker %q, which holds the subscription, carries it out in the aggregate's turn",
			kind, kind, commits, what, req.ID, held.Owner)
	} else {
		s.warnf("parked %s: %s of the %s of %s requested (id %s); no worker runs subscription %q now: the %s runs when a worker starts it",
			kind, kind, commits, what, req.ID, sub, kind)
	}
	if !wait {
		return nil
	}
	done, err := waitRequest(ctx, cps, req, timeout)
	pending := fmt.Sprintf("the request stays pending and is carried out when a worker runs subscription %q", sub)
	switch {
	case ctx.Err() != nil:
		s.warnf("parked %s: stopped waiting: %s", kind, pending)
		return ctx.Err()
	case errors.Is(err, errRequestTimeout):
		holderNote := ""
		if isHeld {
			holderNote = fmt.Sprintf(" (worker %q held it when asked; if it is not running any more, the request waits for the next worker)", held.Owner)
		}
		return fmt.Errorf("no outcome within %v: %s%s", timeout, pending, holderNote)
	case err != nil:
		return cf.explain(err)
	}
	left := 0
	for _, err := range cps.Parked(ctx, sub, agg) {
		if err == nil {
			left++
		}
	}
	if done.Result != "" {
		return fmt.Errorf("%s of %s failed after %d %s: %s; %d %s still parked", kind, what, done.Handled, plural(done.Handled, "commit", "commits"),
			done.Result, left, plural(left, "commit is", "commits are"))
	}
	verb := "replayed"
	if kind == checkpoint.RequestDiscard {
		verb = "discarded"
	}
	msg := fmt.Sprintf("%s %d %s of %s", verb, done.Handled, plural(done.Handled, "commit", "commits"), what)
	if left > 0 {
		msg += fmt.Sprintf("; %d %s parked again since", left, plural(left, "commit is", "commits are"))
	} else {
		msg += "; it is no longer parked"
	}
	fmt.Fprintln(s.stdout, msg)
	return nil
}

// errRequestTimeout: the request was not done within the timeout.
var errRequestTimeout = errors.New("request not done in time")

// waitRequest polls the requests of req's subscription until req is done,
// and returns it. It returns errRequestTimeout after timeout, an error if
// the request was replaced or removed, and ctx's error when ctx ends.
func waitRequest(ctx context.Context, cps *dynamocheckpoint.Store, req checkpoint.Request, timeout time.Duration) (checkpoint.Request, error) {
	done, err := waitRequests(ctx, cps, req.Subscription, []checkpoint.Request{req}, timeout)
	if err == nil {
		err = done[0].err
	}
	return done[0].req, err
}

// requestOutcome is what became of one request waitRequests waited for:
// req done, or err (errRequestTimeout, replaced or removed).
type requestOutcome struct {
	req checkpoint.Request
	err error
}

// waitRequests polls the requests of sub until each of reqs is done,
// replaced or removed, or timeout passes, and returns their outcomes in
// the order of reqs. It returns an error when a listing fails, and ctx's
// error when ctx ends.
func waitRequests(ctx context.Context, cps *dynamocheckpoint.Store, sub string, reqs []checkpoint.Request, timeout time.Duration) ([]requestOutcome, error) {
	out := make([]requestOutcome, len(reqs))
	for i := range out {
		out[i].err = errRequestTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(requestPollInterval)
	defer tick.Stop()
	for {
		cur := map[string]checkpoint.Request{}
		for r, err := range cps.Requests(ctx, sub) {
			if err != nil {
				if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
					continue
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
			cur[r.AggregateID] = r
		}
		waiting := 0
		for i, req := range reqs {
			if !errors.Is(out[i].err, errRequestTimeout) {
				continue
			}
			r, ok := cur[req.AggregateID]
			switch {
			case !ok:
				out[i].err = fmt.Errorf("request %s was removed before it was carried out", req.ID)
			case r.ID != req.ID:
				out[i].err = fmt.Errorf("request %s was replaced by a newer %s request (id %s) before it was carried out", req.ID, r.Kind, r.ID)
			case r.Done:
				out[i] = requestOutcome{req: r}
			default:
				waiting++
			}
		}
		if waiting == 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return out, nil
		case <-tick.C:
		}
	}
}

// parkedRequestAll replays or discards (kind) the parked commits of every
// aggregate of sub: one request per aggregate to the worker holding the
// subscription, or, for a discard with no worker, directly. confirmed is
// false for a discard without --yes.
func parkedRequestAll(ctx context.Context, s *session, cf *checkpointFlags, sub string, kind checkpoint.RequestKind,
	confirmed, wait bool, timeout time.Duration) error {
	cps, state, err := openSubscription(ctx, s, cf, sub)
	if err != nil {
		return err
	}
	var aggs []string
	byAgg := map[string][]checkpoint.Parked{}
	for p, err := range cps.Parked(ctx, sub, "") {
		if err != nil {
			if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
				s.warnf("%v", err)
				continue
			}
			return cf.explain(err)
		}
		id := p.Commit.AggregateID
		if byAgg[id] == nil {
			aggs = append(aggs, id)
		}
		byAgg[id] = append(byAgg[id], p)
	}
	if len(aggs) == 0 {
		return fmt.Errorf("nothing parked for subscription %q (eventstore parked list shows what is)", sub)
	}
	n := 0
	for _, ps := range byAgg {
		n += len(ps)
	}
	what := fmt.Sprintf("the %d parked %s of %d %s of subscription %q", n, plural(n, "commit", "commits"),
		len(aggs), plural(len(aggs), "aggregate", "aggregates"), sub)
	if !confirmed {
		var all []checkpoint.Parked
		for _, id := range aggs {
			all = append(all, byAgg[id]...)
		}
		printParkedCommits(s.stdout, all)
		return withCode(ExitRefused, fmt.Errorf("not discarded: would discard %s, unhandled; their later commits are then handled as usual. Run again with --all --yes to discard them", what))
	}
	held, isHeld := holder(state)
	if kind == checkpoint.RequestDiscard && !isHeld {
		for _, id := range aggs {
			ps := byAgg[id]
			one := fmt.Sprintf("%d parked %s (%s)", len(ps), plural(len(ps), "commit", "commits"), versionRange(ps))
			if err := discardDirectly(ctx, s, cf, cps, ps, fmt.Sprintf("aggregate %q of subscription %q", id, sub), one); err != nil {
				return err
			}
		}
		fmt.Fprintf(s.stdout, "discarded %s; it has nothing parked any more\n", what)
		return nil
	}
	reqs := make([]checkpoint.Request, 0, len(aggs))
	for _, id := range aggs {
		req, err := cps.Request(ctx, checkpoint.Request{Subscription: sub, AggregateID: id, Kind: kind})
		if err != nil {
			return fmt.Errorf("%s of %s: requested for %d of the %d aggregates, then: %w", kind, what, len(reqs), len(aggs), cf.explain(err))
		}
		reqs = append(reqs, req)
	}
	if isHeld {
		s.warnf("parked %s --all: %s of %s requested (one request per aggregate); worker %q, which holds the subscription, carries each out in the aggregate's turn",
			kind, kind, what, held.Owner)
	} else {
		s.warnf("parked %s --all: %s of %s requested (one request per aggregate); no worker runs subscription %q now: the %s runs when a worker starts it",
			kind, kind, what, sub, kind)
	}
	if !wait {
		return nil
	}
	outcomes, err := waitRequests(ctx, cps, sub, reqs, timeout)
	switch {
	case ctx.Err() != nil:
		s.warnf("parked %s --all: stopped waiting: the requests not done stay pending and are carried out when a worker runs subscription %q", kind, sub)
		return ctx.Err()
	case err != nil:
		return cf.explain(err)
	}
	handled, done := 0, 0
	var failures []string
	pending := 0
	for i, o := range outcomes {
		id := reqs[i].AggregateID
		switch {
		case errors.Is(o.err, errRequestTimeout):
			pending++
		case o.err != nil:
			failures = append(failures, fmt.Sprintf("%q: %v", id, o.err))
		case o.req.Result != "":
			handled += o.req.Handled
			failures = append(failures, fmt.Sprintf("%q: failed after %d: %s", id, o.req.Handled, firstLine(o.req.Result, 200)))
		default:
			handled += o.req.Handled
			done++
		}
	}
	left := 0
	for _, err := range cps.Parked(ctx, sub, "") {
		if err == nil {
			left++
		}
	}
	verb := "replayed"
	if kind == checkpoint.RequestDiscard {
		verb = "discarded"
	}
	fmt.Fprintf(s.stdout, "%s %d %s of %d of the %d %s of subscription %q; %d %s parked now\n", verb, handled, plural(handled, "commit", "commits"),
		done, len(aggs), plural(len(aggs), "aggregate", "aggregates"), sub, left, plural(left, "commit is", "commits are"))
	if len(failures) == 0 && pending == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s of %d of the %d aggregates of subscription %q did not succeed", kind, len(failures)+pending, len(aggs), sub)
	if len(failures) > 0 {
		msg += ": " + strings.Join(failures, "; ")
	}
	if pending > 0 {
		msg += fmt.Sprintf("; %d %s no outcome within %v: %s pending and carried out when a worker runs the subscription",
			pending, plural(pending, "request has", "requests have"), timeout, plural(pending, "it stays", "they stay"))
	}
	return errors.New(msg)
}

// discardDirectly unparks each commit of parked, with no worker to race,
// and drops a pending request for the aggregate.
func discardDirectly(ctx context.Context, s *session, cf *checkpointFlags, cps *dynamocheckpoint.Store, parked []checkpoint.Parked, what, commits string) error {
	sub, agg := parked[0].Subscription, parked[0].Commit.AggregateID
	for i, p := range parked {
		if err := cps.Unpark(ctx, sub, agg, p.Commit.Version); err != nil {
			return fmt.Errorf("discarded %d of the %s of %s, then: %w", i, commits, what, cf.explain(err))
		}
	}
	for r, err := range cps.Requests(ctx, sub) {
		if err != nil || r.AggregateID != agg || r.Done {
			continue
		}
		if err := cps.DeleteRequest(ctx, sub, agg, r.ID); err != nil {
			s.warnf("parked discard: dropping the pending %s request %s: %v", r.Kind, r.ID, cf.explain(err))
		} else {
			s.warnf("parked discard: dropped the pending %s request %s for the aggregate", r.Kind, r.ID)
		}
	}
	fmt.Fprintf(s.stdout, "discarded the %s of %s (no worker held the subscription); it is no longer parked\n", commits, what)
	return nil
}

// versionRange writes the versions of parked (one aggregate's, in order).
func versionRange(parked []checkpoint.Parked) string {
	first, last := parked[0].Commit.Version, parked[len(parked)-1].Commit.Version
	switch {
	case len(parked) == 1:
		return fmt.Sprintf("version %d", first)
	case last-first+1 == int64(len(parked)):
		return fmt.Sprintf("versions %d–%d", first, last)
	}
	vs := make([]string, len(parked))
	for i, p := range parked {
		vs[i] = fmt.Sprint(p.Commit.Version)
	}
	return "versions " + strings.Join(vs, ", ")
}

func printParkedCommits(w io.Writer, parked []checkpoint.Parked) {
	now := time.Now()
	t := newTextTable(w)
	t.row("SUBSCRIPTION", "AGGREGATE", "VERSION", "COMMIT ID", "ATTEMPTS", "PARKED", "REASON")
	for _, p := range parked {
		t.row(p.Subscription, p.Commit.AggregateID, p.Commit.Version, p.Commit.CommitID,
			p.Attempts, ago(p.ParkedAt, now), firstLine(p.Reason, 80))
	}
	t.flush()
}
