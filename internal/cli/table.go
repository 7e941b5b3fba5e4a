package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
	"github.com/dynamodb-event-store/eventstore/store"
)

var tableCreateCommand = &command{
	name:    "create",
	summary: "create the commits table and its commit-order index",
	help: `
Creates the commits table (hash key aggregateId, range key version) and its
global secondary index (hash key active, range key commitId, projection ALL),
with the stream enabled (view type NEW_IMAGE) unless --no-stream, and waits
until both are ACTIVE. Billing is on-demand unless --read-capacity and
--write-capacity are given, which provision the table and the index alike.

An existing table is an error (exit status 1), unless --if-not-exists: then
it is a success if it has the layout the store relies on and, unless
--no-stream, its stream (view type NEW_IMAGE or NEW_AND_OLD_IMAGES), and a
failure listing the differences otherwise. Capacity is not compared. A table
another process is still creating is waited for first.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		sf.noBucketCheck = true
		var opts store.TableOptions
		fs.Int64Var(&opts.ReadCapacity, "read-capacity", 0, "provisioned read capacity `UNITS` of the table and the index (with --write-capacity);\ndefault: on-demand")
		fs.Int64Var(&opts.WriteCapacity, "write-capacity", 0, "provisioned write capacity `UNITS` of the table and the index (with --read-capacity);\ndefault: on-demand")
		fs.BoolVar(&opts.NoStream, "no-stream", false, "create the table without its DynamoDB stream")
		ifNotExists := fs.Bool("if-not-exists", false, "succeed if the table exists already and conforms (with its stream unless --no-stream)")
		return func(ctx context.Context, s *session) error {
			client, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			cfg := st.Config()
			return reportCreate(s, tableCreation{
				what:        "table " + cfg.TableName,
				err:         store.CreateTable(ctx, client, cfg, opts),
				ifNotExists: *ifNotExists,
				invalid: func(err error) error {
					if !errors.Is(err, store.ErrInvalidArgument) {
						return nil
					}
					return flagErrorf("--read-capacity %d, --write-capacity %d: %w", opts.ReadCapacity, opts.WriteCapacity, err)
				},
				mismatches: func() ([]string, error) {
					_, m, err := store.DescribeTableFor(ctx, client, cfg, opts)
					return m, explainNotFound(err, cfg.TableName)
				},
			})
		}
	},
}

// tableCreation is the outcome of a table creation, for reportCreate.
type tableCreation struct {
	what        string // "table commits", "checkpoint table cps"
	err         error  // the creation's
	ifNotExists bool
	// invalid returns the usage error for err when it is a bad argument,
	// else nil.
	invalid func(err error) error
	// mismatches lists how the existing table differs from the one the
	// command creates.
	mismatches func() ([]string, error)
}

// reportCreate says what a table creation did. With --if-not-exists, an
// existing table is a success when it conforms: the creation waited for a
// creation in progress elsewhere, and the table must be what the command
// would have created.
func reportCreate(s *session, c tableCreation) error {
	switch {
	case c.err == nil:
		s.warnf("%s created", c.what)
		return nil
	case c.invalid(c.err) != nil:
		return c.invalid(c.err)
	case errors.Is(c.err, ddbtable.ErrExists) && c.ifNotExists:
		mismatches, err := c.mismatches()
		if err != nil {
			return err
		}
		if len(mismatches) > 0 {
			return fmt.Errorf("%s exists but does not conform: %s", c.what, strings.Join(mismatches, "; "))
		}
		s.warnf("%s exists already", c.what)
		return nil
	case errors.Is(c.err, ddbtable.ErrExists):
		return fmt.Errorf("%s exists already (--if-not-exists makes that a success)", c.what)
	}
	return c.err
}

var tableDeleteCommand = &command{
	name:     "delete",
	summary:  "delete the commits table and every commit in it",
	synopsis: "--yes [--if-exists] [flags]",
	help: `
Deletes the commits table, its index and every commit in it, and waits until
it is gone. It first counts the items the table holds (a Scan that returns
counts only: it reads, and is billed for, the whole table) and says how
many. Without --yes it deletes nothing: it says how many commits --yes would
delete, and exits with status 4 (refused).

A missing table is an error (exit status 1), unless --if-exists.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		sf.noBucketCheck = true
		ifExists := fs.Bool("if-exists", false, "succeed if the table does not exist")
		yes := fs.Bool("yes", false, "delete the table and its commits (without it, only count them)")
		return func(ctx context.Context, s *session) error {
			client, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			cfg := st.Config()
			n, err := store.CountItems(ctx, client, cfg)
			switch {
			case errors.Is(err, store.ErrTableNotFound) && *ifExists:
				return nil
			case errors.Is(err, store.ErrTableNotFound):
				return fmt.Errorf("table %s not found", cfg.TableName)
			case err != nil:
				return err
			}
			held := fmt.Sprintf("%d %s", n, plural(int(min(n, 2)), "commit", "commits"))
			if !*yes {
				return withCode(ExitRefused, fmt.Errorf("table %s holds %s: deleting it deletes them all; add --yes to delete it", cfg.TableName, held))
			}
			err = store.DeleteTable(ctx, client, cfg)
			switch {
			case err == nil:
				s.warnf("table %s deleted, with the %s it held", cfg.TableName, held)
				return nil
			case errors.Is(err, store.ErrTableNotFound) && *ifExists:
				return nil
			case errors.Is(err, store.ErrTableNotFound):
				return fmt.Errorf("table %s not found", cfg.TableName)
			}
			return err
		}
	},
}

