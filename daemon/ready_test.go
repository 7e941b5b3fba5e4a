package daemon

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamodb-event-store/eventstore/subscribe"
)

func TestDecideReady(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	bounds := readyBounds{failAfter: DefaultFailAfter, stuckAfter: time.Minute}
	net := errors.New("dial tcp: connection refused")
	badKey := &smithy.GenericAPIError{Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."}
	noCreds := &v4.SigningError{Err: errors.New("failed to retrieve credentials: no EC2 IMDS role found")}
	running := subscribe.Health{Subscription: "s", State: subscribe.StateRunning}
	waiting := subscribe.Health{Subscription: "s", State: subscribe.StateWaiting}
	with := func(h subscribe.Health, f func(*subscribe.Health)) subscribe.Health {
		f(&h)
		return h
	}
	for _, c := range []struct {
		name    string
		h       subscribe.Health
		stalled time.Duration
		ready   bool
		why     string // a part of why, when not ready
	}{
		{name: "running", h: running, ready: true},
		{name: "reads failing for less than the bound", h: with(running, func(h *subscribe.Health) { h.ReadErr, h.ReadErrSince = net, ago(9*time.Second) }), ready: true},
		{name: "reads failing for the bound", h: with(running, func(h *subscribe.Health) { h.ReadErr, h.ReadErrSince = net, ago(10*time.Second) }), why: "reading commits failing for 10s (--fail-after 10s): dial tcp"},
		{name: "saves failing", h: with(running, func(h *subscribe.Health) { h.SaveErr, h.SaveErrSince = net, ago(11*time.Second) }), why: "saving the checkpoint failing for 11s"},
		{name: "renewals failing", h: with(running, func(h *subscribe.Health) { h.RenewErr, h.RenewErrSince = net, ago(12*time.Second) }), why: "renewing the lease failing for 12s"},
		{name: "renewals failing for less than the bound", h: with(running, func(h *subscribe.Health) { h.RenewErr, h.RenewErrSince = net, ago(5*time.Second) }), ready: true},
		{name: "unknown credentials, at once", h: with(running, func(h *subscribe.Health) { h.ReadErr, h.ReadErrSince = badKey, now }), why: "cannot authenticate to AWS (credentials or permissions): api error UnrecognizedClientException"},
		{name: "no credentials, at once", h: with(running, func(h *subscribe.Health) { h.RenewErr, h.RenewErrSince = noCreds, now }), why: "cannot authenticate"},
		{name: "no credentials while waiting", h: with(waiting, func(h *subscribe.Health) { h.Err, h.ListErrSince = noCreds, now }), why: "cannot authenticate"},
		{name: "a standby", h: waiting, ready: true},
		{name: "units lost through failures", h: with(waiting, func(h *subscribe.Health) {
			h.LostErr, h.LostAt = subscribe.ErrLeaseExpired, ago(3*time.Second)
		}), why: "lost its units through failures 3s ago"},
		{name: "listing the leases failing for less than the bound", h: with(waiting, func(h *subscribe.Health) { h.Err, h.ListErrSince = net, ago(5*time.Second) }), ready: true},
		{name: "listing the leases failing", h: with(waiting, func(h *subscribe.Health) { h.Err, h.ListErrSince = net, ago(15*time.Second) }), why: "listing the leases failing for 15s"},
		{name: "stopped", h: subscribe.Health{Subscription: "s", State: subscribe.StateStopped, Err: errors.New("boom")}, why: "boom"},
		{name: "starting", h: subscribe.Health{Subscription: "s", State: subscribe.StateStarting}},
		{name: "circuit open", h: with(running, func(h *subscribe.Health) { h.CircuitOpenSince = ago(7 * time.Second) }), why: "the handler's circuit has been open for 7s"},
		{name: "circuit open, standby", h: with(waiting, func(h *subscribe.Health) { h.CircuitOpenSince = ago(7 * time.Second) }), ready: true},
		{name: "stalled less than stuck", h: running, stalled: 59 * time.Second, ready: true},
		{name: "stuck", h: running, stalled: time.Minute, why: "stuck: checkpoint unchanged for 1m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, why := decideReady(c.h, c.stalled, now, bounds)
			if ok != c.ready || !strings.Contains(why, c.why) || (ok && why != "") {
				t.Errorf("decideReady = %v, %q; want %v, %q", ok, why, c.ready, c.why)
			}
		})
	}
}

