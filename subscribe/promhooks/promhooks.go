package promhooks

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// DefaultNamespace prefixes every metric name unless WithNamespace says
// otherwise.
const DefaultNamespace = "eventstore"

// Default histogram buckets, in seconds.
var (
	// DefaultHandlerBuckets spans 1 ms to 30 s: a handler usually writes a
	// read model, and a slow one runs up to its attempt timeout.
	DefaultHandlerBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// DefaultPollBuckets spans 1 ms to 10 s: a poll is one or a few
	// DynamoDB Query pages, more while catching up or when throttled.
	DefaultPollBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Labels.
const (
	labelSubscription = "subscription"
	labelUnit         = "unit"
	labelOperation    = "operation"
	labelResource     = "resource"
	labelKind         = "kind"
	labelResult       = "result"
)

// Values of the label result.
const (
	resultOK    = "ok"
	resultError = "error"
)

// unknownResource labels capacity DynamoDB reported without a table name.
const unknownResource = "unknown"

// Option configures New.
type Option func(*options)

type options struct {
	namespace      string
	handlerBuckets []float64
	pollBuckets    []float64
	subscriptions  []string
}

// WithNamespace sets the prefix of every metric name. Default
// DefaultNamespace ("eventstore"). It must match [a-zA-Z_][a-zA-Z0-9_]*,
// so that every name is a classic Prometheus name, or be empty: the names
// then start with "subscription_" and "store_".
func WithNamespace(ns string) Option {
	return func(o *options) { o.namespace = ns }
}

// WithHandlerBuckets sets the buckets, in seconds, of the handler duration
// histogram. Default DefaultHandlerBuckets.
func WithHandlerBuckets(b ...float64) Option {
	return func(o *options) { o.handlerBuckets = append([]float64(nil), b...) }
}

// WithPollBuckets sets the buckets, in seconds, of the poll duration
// histogram. Default DefaultPollBuckets.
func WithPollBuckets(b ...float64) Option {
	return func(o *options) { o.pollBuckets = append([]float64(nil), b...) }
}

// WithSubscriptions creates the series of the named subscriptions at zero
// (every counter and histogram, with requests_total for both kinds and
// both results, and the stopped gauge), so that they are
// exported before anything happens and rate() sees their first increase.
// The lag gauges are created by the first OnLag only, and leases_held by
// the first lease gained. Default: none; a subscription's series appear as
// its hooks are first called.
func WithSubscriptions(names ...string) Option {
	return func(o *options) { o.subscriptions = append(o.subscriptions, names...) }
}

// Metrics records the subscription worker's hooks and the store's consumed
// capacity as Prometheus metrics. Put it in subscribe.Config.Hooks, and its
// ConsumedCapacity method in store.Config.ConsumedCapacity. Every method is
// safe for concurrent use. The zero value is not usable: call New.
type Metrics struct {
	commitsHandled    *prometheus.CounterVec
	eventsHandled     *prometheus.CounterVec
	handlerDuration   *prometheus.HistogramVec
	handlerErrors     *prometheus.CounterVec
	retries           *prometheus.CounterVec
	parked            *prometheus.CounterVec
	skipped           *prometheus.CounterVec
	lateArrivals      *prometheus.CounterVec
	gapRepairs        *prometheus.CounterVec
	gapRepairCommits  *prometheus.CounterVec
	duplicates        *prometheus.CounterVec
	polls             *prometheus.CounterVec
	pollDuration      *prometheus.HistogramVec
	pollErrors        *prometheus.CounterVec
	commitsRead       *prometheus.CounterVec
	checkpointWrites  *prometheus.CounterVec
	checkpointErrors  *prometheus.CounterVec
	lagSeconds        *prometheus.GaugeVec
	lagCommits        *prometheus.GaugeVec
	stopped           *prometheus.GaugeVec
	corrupt           *prometheus.CounterVec
	gapsUnfilled      *prometheus.CounterVec
	ignoredRecords    *prometheus.CounterVec
	requests          *prometheus.CounterVec
	leasesHeld        *prometheus.GaugeVec
	leaseGains        *prometheus.CounterVec
	leaseLosses       *prometheus.CounterVec
	leaseRenewFails   *prometheus.CounterVec
	consumedCapacity  *prometheus.CounterVec
	circuitOpen       *prometheus.GaugeVec
	circuitOpenings   *prometheus.CounterVec
	parkedNow         *prometheus.GaugeVec
	parkedAggregates  *prometheus.GaugeVec
	collectors        []prometheus.Collector
	subscriptionInits []func(sub string)
}

// Compile-time checks: *Metrics implements every hook of the worker, and
// ConsumedCapacity fits store.Config.ConsumedCapacity.
var (
	_ subscribe.HookHandled       = (*Metrics)(nil)
	_ subscribe.HookRetry         = (*Metrics)(nil)
	_ subscribe.HookParked        = (*Metrics)(nil)
	_ subscribe.HookSkipped       = (*Metrics)(nil)
	_ subscribe.HookLateArrival   = (*Metrics)(nil)
	_ subscribe.HookGapRepair     = (*Metrics)(nil)
	_ subscribe.HookGap           = (*Metrics)(nil)
	_ subscribe.HookDuplicate     = (*Metrics)(nil)
	_ subscribe.HookPoll          = (*Metrics)(nil)
	_ subscribe.HookCheckpoint    = (*Metrics)(nil)
	_ subscribe.HookLag           = (*Metrics)(nil)
	_ subscribe.HookStopped       = (*Metrics)(nil)
	_ subscribe.HookCorrupt       = (*Metrics)(nil)
	_ subscribe.HookIgnoredRecord = (*Metrics)(nil)
	_ subscribe.HookRequest       = (*Metrics)(nil)
	_ subscribe.HookLease         = (*Metrics)(nil)
	_ subscribe.HookCircuit       = (*Metrics)(nil)
	_ subscribe.HookParkedNow     = (*Metrics)(nil)

	_ = store.Config{ConsumedCapacity: (*Metrics)(nil).ConsumedCapacity}
)

// New creates the metrics listed in the package documentation and
// registers them with reg. It returns an error, and leaves reg as it found
// it, if any of them cannot be registered: an invalid option, or a metric
// of the same name already there (for instance a second New on the same
// registry with the same namespace); errors.As finds the
// prometheus.AlreadyRegisteredError in the latter case. To register a
// second set, give it another namespace or another registry
// (prometheus.WrapRegistererWith adds constant labels).
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("promhooks: nil prometheus.Registerer")
	}
	o := options{
		namespace:      DefaultNamespace,
		handlerBuckets: DefaultHandlerBuckets,
		pollBuckets:    DefaultPollBuckets,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if !validNamespace(o.namespace) {
		return nil, fmt.Errorf("promhooks: WithNamespace(%q): want [a-zA-Z_][a-zA-Z0-9_]* or empty", o.namespace)
	}
	if err := checkBuckets("WithHandlerBuckets", o.handlerBuckets); err != nil {
		return nil, err
	}
	if err := checkBuckets("WithPollBuckets", o.pollBuckets); err != nil {
		return nil, err
	}
	if len(o.handlerBuckets) == 0 {
		o.handlerBuckets = DefaultHandlerBuckets
	}
	if len(o.pollBuckets) == 0 {
		o.pollBuckets = DefaultPollBuckets
	}
	m := &Metrics{}
	sub := []string{labelSubscription}
	const subsys = "subscription"
	counter := func(name, help string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: o.namespace, Subsystem: subsys, Name: name, Help: help}, sub)
		m.collectors = append(m.collectors, v)
		m.subscriptionInits = append(m.subscriptionInits, func(s string) { v.WithLabelValues(s) })
		return v
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.namespace, Subsystem: subsys, Name: name, Help: help, Buckets: slices.Clone(buckets)}, sub)
		m.collectors = append(m.collectors, v)
		m.subscriptionInits = append(m.subscriptionInits, func(s string) { v.WithLabelValues(s) })
		return v
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: o.namespace, Subsystem: subsys, Name: name, Help: help}, sub)
		m.collectors = append(m.collectors, v)
		return v
	}

	m.commitsHandled = counter("commits_handled_total", "Commits handled successfully by the subscription's handler.")
	m.eventsHandled = counter("events_handled_total", "Events carried by the commits handled successfully.")
	m.handlerDuration = histogram("handler_duration_seconds", "Duration of each handler call, successful or not.", o.handlerBuckets)
	m.handlerErrors = counter("handler_errors_total", "Handler calls that returned an error or panicked.")
	m.retries = counter("retries_total", "Retries of a failed handler call.")
	m.parked = counter("parked_commits_total", "Commits set aside by PolicyPark.")
	m.skipped = counter("skipped_commits_total", "Commits skipped by PolicySkip or by the handler returning Skip.")
	m.lateArrivals = counter("late_arrivals_total", "Commits that became visible on the index after the source had read past them, delivered late.")
	m.gapRepairs = counter("gap_repairs_total", "Per-aggregate version gaps found and repaired with a consistent read of the table.")
	m.gapRepairCommits = counter("gap_repair_commits_total", "Commits fetched from the table to fill per-aggregate version gaps.")
	m.duplicates = counter("duplicates_total", "Commits dropped because their version was already delivered.")
	m.polls = counter("polls_total", "Polls of the source, successful or not.")
	m.pollDuration = histogram("poll_duration_seconds", "Duration of each poll of the source.", o.pollBuckets)
	m.pollErrors = counter("poll_errors_total", "Polls of the source that failed.")
	m.commitsRead = counter("commits_read_total", "Commits read by polls of the source.")
	m.checkpointWrites = counter("checkpoint_writes_total", "Checkpoint writes attempted, successful or not.")
	m.checkpointErrors = counter("checkpoint_write_errors_total", "Checkpoint writes that failed.")
	m.lagSeconds = gauge("lag_seconds", "Age of the oldest commit not yet handled, by the clock: it grows while reads fail; 0 when caught up.")
	m.lagCommits = gauge("lag_commits", "Commits read but not yet handled.")
	m.stopped = gauge("stopped", "1 once the subscription stopped on an error, 0 otherwise.")
	m.subscriptionInits = append(m.subscriptionInits, func(s string) { m.stopped.WithLabelValues(s).Set(0) })
	m.corrupt = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: o.namespace, Subsystem: subsys, Name: "corrupt_items_total",
		Help: "Items of the commits table that are not well-formed commits of their key, by kind; parked or skipped by the Corrupt policy.",
	}, []string{labelSubscription, labelKind})
	m.collectors = append(m.collectors, m.corrupt)
	m.subscriptionInits = append(m.subscriptionInits, func(s string) {
		for _, kind := range store.CorruptKinds {
			m.corrupt.WithLabelValues(s, string(kind))
		}
	})
	m.gapsUnfilled = counter("gaps_unfilled_total", "Per-aggregate version gaps still missing from the table after the gap timeout; the version after each is handled by the Corrupt policy.")
	m.ignoredRecords = counter("stream_records_ignored_total", "Stream records passed over: not an insert of a commit (MODIFY, REMOVE, other items).")
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: o.namespace, Subsystem: subsys, Name: "requests_total",
		Help: "Operators' requests (replay or discard an aggregate's parked commits) carried out, by kind and result (ok or error).",
	}, []string{labelSubscription, labelKind, labelResult})
	m.collectors = append(m.collectors, m.requests)
	m.subscriptionInits = append(m.subscriptionInits, func(s string) {
		for _, kind := range []checkpoint.RequestKind{checkpoint.RequestReplay, checkpoint.RequestDiscard} {
			for _, result := range []string{resultOK, resultError} {
				m.requests.WithLabelValues(s, string(kind), result)
			}
		}
	})
	m.leasesHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: o.namespace, Subsystem: subsys, Name: "leases_held",
		Help: "1 while this worker holds the lease of the subscription's unit, 0 once it no longer does (subscribe.Config.Leases).",
	}, []string{labelSubscription, labelUnit})
	m.collectors = append(m.collectors, m.leasesHeld)
	m.leaseGains = counter("lease_gains_total", "Leases of the subscription's units this worker took (free, expired or stolen to balance the load).")
	m.leaseLosses = counter("lease_losses_total", "Leases of the subscription's units this worker lost: taken by another worker, or expired before they could be renewed. Releases are not counted.")
	m.leaseRenewFails = counter("lease_renewal_failures_total", "Lease renewals that failed and were retried (not counting those refused because another worker took the unit).")
	m.circuitOpen = gauge("circuit_open", "1 while the subscription's circuit is open (its handler failed transiently for several aggregates in a row; only probes call it), 0 otherwise.")
	m.circuitOpenings = counter("circuit_openings_total", "Times the subscription's circuit opened.")
	m.parkedNow = gauge("parked_commits", "Commits of the subscription parked now, as this worker knows them.")
	m.parkedAggregates = gauge("parked_aggregates", "Aggregates of the subscription with commits parked now, as this worker knows them.")
	m.subscriptionInits = append(m.subscriptionInits, func(s string) {
		m.circuitOpen.WithLabelValues(s).Set(0)
		m.parkedNow.WithLabelValues(s).Set(0)
		m.parkedAggregates.WithLabelValues(s).Set(0)
	})
	m.consumedCapacity = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: o.namespace, Subsystem: "store", Name: "consumed_capacity_units_total",
		Help: "DynamoDB capacity units consumed by store calls, by operation and by table or index.",
	}, []string{labelOperation, labelResource})
	m.collectors = append(m.collectors, m.consumedCapacity)

	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("promhooks: metrics already registered (use another registry or WithNamespace): %w", err)
			}
			return nil, fmt.Errorf("promhooks: registering metrics: %w", err)
		}
	}
	for _, s := range o.subscriptions {
		for _, init := range m.subscriptionInits {
			init(lv(s))
		}
	}
	return m, nil
}

