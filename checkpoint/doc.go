// Package checkpoint is where each subscription's position and leases live,
// and where the commits a subscription could not handle are set aside
// ("parked").
//
// The package holds the types, the interfaces and the errors; it makes no
// calls itself. Implementations are subpackages:
//
//   - checkpoint/dynamocheckpoint keeps everything in one DynamoDB table;
//   - checkpoint/memcheckpoint keeps it in memory, for tests;
//   - checkpoint/checkpointtest is the conformance suite both pass.
//
// # Keys, positions and leases
//
// A [Key] names one unit of a subscription's work: a whole subscription (Unit
// ""), or later an index bucket or a stream shard. Its [Checkpoint] holds the
// Position the subscription's source encoded (an opaque string, JSON in
// practice, never interpreted here), the Owner that holds the key, and a
// lease counter used as a fencing token:
//
//   - [Store.Claim] makes a process the owner and increments the counter;
//   - [Store.Save] moves the position only if the presented owner and lease
//     are still current, and otherwise returns a *[FencedError] (matching
//     [ErrFenced]), so a process that lost its lease can never move the
//     checkpoint;
//   - [Setter.Set] lets an operator move a position; it increments the
//     counter too, so a live holder's next Save is fenced.
//
// Several processes share a subscription's units of work through leases
// that expire ([Leaser], an optional ability of a Store): [Leaser.Take]
// makes a process the owner until [Checkpoint.Expires] if the lease counter
// is still the one the caller saw (a free key, an expired one, or a live
// one stolen to balance the load) and the holder it saw has not renewed
// its lease since, and [Leaser.Renew] extends the holder's lease. The store
// decides races by the counter and the Expires seen; whether a lease has
// expired is for the caller to judge ([Checkpoint.Live]). Set refuses only a
// live holder: an owner whose lease expired no longer blocks an operator.
//
// A unit's checkpoint that is no longer needed (a stream shard read to its
// end) is removed with [Deleter.Delete], an optional ability of a Store,
// conditional on the lease counter and refused while a live holder holds
// the key.
//
// # Parked commits
//
// A [ParkStore] keeps the commits a handler gave up on, per subscription,
// ordered by aggregate id (byte order) then version, so that a worker can
// tell whether an aggregate has parked commits (and keep its order by parking
// the later ones too) and an operator can list and replay them.
//
// # Operators' requests
//
// A [RequestStore] (an optional ability of a ParkStore) carries an
// operator's [Request] to the worker that runs a subscription, from another
// process: replay an aggregate's parked commits, or discard them. The
// operator writes it with [RequestStore.Request] (a newer request for the
// same aggregate replaces an older one); the worker polls
// [RequestStore.Requests], carries each pending request out in the
// aggregate's turn and marks it done with [RequestStore.Complete], which
// fails with [ErrNotFound] if the operator replaced or deleted the request
// meanwhile, so that a result never lands on a request it does not belong
// to.
//
// # Errors
//
// Every error of an implementation matches one of the sentinels with
// errors.Is when it stands for one of their conditions: [ErrInvalidArgument]
// for input rejected before any call or write, [ErrNotFound], [ErrFenced]
// (as a *[FencedError]) and [ErrHeld] (as a *[HeldError]). Other errors (a
// failed DynamoDB call, a cancelled context) are returned wrapped.
package checkpoint
