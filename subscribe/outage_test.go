package subscribe_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// outageReceiver is a webhook receiver on a fixed loopback port that can
// be stopped (connections refused) and started again on the same port,
// and answer a status of its choice per aggregate. It checks each
// aggregate's versions: a version again is a duplicate, one ahead of the
// next expected breaks the order.
type outageReceiver struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	status   map[string]int // aggregate → status answered instead of 204
	next     map[string]int64
	distinct int
	problems []string
}

func newOutageReceiver(t *testing.T) *outageReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &outageReceiver{t: t, addr: ln.Addr().String(), status: map[string]int{}, next: map[string]int64{}}
	r.serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *outageReceiver) url() string { return "http://" + r.addr + "/hook" }

func (r *outageReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection: the receiver is down.
func (r *outageReceiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// start listens again on the same port.
func (r *outageReceiver) start() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *outageReceiver) setStatus(aggregate string, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if status == 0 {
		delete(r.status, aggregate)
	} else {
		r.status[aggregate] = status
	}
}

func (r *outageReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	var c store.Commit
	if err := json.Unmarshal(body, &c); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.status[c.AggregateID]; st != 0 {
		if st == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "not now", st)
		return
	}
	switch next := r.next[c.AggregateID]; {
	case c.Version == next:
		r.next[c.AggregateID]++
		r.distinct++
	case c.Version > next:
		r.problems = append(r.problems, fmt.Sprintf("%s: version %d before %d", c.AggregateID, c.Version, next))
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *outageReceiver) received() (distinct int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.distinct, append([]string(nil), r.problems...)
}

// circuitWatch records the circuit's openings and closings.
type circuitWatch struct {
	mu     sync.Mutex
	events []string
	parked int
}

func (c *circuitWatch) OnCircuit(_ string, open bool, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, strconv.FormatBool(open))
}

func (c *circuitWatch) OnParked(string, subscribe.Commit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parked++
}

// shiftClock is a Config.Clock that a test moves forward.
type shiftClock struct{ skew atomic.Int64 }

func (c *shiftClock) now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *shiftClock) advance(d time.Duration) { c.skew.Add(int64(d)) }

// outageRun is one worker delivering through the real webhook handler to
// an outageReceiver, on a commits table and a checkpoints table of
// DynamoDB Local, while a writer appends to ten aggregates.
type outageRun struct {
	t     *testing.T
	st    *store.Store
	cps   *dynamocheckpoint.Store
	recv  *outageReceiver
	clock *shiftClock
	watch *circuitWatch
	w     *subscribe.Worker
	calls atomic.Int64 // calls of the webhook handler
	// callsOpen counts the calls made while the circuit is open.
	callsOpen atomic.Int64

	appendMu sync.Mutex
	appended int
	next     map[string]int64
}