// OnHandled implements subscribe.HookHandled: it counts the commits and
// events handled, observes the call's duration, and counts an error.
func (m *Metrics) OnHandled(sub string, commits, events int, d time.Duration, err error) {
	if commits > 0 {
		m.commitsHandled.WithLabelValues(lv(sub)).Add(float64(commits))
	}
	if events > 0 {
		m.eventsHandled.WithLabelValues(lv(sub)).Add(float64(events))
	}
	m.handlerDuration.WithLabelValues(lv(sub)).Observe(d.Seconds())
	if err != nil {
		m.handlerErrors.WithLabelValues(lv(sub)).Inc()
	}
}

// OnRetry implements subscribe.HookRetry.
func (m *Metrics) OnRetry(sub string, _ subscribe.Commit, _ int, _ time.Duration, _ error) {
	m.retries.WithLabelValues(lv(sub)).Inc()
}

// OnParked implements subscribe.HookParked.
func (m *Metrics) OnParked(sub string, _ subscribe.Commit, _ error) {
	m.parked.WithLabelValues(lv(sub)).Inc()
}

// OnSkipped implements subscribe.HookSkipped.
func (m *Metrics) OnSkipped(sub string, _ subscribe.Commit, _ error) {
	m.skipped.WithLabelValues(lv(sub)).Inc()
}

