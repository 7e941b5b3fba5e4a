package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/subscribe/promhooks"
)

// healthSource is what the monitor reads subscriptions from:
// *subscribe.Worker.
type healthSource interface {
	Health() []subscribe.Health
}

// headReader finds the newest commit of the commit-order index:
// *store.Store.
type headReader interface {
	Head(ctx context.Context) (store.Position, bool, error)
}

// bucketHeads is the optional ability of a headReader to read the head of
// each bucket of a bucketed index, for subscriptions whose units are
// buckets (subscribe.Config.Leases): *store.Store.
type bucketHeads interface {
	Buckets() []string
	HeadOf(ctx context.Context, bucket string) (store.Position, bool, error)
}

var (
	_ healthSource = (*subscribe.Worker)(nil)
	_ headReader   = (*store.Store)(nil)
	_ bucketHeads  = (*store.Store)(nil)
)

// unitBucketPrefix starts the unit names of index buckets (subscribe's).
const unitBucketPrefix = "bucket-"

// clockSkew is how far the time a checkpoint was saved (this machine's
// clock) may lag behind the commit time of a commit it covers (the
// writer's clock), where only times can tell: the stream source's
// StreamOptions.Margin default.
const clockSkew = 10 * time.Second

// maxProbeInterval caps the delay between two reads of the head.
const maxProbeInterval = 15 * time.Second

// monitor watches the subscriptions and the head of the index, tells which
// subscriptions are stuck, answers /readyz and exports the daemon's
// metrics. It is safe for concurrent use.
type monitor struct {
	src        healthSource
	head       headReader
	clock      func() time.Time
	stuckAfter time.Duration
	// failAfter is --fail-after; callTimeout bounds one read of the head
	// (--aws-call-timeout), for liveness.
	failAfter, callTimeout time.Duration
	log                    *slog.Logger
	// lister reads the checkpoints of every unit of a subscription, for
	// its lag (readLags); nil for none.
	lister checkpoint.Lister
	// tick is when the probe loop last made progress, by the system
	// clock: a read of the head returned, or a round began (liveness).
	tick atomic.Int64

	mu       sync.Mutex
	headPos  store.Position
	headOK   bool // headPos is known
	headErr  error
	headTime time.Time // commit time of headPos
	// bucketHead holds each bucket's head, when the index has buckets.
	bucketHead map[string]store.Position
	subs       map[string]*subTrack // by trackKey
	probes     float64
	probeErr   float64
	// subLag is each subscription's lag read from its checkpoints, by
	// subscription name, for the subscriptions known at the last probe.
	subLag map[string]time.Duration
	// lagErr is the last failure to list a subscription's checkpoints, nil
	// after a listing that worked.
	lagErr error
}

// subTrack follows one subscription's progress.
type subTrack struct {
	progress  string    // what of the position counts as progress
	changedAt time.Time // when progress was last seen changing
	// behindSince is when the subscription was first seen behind the
	// head of the index since progress last changed; zero when it is not.
	behindSince time.Time
}

func newMonitor(src healthSource, head headReader, clock func() time.Time, stuckAfter time.Duration, log *slog.Logger) *monitor {
	return &monitor{src: src, head: head, clock: clock, stuckAfter: stuckAfter, log: log, subs: map[string]*subTrack{},
		failAfter: DefaultFailAfter, callTimeout: DefaultAWSCallTimeout}
}

// probeInterval is how often the head is read: a quarter of StuckAfter, at
// most 15 s, at least 10 ms.
func (m *monitor) probeInterval() time.Duration {
	return min(max(m.stuckAfter/4, 10*time.Millisecond), maxProbeInterval)
}

