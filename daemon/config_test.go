package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

// resolveArgs resolves a command line as RunArgs does, with env as the
// environment. A file named "FILE" in args is replaced by a file holding
// file.
func resolveArgs(t *testing.T, args []string, env map[string]string, file string, opts Options) (*plan, error) {
	t.Helper()
	path := writeFile(t, file)
	args = append([]string(nil), args...)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "FILE", path)
	}
	getenv := func(k string) string { return strings.ReplaceAll(env[k], "FILE", path) }
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg Config
	cfg.RegisterFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	opts.Env, opts.Stdout = getenv, io.Discard
	return resolve(cfg, opts)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// namedHandler is a Go handler that tests tell apart by pointer.
type namedHandler struct{ name string }

func (*namedHandler) Handle(context.Context, subscribe.Commit) error { return nil }

var goHandler = &namedHandler{"g"}

func TestConfigDefaults(t *testing.T) {
	p, err := resolveArgs(t, nil, nil, "", Options{Handlers: map[string]subscribe.Handler{"g": goHandler}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	if c.Table != store.DefaultTableName || c.Index != store.DefaultIndexName || c.Buckets != 1 ||
		c.CheckpointTable != dynamocheckpoint.DefaultTableName || c.Listen != ":9090" || c.LogFormat != "json" ||
		c.LogLevel != "info" || time.Duration(c.ShutdownTimeout) != 30*time.Second || time.Duration(c.StuckAfter) != 5*time.Minute ||
		c.Endpoint != "" || c.Region != "" || c.Owner != "" {
		t.Errorf("defaults: %+v", c)
	}
	if len(p.subs) != 1 {
		t.Fatalf("%d subscriptions, want the Go handler's", len(p.subs))
	}
	s := p.subs[0]
	if s.sub.Name != "g" || s.sub.Handler == nil || s.sub.Source != subscribe.SourceIndex || s.sub.Start != subscribe.StartBeginning ||
		s.sub.Policy != subscribe.PolicyPark || s.sub.Concurrency != 8 || s.sub.CheckpointInterval != time.Second ||
		s.sub.Retry != (subscribe.RetryPolicy{MaxRecordAge: 6 * time.Hour, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second,
			AttemptTimeout: 30 * time.Second, CircuitOpenAfter: 3}) || s.sub.Index.Settle != 0 || s.sub.Index.Overlap != 0 || s.sub.Stream.Margin != 0 || // subscribe's defaults
		s.sub.Corrupt != subscribe.CorruptPark || s.sub.GapTimeout != 30*time.Second {
		t.Errorf("Go handler's subscription: %+v", s.sub)
	}
	// A zero Config built in Go means the same.
	p2, err := resolve(Config{}, Options{Handlers: map[string]subscribe.Handler{"g": goHandler}, Env: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if p2.cfg.Table != c.Table || p2.cfg.Listen != c.Listen || p2.cfg.StuckAfter != c.StuckAfter {
		t.Errorf("zero Config: %+v, flags: %+v", p2.cfg, c)
	}
}

func TestConfigPrecedence(t *testing.T) {
	const file = `{
	  "table": "file-table", "index": "file-index", "checkpointTable": "file-cp", "listen": ":7000",
	  "logFormat": "text", "shutdownTimeout": "45s", "owner": "file-owner",
	  "subscriptions": [
	    {"name": "orders", "policy": "stop", "concurrency": 5,
	     "handler": {"type": "webhook", "url": "https://orders.example.com/hook", "secretEnv": "ORDERS_SECRET",
	                 "header": {"X-Tenant": "t1"}, "headerEnv": {"Authorization": "ORDERS_AUTH"}, "batch": 10}},
	    {"name": "audit", "source": "stream", "start": "now", "handler": {"type": "stdout"}},
	    {"name": "balances", "maxAttempts": 9}
	  ]
	}`
	env := map[string]string{
		"EVENTSTORE_CONFIG": "FILE",
		"EVENTSTORE_TABLE":  "env-table",
		"EVENTSTORE_INDEX":  "env-index",
		"ORDERS_SECRET":     "orders-secret",
		"ORDERS_AUTH":       "Bearer xyz",
	}
	balancesHandler := &namedHandler{"balances"}
	opts := Options{Handlers: map[string]subscribe.Handler{"balances": balancesHandler, "extra": goHandler}}
	p, err := resolveArgs(t, []string{"--index", "flag-index", "--listen", "", "--subscription", "orders", "--concurrency", "3"}, env, file, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	for name, got := range map[string][2]string{
		"table (variable over file)":    {c.Table, "env-table"},
		"index (flag over variable)":    {c.Index, "flag-index"},
		"checkpointTable (file)":        {c.CheckpointTable, "file-cp"},
		"listen (flag \"\" is off)":     {c.Listen, ListenOff},
		"logFormat (file)":              {c.LogFormat, "text"},
		"shutdownTimeout (file)":        {c.ShutdownTimeout.String(), "45s"},
		"owner (file)":                  {c.Owner, "file-owner"},
		"stuckAfter (default)":          {c.StuckAfter.String(), "5m0s"},
		"checkpoint interval (default)": {p.subs[0].conf.CheckpointInterval.String(), "1s"},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	var names []string
	for _, s := range p.subs {
		names = append(names, s.conf.Name)
	}
	if strings.Join(names, ",") != "orders,audit,balances,extra" {
		t.Fatalf("subscriptions %q", names)
	}
	orders, audit, balances, extra := p.subs[0], p.subs[1], p.subs[2], p.subs[3]
	if orders.sub.Concurrency != 3 || orders.sub.Policy != subscribe.PolicyStop || orders.conf.Handler.Secret != "orders-secret" ||
		orders.sub.BatchHandler == nil || orders.sub.MaxBatch != 10 || strings.Join(orders.headerNames, ",") != "Authorization,X-Tenant" {
		t.Errorf("orders: %+v %+v", orders.conf, orders.sub)
	}
	if _, ok := orders.sub.BatchHandler.(*webhook.Handler); !ok {
		t.Errorf("orders' handler is %T", orders.sub.BatchHandler)
	}
	if audit.sub.Source != subscribe.SourceStream || audit.sub.Start != subscribe.StartNow || audit.sub.Handler == nil || !p.anyStream {
		t.Errorf("audit: %+v", audit.sub)
	}
	if balances.sub.Handler != subscribe.Handler(balancesHandler) || balances.sub.Retry.MaxAttempts != 9 {
		t.Errorf("balances (Go handler with file settings): %+v", balances.sub)
	}
	if extra.sub.Handler != subscribe.Handler(goHandler) || extra.sub.Concurrency != 8 {
		t.Errorf("extra (Go handler, defaults): %+v", extra.sub)
	}

	// --subscription with a new name adds one; the file's stay.
	p, err = resolveArgs(t, []string{"--config", "FILE", "--subscription", "tail", "--handler", "stdout", "--policy", "skip"}, map[string]string{"ORDERS_SECRET": "s", "ORDERS_AUTH": "a"}, file, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.subs) != 5 || p.subs[3].conf.Name != "tail" || p.subs[3].sub.Policy != subscribe.PolicySkip {
		t.Errorf("subscriptions after --subscription tail: %+v", p.subs)
	}
}

func TestConfigOneSubscription(t *testing.T) {
	// From flags and variables alone, secret from the environment.
	env := map[string]string{
		"EVENTSTORE_SUBSCRIPTION":   "hooks",
		"EVENTSTORE_HANDLER":        "webhook",
		"EVENTSTORE_WEBHOOK_URL":    "http://localhost:8080/hook",
		"EVENTSTORE_WEBHOOK_SECRET": "from-env",
		"EVENTSTORE_POLICY":         "skip",
	}
	p, err := resolveArgs(t, []string{"--policy", "stop", "--webhook-timeout", "2s", "--start", "2026-01-02T03:04:05Z"}, env, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.subs) != 1 {
		t.Fatalf("%d subscriptions", len(p.subs))
	}
	s := p.subs[0]
	if s.conf.Name != "hooks" || s.sub.Policy != subscribe.PolicyStop || s.conf.Handler.Secret != "from-env" ||
		time.Duration(s.conf.Handler.Timeout) != 2*time.Second || s.sub.Handler == nil ||
		s.sub.Start != subscribe.StartAtTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("subscription: %+v %+v", s.conf, s.sub)
	}
	// The corrupt-item policy and the gap timeout, from a flag, a variable
	// and a file.
	p, err = resolveArgs(t, []string{"--corrupt", "skip"}, map[string]string{
		"EVENTSTORE_SUBSCRIPTION": "hooks", "EVENTSTORE_HANDLER": "stdout", "EVENTSTORE_GAP_TIMEOUT": "5s"}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub; got.Corrupt != subscribe.CorruptSkip || got.GapTimeout != 5*time.Second {
		t.Errorf("corrupt %v, gap timeout %v; want skip, 5s", got.Corrupt, got.GapTimeout)
	}
	p, err = resolveArgs(t, []string{"--config", "FILE"}, map[string]string{"EVENTSTORE_CORRUPT": "park"},
		`{"subscriptions":[{"name":"f","corrupt":"skip","gapTimeout":"2m","handler":{"type":"stdout"}}]}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub; got.Corrupt != subscribe.CorruptPark || got.GapTimeout != 2*time.Minute {
		t.Errorf("corrupt %v, gap timeout %v; want park (the variable wins over the file), 2m", got.Corrupt, got.GapTimeout)
	}
	// The index and stream tuning, from flags, variables and a file.
	p, err = resolveArgs(t, []string{"--settle", "250ms", "--stream-margin", "2s"}, map[string]string{
		"EVENTSTORE_SUBSCRIPTION": "hooks", "EVENTSTORE_HANDLER": "stdout", "EVENTSTORE_OVERLAP": "4s"}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub; got.Index.Settle != 250*time.Millisecond || got.Index.Overlap != 4*time.Second || got.Stream.Margin != 2*time.Second {
		t.Errorf("settle %v, overlap %v, margin %v; want 250ms, 4s, 2s", got.Index.Settle, got.Index.Overlap, got.Stream.Margin)
	}
	p, err = resolveArgs(t, []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"f","overlap":"3s","handler":{"type":"stdout"}}]}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub.Index.Overlap; got != 3*time.Second {
		t.Errorf("overlap from the file %v, want 3s", got)
	}
	// A flag given wins over the variable, for the secret too.
	p, err = resolveArgs(t, []string{"--webhook-secret", "from-flag"}, env, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].conf.Handler.Secret; got != "from-flag" {
		t.Errorf("secret %q, want the flag's", got)
	}
	// Without --subscription, the subscription flags apply to the only
	// subscription: a file's, or a Go handler's.
	p, err = resolveArgs(t, []string{"--config", "FILE", "--concurrency", "2"}, nil, `{"subscriptions":[{"name":"only","handler":{"type":"stdout"}}]}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.subs[0].sub.Concurrency != 2 {
		t.Errorf("concurrency %d, want 2", p.subs[0].sub.Concurrency)
	}
	// Webhook variables set for every process do not trouble a stdout
	// subscription; flags do.
	p, err = resolveArgs(t, []string{"--subscription", "s", "--handler", "stdout"},
		map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "x", "EVENTSTORE_WEBHOOK_TIMEOUT": "3s", "EVENTSTORE_WEBHOOK_BATCH": "5"}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := p.subs[0].conf.Handler; h.Secret != "" || h.Timeout != 0 || h.Batch != 0 {
		t.Errorf("stdout handler with webhook settings: %+v", h)
	}
	p, err = resolveArgs(t, []string{"--max-attempts", "7"}, nil, "", Options{BatchHandlers: map[string]subscribe.BatchHandler{"b": subscribe.BatchHandlerFunc(func(context.Context, []subscribe.Commit) error { return nil })}})
	if err != nil {
		t.Fatal(err)
	}
	if p.subs[0].sub.Retry.MaxAttempts != 7 || p.subs[0].sub.BatchHandler == nil {
		t.Errorf("Go batch handler's subscription: %+v", p.subs[0].sub)
	}
}

// TestConfigRetrySettings sets every retry setting of a subscription by
// flag, by variable and in the file, and checks what reaches its
// subscribe.RetryPolicy.
func TestConfigRetrySettings(t *testing.T) {
	want := subscribe.RetryPolicy{MaxRecordAge: 2 * time.Hour, MaxAttempts: 9, MaxElapsed: 20 * time.Minute,
		InitialBackoff: 250 * time.Millisecond, MaxBackoff: 4 * time.Second, AttemptTimeout: 12 * time.Second, CircuitOpenAfter: -1}
	stdout := []string{"--subscription", "s", "--handler", "stdout"}
	flags := append(append([]string(nil), stdout...), "--max-record-age", "2h", "--max-attempts", "9", "--max-elapsed", "20m",
		"--backoff-initial", "250ms", "--backoff-max", "4s", "--handler-timeout", "12s", "--circuit-open-after", "-1")
	env := map[string]string{"EVENTSTORE_MAX_RECORD_AGE": "2h", "EVENTSTORE_MAX_ATTEMPTS": "9", "EVENTSTORE_MAX_ELAPSED": "20m",
		"EVENTSTORE_BACKOFF_INITIAL": "250ms", "EVENTSTORE_BACKOFF_MAX": "4s", "EVENTSTORE_HANDLER_TIMEOUT": "12s", "EVENTSTORE_CIRCUIT_OPEN_AFTER": "-1"}
	file := `{"subscriptions":[{"name":"s","handler":{"type":"stdout"},"maxRecordAge":"2h","maxAttempts":9,"maxElapsed":"20m",
		"backoffInitial":"250ms","backoffMax":"4s","handlerTimeout":"12s","circuitOpenAfter":-1}]}`
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		file string
	}{
		{"flags", flags, nil, ""},
		{"variables", stdout, env, ""},
		{"file", []string{"--config", "FILE"}, nil, file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := resolveArgs(t, tc.args, tc.env, tc.file, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.subs[0].sub.Retry; got != want {
				t.Errorf("RetryPolicy %+v\nwant %+v", got, want)
			}
		})
	}
	// A webhook's own timeout raises the handler's unless it is given.
	hook := []string{"--subscription", "s", "--handler", "webhook", "--webhook-url", "https://h/hook", "--webhook-timeout", "40s"}
	p, err := resolveArgs(t, hook, nil, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub.Retry.AttemptTimeout; got != 45*time.Second {
		t.Errorf("handler timeout with a 40s webhook timeout: %v; want 45s", got)
	}
	p, err = resolveArgs(t, append(hook, "--handler-timeout", "20s"), nil, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.subs[0].sub.Retry.AttemptTimeout; got != 20*time.Second {
		t.Errorf("handler timeout given as 20s: %v", got)
	}
}

func TestConfigInvalid(t *testing.T) {
	hook := []string{"--subscription", "s", "--handler", "webhook", "--webhook-url", "https://h/hook"}
	stdout := []string{"--subscription", "s", "--handler", "stdout"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	goOpts := Options{Handlers: map[string]subscribe.Handler{"g": goHandler}}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		opts Options
		want string
	}{
		{"buckets flag", with(stdout, "--buckets", "0"), nil, "", Options{}, "--buckets 0: want 1 to 256"},
		{"buckets variable", stdout, map[string]string{"EVENTSTORE_BUCKETS": "abc"}, "", Options{}, `EVENTSTORE_BUCKETS="abc": want an integer`},
		{"buckets variable range", stdout, map[string]string{"EVENTSTORE_BUCKETS": "300"}, "", Options{}, "EVENTSTORE_BUCKETS=300: want 1 to 256"},
		{"duration variable", stdout, map[string]string{"EVENTSTORE_SHUTDOWN_TIMEOUT": "soon"}, "", Options{}, `EVENTSTORE_SHUTDOWN_TIMEOUT="soon": want a duration`},
		{"empty table", with(stdout, "--table", ""), nil, "", Options{}, `--table "": want a value`},
		{"short table", with(stdout, "--table", "ab"), nil, "", Options{}, `--table "ab": want 3 to 255 characters`},
		{"table characters", with(stdout, "--checkpoint-table", "my table"), nil, "", Options{}, `--checkpoint-table "my table": want only letters`},
		{"endpoint", with(stdout, "--endpoint", "ftp://x"), nil, "", Options{}, `--endpoint "ftp://x": want an http or https URL`},
		{"listen", with(stdout, "--listen", "nonsense"), nil, "", Options{}, `--listen "nonsense": want HOST:PORT`},
		{"log format", with(stdout, "--log-format", "xml"), nil, "", Options{}, `--log-format "xml": want json or text`},
		{"log level", stdout, map[string]string{"EVENTSTORE_LOG_LEVEL": "loud"}, "", Options{}, `EVENTSTORE_LOG_LEVEL="loud": want debug, info, warn or error`},
		{"shutdown timeout", with(stdout, "--shutdown-timeout", "0s"), nil, "", Options{}, "--shutdown-timeout 0s: want 100ms or more"},
		{"stuck after", with(stdout, "--stuck-after", "-1s"), nil, "", Options{}, "--stuck-after -1s: want a positive duration"},
		{"fail after", with(stdout, "--fail-after", "0s"), nil, "", Options{}, "--fail-after 0s: want a positive duration"},
		{"fail after variable", stdout, map[string]string{"EVENTSTORE_FAIL_AFTER": "-3s"}, "", Options{}, "EVENTSTORE_FAIL_AFTER=-3s: want a positive duration"},
		{"fail after file", []string{"--config", "FILE"}, nil, `{"failAfter":"0s","subscriptions":[{"name":"a","handler":{"type":"stdout"}}]}`, Options{}, "FILE: failAfter 0s: want a positive duration"},
		{"attempt timeout", with(stdout, "--aws-attempt-timeout", "0s"), nil, "", Options{}, "--aws-attempt-timeout 0s: want a positive duration"},
		{"call timeout below the attempt's", with(stdout, "--aws-attempt-timeout", "8s", "--aws-call-timeout", "4s"), nil, "", Options{}, "--aws-call-timeout 4s: want a duration of at least awsAttemptTimeout (8s)"},
		{"call timeout variable", stdout, map[string]string{"EVENTSTORE_AWS_CALL_TIMEOUT": "1s"}, "", Options{}, "EVENTSTORE_AWS_CALL_TIMEOUT=1s: want a duration of at least awsAttemptTimeout (5s)"},
		{"no subscription", nil, nil, "", Options{}, "--subscription: no subscription to run"},
		{"subscription flag without a subscription", []string{"--source", "stream"}, nil, "", Options{}, "--source: no subscription to apply it to"},
		{"empty subscription", []string{"--subscription", "", "--handler", "stdout"}, nil, "", Options{}, "--subscription: want a subscription name"},
		{"no handler", []string{"--subscription", "s"}, nil, "", Options{}, "--handler: required: webhook or stdout"},
		{"unknown handler", []string{"--subscription", "s", "--handler", "pigeon"}, nil, "", Options{}, `--handler "pigeon": want webhook, stdout or go`},
		{"go handler not registered", []string{"--subscription", "s", "--handler", "go"}, nil, "", Options{}, `--handler "go": this program has no Go handler`},
		{"go handler of another name", []string{"--subscription", "s"}, nil, "", goOpts, `--handler: no Go handler is registered as "s" (registered: g)`},
		{"webhook without URL", []string{"--subscription", "s", "--handler", "webhook"}, nil, "", Options{}, "--webhook-url: required for a webhook handler"},
		{"webhook URL", with(hook, "--webhook-url", "ftp://h/x"), nil, "", Options{}, `--webhook-url "ftp://h/x": want an http or https URL`},
		{"webhook URL variable", []string{"--subscription", "s", "--handler", "webhook"}, map[string]string{"EVENTSTORE_WEBHOOK_URL": "h/x"}, "", Options{}, `EVENTSTORE_WEBHOOK_URL="h/x": want an http or https URL`},
		{"webhook timeout", with(hook, "--webhook-timeout", "0s"), nil, "", Options{}, "--webhook-timeout 0s: want a positive duration"},
		{"webhook batch", with(hook, "--webhook-batch", "0"), nil, "", Options{}, "--webhook-batch 0: want 1 to 1000"},
		{"url for stdout", with(stdout, "--webhook-url", "https://h"), nil, "", Options{}, `--webhook-url: only for a webhook handler, and this one is "stdout"`},
		{"secret for stdout", with(stdout, "--webhook-secret", "shh-secret"), nil, "", Options{}, `--webhook-secret: only for a webhook handler`},
		{"source", with(stdout, "--source", "river"), nil, "", Options{}, `--source "river": want index, stream or auto`},
		{"start", with(stdout, "--start", "yesterday"), nil, "", Options{}, `--start "yesterday": want beginning, now, a commit id`},
		{"policy", with(stdout, "--policy", "retry"), nil, "", Options{}, `--policy "retry": want park, stop or skip`},
		{"concurrency", with(stdout, "--concurrency", "0"), nil, "", Options{}, "--concurrency 0: want 1 to 1000"},
		{"checkpoint interval", with(stdout, "--checkpoint-interval", "0s"), nil, "", Options{}, "--checkpoint-interval 0s: want a positive duration"},
		{"overlap", with(stdout, "--overlap", "-1s"), nil, "", Options{}, "--overlap -1s: want 0 (the default) or a positive duration"},
		{"stream margin", stdout, map[string]string{"EVENTSTORE_STREAM_MARGIN": "-5s"}, "", Options{}, "EVENTSTORE_STREAM_MARGIN=-5s"},
		{"max attempts", with(stdout, "--max-attempts", "-1"), nil, "", Options{}, "--max-attempts -1: want 0 (no limit) or more"},
		{"max record age", with(stdout, "--max-record-age", "0s"), nil, "", Options{}, "--max-record-age 0s: want a positive duration"},
		{"max record age variable", stdout, map[string]string{"EVENTSTORE_MAX_RECORD_AGE": "a day"}, "", Options{}, `EVENTSTORE_MAX_RECORD_AGE="a day": want a duration`},
		{"max elapsed", with(stdout, "--max-elapsed", "-1m"), nil, "", Options{}, "--max-elapsed -1m0s: want 0 (no limit) or a positive duration"},
		{"backoff initial", with(stdout, "--backoff-initial", "0s"), nil, "", Options{}, "--backoff-initial 0s: want a positive duration"},
		{"backoff max below initial", with(stdout, "--backoff-initial", "2s", "--backoff-max", "1s"), nil, "", Options{}, "--backoff-max 1s: want at least backoffInitial (2s)"},
		{"handler timeout", stdout, map[string]string{"EVENTSTORE_HANDLER_TIMEOUT": "-3s"}, "", Options{}, "EVENTSTORE_HANDLER_TIMEOUT=-3s: want a positive duration"},
		{"circuit open after", with(stdout, "--circuit-open-after", "0"), nil, "", Options{}, "--circuit-open-after 0: want 1 or more, or -1 (never open)"},
		{"file max record age", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","maxRecordAge":"-1h","handler":{"type":"stdout"}}]}`, Options{}, "FILE: subscriptions[0].maxRecordAge -1h0m0s: want a positive duration"},
		{"file backoff", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","backoffInitial":"1m","backoffMax":"30s","handler":{"type":"stdout"}}]}`, Options{}, "FILE: subscriptions[0].backoffMax 30s: want at least backoffInitial (1m0s)"},
		{"batch for a Go handler", []string{"--webhook-batch", "5"}, nil, "", goOpts, "--webhook-batch 5: the Go handler takes one commit at a time"},
		{"Go handler twice", nil, nil, "", Options{Handlers: goOpts.Handlers, BatchHandlers: map[string]subscribe.BatchHandler{"g": nil}}, `Options.BatchHandlers "g": also in Options.Handlers`},

		{"file missing", []string{"--config", "/no/such/worker.json"}, nil, "", Options{}, `--config "/no/such/worker.json": cannot read the configuration file`},
		{"file syntax", []string{"--config", "FILE"}, nil, "{\n  \"table\": \"t\",,\n}", Options{}, "FILE: line 2 column 16: invalid JSON"},
		{"file trailing data", []string{"--config", "FILE"}, nil, `{"table":"tab"} {}`, Options{}, "FILE: the file: trailing data"},
		{"file unknown setting", []string{"--config", "FILE"}, nil, `{"tabel":"x"}`, Options{}, `FILE: tabel: unknown setting; did you mean "table"?`},
		{"file unknown handler setting", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"stdout"}},{"name":"b","handler":{"type":"webhook","sceretEnv":"X"}}]}`, Options{}, `FILE: subscriptions[1].handler.sceretEnv: unknown setting; did you mean "secretEnv"?`},
		{"file type", []string{"--config", "FILE"}, nil, `{"buckets":"two"}`, Options{}, "FILE: buckets: want an integer, got string"},
		{"file duration", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","checkpointInterval":"5 minutes","handler":{"type":"stdout"}}]}`, Options{}, `FILE: subscriptions[0].checkpointInterval "5 minutes": want a duration string`},
		{"file duration number", []string{"--config", "FILE"}, nil, `{"stuckAfter":300}`, Options{}, `FILE: stuckAfter: want a duration string`},
		{"file secret", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"webhook","url":"https://h","secret":"file-secret-123"}}]}`, Options{}, "FILE: subscriptions[0].handler.secret: a configuration file holds no secret"},
		{"file secretEnv unset", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"webhook","url":"https://h","secretEnv":"ORDERS_SECRET"}}]}`, Options{}, `FILE: subscriptions[0].handler.secretEnv "ORDERS_SECRET": the environment variable is not set`},
		{"file headerEnv unset", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"webhook","url":"https://h","headerEnv":{"Authorization":"AUTH"}}}]}`, Options{}, `FILE: subscriptions[0].handler.headerEnv "Authorization": "AUTH": the environment variable is not set`},
		{"file header name", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"webhook","url":"https://h","header":{"Bad Header":"v"}}}]}`, Options{}, "FILE: subscriptions[0].handler.header: Header: invalid header name"},
		{"file duplicate names", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"stdout"}},{"name":"a","handler":{"type":"stdout"}}]}`, Options{}, `FILE: subscriptions[1].name "a": a second subscription of this name (the first: FILE: subscriptions[0].name)`},
		{"file no URL", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"stdout"}},{"name":"b","handler":{"type":"webhook"}}]}`, Options{}, "FILE: subscriptions[1].handler.url: required for a webhook handler"},
		{"file no name", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"handler":{"type":"stdout"}}]}`, Options{}, `FILE: subscriptions[0].name: want a name`},
		{"file Go handler not registered", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"x","handler":{"type":"go"}}]}`, goOpts, `FILE: subscriptions[0].handler.type "go": no Go handler is registered as "x" (registered: g)`},
		{"file type for a Go handler", []string{"--config", "FILE"}, nil, `{"subscriptions":[{"name":"g","handler":{"type":"stdout"}}]}`, goOpts, `FILE: subscriptions[0].handler.type "stdout": a Go handler is registered as "g"`},
		{"subscription flags with several subscriptions", []string{"--config", "FILE", "--concurrency", "3"}, nil, `{"subscriptions":[{"name":"a","handler":{"type":"stdout"}},{"name":"b","handler":{"type":"stdout"}}]}`, Options{}, "--concurrency: 2 subscriptions are configured (a, b): say which with --subscription NAME"},
		{"variable over file, named", []string{"--config", "FILE"}, map[string]string{"EVENTSTORE_SUBSCRIPTION": "a", "EVENTSTORE_POLICY": "later"}, `{"subscriptions":[{"name":"a","handler":{"type":"stdout"}}]}`, Options{}, `EVENTSTORE_POLICY="later": want park, stop or skip`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolveArgs(t, c.args, c.env, c.file, c.opts)
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) || ExitCode(err) != ExitConfig {
				t.Fatalf("err = %v (%T), want a *ConfigError", err, err)
			}
			want := c.want
			if strings.Contains(want, "FILE") {
				// The file's path starts the message.
				path := ce.File
				if path == "" {
					t.Fatalf("%v: no file named", err)
				}
				want = strings.ReplaceAll(want, "FILE", path)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
			for _, secret := range []string{"shh-secret", "file-secret-123"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error holds a secret: %v", err)
				}
			}
		})
	}
}

