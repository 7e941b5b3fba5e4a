package checkpoint_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
)

// A worker claims its subscription, resumes from the saved position and
// saves as it goes; once another process claims the key, the first one's
// saves are fenced.
func Example_resume() {
	ctx := context.Background()
	var cps checkpoint.Store = memcheckpoint.New() // dynamocheckpoint.New(client, cfg) in production
	key := checkpoint.Key{Subscription: "order-totals"}

	cp, err := cps.Claim(ctx, key, "worker-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("resume from %q at lease %d\n", cp.Position, cp.Lease)
	cp.Position = `{"commitId":"20240101000000000:order-7","aggregateId":"order-7","version":3}`
	if err := cps.Save(ctx, cp); err != nil {
		fmt.Println(err)
		return
	}

	// Another process takes over.
	next, _ := cps.Claim(ctx, key, "worker-2")
	fmt.Printf("worker-2 resumes from %s at lease %d\n", next.Position, next.Lease)

	cp.Position = "too late"
	err = cps.Save(ctx, cp)
	var fenced *checkpoint.FencedError
	if errors.As(err, &fenced) {
		fmt.Printf("worker-1 fenced: held by %s at lease %d\n", fenced.Owner, fenced.Lease)
	}
	// Output:
	// resume from "" at lease 1
	// worker-2 resumes from {"commitId":"20240101000000000:order-7","aggregateId":"order-7","version":3} at lease 2
	// worker-1 fenced: held by worker-2 at lease 2
}