// run reads the head every probeInterval until ctx ends.
func (m *monitor) run(ctx context.Context) {
	t := time.NewTicker(m.probeInterval())
	defer t.Stop()
	for {
		m.ticked()
		m.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trackKey names a subscription's unit (subscribe.Health.Unit) in
// monitor.subs.
func trackKey(h subscribe.Health) string { return h.Subscription + "\x00" + h.Unit }

// displayName is how /readyz and the metrics name a subscription's unit:
// the subscription, then "/" and the unit when there is one.
func displayName(h subscribe.Health) string {
	if h.Unit == "" {
		return h.Subscription
	}
	return h.Subscription + "/" + h.Unit
}

// ticked records that the probe loop made progress.
func (m *monitor) ticked() { m.tick.Store(time.Now().UnixNano()) }

// liveBound is how long the probe loop may go without progress before
// /healthz says the process is not live: two probe intervals and one read
// of the head, bounded by the call timeout.
func (m *monitor) liveBound() time.Duration { return 2*m.probeInterval() + m.callTimeout }

// liveness answers /healthz: whether the probe loop has made progress
// within liveBound (by the system clock), and whether the worker answers
// for its health within healthAnswer. why says what is wrong.
func (m *monitor) liveness(ctx context.Context) (ok bool, why string) {
	if last := m.tick.Load(); last != 0 {
		if since := time.Since(time.Unix(0, last)); since > m.liveBound() {
			return false, fmt.Sprintf("the monitor's loop has made no progress for %v (bound %v)", since.Round(time.Second), m.liveBound())
		}
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		m.src.Health()
	}()
	t := time.NewTimer(healthAnswer)
	defer t.Stop()
	select {
	case <-answered:
		return true, ""
	case <-t.C:
		return false, fmt.Sprintf("the worker has not told its health within %v: its state is locked", healthAnswer)
	case <-ctx.Done():
		return false, "request cancelled"
	}
}

// healthAnswer bounds the wait for the worker's health in /healthz.
const healthAnswer = 2 * time.Second

// readHead reads the head of the index and, when it has buckets, of each.
func (m *monitor) readHead(ctx context.Context) (store.Position, bool, map[string]store.Position, error) {
	defer m.ticked()
	bh, ok := m.head.(bucketHeads)
	if !ok || len(bh.Buckets()) < 2 {
		pos, ok, err := m.head.Head(ctx)
		return pos, ok, nil, err
	}
	var head store.Position
	found := false
	heads := map[string]store.Position{}
	for _, b := range bh.Buckets() {
		p, ok, err := bh.HeadOf(ctx, b)
		m.ticked()
		if err != nil {
			return store.Position{}, false, nil, err
		}
		if !ok {
			continue
		}
		heads[b] = p
		if !found || p.Compare(head) > 0 {
			head, found = p, true
		}
	}
	return head, found, heads, nil
}

// probe reads the head once, then updates every subscription's track.
func (m *monitor) probe(ctx context.Context) {
	pos, ok, heads, err := m.readHead(ctx)
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	m.probes++
	switch {
	case err != nil:
		m.probeErr++
		if m.headErr == nil {
			m.log.Warn("reading the head of the commit-order index failed; stuck detection waits", "err", err)
		}
		m.headErr = err
	default:
		if m.headErr != nil {
			m.log.Info("reading the head of the commit-order index works again")
		}
		m.headErr = nil
		m.bucketHead = heads
		if ok && (!m.headOK || pos != m.headPos) {
			m.headPos, m.headOK = pos, true
			m.headTime, _ = store.ParseCommitIDTime(pos.CommitID)
		}
	}
	m.mu.Unlock()
	hs := m.update()
	if err == nil {
		m.readLags(ctx, hs, pos, ok, heads)
	}
}

// readLags sets each subscription's lag from the checkpoints of all its
// units, whoever holds them (subscribe.Locate; a stream subscription in
// shards, its shard units): the greatest of their lags behind the head
// read, pos (ok false for an empty index) or, for a bucket's unit, its
// bucket's head in heads. It lists each subscription that hs names once.
// A subscription whose listing fails keeps its last lag; one whose lag is
// unknown (a unit at the beginning or with no position yet) has none.
func (m *monitor) readLags(ctx context.Context, hs []subscribe.Health, pos store.Position, ok bool, heads map[string]store.Position) {
	if m.lister == nil {
		return
	}
	now := m.clock()
	headAt, _ := store.ParseCommitIDTime(pos.CommitID)
	lags := map[string]time.Duration{}
	var listErr error
	for _, h := range hs {
		if _, seen := lags[h.Subscription]; seen || ctx.Err() != nil {
			continue
		}
		var cps []checkpoint.Checkpoint
		var err error
		for cp, e := range m.lister.List(ctx, h.Subscription) {
			if e != nil && !errors.Is(e, dynamocheckpoint.ErrCorruptItem) {
				err = e
				break
			}
			if e == nil {
				cps = append(cps, cp)
			}
		}
		m.ticked() // a listing returned: the loop makes progress
		if err != nil {
			listErr = err
			m.mu.Lock()
			if last, had := m.subLag[h.Subscription]; had {
				lags[h.Subscription] = last
			}
			m.mu.Unlock()
			continue
		}
		byUnit := make(map[string]checkpoint.Checkpoint, len(cps))
		for _, cp := range cps {
			byUnit[cp.Unit] = cp
		}
		lag, _, known := subscribe.Locate(cps, now).Lag(func(unit string) (time.Duration, bool, bool) {
			if !ok {
				return 0, true, true // an empty index: nothing to handle
			}
			info, err := subscribe.DescribeCheckpoint(byUnit[unit].Position, 0)
			if err != nil {
				return 0, false, false
			}
			head, at := pos, headAt
			if b, isBucket := strings.CutPrefix(unit, unitBucketPrefix); isBucket && heads != nil {
				if head = heads[b]; head.IsZero() {
					return 0, true, true // an empty bucket
				}
				at, _ = store.ParseCommitIDTime(head.CommitID)
			}
			return info.Behind(head, at)
		})
		if known {
			lags[h.Subscription] = lag
		}
	}
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case listErr != nil && m.lagErr == nil:
		m.log.Warn("listing a subscription's checkpoints for its lag failed; its lag is the last read", "err", listErr)
	case listErr == nil && m.lagErr != nil:
		m.log.Info("listing the subscriptions' checkpoints for their lag works again")
	}
	m.lagErr, m.subLag = listErr, lags
}

// update reads the subscriptions' health and updates their tracks; it
// returns the health read.
func (m *monitor) update() []subscribe.Health {
	hs := m.src.Health()
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hs {
		t := m.subs[trackKey(h)]
		p := progressOf(h.Position)
		if t == nil {
			t = &subTrack{progress: p, changedAt: now}
			m.subs[trackKey(h)] = t
		}
		if p != t.progress {
			t.progress, t.changedAt, t.behindSince = p, now, time.Time{}
		}
		behind := h.State == subscribe.StateRunning && m.headOK && !m.covers(h)
		switch {
		case !behind:
			t.behindSince = time.Time{}
		case t.behindSince.IsZero():
			t.behindSince = now
		}
	}
	// Forget units this process no longer runs (handed over, or a stream
	// shard read to its end), so that the tracks stay as many as the units.
	if len(m.subs) > len(hs) {
		seen := make(map[string]bool, len(hs))
		for _, h := range hs {
			seen[trackKey(h)] = true
		}
		for k := range m.subs {
			if !seen[k] {
				delete(m.subs, k)
			}
		}
	}
	return hs
}

// covers reports whether h's checkpoint is at or past the head. Positions
// of the index source (and of the stream source's catch-up) compare
// exactly; past that, the stream source's checkpoint covers the head when
// it was saved after the head's commit time, less clockSkew.
func (m *monitor) covers(h subscribe.Health) bool {
	head := m.headPos
	if b, ok := strings.CutPrefix(h.Unit, unitBucketPrefix); ok && m.bucketHead != nil {
		head = m.bucketHead[b] // the zero Position for an empty bucket
	}
	info, err := subscribe.DescribeCheckpoint(h.Position, 0)
	if err == nil && (info.Phase == "index" || info.Phase == "catchup") {
		return info.Pending == 0 && info.After.Compare(head) >= 0
	}
	return !h.SavedAt.IsZero() && !m.headTime.IsZero() && !h.SavedAt.Before(m.headTime.Add(-clockSkew))
}

// progressOf returns what of a checkpoint position counts as progress: the
// position before which everything is handled, for the index source, since
// the rest of its checkpoint moves while one aggregate holds it back; the
// whole position otherwise.
func progressOf(position string) string {
	info, err := subscribe.DescribeCheckpoint(position, 0)
	if err == nil && (info.Phase == "index" || info.Phase == "catchup") {
		return fmt.Sprintf("%s %s/%s/%d %d", info.Phase, info.After.CommitID, info.After.AggregateID, info.After.Version, info.Pending)
	}
	return position
}

// subStatus is one subscription's state for /readyz and the metrics.
type subStatus struct {
	h           subscribe.Health
	now         time.Time
	stuck       bool
	behind      bool          // the head is past the checkpoint
	stalled     time.Duration // how long work has waited with no progress
	sinceChange time.Duration
	bounds      readyBounds
}

// ready reports whether the subscription does its job (see decideReady).
func (s subStatus) ready() (ok bool, why string) {
	return decideReady(s.h, s.stalled, s.now, s.bounds)
}

// readyBounds are the settings readiness is decided by.
type readyBounds struct {
	failAfter  time.Duration // --fail-after
	stuckAfter time.Duration // --stuck-after
}

// decideReady decides whether one entry of the worker's health (a
// subscription, or a unit of it) shows a daemon doing its job at now, and
// if not, why (why is "" when ok, or when the state says it all). stalled
// is how long commits have waited with the checkpoint unmoved. It is the
// table of docs/health.md, in order:
//
//   - a state other than running or waiting: not ready;
//   - any call refused for its credentials or permissions: not ready at
//     once (retrying does not help);
//   - waiting (holds no unit here): not ready when its units were lost
//     through failures (renewals that failed until the lease expired),
//     until a listing of the leases succeeds again, or when listing the
//     leases has failed for failAfter; else ready: a standby;
//   - running: not ready when reads of commits, checkpoint saves or lease
//     renewals have failed, with no success since, for failAfter; when the
//     handler's circuit is open; or when stuck (stalled for stuckAfter).
func decideReady(h subscribe.Health, stalled time.Duration, now time.Time, b readyBounds) (ok bool, why string) {
	runs := failureRuns(h)
	failing := func(f failureRun) (bool, string) {
		if f.err == nil || f.since.IsZero() || now.Sub(f.since) < b.failAfter {
			return false, ""
		}
		return true, fmt.Sprintf("%s failing for %v (--fail-after %v): %v", f.what, now.Sub(f.since).Round(time.Second), b.failAfter, f.err)
	}
	switch h.State {
	case subscribe.StateRunning, subscribe.StateWaiting:
	default:
		if h.Err != nil {
			return false, h.Err.Error()
		}
		return false, ""
	}
	if err := authError(h); err != nil {
		return false, "cannot authenticate to AWS (credentials or permissions): " + err.Error()
	}
	if h.State == subscribe.StateWaiting {
		if h.LostErr != nil {
			return false, fmt.Sprintf("lost its units through failures %v ago, not handed over; takes them back once the leases can be read: %v", now.Sub(h.LostAt).Round(time.Second), h.LostErr)
		}
		if bad, why := failing(runs[callList]); bad {
			return false, why
		}
		return true, "" // holds no unit now: a standby, ready to take one
	}
	for _, f := range runs[:callList] {
		if bad, why := failing(f); bad {
			return false, why
		}
	}
	if !h.CircuitOpenSince.IsZero() {
		return false, fmt.Sprintf("the handler's circuit has been open for %v: it failed for several aggregates in a row, and only probes call it (docs/delivery.md)", max(now.Sub(h.CircuitOpenSince), 0).Round(time.Second))
	}
	if b.stuckAfter > 0 && stalled >= b.stuckAfter {
		return false, fmt.Sprintf("stuck: checkpoint unchanged for %v while commits wait (--stuck-after %v)", stalled.Round(time.Second), b.stuckAfter)
	}
	return true, ""
}

// failureRun is one kind of call's run of failures in a Health.
type failureRun struct {
	call  string // the metric's label
	what  string // for /readyz
	err   error
	since time.Time
}

// callList is the index of the listing of leases in failureRuns' answer;
// the calls of a running unit come before it.
const callList = 3

// failureRuns returns h's runs of failures, by kind of call: reads of
// commits, checkpoint saves, lease renewals, listings of the leases.
func failureRuns(h subscribe.Health) []failureRun {
	listErr := h.Err // the listing's error, while ListErrSince is set
	if h.ListErrSince.IsZero() {
		listErr = nil
	}
	return []failureRun{
		{"read", "reading commits", h.ReadErr, h.ReadErrSince},
		{"save", "saving the checkpoint", h.SaveErr, h.SaveErrSince},
		{"renew", "renewing the lease", h.RenewErr, h.RenewErrSince},
		callList: {"list", "listing the leases", listErr, h.ListErrSince},
	}
}

// authError returns the first error of h that is a call refused for its
// credentials or permissions, or nil.
func authError(h subscribe.Health) error {
	for _, err := range []error{h.Err, h.ReadErr, h.SaveErr, h.RenewErr} {
		if awscfg.IsAuthError(err) {
			return err
		}
	}
	return nil
}

// status returns every subscription's status, in registration order.
func (m *monitor) status() []subStatus {
	hs := m.update()
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]subStatus, len(hs))
	for i, h := range hs {
		s := subStatus{h: h, now: now, bounds: readyBounds{failAfter: m.failAfter, stuckAfter: m.stuckAfter}}
		if t := m.subs[trackKey(h)]; t != nil {
			s.sinceChange = now.Sub(t.changedAt)
			if !t.behindSince.IsZero() {
				s.behind = true
				s.stalled = now.Sub(t.behindSince)
				s.stuck = s.stalled >= m.stuckAfter
			}
		}
		out[i] = s
	}
	return out
}

