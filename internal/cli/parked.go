package cli

// parkedCommands are the subcommands of "eventstore parked".
var parkedCommands = []*command{}
