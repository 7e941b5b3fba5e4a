package promhooks

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

var (
	errBoom = errors.New("boom")
	commit  = subscribe.Commit{AggregateID: "a", Version: 3}
)

func newMetrics(t *testing.T, opts ...Option) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// series is one exported series: a metric name and its labels.
type series struct {
	name   string
	labels string // `k="v",…` sorted by name, as dto gives them
}

func (s series) String() string { return s.name + "{" + s.labels + "}" }

func sub(name string) series {
	return series{name: "eventstore_subscription_" + name, labels: `subscription="s"`}
}

// request names a series of the requests counter.
func request(s, kind, result string) series {
	return series{name: "eventstore_subscription_requests_total", labels: fmt.Sprintf("kind=%q,result=%q,subscription=%q", kind, result, s)}
}

// held names a series of the leases_held gauge.
func held(s, unit string) series {
	return series{name: "eventstore_subscription_leases_held", labels: fmt.Sprintf("subscription=%q,unit=%q", s, unit)}
}

// gather returns every series in reg with its value: a counter's or a
// gauge's value, a histogram's sample count (its sum under name+"_sum").
func gather(t *testing.T, reg prometheus.Gatherer) map[series]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[series]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			s := series{name: mf.GetName(), labels: strings.Join(ls, ",")}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[s] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[s] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[s] = float64(m.GetHistogram().GetSampleCount())
				out[series{name: s.name + "_sum", labels: s.labels}] = m.GetHistogram().GetSampleSum()
			default:
				t.Fatalf("%s: unexpected type %v", mf.GetName(), mf.GetType())
			}
		}
	}
	return out
}