// TestMonitorFailureMetrics: the metrics of runs of failures, refused
// credentials and units lost through failures follow the worker's health
// and the clock.
func TestMonitorFailureMetrics(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	badKey := &smithy.GenericAPIError{Code: "UnrecognizedClientException"}
	w := &fakeWorld{now: t0, health: []subscribe.Health{
		{Subscription: "reads", State: subscribe.StateRunning, ReadErr: errors.New("refused"), ReadErrSince: t0},
		{Subscription: "auth", State: subscribe.StateWaiting, Err: badKey, ListErrSince: t0},
		{Subscription: "lost", State: subscribe.StateWaiting, LostErr: subscribe.ErrLeaseExpired, LostAt: t0},
		{Subscription: "fine", State: subscribe.StateRunning},
	}}
	m := newMonitor(w, w, w.clock, time.Minute, slog.New(slog.DiscardHandler))
	w.advance(42 * time.Second)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"eventstore_daemon_subscription_failing_seconds", map[string]string{"subscription": "reads", "call": "read"}, 42},
		{"eventstore_daemon_subscription_failing_seconds", map[string]string{"subscription": "reads", "call": "save"}, 0},
		{"eventstore_daemon_subscription_failing_seconds", map[string]string{"subscription": "auth", "call": "list"}, 42},
		{"eventstore_daemon_subscription_auth_failed", map[string]string{"subscription": "auth"}, 1},
		{"eventstore_daemon_subscription_auth_failed", map[string]string{"subscription": "reads"}, 0},
		{"eventstore_daemon_subscription_units_lost", map[string]string{"subscription": "lost"}, 1},
		{"eventstore_daemon_subscription_units_lost", map[string]string{"subscription": "fine"}, 0},
		{"eventstore_daemon_subscription_ready", map[string]string{"subscription": "reads"}, 0},
		{"eventstore_daemon_subscription_ready", map[string]string{"subscription": "fine"}, 1},
	} {
		if got, ok := gathered(t, reg, c.metric, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.metric, c.labels, got, ok, c.want)
		}
	}
}

// gathered returns the value of the series of metric with labels.
func gathered(t *testing.T, reg *prometheus.Registry, metric string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return s.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// lockedWorld is a worker whose health never comes: its state is locked.
type lockedWorld struct{ release chan struct{} }

func (l *lockedWorld) Health() []subscribe.Health {
	<-l.release
	return nil
}

// TestLiveness: /healthz's answer is live while the probe loop moves and
// the worker tells its health; a loop that has not moved within its bound,
// or a worker whose state is locked, is not live.
func TestLiveness(t *testing.T) {
	w := &fakeWorld{now: time.Now()}
	m := newMonitor(w, w, w.clock, time.Minute, slog.New(slog.DiscardHandler))
	if ok, why := m.liveness(t.Context()); !ok {
		t.Errorf("a new monitor is not live: %s", why)
	}
	m.probe(t.Context())
	if ok, why := m.liveness(t.Context()); !ok {
		t.Errorf("after a probe: not live: %s", why)
	}
	// The loop last moved longer ago than two probe intervals and a call.
	m.tick.Store(time.Now().Add(-m.liveBound() - time.Second).UnixNano())
	if ok, why := m.liveness(t.Context()); ok || !strings.Contains(why, "no progress") {
		t.Errorf("a loop stuck past its bound: live %v, %q", ok, why)
	}
	m.ticked()
	if ok, _ := m.liveness(t.Context()); !ok {
		t.Error("a loop that moved again is not live")
	}

	locked := &lockedWorld{release: make(chan struct{})}
	defer close(locked.release)
	m = newMonitor(locked, w, w.clock, time.Minute, slog.New(slog.DiscardHandler))
	if ok, why := m.liveness(t.Context()); ok || !strings.Contains(why, "locked") {
		t.Errorf("a worker that does not tell its health: live %v, %q", ok, why)
	}
}
