// Balances is a worker daemon built around a Go handler: it keeps every
// bank account's balance in a DynamoDB table of its own, from the commits of
// the accounts the `eventstore demo` writes.
//
// It takes the same flags, environment variables, HTTP endpoints (/metrics,
// /healthz, /readyz) and signals as `eventstore worker` (see package daemon),
// and runs one subscription, "balances". Its own settings:
//
//	BALANCES_TABLE   the read model's table (default "balances"), created at
//	                 start if missing: on-demand billing, partition key
//	                 accountId (S)
//
// The read model's DynamoDB client takes its endpoint and region where the
// daemon does: --endpoint and --region, EVENTSTORE_ENDPOINT and
// EVENTSTORE_REGION, a --config file's endpoint and region, then the AWS
// SDK's standard configuration (AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION,
// profiles). `balances show` prints the table. See README.md to run it
// against DynamoDB Local.
//
// # Events
//
// A commit's events are a JSON array of objects {type, owner, amount}:
// AccountOpened sets the owner, MoneyDeposited adds amount to the balance,
// MoneyWithdrawn subtracts it. Other types are ignored. Every aggregate of
// the commits table is taken to be an account.
//
// # Idempotency
//
// The worker delivers every commit at least once, and one account's commits
// in version order with no gaps; around a crash, a lost lease or a
// checkpoint moved back, commits already handled come again. The read model
// makes a repeat harmless by storing, with each account's balance, the
// version of the next commit it expects, nextVersion:
//
//	accountId (S)  owner (S)  balance (N)  nextVersion (N)  skippedVersions (NS)
//
// Applying a commit is one conditional UpdateItem that adds the commit's
// delta to the balance and sets nextVersion to the commit's version + 1, on
// the condition that nextVersion equals the commit's version (for version
// 0: that the account has no nextVersion yet). The balance and the version
// move together, in one atomic write, or not at all: there is no window in
// which a crash leaves one without the other, and no read before the write.
//
// When the condition fails, DynamoDB returns the stored item with the
// failure (ReturnValuesOnConditionCheckFailure ALL_OLD), so no second
// request is needed to tell why:
//
//   - stored nextVersion above the commit's version: the commit was applied
//     before; Handle returns nil and nothing changes;
//   - stored nextVersion below it (or no item, for a version above 0): a
//     commit in between has not been applied; Handle returns a *GapError
//     (errors.Is ErrGap) and writes nothing. The worker retries it; since it
//     delivers one account's commits in order, a gap means the subscription
//     started past the account's first commit or a commit was dropped (see
//     below), and the commit ends parked, per the subscription's policy.
//
// A commit whose events cannot be decoded (not a JSON array of such objects,
// a negative amount, a balance beyond int64) cannot change the balance, but
// must not stop the account either: Handle advances nextVersion over it with
// the same conditional write, records its version in skippedVersions (so a
// reader knows the balance leaves something out), and returns
// subscribe.Skip with the reason, which the worker counts and logs. A
// repeat of it returns the same Skip and changes nothing.
//
// The read model therefore needs every commit of an account from version 0:
// run its subscription from the beginning (--start beginning, the default)
// and with the park or stop policy. With --policy skip, or a checkpoint
// moved forward, commits the handler failed on are dropped by the worker,
// and the account's next commit finds a gap.
package main
