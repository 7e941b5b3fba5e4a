package streamreader

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"
)

// Errors.
var (
	// ErrTrimmed: records the reader was to read are no longer in the
	// stream (24 h retention). Returned as a *TrimmedError.
	ErrTrimmed = errors.New("streamreader: stream records trimmed")
	// ErrStreamGone: the stream no longer exists or is DISABLED, or the
	// position given to Run is for another stream. Returned wrapped.
	ErrStreamGone = errors.New("streamreader: stream gone")
	// ErrInvalidOptions: New or Run was given unusable arguments; the error
	// says which.
	ErrInvalidOptions = errors.New("streamreader: invalid options")
	// ErrRunning: Run was called while another Run of the same Reader was
	// in progress.
	ErrRunning = errors.New("streamreader: reader already running")
)

// TrimmedError reports a shard whose records, from where reading was to
// resume, are no longer all in the stream. The caller must catch up from
// the table and start again from a new position.
type TrimmedError struct {
	// ShardID is the shard that could not be read.
	ShardID string
	// SequenceNumber is the sequence number reading was to resume after;
	// "" when it was to start at the shard's oldest record.
	SequenceNumber string
	// Reason says how it was detected.
	Reason string
	// Err is the SDK's error (a *types.TrimmedDataAccessException, or a
	// *types.ResourceNotFoundException for a shard that no longer exists),
	// nil when the shard was simply no longer listed.
	Err error
}

func (e *TrimmedError) Error() string {
	from := "from its oldest record"
	if e.SequenceNumber != "" {
		from = "after sequence number " + e.SequenceNumber
	}
	msg := fmt.Sprintf("streamreader: shard %s cannot be read %s: %s", e.ShardID, from, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrTrimmed and the SDK's error.
func (e *TrimmedError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrTrimmed}
	}
	return []error{ErrTrimmed, e.Err}
}

// errKind is how the reader treats an error of the SDK.
type errKind int

const (
	kindOther    errKind = iota // return it
	kindRetry                   // throttling or transient: back off and retry
	kindExpired                 // ExpiredIteratorException: renew the iterator
	kindTrimmed                 // TrimmedDataAccessException
	kindNotFound                // ResourceNotFoundException: stream or shard gone
)

// sdkRetryables is the SDK's own idea of a retryable error (connection
// errors, 5xx, throttling codes); the reader retries those again once the
// SDK's retryer has given up.
var sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

func classify(err error) errKind {
	var (
		expired  *types.ExpiredIteratorException
		trimmed  *types.TrimmedDataAccessException
		notFound *types.ResourceNotFoundException
		limit    *types.LimitExceededException
		internal *types.InternalServerError
	)
	switch {
	case errors.As(err, &expired):
		return kindExpired
	case errors.As(err, &trimmed):
		return kindTrimmed
	case errors.As(err, &notFound):
		return kindNotFound
	case errors.As(err, &limit), errors.As(err, &internal):
		return kindRetry
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ExpiredIteratorException":
			return kindExpired
		case "TrimmedDataAccessException":
			return kindTrimmed
		case "ResourceNotFoundException":
			return kindNotFound
		case "LimitExceededException", "ProvisionedThroughputExceededException", "ThrottlingException",
			"RequestLimitExceeded", "InternalServerError", "ServiceUnavailable":
			return kindRetry
		}
		if api.ErrorFault() == smithy.FaultServer {
			return kindRetry
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && (status.HTTPStatusCode() >= 500 || status.HTTPStatusCode() == http.StatusTooManyRequests) {
		return kindRetry
	}
	if sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary {
		return kindRetry
	}
	return kindOther
}