// OnLateArrival implements subscribe.HookLateArrival.
func (m *Metrics) OnLateArrival(sub string, _ subscribe.Commit) {
	m.lateArrivals.WithLabelValues(lv(sub)).Inc()
}

// OnGapRepair implements subscribe.HookGapRepair: it counts the gap and
// the commits fetched to fill it.
func (m *Metrics) OnGapRepair(sub, _ string, _, _ int64, found int) {
	m.gapRepairs.WithLabelValues(lv(sub)).Inc()
	if found > 0 {
		m.gapRepairCommits.WithLabelValues(lv(sub)).Add(float64(found))
	}
}

// OnDuplicate implements subscribe.HookDuplicate.
func (m *Metrics) OnDuplicate(sub string, _ subscribe.Commit) {
	m.duplicates.WithLabelValues(lv(sub)).Inc()
}

// OnPoll implements subscribe.HookPoll: it counts the poll and the commits
// it read, observes its duration, and counts an error. A poll also means
// the subscription runs: it sets the stopped gauge back to 0.
func (m *Metrics) OnPoll(sub string, commits int, d time.Duration, err error) {
	m.polls.WithLabelValues(lv(sub)).Inc()
	m.pollDuration.WithLabelValues(lv(sub)).Observe(d.Seconds())
	if commits > 0 {
		m.commitsRead.WithLabelValues(lv(sub)).Add(float64(commits))
	}
	if err != nil {
		m.pollErrors.WithLabelValues(lv(sub)).Inc()
	}
	m.stopped.WithLabelValues(lv(sub)).Set(0)
}

