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
//   - Invalid input (empty aggregate id, negative version, no events, events
//     that are not a JSON array, an item over 400 KB) is rejected with an
//     *InvalidCommitError before anything is written.
//   - Query and Scan read every page; they are iterators that hold about one
//     page at a time. Items that do not decode are reported as a
//     *DecodeError naming their key, never skipped silently.
//   - Commit ids from one Store never go backwards, even when the clock does.
//
// A Store is safe for concurrent use. It takes a DynamoDB client (any value
// with the API methods, such as *dynamodb.Client) and loads no AWS
// configuration itself.
package store
