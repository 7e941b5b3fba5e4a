package store

import (
	"context"
	"fmt"

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
// are ACTIVE or ctx ends. An existing table returns an error matching
// ErrTableExists. Provisioned capacity below 1 unit returns
// ErrInvalidArgument.
func CreateTable(ctx context.Context, api TableAPI, cfg Config, opts TableOptions) error {
	if (opts.ReadCapacity > 0) != (opts.WriteCapacity > 0) || opts.ReadCapacity < 0 || opts.WriteCapacity < 0 {
		return fmt.Errorf("%w: provisioned capacity %d read, %d write: set both to 1 or more, or neither", ErrInvalidArgument, opts.ReadCapacity, opts.WriteCapacity)
	}
	if err := ddbtable.Create(ctx, api, TableDefinition(cfg, opts)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
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
// from TableDefinition in what this package relies on (an empty list when it
// conforms). A missing table returns an error matching ErrTableNotFound.
func DescribeTable(ctx context.Context, api TableAPI, cfg Config) (*types.TableDescription, []string, error) {
	cfg = cfg.withDefaults()
	d, err := ddbtable.Describe(ctx, api, cfg.TableName)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return d, ddbtable.Mismatches(TableDefinition(cfg, TableOptions{NoStream: true}), d), nil
}
