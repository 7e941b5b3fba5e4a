package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// fakeUpdater is an UpdateItemAPI that records its inputs and answers with
// fn.
type fakeUpdater struct {
	inputs []*dynamodb.UpdateItemInput
	fn     func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
}

func (f *fakeUpdater) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	f.inputs = append(f.inputs, in)
	if f.fn == nil {
		return &dynamodb.UpdateItemOutput{}, nil
	}
	return f.fn(in)
}

// placeholder matches the names and values of an expression.
var placeholder = regexp.MustCompile(`[#:][A-Za-z0-9_]+`)

// render returns an expression with its placeholders replaced by the names
// and values they stand for.
func render(expr *string, in *dynamodb.UpdateItemInput) string {
	return placeholder.ReplaceAllStringFunc(aws.ToString(expr), func(p string) string {
		if p[0] == '#' {
			return in.ExpressionAttributeNames[p]
		}
		switch v := in.ExpressionAttributeValues[p].(type) {
		case *types.AttributeValueMemberN:
			return v.Value
		case *types.AttributeValueMemberS:
			return `"` + v.Value + `"`
		case *types.AttributeValueMemberNS:
			return "<<" + v.Value[0] + ">>"
		}
		return "?" + p
	})
}

func TestHandleRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		c                 subscribe.Commit
		update, condition string
	}{
		{"version 0 opens", commit(t, "acc", 0, opened("Ada"), deposit(100)),
			"ADD balance 100\nSET nextVersion = 1, owner = \"Ada\"\n", "attribute_not_exists (nextVersion)"},
		{"a later version", commit(t, "acc", 7, deposit(5), withdraw(25)),
			"ADD balance -20\nSET nextVersion = 8\n", "nextVersion = 7"},
		{"an undecodable commit", rawCommit("acc", 3, `"nope"`),
			"ADD balance 0, skippedVersions <<3>>\nSET nextVersion = 4\n", "nextVersion = 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeUpdater{}
			_ = NewHandler(f, "tbl").Handle(t.Context(), tt.c)
			if len(f.inputs) != 1 {
				t.Fatalf("%d UpdateItem calls, want 1", len(f.inputs))
			}
			in := f.inputs[0]
			if got := render(in.UpdateExpression, in); got != tt.update {
				t.Errorf("update %q, want %q", got, tt.update)
			}
			if got := render(in.ConditionExpression, in); got != tt.condition {
				t.Errorf("condition %q, want %q", got, tt.condition)
			}
			if aws.ToString(in.TableName) != "tbl" || in.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
				t.Errorf("table %q, return values on failure %q; want tbl, ALL_OLD", aws.ToString(in.TableName), in.ReturnValuesOnConditionCheckFailure)
			}
			if k, ok := in.Key[attrAccountID].(*types.AttributeValueMemberS); !ok || k.Value != "acc" || len(in.Key) != 1 {
				t.Errorf("key %v, want accountId acc", in.Key)
			}
		})
	}
}

