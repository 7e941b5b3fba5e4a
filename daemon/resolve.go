package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/webhook"
)

var osGetenv = os.Getenv

// Bounds of the settings, checked before anything starts.
const (
	maxConcurrency = 1000
	maxBatch       = 1000 // subscribe's default MaxInFlight
	minShutdown    = 100 * time.Millisecond
)

// plan is a configuration checked and ready to run.
type plan struct {
	cfg       Config // every top-level setting, defaults applied
	level     slog.Level
	subs      []planSub
	anyStream bool
	// bucketsAt is where the bucket count was set, for the error of a
	// count the table disagrees with.
	bucketsAt origin
}

// planSub is one subscription ready to register.
type planSub struct {
	conf SubscriptionConfig // defaults applied; Secret and headers resolved
	sub  subscribe.Subscription
	// header names of the webhook's headers, for the log (values never).
	headerNames []string
}

// subEntry is a subscription while the configuration is merged.
type subEntry struct {
	conf SubscriptionConfig
	// base is the entry's path ("subscriptions[1]") in file, or in the
	// Config built in Go when file is ""; "" for an entry made by flags or
	// for a Go handler.
	base, file string
	// overrides names the flag or variable that set a field, by path.
	overrides map[string]origin
	// fromFlags: the entry was made by --subscription.
	fromFlags bool
	// keys are the settings the configuration file writes, by their path
	// in it.
	keys fileKeys
}

// at returns where the entry's field path ("handler.url") was set.
func (e *subEntry) at(path string) origin {
	if o, ok := e.overrides[path]; ok {
		return o
	}
	if e.base != "" {
		name := e.base + "." + path
		return origin{name: name, file: e.file, set: e.keys[name]}
	}
	if e.fromFlags {
		for _, s := range settings {
			if s.sub != nil && s.path == path {
				return origin{name: "--" + s.flag}
			}
		}
	}
	return origin{name: fmt.Sprintf("subscription %q %s", e.conf.Name, path)}
}

