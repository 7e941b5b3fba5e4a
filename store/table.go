package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
)

// TableAPI is the DynamoDB calls of table management. *dynamodb.Client
// implements it.
type TableAPI = ddbtable.API

// TableOptions are the parts of the commits table's definition that do not
// change its layout.
type TableOptions struct {
	// ReadCapacity and WriteCapacity are provisioned units for the table
	// and its index. Both zero, the default, means on-demand
	// (PAY_PER_REQUEST) billing.
	ReadCapacity, WriteCapacity int64
	// NoStream creates the table without its stream. By default the stream
	// is enabled with view type NEW_IMAGE, which the stream source reads.
	NoStream bool
}

// TableDefinition returns the commits table as DynamoDB's CreateTable input:
// hash key aggregateId (S), range key version (N), and the global secondary
// index IndexName with hash key active (S), range key commitId (S),
// projection ALL. This is the one definition of the table; the deploy files
// are checked against it.
func TableDefinition(cfg Config, opts TableOptions) *dynamodb.CreateTableInput {
	cfg = cfg.withDefaults()
	in := &dynamodb.CreateTableInput{
		TableName: aws.String(cfg.TableName),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrAggregateID), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrVersion), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String(AttrActive), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrCommitID), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrAggregateID), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrVersion), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(cfg.IndexName),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(AttrActive), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(AttrCommitID), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		BillingMode: types.BillingModePayPerRequest,
	}
	if opts.ReadCapacity > 0 || opts.WriteCapacity > 0 {
		pt := &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(opts.ReadCapacity), WriteCapacityUnits: aws.Int64(opts.WriteCapacity)}
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = pt
		in.GlobalSecondaryIndexes[0].ProvisionedThroughput = pt
	}
	if !opts.NoStream {
		in.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage}
	}
	return in
}

// CreateTable creates the commits table and its index and waits until both
// are ACTIVE or ctx ends. Provisioned capacity below 1 unit returns
// ErrInvalidArgument.
//
// An existing table returns an error matching ErrTableExists, once it is no
// longer being created: when another process has just created it and it or
// its index is still CREATING, CreateTable waits for that first, so that a
// caller may use the table after either outcome. Whether an existing table
// has the layout asked for is DescribeTableFor's to say. If ctx ends or
// DescribeTable fails during that wait, the error is that failure, not
// ErrTableExists.
func CreateTable(ctx context.Context, api TableAPI, cfg Config, opts TableOptions) error {
	if (opts.ReadCapacity > 0) != (opts.WriteCapacity > 0) || opts.ReadCapacity < 0 || opts.WriteCapacity < 0 {
		return fmt.Errorf("%w: provisioned capacity %d read, %d write: set both to 1 or more, or neither", ErrInvalidArgument, opts.ReadCapacity, opts.WriteCapacity)
	}
	def := TableDefinition(cfg, opts)
	err := ddbtable.Create(ctx, api, def)
	if errors.Is(err, ErrTableExists) {
		if werr := awaitCreated(ctx, api, aws.ToString(def.TableName)); werr != nil {
			return werr
		}
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// awaitCreated waits until neither the table nor any of its indexes is
// CREATING.
func awaitCreated(ctx context.Context, api TableAPI, name string) error {
	for {
		d, err := ddbtable.Describe(ctx, api, name)
		if err != nil {
			return fmt.Errorf("store: table %s exists; waiting for it to be created: %w", name, err)
		}
		creating := d.TableStatus == types.TableStatusCreating
		for _, ix := range d.GlobalSecondaryIndexes {
			creating = creating || ix.IndexStatus == types.IndexStatusCreating
		}
		if !creating {
			return nil
		}
		t := time.NewTimer(ddbtable.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: table %s exists; waiting for it to be created: %w", name, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// DeleteTable deletes the commits table and waits until it is gone or ctx
// ends. A missing table returns an error matching ErrTableNotFound.
func DeleteTable(ctx context.Context, api TableAPI, cfg Config) error {
	if err := ddbtable.Delete(ctx, api, cfg.withDefaults().TableName); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// DescribeTable returns the commits table's description and how it differs
// from TableDefinition in what this package's reads and appends rely on (an
// empty list when it conforms): keys, attribute types, the index and its
// projection. The stream is not required, since the original package's
// tables have none and serve the index (scan mode) as they are; use
// DescribeTableFor to require it. A missing table returns an error matching
// ErrTableNotFound.
func DescribeTable(ctx context.Context, api TableAPI, cfg Config) (*types.TableDescription, []string, error) {
	return DescribeTableFor(ctx, api, cfg, TableOptions{NoStream: true})
}

// DescribeTableFor is DescribeTable comparing the table with what
// CreateTable(ctx, api, cfg, opts) creates: unless opts.NoStream, the stream
// must be enabled with view type NEW_IMAGE (or NEW_AND_OLD_IMAGES, which
// carries it), and a table without one lists "stream: disabled, want
// NEW_IMAGE". Capacity and billing mode are not compared. A missing table
// returns an error matching ErrTableNotFound.
func DescribeTableFor(ctx context.Context, api TableAPI, cfg Config, opts TableOptions) (*types.TableDescription, []string, error) {
	cfg = cfg.withDefaults()
	d, err := ddbtable.Describe(ctx, api, cfg.TableName)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return d, ddbtable.Mismatches(TableDefinition(cfg, opts), d), nil
}
