// Package store appends commits of events to an Amazon DynamoDB table and
// reads them back: one aggregate's history by version, or every aggregate's
// commits in global commit order.
//
// The table layout is that of the original dynamodb-event-store npm package
// (v2.2.0), so tables written by either are read and written by the other:
// a table keyed by aggregateId (S) and version (N), with the attributes
// commitId (S, "YYYYMMDDHHmmssSSS:aggregateId" in UTC), committedAt (N, Unix
// milliseconds), events (S, a JSON array) and active (S, "t"), and a global
// secondary index commitsByCommitId keyed by active and commitId that gives
// the global commit order. The store adds one attribute, commitToken, which
// the original package ignores.
//
// # Guarantees
//
//   - Append is one conditional PutItem: at most one commit per aggregate and
//     version. A taken version returns a *VersionConflictError that matches
//     ErrVersionConflict. An append whose outcome was unknown and that the
//     SDK retried is recognised by its commit token and succeeds.
//   - AppendAll writes up to 100 commits atomically with TransactWriteItems
//     and names the commit that conflicted.
//   - Invalid input (empty aggregate id, negative version or one above
//     MaxVersion, 2^53−1, no events, events that are not a JSON array, an
//     item over 400 KB) is rejected with an *InvalidCommitError before
//     anything is written.
//   - Query and Scan read every page; they are iterators that hold about one
//     page at a time. Items that are not well-formed commits of their key
//     (DecodeItemAt says which are not) are reported as a *DecodeError
//     naming their key and its Kind, never skipped silently (see
//     docs/items.md).
//   - Commit ids from one Store never go backwards, even when the clock does.
//
// # Events text and JavaScript readers
//
// A commit's events are stored exactly as given: the events attribute holds
// the bytes Append received (spacing, key order, number spellings) and reads
// return them byte for byte; this package checks that they are a JSON array
// but never re-encodes them.
//
// The original package, and any JavaScript reader, parses them with
// JSON.parse, whose numbers are IEEE 754 doubles. Valid JSON that a Go
// writer keeps exactly therefore reads differently there:
//
//   - integers beyond 2^53 lose precision: 9007199254740993 reads as
//     9007199254740992;
//   - numbers beyond the double range overflow: 1e400 reads as Infinity,
//     which JSON.stringify writes as null;
//   - -0 reads as -0, which JSON.stringify writes as 0;
//   - decimals with more digits than a double holds are rounded.
//
// Go readers decoding into float64 or any (as Commit.DecodeEvents does with
// such targets) see the same rounding, and fail on 1e400. Events that must
// read the same everywhere should carry such values as JSON strings. This is
// a compatibility note: the store itself changes nothing.
//
// # Index buckets
//
// Config.IndexBuckets spreads the index over several values of active;
// every writer and reader of a table must use the same count. CheckBuckets
// compares a count with a sample of the table's items and returns a
// *BucketMismatchError when they disagree; CountItems counts the items, for
// operators.
//
// A Store is safe for concurrent use. It takes a DynamoDB client (any value
// with the API methods, such as *dynamodb.Client) and loads no AWS
// configuration itself.
package store