// resolve merges the configuration file, cfg (its flags and environment
// variables, when RegisterFlags made it) and the Go handlers, applies the
// defaults and checks every setting. Every error is a *ConfigError.
func resolve(cfg Config, opts Options) (*plan, error) {
	env := opts.Env
	if env == nil {
		env = osGetenv
	}
	f := cfg.flags
	if f != nil {
		for _, name := range slices.Sorted(maps.Keys(f.envErr)) {
			if !f.given(name) {
				return nil, f.envErr[name]
			}
		}
	}

	// The file first: everything else overrides it.
	var eff Config
	origins := map[string]origin{}
	var subs []*subEntry
	if cfg.ConfigFile != "" {
		fc, keys, err := loadFile(cfg.ConfigFile)
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) && ce.Setting == "" {
				o := origin{name: "ConfigFile"}
				if f != nil {
					o, _ = f.origin(settingByFlag("config"))
				}
				return nil, o.errAt(strconv.Quote(cfg.ConfigFile), ce.Reason)
			}
			return nil, err
		}
		eff = fc
		eff.Subscriptions = nil
		for _, s := range settings {
			if s.top == nil || s.path == "" || (!keys[s.path] && isZero(s.top(&fc))) {
				continue
			}
			o := origin{name: s.path, file: cfg.ConfigFile, set: true}
			if v, isStr := s.top(&fc).(*string); isStr && *v == "" && !s.emptyOK {
				// As --table "" is.
				return nil, o.errAt(`""`, "want a value (leave the setting out for its default)")
			}
			origins[s.path] = o
		}
		for i, sc := range fc.Subscriptions {
			subs = append(subs, &subEntry{conf: sc, base: fmt.Sprintf("subscriptions[%d]", i), file: cfg.ConfigFile, keys: keys})
		}
	}

	// Top-level settings of cfg: those its flags or variables set, or,
	// for a Config built in Go, those not zero.
	for _, s := range settings {
		if s.top == nil || s.path == "" {
			continue
		}
		p := s.top(&cfg)
		var o origin
		if f != nil {
			var ok bool
			if o, ok = f.origin(s); !ok {
				continue
			}
			if v, isStr := p.(*string); isStr && *v == "" {
				if !s.emptyOK {
					return nil, o.errAt(`""`, "want a value")
				}
				if s.flag == "listen" {
					*v = ListenOff
				}
			}
		} else {
			if isZero(p) {
				continue
			}
			o = origin{name: s.path}
		}
		copyValue(s.top(&eff), p)
		origins[s.path] = o
	}
	topAt := func(path string) origin {
		if o, ok := origins[path]; ok {
			return o
		}
		if f != nil {
			// Not set: named as the flag that would set it.
			for _, s := range settings {
				if s.top != nil && s.path == path {
					return origin{name: "--" + s.flag}
				}
			}
		}
		return origin{name: path}
	}

	for i, sc := range cfg.Subscriptions {
		subs = append(subs, &subEntry{conf: sc, base: fmt.Sprintf("subscriptions[%d]", i)})
	}
	goNames := slices.Sorted(maps.Keys(opts.Handlers))
	for _, n := range slices.Sorted(maps.Keys(opts.BatchHandlers)) {
		if _, dup := opts.Handlers[n]; dup {
			return nil, &ConfigError{Setting: "Options.BatchHandlers", Value: strconv.Quote(n), Reason: "also in Options.Handlers: register one handler per subscription"}
		}
		goNames = append(goNames, n)
	}
	slices.Sort(goNames)
	find := func(name string) *subEntry {
		for _, e := range subs {
			if e.conf.Name == name {
				return e
			}
		}
		return nil
	}

	// The subscription of the flags.
	if f != nil {
		if err := applySubFlags(f, env, &subs, find, goNames); err != nil {
			return nil, err
		}
	}

	// A subscription for each Go handler no entry names.
	for _, n := range goNames {
		e := find(n)
		if e == nil {
			subs = append(subs, &subEntry{conf: SubscriptionConfig{Name: n, Handler: HandlerConfig{Type: HandlerGo}}})
			continue
		}
		if t := e.conf.Handler.Type; t != "" && t != HandlerGo {
			return nil, e.at("handler.type").errAt(strconv.Quote(t), fmt.Sprintf("a Go handler is registered as %q: its type is %q (or none)", n, HandlerGo))
		}
	}

	p := &plan{bucketsAt: topAt("buckets")}
	if err := checkTop(&eff, topAt, p); err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		o := origin{name: "subscriptions"}
		if f != nil {
			o = origin{name: "--subscription"}
		}
		return nil, o.errAt("", "no subscription to run: give --subscription NAME and --handler, or a --config file with subscriptions")
	}
	seen := map[string]*subEntry{}
	stdout := JSONLines(opts.Stdout)
	for _, e := range subs {
		ps, err := checkSub(e, env, opts, goNames, stdout)
		if err != nil {
			return nil, err
		}
		if prev := seen[e.conf.Name]; prev != nil {
			return nil, e.at("name").errAt(strconv.Quote(e.conf.Name), "a second subscription of this name (the first: "+prev.at("name").where()+")")
		}
		seen[e.conf.Name] = e
		if ps.sub.Source != subscribe.SourceIndex {
			p.anyStream = true
		}
		p.subs = append(p.subs, ps)
	}
	p.cfg = eff
	return p, nil
}

// where names the origin for a message.
func (o origin) where() string {
	if o.file != "" {
		return o.file + ": " + o.name
	}
	return o.name
}

