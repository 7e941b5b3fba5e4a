package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// JSONLines returns a Handler that writes each commit to w as one line of
// JSON, the JSON of store.Commit:
//
//	{"commitId":"20240102030405006:account-1","committedAt":1704164645006,"aggregateId":"account-1","version":3,"events":[…]}
//
// Lines are written whole, one Write call each, one at a time: the Handler
// is safe for concurrent use, and one Handler may serve several
// subscriptions. When w has a Flush() error method (a *bufio.Writer), it is
// flushed after each line, so that lines leave promptly. A nil w means
// os.Stdout. A failed write is the handler's error: the commit is retried,
// then the subscription's policy applies.
func JSONLines(w io.Writer) subscribe.Handler {
	if w == nil {
		w = os.Stdout
	}
	return &jsonLines{w: w}
}

type jsonLines struct {
	mu sync.Mutex
	w  io.Writer
}

func (j *jsonLines) Handle(_ context.Context, c subscribe.Commit) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode aggregate %q version %d: %w", c.AggregateID, c.Version, err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(b); err != nil {
		return fmt.Errorf("write aggregate %q version %d: %w", c.AggregateID, c.Version, err)
	}
	if f, ok := j.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("write aggregate %q version %d: %w", c.AggregateID, c.Version, err)
		}
	}
	return nil
}
