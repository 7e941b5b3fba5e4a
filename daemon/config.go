package daemon

import (
	"encoding/json"
	"flag"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Defaults of the settings a zero Config leaves empty.
const (
	DefaultListen             = ":9090"
	DefaultLogFormat          = "json"
	DefaultLogLevel           = "info"
	DefaultShutdownTimeout    = 30 * time.Second
	DefaultStuckAfter         = 5 * time.Minute
	DefaultWebhookTimeout     = 10 * time.Second
	DefaultConcurrency        = 8
	DefaultCheckpointInterval = time.Second
	// DefaultMaxAttempts is no limit: transient failures are retried
	// until DefaultMaxRecordAge (it was 5 before the maximum record age).
	DefaultMaxAttempts = 0
	// DefaultMaxRecordAge, DefaultBackoffInitial, DefaultBackoffMax,
	// DefaultHandlerTimeout and DefaultCircuitOpenAfter are subscribe's
	// RetryPolicy defaults (see docs/delivery.md).
	DefaultMaxRecordAge     = subscribe.DefaultMaxRecordAge
	DefaultBackoffInitial   = subscribe.DefaultInitialBackoff
	DefaultBackoffMax       = subscribe.DefaultMaxBackoff
	DefaultHandlerTimeout   = subscribe.DefaultAttemptTimeout
	DefaultCircuitOpenAfter = subscribe.DefaultCircuitOpenAfter
	// DefaultLeaseDuration, DefaultLeaseRenew and DefaultBalanceEvery are
	// those of the leases by which several daemons share a subscription's
	// units of work (see subscribe.LeaseOptions).
	DefaultLeaseDuration = 20 * time.Second
	DefaultLeaseRenew    = 5 * time.Second
	DefaultBalanceEvery  = 5 * time.Second
	// DefaultFailAfter is how long reads, checkpoint saves, lease
	// renewals or lease listings may fail before /readyz says so (see
	// docs/health.md).
	DefaultFailAfter = 10 * time.Second
	// DefaultAWSAttemptTimeout and DefaultAWSCallTimeout bound each
	// attempt of a DynamoDB or DynamoDB Streams call and the whole call,
	// retries included.
	DefaultAWSAttemptTimeout = awscfg.DefaultAttemptTimeout
	DefaultAWSCallTimeout    = awscfg.DefaultCallTimeout
	// ListenOff as Config.Listen disables the HTTP listener.
	ListenOff = "off"
	// EnvPrefix starts the name of every setting's environment variable:
	// --checkpoint-table is EVENTSTORE_CHECKPOINT_TABLE.
	EnvPrefix = "EVENTSTORE_"
)

// Handler types of HandlerConfig.Type.
const (
	HandlerWebhook = "webhook" // POST each commit to a URL (package webhook)
	HandlerStdout  = "stdout"  // one JSON line per commit on Options.Stdout
	HandlerGo      = "go"      // the Go handler registered under the subscription's name
)

// Config is every setting of the daemon. Its JSON form, with the tags
// below, is the configuration file (see LoadFile); its flag form is
// RegisterFlags'. The zero value of a field means its default. It is a
// plain value: copy it freely.
type Config struct {
	// Table is the commits table. Default store.DefaultTableName.
	Table string `json:"table,omitempty"`
	// Index is the commit-order index. Default store.DefaultIndexName.
	Index string `json:"index,omitempty"`
	// Buckets is the number of index buckets, 1 to store.MaxIndexBuckets;
	// every writer and reader of a table must use the same. Default 1.
	Buckets int `json:"buckets,omitempty"`
	// Endpoint is the DynamoDB (and DynamoDB Streams) endpoint URL.
	// Default: the AWS SDK's (AWS_ENDPOINT_URL_DYNAMODB, the profile).
	Endpoint string `json:"endpoint,omitempty"`
	// Region is the AWS region. Default: the AWS SDK's (AWS_REGION, the
	// profile).
	Region string `json:"region,omitempty"`
	// CheckpointTable keeps checkpoints and parked commits. Default
	// dynamocheckpoint.DefaultTableName.
	CheckpointTable string `json:"checkpointTable,omitempty"`
	// Listen is the HTTP address of /metrics, /healthz and /readyz.
	// Default ":9090"; "off" disables the listener.
	Listen string `json:"listen,omitempty"`
	// LogFormat is "json" (the default) or "text".
	LogFormat string `json:"logFormat,omitempty"`
	// LogLevel is "debug", "info" (the default), "warn" or "error".
	LogLevel string `json:"logLevel,omitempty"`
	// ShutdownTimeout bounds a clean stop, from the end of Run's context
	// to Run's return: handlers drain, then the last checkpoints are
	// written. Default 30 s.
	ShutdownTimeout Duration `json:"shutdownTimeout,omitempty"`
	// StuckAfter is how long a subscription's checkpoint may stay put
	// behind the head of the commit-order index before the subscription
	// counts as stuck (see the package documentation). Default 5 minutes.
	StuckAfter Duration `json:"stuckAfter,omitempty"`
	// Owner names this process in checkpoints. Default: host name,
	// process id and a random suffix.
	Owner string `json:"owner,omitempty"`
	// LeaseDuration is how long a unit of work (a subscription, or one
	// index bucket of it) stays held by this process without a renewal:
	// after a crash, others take its units within about this time.
	// Default 20 s.
	LeaseDuration Duration `json:"leaseDuration,omitempty"`
	// LeaseRenew is how often held leases are renewed: less than half
	// LeaseDuration. Default 5 s.
	LeaseRenew Duration `json:"leaseRenew,omitempty"`
	// BalanceEvery is how often this process looks for free, expired or
	// unevenly spread units, and takes or gives one. Default 5 s.
	BalanceEvery Duration `json:"balanceEvery,omitempty"`
	// FailAfter is how long reads of commits, checkpoint saves, lease
	// renewals or listings of leases may fail without a success before
	// /readyz answers 503 (see docs/health.md). Default 10 s.
	FailAfter Duration `json:"failAfter,omitempty"`
	// AWSAttemptTimeout bounds one attempt of a DynamoDB or DynamoDB
	// Streams call (the SDK retries a timed-out attempt). Default 5 s.
	AWSAttemptTimeout Duration `json:"awsAttemptTimeout,omitempty"`
	// AWSCallTimeout bounds a whole call, retries included. Default 10 s;
	// at least AWSAttemptTimeout.
	AWSCallTimeout Duration `json:"awsCallTimeout,omitempty"`
	// Subscriptions are the subscriptions to run, besides those of
	// Options.Handlers and Options.BatchHandlers that no entry names.
	Subscriptions []SubscriptionConfig `json:"subscriptions,omitempty"`

	// ConfigFile is a configuration file (see LoadFile) read by Run: its
	// settings apply where the Config (or, after RegisterFlags, a flag or
	// an environment variable) sets none. Default none.
	ConfigFile string `json:"-"`

	// flags is set by RegisterFlags: what the command line and the
	// environment set.
	flags *flagState
}

// SubscriptionConfig is one subscription.
type SubscriptionConfig struct {
	// Name identifies the subscription and its checkpoint. Required.
	Name string `json:"name"`
	// Source is "index" (the default), "stream" or "auto" (see
	// subscribe.ParseSourceMode).
	Source string `json:"source,omitempty"`
	// Start is where a subscription with no checkpoint begins:
	// "beginning" (the default), "now", a commit id or an RFC 3339 time
	// (see subscribe.ParseStart).
	Start string `json:"start,omitempty"`
	// Policy is what happens to a commit still failing after its retries:
	// "park" (the default), "stop" or "skip" (see subscribe.ParsePolicy).
	Policy string `json:"policy,omitempty"`
	// Handler is what handles the commits.
	Handler HandlerConfig `json:"handler"`
	// Concurrency is how many aggregates are handled at once. Default 8.
	Concurrency int `json:"concurrency,omitempty"`
	// CheckpointInterval is how often the position is saved while it
	// moves. Default 1 s.
	CheckpointInterval Duration `json:"checkpointInterval,omitempty"`
	// MaxRecordAge is how long a commit's transient failures are retried,
	// from the later of its commit time and the moment it was read
	// (subscribe.RetryPolicy.MaxRecordAge), before Policy applies.
	// Default 6 h.
	MaxRecordAge Duration `json:"maxRecordAge,omitempty"`
	// MaxAttempts, when positive, also bounds the calls of the handler for
	// one commit, the first included, before Policy applies. Default 0: no
	// limit but MaxRecordAge.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// MaxElapsed, when positive, also bounds the time a commit's transient
	// failures are retried, from its first attempt. Default 0: no limit
	// but MaxRecordAge.
	MaxElapsed Duration `json:"maxElapsed,omitempty"`
	// BackoffInitial and BackoffMax bound the delays between retries,
	// which double from BackoffInitial up to BackoffMax, with jitter; an
	// open circuit's probes too. Defaults 100 ms and 10 s.
	BackoffInitial Duration `json:"backoffInitial,omitempty"`
	BackoffMax     Duration `json:"backoffMax,omitempty"`
	// HandlerTimeout bounds one call of the handler
	// (subscribe.RetryPolicy.AttemptTimeout). Default 30 s, or a webhook's
	// timeout plus 5 s when that is longer.
	HandlerTimeout Duration `json:"handlerTimeout,omitempty"`
	// CircuitOpenAfter is how many aggregates failing transiently in a
	// row open the subscription's circuit
	// (subscribe.RetryPolicy.CircuitOpenAfter); negative never opens it.
	// Default 3.
	CircuitOpenAfter int `json:"circuitOpenAfter,omitempty"`
	// Settle is how far behind now the index is read
	// (subscribe.IndexOptions.Settle); 0 means its default, 1 s.
	Settle Duration `json:"settle,omitempty"`
	// Overlap is how far behind that the index is read a second time, for
	// commits that turn up late (subscribe.IndexOptions.Overlap); 0 means
	// its default, 30 s.
	Overlap Duration `json:"overlap,omitempty"`
	// StreamMargin is the stream source's allowance for writers' clocks
	// (subscribe.StreamOptions.Margin); 0 means its default, 10 s.
	StreamMargin Duration `json:"streamMargin,omitempty"`
	// Corrupt is what happens to an item of the commits table that is not
	// a well-formed commit, and to the version after a gap that cannot be
	// filled: "park" (the default) or "skip" (see
	// subscribe.ParseCorruptPolicy and docs/items.md).
	Corrupt string `json:"corrupt,omitempty"`
	// GapTimeout is how long an aggregate's versions wait behind a version
	// missing from the table before Corrupt applies
	// (subscribe.Subscription.GapTimeout). Default 30 s.
	GapTimeout Duration `json:"gapTimeout,omitempty"`
}

// HandlerConfig says what handles a subscription's commits.
type HandlerConfig struct {
	// Type is "webhook", "stdout" or "go". Default "go": the Go handler
	// registered under the subscription's name in Options.Handlers or
	// Options.BatchHandlers.
	Type string `json:"type,omitempty"`
	// URL is where a webhook POSTs commits (http or https). Required for a
	// webhook.
	URL string `json:"url,omitempty"`
	// Secret signs a webhook's requests (see package webhook): "whsec_"
	// and the base64 of the key, or a raw secret whose bytes are the key;
	// for a rotation, several "whsec_" secrets separated by spaces, the
	// current one first (webhook.ParseSecrets). Never logged. Not allowed
	// in a configuration file: use SecretEnv.
	Secret string `json:"secret,omitempty"`
	// SecretEnv names the environment variable that holds Secret, which
	// must then be set. Default none.
	SecretEnv string `json:"secretEnv,omitempty"`
	// Timeout bounds one webhook request. Default 10 s.
	Timeout Duration `json:"timeout,omitempty"`
	// Batch is the most commits of one aggregate a webhook sends in one
	// request: 1 (the default) sends each commit alone, as the JSON of
	// store.Commit; more sends {"commits":[…]} (webhook.Batch). For a Go
	// BatchHandler it is subscribe.Subscription.MaxBatch (default 100).
	Batch int `json:"batch,omitempty"`
	// Header is sent with every webhook request. Values are never logged.
	Header map[string]string `json:"header,omitempty"`
	// HeaderEnv adds headers whose values come from environment
	// variables: header name to variable name. Each variable must be set.
	HeaderEnv map[string]string `json:"headerEnv,omitempty"`
	// AllowInsecure allows a plain http URL to a host that is not a
	// loopback one (webhook.Config.AllowInsecure). Default false: such a
	// URL is refused.
	AllowInsecure bool `json:"allowInsecure,omitempty"`
	// LegacySignature also sends the deprecated X-Eventstore-Signature
	// header (webhook.Config.LegacySignature), while receivers move to the
	// Standard Webhooks signature. Default false.
	LegacySignature bool `json:"legacySignature,omitempty"`
}

// Duration is a time.Duration written as Go writes durations ("30s",
// "1m30s", "250ms") in JSON, in flags and in environment variables.
type Duration time.Duration

// String returns the duration as time.Duration.String does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration such as "30s" or "1m30s". In a JSON
// document, an error names the field.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &json.UnmarshalTypeError{Value: strconv.Quote(string(b)), Type: reflect.TypeFor[Duration]()}
	}
	*d = Duration(v)
	return nil
}