// readiness returns /readyz's answer: whether every subscription is
// ready, and one line per subscription: its name, its state, and why it is
// not ready.
func (m *monitor) readiness() (bool, string) {
	var b strings.Builder
	all := true
	sts := m.status()
	for _, s := range sts {
		ok, why := s.ready()
		fmt.Fprintf(&b, "%s: %s", displayName(s.h), s.h.State)
		switch {
		case ok && s.h.State == subscribe.StateWaiting:
			b.WriteString(", ready (holds no unit of work now; takes one when another daemon stops or falls behind)\n")
			continue
		case ok:
			fmt.Fprintf(&b, ", ready (lag %v, %d in flight)\n", s.h.Lag.Round(time.Millisecond), s.h.InFlight)
			continue
		case why != "":
			fmt.Fprintf(&b, ", not ready: %s\n", oneLine(why))
		default:
			b.WriteString(", not ready\n")
		}
		all = false
	}
	if len(sts) == 0 {
		all = false
		b.WriteString("no subscription\n")
	}
	return all, b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// The daemon's own metrics, named in the package documentation.
var (
	descState = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_state",
		"1 for the subscription's current state (idle, starting, running, stopping, stopped), 0 for the others.",
		[]string{"subscription", "state"}, nil)
	descReady = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_ready",
		"1 when /readyz counts the subscription ready (docs/health.md has the table), 0 otherwise.",
		[]string{"subscription"}, nil)
	descStuck = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_stuck",
		"1 when the subscription's checkpoint has not moved for --stuck-after while commits wait for it, 0 otherwise.",
		[]string{"subscription"}, nil)
	descBehind = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_behind",
		"1 when the head of the commit-order index is past the subscription's checkpoint (commits wait for it), 0 when it has caught up.",
		[]string{"subscription"}, nil)
	descStalled = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_stalled_seconds",
		"How long the subscription has been behind the head with its checkpoint unmoved; 0 when it is not. Stuck from --stuck-after on.",
		[]string{"subscription"}, nil)
	descSaved = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_checkpoint_saved_timestamp_seconds",
		"Unix time the subscription's checkpoint was last saved (it is saved only when it moves); absent before the first.",
		[]string{"subscription"}, nil)
	descAge = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_checkpoint_age_seconds",
		"Seconds since the subscription's checkpoint was last saved; absent before the first.",
		[]string{"subscription"}, nil)
	descUnchanged = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_checkpoint_unchanged_seconds",
		"Seconds since this process last saw the subscription's checkpoint move.",
		[]string{"subscription"}, nil)
	descFailing = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_failing_seconds",
		"How long calls of the subscription of one kind (call: read, the commits; save, the checkpoint; renew, the lease; list, the leases) have failed with no success since; 0 while they succeed. /readyz answers 503 from --fail-after on.",
		[]string{"subscription", "call"}, nil)
	descAuth = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_auth_failed",
		"1 when the subscription's last failed call was refused for its credentials or permissions (or none were found), 0 otherwise.",
		[]string{"subscription"}, nil)
	descLost = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_units_lost",
		"1 while this process holds no unit of the subscription after losing them through failures (not handed over), until it renews a lease again or sees every unit held by another live process; 0 otherwise.",
		[]string{"subscription"}, nil)
	descSubLag = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_subscription_lag_seconds",
		"The subscription's lag read from the checkpoints of all its units, whoever holds them (a stream subscription in shards: its shard units): the newest commit's time less the time before which the unit furthest behind has handled every commit; 0 when caught up. Every daemon that runs the subscription reports it; absent while unknown (docs/health.md).",
		[]string{"subscription"}, nil)
	descHead = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_head_commit_timestamp_seconds",
		"Commit time (Unix seconds, from its commit id) of the newest commit in the commit-order index; absent until read.",
		nil, nil)
	descProbes = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_head_reads_total",
		"Reads of the head of the commit-order index, successful or not.", nil, nil)
	descProbeErrors = prometheus.NewDesc(promhooks.DefaultNamespace+"_daemon_head_read_errors_total",
		"Reads of the head of the commit-order index that failed.", nil, nil)
)

