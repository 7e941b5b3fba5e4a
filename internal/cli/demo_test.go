package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

func TestDemoBuildsAReadModelThatMatchesTheTable(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", ddbtest.Endpoint(t))
	r := run(t, nil, "", "demo", "--duration", "2s", "--accounts", "10", "--rate", "50")
	r.want(t, 0)
	for _, want := range []string{"written", "handled", "read model matches the table: ", "Query account-", "Scan (the first 3 commits"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestDemoStopsCleanlyOnInterrupt cancels the demo's context, as Ctrl-C
// does: it catches up, checks, and exits 0.
func TestDemoStopsCleanlyOnInterrupt(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", ddbtest.Endpoint(t))
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"demo", "--duration", "0", "--accounts", "5"}, strings.NewReader(""), &stdout, &stderr, nil)
	}()
	time.Sleep(2500 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(stdout.String(), "read model matches the table") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the demo did not stop after an interrupt")
	}
}
