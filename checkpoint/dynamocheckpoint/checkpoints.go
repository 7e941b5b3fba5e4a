package dynamocheckpoint

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/internal/input"
)

// Claim makes owner the holder of key with one UpdateItem that increments
// the lease counter, sets the owner and removes expires (a claim does not
// expire), creating the item if needed, and returns the checkpoint as
// updated. See checkpoint.Store for the errors; an item that does not
// decode returns a *DecodeError.
func (s *Store) Claim(ctx context.Context, key checkpoint.Key, owner string) (checkpoint.Checkpoint, error) {
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Owner(owner); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	update := expression.Add(expression.Name(AttrLease), expression.Value(1)).
		Set(expression.Name(AttrOwner), expression.Value(owner)).
		Remove(expression.Name(AttrExpires))
	expr, err := expression.NewBuilder().WithUpdate(update).Build()
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: claim %s: build expression: %w", key, err)
	}
	out, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.cfg.TableName),
		Key:                       checkpointKey(key),
		UpdateExpression:          expr.Update(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: claim %s for %q: %w", key, owner, err)
	}
	return decodeCheckpoint(out.Attributes)
}

// Take makes owner the holder of key until d from Config.Clock with one
// UpdateItem that increments the lease counter and sets owner and expires,
// conditional on the counter being seen.Lease (on there being none when
// seen.Lease is 0, which creates the item) and, when seen.Owner is not "",
// on the item having no owner or having seen.Owner with expires as seen
// (Unix milliseconds of seen.Expires; no expires when it is zero). On a
// failed condition DynamoDB returns the item as it is, which fills the
// *checkpoint.FencedError. See checkpoint.Leaser for the errors; an item
// that does not decode returns a *DecodeError.
func (s *Store) Take(ctx context.Context, key checkpoint.Key, owner string, seen checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Owner(owner); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Seen(key, seen.Lease); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.LeaseDuration(d); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	cond := expression.AttributeNotExists(expression.Name(AttrLease))
	if seen.Lease > 0 {
		cond = expression.Name(AttrLease).Equal(expression.Value(seen.Lease))
		if seen.Owner != "" {
			cond = cond.And(expression.AttributeNotExists(expression.Name(AttrOwner)).Or(seenHolder(seen)))
		}
	}
	update := expression.Add(expression.Name(AttrLease), expression.Value(1)).
		Set(expression.Name(AttrOwner), expression.Value(owner)).
		Set(expression.Name(AttrExpires), expression.Value(input.Expires(s.cfg.Clock(), d).UnixMilli()))
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: take %s: build expression: %w", key, err)
	}
	out, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.cfg.TableName),
		Key:                                 checkpointKey(key),
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return decodeCheckpoint(out.Attributes)
	case !errors.As(err, &ccf):
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: take %s for %q at lease %d: %w", key, owner, seen.Lease, err)
	}
	fenced := &checkpoint.FencedError{Key: key, PresentedOwner: owner, PresentedLease: seen.Lease}
	if len(ccf.Item) > 0 { // else the key has no checkpoint: no owner, counter 0
		cur, err := decodeCheckpoint(ccf.Item)
		if err != nil {
			return checkpoint.Checkpoint{}, err
		}
		fenced.Owner, fenced.Lease = cur.Owner, cur.Lease
	}
	return checkpoint.Checkpoint{}, fenced
}

// seenHolder is the condition that the item's owner is seen.Owner with
// expires as seen: Unix milliseconds of seen.Expires, or none when it is
// zero (a holder by Claim).
func seenHolder(seen checkpoint.Checkpoint) expression.ConditionBuilder {
	expires := expression.AttributeNotExists(expression.Name(AttrExpires))
	if !seen.Expires.IsZero() {
		expires = expression.Name(AttrExpires).Equal(expression.Value(seen.Expires.UnixMilli()))
	}
	return expression.Name(AttrOwner).Equal(expression.Value(seen.Owner)).And(expires)
}

// Renew extends cp's lease to d from Config.Clock with one UpdateItem that
// sets expires, conditional on cp.Owner and cp.Lease, and returns the
// checkpoint as updated. See checkpoint.Leaser for the errors.
func (s *Store) Renew(ctx context.Context, cp checkpoint.Checkpoint, d time.Duration) (checkpoint.Checkpoint, error) {
	if err := input.Holder(cp); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.LeaseDuration(d); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	update := expression.Set(expression.Name(AttrExpires), expression.Value(input.Expires(s.cfg.Clock(), d).UnixMilli()))
	item, err := s.updateHeld(ctx, "renew", cp, update, types.ReturnValueAllNew)
	if err != nil {
		return checkpoint.Checkpoint{}, err
	}
	return decodeCheckpoint(item)
}

// heldCondition is the condition that owner holds the key at lease.
func heldCondition(cp checkpoint.Checkpoint) expression.ConditionBuilder {
	return expression.Name(AttrOwner).Equal(expression.Value(cp.Owner)).
		And(expression.Name(AttrLease).Equal(expression.Value(cp.Lease)))
}

