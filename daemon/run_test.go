package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// testEnv is one test's commits and checkpoints tables.
type testEnv struct {
	t              *testing.T
	table, cpTable string
	st             *store.Store
	cps            *dynamocheckpoint.Store
	next           map[string]int64 // next version to append, per aggregate
	appended       int
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	client := ddbtest.Client(t)
	e := &testEnv{t: t, table: ddbtest.TableName(t), cpTable: ddbtest.TableName(t) + "-cp", next: map[string]int64{}}
	cfg, cpCfg := store.Config{TableName: e.table}, dynamocheckpoint.Config{TableName: e.cpTable}
	if err := store.CreateTable(t.Context(), client, cfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, cfg) })
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	var err error
	if e.st, err = store.New(client, cfg); err != nil {
		t.Fatal(err)
	}
	if e.cps, err = dynamocheckpoint.New(client, cpCfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// appendCommits appends n commits spread over aggregates.
func (e *testEnv) appendCommits(n, aggregates int) {
	e.t.Helper()
	for i := range n {
		id := fmt.Sprintf("acct-%02d", i%aggregates)
		c := store.Commit{AggregateID: id, Version: e.next[id], Events: json.RawMessage(fmt.Sprintf(`[{"type":"Deposited","n":%d}]`, e.appended))}
		if _, err := e.st.Append(e.t.Context(), c); err != nil {
			e.t.Fatal(err)
		}
		e.next[id]++
		e.appended++
	}
}

// config returns a Config on the test's tables, with the HTTP listener on
// a free loopback port and text logs.
func (e *testEnv) config(subs ...daemon.SubscriptionConfig) daemon.Config {
	return daemon.Config{
		Table:           e.table,
		CheckpointTable: e.cpTable,
		Endpoint:        ddbtest.Endpoint(e.t),
		Region:          os.Getenv("AWS_REGION"),
		Listen:          "127.0.0.1:0",
		LogFormat:       "text",
		Subscriptions:   subs,
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a daemon run in-process.
type running struct {
	addr           string
	w              *subscribe.Worker
	cancel         context.CancelFunc
	finished       chan struct{} // closed when Run returned
	err            error         // what Run returned, once finished
	stdout, stderr *syncBuffer
}

// start runs daemon.Run and waits until it has started.
func start(t *testing.T, cfg daemon.Config, opts daemon.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, finished: make(chan struct{}), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	opts.Stdout, opts.Stderr = r.stdout, r.stderr
	started := make(chan struct{})
	opts.Started = func(w *subscribe.Worker, addr net.Addr) {
		r.w = w
		if addr != nil {
			r.addr = addr.String()
		}
		close(started)
	}
	go func() {
		defer close(r.finished)
		r.err = daemon.Run(ctx, cfg, opts)
	}()
	select {
	case <-started:
	case <-r.finished:
		t.Fatalf("Run returned before starting: %v\n%s", r.err, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("Run did not start within 60 s\n%s", r.stderr)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.finished:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// stop cancels Run's context and returns what Run returns.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatalf("Run did not return within 60 s of the end of its context\n%s", r.stderr)
		return nil
	}
}

// fakeClock is the daemon's clock in tests that wait for "stuck".
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// get fetches path from the daemon's listener.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics: sample values by name and labels as written,
// e.g. `eventstore_subscription_stopped{subscription="a"}`.
func (r *running) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := r.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d\n%s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// metric returns one sample, failing the test when it is missing.
func (r *running) metric(t *testing.T, sample string) float64 {
	t.Helper()
	m := r.metrics(t)
	v, ok := m[sample]
	if !ok {
		t.Fatalf("/metrics has no sample %s", sample)
	}
	return v
}

// receiver is a webhook receiver that checks signatures and per-aggregate
// order. Its answers can be switched to failures ("500") or to requests
// that hang until switched back ("hang").
type receiver struct {
	secret []byte
	srv    *httptest.Server

	mu       sync.Mutex
	mode     string
	release  chan struct{}
	next     map[string]int64
	distinct int // commits received in order for the first time
	accepted int // requests answered 2xx
	dups     int
	failed   int
	hanging  int
	problems []string
	headers  map[string]int // X-Api-Key values seen
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{secret: []byte(secret), mode: "ok", release: make(chan struct{}), next: map[string]int64{}, headers: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(func() {
		r.setMode("ok")
		r.srv.Close()
	})
	return r
}

func (r *receiver) setMode(mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "hang" && mode != "hang" {
		close(r.release)
		r.release = make(chan struct{})
	}
	r.mode = mode
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	mode, release := r.mode, r.release
	switch mode {
	case "500":
		r.failed++
	case "hang":
		r.hanging++
	}
	r.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "receiver down for maintenance", http.StatusInternalServerError)
		return
	case "hang":
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers[req.Header.Get("X-Api-Key")]++
	if err := webhook.Verify(r.secret, body, req.Header); len(r.secret) > 0 && err != nil {
		r.problems = append(r.problems, fmt.Sprintf("signature: %v", err))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var c store.Commit
	if err := json.Unmarshal(body, &c); err != nil || c.AggregateID == "" {
		r.problems = append(r.problems, fmt.Sprintf("body %q: %v", body, err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	switch next := r.next[c.AggregateID]; {
	case c.Version == next:
		r.next[c.AggregateID]++
		r.distinct++
	case c.Version < next:
		r.dups++
	default:
		r.problems = append(r.problems, fmt.Sprintf("%s: version %d before %d", c.AggregateID, c.Version, next))
	}
	r.accepted++
	w.WriteHeader(http.StatusNoContent)
}

type receiverCounts struct {
	distinct, accepted, dups, failed, hanging int
	problems                                  []string
	headers                                   map[string]int
}

func (r *receiver) counts() receiverCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := map[string]int{}
	for k, v := range r.headers {
		h[k] = v
	}
	return receiverCounts{r.distinct, r.accepted, r.dups, r.failed, r.hanging, append([]string(nil), r.problems...), h}
}

// lineCommits decodes the stdout handler's lines and checks per-aggregate
// order: a version below the next expected is a duplicate (counted), one
// above is a gap (an error).
func lineCommits(t *testing.T, out string, next map[string]int64) (distinct, dups int) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		var c store.Commit
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("stdout line %q: %v", l, err)
		}
		switch n := next[c.AggregateID]; {
		case c.Version == n:
			next[c.AggregateID]++
			distinct++
		case c.Version < n:
			dups++
		default:
			t.Fatalf("stdout: %s version %d before %d", c.AggregateID, c.Version, n)
		}
	}
	return distinct, dups
}

// TestRunDeliversAndStopsCleanly runs a webhook subscription (index
// source) and a stdout subscription (auto source) against DynamoDB Local:
// every commit reaches both in per-aggregate order with valid signatures,
// /metrics counts what was handled, /healthz and /readyz answer, the end
// of the context returns nil with the checkpoints written and released,
// and a restart goes on without loss. Secrets, header values and the
// URL's token never reach the logs.
func TestRunDeliversAndStopsCleanly(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	const secret, apiKey, urlToken = "hook-secret-C0FFEE", "api-key-BEEF", "url-token-F00D"
	recv := newReceiver(t, secret)
	cfg := e.config(
		daemon.SubscriptionConfig{Name: "hooks", CheckpointInterval: daemon.Duration(100 * time.Millisecond), Handler: daemon.HandlerConfig{
			Type: daemon.HandlerWebhook, URL: recv.srv.URL + "/hook?token=" + urlToken,
			SecretEnv: "HOOKS_SECRET", HeaderEnv: map[string]string{"X-Api-Key": "HOOKS_API_KEY"},
		}},
		daemon.SubscriptionConfig{Name: "lines", Source: "auto", CheckpointInterval: daemon.Duration(100 * time.Millisecond),
			Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}},
	)
	cfg.StuckAfter = daemon.Duration(4 * time.Second) // the head is read every second
	env := map[string]string{"HOOKS_SECRET": secret, "HOOKS_API_KEY": apiKey}
	clock := newFakeClock()
	opts := daemon.Options{Env: func(k string) string { return env[k] }, Clock: clock.Now}

	e.appendCommits(20, 5) // a backlog
	r := start(t, cfg, opts)
	e.appendCommits(20, 5) // and live commits
	lineNext := map[string]int64{}
	ddbtest.Eventually(t, 60*time.Second, func() bool {
		d, _ := lineCommits(t, r.stdout.String(), map[string]int64{})
		return recv.counts().distinct >= e.appended && d >= e.appended
	}, "delivery of %d commits: receiver %+v\nlogs:\n%s", e.appended, recv.counts(), r.stderr)
	rc := recv.counts()
	if len(rc.problems) > 0 {
		t.Fatalf("receiver: %q", rc.problems)
	}
	if rc.headers[apiKey] != rc.accepted {
		t.Errorf("X-Api-Key on %d of %d requests", rc.headers[apiKey], rc.accepted)
	}
	if rc.accepted != e.appended || rc.dups != 0 {
		t.Errorf("the receiver accepted %d requests (%d duplicates) for %d commits", rc.accepted, rc.dups, e.appended)
	}
	lines := strings.Count(r.stdout.String(), "\n")
	lineCommits(t, r.stdout.String(), lineNext)

	// The handled counters agree with what the handlers saw.
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		m := r.metrics(t)
		return m[`eventstore_subscription_commits_handled_total{subscription="hooks"}`] == float64(e.appended) &&
			m[`eventstore_subscription_commits_handled_total{subscription="lines"}`] == float64(lines)
	}, "handled counters: %v", r.metrics(t))
	m := r.metrics(t)
	for _, sample := range []string{
		`eventstore_daemon_subscription_state{state="running",subscription="hooks"}`,
		`eventstore_daemon_subscription_state{state="running",subscription="lines"}`,
		`eventstore_daemon_subscription_ready{subscription="hooks"}`,
	} {
		if m[sample] != 1 {
			_, body := r.get(t, "/readyz")
			t.Errorf("%s = %v, want 1; /readyz:\n%s", sample, m[sample], body)
		}
	}
	head, _, err := e.st.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	headTime, _ := store.ParseCommitIDTime(head.CommitID)
	ddbtest.Eventually(t, 10*time.Second, func() bool {
		return r.metrics(t)["eventstore_daemon_head_commit_timestamp_seconds"] == float64(headTime.UnixMilli())/1000
	}, "head commit time %v: metrics %v", headTime, r.metrics(t))
	for _, prefix := range []string{"go_goroutines", "process_cpu_seconds_total", `eventstore_store_consumed_capacity_units_total{operation="Scan"`} {
		found := false
		for k := range m {
			found = found || strings.HasPrefix(k, prefix)
		}
		if !found {
			t.Errorf("/metrics has no %s", prefix)
		}
	}

	if code, body := r.get(t, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// Caught up (once the last checkpoints are saved) and idle, nothing is
	// stuck, however long it waits.
	ddbtest.Eventually(t, 20*time.Second, func() bool {
		m := r.metrics(t)
		return m[`eventstore_daemon_subscription_behind{subscription="hooks"}`] == 0 &&
			m[`eventstore_daemon_subscription_behind{subscription="lines"}`] == 0
	}, "the subscriptions catch up with the head")
	clock.Advance(time.Hour)
	code, body := r.get(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, "hooks: running, ready") || !strings.Contains(body, "lines: running, ready") {
		t.Errorf("/readyz: %d\n%s", code, body)
	}
	m = r.metrics(t)
	for _, sub := range []string{"hooks", "lines"} {
		if v := m[`eventstore_daemon_subscription_stuck{subscription="`+sub+`"}`]; v != 0 {
			t.Errorf("%s stuck = %v while caught up", sub, v)
		}
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("Run after the end of its context: %v\n%s", err, r.stderr)
	}
	if _, err := http.Get("http://" + r.addr + "/healthz"); err == nil {
		t.Error("the listener still serves after Run returned")
	}
	for _, sub := range []string{"hooks", "lines"} {
		cp, err := e.cps.Load(t.Context(), checkpoint.Key{Subscription: sub})
		if err != nil {
			t.Fatal(err)
		}
		if cp.Owner != "" || cp.Position == "" {
			t.Errorf("checkpoint of %s after the stop: owner %q, position %q; want released with a position", sub, cp.Owner, cp.Position)
		}
		if sub == "hooks" {
			info, err := subscribe.DescribeCheckpoint(cp.Position, 0)
			if err != nil {
				t.Fatal(err)
			}
			if info.After.Compare(head) < 0 || info.Pending != 0 {
				t.Errorf("checkpoint of hooks at %v (%d pending), want the head %v", info.After, info.Pending, head)
			}
		}
	}
	logs := r.stderr.String()
	for _, s := range []string{secret, apiKey, urlToken} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold %q:\n%s", s, logs)
		}
	}
	for _, s := range []string{"daemon starting", "subscription configured", "subscription=hooks", "secret=\"from $HOOKS_SECRET\"", "headers=X-Api-Key", "stopped cleanly"} {
		if !strings.Contains(logs, s) {
			t.Errorf("the logs lack %q:\n%s", s, logs)
		}
	}

	// Commits appended while no daemon runs are delivered after a restart;
	// after a clean stop nothing comes twice through the index.
	before := recv.counts()
	e.appendCommits(10, 5)
	r = start(t, cfg, opts)
	ddbtest.Eventually(t, 60*time.Second, func() bool {
		d, _ := lineCommits(t, r.stdout.String(), copyMap(lineNext))
		return recv.counts().distinct >= e.appended && d >= 10
	}, "delivery after the restart: receiver %+v\nlogs:\n%s", recv.counts(), r.stderr)
	after := recv.counts()
	if after.dups != before.dups || after.accepted-before.accepted != 10 || len(after.problems) > 0 {
		t.Errorf("after the restart: %d requests accepted (want 10), %d duplicates more, problems %q",
			after.accepted-before.accepted, after.dups-before.dups, after.problems)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("second Run: %v", err)
	}
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestRunReadyzReportsStoppedAndStuck runs three subscriptions: one whose
// receiver fails (policy stop), one whose receiver hangs, one that works.
// /readyz turns 503 naming the stopped one and the stuck one, the metrics
// agree, the stuck one recovers when its receiver does, and the daemon
// goes on until its context ends, then returns nil.
func TestRunReadyzReportsStoppedAndStuck(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	failing, hanging := newReceiver(t, ""), newReceiver(t, "")
	failing.setMode("500")
	hanging.setMode("hang")
	every := daemon.Duration(100 * time.Millisecond)
	cfg := e.config(
		daemon.SubscriptionConfig{Name: "fragile", Policy: "stop", MaxAttempts: 2, CheckpointInterval: every,
			Handler: daemon.HandlerConfig{Type: daemon.HandlerWebhook, URL: failing.srv.URL}},
		daemon.SubscriptionConfig{Name: "slow", CheckpointInterval: every,
			Handler: daemon.HandlerConfig{Type: daemon.HandlerWebhook, URL: hanging.srv.URL, Timeout: daemon.Duration(time.Minute)}},
		daemon.SubscriptionConfig{Name: "steady", CheckpointInterval: every, Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}},
	)
	cfg.StuckAfter = daemon.Duration(8 * time.Second) // the head is read every 2 s
	clock := newFakeClock()
	r := start(t, cfg, daemon.Options{Clock: clock.Now})

	ddbtest.Eventually(t, 30*time.Second, func() bool {
		code, _ := r.get(t, "/readyz")
		return code == http.StatusOK
	}, "/readyz 200 before any commit")

	e.appendCommits(3, 1)
	var body string
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		var code int
		code, body = r.get(t, "/readyz")
		m := r.metrics(t)
		_, headRead := m["eventstore_daemon_head_commit_timestamp_seconds"]
		// steady has caught up, or the clock advanced below would find it
		// stalled while it still waits for the settle watermark.
		steadyBehind, steadyKnown := m[`eventstore_daemon_subscription_behind{subscription="steady"}`]
		return code == http.StatusServiceUnavailable && hanging.counts().hanging > 0 && headRead && steadyKnown && steadyBehind == 0 &&
			strings.Contains(body, "fragile: stopped, not ready: subscribe: subscription \"fragile\" stopped at aggregate") &&
			strings.Contains(body, "slow: running, ready")
	}, "/readyz naming the stopped subscription, and slow waiting on its receiver; last body:\n%s", body)
	// slow's checkpoint stays put behind the head: stuck after
	// --stuck-after, by the daemon's clock.
	clock.Advance(7 * time.Second)
	if _, body = r.get(t, "/readyz"); !strings.Contains(body, "slow: running, ready") {
		t.Errorf("slow is not ready before --stuck-after:\n%s", body)
	}
	clock.Advance(time.Second)
	code, body := r.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "slow: running, not ready: stuck: checkpoint unchanged for 8s while commits wait (--stuck-after 8s)") ||
		!strings.Contains(body, "steady: running, ready") {
		t.Errorf("/readyz after --stuck-after: %d\n%s", code, body)
	}
	if n := strings.Count(body, "\n"); n != 3 {
		t.Errorf("/readyz has %d lines, want one per subscription:\n%s", n, body)
	}
	m := r.metrics(t)
	for sample, want := range map[string]float64{
		`eventstore_daemon_subscription_stuck{subscription="slow"}`:                    1,
		`eventstore_daemon_subscription_stuck{subscription="steady"}`:                  0,
		`eventstore_daemon_subscription_stuck{subscription="fragile"}`:                 0,
		`eventstore_subscription_stopped{subscription="fragile"}`:                      1,
		`eventstore_daemon_subscription_state{state="stopped",subscription="fragile"}`: 1,
		`eventstore_daemon_subscription_ready{subscription="slow"}`:                    0,
		`eventstore_daemon_subscription_ready{subscription="steady"}`:                  1,
	} {
		if got, ok := m[sample]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", sample, got, ok, want)
		}
	}
	if v := m[`eventstore_daemon_subscription_stalled_seconds{subscription="slow"}`]; v != 8 {
		t.Errorf("slow stalled for %v s, want 8", v)
	}

	// The receiver comes back: the stuck subscription catches up.
	hanging.setMode("ok")
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		_, body = r.get(t, "/readyz")
		return strings.Contains(body, "slow: running, ready") &&
			r.metric(t, `eventstore_daemon_subscription_stuck{subscription="slow"}`) == 0
	}, "slow recovers; /readyz:\n%s", body)
	if got := hanging.counts().distinct; got != 3 {
		t.Errorf("the hanging receiver got %d commits, want 3", got)
	}
	select {
	case <-r.finished:
		t.Fatalf("Run returned while two subscriptions run: %v", r.err)
	default:
	}
	// A subscription stopped on its own was reported; the stop asked for
	// is clean.
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after the end of its context: %v\n%s", err, r.stderr)
	}
}