// OnCheckpoint implements subscribe.HookCheckpoint.
func (m *Metrics) OnCheckpoint(sub string, err error) {
	m.checkpointWrites.WithLabelValues(lv(sub)).Inc()
	if err != nil {
		m.checkpointErrors.WithLabelValues(lv(sub)).Inc()
	}
}

// OnLag implements subscribe.HookLag: it sets both lag gauges.
func (m *Metrics) OnLag(sub string, age time.Duration, commits int) {
	m.lagSeconds.WithLabelValues(lv(sub)).Set(age.Seconds())
	m.lagCommits.WithLabelValues(lv(sub)).Set(float64(commits))
}

// OnStopped implements subscribe.HookStopped: it sets the stopped gauge to
// 1. The worker calls it only for a subscription that stopped on an error,
// not on a clean stop.
func (m *Metrics) OnStopped(sub string, _ error) {
	m.stopped.WithLabelValues(lv(sub)).Set(1)
}

// OnIgnoredRecord implements subscribe.HookIgnoredRecord.
func (m *Metrics) OnIgnoredRecord(sub, _ string) {
	m.ignoredRecords.WithLabelValues(lv(sub)).Inc()
}

// OnRequest implements subscribe.HookRequest: it counts the request by
// kind and result, "ok" when err is nil and "error" otherwise.
func (m *Metrics) OnRequest(sub string, r checkpoint.Request, err error) {
	result := resultOK
	if err != nil {
		result = resultError
	}
	m.requests.WithLabelValues(lv(sub), lv(string(r.Kind)), result).Inc()
}

