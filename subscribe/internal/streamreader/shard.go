package streamreader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// maxTrimRestarts bounds how often a shard read from its oldest record on a
// first start is opened again at the new oldest record because records
// expired under the iterator before anything was emitted.
const maxTrimRestarts = 3

// maxRenewals bounds how often in a row an iterator is renewed because
// GetRecords reported it expired, without a GetRecords call succeeding.
const maxRenewals = 3

// call runs fn, and retries it after a throttling or transient error (see
// classify) with backoff, at most Options.MaxRetries times. pace, if not nil,
// is waited before every attempt. Other errors are returned as they are.
func (r *Reader) call(ctx context.Context, op string, log *slog.Logger, pace func(context.Context) error, fn func() error) error {
	for attempt := 0; ; attempt++ {
		if pace != nil {
			if err := pace(ctx); err != nil {
				return err
			}
		}
		began := r.opts.Clock()
		err := fn()
		if r.opts.OnCall != nil && ctx.Err() == nil {
			r.opts.OnCall(err, began)
		}
		if err == nil || classify(err) != kindRetry || ctx.Err() != nil {
			return err
		}
		if attempt >= r.opts.MaxRetries {
			return fmt.Errorf("streamreader: %s still failing after %d retries: %w", op, attempt, err)
		}
		d := backoff(r.opts.BusyInterval, maxRetryDelay, attempt+1)
		log.Warn("streamreader: call failed; retrying", "op", op, "retry", attempt+1, "after", d, "err", err)
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// listShards returns every shard DescribeStream lists (all pages) and the
// stream's status. A stream that does not exist returns ErrStreamGone.
func (r *Reader) listShards(ctx context.Context) ([]types.Shard, types.StreamStatus, error) {
	var (
		shards []types.Shard
		status types.StreamStatus
		start  *string
	)
	for {
		in := &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(r.arn), ExclusiveStartShardId: start}
		sd, err := r.describeStream(ctx, in)
		if err != nil {
			return nil, "", err
		}
		status = sd.StreamStatus
		shards = append(shards, sd.Shards...)
		next := aws.ToString(sd.LastEvaluatedShardId)
		if next == "" {
			return shards, status, nil
		}
		if start != nil && next == *start {
			return nil, "", fmt.Errorf("streamreader: DescribeStream %s: LastEvaluatedShardId %s did not advance", r.arn, next)
		}
		start = aws.String(next)
	}
}

// streamStatus returns the stream's status with one DescribeStream call. A
// stream that does not exist, or is DISABLED, returns ErrStreamGone.
func (r *Reader) streamStatus(ctx context.Context) (types.StreamStatus, error) {
	sd, err := r.describeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(r.arn), Limit: aws.Int32(1)})
	if err != nil {
		return "", err
	}
	if sd.StreamStatus == types.StreamStatusDisabled {
		return sd.StreamStatus, fmt.Errorf("%w: stream %s is DISABLED", ErrStreamGone, r.arn)
	}
	return sd.StreamStatus, nil
}

// describeStream makes one DescribeStream call, paced and retried.
func (r *Reader) describeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput) (*types.StreamDescription, error) {
	var out *dynamodbstreams.DescribeStreamOutput
	err := r.call(ctx, "DescribeStream", r.log, r.describe.wait, func() (err error) {
		out, err = r.api.DescribeStream(ctx, in)
		return err
	})
	switch {
	case err != nil && classify(err) == kindNotFound:
		return nil, fmt.Errorf("%w: DescribeStream %s: %w", ErrStreamGone, r.arn, err)
	case err != nil:
		return nil, fmt.Errorf("streamreader: DescribeStream %s: %w", r.arn, err)
	case out.StreamDescription == nil:
		return nil, fmt.Errorf("streamreader: DescribeStream %s returned no StreamDescription", r.arn)
	}
	return out.StreamDescription, nil
}

