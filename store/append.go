package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Append writes one commit with one conditional PutItem, in the original
// package's item layout, and returns it as stored, with its CommitID and
// CommittedAt assigned.
//
// It returns an *InvalidCommitError (ErrInvalidCommit) before any write when
// the commit is invalid, a *VersionConflictError (ErrVersionConflict) when
// the aggregate already has that version, an error matching
// ErrTableNotFound when the table does not exist, and otherwise the SDK's
// error wrapped. When the SDK retried the write after an unknown outcome (a timeout)
// and finds the item its own first attempt wrote, Append succeeds.
func (s *Store) Append(ctx context.Context, c Commit) (Commit, error) {
	if err := validate(c, -1); err != nil {
		return Commit{}, err
	}
	c.CommittedAt = s.nextMilli()
	c.CommitID = FormatCommitID(c.CommittedAt, c.AggregateID)
	bucket, token := s.Bucket(c.AggregateID), newToken()
	if size := itemSize(c, bucket, token); size > MaxItemBytes {
		return Commit{}, &InvalidCommitError{Index: -1, AggregateID: c.AggregateID, Version: c.Version, Reason: ErrItemTooLarge,
			Detail: fmt.Sprintf("item is %d bytes, DynamoDB's limit is %d", size, MaxItemBytes)}
	}
	out, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           aws.String(s.cfg.TableName),
		Item:                                encode(c, bucket, token),
		ConditionExpression:                 s.putCond.Condition(),
		ExpressionAttributeNames:            s.putCond.Names(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              s.capacity,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			if tok, _ := stringAttr(ccf.Item, AttrCommitToken); tok == token {
				return decode(ccf.Item, time.Time{}) // our own earlier attempt
			}
			return Commit{}, conflict(c, -1, ccf.Item)
		}
		return Commit{}, fmt.Errorf("store: append aggregate %q version %d: %w", c.AggregateID, c.Version, s.callErr(err))
	}
	s.reportCapacity(OpAppend, out.ConsumedCapacity)
	return c, nil
}

func conflict(c Commit, index int, existing map[string]types.AttributeValue) error {
	e := &VersionConflictError{AggregateID: c.AggregateID, Version: c.Version, Index: index}
	if old, err := decode(existing, time.Time{}); err == nil {
		e.Existing = &old
	}
	return e
}

// AppendAll writes several commits, to one aggregate or several, atomically
// with one TransactWriteItems call: all are written or none. They share one
// CommittedAt. It returns them as stored, in the order given.
//
// Up to MaxTransactionCommits commits and MaxTransactionBytes in all are
// accepted; more, or none, return an error matching ErrTransactionTooLarge.
// Invalid commits, and two commits for the same aggregate and version, return
// an *InvalidCommitError whose Index names the commit, before any write. A
// version already taken returns a *VersionConflictError whose Index names
// the commit that conflicted. A missing table returns an error matching
// ErrTableNotFound. A transaction cancelled for another reason (a
// concurrent transaction on the same item, throttling) returns the SDK's
// error wrapped; nothing was written then, and the call may be retried.
// Like TransactWriteItems, it costs twice the write capacity of single
// appends.
func (s *Store) AppendAll(ctx context.Context, commits ...Commit) ([]Commit, error) {
	if len(commits) == 0 || len(commits) > MaxTransactionCommits {
		return nil, fmt.Errorf("%w: %d commits, want 1 to %d", ErrTransactionTooLarge, len(commits), MaxTransactionCommits)
	}
	type key struct {
		id string
		v  int64
	}
	seen := make(map[key]int, len(commits))
	for i, c := range commits {
		if err := validate(c, i); err != nil {
			return nil, err
		}
		if j, dup := seen[key{c.AggregateID, c.Version}]; dup {
			return nil, &InvalidCommitError{Index: i, AggregateID: c.AggregateID, Version: c.Version, Reason: ErrDuplicateCommit,
				Detail: fmt.Sprintf("same as commit %d", j)}
		}
		seen[key{c.AggregateID, c.Version}] = i
	}
	at, token := s.nextMilli(), newToken()
	out := make([]Commit, len(commits))
	items := make([]types.TransactWriteItem, len(commits))
	total := 0
	for i, c := range commits {
		c.CommittedAt = at
		c.CommitID = FormatCommitID(at, c.AggregateID)
		bucket := s.Bucket(c.AggregateID)
		size := itemSize(c, bucket, token)
		if size > MaxItemBytes {
			return nil, &InvalidCommitError{Index: i, AggregateID: c.AggregateID, Version: c.Version, Reason: ErrItemTooLarge,
				Detail: fmt.Sprintf("item is %d bytes, DynamoDB's limit is %d", size, MaxItemBytes)}
		}
		total += size
		out[i] = c
		items[i] = types.TransactWriteItem{Put: &types.Put{
			TableName:                           aws.String(s.cfg.TableName),
			Item:                                encode(c, bucket, token),
			ConditionExpression:                 s.putCond.Condition(),
			ExpressionAttributeNames:            s.putCond.Names(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}}
	}
	if total > MaxTransactionBytes {
		return nil, fmt.Errorf("%w: %d bytes in %d commits, DynamoDB's limit is %d", ErrTransactionTooLarge, total, len(commits), MaxTransactionBytes)
	}
	res, err := s.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems:          items,
		ClientRequestToken:     aws.String(token),
		ReturnConsumedCapacity: s.capacity,
	})
	if err != nil {
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) {
			return nil, fmt.Errorf("store: append %d commits: %w", len(commits), s.callErr(err))
		}
		firstConflict := -1
		for i, r := range tce.CancellationReasons {
			if i >= len(commits) || aws.ToString(r.Code) != "ConditionalCheckFailed" {
				continue
			}
			if tok, _ := stringAttr(r.Item, AttrCommitToken); tok == token {
				// An earlier attempt of this very call committed: the
				// transaction is all or nothing, so every commit is ours.
				return out, nil
			}
			if firstConflict < 0 {
				firstConflict = i
			}
		}
		if firstConflict >= 0 {
			return nil, conflict(out[firstConflict], firstConflict, tce.CancellationReasons[firstConflict].Item)
		}
		return nil, fmt.Errorf("store: append %d commits cancelled (%s): %w", len(commits), reasons(tce.CancellationReasons), err)
	}
	if s.cfg.ConsumedCapacity != nil {
		for i := range res.ConsumedCapacity {
			s.reportCapacity(OpAppendAll, &res.ConsumedCapacity[i])
		}
	}
	return out, nil
}

func reasons(rs []types.CancellationReason) string {
	codes := make([]string, 0, len(rs))
	for i, r := range rs {
		if code := aws.ToString(r.Code); code != "" && code != "None" {
			codes = append(codes, fmt.Sprintf("commit %d: %s", i, code))
		}
	}
	return strings.Join(codes, ", ")
}
