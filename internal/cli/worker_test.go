package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/cli"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestWorkerHelp(t *testing.T) {
	t.Parallel()
	r := run(t, map[string]string{"EVENTSTORE_WEBHOOK_SECRET": "not-in-help", "EVENTSTORE_STUCK_AFTER": "2m"}, "", "worker", "--help")
	r.want(t, cli.ExitOK)
	for _, s := range []string{
		"Usage: eventstore worker [flags]",
		"--subscription NAME", "--handler TYPE", "--webhook-url URL", "--config FILE",
		"--table NAME", `(default "commitsByAggregateIdAndVersion")`,
		"--listen ADDRESS", `(default ":9090")`,
		"--shutdown-timeout DURATION", "(default 30s)",
		"--stuck-after DURATION", "($EVENTSTORE_STUCK_AFTER) (default 2m0s)",
		"/readyz", "SIGTERM",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("worker --help lacks %q", s)
		}
	}
	if strings.Contains(r.stdout, "not-in-help") {
		t.Error("worker --help shows the webhook secret")
	}
	if h := run(t, nil, "", "help", "worker"); h.code != cli.ExitOK || !strings.Contains(h.stdout, "--webhook-secret SECRET") {
		t.Errorf("help worker: %d\n%s", h.code, h.stdout)
	}
}

func TestWorkerInvalidConfiguration(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--subscription", "s", "--handler", "webhook"}, "worker: --webhook-url: required for a webhook handler"},
		{map[string]string{"EVENTSTORE_BUCKETS": "abc"}, []string{"--subscription", "s", "--handler", "stdout"}, `worker: EVENTSTORE_BUCKETS="abc": want an integer`},
		{nil, nil, "worker: --subscription: no subscription to run"},
		{nil, []string{"--concurrency", "x"}, `worker: invalid value "x" for flag -concurrency`},
	} {
		r := run(t, c.env, "", append([]string{"worker"}, c.args...)...)
		r.want(t, cli.ExitUsage, c.want, "Run 'eventstore worker --help' for usage.")
	}
}

// TestWorkerRunsAndStopsCleanly runs `eventstore worker` with a stdout
// subscription: the commits come out as JSON lines while it runs, and the
// end of its context is a clean stop, exit status 0, with the checkpoint
// written and released.
func TestWorkerRunsAndStopsCleanly(t *testing.T) {
	t.Parallel()
	table := newTable(t)
	client := ddbtest.Client(t)
	cpCfg := dynamocheckpoint.Config{TableName: ddbtest.TableName(t) + "-cp"}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cpCfg, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cpCfg) })
	st, err := store.New(client, store.Config{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		c := store.Commit{AggregateID: fmt.Sprintf("w-%d", i%2), Version: int64(i / 2), Events: json.RawMessage(`[{"n":1}]`)}
		if _, err := st.Append(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	env := map[string]string{"EVENTSTORE_CHECKPOINT_TABLE": cpCfg.TableName, "EVENTSTORE_LOG_FORMAT": "text"}
	args := append([]string{"worker", "--subscription", "tail", "--handler", "stdout", "--listen", "off", "--checkpoint-interval", "100ms"}, on(t, table)...)
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, args, nil, &stdout, &stderr, func(k string) string { return env[k] })
	}()
	ddbtest.Eventually(t, 60*time.Second, func() bool { return len(lines(stdout.String())) >= 6 },
		"the worker printed %d of 6 commits while running; stderr:\n%s", len(lines(stdout.String())), &stderr)
	next := map[string]int64{}
	for _, c := range decode(t, stdout.String()) {
		if c.Version != next[c.AggregateID] {
			t.Errorf("%s version %d, want %d", c.AggregateID, c.Version, next[c.AggregateID])
		}
		next[c.AggregateID]++
	}
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Fatalf("exit status %d after a clean stop, want 0\n%s", code, &stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the worker did not stop\n%s", &stderr)
	}
	if !strings.Contains(stderr.String(), "stopped cleanly") || strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr:\n%s", &stderr)
	}
	cps, err := dynamocheckpoint.New(client, cpCfg)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := cps.Load(t.Context(), checkpoint.Key{Subscription: "tail"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Owner != "" || cp.Position == "" {
		t.Errorf("checkpoint after the stop: owner %q, position %q", cp.Owner, cp.Position)
	}
}
