// Package subscribe runs subscriptions: each reads every commit of the
// commits table from its checkpoint on and hands it to its handler, in
// per-aggregate order, saving its position as it goes. Read models are built
// this way.
//
// # Use
//
// Create a Worker with a Config (the Reader, usually the *store.Store; a
// checkpoint.Store; for stream subscriptions a DynamoDB Streams client),
// Register subscriptions, then call Run, which blocks until its context ends
// and then stops cleanly: it stops reading, lets the handlers already running
// finish (Config.DrainTimeout), and saves every checkpoint with a fresh
// context. Each Subscription has its own name, position, start point
// (Start), failure policy (Policy), retry bounds (RetryPolicy) and source
// (Source).
//
// # Guarantees
//
//   - At least once: every commit is delivered to every subscription at
//     least once. Duplicates come only after a crash or a lost checkpoint,
//     and are bounded by the checkpoint interval (and, for the stream
//     source, StreamOptions.Margin). A commit carries its aggregate id and
//     version so handlers can be idempotent.
//   - Per-aggregate order: one aggregate's versions come in ascending order
//     with no gap, one at a time. Different aggregates are handled
//     concurrently (Subscription.Concurrency).
//   - No silent skip: a commit that arrives late is delivered late (and
//     counted); one whose handler fails transiently (its receiver is down)
//     is retried until it passes its maximum record age
//     (RetryPolicy.MaxRecordAge, 6 hours), with a circuit breaker that backs
//     the subscription off as a whole; one that fails permanently, or past
//     that age, is parked, stopped on or skipped per the Policy, always
//     counted and logged; an item that is not a well-formed commit, and
//     the version after a gap the table does not fill within GapTimeout,
//     are reported (an ERROR log, a hook) and parked or skipped per the
//     Corrupt policy (see docs/items.md).
//   - The checkpoint never passes a commit not handled, with handlers
//     running in parallel.
//   - Bounded memory: at most Subscription.MaxInFlight commits are read and
//     not handled.
//
// # Sources
//
// SourceIndex polls the commit-order index: a settle watermark, a sweep
// Overlap behind it, and per-aggregate gap repair defend against commits
// that become visible late (see IndexOptions). SourceStream reads the
// table's DynamoDB stream, ordering each aggregate's records by version (see
// StreamOptions); what the stream cannot give (history on a first start,
// records trimmed after 24 hours, a stream replaced by a new one) is read
// through the index first, then the stream takes over. SourceAuto also
// catches up through the index at every start.
//
// # Parked commits
//
// A commit that failed permanently, or transiently past its maximum
// record age (see RetryPolicy and docs/delivery.md), is parked
// (PolicyPark, the default) in Config.Parking, with every later commit of its aggregate, so
// that the aggregate's order holds while the others go on. Worker.Replay
// hands an aggregate's parked commits to the handler again, in order;
// Worker.Discard drops them. Both run in the aggregate's turn. An operator
// in another process asks for either by writing a checkpoint.Request: the
// worker that runs the subscription reads them at start and every
// Config.RequestPoll, carries each out once, and marks it done with its
// result and count.
//
// # Scale-out
//
// Without Config.Leases, a subscription runs whole in one worker, which
// claims its checkpoint; a second process on the same subscription takes it
// over and fences the first. With Config.Leases (see LeaseOptions), several
// workers, usually in several processes, share each subscription: a
// SourceIndex subscription over a bucketed index is cut into one unit per
// bucket, each with its own checkpoint and lease in Config.Checkpoints; the
// workers balance the units between them every LeaseOptions.BalanceEvery,
// renew the leases they hold, and take over the units of a worker that
// stopped (at once) or died (once its leases expire). A unit whose lease is
// lost stops at once and is reported through HookLease. A SourceStream or
// SourceAuto subscription is leased whole while it catches up through the
// index, then shard by shard once the stream has taken over, children
// after their parents whichever worker read them. A SourceIndex
// subscription over one bucket is one unit, run by one worker at a time,
// which another takes over when it stops or dies.
//
// # Handlers
//
// A Handler takes one commit, a BatchHandler consecutive commits of one
// aggregate. Middleware wrap Handlers, the first outermost. Handlers steer
// the worker with Skip, Permanent, Transient and RetryAfter (Classify
// tells how an error is taken); a BatchError says how far a batch got. A
// panic is a transient error.
//
// # Observability
//
// The worker calls the small Hook… interfaces a Config.Hooks value
// implements (package promhooks implements them all with Prometheus), logs
// through Config.Logger, and reports each subscription's state through
// Worker.Health.
//
// A Worker is safe for concurrent use.
package subscribe