// TestHooks calls each hook and checks every series that exists afterwards:
// those listed in want with their values, and no other.
func TestHooks(t *testing.T) {
	cases := []struct {
		name string
		call func(m *Metrics)
		want map[series]float64
	}{
		{
			name: "handled",
			call: func(m *Metrics) { m.OnHandled("s", 3, 7, 20*time.Millisecond, nil) },
			want: map[series]float64{
				sub("commits_handled_total"):        3,
				sub("events_handled_total"):         7,
				sub("handler_duration_seconds"):     1,
				sub("handler_duration_seconds_sum"): 0.02,
			},
		},
		{
			name: "handled in part, then failed",
			call: func(m *Metrics) {
				m.OnHandled("s", 1, 2, time.Second, errBoom)
				m.OnHandled("s", 0, 0, 500*time.Millisecond, errBoom)
			},
			want: map[series]float64{
				sub("commits_handled_total"):        1,
				sub("events_handled_total"):         2,
				sub("handler_errors_total"):         2,
				sub("handler_duration_seconds"):     2,
				sub("handler_duration_seconds_sum"): 1.5,
			},
		},
		{
			name: "retry",
			call: func(m *Metrics) {
				m.OnRetry("s", commit, 1, time.Second, errBoom)
				m.OnRetry("s", commit, 2, 2*time.Second, errBoom)
			},
			want: map[series]float64{sub("retries_total"): 2},
		},
		{
			name: "parked, on an error and behind an earlier commit",
			call: func(m *Metrics) {
				m.OnParked("s", commit, errBoom)
				m.OnParked("s", commit, nil)
			},
			want: map[series]float64{sub("parked_commits_total"): 2},
		},
		{
			name: "skipped",
			call: func(m *Metrics) { m.OnSkipped("s", commit, errBoom) },
			want: map[series]float64{sub("skipped_commits_total"): 1},
		},
		{
			name: "late arrival",
			call: func(m *Metrics) { m.OnLateArrival("s", commit) },
			want: map[series]float64{sub("late_arrivals_total"): 1},
		},
		{
			name: "gap repairs",
			call: func(m *Metrics) {
				m.OnGapRepair("s", "a", 3, 6, 3)
				m.OnGapRepair("s", "b", 0, 2, 0)
			},
			want: map[series]float64{
				sub("gap_repairs_total"):        2,
				sub("gap_repair_commits_total"): 3,
			},
		},
		{
			name: "duplicate",
			call: func(m *Metrics) { m.OnDuplicate("s", commit) },
			want: map[series]float64{sub("duplicates_total"): 1},
		},
		{
			name: "polls",
			call: func(m *Metrics) {
				m.OnPoll("s", 5, 30*time.Millisecond, nil)
				m.OnPoll("s", 0, 10*time.Millisecond, errBoom)
			},
			want: map[series]float64{
				sub("polls_total"):               2,
				sub("poll_errors_total"):         1,
				sub("commits_read_total"):        5,
				sub("poll_duration_seconds"):     2,
				sub("poll_duration_seconds_sum"): 0.04,
				sub("stopped"):                   0,
			},
		},
		{
			name: "checkpoints",
			call: func(m *Metrics) {
				m.OnCheckpoint("s", nil)
				m.OnCheckpoint("s", errBoom)
				m.OnCheckpoint("s", nil)
			},
			want: map[series]float64{
				sub("checkpoint_writes_total"):       3,
				sub("checkpoint_write_errors_total"): 1,
			},
		},
		{
			name: "lag",
			call: func(m *Metrics) { m.OnLag("s", 1500*time.Millisecond, 42) },
			want: map[series]float64{sub("lag_seconds"): 1.5, sub("lag_commits"): 42},
		},
		{
			name: "lag, then caught up",
			call: func(m *Metrics) {
				m.OnLag("s", time.Minute, 1000)
				m.OnLag("s", 0, 0)
			},
			want: map[series]float64{sub("lag_seconds"): 0, sub("lag_commits"): 0},
		},
		{
			name: "stopped",
			call: func(m *Metrics) { m.OnStopped("s", errBoom) },
			want: map[series]float64{sub("stopped"): 1},
		},
		{
			name: "stopped, then polling again",
			call: func(m *Metrics) {
				m.OnStopped("s", errBoom)
				m.OnPoll("s", 0, 0, nil)
			},
			want: map[series]float64{
				sub("stopped"):                   0,
				sub("polls_total"):               1,
				sub("poll_duration_seconds"):     1,
				sub("poll_duration_seconds_sum"): 0,
			},
		},
		{
			name: "corrupt",
			call: func(m *Metrics) {
				m.OnCorrupt("s", &store.DecodeError{AggregateID: "a", Version: "1", Attribute: "commitId", Kind: store.KindMissingCommitID, Err: errBoom})
			},
			want: map[series]float64{corruptKind("s", store.KindMissingCommitID): 1},
		},
		{
			name: "unfilled gap",
			call: func(m *Metrics) { m.OnGap("s", "a", 3, 5) },
			want: map[series]float64{sub("gaps_unfilled_total"): 1},
		},
		{
			name: "ignored record",
			call: func(m *Metrics) { m.OnIgnoredRecord("s", "MODIFY") },
			want: map[series]float64{sub("stream_records_ignored_total"): 1},
		},
		{
			name: "requests",
			call: func(m *Metrics) {
				m.OnRequest("s", checkpoint.Request{Kind: checkpoint.RequestReplay, Handled: 3}, nil)
				m.OnRequest("s", checkpoint.Request{Kind: checkpoint.RequestReplay, Result: "boom"}, errBoom)
				m.OnRequest("s", checkpoint.Request{Kind: checkpoint.RequestReplay}, errBoom)
				m.OnRequest("s", checkpoint.Request{Kind: checkpoint.RequestDiscard, Handled: 2}, nil)
			},
			want: map[series]float64{
				request("s", "replay", "ok"):    1,
				request("s", "replay", "error"): 2,
				request("s", "discard", "ok"):   1,
			},
		},
		{
			name: "leases gained, released, lost and failing to renew",
			call: func(m *Metrics) {
				m.OnLeaseGained("s", "bucket-t0")
				m.OnLeaseGained("s", "bucket-t1")
				m.OnLeaseRenewFailed("s", "bucket-t1", errBoom)
				m.OnLeaseRenewFailed("s", "bucket-t1", errBoom)
				m.OnLeaseLost("s", "bucket-t1", errBoom)
				m.OnLeaseGained("s", "bucket-t2")
				m.OnLeaseLost("s", "bucket-t2", nil)
			},
			want: map[series]float64{
				held("s", "bucket-t0"):              1,
				held("s", "bucket-t1"):              0,
				held("s", "bucket-t2"):              0,
				sub("lease_gains_total"):            3,
				sub("lease_losses_total"):           1,
				sub("lease_renewal_failures_total"): 2,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t)
			tc.call(m)
			got := gather(t, reg)
			for s, w := range tc.want {
				v, ok := got[s]
				if !ok {
					t.Errorf("%v: missing", s)
				} else if math.Abs(v-w) > 1e-9 {
					t.Errorf("%v = %v, want %v", s, v, w)
				}
			}
			for s, v := range got {
				if _, ok := tc.want[s]; !ok {
					t.Errorf("%v = %v: not expected", s, v)
				}
			}
		})
	}
}

