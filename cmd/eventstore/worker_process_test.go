package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// receiver is a webhook receiver that checks what the daemon sends: a valid
// signature on every request, and each aggregate's versions in order
// (a version again is a duplicate, allowed by at-least-once delivery; a
// version ahead of the next expected one is an order violation). Its
// answers can be switched to failures.
type receiver struct {
	t      testing.TB
	secret []byte

	mu   sync.Mutex
	mode string // "ok", "500", "hang", "refused"
	// latency is how long each accepted request takes, as a read
	// model's write would.
	latency  time.Duration
	next     map[string]int64
	distinct int // commits received in order for the first time
	accepted int // requests answered 2xx
	dups     int
	failed   int // requests answered with a failure
	problems []string
	hang     chan struct{} // closed to release hanging requests

	addr string
	srv  *http.Server
}

func newReceiver(t testing.TB, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret), mode: "ok", next: map[string]int64{}, hang: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		r.setMode("ok")
		r.mu.Lock()
		srv := r.srv
		r.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// setMode switches the answers. "refused" closes the listener, so that
// connections are refused; leaving it listens again on the same address.
func (r *receiver) setMode(mode string) {
	r.mu.Lock()
	old := r.mode
	r.mode = mode
	if old == "hang" && mode != "hang" {
		close(r.hang)
		r.hang = make(chan struct{})
	}
	srv := r.srv
	r.mu.Unlock()
	switch {
	case mode == "refused" && old != "refused":
		_ = srv.Close()
	case old == "refused" && mode != "refused":
		var ln net.Listener
		var err error
		for range 50 { // the port may linger for a moment
			if ln, err = net.Listen("tcp", r.addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			r.t.Errorf("listen again on %s: %v", r.addr, err)
			return
		}
		r.serve(ln)
	}
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	mode, hang := r.mode, r.hang
	r.mu.Unlock()
	switch mode {
	case "500":
		r.mu.Lock()
		r.failed++
		r.mu.Unlock()
		http.Error(w, "receiver down for maintenance", http.StatusInternalServerError)
		return
	case "hang":
		r.mu.Lock()
		r.failed++
		r.mu.Unlock()
		select {
		case <-hang:
			// Released by a change of mode: still a failure (an empty
			// answer would be a 200).
			http.Error(w, "gave up", http.StatusServiceUnavailable)
		case <-req.Context().Done():
		}
		return
	}
	r.mu.Lock()
	latency := r.latency
	r.mu.Unlock()
	time.Sleep(latency)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(r.secret, body, req.Header); err != nil {
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

func (r *receiver) counts() (distinct, accepted, dups, failed int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.distinct, r.accepted, r.dups, r.failed, append([]string(nil), r.problems...)
}

// waitFor waits until the receiver has n distinct commits.
func (r *receiver) waitFor(t testing.TB, n int, within time.Duration, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		distinct, _, _, _, problems := r.counts()
		if len(problems) > 0 {
			t.Fatalf("receiver: %s\nworker log:\n%s", strings.Join(problems, "; "), logs)
		}
		if distinct >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver has %d of %d commits after %v\nworker log:\n%s", distinct, n, within, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// daemonEnv is the environment of one test's daemon and CLI processes.
type daemonEnv struct {
	t               testing.TB
	bin             string
	env             []string
	table, cpTable  string
	cps             *dynamocheckpoint.Store
	st              *store.Store
	appendedPerAggr map[string]int64
	appended        int
}

// newDaemonEnv creates the tables; buckets, when given, is the number of
// index buckets (default 1).
func newDaemonEnv(t testing.TB, bin string, buckets ...int) *daemonEnv {
	t.Helper()
	n := 1
	if len(buckets) > 0 {
		n = buckets[0]
	}
	table, cpTable := ddbtest.TableName(t), ddbtest.TableName(t)+"-cp"
	client := ddbtest.Client(t)
	ctx := t.Context()
	stCfg := store.Config{TableName: table, IndexBuckets: n}
	if err := store.CreateTable(ctx, client, stCfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	cpCfg := dynamocheckpoint.Config{TableName: cpTable}
	if err := dynamocheckpoint.CreateTable(ctx, client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = store.DeleteTable(context.Background(), client, store.Config{TableName: table})
		_ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg)
	})
	cps, err := dynamocheckpoint.New(client, cpCfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(client, stCfg)
	if err != nil {
		t.Fatal(err)
	}
	env := append(sdkEnv(t, table), "EVENTSTORE_CHECKPOINT_TABLE="+cpTable, "EVENTSTORE_WEBHOOK_SECRET=s3cret-for-tests",
		"EVENTSTORE_BUCKETS="+strconv.Itoa(n))
	return &daemonEnv{t: t, bin: bin, env: env, table: table, cpTable: cpTable, cps: cps, st: st, appendedPerAggr: map[string]int64{}}
}

// appendCommits appends n commits spread over aggregates through the
// binary's append command.
func (d *daemonEnv) appendCommits(n, aggregates int) {
	d.t.Helper()
	var in strings.Builder
	for i := range n {
		id := fmt.Sprintf("acct-%02d", i%aggregates)
		fmt.Fprintf(&in, `{"aggregateId":%q,"version":%d,"events":[{"type":"MoneyDeposited","amount":%d}]}`+"\n", id, d.appendedPerAggr[id], i+1)
		d.appendedPerAggr[id]++
	}
	cmd := exec.CommandContext(d.t.Context(), d.bin, "append")
	cmd.Env, cmd.Stdin = d.env, strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		d.t.Fatalf("append: %v\n%s", err, out)
	}
	d.appended += n
}

// daemon is one running `eventstore worker` process.
type daemon struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	addr   string
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's, once exited is closed
}

// startWorker starts `eventstore worker` with args after the common ones,
// and waits until /healthz answers.
func (d *daemonEnv) startWorker(args ...string) *daemon {
	d.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	all := append([]string{"worker", "--listen", addr, "--log-format", "text", "--checkpoint-interval", "200ms"}, args...)
	cmd := exec.Command(d.bin, all...)
	cmd.Env = d.env
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	p := &daemon{cmd: cmd, logs: logs, addr: addr, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	d.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			d.t.Fatalf("worker exited before serving /healthz: %v\n%s", p.err, logs)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("worker's /healthz did not answer within 60 s: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and wants exit status 0 within 30 s.
func (p *daemon) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("worker after SIGTERM: %v; want exit status 0\n%s", p.err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not exit within 30 s of SIGTERM\n%s", p.logs)
	}
}

// metric returns the value of the sample name{subscription="sub"} scraped
// from /metrics.
func (p *daemon) metric(t testing.TB, name, sub string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\{[^}]*subscription="` + regexp.QuoteMeta(sub) + `"[^}]*\} (\S+)$`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := want.FindStringSubmatch(sc.Text()); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no sample %s{subscription=%q}", name, sub)
	return 0
}

// TestWorkerDaemonDeliversToWebhook runs the daemon binary against DynamoDB
// Local: commits appended through the CLI reach a webhook receiver in
// per-aggregate order with valid signatures; /metrics agrees with what was
// appended; SIGTERM exits 0 with the checkpoint written and released; a
// restart resumes without loss.
func TestWorkerDaemonDeliversToWebhook(t *testing.T) {
	t.Parallel()
	d := newDaemonEnv(t, buildBinary(t))
	recv := newReceiver(t, "s3cret-for-tests")
	args := []string{"--subscription", "hooks", "--handler", "webhook", "--webhook-url", recv.url()}

	d.appendCommits(40, 8) // a backlog before the first start
	w := d.startWorker(args...)
	d.appendCommits(40, 8) // and live commits
	recv.waitFor(t, d.appended, 60*time.Second, w.logs)

	_, accepted, _, _, _ := recv.counts()
	handled := w.metric(t, "eventstore_subscription_commits_handled_total", "hooks")
	if int(handled) != accepted || accepted < d.appended {
		t.Errorf("/metrics counts %v commits handled, the receiver accepted %d, %d were appended", handled, accepted, d.appended)
	}
	resp, err := http.Get("http://" + w.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hooks") {
		t.Errorf("/readyz: %d %q; want 200 naming the subscription", resp.StatusCode, body)
	}
	if strings.Contains(w.logs.String(), "s3cret-for-tests") {
		t.Error("the worker logged the webhook secret")
	}

	w.stop(t)
	head, ok, err := d.st.Head(t.Context())
	if err != nil || !ok {
		t.Fatalf("head: %v %v", ok, err)
	}
	cp, err := d.cps.Load(t.Context(), checkpoint.Key{Subscription: "hooks"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := subscribe.DescribeCheckpoint(cp.Position, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Owner != "" || info.After.Compare(head) < 0 || info.Pending != 0 {
		t.Errorf("checkpoint after SIGTERM: owner %q, after %v, pending %d; want released at the head %v", cp.Owner, info.After, info.Pending, head)
	}

	// Commits appended while no worker runs are delivered after a restart,
	// and nothing before the checkpoint comes again.
	d.appendCommits(30, 8)
	_, acceptedBefore, dupsBefore, _, _ := recv.counts()
	w = d.startWorker(args...)
	recv.waitFor(t, d.appended, 60*time.Second, w.logs)
	_, acceptedAfter, dupsAfter, _, problems := recv.counts()
	if len(problems) > 0 || dupsAfter != dupsBefore || acceptedAfter-acceptedBefore != 30 {
		t.Errorf("after the restart: %d accepted (want 30), %d duplicates more, problems %q", acceptedAfter-acceptedBefore, dupsAfter-dupsBefore, problems)
	}
	w.stop(t)
}

// TestWorkerDaemonWebhookOutage makes the receiver fail for a while (5xx
// answers, requests that hang, refused connections) while commits are
// appended, with the daemon's default retry settings: delivery is
// delayed, nothing is lost or parked, and order holds.
func TestWorkerDaemonWebhookOutage(t *testing.T) {
	t.Parallel()
	d := newDaemonEnv(t, buildBinary(t))
	recv := newReceiver(t, "s3cret-for-tests")
	w := d.startWorker("--subscription", "flaky", "--handler", "webhook", "--webhook-url", recv.url())

	d.appendCommits(10, 4)
	recv.waitFor(t, 10, 60*time.Second, w.logs)
	for _, mode := range []string{"500", "hang", "refused"} {
		recv.setMode(mode)
		d.appendCommits(10, 4)
		time.Sleep(1500 * time.Millisecond)
	}
	recv.setMode("ok")
	recv.waitFor(t, d.appended, 90*time.Second, w.logs)

	distinct, _, _, failed, problems := recv.counts()
	if distinct != d.appended || len(problems) > 0 {
		t.Errorf("received %d distinct commits of %d; problems %q", distinct, d.appended, problems)
	}
	if failed == 0 {
		t.Error("the receiver never answered with a failure: the outage was not exercised")
	}
	if retries := w.metric(t, "eventstore_subscription_retries_total", "flaky"); retries == 0 {
		t.Error("no retries counted during the outage")
	}
	for p, err := range d.cps.Parked(t.Context(), "flaky", "") {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("commit parked during the outage: %s v%d: %s", p.Commit.AggregateID, p.Commit.Version, p.Reason)
	}
	if n := w.metric(t, "eventstore_subscription_parked_commits", "flaky"); n != 0 {
		t.Errorf("parked_commits gauge %v after the outage; want 0", n)
	}
	if n := w.metric(t, "eventstore_subscription_circuit_openings_total", "flaky"); n == 0 {
		t.Error("the outage never opened the circuit")
	}
	if n := w.metric(t, "eventstore_subscription_circuit_open", "flaky"); n != 0 {
		t.Errorf("circuit_open %v after the outage; want 0", n)
	}
	w.stop(t)
}

// TestWorkerDaemonSecondSignal: while a clean stop waits for a handler that
// hangs, a second SIGTERM ends the process at once.
func TestWorkerDaemonSecondSignal(t *testing.T) {
	t.Parallel()
	d := newDaemonEnv(t, buildBinary(t))
	recv := newReceiver(t, "s3cret-for-tests")
	recv.setMode("hang")
	w := d.startWorker("--subscription", "slow", "--handler", "webhook", "--webhook-url", recv.url(),
		"--webhook-timeout", "5m", "--shutdown-timeout", "5m")
	d.appendCommits(1, 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, _, failed, _ := recv.counts(); failed > 0 {
			break // the handler is in its request, which hangs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit did not reach the receiver\n%s", w.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
		t.Fatalf("the worker exited on the first signal while a handler ran: %v\n%s", w.err, w.logs)
	case <-time.After(time.Second):
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
		if w.err == nil {
			t.Error("exit status 0 after a second signal cut the drain short")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the worker did not exit within 5 s of a second SIGTERM\n%s", w.logs)
	}
}
