package dynamocheckpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
)

// DefaultTableName is the checkpoints table's name when Config.TableName is
// empty.
const DefaultTableName = "eventstoreCheckpoints"

// GetItemAPI is the DynamoDB GetItem call Load makes.
type GetItemAPI interface {
	GetItem(ctx context.Context, params *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// UpdateItemAPI is the DynamoDB UpdateItem call Claim, Take, Renew, Save,
// Set, Release and Complete make.
type UpdateItemAPI interface {
	UpdateItem(ctx context.Context, params *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// PutItemAPI is the DynamoDB PutItem call Park and Request make.
type PutItemAPI interface {
	PutItem(ctx context.Context, params *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// DeleteItemAPI is the DynamoDB DeleteItem call Delete, Unpark and
// DeleteRequest make.
type DeleteItemAPI interface {
	DeleteItem(ctx context.Context, params *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// API is every DynamoDB call a Store makes: the above, Query (List, Parked
// and Requests) and Scan (List and Requests of every subscription).
// *dynamodb.Client implements it.
type API interface {
	GetItemAPI
	UpdateItemAPI
	PutItemAPI
	DeleteItemAPI
	dynamodb.QueryAPIClient
	dynamodb.ScanAPIClient
}

var _ API = (*dynamodb.Client)(nil)

var (
	_ checkpoint.Store     = (*Store)(nil)
	_ checkpoint.Lister    = (*Store)(nil)
	_ checkpoint.Setter    = (*Store)(nil)
	_ checkpoint.Leaser    = (*Store)(nil)
	_ checkpoint.Deleter   = (*Store)(nil)
	_ checkpoint.ParkStore = (*Store)(nil)

	_ checkpoint.RequestStore = (*Store)(nil)
)

// Config configures a Store. The zero value uses the table
// eventstoreCheckpoints and the system clock.
type Config struct {
	// TableName is the checkpoints table: 3 to 255 characters. Default
	// DefaultTableName.
	TableName string
	// Clock gives the times stored as updatedAt (Save, Set), expires
	// (Take, Renew: the clock's time plus the lease's duration), parkedAt
	// (Park, when Parked.ParkedAt is zero), requestedAt (Request, when
	// Request.RequestedAt is zero) and completedAt (Complete), kept at
	// millisecond precision, and the time at which Set and Delete judge
	// whether a holder's lease has expired.
	// Default time.Now. It may be called from several goroutines at once.
	Clock func() time.Time
}

func (c Config) withDefaults() Config {
	if c.TableName == "" {
		c.TableName = DefaultTableName
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.TableName) < 3 || len(c.TableName) > 255 {
		return fmt.Errorf("%w: TableName %q: want 3 to 255 characters", checkpoint.ErrInvalidArgument, c.TableName)
	}
	return nil
}

// Store keeps checkpoints, parked commits and operators' requests in a
// DynamoDB table. It is safe
// for concurrent use.
type Store struct {
	api API
	cfg Config
}

// New returns a Store that calls DynamoDB through api. It returns an error
// matching checkpoint.ErrInvalidArgument when api is nil or cfg is invalid.
// It starts no goroutines and makes no calls; the table must exist (see
// CreateTable).
func New(api API, cfg Config) (*Store, error) {
	if api == nil {
		return nil, fmt.Errorf("%w: nil API", checkpoint.ErrInvalidArgument)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Store{api: api, cfg: cfg}, nil
}

// Config returns the store's configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }
