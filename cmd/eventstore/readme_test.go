package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readmeCommands returns the two commands of the README's "The two
// commands" section: the demo, then the test suite.
func readmeCommands(t *testing.T, root string) (demo, tests string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "## The two commands")
	if i < 0 {
		t.Fatal(`README.md has no "## The two commands" section`)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(readme[i:])
	if block == nil {
		t.Fatal("the two commands section has no ```sh block")
	}
	var cmds []string
	for line := range strings.Lines(block[1]) {
		if cmd, _, _ := strings.Cut(line, "#"); strings.TrimSpace(cmd) != "" {
			cmds = append(cmds, strings.TrimSpace(cmd))
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("the two commands section holds %d commands, want 2: %q", len(cmds), cmds)
	}
	return cmds[0], cmds[1]
}

// repoRoot is the module's root: two folders up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

// freshEnv is the environment of a fresh machine's shell: no AWS or
// EVENTSTORE settings, so the demo starts its own DynamoDB Local.
func freshEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "EVENTSTORE_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestReadmeTestCommandIsWhatCIRuns checks that .ci/run runs the README's
// test command word for word, and that the command itself works here: it
// compiles every package's tests and lists them (-list), without running
// them again.
func TestReadmeTestCommandIsWhatCIRuns(t *testing.T) {
	root := repoRoot(t)
	_, tests := readmeCommands(t, root)
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TEST_CMD='([^']*)'$`).FindSubmatch(ci)
	if m == nil {
		t.Fatal(".ci/run sets no TEST_CMD='…'")
	}
	if string(m[1]) != tests {
		t.Fatalf(".ci/run runs %q, the README says %q", m[1], tests)
	}
	if !regexp.MustCompile(`(?m)^eval "\$TEST_CMD"$`).Match(ci) {
		t.Fatal(`.ci/run does not run eval "$TEST_CMD"`)
	}
	if testing.Short() {
		t.Skip("-short: not compiling every package's tests")
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-c", tests+" -list '^TestReadme'")
	cmd.Dir, cmd.Env = root, freshEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -list: %v\n%s", tests, err, out)
	}
	if !strings.Contains(string(out), "TestReadmeTestCommandIsWhatCIRuns") {
		t.Fatalf("%s -list does not list this test:\n%s", tests, out)
	}
}

// TestReadmeDemoCommand runs the README's demo command as a user would on a
// clean checkout, in a shell of its own, with no AWS settings: it must
// start DynamoDB Local itself, show progress and where the metrics are,
// and on Ctrl-C (SIGINT to its process group, as a terminal sends it) stop
// cleanly with the read model checked and exit status 0.
func TestReadmeDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not running the demo")
	}
	root := repoRoot(t)
	demo, _ := readmeCommands(t, root)
	cmd := exec.Command("bash", "-c", demo)
	cmd.Dir, cmd.Env = root, freshEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	// Wait for three progress lines with commits handled.
	progress := regexp.MustCompile(`(?m)handled +[1-9][0-9]*`)
	deadline := time.Now().Add(3 * time.Minute)
	for len(progress.FindAllString(out.String(), -1)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress with commits handled after 3 minutes\nstdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		killed = true
	case <-time.After(90 * time.Second):
		t.Fatalf("the demo did not stop within 90 s of Ctrl-C\nstdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
	// `go run` itself exits 1 when it was interrupted, whatever its child
	// did; it says "exit status N" when the child failed.
	var exit *exec.ExitError
	goRunInterrupted := strings.HasPrefix(demo, "go run ") && errors.As(err, &exit) && exit.ExitCode() == 1 &&
		!strings.Contains(stderr.String(), "exit status")
	if err != nil && !goRunInterrupted {
		t.Fatalf("the demo after Ctrl-C: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	for _, want := range []string{"/metrics", "read model matches the table"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q\nstdout:\n%s\nstderr:\n%s", want, out.String(), stderr.String())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