// OnLeaseGained implements subscribe.HookLease: it counts the lease and
// sets leases_held of the unit to 1.
func (m *Metrics) OnLeaseGained(sub, unit string) {
	m.leaseGains.WithLabelValues(lv(sub)).Inc()
	m.leasesHeld.WithLabelValues(lv(sub), lv(unit)).Set(1)
}

// OnLeaseLost implements subscribe.HookLease: it sets leases_held of the
// unit to 0, or removes the series of a stream shard's unit ("shard-…":
// shards come and go, and their series would pile up), and, when err is not
// nil (the lease was lost, not released), counts the loss.
func (m *Metrics) OnLeaseLost(sub, unit string, err error) {
	if strings.HasPrefix(unit, "shard-") {
		m.leasesHeld.DeleteLabelValues(lv(sub), lv(unit))
	} else {
		m.leasesHeld.WithLabelValues(lv(sub), lv(unit)).Set(0)
	}
	if err != nil {
		m.leaseLosses.WithLabelValues(lv(sub)).Inc()
	}
}

// OnLeaseRenewFailed implements subscribe.HookLease.
func (m *Metrics) OnLeaseRenewFailed(sub, _ string, _ error) {
	m.leaseRenewFails.WithLabelValues(lv(sub)).Inc()
}

// OnCircuit implements subscribe.HookCircuit: it sets circuit_open, and
// counts an opening.
func (m *Metrics) OnCircuit(sub string, open bool, _ time.Time) {
	if open {
		m.circuitOpen.WithLabelValues(lv(sub)).Set(1)
		m.circuitOpenings.WithLabelValues(lv(sub)).Inc()
		return
	}
	m.circuitOpen.WithLabelValues(lv(sub)).Set(0)
}

