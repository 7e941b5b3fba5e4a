package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

// buildBinary builds ./cmd/eventstore into a temporary folder.
func buildBinary(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "eventstore")
	out, err := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sdkEnv is the process environment with the AWS and EVENTSTORE variables
// replaced: the SDK's standard variables point it at the emulator.
func sdkEnv(t testing.TB, table string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "EVENTSTORE_") {
			env = append(env, kv)
		}
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	return append(env,
		"AWS_ENDPOINT_URL_DYNAMODB="+ddbtest.Endpoint(t),
		"AWS_REGION="+region,
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE="+os.DevNull,
		"EVENTSTORE_TABLE="+table,
	)
}

// TestBinaryWithSDKConfiguration runs the built binary with no flags: the
// endpoint, region and credentials come from the SDK's standard variables,
// the table from EVENTSTORE_TABLE.
func TestBinaryWithSDKConfiguration(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	table := ddbtest.TableName(t)
	env := sdkEnv(t, table)
	client := ddbtest.Client(t)
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, store.Config{TableName: table}) })
	exe := func(stdin io.Reader, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = env
		cmd.Stdin = stdin
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		return code, out.String(), errb.String()
	}

	if code, _, stderr := exe(nil); code != 2 || !strings.Contains(stderr, "Usage: eventstore <command>") {
		t.Errorf("no arguments: exit status %d, stderr %q", code, stderr)
	}
	if code, _, stderr := exe(nil, "table", "create"); code != 0 {
		t.Fatalf("table create: exit status %d: %s", code, stderr)
	}

	// append from a pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer pw.Close()
		_, _ = io.WriteString(pw, `{"aggregateId":"acc-1","version":0,"events":[{"type":"opened"}]}
{"aggregateId":"acc-1","version":1,"events":[{"type":"deposited","amount":10}]}
{"aggregateId":"acc-2","version":0,"events":[{"type":"opened"}]}
`)
	}()
	code, appended, stderr := exe(pr, "append")
	pr.Close()
	if code != 0 || strings.Count(appended, "\n") != 3 {
		t.Fatalf("append: exit status %d, stdout %q, stderr %q", code, appended, stderr)
	}
	if stderr != "" {
		t.Errorf("append wrote to stderr: %s", stderr)
	}

	code, scanned, stderr := exe(nil, "scan")
	if code != 0 {
		t.Fatalf("scan: exit status %d: %s", code, stderr)
	}
	if scanned != appended {
		t.Errorf("scan printed\n%s\nappend printed\n%s", scanned, appended)
	}

	// A conflict through the binary: exit status 3.
	code, _, stderr = exe(strings.NewReader(`{"aggregateId":"acc-1","version":1,"events":[1]}`), "append")
	if code != 3 || !strings.Contains(stderr, `aggregate "acc-1" already has version 1`) {
		t.Errorf("conflict: exit status %d, stderr %q", code, stderr)
	}
}

// TestBinaryInterrupted sends SIGINT to an append waiting for input: it
// has printed what it appended, and exits 130.
func TestBinaryInterrupted(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	table := ddbtest.TableName(t)
	client := ddbtest.Client(t)
	if err := store.CreateTable(t.Context(), client, store.Config{TableName: table}, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.DeleteTable(context.Background(), client, store.Config{TableName: table}) })

	cmd := exec.Command(bin, "append")
	cmd.Env = sdkEnv(t, table)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if _, err := io.WriteString(stdin, `{"aggregateId":"a","version":0,"events":[1]}`+"\n"); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if !strings.Contains(line, `"aggregateId":"a"`) {
			t.Fatalf("first output line %q", line)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("append did not print the first commit while waiting for more input")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 || !strings.Contains(stderr.String(), "append: interrupted") {
			t.Errorf("after SIGINT: %v, stderr %q; want exit status 130", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("append did not exit after SIGINT")
	}
}