// TestToFloat64 reads single series through testutil, as a user's test of
// its own wiring would.
func TestToFloat64(t *testing.T) {
	m, _ := newMetrics(t)
	m.OnHandled("a", 2, 4, time.Millisecond, nil)
	m.OnHandled("b", 1, 1, time.Millisecond, errBoom)
	m.OnLag("a", 2*time.Second, 7)
	m.OnStopped("b", errBoom)
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"commits a", m.commitsHandled.WithLabelValues("a"), 2},
		{"commits b", m.commitsHandled.WithLabelValues("b"), 1},
		{"events a", m.eventsHandled.WithLabelValues("a"), 4},
		{"errors a", m.handlerErrors.WithLabelValues("a"), 0},
		{"errors b", m.handlerErrors.WithLabelValues("b"), 1},
		{"lag a", m.lagSeconds.WithLabelValues("a"), 2},
		{"lag commits a", m.lagCommits.WithLabelValues("a"), 7},
		{"stopped b", m.stopped.WithLabelValues("b"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestHandlerHistogramBuckets(t *testing.T) {
	m, reg := newMetrics(t, WithHandlerBuckets(0.01, 0.1, 1))
	m.OnHandled("s", 1, 1, 5*time.Millisecond, nil)
	m.OnHandled("s", 1, 1, 50*time.Millisecond, nil)
	m.OnHandled("s", 1, 1, 5*time.Second, nil)
	const want = `
# HELP eventstore_subscription_handler_duration_seconds Duration of each handler call, successful or not.
# TYPE eventstore_subscription_handler_duration_seconds histogram
eventstore_subscription_handler_duration_seconds_bucket{subscription="s",le="0.01"} 1
eventstore_subscription_handler_duration_seconds_bucket{subscription="s",le="0.1"} 2
eventstore_subscription_handler_duration_seconds_bucket{subscription="s",le="1"} 2
eventstore_subscription_handler_duration_seconds_bucket{subscription="s",le="+Inf"} 3
eventstore_subscription_handler_duration_seconds_sum{subscription="s"} 5.055
eventstore_subscription_handler_duration_seconds_count{subscription="s"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eventstore_subscription_handler_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestDefaultBuckets(t *testing.T) {
	m, reg := newMetrics(t)
	m.OnHandled("s", 1, 1, time.Millisecond, nil)
	m.OnPoll("s", 1, time.Millisecond, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{
		"eventstore_subscription_handler_duration_seconds": DefaultHandlerBuckets,
		"eventstore_subscription_poll_duration_seconds":    DefaultPollBuckets,
	}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		var got []float64
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s buckets = %v, want %v", mf.GetName(), got, w)
		}
	}
	if len(want) != 0 {
		t.Errorf("histograms not found: %v", want)
	}
}

func TestConsumedCapacity(t *testing.T) {
	capacity := func(u float64) types.Capacity { return types.Capacity{CapacityUnits: aws.Float64(u)} }
	cu := func(op, res string) series {
		return series{name: "eventstore_store_consumed_capacity_units_total", labels: fmt.Sprintf("operation=%q,resource=%q", op, res)}
	}
	cases := []struct {
		name string
		op   store.Operation
		cc   []types.ConsumedCapacity
		want map[series]float64
	}{
		{
			name: "append: table and index",
			op:   store.OpAppend,
			cc: []types.ConsumedCapacity{{
				TableName: aws.String("commits"), CapacityUnits: aws.Float64(2),
				Table:                  &types.Capacity{CapacityUnits: aws.Float64(1), WriteCapacityUnits: aws.Float64(1)},
				GlobalSecondaryIndexes: map[string]types.Capacity{"byCommitId": capacity(1)},
			}},
			want: map[series]float64{cu("Append", "commits"): 1, cu("Append", "byCommitId"): 1},
		},
		{
			name: "scan: index only, several pages",
			op:   store.OpScan,
			cc: []types.ConsumedCapacity{
				{TableName: aws.String("commits"), CapacityUnits: aws.Float64(0.5), GlobalSecondaryIndexes: map[string]types.Capacity{"byCommitId": capacity(0.5)}},
				{TableName: aws.String("commits"), CapacityUnits: aws.Float64(2), GlobalSecondaryIndexes: map[string]types.Capacity{"byCommitId": capacity(2)}},
			},
			want: map[series]float64{cu("Scan", "byCommitId"): 2.5},
		},
		{
			name: "transaction: two tables, doubled units as DynamoDB gives them",
			op:   store.OpAppendAll,
			cc: []types.ConsumedCapacity{
				{TableName: aws.String("commits"), Table: ptr(capacity(4)), GlobalSecondaryIndexes: map[string]types.Capacity{"byCommitId": capacity(4)}},
				{TableName: aws.String("other"), Table: ptr(capacity(2))},
			},
			want: map[series]float64{cu("AppendAll", "commits"): 4, cu("AppendAll", "byCommitId"): 4, cu("AppendAll", "other"): 2},
		},
		{
			name: "local secondary index",
			op:   store.OpQuery,
			cc:   []types.ConsumedCapacity{{TableName: aws.String("commits"), Table: ptr(capacity(1)), LocalSecondaryIndexes: map[string]types.Capacity{"lsi": capacity(0.5)}}},
			want: map[series]float64{cu("Query", "commits"): 1, cu("Query", "lsi"): 0.5},
		},
		{
			name: "total only goes to the table",
			op:   store.OpQuery,
			cc:   []types.ConsumedCapacity{{TableName: aws.String("commits"), CapacityUnits: aws.Float64(3)}},
			want: map[series]float64{cu("Query", "commits"): 3},
		},
		{
			name: "read and write units without a total",
			op:   store.OpQuery,
			cc:   []types.ConsumedCapacity{{TableName: aws.String("commits"), Table: &types.Capacity{ReadCapacityUnits: aws.Float64(1), WriteCapacityUnits: aws.Float64(2)}}},
			want: map[series]float64{cu("Query", "commits"): 3},
		},
		{
			name: "no table name",
			op:   store.OpQuery,
			cc:   []types.ConsumedCapacity{{CapacityUnits: aws.Float64(1)}},
			want: map[series]float64{cu("Query", "unknown"): 1},
		},
		{
			name: "nothing reported",
			op:   store.OpQuery,
			cc:   []types.ConsumedCapacity{{TableName: aws.String("commits")}, {TableName: aws.String("commits"), Table: ptr(capacity(0))}},
			want: map[series]float64{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t)
			for _, cc := range tc.cc {
				m.ConsumedCapacity(tc.op, cc)
			}
			got := gather(t, reg)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStoreConfigAcceptsConsumedCapacity(t *testing.T) {
	m, reg := newMetrics(t)
	cfg := store.Config{ConsumedCapacity: m.ConsumedCapacity}
	cfg.ConsumedCapacity(store.OpAppend, types.ConsumedCapacity{TableName: aws.String("t"), CapacityUnits: aws.Float64(1)})
	if n, err := testutil.GatherAndCount(reg, "eventstore_store_consumed_capacity_units_total"); err != nil || n != 1 {
		t.Fatalf("GatherAndCount = %d, %v; want 1 series", n, err)
	}
}

func TestRegisterTwiceIsAnError(t *testing.T) {
	m, reg := newMetrics(t)
	m2, err := New(reg)
	if err == nil {
		t.Fatal("a second New on the same registry succeeded")
	}
	if m2 != nil {
		t.Error("New returned metrics with its error")
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("error %v: errors.As finds no prometheus.AlreadyRegisteredError", err)
	}
	// The first set still works and is the only one.
	m.OnRetry("s", commit, 1, 0, errBoom)
	if n, err := testutil.GatherAndCount(reg, "eventstore_subscription_retries_total"); err != nil || n != 1 {
		t.Errorf("GatherAndCount = %d, %v; want 1", n, err)
	}
	// Another namespace goes on the same registry.
	other, err := New(reg, WithNamespace("other"))
	if err != nil {
		t.Fatalf("New with another namespace: %v", err)
	}
	other.OnRetry("s", commit, 1, 0, errBoom)
	if got := testutil.ToFloat64(other.retries.WithLabelValues("s")); got != 1 {
		t.Errorf("other retries = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "other_subscription_retries_total"); err != nil || n != 1 {
		t.Errorf("GatherAndCount(other) = %d, %v; want 1", n, err)
	}
}

// TestFailedNewLeavesRegistryAlone: when one metric cannot be registered,
// those registered before it are unregistered again.
func TestFailedNewLeavesRegistryAlone(t *testing.T) {
	const name = "eventstore_subscription_polls_total"
	cases := []struct {
		name     string
		conflict prometheus.Collector
		// retry: New succeeds once the conflict is unregistered. Not so for
		// a conflict of another shape: a registry remembers the label names
		// and help of a name for its lifetime.
		retry bool
	}{
		{"same metric", prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "Polls of the source, successful or not."}, []string{"subscription"}), true},
		{"same name, other kind", prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "x"}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(tc.conflict)
			if _, err := New(reg); err == nil {
				t.Fatal("New succeeded despite a conflicting metric")
			} else if !strings.HasPrefix(err.Error(), "promhooks: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			// Register reports whether the metrics New registered before the
			// conflict are still there: they must not be.
			probe, err := New(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range probe.collectors {
				if c == prometheus.Collector(probe.polls) {
					continue // the conflict itself
				}
				if err := reg.Register(c); err != nil {
					var are prometheus.AlreadyRegisteredError
					if errors.As(err, &are) {
						t.Errorf("left registered after the failed New: %v", err)
					}
					continue
				}
				reg.Unregister(c)
			}
			if tc.retry {
				reg.Unregister(tc.conflict)
				if _, err := New(reg); err != nil {
					t.Errorf("New after removing the conflict: %v", err)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	cases := map[string]struct {
		reg  prometheus.Registerer
		opts []Option
	}{
		"nil registerer":     {reg: nil},
		"invalid namespace":  {reg: prometheus.NewPedanticRegistry(), opts: []Option{WithNamespace("bad-namespace")}},
		"decreasing buckets": {reg: prometheus.NewPedanticRegistry(), opts: []Option{WithHandlerBuckets(1, 0.5)}},
		"repeated bucket":    {reg: prometheus.NewPedanticRegistry(), opts: []Option{WithPollBuckets(0.1, 0.1)}},
		"NaN bucket":         {reg: prometheus.NewPedanticRegistry(), opts: []Option{WithPollBuckets(math.NaN())}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := New(tc.reg, tc.opts...)
			if err == nil || m != nil {
				t.Fatalf("New = %v, %v; want an error", m, err)
			}
			if !strings.HasPrefix(err.Error(), "promhooks: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestEmptyBucketsMeanDefault(t *testing.T) {
	m, reg := newMetrics(t, WithHandlerBuckets(), WithPollBuckets())
	m.OnHandled("s", 1, 1, time.Millisecond, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "eventstore_subscription_handler_duration_seconds" {
			if n := len(mf.GetMetric()[0].GetHistogram().GetBucket()); n != len(DefaultHandlerBuckets) {
				t.Errorf("%d buckets, want %d", n, len(DefaultHandlerBuckets))
			}
		}
	}
}

func TestWithNamespace(t *testing.T) {
	for _, tc := range []struct{ ns, prefix string }{{"shop", "shop_"}, {"", ""}} {
		m, reg := newMetrics(t, WithNamespace(tc.ns))
		callEveryHook(m, "s")
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != len(docMetrics(t)) {
			t.Errorf("namespace %q: %d metrics, want %d", tc.ns, len(mfs), len(docMetrics(t)))
		}
		for _, mf := range mfs {
			rest, ok := strings.CutPrefix(mf.GetName(), tc.prefix)
			if !ok || !(strings.HasPrefix(rest, "subscription_") || strings.HasPrefix(rest, "store_")) {
				t.Errorf("namespace %q: metric %s", tc.ns, mf.GetName())
			}
		}
	}
}

func TestWithSubscriptions(t *testing.T) {
	_, reg := newMetrics(t, WithSubscriptions("a", "b"))
	got := gather(t, reg)
	for _, name := range []string{
		"commits_handled_total", "events_handled_total", "handler_duration_seconds", "handler_errors_total",
		"retries_total", "parked_commits_total", "skipped_commits_total", "late_arrivals_total",
		"gap_repairs_total", "gap_repair_commits_total", "duplicates_total", "polls_total",
		"poll_duration_seconds", "poll_errors_total", "commits_read_total", "checkpoint_writes_total",
		"checkpoint_write_errors_total", "gaps_unfilled_total", "stream_records_ignored_total", "stopped",
		"lease_gains_total", "lease_losses_total", "lease_renewal_failures_total",
		"circuit_open", "circuit_openings_total", "parked_commits", "parked_aggregates",
	} {
		for _, s := range []string{"a", "b"} {
			k := series{name: "eventstore_subscription_" + name, labels: fmt.Sprintf("subscription=%q", s)}
			if v, ok := got[k]; !ok || v != 0 {
				t.Errorf("%v = %v, %v; want 0, present", k, v, ok)
			}
			delete(got, k)
			delete(got, series{name: k.name + "_sum", labels: k.labels})
		}
	}
	for _, s := range []string{"a", "b"} {
		for _, kind := range store.CorruptKinds {
			k := corruptKind(s, kind)
			if v, ok := got[k]; !ok || v != 0 {
				t.Errorf("%v = %v, %v; want 0, present", k, v, ok)
			}
			delete(got, k)
		}
		for _, kind := range []string{"replay", "discard"} {
			for _, result := range []string{"ok", "error"} {
				k := request(s, kind, result)
				if v, ok := got[k]; !ok || v != 0 {
					t.Errorf("%v = %v, %v; want 0, present", k, v, ok)
				}
				delete(got, k)
			}
		}
	}
	if len(got) != 0 {
		t.Errorf("unexpected series: %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "eventstore_subscription_lag_seconds", "eventstore_subscription_lag_commits"); err != nil || n != 0 {
		t.Errorf("lag series before any OnLag: %d, %v; want none", n, err)
	}
}

// TestCircuitAndParkedGauges follows the circuit and the parked commits
// through the hooks: the gauges hold the last value, the openings add up.
func TestCircuitAndParkedGauges(t *testing.T) {
	m, reg := newMetrics(t)
	m.OnCircuit("s", true, time.Now())
	m.OnCircuit("s", false, time.Now())
	m.OnCircuit("s", true, time.Now())
	m.OnParkedNow("s", 2, 7)
	m.OnParkedNow("s", 1, 3)
	got := gather(t, reg)
	for name, want := range map[string]float64{"circuit_open": 1, "circuit_openings_total": 2, "parked_commits": 3, "parked_aggregates": 1} {
		if v := got[sub(name)]; v != want {
			t.Errorf("%s = %v; want %v", name, v, want)
		}
	}
	m.OnCircuit("s", false, time.Now())
	m.OnParkedNow("s", 0, 0)
	got = gather(t, reg)
	if got[sub("circuit_open")] != 0 || got[sub("parked_commits")] != 0 || got[sub("circuit_openings_total")] != 2 {
		t.Errorf("after closing and replaying: %v", got)
	}
}

func TestInvalidUTF8LabelDoesNotPanic(t *testing.T) {
	m, reg := newMetrics(t)
	callEveryHook(m, "bad\xffname")
	m.ConsumedCapacity(store.OpQuery, types.ConsumedCapacity{TableName: aws.String("t\xff"), CapacityUnits: aws.Float64(1)})
	got := gather(t, reg)
	if v := got[sub("retries_total")]; v != 0 {
		t.Fatal("series for a subscription never seen")
	}
	k := series{name: "eventstore_subscription_retries_total", labels: fmt.Sprintf("subscription=%q", "bad\ufffdname")}
	if got[k] != 1 {
		t.Errorf("%v = %v, want 1 (series: %v)", k, got[k], got)
	}
}

func TestConcurrentHooks(t *testing.T) {
	m, reg := newMetrics(t)
	const goroutines, calls = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range calls {
				callEveryHook(m, fmt.Sprintf("s%d", g%2))
			}
		})
	}
	wg.Wait()
	got := gather(t, reg)
	for _, s := range []string{"s0", "s1"} {
		k := series{name: "eventstore_subscription_retries_total", labels: fmt.Sprintf("subscription=%q", s)}
		if want := float64(goroutines / 2 * calls); got[k] != want {
			t.Errorf("%v = %v, want %v", k, got[k], want)
		}
	}
}

// TestLint runs Prometheus's metric linter (naming, units, _total suffixes)
// over every metric.
func TestLint(t *testing.T) {
	m, reg := newMetrics(t)
	callEveryHook(m, "s")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// callEveryHook calls every hook once, and ConsumedCapacity, so that every
// metric has a series.
func callEveryHook(m *Metrics, s string) {
	m.OnHandled(s, 2, 3, time.Millisecond, errBoom)
	m.OnRetry(s, commit, 1, time.Millisecond, errBoom)
	m.OnParked(s, commit, errBoom)
	m.OnSkipped(s, commit, errBoom)
	m.OnLateArrival(s, commit)
	m.OnGapRepair(s, "a", 1, 3, 2)
	m.OnDuplicate(s, commit)
	m.OnPoll(s, 4, time.Millisecond, errBoom)
	m.OnCheckpoint(s, errBoom)
	m.OnLag(s, time.Second, 5)
	m.OnStopped(s, errBoom)
	m.OnCorrupt(s, &store.DecodeError{Attribute: "events", Kind: store.KindEventsNotArray, Err: errBoom})
	m.OnGap(s, "a", 1, 2)
	m.OnIgnoredRecord(s, "REMOVE")
	m.OnRequest(s, checkpoint.Request{Kind: checkpoint.RequestReplay}, errBoom)
	m.OnLeaseGained(s, "bucket-t0")
	m.OnLeaseLost(s, "bucket-t0", errBoom)
	m.OnLeaseRenewFailed(s, "bucket-t0", errBoom)
	m.OnCircuit(s, true, time.Now())
	m.OnParkedNow(s, 1, 2)
	m.ConsumedCapacity(store.OpAppend, types.ConsumedCapacity{
		TableName:              aws.String("commits"),
		Table:                  &types.Capacity{CapacityUnits: aws.Float64(1)},
		GlobalSecondaryIndexes: map[string]types.Capacity{"byCommitId": {CapacityUnits: aws.Float64(1)}},
	})
}

// corruptKind names the corrupt-items series of a subscription and kind.
func corruptKind(sub string, kind store.CorruptKind) series {
	return series{name: "eventstore_subscription_corrupt_items_total", labels: fmt.Sprintf("kind=%q,subscription=%q", kind, sub)}
}