// TestRunArgsEveryStoppedSubscriptionEnds runs the daemon from flags with
// one subscription that stops on a failing receiver: RunArgs returns
// status 1 without its context ending, and says why.
func TestRunArgsEveryStoppedSubscriptionEnds(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	recv := newReceiver(t, "flag-secret-ABCDEF")
	recv.setMode("500")
	e.appendCommits(1, 1)
	var stdout, stderr syncBuffer
	env := map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "flag-secret-ABCDEF", "EVENTSTORE_LOG_FORMAT": "text"}
	args := []string{"--table", e.table, "--checkpoint-table", e.cpTable, "--endpoint", ddbtest.Endpoint(t),
		"--region", os.Getenv("AWS_REGION"), "--listen", "off",
		"--subscription", "only", "--handler", "webhook", "--webhook-url", recv.srv.URL,
		"--policy", "stop", "--max-attempts", "1"}
	done := make(chan int, 1)
	go func() {
		done <- daemon.RunArgs(t.Context(), args, daemon.Options{Stdout: &stdout, Stderr: &stderr, Env: func(k string) string { return env[k] }})
	}()
	select {
	case code := <-done:
		if code != daemon.ExitFailure {
			t.Errorf("exit status %d, want %d\n%s", code, daemon.ExitFailure, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("RunArgs did not return after its only subscription stopped\n%s", stderr.String())
	}
	logs := stderr.String()
	if !strings.Contains(logs, "every subscription stopped") || !strings.Contains(logs, `subscription "only" stopped at aggregate "acct-00" version 0`) {
		t.Errorf("stderr does not say why:\n%s", logs)
	}
	if strings.Contains(logs, "flag-secret-ABCDEF") {
		t.Errorf("stderr holds the secret:\n%s", logs)
	}
	if recv.counts().failed == 0 {
		t.Error("the receiver was never called")
	}
}

// TestRunShutdownTimeout stops a daemon whose Go handler ignores its
// context: /healthz and /metrics answer while it drains, /readyz does not,
// and Run gives up after --shutdown-timeout with an error instead of
// hanging.
func TestRunShutdownTimeout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := subscribe.HandlerFunc(func(context.Context, subscribe.Commit) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	})
	cfg := e.config()
	cfg.ShutdownTimeout = daemon.Duration(3 * time.Second)
	r := start(t, cfg, daemon.Options{Handlers: map[string]subscribe.Handler{"stubborn": h}})
	e.appendCommits(1, 1)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatalf("the Go handler was never called\n%s", r.stderr)
	}
	began := time.Now()
	r.cancel()
	ddbtest.Eventually(t, 2*time.Second, func() bool {
		return r.metric(t, `eventstore_daemon_subscription_state{state="stopping",subscription="stubborn"}`) == 1
	}, "the subscription drains")
	if code, body := r.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d %q", code, body)
	}
	if code, body := r.get(t, "/readyz"); code != http.StatusServiceUnavailable || body != "stubborn: stopping, not ready\n" {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	select {
	case <-r.finished:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not give up")
	}
	if r.err == nil || !strings.Contains(r.err.Error(), "shutdown timeout") || daemon.ExitCode(r.err) != daemon.ExitFailure {
		t.Fatalf("Run = %v, want the shutdown timeout's error", r.err)
	}
	if took := time.Since(began); took < 3*time.Second || took > 10*time.Second {
		t.Errorf("Run gave up after %v, with a 3 s shutdown timeout", took)
	}
}

// TestRunTableMissing fails at start, naming the table and how to create
// it.
func TestRunTableMissing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, c := range []struct {
		name string
		set  func(*daemon.Config)
		want string
	}{
		{"commits", func(c *daemon.Config) { c.Table = "no-such-table" }, `commits table "no-such-table" (--table) not found`},
		{"checkpoints", func(c *daemon.Config) { c.CheckpointTable = "no-such-table" }, `checkpoints table "no-such-table" (--checkpoint-table) not found`},
	} {
		cfg := e.config(daemon.SubscriptionConfig{Name: "s", Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}})
		c.set(&cfg)
		var stderr syncBuffer
		err := daemon.Run(t.Context(), cfg, daemon.Options{Stderr: &stderr})
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, daemon.ErrInvalidConfig) {
			t.Errorf("%s: Run = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
