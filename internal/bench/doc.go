// Package bench measures the event store against DynamoDB Local and reports
// ratios measured in one run: absolute times on a shared two-core machine are
// noise, ratios between two things measured side by side on the same
// emulator in the same run are not (see DESIGN.md, section 7).
//
// [Run] runs the sections a [Config] selects and returns a [Report]:
//
//  1. Overhead ([OverheadResult]): the store's Append, Query and Scan
//     against the same calls made with the bare SDK, interleaved op by op
//     after a warm-up, with allocations and client CPU per commit; Append at
//     concurrency 16; and a control, the SDK against itself.
//  2. Original ([OriginalResult]): the original npm package
//     dynamodb-event-store@2.2.0 (run in node by package internal/original)
//     appending and reading the same data on the same emulator, interleaved
//     in rounds with the store.
//  3. Worker ([WorkerResult]): the subscription worker catching up on a
//     backlog, as a ratio to a bare paginated index read of the same
//     backlog, and from memory; its live lag from append to handler; its
//     peak live heap on two backlog sizes; and the stream source beside the
//     index source ([StreamResult]): both subscriptions' live lag on the
//     same commits, and their requests per commit delivered and per idle
//     minute.
//  4. Cost ([CostResult]): DynamoDB requests and consumed capacity per
//     commit written and read, against the minimum the data model allows,
//     and the worker's requests while catching up and while idle.
//
// Rates come from median operation times (see [Side]). Each section creates
// its own tables (without streams, but for the stream source's) and deletes
// them when done. The sizes come from [Sizes]: [QuickSizes] finishes in
// well under a minute and serves the package's test; [DefaultSizes] takes
// about three minutes.
// [Report.Markdown] renders the figures for the README.
//
// The package starts no emulator: the caller passes an endpoint (the
// command eventstore-bench gets one from internal/dynamolocal). Section 2
// starts node processes through internal/original. It is a development
// tool, never imported by production code.
package bench