// TestHandleFailures injects DynamoDB's answers that are not a success.
func TestHandleFailures(t *testing.T) {
	t.Parallel()
	throttled := &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	failed := func(item map[string]types.AttributeValue) error {
		return &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed"), Item: item}
	}
	n := func(s string) types.AttributeValue { return &types.AttributeValueMemberN{Value: s} }
	tests := []struct {
		name    string
		version int64
		err     error
		check   func(t *testing.T, err error)
	}{
		{"throttled", 2, throttled, func(t *testing.T, err error) {
			if !errors.Is(err, throttled) || isSkip(err) || errors.Is(err, ErrGap) {
				t.Errorf("Handle = %v, want DynamoDB's error, to be retried", err)
			}
		}},
		{"applied before", 2, failed(map[string]types.AttributeValue{attrNextVersion: n("5")}), func(t *testing.T, err error) {
			if err != nil {
				t.Errorf("Handle = %v, want nil", err)
			}
		}},
		{"a gap", 2, failed(map[string]types.AttributeValue{attrNextVersion: n("1")}), func(t *testing.T, err error) {
			var gap *GapError
			if !errors.As(err, &gap) || gap.Next != 1 || gap.Version != 2 {
				t.Errorf("Handle = %v, want a gap from 1 to 2", err)
			}
		}},
		{"no item", 2, failed(nil), func(t *testing.T, err error) {
			var gap *GapError
			if !errors.As(err, &gap) || gap.Next != 0 {
				t.Errorf("Handle = %v, want a gap from 0", err)
			}
		}},
		{"no nextVersion", 2, failed(map[string]types.AttributeValue{attrBalance: n("5")}), func(t *testing.T, err error) {
			if !errors.Is(err, ErrCorruptItem) {
				t.Errorf("Handle = %v, want ErrCorruptItem", err)
			}
		}},
		{"nextVersion not a version", 2, failed(map[string]types.AttributeValue{attrNextVersion: n("1.5")}), func(t *testing.T, err error) {
			if !errors.Is(err, ErrCorruptItem) {
				t.Errorf("Handle = %v, want ErrCorruptItem", err)
			}
		}},
		{"the condition holds in the old image", 2, failed(map[string]types.AttributeValue{attrNextVersion: n("2")}), func(t *testing.T, err error) {
			if err == nil || isSkip(err) || errors.Is(err, ErrGap) {
				t.Errorf("Handle = %v, want an error to retry", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeUpdater{fn: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, tt.err }}
			tt.check(t, NewHandler(f, "tbl").Handle(t.Context(), commit(t, "acc", tt.version, deposit(1))))
		})
	}
	// An undecodable commit whose write fails is not skipped: the write is
	// retried.
	f := &fakeUpdater{fn: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, throttled }}
	if err := NewHandler(f, "tbl").Handle(t.Context(), rawCommit("acc", 1, "{}")); !errors.Is(err, throttled) || isSkip(err) {
		t.Errorf("undecodable, throttled: Handle = %v, want DynamoDB's error, to be retried", err)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events string
		want   change
		bad    bool
	}{
		{"open and deposit", `[{"type":"AccountOpened","owner":"Ada"},{"type":"MoneyDeposited","amount":100}]`, change{delta: 100, owner: "Ada", hasOwner: true}, false},
		{"withdraw", `[{"type":"MoneyWithdrawn","amount":30}]`, change{delta: -30}, false},
		{"unknown types ignored", `[{"type":"AddressChanged","amount":7},{"type":"MoneyDeposited","amount":1}]`, change{delta: 1}, false},
		{"null events", `null`, change{}, false},
		{"the last owner wins", `[{"type":"AccountOpened","owner":"A"},{"type":"AccountOpened","owner":"B"}]`, change{owner: "B", hasOwner: true}, false},
		{"down to the minimum", `[{"type":"MoneyWithdrawn","amount":9223372036854775807},{"type":"MoneyWithdrawn","amount":1}]`, change{delta: -1 << 63}, false},
		{"below the minimum", `[{"type":"MoneyWithdrawn","amount":9223372036854775807},{"type":"MoneyWithdrawn","amount":2}]`, change{}, true},
		{"an object", `{"type":"MoneyDeposited"}`, change{}, true},
		{"a fraction", `[{"type":"MoneyDeposited","amount":1.5}]`, change{}, true},
		{"not JSON", `[{`, change{}, true},
		{"negative", `[{"type":"MoneyDeposited","amount":-1}]`, change{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(rawCommit("acc", 0, tt.events))
			if tt.bad {
				if !errors.Is(err, ErrUndecodable) {
					t.Errorf("decode = %+v, %v; want ErrUndecodable", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("decode = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestPrintAccounts(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := printAccounts(&b, []Account{
		{AccountID: "account-001", Owner: "Ada", Balance: 120, NextVersion: 4},
		{AccountID: "account-002", Balance: -5, NextVersion: 3, SkippedVersions: []int64{1, 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `ACCOUNT      OWNER  BALANCE  NEXT VERSION  SKIPPED
account-001  Ada    120      4             -
account-002  -      -5       3             1,2
2 accounts, total balance 115
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
