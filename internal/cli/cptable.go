package cli

import (
	"context"
	"errors"
	"flag"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
)

var checkpointCreateTableCommand = &command{
	name:    "create-table",
	summary: "create the checkpoint table",
	help: `
Creates the checkpoint table (checkpoints, leases, parked commits and
requests: hash key pk, range key sk, both strings; no index, no stream) on
the endpoint the flags name, and waits until it is ACTIVE. It is the table
deploy/cloudformation/tables.json defines (CheckpointTable), from the same
definition. Billing is on-demand unless --read-capacity and --write-capacity
are given.

An existing table is an error (exit status 1), unless --if-not-exists: then
it is a success if it has the key schema the worker relies on, and a failure
listing the differences otherwise. Capacity is not compared.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		var opts dynamocheckpoint.TableOptions
		fs.Int64Var(&opts.ReadCapacity, "read-capacity", 0, "provisioned read capacity `UNITS` (with --write-capacity); default: on-demand")
		fs.Int64Var(&opts.WriteCapacity, "write-capacity", 0, "provisioned write capacity `UNITS` (with --read-capacity); default: on-demand")
		ifNotExists := fs.Bool("if-not-exists", false, "succeed if the table exists already and conforms")
		return func(ctx context.Context, s *session) error {
			client, err := cf.connect(ctx, s)
			if err != nil {
				return err
			}
			cfg := dynamocheckpoint.Config{TableName: cf.table}
			return reportCreate(s, tableCreation{
				what:        "checkpoint table " + cfg.TableName,
				err:         dynamocheckpoint.CreateTable(ctx, client, cfg, opts),
				ifNotExists: *ifNotExists,
				invalid: func(err error) error {
					if !errors.Is(err, checkpoint.ErrInvalidArgument) {
						return nil
					}
					return flagErrorf("--checkpoint-table %q, --read-capacity %d, --write-capacity %d: %w", cf.table, opts.ReadCapacity, opts.WriteCapacity, err)
				},
				mismatches: func() ([]string, error) {
					_, m, err := dynamocheckpoint.DescribeTable(ctx, client, cfg)
					if err != nil {
						return nil, cf.explain(err)
					}
					return m, nil
				},
			})
		}
	},
}
