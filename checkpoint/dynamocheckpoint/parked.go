package dynamocheckpoint

import (
	"context"
	"fmt"
	"iter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/internal/input"
)

// Park stores p with one PutItem, overwriting an earlier park of the same
// subscription, aggregate and version. Besides the input rules of
// checkpoint.ParkStore, it returns an error matching
// checkpoint.ErrInvalidArgument, before any call, when the item would exceed
// DynamoDB's limits: MaxItemBytes for the whole item (the commit's events
// are most of it) or MaxSortKeyBytes for its sort key (an aggregate id near
// store.MaxAggregateIDBytes with a version of more than 13 digits).
func (s *Store) Park(ctx context.Context, p checkpoint.Parked) error {
	p, err := input.Parked(p, s.cfg.Clock)
	if err != nil {
		return err
	}
	item := encodeParked(p)
	what := fmt.Sprintf("park %q aggregate %q version %d", p.Subscription, p.Commit.AggregateID, p.Commit.Version)
	if n := len(parkedSortKey(p.Commit.AggregateID, p.Commit.Version)); n > MaxSortKeyBytes {
		return fmt.Errorf("%w: %s: sort key is %d bytes, DynamoDB's limit is %d", checkpoint.ErrInvalidArgument, what, n, MaxSortKeyBytes)
	}
	if n := itemSize(item); n > MaxItemBytes {
		return fmt.Errorf("%w: %s: item is %d bytes, DynamoDB's limit is %d", checkpoint.ErrInvalidArgument, what, n, MaxItemBytes)
	}
	if _, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.cfg.TableName), Item: item}); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", what, err)
	}
	return nil
}

// Parked lists a subscription's parked commits, of one aggregate (a Query
// with begins_with on the aggregate's sort key prefix) or of all, with
// strongly consistent reads, every page. See checkpoint.ParkStore; an item
// that does not decode is yielded as a *DecodeError.
func (s *Store) Parked(ctx context.Context, subscription, aggregateID string) iter.Seq2[checkpoint.Parked, error] {
	return func(yield func(checkpoint.Parked, error) bool) {
		if err := input.ParkedFilter(subscription, aggregateID); err != nil {
			yield(checkpoint.Parked{}, err)
			return
		}
		key := expression.Key(AttrPK).Equal(expression.Value(parkedPrefix + subscription))
		if aggregateID != "" {
			key = key.And(expression.Key(AttrSK).BeginsWith(parkedAggregatePrefix(aggregateID)))
		}
		expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
		if err != nil {
			yield(checkpoint.Parked{}, fmt.Errorf("checkpoint: parked %q: build expression: %w", subscription, err))
			return
		}
		p := dynamodb.NewQueryPaginator(s.api, &dynamodb.QueryInput{
			TableName:                 aws.String(s.cfg.TableName),
			KeyConditionExpression:    expr.KeyCondition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
			ConsistentRead:            aws.Bool(true),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(checkpoint.Parked{}, fmt.Errorf("checkpoint: parked %q aggregate %q: %w", subscription, aggregateID, err))
				return
			}
			for _, item := range page.Items {
				if !yield(decodeParked(item)) {
					return
				}
			}
		}
	}
}

// Unpark removes one parked commit with one DeleteItem. See
// checkpoint.ParkStore.
func (s *Store) Unpark(ctx context.Context, subscription, aggregateID string, version int64) error {
	if err := input.ParkedKey(subscription, aggregateID, version); err != nil {
		return err
	}
	_, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.cfg.TableName),
		Key:       parkedKey(subscription, aggregateID, version),
	})
	if err != nil {
		return fmt.Errorf("checkpoint: unpark %q aggregate %q version %d: %w", subscription, aggregateID, version, err)
	}
	return nil
}
