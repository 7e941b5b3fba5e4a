package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/internal/faultproxy"
	"github.com/dynamodb-event-store/eventstore/store"
)

// The fault tests run the daemon, with its default settings, through a
// fault proxy to DynamoDB Local while commits keep being appended
// directly, and check what an operator sees: /readyz turns 503 within the
// bound and back to 200 within 5 s of the fault's end, the first warning
// comes within the attempt timeout, nothing is lost and every aggregate's
// order is kept. FAULT_SECONDS sets how long each fault lasts (default
// 20; e.g. FAULT_SECONDS=100 for the long variant). FAULT_REPORT, when
// set, names a file that receives one line of figures per fault (the
// README's table).

// faultLength is how long each fault lasts.
func faultLength(t *testing.T) time.Duration {
	if s := os.Getenv("FAULT_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("FAULT_SECONDS=%q: want a positive number of seconds", s)
		}
		return time.Duration(n) * time.Second
	}
	return 20 * time.Second
}

// The bounds the tests hold the defaults to: /readyz says 503 at most
// unreadyWithin after a fault begins (--fail-after plus the time for the
// first failing call to report, see docs/health.md), and 200 again at
// most readyAgainWithin after it ends; the first warning comes within the
// attempt timeout (plus scheduling slack) of the first call the fault
// catches, which an idle daemon makes within its idle poll interval.
const (
	unreadyWithin    = 15 * time.Second
	readyAgainWithin = 5 * time.Second
	warnWithin       = daemon.DefaultAWSAttemptTimeout + time.Second
	idlePoll         = 2 * time.Second // subscribe.IndexOptions.PollMax
)

// writer appends a commit every interval, spread over aggregates, directly
// to DynamoDB Local (not through the proxy), until stopped.
type writer struct {
	mu       sync.Mutex
	appended int
	err      error
	stop     chan struct{}
	done     chan struct{}
}

func startWriter(e *testEnv, aggregates int, every time.Duration) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	next := map[string]int64{}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			id := fmt.Sprintf("acct-%02d", i%aggregates)
			c := store.Commit{AggregateID: id, Version: next[id], Events: json.RawMessage(fmt.Sprintf(`[{"n":%d}]`, i))}
			if _, err := e.st.Append(context.Background(), c); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			next[id]++
			w.mu.Lock()
			w.appended++
			w.mu.Unlock()
		}
	}()
	return w
}

// end stops the writer and returns how many commits it appended.
func (w *writer) end(t *testing.T) int {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("appending: %v", w.err)
	}
	return w.appended
}

// readyz returns /readyz's status and body, or 0 when it does not answer.
func (r *running) readyz() (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + r.addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// waitReadyz polls /readyz every 100 ms until it answers want, and returns
// when it did and its body; it fails the test after limit.
func (r *running) waitReadyz(t *testing.T, want int, limit time.Duration) (time.Time, string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var code int
	var body string
	for time.Now().Before(deadline) {
		at := time.Now()
		if code, body = r.readyz(); code == want {
			return at, body
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz did not answer %d within %v; last %d:\n%s\nlogs:\n%s", want, limit, code, body, tail(r.stderr.String(), 40))
	return time.Time{}, ""
}

// waitRunning waits until /readyz says every subscription runs here and
// is ready.
func (r *running) waitRunning(t *testing.T) {
	t.Helper()
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		code, body := r.readyz()
		return code == http.StatusOK && strings.Contains(body, "running, ready") && !strings.Contains(body, "waiting")
	}, "the daemon does not run its subscriptions")
}

// holdReadyz polls /readyz every 200 ms for d and fails the test if it
// ever answers other than want.
func (r *running) holdReadyz(t *testing.T, want int, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if code, body := r.readyz(); code != want {
			t.Fatalf("/readyz answered %d, want %d throughout:\n%s", code, want, body)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var logLine = regexp.MustCompile(`^time=(\S+) level=(\S+) `)

// firstWarn returns the time of the first log line at WARN or above
// written at or after from.
func firstWarn(t *testing.T, logs string, from time.Time) (time.Time, string, bool) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		m := logLine.FindStringSubmatch(l)
		if m == nil || (m[2] != "WARN" && m[2] != "ERROR") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("log line time %q: %v", m[1], err)
		}
		if !at.Before(from.Truncate(time.Millisecond)) {
			return at, l, true
		}
	}
	return time.Time{}, "", false
}

