package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

func TestTimeoutsDefaults(t *testing.T) {
	d := Timeouts{}.WithDefaults()
	want := Timeouts{Attempt: 5 * time.Second, Call: 10 * time.Second, Dial: 3 * time.Second, TLSHandshake: 3 * time.Second, ResponseHeader: 5 * time.Second}
	if d != want {
		t.Errorf("defaults %+v, want %+v", d, want)
	}
	if got := (Timeouts{Attempt: time.Second}).WithDefaults().ResponseHeader; got != time.Second {
		t.Errorf("response header timeout %v with a 1 s attempt timeout, want 1s", got)
	}
	// The client Apply builds carries them.
	cfg := aws.Config{Region: "us-east-1"}
	Apply(&cfg, Timeouts{}, nil)
	c, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		t.Fatalf("HTTP client %T", cfg.HTTPClient)
	}
	tr := c.GetTransport()
	if c.GetTimeout() != want.Attempt || c.GetDialer().Timeout != want.Dial || tr.TLSHandshakeTimeout != want.TLSHandshake || tr.ResponseHeaderTimeout != want.ResponseHeader {
		t.Errorf("client: attempt %v, dial %v, TLS %v, headers %v; want %+v", c.GetTimeout(), c.GetDialer().Timeout, tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout, want)
	}
}

func TestTimeoutsValidate(t *testing.T) {
	for _, c := range []struct {
		t    Timeouts
		want string // part of the error; "" for none
	}{
		{Timeouts{}, ""},
		{Timeouts{Attempt: time.Second, Call: time.Second}, ""},
		{Timeouts{Attempt: -time.Second}, "Attempt"},
		{Timeouts{Call: -1}, "Call"},
		{Timeouts{Dial: -1}, "Dial"},
		{Timeouts{TLSHandshake: -1}, "TLSHandshake"},
		{Timeouts{ResponseHeader: -1}, "ResponseHeader"},
		{Timeouts{Attempt: 20 * time.Second}, "longer than Call"},
	} {
		err := c.t.Validate()
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.t, err, c.want)
		}
	}
}

// blackhole accepts connections and never answers; it counts them.
func blackhole(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}

// warnings records the logger's warnings and when they came.
type warnings struct {
	mu    sync.Mutex
	lines []string
	at    []time.Time
}

func (w *warnings) Logf(c logging.Classification, format string, v ...any) {
	if c != logging.Warn {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf(format, v...))
	w.at = append(w.at, time.Now())
}

// TestApplyBoundsCalls: against a server that never answers, each attempt
// ends at the attempt timeout and is retried, the call ends at its
// deadline, and a warning comes with the first failed attempt.
func TestApplyBoundsCalls(t *testing.T) {
	endpoint, conns := blackhole(t)
	log := &warnings{}
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}
	Apply(&cfg, Timeouts{Attempt: 400 * time.Millisecond, Call: time.Second}, log)
	client := DynamoDB(cfg, endpoint)
	began := time.Now()
	_, err := client.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("t")})
	took := time.Since(began)
	if err == nil {
		t.Fatal("a call to a server that never answers succeeded")
	}
	if took < 900*time.Millisecond || took > 2*time.Second {
		t.Errorf("the call took %v, want its deadline, 1 s: %v", took, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want one matching context.DeadlineExceeded", err)
	}
	if n := conns.Load(); n < 2 {
		t.Errorf("%d attempts, want the first timed out and retried", n)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.at) == 0 {
		t.Fatal("no warning of a failed attempt")
	}
	if d := log.at[0].Sub(began); d > 900*time.Millisecond {
		t.Errorf("first warning %v after the call began, want about the attempt timeout (400 ms)", d)
	}
	if !strings.Contains(log.lines[0], "DynamoDB DescribeTable attempt failed") {
		t.Errorf("warning %q", log.lines[0])
	}
}

func TestIsAuthError(t *testing.T) {
	op := func(err error) error {
		return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "Query", Err: err}
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unknown key", op(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}), true},
		{"bad signature", op(&smithy.GenericAPIError{Code: "InvalidSignatureException"}), true},
		{"expired token", op(&smithy.GenericAPIError{Code: "ExpiredTokenException"}), true},
		{"not allowed", op(&smithy.GenericAPIError{Code: "AccessDeniedException"}), true},
		{"signing", op(&v4.SigningError{Err: errors.New("x")}), true},
		{"no credentials", op(fmt.Errorf("get identity: %w", &CredentialsError{Err: errors.New("none")})), true},
		{"failed condition", op(&types.ConditionalCheckFailedException{}), false},
		{"throttled", op(&smithy.GenericAPIError{Code: "ThrottlingException"}), false},
		{"network", op(errors.New("connection refused")), false},
	} {
		if got := IsAuthError(c.err); got != c.want {
			t.Errorf("%s: IsAuthError(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestApplyMarksMissingCredentials: a call made when the credentials
// provider finds none fails with an auth error, at once.
func TestApplyMarksMissingCredentials(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no credentials found")
	})}
	Apply(&cfg, Timeouts{}, nil)
	endpoint, _ := blackhole(t)
	_, err := DynamoDB(cfg, endpoint).DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("t")})
	var ce *CredentialsError
	if !IsAuthError(err) || !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *CredentialsError", err)
	}
}

// TestApplyKeepsAnonymousCredentials: the SDK still sees anonymous
// credentials through the wrapper, and does not sign.
func TestApplyKeepsAnonymousCredentials(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.NewCredentialsCache(aws.AnonymousCredentials{})}
	Apply(&cfg, Timeouts{}, nil)
	if !aws.IsCredentialsProvider(cfg.Credentials, (*aws.AnonymousCredentials)(nil)) {
		t.Errorf("credentials %T: anonymous no more", cfg.Credentials)
	}
	if aws.IsCredentialsProvider(cfg.Credentials, (*aws.CredentialsProviderFunc)(nil)) {
		t.Error("anonymous credentials taken for another provider")
	}
}
