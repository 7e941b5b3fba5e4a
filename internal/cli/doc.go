// Package cli is the eventstore command line: its commands, their flags and
// environment, wired to package store. cmd/eventstore calls [Run] and exits
// with its result; everything else lives here so that tests can run the
// commands in-process.
//
// # Adding a command
//
// A command is one entry in the commands table (cli.go): a name, a one-line
// summary, an optional synopsis and help text, and a setup function that
// defines the command's flags on its own flag.FlagSet and returns the
// [action] that runs once they are parsed. A group of commands ("table") is
// an entry whose subs list its subcommands. --help, usage errors, exit
// statuses and the buffered stdout are handled for every command alike.
//
// # Conventions
//
// Results go to stdout, messages to stderr prefixed "eventstore: ". Exit
// statuses: 0 success; 1 a failure (AWS errors, a missing or
// non-conforming table, corrupt items read); 2 a usage error (unknown
// command, bad flag or environment value, bad input line); 3 a version
// conflict on append; 4 refused (checkpoint set or reset of a checkpoint
// a worker holds, without --force, or of one that does not exist, without
// --create; parked discard or table delete without --yes); 130
// interrupted (SIGINT or SIGTERM, or the context given to Run cancelled).
//
// Tables print every cell through one printer (textTable) that escapes
// control characters, so that data cannot drive the terminal; JSON lines
// go through jsonSafeWriter. The commands that read or write commits check
// --buckets against the table first (store.CheckBuckets).
//
// AWS configuration comes from the SDK's standard chain
// (config.LoadDefaultConfig: environment, shared config and credentials
// files, profiles, AWS_ENDPOINT_URL_DYNAMODB), which reads the process
// environment; --region and --endpoint override it. The env function given
// to Run supplies the EVENTSTORE_* defaults only.
package cli