// applySubFlags applies the subscription flags (and variables) given to the
// subscription --subscription names, adding it if no entry has that name,
// or, without --subscription, to the only subscription there is.
func applySubFlags(f *flagState, env func(string) string, subs *[]*subEntry, find func(string) *subEntry, goNames []string) error {
	var given []*setting
	origins := map[string]origin{}
	for _, s := range settings {
		if s.sub == nil {
			continue
		}
		o, ok := f.origin(s)
		if !ok {
			continue
		}
		if s.secret {
			o.noValueOut = true
			if o.env {
				*s.sub(&f.sub).(*string) = env(s.env())
			}
		}
		given = append(given, s)
		origins[s.path] = o
	}
	if len(given) == 0 {
		return nil
	}
	var target *subEntry
	if o, ok := origins["name"]; ok {
		name := f.sub.Name
		if name == "" {
			return o.errAt("", "want a subscription name")
		}
		if target = find(name); target == nil {
			target = &subEntry{conf: SubscriptionConfig{Name: name}, fromFlags: true}
			*subs = append(*subs, target)
		}
	} else {
		var names []string
		for _, e := range *subs {
			names = append(names, e.conf.Name)
		}
		for _, n := range goNames {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		first := origins[given[0].path]
		switch len(names) {
		case 0:
			return first.errAt("", "no subscription to apply it to: name one with --subscription NAME")
		case 1:
			if target = find(names[0]); target == nil {
				target = &subEntry{conf: SubscriptionConfig{Name: names[0]}, fromFlags: true}
				*subs = append(*subs, target)
			}
		default:
			return first.errAt("", fmt.Sprintf("%d subscriptions are configured (%s): say which with --subscription NAME", len(names), strings.Join(names, ", ")))
		}
	}
	if target.overrides == nil {
		target.overrides = map[string]origin{}
	}
	for _, s := range given {
		if s.path == "name" {
			continue
		}
		p := s.sub(&f.sub)
		if v, isStr := p.(*string); isStr && *v == "" {
			// Given empty: the default.
			if !origins[s.path].flag {
				continue
			}
		}
		copyValue(s.sub(&target.conf), p)
		target.overrides[s.path] = origins[s.path]
	}
	return nil
}

// checkTop applies the defaults to the top-level settings and checks them.
func checkTop(c *Config, at func(string) origin, p *plan) error {
	explicit := func(path string) bool { return at(path).explicit() }
	// An explicit zero (a flag given 0) is an error, not the default.
	if c.Table == "" {
		c.Table = store.DefaultTableName
	}
	if c.Index == "" {
		c.Index = store.DefaultIndexName
	}
	if c.CheckpointTable == "" {
		c.CheckpointTable = dynamocheckpoint.DefaultTableName
	}
	if c.Buckets == 0 && !explicit("buckets") {
		c.Buckets = 1
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.ShutdownTimeout == 0 && !explicit("shutdownTimeout") {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.StuckAfter == 0 && !explicit("stuckAfter") {
		c.StuckAfter = Duration(DefaultStuckAfter)
	}
	if c.LeaseDuration == 0 && !explicit("leaseDuration") {
		c.LeaseDuration = Duration(DefaultLeaseDuration)
	}
	if c.LeaseRenew == 0 && !explicit("leaseRenew") {
		c.LeaseRenew = Duration(min(DefaultLeaseRenew, time.Duration(c.LeaseDuration)/4))
	}
	if c.BalanceEvery == 0 && !explicit("balanceEvery") {
		c.BalanceEvery = Duration(DefaultBalanceEvery)
	}
	if c.FailAfter == 0 && !explicit("failAfter") {
		c.FailAfter = Duration(DefaultFailAfter)
	}
	if c.AWSAttemptTimeout == 0 && !explicit("awsAttemptTimeout") {
		c.AWSAttemptTimeout = Duration(DefaultAWSAttemptTimeout)
	}
	if c.AWSCallTimeout == 0 && !explicit("awsCallTimeout") {
		c.AWSCallTimeout = Duration(max(DefaultAWSCallTimeout, time.Duration(c.AWSAttemptTimeout)))
	}
	for _, t := range []struct{ path, v string }{{"table", c.Table}, {"index", c.Index}, {"checkpointTable", c.CheckpointTable}} {
		if reason := checkTableName(t.v); reason != "" {
			return at(t.path).errAt(strconv.Quote(t.v), reason)
		}
	}
	if c.Buckets < 1 || c.Buckets > store.MaxIndexBuckets {
		return at("buckets").errAt(strconv.Itoa(c.Buckets), fmt.Sprintf("want 1 to %d", store.MaxIndexBuckets))
	}
	if err := awscfg.CheckEndpoint(c.Endpoint); err != nil {
		return at("endpoint").errAt(strconv.Quote(c.Endpoint), "want an http or https URL")
	}
	if c.Listen != ListenOff {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
			return at("listen").errAt(strconv.Quote(c.Listen), `want HOST:PORT or :PORT, or "off"`)
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return at("logFormat").errAt(strconv.Quote(c.LogFormat), "want json or text")
	}
	if err := p.level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return at("logLevel").errAt(strconv.Quote(c.LogLevel), "want debug, info, warn or error")
	}
	if time.Duration(c.ShutdownTimeout) < minShutdown {
		return at("shutdownTimeout").errAt(c.ShutdownTimeout.String(), "want "+minShutdown.String()+" or more")
	}
	if c.StuckAfter <= 0 {
		return at("stuckAfter").errAt(c.StuckAfter.String(), "want a positive duration")
	}
	if c.LeaseDuration < Duration(time.Second) {
		return at("leaseDuration").errAt(c.LeaseDuration.String(), "want 1s or more")
	}
	if c.LeaseRenew <= 0 || 2*c.LeaseRenew >= c.LeaseDuration {
		renew, dur := at("leaseRenew"), at("leaseDuration")
		durName, durValue := dur.name, c.LeaseDuration.String()
		if dur.file != "" && dur.file != renew.file {
			durName += " in " + dur.file
		}
		if !dur.explicit() {
			durValue += ", its default"
		}
		return renew.errAt(c.LeaseRenew.String(), "want a positive duration under half of "+durName+" ("+durValue+")")
	}
	if c.BalanceEvery <= 0 {
		return at("balanceEvery").errAt(c.BalanceEvery.String(), "want a positive duration")
	}
	if c.FailAfter <= 0 {
		return at("failAfter").errAt(c.FailAfter.String(), "want a positive duration")
	}
	if c.AWSAttemptTimeout <= 0 {
		return at("awsAttemptTimeout").errAt(c.AWSAttemptTimeout.String(), "want a positive duration")
	}
	if c.AWSCallTimeout < c.AWSAttemptTimeout {
		return at("awsCallTimeout").errAt(c.AWSCallTimeout.String(), "want a duration of at least awsAttemptTimeout ("+c.AWSAttemptTimeout.String()+")")
	}
	if reason := checkName(c.Owner); c.Owner != "" && reason != "" {
		return at("owner").errAt(strconv.Quote(c.Owner), reason)
	}
	return nil
}

// checkSub applies the defaults to a subscription, checks it and builds
// its subscribe.Subscription.
func checkSub(e *subEntry, env func(string) string, opts Options, goNames []string, stdout subscribe.Handler) (planSub, error) {
	c := &e.conf
	h := &c.Handler
	explicit := func(path string) bool { return e.at(path).explicit() }
	q := strconv.Quote
	if reason := checkName(c.Name); reason != "" {
		v := q(c.Name)
		if c.Name == "" {
			v = ""
		}
		return planSub{}, e.at("name").errAt(v, reason)
	}
	sub := subscribe.Subscription{Name: c.Name}
	var err error
	if c.Source == "" {
		c.Source = subscribe.SourceIndex.String()
	}
	if sub.Source, err = subscribe.ParseSourceMode(c.Source); err != nil {
		return planSub{}, e.at("source").errAt(q(c.Source), "want index, stream or auto")
	}
	if c.Start == "" {
		c.Start = "beginning"
	}
	if sub.Start, err = subscribe.ParseStart(c.Start); err != nil {
		return planSub{}, e.at("start").errAt(q(c.Start), "want beginning, now, a commit id (YYYYMMDDHHmmssSSS[:aggregateId]) or an RFC 3339 time")
	}
	if c.Policy == "" {
		c.Policy = subscribe.PolicyPark.String()
	}
	if sub.Policy, err = subscribe.ParsePolicy(c.Policy); err != nil {
		return planSub{}, e.at("policy").errAt(q(c.Policy), "want park, stop or skip")
	}
	if c.Corrupt == "" {
		c.Corrupt = subscribe.CorruptPark.String()
	}
	if sub.Corrupt, err = subscribe.ParseCorruptPolicy(c.Corrupt); err != nil {
		return planSub{}, e.at("corrupt").errAt(q(c.Corrupt), "want park or skip")
	}
	if c.GapTimeout == 0 && !explicit("gapTimeout") {
		c.GapTimeout = Duration(subscribe.DefaultGapTimeout)
	}
	if c.GapTimeout <= 0 {
		return planSub{}, e.at("gapTimeout").errAt(c.GapTimeout.String(), "want a positive duration")
	}
	sub.GapTimeout = time.Duration(c.GapTimeout)
	if c.Concurrency == 0 && !explicit("concurrency") {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		return planSub{}, e.at("concurrency").errAt(strconv.Itoa(c.Concurrency), fmt.Sprintf("want 1 to %d", maxConcurrency))
	}
	sub.Concurrency = c.Concurrency
	if c.CheckpointInterval == 0 && !explicit("checkpointInterval") {
		c.CheckpointInterval = Duration(DefaultCheckpointInterval)
	}
	if c.CheckpointInterval <= 0 {
		return planSub{}, e.at("checkpointInterval").errAt(c.CheckpointInterval.String(), "want a positive duration")
	}
	sub.CheckpointInterval = time.Duration(c.CheckpointInterval)
	for _, d := range []struct {
		path string
		v    Duration
		to   *time.Duration
	}{
		{"settle", c.Settle, &sub.Index.Settle},
		{"overlap", c.Overlap, &sub.Index.Overlap},
		{"streamMargin", c.StreamMargin, &sub.Stream.Margin},
	} {
		if d.v < 0 {
			return planSub{}, e.at(d.path).errAt(d.v.String(), "want 0 (the default) or a positive duration")
		}
		*d.to = time.Duration(d.v)
	}
	if err := checkRetry(e, explicit, &sub.Retry); err != nil {
		return planSub{}, err
	}

	ps := planSub{}
	typeGiven := h.Type != ""
	if !typeGiven {
		h.Type = HandlerGo
	}
	// notFor refuses webhook settings for another handler type. Those of
	// EVENTSTORE_WEBHOOK_… variables are left aside instead: a variable may
	// be set for every process of a deployment.
	notFor := func(typ string) error {
		for _, f := range []struct {
			path  string
			set   bool
			clear func()
		}{
			{"handler.url", h.URL != "", func() { h.URL = "" }},
			{"handler.secret", h.Secret != "", func() { h.Secret = "" }},
			{"handler.secretEnv", h.SecretEnv != "", nil},
			{"handler.timeout", h.Timeout != 0 || explicit("handler.timeout"), func() { h.Timeout = 0 }},
			{"handler.header", len(h.Header) > 0, nil},
			{"handler.headerEnv", len(h.HeaderEnv) > 0, nil},
			{"handler.allowInsecure", h.AllowInsecure, func() { h.AllowInsecure = false }},
			{"handler.legacySignature", h.LegacySignature, func() { h.LegacySignature = false }},
		} {
			if !f.set {
				continue
			}
			o := e.at(f.path)
			if o.env && f.clear != nil {
				f.clear()
				continue
			}
			if f.path == "handler.secret" {
				o.noValueOut = true
			}
			return o.errAt("", fmt.Sprintf("only for a webhook handler, and this one is %q", typ))
		}
		return nil
	}
	// checkBatch checks handler.batch against 1 to most (0 is the
	// default unless given explicitly).
	checkBatch := func(most int, reason string) error {
		if o := e.at("handler.batch"); o.env && most == 1 {
			h.Batch = 0 // EVENTSTORE_WEBHOOK_BATCH, for webhooks
			return nil
		}
		if h.Batch < 0 || h.Batch > most || (h.Batch == 0 && explicit("handler.batch")) {
			return e.at("handler.batch").errAt(strconv.Itoa(h.Batch), reason)
		}
		return nil
	}
	switch h.Type {
	case HandlerGo:
		gh, gok := opts.Handlers[c.Name]
		bh, bok := opts.BatchHandlers[c.Name]
		if !gok && !bok {
			reason := "required: webhook or stdout"
			if typeGiven {
				reason = "this program has no Go handler: want webhook or stdout"
			}
			if len(goNames) > 0 {
				reason = fmt.Sprintf("no Go handler is registered as %q (registered: %s); want webhook or stdout, or one of those names", c.Name, strings.Join(goNames, ", "))
			}
			v := ""
			if typeGiven {
				v = q(HandlerGo)
			}
			return planSub{}, e.at("handler.type").errAt(v, reason)
		}
		if err := notFor(HandlerGo); err != nil {
			return planSub{}, err
		}
		if gok {
			if err := checkBatch(1, "the Go handler takes one commit at a time (register a BatchHandler for batches): want 1"); err != nil {
				return planSub{}, err
			}
			sub.Handler = gh
		} else {
			if err := checkBatch(maxBatch, fmt.Sprintf("want 1 to %d", maxBatch)); err != nil {
				return planSub{}, err
			}
			sub.BatchHandler, sub.MaxBatch = bh, h.Batch
		}
	case HandlerStdout:
		if err := notFor(HandlerStdout); err != nil {
			return planSub{}, err
		}
		if err := checkBatch(1, "the stdout handler writes one commit at a time: want 1"); err != nil {
			return planSub{}, err
		}
		sub.Handler = stdout
	case HandlerWebhook:
		wh, names, err := buildWebhook(e, env)
		if err != nil {
			return planSub{}, err
		}
		ps.headerNames = names
		if h.Batch > 1 {
			sub.BatchHandler, sub.MaxBatch = wh, h.Batch
		} else {
			sub.Handler = wh
		}
		if t := time.Duration(h.Timeout) + 5*time.Second; t > sub.Retry.AttemptTimeout && !explicit("handlerTimeout") {
			sub.Retry.AttemptTimeout = t
			c.HandlerTimeout = Duration(t)
		}
	default:
		return planSub{}, e.at("handler.type").errAt(q(h.Type), "want webhook, stdout or go")
	}
	ps.conf, ps.sub = *c, sub
	return ps, nil
}

// checkRetry applies the defaults to a subscription's retry settings,
// checks them and sets them in r. An explicit zero is refused where zero
// is not a value of its own (maxAttempts and maxElapsed: no limit).
func checkRetry(e *subEntry, explicit func(string) bool, r *subscribe.RetryPolicy) error {
	c := &e.conf
	for _, d := range []struct {
		path string
		v    *Duration
		def  time.Duration
	}{
		{"maxRecordAge", &c.MaxRecordAge, DefaultMaxRecordAge},
		{"backoffInitial", &c.BackoffInitial, DefaultBackoffInitial},
		{"backoffMax", &c.BackoffMax, max(DefaultBackoffMax, time.Duration(c.BackoffInitial))},
		{"handlerTimeout", &c.HandlerTimeout, DefaultHandlerTimeout},
	} {
		if *d.v == 0 && !explicit(d.path) {
			*d.v = Duration(d.def)
		}
		if *d.v <= 0 {
			return e.at(d.path).errAt(d.v.String(), "want a positive duration")
		}
	}
	if c.BackoffMax < c.BackoffInitial {
		return e.at("backoffMax").errAt(c.BackoffMax.String(), "want at least backoffInitial ("+c.BackoffInitial.String()+")")
	}
	if c.MaxAttempts < 0 {
		return e.at("maxAttempts").errAt(strconv.Itoa(c.MaxAttempts), "want 0 (no limit) or more")
	}
	if c.MaxElapsed < 0 {
		return e.at("maxElapsed").errAt(c.MaxElapsed.String(), "want 0 (no limit) or a positive duration")
	}
	if c.CircuitOpenAfter == 0 && !explicit("circuitOpenAfter") {
		c.CircuitOpenAfter = DefaultCircuitOpenAfter
	}
	if c.CircuitOpenAfter == 0 || c.CircuitOpenAfter < -1 {
		return e.at("circuitOpenAfter").errAt(strconv.Itoa(c.CircuitOpenAfter), "want 1 or more, or -1 (never open)")
	}
	*r = subscribe.RetryPolicy{
		MaxRecordAge:     time.Duration(c.MaxRecordAge),
		MaxAttempts:      c.MaxAttempts,
		MaxElapsed:       time.Duration(c.MaxElapsed),
		InitialBackoff:   time.Duration(c.BackoffInitial),
		MaxBackoff:       time.Duration(c.BackoffMax),
		AttemptTimeout:   time.Duration(c.HandlerTimeout),
		CircuitOpenAfter: c.CircuitOpenAfter,
	}
	return nil
}

// buildWebhook checks a webhook's settings, reads its secret and headers
// from the environment, and builds it.
func buildWebhook(e *subEntry, env func(string) string) (*webhook.Handler, []string, error) {
	h := &e.conf.Handler
	q := strconv.Quote
	if h.URL == "" {
		return nil, nil, e.at("handler.url").errAt("", "required for a webhook handler")
	}
	if reason := checkURL(h.URL); reason != "" {
		return nil, nil, e.at("handler.url").errAt(q(redactURL(h.URL)), reason)
	}
	if u, _ := url.Parse(h.URL); u.Scheme == "http" && !webhook.IsLoopbackHost(u.Hostname()) && !h.AllowInsecure {
		return nil, nil, e.at("handler.url").errAt(q(redactURL(h.URL)), "plain http to a host that is not a loopback one: the commits, headers and signature would cross the network in the clear; use https, or allow it explicitly with "+e.at("handler.allowInsecure").name)
	}
	if h.Timeout == 0 && !e.at("handler.timeout").explicit() {
		h.Timeout = Duration(DefaultWebhookTimeout)
	}
	if h.Timeout <= 0 {
		return nil, nil, e.at("handler.timeout").errAt(h.Timeout.String(), "want a positive duration")
	}
	if h.Batch == 0 && !e.at("handler.batch").explicit() {
		h.Batch = 1
	}
	if h.Batch < 1 || h.Batch > maxBatch {
		return nil, nil, e.at("handler.batch").errAt(strconv.Itoa(h.Batch), fmt.Sprintf("want 1 to %d", maxBatch))
	}
	if h.SecretEnv != "" {
		if h.Secret != "" {
			return nil, nil, e.at("handler.secretEnv").errAt(q(h.SecretEnv), "set the secret or secretEnv, not both")
		}
		if h.Secret = env(h.SecretEnv); h.Secret == "" {
			return nil, nil, e.at("handler.secretEnv").errAt(q(h.SecretEnv), "the environment variable is not set")
		}
	}
	keys, err := webhook.ParseSecrets(h.Secret)
	if err != nil {
		path := "handler.secret"
		if h.SecretEnv != "" {
			path = "handler.secretEnv"
		}
		o := e.at(path)
		o.noValueOut = path == "handler.secret"
		v := ""
		if !o.noValueOut {
			v = q(h.SecretEnv)
		}
		return nil, nil, o.errAt(v, strings.TrimPrefix(err.Error(), "webhook: "))
	}
	header := http.Header{}
	for _, k := range slices.Sorted(maps.Keys(h.Header)) {
		header.Add(k, h.Header[k])
	}
	for _, k := range slices.Sorted(maps.Keys(h.HeaderEnv)) {
		v := env(h.HeaderEnv[k])
		if v == "" {
			return nil, nil, e.at("handler.headerEnv").errAt(q(k)+": "+q(h.HeaderEnv[k]), "the environment variable is not set")
		}
		header.Add(k, v)
	}
	wh, err := webhook.New(webhook.Config{
		URL:          h.URL,
		Secret:       keys[0],
		Timeout:      time.Duration(h.Timeout),
		Header:       header,
		Subscription: e.conf.Name,

		AllowInsecure:   h.AllowInsecure,
		LegacySignature: h.LegacySignature,
		OtherSecrets:    keys[1:],
	})
	if err != nil {
		// webhook's errors name the field and never a secret or a header
		// value.
		reason := strings.TrimPrefix(err.Error(), webhook.ErrInvalidConfig.Error()+": ")
		path := "handler.url"
		if strings.HasPrefix(reason, "Header") {
			path = "handler.header"
			if len(h.HeaderEnv) > 0 && len(h.Header) == 0 {
				path = "handler.headerEnv"
			}
		}
		return nil, nil, e.at(path).errAt("", reason)
	}
	return wh, slices.Sorted(maps.Keys(header)), nil
}

// checkURL returns why u is not a webhook URL, or "".
func checkURL(u string) string {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return "not a URL"
	case p.Scheme != "http" && p.Scheme != "https":
		return "want an http or https URL"
	case p.Host == "":
		return "no host"
	}
	return ""
}

// redactURL returns u without its password and query, which may carry
// tokens.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "[unparsable URL]"
	}
	if p.RawQuery != "" {
		p.RawQuery = "[redacted]"
	}
	p.Fragment = ""
	return strings.Replace(p.Redacted(), "%5Bredacted%5D", "[redacted]", 1)
}

