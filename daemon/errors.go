package daemon

import (
	"context"
	"errors"
	"strings"
)

// ErrInvalidConfig matches every *ConfigError: a setting is unusable, and
// nothing was started.
var ErrInvalidConfig = errors.New("daemon: invalid configuration")

// ConfigError reports an unusable setting, named as the operator wrote it:
// a flag ("--webhook-url"), an environment variable ("EVENTSTORE_BUCKETS")
// or a path in the configuration file ("subscriptions[1].handler.url").
// It matches ErrInvalidConfig. It never holds a secret.
type ConfigError struct {
	// File is the configuration file the setting is in; "" for a flag, a
	// variable or a Config built in Go.
	File string
	// Setting names the setting.
	Setting string
	// Value is the value as given (quoted when a string), or "" when
	// there is none or it is secret.
	Value string
	// Reason says what is wrong.
	Reason string

	env bool // Setting is an environment variable: "NAME=value"
}

func (e *ConfigError) Error() string {
	where := e.Setting
	switch {
	case e.Value == "":
	case e.env:
		where += "=" + e.Value
	default:
		where += " " + e.Value
	}
	if e.File != "" {
		where = strings.TrimSuffix(e.File+": "+where, ": ")
	}
	if where == "" {
		return e.Reason
	}
	return where + ": " + e.Reason
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// origin is where a setting's value came from, for messages.
type origin struct {
	name       string // "--table", "EVENTSTORE_TABLE", "subscriptions[1].handler.url"
	file       string // the configuration file, for a path in it
	flag, env  bool
	noValueOut bool // never print the value (secrets)
	// set: the configuration file writes the setting (zero included).
	set bool
}

// errAt returns a *ConfigError for the setting at o with the value v
// (formatted by the caller; "" for none).
func (o origin) errAt(v, reason string) *ConfigError {
	if o.noValueOut {
		v = ""
	}
	return &ConfigError{File: o.file, Setting: o.name, Value: v, Reason: reason, env: o.env}
}

// Exit statuses of RunArgs and Main.
const (
	ExitOK      = 0 // a clean stop
	ExitFailure = 1 // a failure: AWS, a listener, every subscription stopped
	ExitConfig  = 2 // an invalid configuration (bad flag, variable or file)
)

// ExitCode returns the exit status of an error Run returned: ExitOK for
// nil, ExitConfig for an error matching ErrInvalidConfig, ExitFailure
// otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrInvalidConfig):
		return ExitConfig
	}
	return ExitFailure
}

// isCtxErr reports whether err is only the end of ctx.
func isCtxErr(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