var tableDescribeCommand = &command{
	name:    "describe",
	summary: "print the commits table's description as JSON",
	help: `
Prints a JSON summary of the commits table: name, status, key schema, the
commit-order index, the stream, item count (DynamoDB updates it about every
six hours), billing mode, and "mismatches", how the table differs from the
layout the store relies on, or how its items' index buckets differ from
--buckets (checked on a sample of its items). Exit status 1 when
the table is missing or does not conform.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		sf := addStoreFlags(fs, env)
		sf.noBucketCheck = true
		return func(ctx context.Context, s *session) error {
			client, st, err := sf.open(ctx, s)
			if err != nil {
				return err
			}
			cfg := st.Config()
			d, mismatches, err := store.DescribeTable(ctx, client, cfg)
			if errors.Is(err, store.ErrTableNotFound) {
				return fmt.Errorf("table %s not found", cfg.TableName)
			}
			if err != nil {
				return err
			}
			var be *store.BucketMismatchError
			if err := store.CheckBuckets(ctx, client, cfg); errors.As(err, &be) {
				mismatches = append(mismatches, fmt.Sprintf("index buckets: --buckets %d: %s", cfg.IndexBuckets, bucketFacts(be)))
			}
			out, err := json.MarshalIndent(summarize(d, cfg.IndexName, mismatches), "", "  ")
			if err != nil {
				return fmt.Errorf("encode description: %w", err)
			}
			if _, err := fmt.Fprintf(s.stdout, "%s\n", out); err != nil {
				return fmt.Errorf("write stdout: %w", err)
			}
			if len(mismatches) > 0 {
				return fmt.Errorf("table %s does not conform: %s", cfg.TableName, strings.Join(mismatches, "; "))
			}
			return nil
		}
	},
}

// tableSummary is what `table describe` prints.
type tableSummary struct {
	TableName     string        `json:"tableName"`
	TableARN      string        `json:"tableArn,omitempty"`
	Status        string        `json:"status"`
	KeySchema     []keyElement  `json:"keySchema"`
	Index         *indexSummary `json:"index"` // nil when missing
	Stream        streamSummary `json:"stream"`
	ItemCount     int64         `json:"itemCount"`
	BillingMode   string        `json:"billingMode"`
	ReadCapacity  int64         `json:"readCapacity,omitempty"`
	WriteCapacity int64         `json:"writeCapacity,omitempty"`
	Mismatches    []string      `json:"mismatches"`
}

type keyElement struct {
	AttributeName string `json:"attributeName"`
	KeyType       string `json:"keyType"`
	AttributeType string `json:"attributeType,omitempty"`
}

type indexSummary struct {
	Name       string       `json:"name"`
	Status     string       `json:"status"`
	KeySchema  []keyElement `json:"keySchema"`
	Projection string       `json:"projection"`
}

type streamSummary struct {
	Enabled  bool   `json:"enabled"`
	ViewType string `json:"viewType,omitempty"`
	ARN      string `json:"arn,omitempty"`
}

func summarize(d *types.TableDescription, indexName string, mismatches []string) tableSummary {
	attrType := map[string]string{}
	for _, a := range d.AttributeDefinitions {
		attrType[aws.ToString(a.AttributeName)] = string(a.AttributeType)
	}
	keys := func(ks []types.KeySchemaElement) []keyElement {
		out := make([]keyElement, 0, len(ks))
		for _, k := range ks {
			name := aws.ToString(k.AttributeName)
			out = append(out, keyElement{AttributeName: name, KeyType: string(k.KeyType), AttributeType: attrType[name]})
		}
		return out
	}
	sum := tableSummary{
		TableName:   aws.ToString(d.TableName),
		TableARN:    aws.ToString(d.TableArn),
		Status:      string(d.TableStatus),
		KeySchema:   keys(d.KeySchema),
		ItemCount:   aws.ToInt64(d.ItemCount),
		BillingMode: string(types.BillingModeProvisioned), // DynamoDB omits the summary for tables always provisioned
		Mismatches:  append([]string{}, mismatches...),
	}
	if d.BillingModeSummary != nil && d.BillingModeSummary.BillingMode != "" {
		sum.BillingMode = string(d.BillingModeSummary.BillingMode)
	}
	if pt := d.ProvisionedThroughput; pt != nil && sum.BillingMode == string(types.BillingModeProvisioned) {
		sum.ReadCapacity, sum.WriteCapacity = aws.ToInt64(pt.ReadCapacityUnits), aws.ToInt64(pt.WriteCapacityUnits)
	}
	for _, ix := range d.GlobalSecondaryIndexes {
		if aws.ToString(ix.IndexName) != indexName {
			continue
		}
		is := &indexSummary{Name: indexName, Status: string(ix.IndexStatus), KeySchema: keys(ix.KeySchema)}
		if ix.Projection != nil {
			is.Projection = string(ix.Projection.ProjectionType)
		}
		sum.Index = is
	}
	if ss := d.StreamSpecification; ss != nil && aws.ToBool(ss.StreamEnabled) {
		sum.Stream = streamSummary{Enabled: true, ViewType: string(ss.StreamViewType), ARN: aws.ToString(d.LatestStreamArn)}
	}
	return sum
}