func TestRunArgsUsage(t *testing.T) {
	env := map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "never-shown-secret", "EVENTSTORE_TABLE": "env-table"}
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := RunArgs(t.Context(), args, Options{Stdout: &stdout, Stderr: &stderr, Env: func(k string) string { return env[k] }})
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := run("--help")
	if code != ExitOK || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{
		"Usage: ", "SIGTERM",
		"--table NAME\n      commits table NAME ($EVENTSTORE_TABLE) (default \"env-table\")",
		"--listen ADDRESS", `(default ":9090")`,
		"--shutdown-timeout DURATION", "(default 30s)",
		"--stuck-after DURATION", "(default 5m0s)",
		"--checkpoint-table NAME", `(default "eventstoreCheckpoints")`,
		"--webhook-timeout DURATION", "(default 10s)",
		"--concurrency N", "(default 8)",
		"--webhook-secret SECRET", "$EVENTSTORE_WEBHOOK_SECRET",
		"--config FILE",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	// Every setting's flag names its variable.
	for _, s := range settings {
		if !strings.Contains(out, "--"+s.flag) || !strings.Contains(out, "$"+s.env()) {
			t.Errorf("--help lacks --%s or $%s", s.flag, s.env())
		}
	}
	if strings.Contains(out, "never-shown-secret") {
		t.Error("--help shows the webhook secret")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "many"}, `invalid value "many" for flag -concurrency`},
		{[]string{"--stuck-after", "soon"}, "want a duration such as 30s"},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--subscription", "s", "--handler", "webhook", "--webhook-secret", "never-shown-secret"}, "--webhook-url: required for a webhook handler"},
	} {
		code, _, errOut := run(c.args...)
		if code != ExitConfig || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errOut, ExitConfig, c.want)
		}
		if strings.Contains(errOut, "never-shown-secret") {
			t.Errorf("%q: stderr holds the secret: %q", c.args, errOut)
		}
	}
}

