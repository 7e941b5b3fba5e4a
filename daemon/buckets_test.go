package daemon_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
)

// TestRunRefusesABucketCountTheTableDisagreesWith: a worker with --buckets
// 2 on a table of one bucket would read nothing; it refuses to start,
// naming the setting as given, before handling anything.
func TestRunRefusesABucketCountTheTableDisagreesWith(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.appendCommits(3, 2)
	var stdout, stderr syncBuffer
	args := []string{"--table", e.table, "--checkpoint-table", e.cpTable, "--endpoint", ddbtest.Endpoint(t),
		"--region", os.Getenv("AWS_REGION"), "--listen", "off", "--log-format", "text",
		"--subscription", "s", "--handler", "stdout", "--buckets", "2"}
	code := daemon.RunArgs(t.Context(), args, daemon.Options{Stdout: &stdout, Stderr: &stderr, Env: func(string) string { return "" }})
	if code != daemon.ExitConfig || !strings.Contains(stderr.String(), "--buckets 2: does not match commits table "+e.table) {
		t.Errorf("exit status %d, want %d naming --buckets 2\n%s", code, daemon.ExitConfig, stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("the worker handled commits: %s", stdout.String())
	}

	// From the file, the setting is named by its path there.
	cfg := e.config(daemon.SubscriptionConfig{Name: "s", Handler: daemon.HandlerConfig{Type: daemon.HandlerStdout}})
	cfg.Buckets = 3
	err := daemon.Run(t.Context(), cfg, daemon.Options{Stdout: &stdout, Stderr: &stderr})
	var ce *daemon.ConfigError
	if !errors.As(err, &ce) || ce.Setting != "buckets" || !strings.Contains(ce.Reason, "written with 1") {
		t.Errorf("Run with Buckets 3 = %v, want a *ConfigError at buckets saying the table has 1", err)
	}

	// The right count runs and delivers.
	cfg.Buckets = 1
	r := start(t, cfg, daemon.Options{})
	ddbtest.Eventually(t, 20*time.Second, func() bool { return strings.Count(r.stdout.String(), "\n") >= 3 }, "the worker handled %q", r.stdout.String())
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
