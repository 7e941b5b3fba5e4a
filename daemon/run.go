package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/logging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/internal/flaghelp"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/subscribe/promhooks"
)

// Options are what a program gives the daemon besides its settings: Go
// handlers, hooks, where to write, and how to read the environment. The
// zero value runs the configured webhook and stdout subscriptions on
// os.Stdout and os.Stderr.
type Options struct {
	// Handlers are Go handlers by subscription name: each runs as a
	// subscription of that name, with the settings of the configuration's
	// subscription of that name (its handler type "go" or none) if there
	// is one, else the defaults.
	Handlers map[string]subscribe.Handler
	// BatchHandlers are Go batch handlers by subscription name, as
	// Handlers; a name may not be in both. The handler's batch setting
	// (--webhook-batch, handler.batch) is subscribe.Subscription.MaxBatch.
	BatchHandlers map[string]subscribe.BatchHandler
	// Hooks are extra subscribe hooks (see subscribe.Config.Hooks), called
	// after the daemon's Prometheus hooks.
	Hooks []any
	// Stdout receives the stdout handler's lines. Default os.Stdout.
	Stdout io.Writer
	// Stderr receives the logs (and RunArgs' messages). Default os.Stderr.
	Stderr io.Writer
	// Env reads environment variables: the flags' defaults (RunArgs),
	// secretEnv and headerEnv. Default os.Getenv.
	Env func(string) string
	// Started, when set, is called once, after the worker is built and
	// the HTTP listener bound (addr is nil when it is off), before the
	// subscriptions start. It must return promptly.
	Started func(w *subscribe.Worker, addr net.Addr)
	// AWSConfig, when set, is the AWS configuration (credentials, region,
	// retries) instead of the SDK's standard chain; Config.Region and
	// Config.Endpoint still apply on top of it. Default: the chain.
	AWSConfig *aws.Config
	// Clock is the time stuck detection and the daemon's metrics go by.
	// Default time.Now. (The worker reads commits by the system clock.)
	Clock func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Env == nil {
		o.Env = os.Getenv
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Run runs the daemon until ctx ends, then stops it cleanly, and returns
// nil: the subscriptions stop reading, their handlers drain, their last
// checkpoints are written and released, all within cfg.ShutdownTimeout;
// /metrics and /healthz answer until then, and the listener closes last.
//
// Before anything starts, Run merges the configuration (the file
// cfg.ConfigFile, then cfg's flags and environment variables when
// RegisterFlags made it, or its non-zero fields otherwise; then
// opts.Handlers) and checks every setting: an unusable one returns a
// *ConfigError naming it (errors.Is ErrInvalidConfig). It then checks that
// the commits table and the checkpoints table can be read.
//
// A subscription that stops on its own (PolicyStop, a lost checkpoint)
// does not stop the others: /readyz reports it. When every subscription
// has stopped, Run returns their errors. A stop that outlasts
// cfg.ShutdownTimeout returns an error, as does a failure to start (AWS
// configuration, a table missing, the listener's address taken). Run logs
// to opts.Stderr and does not log the error it returns.
func Run(ctx context.Context, cfg Config, opts Options) error {
	opts = opts.withDefaults()
	p, err := resolve(cfg, opts)
	if err != nil {
		return err
	}
	return p.run(ctx, opts, p.newLogger(opts.Stderr))
}

// newLogger returns the logger the settings ask for, on w.
func (p *plan) newLogger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: p.level}
	if p.cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

// sdkLogger passes the AWS SDK's log lines to log: warnings as warnings,
// the rest at debug level.
func sdkLogger(log *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		level := slog.LevelDebug
		if c == logging.Warn {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "aws sdk: "+fmt.Sprintf(format, v...))
	})
}

