package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/logging"

	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Environment variables that set the defaults of the common flags; a flag
// given on the command line wins.
const (
	EnvTable   = "EVENTSTORE_TABLE"
	EnvIndex   = "EVENTSTORE_INDEX"
	EnvBuckets = "EVENTSTORE_BUCKETS"
	// EnvEndpoint and EnvRegion are those of --endpoint and --region, the
	// names the worker daemon reads too.
	EnvEndpoint = "EVENTSTORE_ENDPOINT"
	EnvRegion   = "EVENTSTORE_REGION"
)

// storeFlags are the flags every data command takes: where the commits table
// is and how to reach DynamoDB.
type storeFlags struct {
	fs            *flag.FlagSet
	env           func(string) string
	table, index  string
	buckets       int
	bucketsEnvErr error // EVENTSTORE_BUCKETS is set but unusable
	endpoint      string
	region        string
	// noBucketCheck: open does not check --buckets against the table (the
	// table commands, which create, delete or describe it).
	noBucketCheck bool
}

func addStoreFlags(fs *flag.FlagSet, env func(string) string) *storeFlags {
	f := &storeFlags{fs: fs, env: env}
	fs.StringVar(&f.table, "table", envOr(env, EnvTable, store.DefaultTableName),
		"commits table `NAME`; $"+EnvTable+" sets the default")
	fs.StringVar(&f.index, "index", envOr(env, EnvIndex, store.DefaultIndexName),
		"commit-order global secondary index `NAME`; $"+EnvIndex+" sets the default")
	buckets := 1
	if v := env(EnvBuckets); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= store.MaxIndexBuckets {
			buckets = n
		} else {
			f.bucketsEnvErr = fmt.Errorf("%s=%q: want an integer from 1 to %d", EnvBuckets, v, store.MaxIndexBuckets)
		}
	}
	fs.IntVar(&f.buckets, "buckets", buckets,
		"number `N` of index buckets (1 to "+strconv.Itoa(store.MaxIndexBuckets)+"); every writer and reader of a table\nmust use the same: a count its items disagree with is refused; $"+EnvBuckets+" sets the\ndefault")
	fs.StringVar(&f.endpoint, "endpoint", env(EnvEndpoint),
		"DynamoDB endpoint `URL`, e.g. http://localhost:8000; $"+EnvEndpoint+" sets the default, else\nthe SDK's, from $AWS_ENDPOINT_URL_DYNAMODB or the profile; on a loopback address\nthe response checksum is not checked (DynamoDB Local's does not match)")
	fs.StringVar(&f.region, "region", env(EnvRegion),
		"AWS `REGION`; $"+EnvRegion+" sets the default, else the SDK's, from $AWS_REGION or\nthe profile")
	return f
}

func envOr(env func(string) string, name, def string) string {
	if v := env(name); v != "" {
		return v
	}
	return def
}

// open checks the flags, loads the AWS configuration and returns a DynamoDB
// client and a Store on it. Bad values are usage errors naming the flag or
// variable.
func (f *storeFlags) open(ctx context.Context, s *session) (*dynamodb.Client, *store.Store, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	// The store reads an empty name or 0 buckets as its default: here they
	// were given, and are errors. The store judges every other value.
	switch {
	case !set["buckets"] && f.bucketsEnvErr != nil:
		return nil, nil, withCode(ExitUsage, f.bucketsEnvErr)
	case f.buckets == 0:
		return nil, nil, flagErrorf("--buckets 0: want 1 to %d", store.MaxIndexBuckets)
	case f.table == "":
		return nil, nil, flagErrorf("--table: want a table name")
	case f.index == "":
		return nil, nil, flagErrorf("--index: want an index name")
	}
	if err := awscfg.CheckEndpoint(f.endpoint); err != nil {
		return nil, nil, flagErrorf("--endpoint %v", err)
	}
	client, err := f.client(ctx, s.stderr)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.New(client, store.Config{TableName: f.table, IndexName: f.index, IndexBuckets: f.buckets})
	var ce *store.ConfigError
	switch {
	case errors.As(err, &ce) && configFlags[ce.Field].flag != "":
		// Name the flag, or the variable the value came from.
		fl, v := configFlags[ce.Field], fmt.Sprint(ce.Value)
		if sv, ok := ce.Value.(string); ok {
			v = strconv.Quote(sv)
		}
		if !set[fl.flag] && f.env(fl.env) != "" {
			return nil, nil, withCode(ExitUsage, fmt.Errorf("%s=%s: %s", fl.env, v, ce.Reason))
		}
		return nil, nil, flagErrorf("--%s %s: %s", fl.flag, v, ce.Reason)
	case err != nil:
		return nil, nil, flagErrorf("%w", err)
	}
	if !f.noBucketCheck {
		if err := f.checkBuckets(ctx, s, client, st.Config(), set["buckets"]); err != nil {
			return nil, nil, err
		}
	}
	return client, st, nil
}

