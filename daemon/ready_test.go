package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"

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
