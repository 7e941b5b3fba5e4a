package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
)

// The default timeouts (see Timeouts). DynamoDB and DynamoDB Streams have
// no long-polling call (GetRecords returns at once, records or not), and
// their calls answer in milliseconds: a call that has not answered in
// seconds is lost in the network.
const (
	DefaultAttemptTimeout        = 5 * time.Second
	DefaultCallTimeout           = 10 * time.Second
	DefaultDialTimeout           = 3 * time.Second
	DefaultTLSHandshakeTimeout   = 3 * time.Second
	DefaultResponseHeaderTimeout = DefaultAttemptTimeout
)

// failureWarnEvery is the least time between two warnings of failed
// attempts from one configuration.
const failureWarnEvery = 10 * time.Second

// Timeouts bound the calls of the clients built on a configuration (see
// Apply). The zero value of a field means its default.
type Timeouts struct {
	// Attempt bounds one attempt of a call: connecting, sending, waiting
	// for and reading the response. The SDK's retryer then retries it
	// (a timeout is retryable). Default 5 s.
	Attempt time.Duration
	// Call bounds a whole call, its retries and their backoff included;
	// the call then fails with an error matching
	// context.DeadlineExceeded. It is also what a caller waits at most
	// before it can report a failure. Default 10 s.
	Call time.Duration
	// Dial bounds opening a TCP connection. Default 3 s.
	Dial time.Duration
	// TLSHandshake bounds the TLS handshake of a connection. Default 3 s.
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for a response's headers once the
	// request is sent. Default 5 s (the attempt's).
	ResponseHeader time.Duration
}

// WithDefaults returns t with its zero fields set to the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Attempt == 0 {
		t.Attempt = DefaultAttemptTimeout
	}
	if t.Call == 0 {
		t.Call = DefaultCallTimeout
	}
	if t.Dial == 0 {
		t.Dial = DefaultDialTimeout
	}
	if t.TLSHandshake == 0 {
		t.TLSHandshake = DefaultTLSHandshakeTimeout
	}
	if t.ResponseHeader == 0 {
		t.ResponseHeader = min(DefaultResponseHeaderTimeout, t.Attempt)
	}
	return t
}

// Validate returns an error naming the first field (by its Go name) that
// is negative, or an Attempt longer than Call.
func (t Timeouts) Validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Attempt", t.Attempt}, {"Call", t.Call}, {"Dial", t.Dial}, {"TLSHandshake", t.TLSHandshake}, {"ResponseHeader", t.ResponseHeader}} {
		if f.d < 0 {
			return fmt.Errorf("field %s: %v: want a positive duration", f.name, f.d)
		}
	}
	d := t.WithDefaults()
	if d.Attempt > d.Call {
		return fmt.Errorf("field Attempt: %v is longer than Call (%v): a call would never get a second attempt", d.Attempt, d.Call)
	}
	return nil
}

// Apply bounds every call of the clients later built on cfg by t (zero
// fields: the defaults): its HTTP client gets the dial, TLS handshake,
// response header and attempt timeouts, unless cfg.HTTPClient is set and
// is not the SDK's buildable client (a client of the caller's own, kept
// as it is); each call gets the Call deadline. log, when not nil, receives
// a warning when an attempt fails with a retryable error (a timeout, a
// refused or reset connection, throttling, a 5xx) or cannot authenticate:
// the first failure after a success, then at most one every 10 s; and a
// debug line when calls work again.
func Apply(cfg *aws.Config, t Timeouts, log logging.Logger) {
	t = t.WithDefaults()
	switch c := cfg.HTTPClient.(type) {
	case nil:
		cfg.HTTPClient = buildClient(awshttp.NewBuildableClient(), t)
	case *awshttp.BuildableClient:
		cfg.HTTPClient = buildClient(c, t)
	}
	switch cfg.Credentials.(type) {
	case nil, aws.AnonymousCredentials, checkedCredentials:
	default:
		cfg.Credentials = checkedCredentials{cfg.Credentials}
	}
	cfg.APIOptions = append(cfg.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(callDeadline(t.Call), middleware.Before)
	})
	if log != nil {
		w := &attemptWatch{log: log, attempt: t.Attempt}
		cfg.APIOptions = append(cfg.APIOptions, func(s *middleware.Stack) error {
			return s.Finalize.Insert(w, (*retry.Attempt)(nil).ID(), middleware.After)
		})
	}
}