// shardReader reads one shard, in its own goroutine.
type shardReader struct {
	r     *Reader
	id    string
	start startSpec
	// required is false for a shard whose records were not owed to the
	// caller when Run began: a root shard of a first start, and the
	// children of such a shard that had expired. Such a shard whose
	// records have all expired counts as read; a required one is reported
	// with a *TrimmedError.
	required bool
	// owedSince, for a required shard read from TRIM_HORIZON, is the time
	// from which its records are owed (see ShardStart.OwedSince); zero:
	// all of them.
	owedSince time.Time
	emit      func(context.Context, Record) error
	log       *slog.Logger
	opened    func() // called once its first iterator is open, if not nil

	last     string    // sequence number of the last record emitted
	iter     *string   // current shard iterator
	issued   time.Time // when iter was handed out, at the latest
	lastCall time.Time // start of the last GetRecords call
	delay    time.Duration
	idle     bool // the last GetRecords call returned no records
	trims    int  // restarts at TRIM_HORIZON (see maxTrimRestarts)
	renewals int  // renewals in a row (see maxRenewals)
}

// run reads the shard to its end. gone reports a shard that counted as read
// because its records had all expired (see required).
func (s *shardReader) run(ctx context.Context) (gone bool, err error) {
	opts := &s.r.opts
	end, err := s.open(ctx, s.start)
	if s.opened != nil && err == nil {
		s.opened()
	}
	if err != nil || end {
		return s.fail(ctx, err)
	}
	for {
		if opts.Clock().Sub(s.issued) >= iteratorMaxAge {
			spec := s.resumeSpec()
			s.log.Info("streamreader: renewing an iterator about to expire", "from", spec.String())
			if end, err := s.open(ctx, spec); err != nil || end {
				return s.fail(ctx, err)
			}
		}
		var out *dynamodbstreams.GetRecordsOutput
		err := s.r.call(ctx, "GetRecords", s.log, s.pace, func() (err error) {
			out, err = s.r.api.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: s.iter, Limit: aws.Int32(opts.Limit)})
			return err
		})
		if err != nil {
			switch classify(err) {
			case kindExpired:
				if s.renewals++; s.renewals > maxRenewals {
					return false, fmt.Errorf("streamreader: shard %s: GetRecords reported %d fresh iterators in a row expired: %w", s.id, maxRenewals, err)
				}
				spec := s.resumeSpec()
				s.log.Info("streamreader: iterator expired; renewing", "from", spec.String())
				if end, err := s.open(ctx, spec); err != nil || end {
					return s.fail(ctx, err)
				}
				continue
			case kindTrimmed:
				if s.last == "" && s.trims < maxTrimRestarts && (!s.required || s.trimmedNothingOwed()) {
					// Reading from the oldest record, nothing emitted yet,
					// and the oldest expired meanwhile (or DynamoDB Local
					// says so of an iterator taken on an empty shard):
					// nothing owed is lost.
					s.trims++
					s.log.Info("streamreader: oldest records trimmed before the first read; nothing owed is that old; starting again at TRIM_HORIZON", "err", err)
					if end, err := s.open(ctx, startSpec{typ: types.ShardIteratorTypeTrimHorizon}); err != nil || end {
						return s.fail(ctx, err)
					}
					continue
				}
			}
			return s.fail(ctx, err)
		}
		s.renewals = 0
		issued := s.lastCall
		for _, raw := range out.Records {
			rec, err := toRecord(s.id, raw)
			if err != nil {
				return false, err
			}
			if err := ctx.Err(); err != nil {
				return false, err
			}
			if err := s.emit(ctx, rec); err != nil {
				return false, fmt.Errorf("streamreader: shard %s: emit %s: %w", s.id, rec.SequenceNumber, err)
			}
			s.last = rec.SequenceNumber
		}
		if out.NextShardIterator == nil {
			return false, nil // closed, and read to its end
		}
		if len(out.Records) == 0 && opts.OnCaughtUp != nil {
			opts.OnCaughtUp(s.id, issued)
		}
		s.iter, s.issued = out.NextShardIterator, issued
		s.delay, s.idle = opts.nextDelay(s.delay, s.idle, len(out.Records))
	}
}

// trimmedNothingOwed reports whether records trimmed from the shard, older
// than Retention, cannot be owed: the shard is read from TRIM_HORIZON and
// its records are owed only from owedSince, less than Retention minus
// trimSafety ago.
func (s *shardReader) trimmedNothingOwed() bool {
	return s.start.typ == types.ShardIteratorTypeTrimHorizon && !s.owedSince.IsZero() &&
		s.r.opts.Clock().Sub(s.owedSince) < Retention-trimSafety
}

