package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/daemon"
	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDaemon runs the handler in the daemon, in-process, as main does: the
// balances come right, /readyz answers, and cancelling the context stops it
// with exit status 0.
func TestDaemon(t *testing.T) {
	// The daemon's AWS configuration comes from the SDK's chain.
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_REGION", "us-east-1")
	st := newStore(t)
	client, table := newBalancesTable(t)
	cps := dynamocheckpoint.Config{TableName: ddbtest.TableName(t)}
	if err := dynamocheckpoint.CreateTable(t.Context(), client, cps, dynamocheckpoint.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dynamocheckpoint.DeleteTable(context.Background(), client, cps) })
	want, _ := appendAccounts(t, st, 4, 4)

	args := []string{"--table", st.Config().TableName, "--checkpoint-table", cps.TableName,
		"--endpoint", ddbtest.Endpoint(t), "--listen", "127.0.0.1:0"}
	if endpoint, region, err := awsSettings(args, func(string) string { return "" }); endpoint != ddbtest.Endpoint(t) || region != "" || err != nil {
		t.Errorf("awsSettings = %q, %q, %v; want the endpoint flag's value and no region", endpoint, region, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	started := make(chan net.Addr, 1)
	done := make(chan int, 1)
	go func() {
		done <- daemon.RunArgs(ctx, args, daemon.Options{
			Handlers: map[string]subscribe.Handler{Subscription: NewHandler(client, table)},
			Stdout:   io.Discard,
			Stderr:   &stderr,
			Env:      func(string) string { return "" },
			Started:  func(_ *subscribe.Worker, addr net.Addr) { started <- addr },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-started:
	case code := <-done:
		t.Fatalf("RunArgs = %d before it started; stderr:\n%s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not start in 30 s; stderr:\n%s", stderr.String())
	}

	var got []Account
	ddbtest.Eventually(t, 30*time.Second, func() bool {
		var err error
		got, err = ReadAccounts(t.Context(), client, table)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			return false
		}
		for _, a := range got {
			if !reflect.DeepEqual(a, want[a.AccountID]) {
				return false
			}
		}
		return true
	}, "balances equal to the commits'")

	if addr == nil {
		t.Fatal("Started gave no listener address")
	}
	resp, err := http.Get("http://" + addr.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(Subscription)) {
		t.Errorf("/readyz: %d %s, want 200 naming %s", resp.StatusCode, body, Subscription)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("RunArgs = %d after cancel, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("the daemon did not stop in 40 s; stderr:\n%s", stderr.String())
	}
}

// errAny stands for any error but flag.ErrHelp in test tables.
var errAny = errors.New("any error")

func TestAWSSettings(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	tests := []struct {
		name             string
		args             []string
		env              map[string]string
		endpoint, region string
		err              error // nil, flag.ErrHelp, or errAny
	}{
		{"none", nil, nil, "", "", nil},
		{"flags", []string{"--endpoint", "http://127.0.0.1:8000", "--region", "eu-west-1", "--listen", "off"}, nil, "http://127.0.0.1:8000", "eu-west-1", nil},
		{"environment", nil, map[string]string{"EVENTSTORE_ENDPOINT": "http://localhost:8000", "EVENTSTORE_REGION": "eu-west-2"}, "http://localhost:8000", "eu-west-2", nil},
		{"a flag wins", []string{"-endpoint=http://a:1"}, map[string]string{"EVENTSTORE_ENDPOINT": "http://b:2"}, "http://a:1", "", nil},
		{"a file, under the flags", []string{"--config", "FILE", "--region", "eu-west-3"}, nil, "http://127.0.0.1:8001", "eu-west-3", nil},
		{"help", []string{"--help"}, nil, "", "", flag.ErrHelp},
		{"a bad flag", []string{"--no-such-flag"}, nil, "", "", errAny},
		{"a missing file", []string{"--config", "/nonexistent/daemon.json"}, nil, "", "", errAny},
	}
	file := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(file, []byte(`{"endpoint": "http://127.0.0.1:8001", "region": "eu-west-1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := slices.Clone(tt.args)
			if i := slices.Index(args, "FILE"); i >= 0 {
				args[i] = file
			}
			endpoint, region, err := awsSettings(args, env(tt.env))
			errOK := errors.Is(err, tt.err) || (tt.err == errAny && err != nil && !errors.Is(err, flag.ErrHelp))
			if endpoint != tt.endpoint || region != tt.region || !errOK {
				t.Errorf("awsSettings = %q, %q, %v; want %q, %q, %v", endpoint, region, err, tt.endpoint, tt.region, tt.err)
			}
		})
	}
}