func buildClient(c *awshttp.BuildableClient, t Timeouts) *awshttp.BuildableClient {
	return c.WithTimeout(t.Attempt).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = t.Dial }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.TLSHandshakeTimeout = t.TLSHandshake
			tr.ResponseHeaderTimeout = t.ResponseHeader
		})
}

// callDeadline bounds a whole call, retries included.
func callDeadline(d time.Duration) middleware.InitializeMiddleware {
	return middleware.InitializeMiddlewareFunc("eventstoreCallDeadline", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return next.HandleInitialize(ctx, in)
	})
}

// attemptWatch logs failed attempts, seen between the retryer and the
// attempt itself.
type attemptWatch struct {
	log     logging.Logger
	attempt time.Duration

	mu       sync.Mutex
	lastWarn time.Time
	failing  bool
}

// retryables is the SDK's standard retryer's idea of a retryable error.
var retryables = retry.IsErrorRetryables(retry.DefaultRetryables)

func (*attemptWatch) ID() string { return "eventstoreAttemptWatch" }

func (w *attemptWatch) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	start := time.Now()
	out, md, err := next.HandleFinalize(ctx, in)
	if ctx.Err() != nil {
		return out, md, err // the caller gave up: not a failure of the call
	}
	auth := IsAuthError(err)
	retryable := err != nil && retryables.IsErrorRetryable(err) == aws.TrueTernary
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		if w.failing {
			w.failing = false
			w.log.Logf(logging.Debug, "calls to AWS succeed again (%s %s)", middleware.GetServiceID(ctx), middleware.GetOperationName(ctx))
		}
	case auth || retryable:
		first := !w.failing
		w.failing = true
		if now := time.Now(); first || now.Sub(w.lastWarn) >= failureWarnEvery {
			w.lastWarn = now
			what := "the SDK retries it within the call's deadline"
			if auth {
				what = "cannot authenticate: check the credentials"
			}
			w.log.Logf(logging.Warn, "%s %s attempt failed after %v (attempt timeout %v); %s: %v",
				middleware.GetServiceID(ctx), middleware.GetOperationName(ctx), time.Since(start).Round(time.Millisecond), w.attempt, what, err)
		}
	}
	return out, md, err
}

// CredentialsError is the error of a call made with no usable credentials:
// the configuration's provider found none, or could not refresh them.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string { return "no usable AWS credentials: " + e.Err.Error() }

func (e *CredentialsError) Unwrap() error { return e.Err }

// checkedCredentials marks the errors of a credentials provider as
// *CredentialsError, so that callers can tell them (the SDK wraps them in
// plain text).
type checkedCredentials struct{ aws.CredentialsProvider }

func (c checkedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return creds, &CredentialsError{Err: err}
	}
	return creds, err
}

// IsCredentialsProvider lets aws.IsCredentialsProvider see through the
// wrapper (the SDK asks whether the credentials are anonymous).
func (c checkedCredentials) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(c.CredentialsProvider, target)
}

// authCodes are the error codes of AWS calls refused for their
// credentials or their permissions.
var authCodes = map[string]bool{
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"IncompleteSignatureException":        true,
	"IncompleteSignature":                 true,
	"MissingAuthenticationToken":          true,
	"MissingAuthenticationTokenException": true,
	"InvalidClientTokenId":                true,
	"SignatureDoesNotMatch":               true,
	"ExpiredToken":                        true,
	"ExpiredTokenException":               true,
	"AccessDeniedException":               true,
	"AccessDenied":                        true,
}

// IsAuthError reports whether err is a call refused for its credentials
// (none, unknown, expired, a bad signature) or its permissions
// (AccessDeniedException), or a call made without credentials because none
// could be found (a *CredentialsError, on a configuration Apply was given,
// or a signing error). Retrying such a call does not help.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	var se *v4.SigningError
	var ce *CredentialsError
	if errors.As(err, &se) || errors.As(err, &ce) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && authCodes[ae.ErrorCode()]
}