// nextDelay returns the time between the start of a GetRecords call that
// returned n records and the start of the next, and whether the shard is
// now idle, given the previous delay and idleness: BusyInterval after
// records, and after the first call without; then doubling up to IdleMax.
func (o *Options) nextDelay(prev time.Duration, idle bool, n int) (time.Duration, bool) {
	switch {
	case n > 0:
		return o.BusyInterval, false
	case !idle:
		return o.BusyInterval, true
	}
	return min(2*prev, o.IdleMax), true
}

// pace waits until the next GetRecords call may start.
func (s *shardReader) pace(ctx context.Context) error {
	if !s.lastCall.IsZero() {
		if err := sleep(ctx, s.lastCall.Add(s.delay).Sub(s.r.opts.Clock())); err != nil {
			return err
		}
	}
	s.lastCall = s.r.opts.Clock()
	return nil
}

// resumeSpec is where a renewed iterator starts: after the last record
// emitted, else where the shard started. A shard started at LATEST that
// emitted nothing renews at TRIM_HORIZON: reading again is safe, LATEST
// again could skip records written meanwhile.
func (s *shardReader) resumeSpec() startSpec {
	switch {
	case s.last != "":
		return startSpec{typ: types.ShardIteratorTypeAfterSequenceNumber, seq: s.last}
	case s.start.typ == types.ShardIteratorTypeLatest:
		return startSpec{typ: types.ShardIteratorTypeTrimHorizon}
	}
	return s.start
}

// open gets an iterator at spec. end reports a shard with nothing more to
// read there (DynamoDB returned no iterator).
func (s *shardReader) open(ctx context.Context, spec startSpec) (end bool, err error) {
	in := &dynamodbstreams.GetShardIteratorInput{
		StreamArn:         aws.String(s.r.arn),
		ShardId:           aws.String(s.id),
		ShardIteratorType: spec.typ,
	}
	if spec.seq != "" {
		in.SequenceNumber = aws.String(spec.seq)
	}
	var out *dynamodbstreams.GetShardIteratorOutput
	var at time.Time
	err = s.r.call(ctx, "GetShardIterator", s.log, nil, func() (err error) {
		at = s.r.opts.Clock()
		out, err = s.r.api.GetShardIterator(ctx, in)
		return err
	})
	if err != nil {
		return false, err
	}
	if out.ShardIterator == nil {
		return true, nil
	}
	s.iter, s.issued = out.ShardIterator, at
	return false, nil
}

// fail turns the error of a call on the shard into Run's error, or into a
// shard that counts as read (gone). A nil err means the shard ended.
func (s *shardReader) fail(ctx context.Context, err error) (gone bool, _ error) {
	if err == nil {
		return false, nil
	}
	from := s.last
	if from == "" {
		from = s.start.seq
	}
	switch classify(err) {
	case kindTrimmed:
		return false, &TrimmedError{ShardID: s.id, SequenceNumber: from, Reason: "records trimmed from the stream (24 h retention)", Err: err}
	case kindNotFound:
		// The stream, or only the shard, is gone: ask the stream.
		if _, serr := s.r.streamStatus(ctx); serr != nil {
			return false, serr
		}
		if !s.required && s.last == "" {
			s.log.Warn("streamreader: shard no longer exists (its records expired) before this first start could read it; counting it as read", "err", err)
			return true, nil
		}
		return false, &TrimmedError{ShardID: s.id, SequenceNumber: from, Reason: "the shard no longer exists", Err: err}
	}
	if ctx.Err() != nil {
		return false, err
	}
	return false, fmt.Errorf("streamreader: shard %s: %w", s.id, err)
}

// toRecord converts a record of the SDK.
func toRecord(shardID string, rec types.Record) (Record, error) {
	d := rec.Dynamodb
	if d == nil || aws.ToString(d.SequenceNumber) == "" {
		return Record{}, fmt.Errorf("streamreader: shard %s: a record (event %s) has no sequence number", shardID, aws.ToString(rec.EventID))
	}
	return Record{
		ShardID:             shardID,
		SequenceNumber:      *d.SequenceNumber,
		EventName:           string(rec.EventName),
		Keys:                d.Keys,
		NewImage:            d.NewImage,
		ApproximateCreation: aws.ToTime(d.ApproximateCreationDateTime),
	}, nil
}