// checkBuckets refuses a --buckets that does not match the table (see
// store.CheckBuckets), naming the flag or its variable. A missing table is
// left to the command to report; a failed check is a warning.
func (f *storeFlags) checkBuckets(ctx context.Context, s *session, client store.InspectAPI, cfg store.Config, flagSet bool) error {
	err := store.CheckBuckets(ctx, client, cfg)
	var be *store.BucketMismatchError
	switch {
	case err == nil, errors.Is(err, store.ErrTableNotFound):
		return nil
	case errors.As(err, &be):
		name := fmt.Sprintf("--buckets %d", f.buckets)
		if !flagSet && f.env(EnvBuckets) != "" {
			name = fmt.Sprintf("%s=%d", EnvBuckets, f.buckets)
		}
		return withCode(ExitUsage, fmt.Errorf("%s: does not match table %s: %s; every writer and reader of a table must use the same --buckets",
			name, cfg.TableName, bucketFacts(be)))
	case ctx.Err() != nil:
		return err
	}
	s.warnf("could not check --buckets against table %s: %v", cfg.TableName, err)
	return nil
}

// bucketFacts says what a bucket mismatch found, without the error's
// "store: table …" prefix.
func bucketFacts(be *store.BucketMismatchError) string {
	msg := be.Error()
	if i := strings.Index(msg, "aggregate "); i >= 0 {
		msg = msg[i:]
	}
	switch n := len(be.Consistent); {
	case n == 1:
		msg += fmt.Sprintf(" (--buckets %d)", be.Consistent[0])
	case n > 1:
		msg += fmt.Sprintf(" (try --buckets %d)", be.Consistent[0])
	}
	return msg
}

// configFlags names the flag and the environment variable of each
// store.Config field the flags set.
var configFlags = map[string]struct{ flag, env string }{
	"TableName":    {"table", EnvTable},
	"IndexName":    {"index", EnvIndex},
	"IndexBuckets": {"buckets", EnvBuckets},
}

// client loads the SDK's default configuration, with --region and
// --endpoint applied, and the SDK's log lines sent to stderr.
func (f *storeFlags) client(ctx context.Context, stderr io.Writer) (*dynamodb.Client, error) {
	cfg, err := awscfg.Load(ctx, awscfg.Options{Region: f.region, Logger: sdkLogger(stderr)})
	if errors.Is(err, awscfg.ErrNoRegion) {
		return nil, flagErrorf("%w", err)
	}
	if err != nil {
		return nil, err
	}
	return awscfg.DynamoDB(cfg, f.endpoint), nil
}

// sdkLogger writes the SDK's log lines to w, prefixed like every message.
func sdkLogger(w io.Writer) logging.Logger {
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		fmt.Fprintf(w, "%s: aws sdk %s: %s\n", prog, c, fmt.Sprintf(format, v...))
	})
}

// explainNotFound gives the one message every command prints for a
// missing table: the store's error names it too, inside DynamoDB's.
func explainNotFound(err error, table string) error {
	if errors.Is(err, store.ErrTableNotFound) {
		return fmt.Errorf("table %s not found", table)
	}
	return err
}
