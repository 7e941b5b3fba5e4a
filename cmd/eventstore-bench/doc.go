// Command eventstore-bench measures the event store against DynamoDB Local
// and prints the figures as Markdown for the README.
//
//	go run ./cmd/eventstore-bench [--quick] [--only SECTIONS] [--json]
//
// Its figures are ratios measured in one run: the store against the bare
// SDK (overhead), against the original npm package dynamodb-event-store
// (original), the subscription worker against a bare index read, its live
// lag and memory, and its stream source beside its index source (worker),
// and requests and capacity per commit against the data model's minimum
// (cost). See package internal/bench for how each is measured.
//
// Flags:
//
//	--quick       small sizes, under a minute: checks that every figure comes out
//	--only LIST   sections to run, by name or number: overhead,original,worker,cost or 1,2,3,4
//	--json        print the raw figures as JSON instead of Markdown
//
// It starts DynamoDB Local (see internal/dynamolocal), or uses
// AWS_ENDPOINT_URL_DYNAMODB when it is set, and creates and deletes its own
// tables. The original package needs node and, the first time, npm.
// Progress goes to stderr. The default sizes take about three minutes on a
// two-core machine.
//
// Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.
package main