// newProxy returns a fault proxy to DynamoDB Local.
func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	u, err := url.Parse(ddbtest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// report appends a line of figures to $FAULT_REPORT, if set.
func report(t *testing.T, format string, args ...any) {
	t.Logf(format, args...)
	name := os.Getenv("FAULT_REPORT")
	if name == "" {
		return
	}
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}

// TestFaults: for each network fault between the daemon and DynamoDB, with
// the daemon's default settings.
func TestFaults(t *testing.T) {
	length := faultLength(t)
	for _, c := range []struct {
		name    string
		mode    faultproxy.Mode
		latency time.Duration
		// idle: no commit is written from before the fault to its end;
		// the daemon has caught up and polls at its idle pace.
		idle bool
	}{
		{name: "blackhole", mode: faultproxy.Blackhole},
		{name: "blackhole while idle", mode: faultproxy.Blackhole, idle: true},
		{name: "refused", mode: faultproxy.Refuse},
		{name: "reset", mode: faultproxy.Reset},
		// Beyond the attempt timeout: every attempt times out.
		{name: "latency", mode: faultproxy.Latency, latency: daemon.DefaultAWSAttemptTimeout + time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t)
			proxy := newProxy(t)
			proxy.SetLatency(c.latency)
			cfg := e.config(daemon.SubscriptionConfig{Name: "s", Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}})
			cfg.Endpoint = proxy.URL()
			cfg.LogLevel = os.Getenv("FAULT_LOG_LEVEL")
			r := start(t, cfg, daemon.Options{})
			var w *writer
			if c.idle {
				e.appendCommits(20, 5)
			} else {
				w = startWriter(e, 5, 100*time.Millisecond)
			}
			r.waitRunning(t)
			ddbtest.Eventually(t, 30*time.Second, func() bool { return strings.Count(r.stdout.String(), "\n") >= 10 }, "no commit delivered before the fault")
			if c.idle {
				ddbtest.Eventually(t, 30*time.Second, func() bool { return strings.Count(r.stdout.String(), "\n") >= 20 }, "not every commit delivered before the fault")
				// Idle long enough for the polls to slow to their idle pace;
				// it stays ready meanwhile.
				r.holdReadyz(t, http.StatusOK, 5*time.Second)
			}

			began := time.Now()
			if err := proxy.Set(c.mode); err != nil {
				t.Fatal(err)
			}
			unready, why := r.waitReadyz(t, http.StatusServiceUnavailable, unreadyWithin)
			lag := r.metric(t, `eventstore_subscription_lag_seconds{subscription="s"}`)
			if rest := length - time.Since(began); rest > 0 {
				r.holdReadyz(t, http.StatusServiceUnavailable, rest)
			}
			ended := time.Now()
			if err := proxy.Set(faultproxy.Pass); err != nil {
				t.Fatal(err)
			}
			ready, _ := r.waitReadyz(t, http.StatusOK, readyAgainWithin)
			warnAt, warn, ok := firstWarn(t, r.stderr.String(), began)
			if !ok {
				t.Fatalf("no warning logged during the fault:\n%s", tail(r.stderr.String(), 40))
			}
			within := warnWithin
			if c.idle {
				within += idlePoll
			}
			if d := warnAt.Sub(began); d > within {
				t.Errorf("first warning %v after the fault began, want within %v: %s", d, within, warn)
			}
			if !strings.Contains(why, "failing for") && !strings.Contains(why, "lost its units") {
				t.Errorf("/readyz does not say why:\n%s", why)
			}
			// The lag keeps growing while nothing is read: at the 503, reads
			// have failed for --fail-after.
			if lag < (daemon.DefaultFailAfter / 2).Seconds() {
				t.Errorf("lag %.1f s at the 503, want it grown while nothing is read", lag)
			}

			var appended int
			if c.idle {
				e.appendCommits(20, 5)
				appended = e.appended
			} else {
				appended = w.end(t)
			}
			next := map[string]int64{}
			ddbtest.Eventually(t, 60*time.Second, func() bool {
				d, _ := lineCommits(t, r.stdout.String(), map[string]int64{})
				return d >= appended
			}, "not every commit delivered after the fault")
			distinct, dups := lineCommits(t, r.stdout.String(), next)
			if distinct != appended {
				t.Errorf("%d distinct commits delivered, %d appended", distinct, appended)
			}
			report(t, "| %s | %v | %.1f s | %.1f s | %.1f s | %d | %d | 0 |", c.name, length,
				unready.Sub(began).Seconds(), ready.Sub(ended).Seconds(), warnAt.Sub(began).Seconds(), appended, dups)
			if err := r.stop(t); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// TestReadyzFaults: refused credentials, a deleted checkpoints table and a
// deleted commits table turn /readyz 503, naming the cause; a deliberate
// standby stays ready.
func TestReadyzFaults(t *testing.T) {
	stdout := daemon.SubscriptionConfig{Name: "s", Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}}

	t.Run("credentials refused", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t)
		proxy := newProxy(t)
		cfg := e.config(stdout)
		cfg.Endpoint = proxy.URL()
		r := start(t, cfg, daemon.Options{})
		r.waitRunning(t)
		began := time.Now()
		if err := proxy.Set(faultproxy.AuthFail); err != nil {
			t.Fatal(err)
		}
		at, why := r.waitReadyz(t, http.StatusServiceUnavailable, unreadyWithin)
		if !strings.Contains(why, "cannot authenticate") || !strings.Contains(why, "UnrecognizedClientException") {
			t.Errorf("/readyz does not name authentication:\n%s", why)
		}
		report(t, "| credentials refused | – | %.1f s | | | | | |", at.Sub(began).Seconds())
		if err := proxy.Set(faultproxy.Pass); err != nil {
			t.Fatal(err)
		}
		r.waitReadyz(t, http.StatusOK, readyAgainWithin)
	})

	t.Run("no credentials", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t)
		noCreds := aws.Config{Region: os.Getenv("AWS_REGION"), Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no credentials in the environment, the shared files or the instance's role")
		})}
		r := start(t, e.config(stdout), daemon.Options{AWSConfig: &noCreds})
		_, why := r.waitReadyz(t, http.StatusServiceUnavailable, unreadyWithin)
		if !strings.Contains(why, "cannot authenticate") {
			t.Errorf("/readyz does not name authentication:\n%s", why)
		}
		r.holdReadyz(t, http.StatusServiceUnavailable, 2*time.Second)
	})

	for _, c := range []struct {
		name, why string
		drop      func(e *testEnv) error
	}{
		{"checkpoints table deleted", "failing for", func(e *testEnv) error {
			return dynamocheckpoint.DeleteTable(context.Background(), ddbtest.Client(t), dynamocheckpoint.Config{TableName: e.cpTable})
		}},
		{"commits table deleted", "reading commits failing for", func(e *testEnv) error {
			return store.DeleteTable(context.Background(), ddbtest.Client(t), store.Config{TableName: e.table})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t)
			r := start(t, e.config(stdout), daemon.Options{})
			e.appendCommits(20, 4)
			r.waitRunning(t)
			began := time.Now()
			if err := c.drop(e); err != nil {
				t.Fatal(err)
			}
			at, why := r.waitReadyz(t, http.StatusServiceUnavailable, unreadyWithin)
			if !strings.Contains(why, c.why) {
				t.Errorf("/readyz does not say %q:\n%s", c.why, why)
			}
			report(t, "| %s | – | %.1f s | | | | | |", c.name, at.Sub(began).Seconds())
			// It stays so: a lease lost meanwhile is no standby.
			r.holdReadyz(t, http.StatusServiceUnavailable, 5*time.Second)
		})
	}

	t.Run("standby", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t)
		cfg := e.config(stdout)
		a := start(t, cfg, daemon.Options{})
		a.waitReadyz(t, http.StatusOK, 30*time.Second)
		b := start(t, cfg, daemon.Options{})
		b.waitReadyz(t, http.StatusOK, 30*time.Second)
		e.appendCommits(10, 2)
		var bodies [2]string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, bodies[0] = a.readyz()
			_, bodies[1] = b.readyz()
			if strings.Contains(bodies[0], "running, ready") && strings.Contains(bodies[1], "waiting, ready") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not one daemon running and the other a standby:\n%s%s", bodies[0], bodies[1])
			}
		}
		// One holds the unit, the other waits, with a healthy connection:
		// both ready, for longer than a lease and the failure bound.
		for end := time.Now().Add(daemon.DefaultLeaseDuration); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			for _, r := range []*running{a, b} {
				if code, body := r.readyz(); code != http.StatusOK {
					t.Fatalf("/readyz %d:\n%s", code, body)
				}
			}
		}
	})
}