var states = []subscribe.State{subscribe.StateIdle, subscribe.StateWaiting, subscribe.StateStarting, subscribe.StateRunning, subscribe.StateStopping, subscribe.StateStopped}

// Describe implements prometheus.Collector.
func (m *monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descReady, descStuck, descBehind, descStalled, descSaved, descAge, descUnchanged, descFailing, descAuth, descLost, descSubLag, descHead, descProbes, descProbeErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *monitor) Collect(ch chan<- prometheus.Metric) {
	now := m.clock()
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range m.status() {
		name := displayName(s.h)
		for _, st := range states {
			emit(ch, descState, prometheus.GaugeValue, b2f(s.h.State == st), name, string(st))
		}
		ok, _ := s.ready()
		emit(ch, descReady, prometheus.GaugeValue, b2f(ok), name)
		emit(ch, descStuck, prometheus.GaugeValue, b2f(s.stuck), name)
		emit(ch, descBehind, prometheus.GaugeValue, b2f(s.behind), name)
		emit(ch, descStalled, prometheus.GaugeValue, s.stalled.Seconds(), name)
		emit(ch, descUnchanged, prometheus.GaugeValue, s.sinceChange.Seconds(), name)
		for _, f := range failureRuns(s.h) {
			d := 0.0
			if f.err != nil && !f.since.IsZero() {
				d = max(0, now.Sub(f.since).Seconds())
			}
			emit(ch, descFailing, prometheus.GaugeValue, d, name, f.call)
		}
		emit(ch, descAuth, prometheus.GaugeValue, b2f(authError(s.h) != nil), name)
		emit(ch, descLost, prometheus.GaugeValue, b2f(s.h.LostErr != nil), name)
		if !s.h.SavedAt.IsZero() {
			emit(ch, descSaved, prometheus.GaugeValue, float64(s.h.SavedAt.UnixMilli())/1000, name)
			emit(ch, descAge, prometheus.GaugeValue, max(0, now.Sub(s.h.SavedAt).Seconds()), name)
		}
	}
	m.mu.Lock()
	headTime, probes, probeErr := m.headTime, m.probes, m.probeErr
	for sub, lag := range m.subLag {
		emit(ch, descSubLag, prometheus.GaugeValue, lag.Seconds(), sub)
	}
	m.mu.Unlock()
	if !headTime.IsZero() {
		emit(ch, descHead, prometheus.GaugeValue, float64(headTime.UnixMilli())/1000)
	}
	emit(ch, descProbes, prometheus.CounterValue, probes)
	emit(ch, descProbeErrors, prometheus.CounterValue, probeErr)
}

// emit sends a metric, or nothing if it cannot be made (a label value
// that is not UTF-8, which the names' checks rule out).
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
		ch <- m
	}
}