// setPosition adds the position to an update: SET, or REMOVE when empty.
func setPosition(u expression.UpdateBuilder, position string) expression.UpdateBuilder {
	if position == "" {
		return u.Remove(expression.Name(AttrPosition))
	}
	return u.Set(expression.Name(AttrPosition), expression.Value(position))
}

// Save stores cp.Position with one UpdateItem conditional on cp.Owner and
// cp.Lease, and sets updatedAt; owner, lease and expires are left as they
// are. See checkpoint.Store for the errors.
func (s *Store) Save(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := input.Held(cp); err != nil {
		return err
	}
	update := setPosition(expression.Set(expression.Name(AttrUpdatedAt), expression.Value(s.cfg.Clock().UnixMilli())), cp.Position)
	_, err := s.updateHeld(ctx, "save", cp, update, types.ReturnValueNone)
	return err
}

// Release removes owner and expires with one UpdateItem conditional on
// cp.Owner and cp.Lease. See checkpoint.Setter for the errors.
func (s *Store) Release(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := input.Held(cp); err != nil {
		return err
	}
	update := expression.Remove(expression.Name(AttrOwner)).Remove(expression.Name(AttrExpires))
	_, err := s.updateHeld(ctx, "release", cp, update, types.ReturnValueNone)
	return err
}

// updateHeld applies update if cp.Owner holds cp.Key at cp.Lease and
// returns the item as ret asks, and otherwise returns a
// *checkpoint.FencedError or ErrNotFound.
func (s *Store) updateHeld(ctx context.Context, op string, cp checkpoint.Checkpoint, update expression.UpdateBuilder, ret types.ReturnValue) (map[string]types.AttributeValue, error) {
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(heldCondition(cp)).Build()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s %s: build expression: %w", op, cp.Key, err)
	}
	out, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.cfg.TableName),
		Key:                                 checkpointKey(cp.Key),
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValues:                        ret,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return out.Attributes, nil
	case !errors.As(err, &ccf):
		return nil, fmt.Errorf("checkpoint: %s %s for %q at lease %d: %w", op, cp.Key, cp.Owner, cp.Lease, err)
	case len(ccf.Item) == 0:
		return nil, notFound(cp.Key)
	}
	cur, err := decodeCheckpoint(ccf.Item)
	if err != nil {
		return nil, err
	}
	return nil, &checkpoint.FencedError{Key: cp.Key, Owner: cur.Owner, Lease: cur.Lease, PresentedOwner: cp.Owner, PresentedLease: cp.Lease}
}

func notFound(key checkpoint.Key) error {
	return fmt.Errorf("%w: %s", checkpoint.ErrNotFound, key)
}

// Load returns key's checkpoint, read with a strongly consistent GetItem.
// See checkpoint.Store for the errors; an item that does not decode returns
// a *DecodeError.
func (s *Store) Load(ctx context.Context, key checkpoint.Key) (checkpoint.Checkpoint, error) {
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.cfg.TableName),
		Key:            checkpointKey(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: load %s: %w", key, err)
	}
	if len(out.Item) == 0 {
		return checkpoint.Checkpoint{}, notFound(key)
	}
	return decodeCheckpoint(out.Item)
}

// Set overwrites key's position with one UpdateItem that also increments
// the lease counter, removes owner and expires and sets updatedAt,
// conditional unless force on there being no live holder: no owner, or
// expires at or before Config.Clock's time (a holder by Claim has no
// expires and never expires). See checkpoint.Setter for the errors.
func (s *Store) Set(ctx context.Context, key checkpoint.Key, position string, force bool) (checkpoint.Checkpoint, error) {
	if err := input.Key(key); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if err := input.Position(position); err != nil {
		return checkpoint.Checkpoint{}, err
	}
	now := s.cfg.Clock().UnixMilli()
	update := expression.Add(expression.Name(AttrLease), expression.Value(1)).
		Set(expression.Name(AttrUpdatedAt), expression.Value(now)).
		Remove(expression.Name(AttrOwner)).
		Remove(expression.Name(AttrExpires))
	b := expression.NewBuilder().WithUpdate(setPosition(update, position))
	if !force {
		// expires <= :now is false when there is no expires.
		b = b.WithCondition(expression.AttributeNotExists(expression.Name(AttrOwner)).
			Or(expression.Name(AttrExpires).LessThanEqual(expression.Value(now))))
	}
	expr, err := b.Build()
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: set %s: build expression: %w", key, err)
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.cfg.TableName),
		Key:                       checkpointKey(key),
		UpdateExpression:          expr.Update(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnValues:              types.ReturnValueAllNew,
	}
	if !force {
		in.ConditionExpression = expr.Condition()
		in.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	out, err := s.api.UpdateItem(ctx, in)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			// The condition fails only when a live owner is there.
			d := decoder{item: ccf.Item}
			owner := d.str(AttrOwner, false)
			expires := d.millis(AttrExpires, false)
			if d.err != nil {
				return checkpoint.Checkpoint{}, d.err
			}
			return checkpoint.Checkpoint{}, &checkpoint.HeldError{Key: key, Owner: owner, Expires: expires}
		}
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: set %s: %w", key, err)
	}
	return decodeCheckpoint(out.Attributes)
}