// kind is the type of a setting's value.
type kind int

const (
	kString kind = iota
	kInt
	kDuration
	kBool
)

// setting is one flag (and environment variable) and where it goes: a
// field of Config (top) or of SubscriptionConfig (sub).
type setting struct {
	flag  string // flag name
	path  string // JSON path in its struct, e.g. "checkpointTable", "handler.url"
	kind  kind
	def   string // default as the flag shows it; "" for none
	usage string // with a `NAME` for the value
	// top or sub points at the field.
	top func(c *Config) any
	sub func(s *SubscriptionConfig) any
	// emptyOK: an empty string given explicitly means the default (or,
	// for listen, off) rather than an error.
	emptyOK bool
	// secret: never shown, and the environment variable is not the flag's
	// default (which --help would print) but read when the flag is absent.
	secret bool
}

func (s *setting) env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(s.flag, "-", "_"))
}

// settings lists every flag. Order does not matter: flag sorts them.
var settings = []*setting{
	{flag: "config", kind: kString, usage: "read settings from the JSON configuration `FILE`; flags and environment\nvariables override it", top: func(c *Config) any { return &c.ConfigFile }, emptyOK: true},
	{flag: "table", path: "table", kind: kString, def: store.DefaultTableName, usage: "commits table `NAME`", top: func(c *Config) any { return &c.Table }},
	{flag: "index", path: "index", kind: kString, def: store.DefaultIndexName, usage: "commit-order global secondary index `NAME`", top: func(c *Config) any { return &c.Index }},
	{flag: "buckets", path: "buckets", kind: kInt, def: "1", usage: "number `N` of index buckets (1 to " + strconv.Itoa(store.MaxIndexBuckets) + "); every writer and reader of a\ntable must use the same", top: func(c *Config) any { return &c.Buckets }},
	{flag: "endpoint", path: "endpoint", kind: kString, usage: "DynamoDB endpoint `URL`, e.g. http://localhost:8000 (default: the SDK's,\nfrom $AWS_ENDPOINT_URL_DYNAMODB or the profile); on a loopback address the\nresponse checksum is not checked (DynamoDB Local's does not match)", top: func(c *Config) any { return &c.Endpoint }, emptyOK: true},
	{flag: "region", path: "region", kind: kString, usage: "AWS `REGION` (default: the SDK's, from $AWS_REGION or the profile)", top: func(c *Config) any { return &c.Region }, emptyOK: true},
	{flag: "checkpoint-table", path: "checkpointTable", kind: kString, def: dynamocheckpoint.DefaultTableName, usage: "checkpoints and parked commits table `NAME`", top: func(c *Config) any { return &c.CheckpointTable }},
	{flag: "listen", path: "listen", kind: kString, def: DefaultListen, usage: "HTTP `ADDRESS` of /metrics, /healthz and /readyz; \"\" or \"off\" disables it", top: func(c *Config) any { return &c.Listen }, emptyOK: true},
	{flag: "log-format", path: "logFormat", kind: kString, def: DefaultLogFormat, usage: "log `FORMAT` on stderr: json or text", top: func(c *Config) any { return &c.LogFormat }},
	{flag: "log-level", path: "logLevel", kind: kString, def: DefaultLogLevel, usage: "lowest `LEVEL` logged: debug, info, warn or error", top: func(c *Config) any { return &c.LogLevel }},
	{flag: "shutdown-timeout", path: "shutdownTimeout", kind: kDuration, def: DefaultShutdownTimeout.String(), usage: "bound on a clean stop (SIGTERM, SIGINT): handlers drain and the last\ncheckpoints are written within this `DURATION`", top: func(c *Config) any { return &c.ShutdownTimeout }},
	{flag: "stuck-after", path: "stuckAfter", kind: kDuration, def: DefaultStuckAfter.String(), usage: "a subscription whose checkpoint stays put for this `DURATION` while\ncommits wait for it is stuck (/readyz, metric)", top: func(c *Config) any { return &c.StuckAfter }},
	{flag: "lease-duration", path: "leaseDuration", kind: kDuration, def: DefaultLeaseDuration.String(), usage: "`DURATION` a unit of work (a subscription, an index bucket of it, or a\nstream shard) stays held without renewal; after a crash, other daemons\ntake its units then", top: func(c *Config) any { return &c.LeaseDuration }},
	{flag: "lease-renew", path: "leaseRenew", kind: kDuration, def: DefaultLeaseRenew.String(), usage: "`DURATION` between renewals of held leases; under half --lease-duration", top: func(c *Config) any { return &c.LeaseRenew }},
	{flag: "balance-every", path: "balanceEvery", kind: kDuration, def: DefaultBalanceEvery.String(), usage: "`DURATION` between looks at how the units are spread among the daemons\nof a subscription (taking free or expired ones, evening out)", top: func(c *Config) any { return &c.BalanceEvery }},
	{flag: "fail-after", path: "failAfter", kind: kDuration, def: DefaultFailAfter.String(), usage: "`DURATION` that reads, checkpoint saves or lease renewals may fail\nwithout a success before /readyz answers 503", top: func(c *Config) any { return &c.FailAfter }},
	{flag: "aws-attempt-timeout", path: "awsAttemptTimeout", kind: kDuration, def: DefaultAWSAttemptTimeout.String(), usage: "`DURATION` bound on one attempt of a DynamoDB or DynamoDB Streams call;\na timed-out attempt is retried", top: func(c *Config) any { return &c.AWSAttemptTimeout }},
	{flag: "aws-call-timeout", path: "awsCallTimeout", kind: kDuration, def: DefaultAWSCallTimeout.String(), usage: "`DURATION` bound on a whole DynamoDB or DynamoDB Streams call, retries\nincluded", top: func(c *Config) any { return &c.AWSCallTimeout }},
	{flag: "owner", path: "owner", kind: kString, usage: "`NAME` of this process in checkpoints (default: host name, process id\nand a random suffix)", top: func(c *Config) any { return &c.Owner }, emptyOK: true},

	{flag: "subscription", path: "name", kind: kString, usage: "run the subscription `NAME` that --source, --start, --policy, --handler,\n--webhook-*, --concurrency, --checkpoint-interval and the retry flags set;\nwith --config, they change the file's subscription of that name (or add it)", sub: func(s *SubscriptionConfig) any { return &s.Name }},
	{flag: "source", path: "source", kind: kString, def: "index", usage: "`MODE` of reading commits: index (poll the commit-order index), stream\n(the table's DynamoDB stream) or auto (the index to catch up, then the\nstream)", sub: func(s *SubscriptionConfig) any { return &s.Source }},
	{flag: "start", path: "start", kind: kString, def: "beginning", usage: "start `POINT` of a subscription with no checkpoint: beginning, now, a\ncommit id (YYYYMMDDHHmmssSSS[:aggregateId]) or an RFC 3339 time", sub: func(s *SubscriptionConfig) any { return &s.Start }},
	{flag: "policy", path: "policy", kind: kString, def: "park", usage: "`POLICY` for a commit that failed permanently (a 4xx answer) or past\n--max-record-age: park (set it and its aggregate's later commits aside),\nstop (the subscription) or skip (it)", sub: func(s *SubscriptionConfig) any { return &s.Policy }},
	{flag: "handler", path: "handler.type", kind: kString, usage: "handler `TYPE`: webhook (POST each commit to --webhook-url) or stdout\n(one JSON line per commit); a Go handler of the program when omitted", sub: func(s *SubscriptionConfig) any { return &s.Handler.Type }},
	{flag: "webhook-url", path: "handler.url", kind: kString, usage: "`URL` the webhook POSTs each commit to", sub: func(s *SubscriptionConfig) any { return &s.Handler.URL }},
	{flag: "webhook-secret", path: "handler.secret", kind: kString, usage: "`SECRET` that signs webhook requests (Standard Webhooks webhook-signature):\nwhsec_ and the base64 of the key, or a raw secret whose bytes are the key;\nfor a rotation, the new and the old whsec_ secrets separated by a space;\nprefer $EVENTSTORE_WEBHOOK_SECRET, as flags show in process lists", sub: func(s *SubscriptionConfig) any { return &s.Handler.Secret }, secret: true},
	{flag: "webhook-timeout", path: "handler.timeout", kind: kDuration, def: DefaultWebhookTimeout.String(), usage: "`DURATION` bound on one webhook request", sub: func(s *SubscriptionConfig) any { return &s.Handler.Timeout }},
	{flag: "webhook-batch", path: "handler.batch", kind: kInt, def: "1", usage: "most commits `N` of one aggregate per webhook request; above 1 the body\nis {\"commits\":[…]}", sub: func(s *SubscriptionConfig) any { return &s.Handler.Batch }},
	{flag: "concurrency", path: "concurrency", kind: kInt, def: strconv.Itoa(DefaultConcurrency), usage: "number `N` of aggregates handled at once", sub: func(s *SubscriptionConfig) any { return &s.Concurrency }},
	{flag: "checkpoint-interval", path: "checkpointInterval", kind: kDuration, def: DefaultCheckpointInterval.String(), usage: "`DURATION` between checkpoint saves while the position moves; bounds\nthe duplicates after a crash", sub: func(s *SubscriptionConfig) any { return &s.CheckpointInterval }},
	{flag: "settle", path: "settle", kind: kDuration, def: "1s", usage: "`DURATION` behind now that the commit-order index is read: commits\nturning up later than that are read by the overlap", sub: func(s *SubscriptionConfig) any { return &s.Settle }},
	{flag: "overlap", path: "overlap", kind: kDuration, def: "30s", usage: "`DURATION` behind --settle that the index is read again for late\ncommits; a stream subscription's catch-up hands over to the stream\nabout --settle + --overlap + --stream-margin after it has caught up", sub: func(s *SubscriptionConfig) any { return &s.Overlap }},
	{flag: "stream-margin", path: "streamMargin", kind: kDuration, def: "10s", usage: "`DURATION` the stream source allows for writers' clocks", sub: func(s *SubscriptionConfig) any { return &s.StreamMargin }},
	{flag: "webhook-allow-insecure", path: "handler.allowInsecure", kind: kBool, def: "false", usage: "allow a plain http --webhook-url to a host that is not a loopback one: the\ncommits, headers and signature then cross the network in the clear", sub: func(s *SubscriptionConfig) any { return &s.Handler.AllowInsecure }},
	{flag: "webhook-legacy-signature", path: "handler.legacySignature", kind: kBool, def: "false", usage: "also send the deprecated X-Eventstore-Signature header (HMAC of the body\nonly), while receivers move to the Standard Webhooks webhook-signature", sub: func(s *SubscriptionConfig) any { return &s.Handler.LegacySignature }},
	{flag: "corrupt", path: "corrupt", kind: kString, def: "park", usage: "`POLICY` for an item of the commits table that is not a well-formed\ncommit, and for the version after a gap that --gap-timeout does not see\nfilled: park (set it and its aggregate's later commits aside) or skip\n(report it and go on); see docs/items.md", sub: func(s *SubscriptionConfig) any { return &s.Corrupt }},
	{flag: "gap-timeout", path: "gapTimeout", kind: kDuration, def: subscribe.DefaultGapTimeout.String(), usage: "`DURATION` an aggregate's versions wait behind a version missing from\nthe table before --corrupt applies to the gap", sub: func(s *SubscriptionConfig) any { return &s.GapTimeout }},
	{flag: "max-record-age", path: "maxRecordAge", kind: kDuration, def: DefaultMaxRecordAge.String(), usage: "`DURATION` a commit's transient failures (refused connections, timeouts,\n5xx, 408, 425, 429) are retried, from its commit or the moment it was\nread, whichever is later, before --policy applies", sub: func(s *SubscriptionConfig) any { return &s.MaxRecordAge }},
	{flag: "max-attempts", path: "maxAttempts", kind: kInt, def: strconv.Itoa(DefaultMaxAttempts), usage: "when above 0, also the most handler calls `N` for one commit, the first\nincluded, before --policy applies; 0: no limit but --max-record-age", sub: func(s *SubscriptionConfig) any { return &s.MaxAttempts }},
	{flag: "max-elapsed", path: "maxElapsed", kind: kDuration, def: "0s", usage: "when above 0, also the longest `DURATION` a commit's transient failures\nare retried from its first attempt; 0: no limit but --max-record-age", sub: func(s *SubscriptionConfig) any { return &s.MaxElapsed }},
	{flag: "backoff-initial", path: "backoffInitial", kind: kDuration, def: DefaultBackoffInitial.String(), usage: "first delay `DURATION` before a retry; delays double, with jitter", sub: func(s *SubscriptionConfig) any { return &s.BackoffInitial }},
	{flag: "backoff-max", path: "backoffMax", kind: kDuration, def: DefaultBackoffMax.String(), usage: "longest delay `DURATION` between retries, and between probes of an open\ncircuit: a receiver back from an outage is called again within it", sub: func(s *SubscriptionConfig) any { return &s.BackoffMax }},
	{flag: "handler-timeout", path: "handlerTimeout", kind: kDuration, def: DefaultHandlerTimeout.String(), usage: "`DURATION` bound on one call of the handler (a webhook's: at least\n--webhook-timeout + 5s unless given)", sub: func(s *SubscriptionConfig) any { return &s.HandlerTimeout }},
	{flag: "circuit-open-after", path: "circuitOpenAfter", kind: kInt, def: strconv.Itoa(DefaultCircuitOpenAfter), usage: "number `N` of aggregates failing transiently in a row, with no success,\nthat open the subscription's circuit (then one probe at a time calls the\nhandler); -1 never opens it", sub: func(s *SubscriptionConfig) any { return &s.CircuitOpenAfter }},
}

