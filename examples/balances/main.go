package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Subscription is the name the handler runs under: its checkpoint's name,
// and the name to give settings in a --config file.
const Subscription = "balances"

// EnvTable names the balances table; default DefaultTable.
const EnvTable = "BALANCES_TABLE"

func main() {
	ctx := context.Background()
	table := os.Getenv(EnvTable)
	if table == "" {
		table = DefaultTable
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "show" {
		os.Exit(show(ctx, args[1:], table, os.Stdout, os.Stderr))
	}
	endpoint, region, err := awsSettings(args, os.Getenv)
	var opts daemon.Options
	// On --help, a bad flag or a bad file, the daemon prints what it
	// prints, and touches no table.
	if err == nil {
		client, err := newClient(ctx, endpoint, region)
		if err == nil {
			err = EnsureTable(ctx, client, table)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "balances: %v\n", err)
			os.Exit(1)
		}
		opts.Handlers = map[string]subscribe.Handler{Subscription: NewHandler(client, table)}
	}
	daemon.Main(opts)
}

// awsSettings returns the DynamoDB endpoint and the region the daemon takes
// from args (flags, then a --config file) and env (EVENTSTORE_*
// variables), "" where none sets them (the SDK's then), so that the read
// model's client reaches the same DynamoDB as the daemon. It returns
// flag.ErrHelp when args ask for help, and the error of a bad flag or
// configuration file.
func awsSettings(args []string, env func(string) string) (endpoint, region string, err error) {
	var cfg daemon.Config
	fs := flag.NewFlagSet("balances", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs, env)
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	endpoint, region = cfg.Endpoint, cfg.Region
	if cfg.ConfigFile != "" {
		file, err := daemon.LoadFile(cfg.ConfigFile)
		if err != nil {
			return "", "", err
		}
		endpoint, region = cmp.Or(endpoint, file.Endpoint), cmp.Or(region, file.Region)
	}
	return endpoint, region, nil
}

// newClient returns a DynamoDB client from the SDK's standard configuration
// (AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, profiles) with endpoint and
// region, when not "", on top. On a loopback endpoint (DynamoDB Local) it
// does not check response checksums: the emulator's do not match its error
// bodies.
func newClient(ctx context.Context, endpoint, region string) (*dynamodb.Client, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region: use --region, or set AWS_REGION or a profile's region")
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if isLoopback(aws.ToString(o.BaseEndpoint)) {
			o.DisableValidateResponseChecksum = true
		}
	}), nil
}

// isLoopback reports whether endpoint is a URL of this machine.
func isLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// show runs `balances show [--endpoint URL] [--region REGION]`: it prints
// the balances table and returns the exit status.
func show(ctx context.Context, args []string, table string, stdout, stderr io.Writer) int {
	const usage = "usage: balances show [--endpoint URL] [--region REGION] [--config FILE]"
	endpoint, region, err := awsSettings(args, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "%s\n\nPrints the balances table ($%s, default %q).\n", usage, EnvTable, DefaultTable)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "balances: %v\n%s\n", err, usage)
		return 2
	}
	client, err := newClient(ctx, endpoint, region)
	if err != nil {
		fmt.Fprintf(stderr, "balances: %v\n", err)
		return 1
	}
	accounts, err := ReadAccounts(ctx, client, table)
	if err != nil {
		fmt.Fprintf(stderr, "balances: %v\n", err)
		return 1
	}
	if err := printAccounts(stdout, accounts); err != nil {
		fmt.Fprintf(stderr, "balances: write: %v\n", err)
		return 1
	}
	return 0
}

// printAccounts writes accounts as a table, then their number and total.
func printAccounts(w io.Writer, accounts []Account) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tOWNER\tBALANCE\tNEXT VERSION\tSKIPPED")
	var total int64
	for _, a := range accounts {
		owner, skipped := a.Owner, "-"
		if owner == "" {
			owner = "-"
		}
		if len(a.SkippedVersions) > 0 {
			s := make([]string, len(a.SkippedVersions))
			for i, v := range a.SkippedVersions {
				s[i] = strconv.FormatInt(v, 10)
			}
			skipped = strings.Join(s, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", a.AccountID, owner, a.Balance, a.NextVersion, skipped)
		total += a.Balance
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d accounts, total balance %d\n", len(accounts), total)
	return err
}
