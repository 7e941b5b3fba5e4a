package dynamocheckpoint

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtable"
)

// TableAPI is the DynamoDB calls of table management. *dynamodb.Client
// implements it.
type TableAPI = ddbtable.API

// Table errors, matched with errors.Is.
var (
	// ErrTableExists: CreateTable found the table already there.
	ErrTableExists = ddbtable.ErrExists
	// ErrTableNotFound: the table does not exist.
	ErrTableNotFound = ddbtable.ErrNotFound
)

// TableOptions are the parts of the checkpoints table's definition that do
// not change its layout.
type TableOptions struct {
	// ReadCapacity and WriteCapacity are provisioned units for the table.
	// Both zero, the default, means on-demand (PAY_PER_REQUEST) billing.
	ReadCapacity, WriteCapacity int64
}

// TableDefinition returns the checkpoints table as DynamoDB's CreateTable
// input: hash key pk (S), range key sk (S), no index, no stream. This is the
// one definition of the table; the deploy files are checked against it.
func TableDefinition(cfg Config, opts TableOptions) *dynamodb.CreateTableInput {
	cfg = cfg.withDefaults()
	in := &dynamodb.CreateTableInput{
		TableName: aws.String(cfg.TableName),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
	if opts.ReadCapacity > 0 || opts.WriteCapacity > 0 {
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = &types.ProvisionedThroughput{
			ReadCapacityUnits:  aws.Int64(opts.ReadCapacity),
			WriteCapacityUnits: aws.Int64(opts.WriteCapacity),
		}
	}
	return in
}

// CreateTable creates the checkpoints table and waits until it is ACTIVE or
// ctx ends. An existing table returns an error matching ErrTableExists.
// Provisioned capacity below 1 unit, or a bad table name, returns
// checkpoint.ErrInvalidArgument before any call.
func CreateTable(ctx context.Context, api TableAPI, cfg Config, opts TableOptions) error {
	if (opts.ReadCapacity > 0) != (opts.WriteCapacity > 0) || opts.ReadCapacity < 0 || opts.WriteCapacity < 0 {
		return fmt.Errorf("%w: provisioned capacity %d read, %d write: set both to 1 or more, or neither",
			checkpoint.ErrInvalidArgument, opts.ReadCapacity, opts.WriteCapacity)
	}
	if err := cfg.withDefaults().validate(); err != nil {
		return err
	}
	if err := ddbtable.Create(ctx, api, TableDefinition(cfg, opts)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// DeleteTable deletes the checkpoints table and waits until it is gone or
// ctx ends. A missing table returns an error matching ErrTableNotFound.
func DeleteTable(ctx context.Context, api TableAPI, cfg Config) error {
	if err := ddbtable.Delete(ctx, api, cfg.withDefaults().TableName); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// DescribeTable returns the checkpoints table's description and how it
// differs from TableDefinition in what this package relies on (key schema
// and attribute types; an empty list when it conforms). A missing table
// returns an error matching ErrTableNotFound.
func DescribeTable(ctx context.Context, api TableAPI, cfg Config) (*types.TableDescription, []string, error) {
	cfg = cfg.withDefaults()
	d, err := ddbtable.Describe(ctx, api, cfg.TableName)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	return d, ddbtable.Mismatches(TableDefinition(cfg, TableOptions{}), d), nil
}
