package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// Attribute names of the balances table.
const (
	attrAccountID   = "accountId"
	attrOwner       = "owner"
	attrBalance     = "balance"
	attrNextVersion = "nextVersion"
	attrSkipped     = "skippedVersions"
)

// UpdateItemAPI is the one DynamoDB call the handler makes.
// *dynamodb.Client implements it.
type UpdateItemAPI interface {
	UpdateItem(ctx context.Context, params *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

var _ UpdateItemAPI = (*dynamodb.Client)(nil)

// Errors, matched with errors.Is.
var (
	// ErrGap: a commit came before its predecessor was applied. Returned
	// as a *GapError.
	ErrGap = errors.New("balances: version gap")
	// ErrUndecodable: a commit's events are not the account events this
	// read model knows. Returned inside subscribe.Skip.
	ErrUndecodable = errors.New("balances: undecodable events")
	// ErrCorruptItem: an account's item has no usable nextVersion.
	ErrCorruptItem = errors.New("balances: corrupt account item")
)

// GapError reports a commit that cannot be applied yet: the account's next
// expected version, Next, is below the commit's Version. Nothing was
// written.
type GapError struct {
	AccountID string
	Version   int64 // the commit's version
	Next      int64 // the account's stored nextVersion (0: no item)
}

func (e *GapError) Error() string {
	return fmt.Sprintf("balances: account %q: commit version %d came before version %d was applied", e.AccountID, e.Version, e.Next)
}

// Is reports whether target is ErrGap.
func (e *GapError) Is(target error) bool { return target == ErrGap }

// Event is one event of the demo's accounts, as the commits carry it.
type Event struct {
	// Type is "AccountOpened", "MoneyDeposited" or "MoneyWithdrawn"; other
	// types are ignored.
	Type string `json:"type"`
	// Owner is the account holder's name, set by AccountOpened.
	Owner string `json:"owner,omitempty"`
	// Amount is in the account's smallest unit, 0 or more.
	Amount int64 `json:"amount,omitempty"`
}

// Event types.
const (
	AccountOpened  = "AccountOpened"
	MoneyDeposited = "MoneyDeposited"
	MoneyWithdrawn = "MoneyWithdrawn"
)

// change is what one commit does to an account.
type change struct {
	delta    int64
	owner    string
	hasOwner bool
}

// decode reads a commit's events into the change they make. Errors wrap
// ErrUndecodable.
func decode(c subscribe.Commit) (change, error) {
	var events []Event
	if err := c.DecodeEvents(&events); err != nil {
		return change{}, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	var ch change
	for i, e := range events {
		bad := func(why string) error {
			return fmt.Errorf("%w: account %q version %d event %d (%s): %s", ErrUndecodable, c.AggregateID, c.Version, i, e.Type, why)
		}
		switch e.Type {
		case AccountOpened:
			ch.owner, ch.hasOwner = e.Owner, true
		case MoneyDeposited, MoneyWithdrawn:
			if e.Amount < 0 {
				return change{}, bad(fmt.Sprintf("negative amount %d", e.Amount))
			}
			d := e.Amount
			if e.Type == MoneyWithdrawn {
				d = -d
			}
			if (d > 0 && ch.delta > math.MaxInt64-d) || (d < 0 && ch.delta < math.MinInt64-d) {
				return change{}, bad("the commit's total amount is beyond int64")
			}
			ch.delta += d
		}
	}
	return ch, nil
}

// Handler applies commits to the balances table, one conditional UpdateItem
// per commit; a commit applied twice changes nothing (see the package
// documentation). It is safe for concurrent use.
type Handler struct {
	api   UpdateItemAPI
	table string
}

// NewHandler returns a Handler that writes to table through api.
func NewHandler(api UpdateItemAPI, table string) *Handler {
	return &Handler{api: api, table: table}
}

var _ subscribe.Handler = (*Handler)(nil)

// Handle applies c to its account. It returns nil when c is applied, now or
// before; a *GapError (errors.Is ErrGap) when the account's previous commit
// has not been applied, having written nothing; subscribe.Skip wrapping
// ErrUndecodable when c's events cannot be decoded, after moving the
// account's nextVersion past c (or finding it past c already); an error
// matching ErrCorruptItem when the account's item is not one this handler
// wrote; DynamoDB's error, wrapped, when the call fails. It makes one
// UpdateItem call.
func (h *Handler) Handle(ctx context.Context, c subscribe.Commit) error {
	ch, decodeErr := decode(c)
	update := expression.Set(expression.Name(attrNextVersion), expression.Value(c.Version+1)).
		Add(expression.Name(attrBalance), expression.Value(ch.delta))
	if decodeErr != nil {
		// Advance over it, with no change to the balance, and say so.
		update = update.Add(expression.Name(attrSkipped), expression.Value(types.AttributeValueMemberNS{
			Value: []string{strconv.FormatInt(c.Version, 10)},
		}))
	} else if ch.hasOwner {
		update = update.Set(expression.Name(attrOwner), expression.Value(ch.owner))
	}
	cond := expression.Name(attrNextVersion).Equal(expression.Value(c.Version))
	if c.Version == 0 {
		cond = expression.AttributeNotExists(expression.Name(attrNextVersion))
	}
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("balances: build update of %q version %d: %w", c.AggregateID, c.Version, err)
	}
	_, err = h.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(h.table),
		Key:                                 map[string]types.AttributeValue{attrAccountID: &types.AttributeValueMemberS{Value: c.AggregateID}},
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var failed *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &failed):
		next, err := storedNext(c.AggregateID, failed.Item)
		switch {
		case err != nil:
			return err
		case next < c.Version:
			return &GapError{AccountID: c.AggregateID, Version: c.Version, Next: next}
		case next == c.Version:
			// The condition holds for this item: it changed between the
			// write and the read of the old image. Try again.
			return fmt.Errorf("balances: account %q version %d: condition failed, then held; retry", c.AggregateID, c.Version)
		}
		// next > c.Version: applied before.
	case err != nil:
		return fmt.Errorf("balances: apply %q version %d: %w", c.AggregateID, c.Version, err)
	}
	if decodeErr != nil {
		return subscribe.Skip(decodeErr)
	}
	return nil
}

// storedNext returns the nextVersion of an account's old image: 0 when there
// is no item. An item without a usable nextVersion is an ErrCorruptItem
// error.
func storedNext(accountID string, item map[string]types.AttributeValue) (int64, error) {
	if len(item) == 0 {
		return 0, nil
	}
	n, ok := item[attrNextVersion].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("%w: account %q has no numeric %s", ErrCorruptItem, accountID, attrNextVersion)
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: account %q: %s is %q", ErrCorruptItem, accountID, attrNextVersion, n.Value)
	}
	return v, nil
}
