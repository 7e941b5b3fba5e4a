// Package ddbtable creates, describes and deletes DynamoDB tables from a
// definition, and waits for them: the one mechanism every table of the
// project (commits, checkpoints) goes through.
package ddbtable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// API is the DynamoDB calls of table management.
type API interface {
	CreateTable(ctx context.Context, params *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DeleteTable(ctx context.Context, params *dynamodb.DeleteTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteTableOutput, error)
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var _ API = (*dynamodb.Client)(nil)

// Errors, matched with errors.Is.
var (
	ErrExists   = errors.New("table already exists")
	ErrNotFound = errors.New("table not found")
)

// PollInterval is how often Create and Delete look at the table while they
// wait.
var PollInterval = 500 * time.Millisecond

// Create creates the table and waits until it and its indexes are ACTIVE, or
// ctx ends. A table that already exists returns an error matching ErrExists.
func Create(ctx context.Context, api API, in *dynamodb.CreateTableInput) error {
	name := aws.ToString(in.TableName)
	if _, err := api.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		return fmt.Errorf("create table %s: %w", name, err)
	}
	return poll(ctx, func() (bool, error) {
		d, err := Describe(ctx, api, name)
		if err != nil {
			return false, err
		}
		if d.TableStatus != types.TableStatusActive {
			return false, nil
		}
		for _, ix := range d.GlobalSecondaryIndexes {
			if ix.IndexStatus != types.IndexStatusActive {
				return false, nil
			}
		}
		return true, nil
	})
}

// Delete deletes the table and waits until it is gone, or ctx ends. A table
// that does not exist returns an error matching ErrNotFound.
func Delete(ctx context.Context, api API, name string) error {
	if _, err := api.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	return poll(ctx, func() (bool, error) {
		_, err := Describe(ctx, api, name)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		return false, err
	})
}

// Describe returns the table's description, or an error matching
// ErrNotFound.
func Describe(ctx context.Context, api API, name string) (*types.TableDescription, error) {
	out, err := api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, fmt.Errorf("describe table %s: %w", name, err)
	}
	return out.Table, nil
}

func poll(ctx context.Context, done func() (bool, error)) error {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Mismatches lists how a described table differs from its definition in what
// readers and writers rely on: key schema, attribute types, indexes and their
// projections, and the stream. An empty list means it conforms.
func Mismatches(def *dynamodb.CreateTableInput, got *types.TableDescription) []string {
	var out []string
	attrType := func(attrs []types.AttributeDefinition, name string) types.ScalarAttributeType {
		for _, a := range attrs {
			if aws.ToString(a.AttributeName) == name {
				return a.AttributeType
			}
		}
		return ""
	}
	keys := func(where string, want, have []types.KeySchemaElement) {
		if len(want) != len(have) {
			out = append(out, fmt.Sprintf("%s: key schema has %d elements, want %d", where, len(have), len(want)))
			return
		}
		for i := range want {
			wn, hn := aws.ToString(want[i].AttributeName), aws.ToString(have[i].AttributeName)
			if wn != hn || want[i].KeyType != have[i].KeyType {
				out = append(out, fmt.Sprintf("%s: key %d is %s %s, want %s %s", where, i, hn, have[i].KeyType, wn, want[i].KeyType))
				continue
			}
			if wt, ht := attrType(def.AttributeDefinitions, wn), attrType(got.AttributeDefinitions, hn); wt != ht {
				out = append(out, fmt.Sprintf("%s: attribute %s has type %s, want %s", where, wn, ht, wt))
			}
		}
	}
	keys("table", def.KeySchema, got.KeySchema)
	for _, want := range def.GlobalSecondaryIndexes {
		name := aws.ToString(want.IndexName)
		var have *types.GlobalSecondaryIndexDescription
		for i := range got.GlobalSecondaryIndexes {
			if aws.ToString(got.GlobalSecondaryIndexes[i].IndexName) == name {
				have = &got.GlobalSecondaryIndexes[i]
			}
		}
		if have == nil {
			out = append(out, fmt.Sprintf("index %s: missing", name))
			continue
		}
		keys("index "+name, want.KeySchema, have.KeySchema)
		if want.Projection != nil && (have.Projection == nil || have.Projection.ProjectionType != want.Projection.ProjectionType) {
			var ht types.ProjectionType
			if have.Projection != nil {
				ht = have.Projection.ProjectionType
			}
			out = append(out, fmt.Sprintf("index %s: projection %s, want %s", name, ht, want.Projection.ProjectionType))
		}
	}
	if want := def.StreamSpecification; want != nil && aws.ToBool(want.StreamEnabled) {
		have := got.StreamSpecification
		if have == nil || !aws.ToBool(have.StreamEnabled) {
			out = append(out, "stream: disabled, want "+string(want.StreamViewType))
		} else if have.StreamViewType != want.StreamViewType && have.StreamViewType != types.StreamViewTypeNewAndOldImages {
			out = append(out, fmt.Sprintf("stream: view type %s, want %s", have.StreamViewType, want.StreamViewType))
		}
	}
	return out
}
