// Command eventstore manages an event store on Amazon DynamoDB: it creates,
// describes and deletes the commits table, appends commits read as JSON
// lines, and prints an aggregate's commits (query) or every commit in commit
// order (scan).
//
//	eventstore table create [--if-not-exists] [--read-capacity N --write-capacity N] [--no-stream]
//	eventstore table describe
//	eventstore table delete [--if-exists]
//	eventstore append < commits.jsonl
//	eventstore query --aggregate ID [--from-version N]
//	eventstore scan [--from-commit-id C]
//
// Every data command takes --table, --index, --buckets (defaults from
// EVENTSTORE_TABLE, EVENTSTORE_INDEX, EVENTSTORE_BUCKETS), --endpoint and
// --region; AWS configuration otherwise comes from the SDK's standard chain
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, …). Run
// `eventstore <command> --help` for details.
//
// Exit status: 0 success, 1 failure, 2 usage error or bad input, 3 version
// conflict on append, 130 interrupted by SIGINT or SIGTERM.
//
// This package only wires the process (signals, standard streams,
// environment) to package internal/cli, where the commands live.
package main