// leastStuckAfter is the shortest --stuck-after that a healthy
// subscription never reaches: the index source's settle delay and idle poll
// interval (1 s and 2 s by default), and the longest checkpoint interval,
// with as much again to spare.
func (p *plan) leastStuckAfter() time.Duration {
	var longest time.Duration
	for _, s := range p.subs {
		longest = max(longest, time.Duration(s.conf.CheckpointInterval))
	}
	return 2 * (3*time.Second + longest)
}

// timeouts splits the shutdown timeout: the final checkpoint writes get a
// third (at most 10 s), a tenth (at most 2 s) is left for handlers to
// return once cancelled, and the rest is the drain.
func timeouts(total time.Duration) (drain, finalSave time.Duration) {
	finalSave = min(total/3, 10*time.Second)
	margin := min(total/10, 2*time.Second)
	return total - finalSave - margin, finalSave
}

func (p *plan) run(ctx context.Context, opts Options, log *slog.Logger) error {
	cfg := p.cfg
	var awsCfg aws.Config
	var err error
	callBounds := awscfg.Timeouts{Attempt: time.Duration(cfg.AWSAttemptTimeout), Call: time.Duration(cfg.AWSCallTimeout)}
	if opts.AWSConfig != nil {
		awsCfg = opts.AWSConfig.Copy()
		if cfg.Region != "" {
			awsCfg.Region = cfg.Region
		}
		awscfg.Apply(&awsCfg, callBounds, sdkLogger(log))
	} else {
		awsCfg, err = awscfg.Load(ctx, awscfg.Options{Region: cfg.Region, Logger: sdkLogger(log), Timeouts: callBounds})
	}
	switch {
	case isCtxErr(ctx, err):
		return nil
	case errors.Is(err, awscfg.ErrNoRegion):
		return &ConfigError{Setting: "--region", Reason: "no AWS region: set --region, $EVENTSTORE_REGION, $AWS_REGION or a profile's region"}
	case err != nil:
		return err
	}
	ddb := awscfg.DynamoDB(awsCfg, cfg.Endpoint)

	reg := prometheus.NewRegistry()
	names := make([]string, len(p.subs))
	for i, s := range p.subs {
		names[i] = s.conf.Name
	}
	metrics, err := promhooks.New(reg, promhooks.WithSubscriptions(names...))
	if err != nil {
		return err
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}

	st, err := store.New(ddb, store.Config{TableName: cfg.Table, IndexName: cfg.Index, IndexBuckets: cfg.Buckets, ConsumedCapacity: metrics.ConsumedCapacity})
	if err != nil {
		return err
	}
	cps, err := dynamocheckpoint.New(ddb, dynamocheckpoint.Config{TableName: cfg.CheckpointTable})
	if err != nil {
		return err
	}
	if err := preflight(ctx, st, cps, cfg, log); err != nil {
		if isCtxErr(ctx, err) {
			return nil
		}
		return err
	}
	if err := p.checkBuckets(ctx, ddb, log); err != nil {
		return err
	}
	drain, finalSave := timeouts(time.Duration(cfg.ShutdownTimeout))
	wcfg := subscribe.Config{
		Reader:           st,
		Checkpoints:      cps,
		Owner:            cfg.Owner,
		Logger:           log,
		Hooks:            append([]any{metrics}, opts.Hooks...),
		DrainTimeout:     drain,
		FinalSaveTimeout: finalSave,
		Leases: &subscribe.LeaseOptions{
			Duration:     time.Duration(cfg.LeaseDuration),
			RenewEvery:   time.Duration(cfg.LeaseRenew),
			BalanceEvery: time.Duration(cfg.BalanceEvery),
		},
	}
	if p.anyStream {
		wcfg.Streams = awscfg.Streams(awsCfg, cfg.Endpoint, ddb)
		wcfg.Tables = ddb
	}
	w, err := subscribe.NewWorker(wcfg)
	if err != nil {
		return err
	}
	for _, s := range p.subs {
		if err := w.Register(s.sub); err != nil {
			return fmt.Errorf("subscription %q: %w", s.conf.Name, err)
		}
	}
	mon := newMonitor(w, st, opts.Clock, time.Duration(cfg.StuckAfter), log)
	mon.failAfter, mon.callTimeout = time.Duration(cfg.FailAfter), time.Duration(cfg.AWSCallTimeout)
	mon.lister = cps
	if err := reg.Register(mon); err != nil {
		return err
	}

	var ln net.Listener
	if cfg.Listen != ListenOff {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
		}
	}
	p.logConfig(log, w.Owner(), ln, awsCfg.Region, aws.ToString(ddb.Options().BaseEndpoint))
	if least := p.leastStuckAfter(); time.Duration(cfg.StuckAfter) < least {
		log.Warn("--stuck-after is shorter than a healthy subscription may wait for new commits to be read and its checkpoint saved; subscriptions may show as stuck when they are not",
			"stuckAfter", cfg.StuckAfter.String(), "recommended", least.String())
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var srv *http.Server
	served := make(chan struct{})
	if ln != nil {
		srv = newServer(reg, mon, log)
		go func() {
			defer close(served)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("the HTTP listener failed", "err", err)
			}
		}()
	} else {
		close(served)
	}
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		mon.run(bg)
	}()
	var addr net.Addr
	if ln != nil {
		addr = ln.Addr()
	}
	if opts.Started != nil {
		opts.Started(w, addr)
	}

	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case err = <-done:
		if ctx.Err() == nil {
			err = fmt.Errorf("every subscription stopped: %w", err)
			log.Error("every subscription stopped; the daemon stops")
		}
	case <-ctx.Done():
		log.Info("stopping: draining the handlers and writing the last checkpoints", "cause", context.Cause(ctx).Error(), "timeout", cfg.ShutdownTimeout.String())
		timer := time.NewTimer(time.Duration(cfg.ShutdownTimeout))
		select {
		case err = <-done:
			timer.Stop()
		case <-timer.C:
			err = fmt.Errorf("the subscriptions did not stop within the shutdown timeout (%v): their last checkpoints may not be written", cfg.ShutdownTimeout)
		}
	}

	stopBG()
	<-monDone
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if serr := srv.Shutdown(sctx); serr != nil {
			_ = srv.Close()
		}
		cancel()
	}
	<-served
	if ctx.Err() != nil {
		// Subscriptions that had stopped on their own were reported when
		// they stopped (log, /readyz, metrics): the stop asked for is
		// clean all the same.
		err = withoutStopped(err)
	}
	if err == nil {
		log.Info("stopped cleanly")
	}
	return err
}