// OnParkedNow implements subscribe.HookParkedNow: it sets parked_commits
// and parked_aggregates.
func (m *Metrics) OnParkedNow(sub string, aggregates, commits int) {
	m.parkedNow.WithLabelValues(lv(sub)).Set(float64(commits))
	m.parkedAggregates.WithLabelValues(lv(sub)).Set(float64(aggregates))
}

// OnGap implements subscribe.HookGap.
func (m *Metrics) OnGap(sub, _ string, _, _ int64) {
	m.gapsUnfilled.WithLabelValues(lv(sub)).Inc()
}

// OnCorrupt implements subscribe.HookCorrupt.
func (m *Metrics) OnCorrupt(sub string, err *store.DecodeError) {
	m.corrupt.WithLabelValues(lv(sub), lv(string(err.Kind))).Inc()
}

// ConsumedCapacity has the signature of store.Config.ConsumedCapacity: it
// adds the capacity units of cc to the table's and each index's series
// (global and local secondary indexes alike, by index name). When cc has
// no per-table figures (ReturnConsumedCapacity TOTAL), its total goes to
// the table's series. A resource without a name is labelled "unknown".
func (m *Metrics) ConsumedCapacity(op store.Operation, cc types.ConsumedCapacity) {
	table := unknownResource
	if cc.TableName != nil && *cc.TableName != "" {
		table = *cc.TableName
	}
	opName := string(op)
	if cc.Table == nil && len(cc.GlobalSecondaryIndexes) == 0 && len(cc.LocalSecondaryIndexes) == 0 {
		m.addCapacity(opName, table, units(cc.CapacityUnits, cc.ReadCapacityUnits, cc.WriteCapacityUnits))
		return
	}
	if cc.Table != nil {
		m.addCapacity(opName, table, capacityUnits(*cc.Table))
	}
	for name, c := range cc.GlobalSecondaryIndexes {
		m.addCapacity(opName, name, capacityUnits(c))
	}
	for name, c := range cc.LocalSecondaryIndexes {
		m.addCapacity(opName, name, capacityUnits(c))
	}
}

func (m *Metrics) addCapacity(op, resource string, u float64) {
	if resource == "" {
		resource = unknownResource
	}
	// Add panics on a negative value; DynamoDB never reports one.
	if u > 0 {
		m.consumedCapacity.WithLabelValues(lv(op), lv(resource)).Add(u)
	}
}

// checkBuckets returns an error for buckets the prometheus package would
// panic on when the first series is created: not strictly increasing.
func checkBuckets(opt string, b []float64) error {
	for i := 1; i < len(b); i++ {
		if !(b[i] > b[i-1]) {
			return fmt.Errorf("promhooks: %s: buckets must be strictly increasing, got %v", opt, b)
		}
	}
	if slices.ContainsFunc(b, math.IsNaN) {
		return fmt.Errorf("promhooks: %s: NaN bucket in %v", opt, b)
	}
	return nil
}

func validNamespace(ns string) bool {
	for i, r := range ns {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// lv makes s a valid label value: WithLabelValues panics on invalid UTF-8,
// and neither subscription names nor DynamoDB names are checked for it.
func lv(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func capacityUnits(c types.Capacity) float64 {
	return units(c.CapacityUnits, c.ReadCapacityUnits, c.WriteCapacityUnits)
}

// units is total, or read + write when DynamoDB gave no total.
func units(total, read, write *float64) float64 {
	if total != nil {
		return *total
	}
	var u float64
	if read != nil {
		u += *read
	}
	if write != nil {
		u += *write
	}
	return u
}