func startOutageRun(t *testing.T, retry subscribe.RetryPolicy) *outageRun {
	t.Helper()
	client := ddbtest.Client(t)
	table := ddbtest.TableName(t)
	stCfg := store.Config{TableName: table}
	if err := store.CreateTable(t.Context(), client, stCfg, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, stCfg) })
	cpCfg := dynamocheckpoint.Config{TableName: table + "-cp"}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	o := &outageRun{t: t, recv: newOutageReceiver(t), clock: &shiftClock{}, watch: &circuitWatch{}, next: map[string]int64{}}
	var err error
	if o.st, err = store.New(client, stCfg); err != nil {
		t.Fatal(err)
	}
	if o.cps, err = dynamocheckpoint.New(client, cpCfg); err != nil {
		t.Fatal(err)
	}
	hook, err := webhook.New(webhook.Config{URL: o.recv.url()})
	if err != nil {
		t.Fatal(err)
	}
	if o.w, err = subscribe.NewWorker(subscribe.Config{Reader: o.st, Checkpoints: o.cps, Clock: o.clock.now, Hooks: []any{o.watch}}); err != nil {
		t.Fatal(err)
	}
	count := func(next subscribe.Handler) subscribe.Handler {
		return subscribe.HandlerFunc(func(ctx context.Context, c subscribe.Commit) error {
			o.calls.Add(1)
			if !o.w.Health()[0].CircuitOpenSince.IsZero() {
				o.callsOpen.Add(1)
			}
			return next.Handle(ctx, c)
		})
	}
	err = o.w.Register(subscribe.Subscription{Name: "hook", Handler: hook, Middleware: []subscribe.Middleware{count}, Retry: retry,
		Index: subscribe.IndexOptions{Settle: 150 * time.Millisecond, PollMin: 20 * time.Millisecond, PollMax: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return o
}

// write appends commits to ten aggregates at about 20 a second until ctx
// ends. An append under way when it ends is finished, so that every commit
// in the table is counted.
func (o *outageRun) write(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("acct-%d", i%10)
		o.appendMu.Lock()
		v := o.next[id]
		o.appendMu.Unlock()
		if _, err := o.st.Append(context.WithoutCancel(ctx), store.Commit{AggregateID: id, Version: v, Events: json.RawMessage(`[{"type":"Deposited"}]`)}); err != nil {
			o.t.Errorf("append: %v", err)
			return
		}
		o.appendMu.Lock()
		o.next[id]++
		o.appended++
		o.appendMu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// outage appends while the receiver is down for d, with during called
// halfway through, and waits until every commit appended has been
// received. It returns how long the circuit was open, and the calls of
// the handler meanwhile.
func (o *outageRun) outage(d time.Duration, during func()) {
	t := o.t
	wctx, stopWriting := context.WithCancel(context.Background())
	written := make(chan struct{})
	go func() {
		defer close(written)
		o.write(wctx)
	}()
	ddbtest.Eventually(t, 30*time.Second, func() bool { n, _ := o.recv.received(); return n >= 20 }, "nothing delivered before the outage")
	o.recv.stop()
	time.Sleep(d / 2)
	if during != nil {
		during()
	}
	time.Sleep(d - d/2)
	o.recv.start()
	time.Sleep(time.Second)
	stopWriting()
	<-written
	o.appendMu.Lock()
	appended := o.appended
	o.appendMu.Unlock()
	ddbtest.Eventually(t, 60*time.Second, func() bool { n, _ := o.recv.received(); return n >= appended },
		"the receiver did not get every commit after the outage")
	distinct, problems := o.recv.received()
	if len(problems) > 0 || distinct != appended {
		t.Errorf("received %d distinct commits of %d appended; order problems %q", distinct, appended, problems)
	}
}

func (o *outageRun) parked() []checkpoint.Parked {
	var out []checkpoint.Parked
	for p, err := range o.cps.Parked(context.Background(), "hook", "") {
		if err != nil {
			o.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// checkNothingParked checks that the outage parked nothing, that the
// circuit opened and closed again, and that while it was open the handler
// was called at most once per backoff (plus the calls already under way).
func (o *outageRun) checkNothingParked(outage time.Duration, p subscribe.RetryPolicy) {
	t := o.t
	if ps := o.parked(); len(ps) != 0 {
		t.Errorf("%d commits parked by a receiver outage of %v; want none (first: %s v%d: %s)", len(ps), outage, ps[0].Commit.AggregateID, ps[0].Commit.Version, ps[0].Reason)
	}
	o.watch.mu.Lock()
	events := strings.Join(o.watch.events, " ")
	parked := o.watch.parked
	o.watch.mu.Unlock()
	if parked != 0 {
		t.Errorf("HookParked called %d times", parked)
	}
	if !strings.HasPrefix(events, "true") || !strings.HasSuffix(events, "false") {
		t.Errorf("circuit events %q; want it opened by the outage and closed after", events)
	}
	if h := o.w.Health()[0]; !h.CircuitOpenSince.IsZero() || h.Parked != 0 || h.ParkedCommits != 0 {
		t.Errorf("Health after the outage: %+v", h)
	}
	// Probes wait at least half the backoff, which doubles from
	// InitialBackoff to MaxBackoff; 8 more calls were under way.
	ramp := 1
	for b := p.InitialBackoff; b < p.MaxBackoff; b *= 2 {
		ramp++
	}
	bound := int64(outage/(p.MaxBackoff/2)) + int64(ramp) + 8 + 2
	if n := o.callsOpen.Load(); n > bound {
		t.Errorf("%d handler calls with the circuit open during an outage of %v; want at most %d", n, outage, bound)
	}
	o.appendMu.Lock()
	appended := o.appended
	o.appendMu.Unlock()
	t.Logf("outage %v: %d commits appended to 10 aggregates, all received in order; %d handler calls in all, %d with the circuit open (bound %d); %d parked",
		outage, appended, o.calls.Load(), o.callsOpen.Load(), bound, len(o.parked()))
}

// TestReceiverOutageOf30sParksNothing stops the webhook's receiver for
// 30 s while commits are appended, with the default RetryPolicy: nothing
// is parked or lost, each aggregate's order holds, and the circuit opens,
// keeps the calls few, and closes once the receiver is back.
func TestReceiverOutageOf30sParksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage")
	}
	t.Parallel()
	o := startOutageRun(t, subscribe.RetryPolicy{})
	o.outage(30*time.Second, nil)
	o.checkNothingParked(30*time.Second, subscribe.RetryPolicy{InitialBackoff: subscribe.DefaultInitialBackoff, MaxBackoff: subscribe.DefaultMaxBackoff})
}

// TestReceiverOutageOfMinutesParksNothing: a receiver outage of several
// minutes, with the default RetryPolicy but for a backoff capped at
// 250 ms: the worker's clock jumps 10 minutes while the receiver is down,
// so that by the clock the commits are retried over 10 minutes (twice the
// old MaxElapsed, and many more attempts than the old MaxAttempts), and
// nothing is parked. EVENTSTORE_OUTAGE=5m runs a real outage of that
// length with the default RetryPolicy instead.
func TestReceiverOutageOfMinutesParksNothing(t *testing.T) {
	t.Parallel()
	p := subscribe.RetryPolicy{MaxBackoff: 250 * time.Millisecond}
	outage, jump := 4*time.Second, 10*time.Minute
	if v := os.Getenv("EVENTSTORE_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("EVENTSTORE_OUTAGE=%q: %v", v, err)
		}
		p, outage, jump = subscribe.RetryPolicy{}, d, 0
	}
	o := startOutageRun(t, p)
	o.outage(outage, func() { o.clock.advance(jump) })
	if p.MaxBackoff == 0 {
		p.MaxBackoff = subscribe.DefaultMaxBackoff
	}
	p.InitialBackoff = subscribe.DefaultInitialBackoff
	o.checkNothingParked(outage, p)
}

// TestReceiverStatusClasses: a 400 or a 410 from the receiver parks the
// commit after one attempt; a 503 or a 429 is retried, and the commit is
// delivered once the receiver takes it. Default RetryPolicy.
func TestReceiverStatusClasses(t *testing.T) {
	t.Parallel()
	o := startOutageRun(t, subscribe.RetryPolicy{})
	for agg, st := range map[string]int{"acct-1": 400, "acct-2": 410, "acct-3": 503, "acct-4": 429} {
		o.recv.setStatus(agg, st)
	}
	wctx, stopWriting := context.WithCancel(context.Background())
	written := make(chan struct{})
	go func() {
		defer close(written)
		o.write(wctx)
	}()
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		ps := o.parked()
		seen := map[string]bool{}
		for _, p := range ps {
			seen[p.Commit.AggregateID] = true
		}
		return seen["acct-1"] && seen["acct-2"]
	}, "the commits refused with 400 and 410 were not parked")
	time.Sleep(2 * time.Second) // acct-3 and acct-4 are retried meanwhile
	o.recv.setStatus("acct-3", 0)
	o.recv.setStatus("acct-4", 0)
	stopWriting()
	<-written
	o.appendMu.Lock()
	want := map[string]int64{}
	for id, n := range o.next {
		want[id] = n
	}
	o.appendMu.Unlock()
	ddbtest.Eventually(t, 60*time.Second, func() bool {
		o.recv.mu.Lock()
		defer o.recv.mu.Unlock()
		for id, n := range want {
			if id != "acct-1" && id != "acct-2" && o.recv.next[id] != n {
				return false
			}
		}
		return true
	}, "the aggregates answered 503 and 429 were not delivered")
	byAgg := map[string][]checkpoint.Parked{}
	for _, p := range o.parked() {
		byAgg[p.Commit.AggregateID] = append(byAgg[p.Commit.AggregateID], p)
	}
	for _, id := range []string{"acct-1", "acct-2"} {
		ps := byAgg[id]
		if len(ps) != int(want[id]) || ps[0].Commit.Version != 0 || ps[0].Attempts != 1 || !strings.Contains(ps[0].Reason, "status 4") {
			t.Errorf("%s: %d parked of %d, first %+v; want all parked, the first after 1 attempt with its status", id, len(ps), want[id], ps[0])
		}
		delete(byAgg, id)
	}
	if len(byAgg) != 0 {
		t.Errorf("parked besides the refused aggregates: %v", byAgg)
	}
	if _, problems := o.recv.received(); len(problems) > 0 {
		t.Errorf("order problems %q", problems)
	}
}
