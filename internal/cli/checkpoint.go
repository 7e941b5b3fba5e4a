package cli

// checkpointCommands are the subcommands of "eventstore checkpoint".
var checkpointCommands = []*command{}
