// Command eventstore manages an event store on Amazon DynamoDB: it creates,
// describes and deletes the commits table, appends commits read as JSON
// lines, prints an aggregate's commits (query) or every commit in commit
// order (scan, tail), runs the subscription worker daemon (worker), shows
// and moves its checkpoints, handles its parked commits, starts DynamoDB
// Local for development, and runs a demo.
//
//	eventstore demo
//	eventstore table create [--if-not-exists] [--read-capacity N --write-capacity N] [--no-stream]
//	eventstore table describe
//	eventstore table delete [--if-exists]
//	eventstore append < commits.jsonl
//	eventstore query --aggregate ID [--from-version N]
//	eventstore scan [--from-commit-id C]
//	eventstore tail [--from WHERE] [--follow]
//	eventstore worker [--config FILE] [--subscription NAME --handler webhook|stdout …]
//	eventstore checkpoint list|get|set|reset
//	eventstore parked list|replay|discard
//	eventstore local [--port N] [--create-tables]
//
// Every data command takes --table, --index, --buckets (defaults from
// EVENTSTORE_TABLE, EVENTSTORE_INDEX, EVENTSTORE_BUCKETS), --endpoint and
// --region; AWS configuration otherwise comes from the SDK's standard chain
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, …). Run
// `eventstore <command> --help` for details.
//
// Exit status: 0 success (and a worker or tail --follow stopped cleanly by
// a signal), 1 failure, 2 usage error or bad input, 3 version conflict on
// append, 4 refused (checkpoint set of a held checkpoint, discard without
// --yes), 130 interrupted by SIGINT or SIGTERM.
//
// This package only wires the process (signals, standard streams,
// environment) to package internal/cli, where the commands live.
package main