// withoutStopped returns err without the errors of subscriptions that
// stopped on their own (subscribe.ErrStopped, checkpoint.ErrFenced); nil
// when nothing else is left.
func withoutStopped(err error) error {
	onItsOwn := func(e error) bool {
		return errors.Is(e, subscribe.ErrStopped) || errors.Is(e, checkpoint.ErrFenced)
	}
	var se *subscribe.StoppedError
	if errors.As(err, &se) && err == error(se) {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err != nil && onItsOwn(err) {
			return nil
		}
		return err
	}
	var rest []error
	for _, e := range j.Unwrap() {
		if !onItsOwn(e) {
			rest = append(rest, e)
		}
	}
	return errors.Join(rest...)
}

// preflight fails fast when a table is missing (with a message saying how
// to create it). Other errors are logged: the worker retries them.
func preflight(ctx context.Context, st *store.Store, cps *dynamocheckpoint.Store, cfg Config, log *slog.Logger) error {
	if _, _, err := st.Head(ctx); err != nil {
		if isCtxErr(ctx, err) {
			return err
		}
		var nf *types.ResourceNotFoundException
		if errors.Is(err, store.ErrTableNotFound) || errors.As(err, &nf) {
			return fmt.Errorf("commits table %q (--table) not found: create it with 'eventstore table create --table %s', or point --table, --region and --endpoint at it", cfg.Table, cfg.Table)
		}
		var ve interface{ ErrorCode() string }
		if errors.As(err, &ve) && ve.ErrorCode() == "ValidationException" {
			return fmt.Errorf("commits table %q, index %q (--index): %w", cfg.Table, cfg.Index, err)
		}
		log.Warn("reading the commits table failed; the subscriptions will retry", "table", cfg.Table, "err", err)
	}
	for _, err := range cps.List(ctx, "\x00preflight") {
		if err == nil {
			break
		}
		if isCtxErr(ctx, err) {
			return err
		}
		var nf *types.ResourceNotFoundException
		if errors.Is(err, dynamocheckpoint.ErrTableNotFound) || errors.As(err, &nf) {
			return fmt.Errorf("checkpoints table %q (--checkpoint-table) not found: create it with 'eventstore checkpoint create-table --checkpoint-table %s' (the table deploy/cloudformation/tables.json defines), or point --checkpoint-table at it", cfg.CheckpointTable, cfg.CheckpointTable)
		}
		log.Warn("reading the checkpoints table failed; the subscriptions will retry", "table", cfg.CheckpointTable, "err", err)
		break
	}
	return nil
}

