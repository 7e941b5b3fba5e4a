// Package dynamocheckpoint keeps checkpoints, parked commits and operators'
// requests in one Amazon DynamoDB table. [Store] implements
// checkpoint.Store, checkpoint.Lister, checkpoint.Setter,
// checkpoint.Leaser, checkpoint.Deleter, checkpoint.ParkStore and
// checkpoint.RequestStore, and passes the conformance suite
// checkpoint/checkpointtest.
//
// # Table
//
// One table (default name eventstoreCheckpoints) with generic keys pk (S,
// hash) and sk (S, range), on-demand billing by default; [TableDefinition]
// is its one definition, and [CreateTable], [DescribeTable] and
// [DeleteTable] manage it. It holds three kinds of items:
//
//   - a checkpoint: pk "cp#"+subscription, sk "u#"+unit, with the
//     attributes position (S, absent when empty), owner (S, absent when no
//     one holds the key), lease (N), updatedAt (N, Unix milliseconds,
//     absent until a position is saved) and expires (N, Unix milliseconds,
//     present only while the key is held under a lease that expires: set
//     by Take and Renew, removed by Claim, Release and Set); Delete removes
//     the item;
//   - a parked commit: pk "park#"+subscription, sk the aggregate id with the
//     bytes U+0000 and U+0001 escaped (as U+0001 U+0002 and U+0001 U+0003),
//     then U+0001 U+0001, then the version as one letter giving its number
//     of digits ('a' for 1, 'b' for 2, …) and its decimal digits. That sort
//     key orders items exactly by aggregate id (byte order) then version,
//     gives every aggregate a prefix no other aggregate's keys start with
//     (whatever its id contains, '#' included), and fits the longest
//     aggregate id the store accepts. The commit is kept in the attributes
//     aggregateId (S), version (N), commitId (S), committedAt (N) and events
//     (S), with reason (S), attempts (N) and parkedAt (N, Unix
//     milliseconds);
//   - an operator's request: pk "req#"+subscription, sk the aggregate id
//     as it is (so a subscription's requests are one Query, in aggregate id
//     order), with requestId (S), kind (S, "replay" or "discard"),
//     requestedAt (N, Unix milliseconds), done (BOOL), handled (N), and once
//     done completedAt (N, Unix milliseconds) and result (S, absent when
//     empty).
//
// Each subscription's checkpoints, parked commits and requests are one
// partition each, so subscriptions do not contend with each other.
//
// # Calls
//
//   - Claim is one UpdateItem (ADD lease 1, SET owner, REMOVE expires),
//     creating the item if needed.
//   - Take is one UpdateItem (ADD lease 1, SET owner and expires)
//     conditional on the counter the caller saw (lease = :seen, or
//     attribute_not_exists(lease) for a key not seen yet, which creates
//     the item) and, for a key seen held, on the holder seen:
//     attribute_not_exists(owner) OR (owner = :seenOwner AND expires =
//     :seenExpires, or attribute_not_exists(expires) for a holder by
//     Claim), so that a steal fails if the holder renewed meanwhile.
//   - Save, Release (REMOVE owner and expires) and Renew (SET expires) are
//     one UpdateItem conditional on owner and lease.
//   - On a failed condition of Take, Save, Release or Renew, DynamoDB
//     returns the item as it is (ReturnValuesOnConditionCheckFailure
//     ALL_OLD), which fills the *checkpoint.FencedError.
//   - Set is one UpdateItem (ADD lease 1, REMOVE owner and expires),
//     conditional unless forced on attribute_not_exists(owner) OR expires
//     <= now (Config.Clock), so that only a live holder blocks it.
//   - Delete is one DeleteItem conditional on lease = :lease AND
//     (attribute_not_exists(owner) OR expires <= now); on a failed
//     condition the item as it is (ALL_OLD) tells a missing checkpoint, a
//     moved counter (*checkpoint.FencedError) and a live holder
//     (*checkpoint.HeldError) apart. Parked commits and requests are other
//     items and are not touched.
//   - Load is a strongly consistent GetItem; List and Parked are strongly
//     consistent Queries, every page, streamed. List of every subscription
//     first Scans the table for the subscriptions' names (reading, and
//     paying for, every item of the table, parked commits included), then
//     Queries each subscription in order: an operator's call, not one for
//     a hot path.
//   - Park is one PutItem, Unpark one DeleteItem.
//   - Request is one PutItem (replacing the aggregate's earlier request);
//     Complete is one UpdateItem and DeleteRequest one DeleteItem, each
//     conditional on the item's requestId. Requests of one subscription is
//     a strongly consistent Query, every page (what a worker polls: about
//     one read unit per poll while there are few requests); Requests of
//     every subscription first Scans the table for the names of the
//     subscriptions with requests, as List of every subscription does.
//
// An item that does not decode (written by hand, or by another program) is
// reported as a *DecodeError naming its key, matching ErrCorruptItem.
//
// A Store is safe for concurrent use. It takes a DynamoDB client (any value
// with the API methods, such as *dynamodb.Client) and loads no AWS
// configuration itself.
package dynamocheckpoint