func TestLoadFile(t *testing.T) {
	path := writeFile(t, `{"table":"t1","buckets":4,"stuckAfter":"90s",
	  "subscriptions":[{"name":"a","checkpointInterval":"250ms","handler":{"type":"webhook","url":"https://x/y","timeout":"3s","header":{"X-A":"1"}}}]}`)
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Table != "t1" || cfg.Buckets != 4 || time.Duration(cfg.StuckAfter) != 90*time.Second || len(cfg.Subscriptions) != 1 {
		t.Fatalf("%+v", cfg)
	}
	s := cfg.Subscriptions[0]
	if s.Name != "a" || time.Duration(s.CheckpointInterval) != 250*time.Millisecond || s.Handler.URL != "https://x/y" ||
		time.Duration(s.Handler.Timeout) != 3*time.Second || s.Handler.Header["X-A"] != "1" {
		t.Errorf("%+v", s)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pass@h.example/p?token=abc#frag": "https://user:xxxxx@h.example/p?[redacted]",
		"https://h/hook":       "https://h/hook",
		"https://h/hook?a=b&c": "https://h/hook?[redacted]",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTimeouts(t *testing.T) {
	for _, c := range []struct{ total, drain, save time.Duration }{
		{30 * time.Second, 18 * time.Second, 10 * time.Second},
		{3 * time.Second, 1700 * time.Millisecond, time.Second},
		{time.Minute, 48 * time.Second, 10 * time.Second},
	} {
		drain, save := timeouts(c.total)
		if drain != c.drain || save != c.save {
			t.Errorf("timeouts(%v) = %v, %v; want %v, %v", c.total, drain, save, c.drain, c.save)
		}
	}
}

// TestConfigFailureBounds: --fail-after and the AWS call timeouts default
// to the documented values, and are set by flags, variables and the file.
func TestConfigFailureBounds(t *testing.T) {
	stdout := []string{"--subscription", "s", "--handler", "stdout"}
	for _, c := range []struct {
		name                    string
		args                    []string
		env                     map[string]string
		file                    string
		failAfter, attempt, all time.Duration
	}{
		{"defaults", stdout, nil, "", 10 * time.Second, 5 * time.Second, 10 * time.Second},
		{"flags", append([]string{"--fail-after", "3s", "--aws-attempt-timeout", "2s", "--aws-call-timeout", "7s"}, stdout...), nil, "", 3 * time.Second, 2 * time.Second, 7 * time.Second},
		{"variables", stdout, map[string]string{"EVENTSTORE_FAIL_AFTER": "20s", "EVENTSTORE_AWS_ATTEMPT_TIMEOUT": "1s"}, "", 20 * time.Second, time.Second, 10 * time.Second},
		{"a long attempt raises the call's default", append([]string{"--aws-attempt-timeout", "30s"}, stdout...), nil, "", 10 * time.Second, 30 * time.Second, 30 * time.Second},
		{"file", []string{"--config", "FILE"}, nil, `{"failAfter":"12s","awsCallTimeout":"15s","subscriptions":[{"name":"a","handler":{"type":"stdout"}}]}`, 12 * time.Second, 5 * time.Second, 15 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := resolveArgs(t, c.args, c.env, c.file, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := []time.Duration{time.Duration(p.cfg.FailAfter), time.Duration(p.cfg.AWSAttemptTimeout), time.Duration(p.cfg.AWSCallTimeout)}
			if want := []time.Duration{c.failAfter, c.attempt, c.all}; !slices.Equal(got, want) {
				t.Errorf("failAfter, attempt, call = %v, want %v", got, want)
			}
		})
	}
}