// checkTableName returns why name is not a DynamoDB table or index name, or
// "".
func checkTableName(name string) string {
	if len(name) < 3 || len(name) > 255 {
		return "want 3 to 255 characters"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return "want only letters, digits, '_', '-' and '.'"
		}
	}
	return ""
}

// checkName returns why name is not a subscription or owner name, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "want a name"
	case !utf8.ValidString(name):
		return "not valid UTF-8"
	case len(name) > checkpoint.MaxNameBytes:
		return fmt.Sprintf("longer than %d bytes", checkpoint.MaxNameBytes)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

// explicit reports whether the setting was given, as a flag, a variable or
// in the configuration file, even as a zero value: then a zero is judged,
// not read as the default.
func (o origin) explicit() bool { return o.flag || o.env || o.set }

func isZero(p any) bool {
	switch v := p.(type) {
	case *bool:
		return !*v
	case *string:
		return *v == ""
	case *int:
		return *v == 0
	case *Duration:
		return *v == 0
	}
	return true
}

func copyValue(dst, src any) {
	switch d := dst.(type) {
	case *bool:
		*d = *src.(*bool)
	case *string:
		*d = *src.(*string)
	case *int:
		*d = *src.(*int)
	case *Duration:
		*d = *src.(*Duration)
	}
}
