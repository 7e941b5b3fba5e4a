package dynamocheckpoint

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/internal/input"
)

// Request stores r with one PutItem, replacing any request for the same
// subscription and aggregate, and returns it with ID (32 random hexadecimal
// digits, when empty) and RequestedAt (Config.Clock, when zero) set. Done,
// Result, Handled and CompletedAt are cleared. See checkpoint.RequestStore
// for the errors.
func (s *Store) Request(ctx context.Context, r checkpoint.Request) (checkpoint.Request, error) {
	r, err := input.Request(r, s.cfg.Clock, input.NewRequestID)
	if err != nil {
		return checkpoint.Request{}, err
	}
	if _, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.cfg.TableName), Item: encodeRequest(r)}); err != nil {
		return checkpoint.Request{}, fmt.Errorf("checkpoint: request %s of %q aggregate %q: %w", r.Kind, r.Subscription, r.AggregateID, err)
	}
	return r, nil
}

// Requests lists the requests of one subscription (one strongly consistent
// Query, every page), or of every subscription when subscription is "" (a
// Scan for the names of the subscriptions with requests, reading every
// item of the table as List("") does, then a Query per subscription, in
// order). See checkpoint.RequestStore; an item that does not decode is
// yielded as a *DecodeError and the sequence goes on.
func (s *Store) Requests(ctx context.Context, subscription string) iter.Seq2[checkpoint.Request, error] {
	return func(yield func(checkpoint.Request, error) bool) {
		if err := input.Requests(subscription); err != nil {
			yield(checkpoint.Request{}, err)
			return
		}
		if subscription != "" {
			s.requestsOf(ctx, subscription, yield)
			return
		}
		subs, err := s.subscriptions(ctx, "requests", requestPrefix)
		if err != nil {
			yield(checkpoint.Request{}, err)
			return
		}
		for _, sub := range subs {
			if !s.requestsOf(ctx, sub, yield) {
				return
			}
		}
	}
}

// requestsOf yields one subscription's requests and reports whether the
// caller may go on.
func (s *Store) requestsOf(ctx context.Context, subscription string, yield func(checkpoint.Request, error) bool) bool {
	key := expression.Key(AttrPK).Equal(expression.Value(requestPrefix + subscription))
	expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
	if err != nil {
		yield(checkpoint.Request{}, fmt.Errorf("checkpoint: requests of %q: build expression: %w", subscription, err))
		return false
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
			yield(checkpoint.Request{}, fmt.Errorf("checkpoint: requests of %q: %w", subscription, err))
			return false
		}
		for _, item := range page.Items {
			if !yield(decodeRequest(item)) {
				return false
			}
		}
	}
	return true
}

// Complete marks the request r.ID done with one UpdateItem conditional on
// the item's requestId being r.ID: it sets done, handled, completedAt
// (Config.Clock) and result (removed when empty). A request replaced or
// deleted returns an error matching checkpoint.ErrNotFound. See
// checkpoint.RequestStore.
func (s *Store) Complete(ctx context.Context, r checkpoint.Request) error {
	r, err := input.Completion(r)
	if err != nil {
		return err
	}
	update := expression.Set(expression.Name(AttrDone), expression.Value(true)).
		Set(expression.Name(AttrHandled), expression.Value(r.Handled)).
		Set(expression.Name(AttrCompletedAt), expression.Value(s.cfg.Clock().UnixMilli()))
	if r.Result == "" {
		update = update.Remove(expression.Name(AttrResult))
	} else {
		update = update.Set(expression.Name(AttrResult), expression.Value(r.Result))
	}
	cond := expression.Name(AttrRequestID).Equal(expression.Value(r.ID))
	what := fmt.Sprintf("request %q of %q aggregate %q", r.ID, r.Subscription, r.AggregateID)
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("checkpoint: complete %s: build expression: %w", what, err)
	}
	_, err = s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.cfg.TableName),
		Key:                                 requestKey(r.Subscription, r.AggregateID),
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ccf):
		return fmt.Errorf("checkpoint: complete %s: %w", what, err)
	case len(ccf.Item) == 0:
		return fmt.Errorf("%w: %s (deleted)", checkpoint.ErrNotFound, what)
	}
	d := decoder{item: ccf.Item}
	return fmt.Errorf("%w: %s (replaced by request %q)", checkpoint.ErrNotFound, what, d.str(AttrRequestID, false))
}

// DeleteRequest removes the request id of an aggregate with one DeleteItem
// conditional on the item's requestId being id; a failed condition (another
// request, or none) is not an error. An empty subscription, aggregate id or
// id returns an error matching checkpoint.ErrInvalidArgument. See
// checkpoint.RequestStore.
func (s *Store) DeleteRequest(ctx context.Context, subscription, aggregateID, id string) error {
	if err := input.RequestKey(subscription, aggregateID); err != nil {
		return err
	}
	if err := input.RequestID(id, true); err != nil {
		return err
	}
	what := fmt.Sprintf("request %q of %q aggregate %q", id, subscription, aggregateID)
	expr, err := expression.NewBuilder().WithCondition(expression.Name(AttrRequestID).Equal(expression.Value(id))).Build()
	if err != nil {
		return fmt.Errorf("checkpoint: delete %s: build expression: %w", what, err)
	}
	_, err = s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(s.cfg.TableName),
		Key:                       requestKey(subscription, aggregateID),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("checkpoint: delete %s: %w", what, err)
	}
	return nil
}