// logConfig logs the effective configuration: one line for the daemon
// (with the region and DynamoDB endpoint the AWS SDK resolved), one per
// subscription. Secrets and header values are left out, and the
// query of a webhook URL.
func (p *plan) logConfig(log *slog.Logger, owner string, ln net.Listener, region, endpoint string) {
	c := p.cfg
	listen := ListenOff
	if ln != nil {
		listen = ln.Addr().String()
	}
	endpoint = cmpOr(redactURL(endpoint), "(AWS)")
	log.Info("daemon starting",
		"table", c.Table, "index", c.Index, "buckets", c.Buckets,
		"endpoint", endpoint, "region", region,
		"checkpointTable", c.CheckpointTable, "listen", listen,
		"logFormat", c.LogFormat, "logLevel", c.LogLevel,
		"shutdownTimeout", c.ShutdownTimeout.String(), "stuckAfter", c.StuckAfter.String(),
		"owner", owner, "subscriptions", len(p.subs))
	for _, s := range p.subs {
		sc := s.conf
		attrs := []any{"subscription", sc.Name, "source", sc.Source, "start", sc.Start, "policy", sc.Policy,
			"handler", sc.Handler.Type, "concurrency", sc.Concurrency,
			"checkpointInterval", sc.CheckpointInterval.String(), "maxRecordAge", sc.MaxRecordAge.String(),
			"maxAttempts", sc.MaxAttempts, "maxElapsed", sc.MaxElapsed.String(), "backoffInitial", sc.BackoffInitial.String(),
			"backoffMax", sc.BackoffMax.String(), "handlerTimeout", sc.HandlerTimeout.String(), "circuitOpenAfter", sc.CircuitOpenAfter}
		if sc.Handler.Type == HandlerWebhook {
			secret := "none"
			switch {
			case sc.Handler.SecretEnv != "":
				secret = "from $" + sc.Handler.SecretEnv
			case sc.Handler.Secret != "":
				secret = "set"
			}
			attrs = append(attrs, "url", redactURL(sc.Handler.URL), "secret", secret,
				"timeout", sc.Handler.Timeout.String(), "batch", sc.Handler.Batch,
				"headers", strings.Join(s.headerNames, ","))
		}
		log.Info("subscription configured", attrs...)
	}
}

