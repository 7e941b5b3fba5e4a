package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynamodb-event-store/eventstore/internal/bench"
	"github.com/dynamodb-event-store/eventstore/internal/dynamolocal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal kills at once
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventstore-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small sizes, under a minute: checks that every figure comes out")
	only := fs.String("only", "", "sections to run, comma-separated names or numbers: overhead,original,worker,cost or 1,2,3,4 (default all)")
	asJSON := fs.Bool("json", false, "print the raw figures as JSON instead of Markdown")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "eventstore-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	sections, err := bench.ParseSections(*only)
	if err != nil {
		fmt.Fprintf(stderr, "eventstore-bench: %v\n", err)
		return 2
	}
	sizes := bench.DefaultSizes()
	if *quick {
		sizes = bench.QuickSizes()
	}
	endpoint, stopDB, err := dynamolocal.Ensure(ctx, dynamolocal.Options{Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "eventstore-bench: %v\n", err)
		return exitCode(ctx)
	}
	defer func() {
		if err := stopDB(); err != nil {
			fmt.Fprintf(stderr, "eventstore-bench: stopping DynamoDB Local: %v\n", err)
		}
	}()
	report, err := bench.Run(ctx, bench.Config{Endpoint: endpoint, Sizes: sizes, Sections: sections, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "eventstore-bench: %v\n", err)
		return exitCode(ctx)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		_, err = io.WriteString(stdout, report.Markdown())
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventstore-bench: write: %v\n", err)
		return 1
	}
	return 0
}

// exitCode is 130 when ctx was cancelled by a signal, else 1.
func exitCode(ctx context.Context) int {
	if ctx.Err() != nil {
		return 130
	}
	return 1
}
