// Package original runs the original JavaScript event store, the npm package
// dynamodb-event-store@2.2.0 (see [Package]), against a DynamoDB endpoint, so
// that tests can check this module's store against it and benchmarks can
// compare the two on the same emulator.
//
// [Start] installs the package once, with its dependency aws-sdk v2, into a
// cache folder (`npm install --ignore-scripts`, so no install scripts run),
// writes a small Node.js driver script next to it and starts `node` on it.
// The driver constructs the package's EventStore with the endpoint, region
// us-east-1, credentials "local"/"local", and the table and index names, and
// then calls the package's own methods (append, query, scan, createTable) for
// each request; it reimplements none of them. Requests travel as JSON lines
// over the process's stdin and stdout and are handled one at a time, in the
// order they were sent.
//
// Several processes may install at the same time: they serialise on a lock
// file, and the installed folder appears atomically (rename), with a marker
// file proving it is complete.
//
// Requirements on the machine: node always, and npm with access to the npm
// registry the first time only. Both are looked up on PATH; their absence is
// reported with [ErrNodeNotFound] and [ErrNpmNotFound].
//
// The package's clock is the real one: the original takes a clock only in its
// constructor, so commit ids written through this package always come from
// the wall clock of the machine.
//
// This package starts processes and is meant for tests and benchmarks, never
// for production code. It works on Linux and other Unix systems (flock).
package original
