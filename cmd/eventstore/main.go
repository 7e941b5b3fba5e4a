package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynamodb-event-store/eventstore/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second one
	// kills the process at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns the
// exit status; see package internal/cli.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	return cli.Run(ctx, args, stdin, stdout, stderr, env)
}
