package subscribe

import (
	"cmp"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go/logging"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/memcheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// streamHarness runs the source suite against the stream source, on
// DynamoDB Local's real stream. A first start catches up through the index,
// then the stream takes over.
var streamHarness = registerHarness(sourceHarness{
	name:      "stream",
	buckets:   true,
	configure: configureStream,
	unindexed: true,
	live: func(t *testing.T, cps checkpoint.Store, sub string) {
		t.Helper()
		ddbtest.Eventually(t, 15*time.Second, func() bool { return phaseOf(t, cps.(*memcheckpoint.Mem), sub) == phaseStream }, "the stream never took over")
	},
	prepare: func(t testing.TB, cfg *Config, s *store.Store) {
		cfg.Streams, cfg.Tables = streamsClient(t), ddbtest.Client(t)
	},
	withhold: func(t testing.TB, cfg *Config, s *store.Store) (hide, reveal func(store.Position)) {
		r := &withholdingReader{Store: s}
		ws := &withholdingStreams{StreamsAPI: streamsClient(t)}
		cfg.Reader, cfg.Streams, cfg.Tables = r, ws, ddbtest.Client(t)
		return func(p store.Position) { r.hide(p); ws.hide(p) }, func(p store.Position) { r.reveal(p); ws.reveal(p) }
	},
})

func configureStream(sub *Subscription, tn tuning) {
	sub.Source = SourceStream
	sub.Index = fast
	sub.Index.Settle, sub.Index.Overlap = tn.settle, tn.reread
	if tn.reread < 0 {
		sub.Index.Overlap = -1
	}
	sub.Stream = StreamOptions{GapWait: 300 * time.Millisecond, Margin: 500 * time.Millisecond, IdleMax: 100 * time.Millisecond}
}

func TestStreamSourceSuite(t *testing.T) { runSourceSuite(t, streamHarness) }

// streamsClient returns a DynamoDB Streams client for the test emulator.
func streamsClient(t testing.TB) *dynamodbstreams.Client {
	return dynamodbstreams.New(dynamodbstreams.Options{
		BaseEndpoint: aws.String(ddbtest.Endpoint(t)),
		Region:       cmp.Or(os.Getenv("AWS_REGION"), "us-east-1"), // as ddbtest's clients
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		Logger:       logging.Nop{}, // the emulator's checksum header makes the SDK warn
	})
}

// withholdingStreams hides the records of chosen commits from GetRecords
// until they are revealed, then hands them out in a later response: records
// of one aggregate out of order, as DynamoDB Streams may give them.
type withholdingStreams struct {
	StreamsAPI
	mu       sync.Mutex
	hidden   map[store.Position]bool
	stash    map[store.Position]streamtypes.Record
	revealed []streamtypes.Record
}

func (w *withholdingStreams) hide(p store.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hidden == nil {
		w.hidden, w.stash = map[store.Position]bool{}, map[store.Position]streamtypes.Record{}
	}
	w.hidden[p] = true
}

func (w *withholdingStreams) reveal(p store.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.hidden, p)
	if rec, ok := w.stash[p]; ok {
		delete(w.stash, p)
		w.revealed = append(w.revealed, rec)
	}
}

func (w *withholdingStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	out, err := w.StreamsAPI.GetRecords(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	kept := append([]streamtypes.Record(nil), w.revealed...)
	w.revealed = nil
	for _, rec := range out.Records {
		if p, ok := recordPosition(rec); ok && w.hidden[p] {
			w.stash[p] = rec
			continue
		}
		kept = append(kept, rec)
	}
	out.Records = kept
	return out, nil
}

// recordPosition returns the position of the commit a record carries.
func recordPosition(rec streamtypes.Record) (store.Position, bool) {
	if rec.Dynamodb == nil {
		return store.Position{}, false
	}
	item, err := itemOf(rec.Dynamodb.NewImage)
	if err != nil {
		return store.Position{}, false
	}
	c, err := store.DecodeItem(item)
	if err != nil {
		return store.Position{}, false
	}
	return c.Position(), true
}