// newServer returns the HTTP server of /metrics, /healthz and /readyz.
func newServer(reg *prometheus.Registry, mon *monitor, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		ok, why := mon.liveness(req.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not live: "+why+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, body := mon.readiness()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, body)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "eventstore worker\n/metrics  Prometheus metrics\n/healthz  200 while the process serves and its loops make progress\n/readyz   200 when every subscription does its job (docs/health.md)\n")
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// RunArgs parses args (the command line without the program name) with
// the flags of RegisterFlags, reading opts.Env for their defaults, runs
// Run, and returns the exit status: ExitOK after a clean stop, ExitConfig
// for an invalid configuration (bad flag, variable or file, whose message
// names the setting) and ExitFailure for any other failure. -h and --help
// print the flags with their defaults on opts.Stdout and return ExitOK.
// Messages go to opts.Stderr, prefixed with the program's name.
func RunArgs(ctx context.Context, args []string, opts Options) int {
	opts = opts.withDefaults()
	prog := filepath.Base(cmpOr(firstArg(), "eventstore-worker"))
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg Config
	cfg.RegisterFlags(fs, opts.Env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			PrintHelp(opts.Stdout, prog, fs)
			return ExitOK
		}
		fmt.Fprintf(opts.Stderr, "%s: %v\nRun '%s --help' for usage.\n", prog, err, prog)
		return ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(opts.Stderr, "%s: unexpected argument %q\nRun '%s --help' for usage.\n", prog, fs.Arg(0), prog)
		return ExitConfig
	}
	err := Run(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "%s: %v\n", prog, err)
		if errors.Is(err, ErrInvalidConfig) {
			fmt.Fprintf(opts.Stderr, "Run '%s --help' for usage.\n", prog)
		}
	}
	return ExitCode(err)
}

func firstArg() string {
	if len(os.Args) > 0 {
		return os.Args[0]
	}
	return ""
}

// Help is the text of --help between the usage line and the flags.
const Help = `Runs subscriptions that keep read models up to date: each reads every
commit of the commits table from its checkpoint on and hands it, in
per-aggregate order, to its handler: a webhook, JSON lines on stdout, or a
Go handler built into the program.

One subscription can be set with flags (--subscription NAME --handler
webhook --webhook-url URL); several, with different handlers and policies,
with a JSON configuration file (--config FILE). Flags and environment
variables override the file; --subscription NAME with --config changes the
file's subscription of that name, or adds one.

Every flag --foo-bar takes its default from $EVENTSTORE_FOO_BAR; a flag
given wins. AWS configuration comes from the SDK's standard chain
(AWS_REGION, AWS_PROFILE, credentials, AWS_ENDPOINT_URL_DYNAMODB).

HTTP (--listen): /metrics (Prometheus), /healthz (200 while the process
serves and its loops make progress), /readyz (200 when every subscription
does its job; 503, with one line per subscription saying why, when one has
stopped or is stuck, when reads, checkpoint saves or lease renewals have
failed for --fail-after, when units were lost through failures, while the
handler's circuit is open, or when AWS refuses the credentials; see
docs/health.md).

SIGTERM or SIGINT stops cleanly within --shutdown-timeout: reading stops,
handlers drain, the last checkpoints are written, exit status 0. A second
signal exits at once. Exit status 1 when every subscription stopped on an
error or the daemon could not start, 2 for an invalid configuration.`

// PrintHelp writes the usage line, Help and fs's flags with their defaults
// (those RegisterFlags defined: names, values, environment variables) to
// w.
func PrintHelp(w io.Writer, prog string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nFlags:\n", prog, Help)
	flaghelp.Write(w, fs)
}

// Main runs a daemon program: RunArgs on os.Args[1:], with a context that
// the first SIGINT or SIGTERM cancels (a clean stop); a second signal
// kills the process at once. It exits with RunArgs' status. Programs with
// Go handlers call it from main:
//
//	func main() {
//		daemon.Main(daemon.Options{Handlers: map[string]subscribe.Handler{"balances": h}})
//	}
func Main(opts Options) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second one
	// kills the process at once.
	context.AfterFunc(ctx, stop)
	code := RunArgs(ctx, os.Args[1:], opts)
	stop()
	os.Exit(code)
}