// TestReadyzCircuitOpen: a webhook receiver that answers 500 for every
// commit opens the subscription's circuit, and /readyz says so, with the
// default retry settings; once the receiver is back, a probe closes the
// circuit, /readyz turns 200, and every commit arrives in order.
func TestReadyzCircuitOpen(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	recv := newReceiver(t, "")
	r := start(t, e.config(daemon.SubscriptionConfig{Name: "hooks", Handler: daemon.HandlerConfig{Type: daemon.HandlerWebhook, URL: recv.srv.URL}}), daemon.Options{})
	r.waitRunning(t)
	recv.setMode("500")
	e.appendCommits(20, 5)
	_, why := r.waitReadyz(t, http.StatusServiceUnavailable, 30*time.Second)
	if !strings.Contains(why, "circuit has been open") {
		t.Errorf("/readyz does not name the open circuit:\n%s", why)
	}
	recv.setMode("ok")
	// A probe comes within the longest backoff (10 s by default).
	r.waitReadyz(t, http.StatusOK, daemon.DefaultBackoffMax+5*time.Second)
	ddbtest.Eventually(t, 30*time.Second, func() bool { return recv.counts().distinct == e.appended }, "not every commit delivered once the receiver is back")
	if c := recv.counts(); len(c.problems) > 0 {
		t.Errorf("receiver: %v", c.problems)
	}
}
