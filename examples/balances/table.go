package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DefaultTable is the balances table's name when BALANCES_TABLE is unset.
const DefaultTable = "balances"

// TableAPI is the DynamoDB calls EnsureTable makes. *dynamodb.Client
// implements it.
type TableAPI interface {
	CreateTable(ctx context.Context, params *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var _ TableAPI = (*dynamodb.Client)(nil)

// ErrTableMismatch: the balances table exists with another key.
var ErrTableMismatch = errors.New("balances: table has the wrong key")

// tableWait bounds how long EnsureTable waits for a new table to be ACTIVE.
const tableWait = 5 * time.Minute

// EnsureTable creates the balances table if it does not exist (on-demand
// billing, partition key accountId of type S) and waits, up to 5 minutes,
// until it is ACTIVE. An existing table with another key schema is an
// ErrTableMismatch error; DynamoDB's errors are returned wrapped.
func EnsureTable(ctx context.Context, api TableAPI, table string) error {
	out, err := api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		_, err = api.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String(table),
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrAccountID), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrAccountID), KeyType: types.KeyTypeHash}},
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) { // in use: another process created it first
			return fmt.Errorf("balances: create table %s: %w", table, err)
		}
	case err != nil:
		return fmt.Errorf("balances: describe table %s: %w", table, err)
	default:
		if err := checkKey(out.Table); err != nil {
			return fmt.Errorf("%w: %s: %s", ErrTableMismatch, table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
	}
	waiter := dynamodb.NewTableExistsWaiter(api, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Second, 5*time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, tableWait); err != nil {
		return fmt.Errorf("balances: wait for table %s: %w", table, err)
	}
	return nil
}

// checkKey says how a table's key differs from accountId (S) alone.
func checkKey(t *types.TableDescription) error {
	var keys []string
	for _, k := range t.KeySchema {
		keys = append(keys, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	if len(t.KeySchema) != 1 || aws.ToString(t.KeySchema[0].AttributeName) != attrAccountID || t.KeySchema[0].KeyType != types.KeyTypeHash {
		return fmt.Errorf("key schema is [%s], want [%s HASH]", strings.Join(keys, ", "), attrAccountID)
	}
	for _, a := range t.AttributeDefinitions {
		if aws.ToString(a.AttributeName) == attrAccountID && a.AttributeType != types.ScalarAttributeTypeS {
			return fmt.Errorf("%s has type %s, want S", attrAccountID, a.AttributeType)
		}
	}
	return nil
}

// Account is one item of the balances table.
type Account struct {
	AccountID string `dynamodbav:"accountId"`
	Owner     string `dynamodbav:"owner,omitempty"`
	// Balance is the sum of deposits less withdrawals, in the events'
	// unit.
	Balance int64 `dynamodbav:"balance"`
	// NextVersion is the version of the next commit to apply: every
	// commit below it is applied.
	NextVersion int64 `dynamodbav:"nextVersion"`
	// SkippedVersions lists the commits whose events could not be decoded:
	// the balance leaves them out. Ascending.
	SkippedVersions []int64 `dynamodbav:"skippedVersions,numberset,omitempty"`
}

// ScanAPI is the DynamoDB call ReadAccounts makes. *dynamodb.Client
// implements it.
type ScanAPI interface {
	Scan(ctx context.Context, params *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ ScanAPI = (*dynamodb.Client)(nil)

// ReadAccounts returns every account of the balances table, sorted by id,
// read with strongly consistent reads, every page. An item that does not
// decode as an Account is an ErrCorruptItem error.
func ReadAccounts(ctx context.Context, api ScanAPI, table string) ([]Account, error) {
	var accounts []Account
	p := dynamodb.NewScanPaginator(api, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("balances: scan %s: %w", table, err)
		}
		for _, item := range page.Items {
			var a Account
			if err := attributevalue.UnmarshalMap(item, &a); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorruptItem, err)
			}
			slices.Sort(a.SkippedVersions)
			accounts = append(accounts, a)
		}
	}
	slices.SortFunc(accounts, func(a, b Account) int { return strings.Compare(a.AccountID, b.AccountID) })
	return accounts, nil
}
