package cli

import (
	"context"
	"errors"
	"flag"

	"github.com/dynamodb-event-store/eventstore/daemon"
)

var workerCommand = &command{
	name:    "worker",
	summary: "run subscriptions that keep read models up to date (the worker daemon)",
	help: daemon.Help + `

Examples:
  EVENTSTORE_WEBHOOK_SECRET=… eventstore worker --subscription orders \
      --handler webhook --webhook-url https://orders.example.com/hook
  eventstore worker --subscription audit --handler stdout --start now
  eventstore worker --config worker.json

A configuration file (see package daemon's LoadFile):
  {"checkpointTable": "eventstoreCheckpoints",
   "subscriptions": [
     {"name": "orders", "policy": "stop",
      "handler": {"type": "webhook", "url": "https://orders.example.com/hook",
                  "secretEnv": "ORDERS_WEBHOOK_SECRET", "timeout": "5s"}},
     {"name": "audit", "source": "stream", "handler": {"type": "stdout"}}]}`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		var cfg daemon.Config
		cfg.RegisterFlags(fs, env)
		return func(ctx context.Context, s *session) error {
			err := daemon.Run(ctx, cfg, daemon.Options{Stdout: s.stdout, Stderr: s.stderr, Env: env})
			if errors.Is(err, daemon.ErrInvalidConfig) {
				return flagErrorf("%w", err)
			}
			// A clean stop by a signal returns nil: exit status 0.
			return err
		}
	},
}