func settingByFlag(name string) *setting {
	for _, s := range settings {
		if s.flag == name {
			return s
		}
	}
	return nil
}

// flagState is what RegisterFlags learnt from the environment, and where
// the subscription flags are bound.
type flagState struct {
	fs  *flag.FlagSet
	env func(string) string
	sub SubscriptionConfig
	// envErr holds, by flag name, an environment variable that is set but
	// unusable; it counts only when the flag is not given.
	envErr map[string]*ConfigError
}

// given reports whether the flag was on the command line.
func (f *flagState) given(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			found = true
		}
	})
	return found
}

// origin returns where the setting's value comes from: the flag, its
// environment variable, or neither (ok false).
func (f *flagState) origin(s *setting) (o origin, ok bool) {
	if f.given(s.flag) {
		return origin{name: "--" + s.flag, flag: true}, true
	}
	if f.env(s.env()) != "" {
		return origin{name: s.env(), env: true}, true
	}
	return origin{}, false
}

// RegisterFlags defines a flag on fs for every setting, bound to c's fields
// (the subscription flags to a subscription kept inside c): parse fs before
// using c. Each flag --foo-bar takes its default from the environment
// variable EVENTSTORE_FOO_BAR, read through env (os.Getenv when nil); a
// flag given wins. Every usage line names its variable, and the defaults
// show in the flag set's help, except --webhook-secret's, which is never
// shown.
//
// A variable that is set to a value the flag cannot take is reported by
// Run, as a *ConfigError naming the variable, unless the flag is given.
func (c *Config) RegisterFlags(fs *flag.FlagSet, env func(string) string) {
	if env == nil {
		env = osGetenv
	}
	st := &flagState{fs: fs, env: env, envErr: map[string]*ConfigError{}}
	c.flags = st
	for _, s := range settings {
		var p any
		if s.top != nil {
			p = s.top(c)
		} else {
			p = s.sub(&st.sub)
		}
		usage := s.usage
		if !s.secret {
			usage += " ($" + s.env() + ")"
		}
		raw := s.def
		if v := env(s.env()); v != "" && !s.secret {
			if err := checkKind(s.kind, v); err != nil {
				st.envErr[s.flag] = &ConfigError{Setting: s.env(), Value: strconv.Quote(v), Reason: err.Error(), env: true}
			} else {
				raw = v
			}
		}
		switch s.kind {
		case kString:
			fs.StringVar(p.(*string), s.flag, raw, usage)
		case kInt:
			n, _ := strconv.Atoi(cmpOr(raw, "0"))
			fs.IntVar(p.(*int), s.flag, n, usage)
		case kDuration:
			d, _ := time.ParseDuration(cmpOr(raw, "0s"))
			*p.(*Duration) = Duration(d)
			fs.Var((*durationFlag)(p.(*Duration)), s.flag, usage)
		case kBool:
			b, _ := strconv.ParseBool(cmpOr(raw, "false"))
			fs.BoolVar(p.(*bool), s.flag, b, usage)
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkKind reports whether v is a value of kind k.
func checkKind(k kind, v string) error {
	switch k {
	case kInt:
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("want an integer")
		}
	case kDuration:
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("want a duration such as 30s or 1m30s")
		}
	case kBool:
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("want true or false")
		}
	}
	return nil
}

// durationFlag is a Duration as a flag.Value.
type durationFlag Duration

func (d *durationFlag) String() string { return Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 1m30s")
	}
	*d = durationFlag(v)
	return nil
}

// Get returns the time.Duration, so that help shows the default unquoted.
func (d *durationFlag) Get() any { return time.Duration(*d) }
