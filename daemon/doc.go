// Package daemon is the worker daemon: it runs subscriptions that keep read
// models up to date, with Prometheus metrics, health endpoints, structured
// logs and a clean stop on SIGTERM. `eventstore worker` is this package;
// programs with Go handlers build the same daemon around them with Main:
//
//	func main() {
//		daemon.Main(daemon.Options{
//			Handlers: map[string]subscribe.Handler{"balances": balances.NewHandler(…)},
//		})
//	}
//
// Both take the same flags, environment variables, configuration file,
// endpoints and signals, described below.
//
// # Configuration
//
// Every setting is a flag --foo-bar whose default comes from the
// environment variable EVENTSTORE_FOO_BAR; a flag given wins. Settings can
// also come from a JSON file (--config FILE, see LoadFile), which flags and
// environment variables override. The daemon's settings:
//
//	--table              commits table (default commitsByAggregateIdAndVersion)
//	--index              commit-order index (default commitsByCommitId)
//	--buckets            index buckets, 1 to 256 (default 1)
//	--endpoint, --region DynamoDB endpoint and AWS region (default: the AWS SDK's chain)
//	--checkpoint-table   checkpoints and parked commits (default eventstoreCheckpoints)
//	--listen             HTTP address (default :9090; "" or "off" disables it)
//	--log-format         json (default) or text, on stderr
//	--log-level          debug, info (default), warn or error
//	--shutdown-timeout   bound on a clean stop (default 30s)
//	--stuck-after        see Stuck subscriptions (default 5m)
//	--owner              this process's name in checkpoints (default host-pid-random)
//	--config             the configuration file
//
// One subscription's settings, for a daemon run from flags alone:
//
//	--subscription NAME  the subscription (its checkpoint's name)
//	--source             index (default), stream or auto
//	--start              beginning (default), now, a commit id or an RFC 3339 time
//	--policy             park (default), stop or skip
//	--handler            webhook or stdout (a Go handler when omitted)
//	--webhook-url        where the webhook POSTs
//	--webhook-secret     signs the requests; prefer $EVENTSTORE_WEBHOOK_SECRET
//	--webhook-timeout    one request's bound (default 10s)
//	--webhook-batch      commits per request (default 1: one commit, as JSON)
//	--concurrency        aggregates handled at once (default 8)
//	--checkpoint-interval how often the position is saved (default 1s)
//	--max-record-age     how long transient failures are retried (default 6h)
//	--max-attempts       if above 0, also the most handler calls per commit (default 0)
//	--max-elapsed        if above 0, also the longest retrying per commit (default 0)
//	--backoff-initial    first delay before a retry (default 100ms)
//	--backoff-max        longest delay between retries and probes (default 10s)
//	--handler-timeout    one handler call's bound (default 30s)
//	--circuit-open-after aggregates failing in a row that open the circuit (default 3)
//
// Several subscriptions, each with its own handler and policy, are set in
// the configuration file's subscriptions array. A webhook's secret is read
// from an environment variable that the file names (handler.secretEnv), so
// that files hold no secret; handler.headerEnv does the same for headers.
//
// How the sources combine: the file's settings apply first; then every
// flag given and every EVENTSTORE_ variable set overrides them.
// --subscription NAME names the subscription the subscription flags apply
// to: the file's subscription of that name, or a new one added to the
// file's. Without --subscription, the subscription flags apply to the only
// subscription configured, and are an error when there are several. Go
// handlers (Options.Handlers) each run as the subscription of their name,
// with the settings of the file's or the flags' subscription of that name
// (handler type "go" or none), or the defaults.
//
// Run checks every setting before anything starts. An unusable one stops
// it with a *ConfigError that names it as the operator wrote it (a flag,
// a variable with its value, or a path in the file such as
// subscriptions[1].handler.url), exit status 2. Secrets never appear in
// messages, in logs or in --help.
//
// # HTTP endpoints
//
//	/metrics  Prometheus metrics (below)
//	/healthz  200 "ok" while the process serves and its loops make
//	          progress (the monitor's reads of the head return within their
//	          bound, the worker tells its health), also while it stops;
//	          503 naming what hangs otherwise
//	/readyz   200 when every subscription does its job; 503 when one has
//	          stopped or is stuck, when its reads of commits, checkpoint
//	          saves, lease renewals or listings of leases have failed for
//	          --fail-after (10 s) with no success, when it lost its units
//	          through failures rather than handing them over, while its
//	          handler's circuit is open, or when AWS refuses its
//	          credentials. A standby (another daemon holds the
//	          units, the connection works) is ready. The body has one line
//	          per subscription: its name, its state and, when it is not
//	          ready, why. docs/health.md has the table of states.
//
// # Calls that time out
//
// Every DynamoDB and DynamoDB Streams call has an attempt timeout
// (--aws-attempt-timeout, 5 s; a timed-out attempt is retried by the SDK)
// and an overall deadline (--aws-call-timeout, 10 s); connections have
// dial and TLS handshake timeouts (3 s) and a response header timeout
// (the attempt's). A failed attempt is logged as a warning at once (then
// at most every 10 s). A lease renewal is also bounded by the time left on
// the lease.
//
// # Stuck subscriptions
//
// The daemon reads the head of the commit-order index (one Query per
// bucket) every quarter of --stuck-after, at most every 15 s. A
// subscription is stuck when the head has been past its checkpoint for
// --stuck-after while its checkpoint did not move: new commits arrived and
// it does not get through them (a handler that hangs, a receiver that is
// down and a long retry policy). The first move of its checkpoint clears
// it. An index checkpoint is compared with the head exactly; a stream
// checkpoint by time: it is behind when it was last saved more than 10 s
// before the head's commit time. Keep --stuck-after well above the
// checkpoint interval and the source's settle and poll delays (a few
// seconds); the default is 5 minutes.
//
// # Metrics
//
// The registry holds the metrics of package promhooks (per subscription,
// created at start for every subscription, and the store's consumed
// capacity), the Go runtime and process collectors, and the daemon's own:
//
//	name                                                    type     labels               meaning
//	eventstore_daemon_subscription_state                    gauge    subscription, state  1 for the current state (idle, starting, running, stopping, stopped)
//	eventstore_daemon_subscription_ready                    gauge    subscription         1 when /readyz counts the subscription ready
//	eventstore_daemon_subscription_stuck                    gauge    subscription         1 when stuck (see Stuck subscriptions)
//	eventstore_daemon_subscription_behind                   gauge    subscription         1 when the head of the index is past the checkpoint (commits wait for it)
//	eventstore_daemon_subscription_stalled_seconds          gauge    subscription         how long it has been behind with the checkpoint unmoved; stuck from --stuck-after on
//	eventstore_daemon_checkpoint_saved_timestamp_seconds    gauge    subscription         Unix time of the last checkpoint save (saved only when it moves)
//	eventstore_daemon_checkpoint_age_seconds                gauge    subscription         seconds since that save
//	eventstore_daemon_checkpoint_unchanged_seconds          gauge    subscription         seconds since this process last saw the checkpoint move
//	eventstore_daemon_subscription_failing_seconds          gauge    subscription, call   how long calls of one kind (read, save, renew, list) have failed with no success since; 0 while they succeed
//	eventstore_daemon_subscription_auth_failed              gauge    subscription         1 when calls are refused for their credentials or permissions
//	eventstore_daemon_subscription_units_lost               gauge    subscription         1 while the units were lost through failures, not handed over
//	eventstore_daemon_subscription_lag_seconds              gauge    subscription         the subscription's lag from the checkpoints of all its units, whoever holds them (docs/health.md)
//	eventstore_daemon_head_commit_timestamp_seconds         gauge                         commit time of the newest commit in the index
//	eventstore_daemon_head_reads_total                      counter                       reads of the head
//	eventstore_daemon_head_read_errors_total                counter                       reads of the head that failed
//
// Alert on eventstore_daemon_subscription_stuck == 1 and
// eventstore_subscription_stopped == 1; max by (subscription)
// (eventstore_daemon_subscription_lag_seconds) says how fresh a read model
// is, whatever its units and whichever daemons hold them.
//
// # Logs
//
// Logs are structured (log/slog), JSON or text, on stderr: the effective
// configuration at start (one line for the daemon, one per subscription;
// secrets, header values and URL queries left out), the worker's own lines
// (retries, parked commits, stops), and the stop.
//
// # Stopping
//
// The end of Run's context (the first SIGINT or SIGTERM in Main) stops
// cleanly: reading stops, the handlers running drain, the last checkpoints
// are written and released, and Run returns nil (exit status 0), all
// within --shutdown-timeout, of which the final checkpoint writes get a
// third (at most 10 s). /metrics and /healthz answer until the end; the
// listener closes last. A second signal exits at once.
//
// A subscription that stops on its own (policy stop, a checkpoint taken
// over by another process) does not stop the daemon: /readyz and
// eventstore_subscription_stopped report it. When every subscription has
// stopped, Run returns their errors (exit status 1).
package daemon
