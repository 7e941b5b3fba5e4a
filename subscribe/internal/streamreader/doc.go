// Package streamreader reads every shard of one DynamoDB stream, in shard
// lineage order and within DynamoDB's limits, and hands each record to a
// callback. It only reads: the stream source of package subscribe wraps it
// to order commits per aggregate, track which records are handled,
// checkpoint per shard, and catch up from the table when the stream cannot
// give the data (DESIGN.md, hazards 2, 3 and 5).
//
// # Reading
//
// [Reader.Run] lists the stream's shards with DescribeStream (every page,
// following LastEvaluatedShardId) every Options.DescribeInterval and
// whenever a shard has been read to its end, and runs one goroutine per
// shard that can be read. A shard can be read once its parent has been read
// to its end in this run, or is in Position.Finished, or is no longer listed
// (trimmed away) and not being read. DescribeStream lists shards in no
// particular order; the reader follows ParentShardId, never the listing
// order.
//
// Each shard goroutine gets an iterator (GetShardIterator) and calls
// GetRecords until the response has no NextShardIterator, which DynamoDB
// returns only for a closed shard read to its end (an open shard returns an
// iterator even when it has no records). Records are emitted in order, one
// at a time; emit may block. Then Options.OnShardEnd is called, and only then
// do the shard's children start, at TRIM_HORIZON.
//
// Where a shard starts:
//   - after Position.Shards[id] (AFTER_SEQUENCE_NUMBER) when the position has
//     it;
//   - at TRIM_HORIZON when its parent was read (or is Finished, or is in
//     Position.Shards);
//   - at Options.InitialPosition for a root shard (no parent, or a parent no
//     longer listed) of the first listing of a first start (an empty
//     Position);
//   - at TRIM_HORIZON otherwise: on a resumed run, a shard the position does
//     not name may hold records the caller has not handled.
//
// # Limits
//
//   - DescribeStream: at most Options.MaxDescribeRate calls per second per
//     Reader (default 5; DynamoDB allows 10 per second).
//   - GetRecords: one reader per shard (DynamoDB throttles above two), at
//     most one call per Options.BusyInterval (default 250 ms: 4 calls per
//     second) while a shard returns records, backing off by doubling up to
//     Options.IdleMax (default 2 s) while it returns none; at most
//     Options.Limit records (default 1000) per call.
//   - Two processes reading the same stream with Run would put two readers
//     on each shard, the most DynamoDB allows, and deliver every record
//     twice: processes that share a stream take a lease per shard (package
//     subscribe does, in the checkpoint table), read each shard they hold
//     with [Reader.RunShard], and list the shards with [Reader.Shards] to
//     keep the lineage themselves.
//
// # Failures
//
//   - Throttling and transient errors (LimitExceededException,
//     ProvisionedThroughputExceededException, InternalServerError, 5xx,
//     connection errors) are first retried by the SDK's retryer; once it
//     gives up, the reader retries the same call with exponential backoff and
//     jitter, Options.MaxRetries times, then Run returns the error. A retried
//     GetRecords reuses its iterator: nothing is skipped or read twice.
//   - An expired iterator (ExpiredIteratorException, or one older than 14
//     minutes about to be used) is renewed AFTER_SEQUENCE_NUMBER of the last
//     record emitted, or at the shard's starting point if none was.
//   - TrimmedDataAccessException, a shard of the position that is no longer
//     listed, or a shard owed to the caller that no longer exists
//     (ResourceNotFoundException while the stream exists): Run returns a
//     *TrimmedError. Records were lost from the stream; the caller must
//     catch up from the table.
//   - ResourceNotFoundException from DescribeStream, or from
//     GetShardIterator or GetRecords with the stream itself gone, or a
//     DISABLED stream: Run returns an error matching ErrStreamGone. Disabling
//     a stream closes its shards; enabling it again creates a new stream
//     with a new ARN, so records written in between are in no stream. The
//     caller must catch up from the table and read the new ARN (the table's
//     LatestStreamArn).
//
// On a first start only, DynamoDB may list shards whose records have all
// expired; GetShardIterator then answers ResourceNotFoundException ("Shard
// does not exist"). Such a shard owes the caller nothing, so it counts as
// read (OnShardEnd is called) and its children are read. Likewise a first
// start reading a shard from TRIM_HORIZON whose oldest records expire before
// the first GetRecords starts again at the new TRIM_HORIZON, and so does
// [Reader.RunShardFrom] from TRIM_HORIZON, before its first record, when
// the records it owes are younger than 24 hours less an hour
// (ShardStart.OwedSince): the records trimmed cannot be owed.
//
// # Positions
//
// Position.Shards holds, per shard, the last record the caller has handled;
// Position.Finished the shards read to their end (OnShardEnd) whose records
// are all handled. Keep a shard in Finished while DescribeStream still lists
// it: on a resumed run, a listed shard that is neither Finished nor in
// Shards is read from TRIM_HORIZON, and if it no longer exists that is a
// *TrimmedError. A shard no longer listed may be dropped from both.
//
// Children wait only for their parent to be fully read, not for its records
// to be handled: the caller orders commits per aggregate, which covers the
// order across shards, so there is no ShardDone call.
//
// # DynamoDB Local
//
// DynamoDB Local 3.3 (what the tests run against) has one shard per stream
// that never closes or splits, never trims records or expires iterators
// within a test, and rounds ApproximateCreationDateTime down to the
// minute. Disabling its stream closes the shard (GetRecords then returns the rest and no
// NextShardIterator) and leaves the old ARN describable with status
// DISABLED and still readable, as AWS does for 24 hours; enabling it again
// gives a new ARN. Its sequence numbers come from one counter shared by
// every write to every table: an iterator it hands out while a shard holds
// no record points at the shard's starting sequence number, and once the
// shard's first record is written, with any other write in between, that
// iterator fails with TrimmedDataAccessException, which DynamoDB only
// raises for records older than 24 hours (see ShardStart.OwedSince and
// docs/stream.md). Lineage, paging, trimming, expiry and throttling are
// tested against a fake of API.
package streamreader
