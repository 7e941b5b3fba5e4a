package promhooks_test

import (
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
	"github.com/dynamodb-event-store/eventstore/subscribe/promhooks"
)

// The metrics go into both configs: the store's for consumed capacity, the
// worker's for everything else.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	storeCfg := store.Config{ConsumedCapacity: m.ConsumedCapacity}
	workerCfg := subscribe.Config{Hooks: []any{m}}
	_, _ = storeCfg, workerCfg // store.New(client, storeCfg); subscribe.NewWorker(workerCfg) …

	// What the store and the worker call:
	storeCfg.ConsumedCapacity(store.OpAppend, types.ConsumedCapacity{
		TableName:              aws.String(store.DefaultTableName),
		Table:                  &types.Capacity{CapacityUnits: aws.Float64(1)},
		GlobalSecondaryIndexes: map[string]types.Capacity{store.DefaultIndexName: {CapacityUnits: aws.Float64(1)}},
	})
	m.OnHandled("balances", 2, 5, 30*time.Millisecond, nil)

	n, err := testutil.GatherAndCount(reg)
	fmt.Println(n, err)

	// A second set on the same registry is an error, not a panic.
	_, err = promhooks.New(reg)
	fmt.Println(err != nil)
	// Output:
	// 5 <nil>
	// true
}