// Delete removes cp.Key's checkpoint with one DeleteItem conditional on the
// lease counter being cp.Lease and on there being no live holder: no
// owner, or expires at or before Config.Clock's time (a holder by Claim
// has no expires and never expires). On a failed condition DynamoDB
// returns the item as it is (none when there is no checkpoint), which
// says which error to return. The subscription's parked commits and
// requests are other items and stay. See checkpoint.Deleter for the
// errors; an item that does not decode returns a *DecodeError.
func (s *Store) Delete(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := input.Key(cp.Key); err != nil {
		return err
	}
	if err := input.Seen(cp.Key, cp.Lease); err != nil {
		return err
	}
	now := s.cfg.Clock().UnixMilli()
	// expires <= :now is false when there is no expires.
	cond := expression.Name(AttrLease).Equal(expression.Value(cp.Lease)).
		And(expression.AttributeNotExists(expression.Name(AttrOwner)).
			Or(expression.Name(AttrExpires).LessThanEqual(expression.Value(now))))
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("checkpoint: delete %s: build expression: %w", cp.Key, err)
	}
	_, err = s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                           aws.String(s.cfg.TableName),
		Key:                                 checkpointKey(cp.Key),
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
		return fmt.Errorf("checkpoint: delete %s at lease %d: %w", cp.Key, cp.Lease, err)
	case len(ccf.Item) == 0:
		return notFound(cp.Key)
	}
	cur, err := decodeCheckpoint(ccf.Item)
	if err != nil {
		return err
	}
	if cur.Lease != cp.Lease {
		return &checkpoint.FencedError{Key: cp.Key, Owner: cur.Owner, Lease: cur.Lease, PresentedOwner: cp.Owner, PresentedLease: cp.Lease}
	}
	// The counter matched, so the condition failed on a live owner.
	return &checkpoint.HeldError{Key: cp.Key, Owner: cur.Owner, Expires: cur.Expires}
}

// List returns the checkpoints of one subscription (one strongly consistent
// Query, every page), or of every subscription when subscription is "" (a
// Scan for the subscriptions' names, then a Query per subscription, in
// order). See checkpoint.Lister.
func (s *Store) List(ctx context.Context, subscription string) iter.Seq2[checkpoint.Checkpoint, error] {
	return func(yield func(checkpoint.Checkpoint, error) bool) {
		if subscription != "" {
			if err := input.Subscription(subscription); err != nil {
				yield(checkpoint.Checkpoint{}, err)
				return
			}
			s.listSubscription(ctx, subscription, yield)
			return
		}
		subs, err := s.subscriptions(ctx, "list", checkpointPrefix)
		if err != nil {
			yield(checkpoint.Checkpoint{}, err)
			return
		}
		for _, sub := range subs {
			if !s.listSubscription(ctx, sub, yield) {
				return
			}
		}
	}
}

// listSubscription yields one subscription's checkpoints and reports
// whether the caller may go on.
func (s *Store) listSubscription(ctx context.Context, subscription string, yield func(checkpoint.Checkpoint, error) bool) bool {
	key := expression.Key(AttrPK).Equal(expression.Value(checkpointPrefix + subscription))
	expr, err := expression.NewBuilder().WithKeyCondition(key).Build()
	if err != nil {
		yield(checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: list %q: build expression: %w", subscription, err))
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
			yield(checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: list %q: %w", subscription, err))
			return false
		}
		for _, item := range page.Items {
			if !yield(decodeCheckpoint(item)) {
				return false
			}
		}
	}
	return true
}

// subscriptions returns the names of every subscription with an item whose
// partition key is prefix and the name, sorted, from a Scan of the table's
// keys. op names the caller in errors.
func (s *Store) subscriptions(ctx context.Context, op, prefix string) ([]string, error) {
	expr, err := expression.NewBuilder().
		WithFilter(expression.Name(AttrPK).BeginsWith(prefix)).
		WithProjection(expression.NamesList(expression.Name(AttrPK))).
		Build()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: build expression: %w", op, err)
	}
	p := dynamodb.NewScanPaginator(s.api, &dynamodb.ScanInput{
		TableName:                 aws.String(s.cfg.TableName),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	seen := map[string]bool{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: scan %s: %w", op, s.cfg.TableName, err)
		}
		for _, item := range page.Items {
			if pk, ok := item[AttrPK].(*types.AttributeValueMemberS); ok {
				if sub, ok := strings.CutPrefix(pk.Value, prefix); ok && sub != "" {
					seen[sub] = true
				}
			}
		}
	}
	subs := make([]string, 0, len(seen))
	for sub := range seen {
		subs = append(subs, sub)
	}
	slices.Sort(subs)
	return subs, nil
}
