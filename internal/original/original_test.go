package original_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/internal/original"
)

func TestMain(m *testing.M) { ddbtest.Main(m) }

func start(t *testing.T) *original.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := original.Start(ctx, original.Options{Endpoint: ddbtest.Endpoint(t), TableName: ddbtest.TableName(t), IndexName: "byCommitId"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

type commit struct {
	CommitID    string          `json:"commitId"`
	CommittedAt int64           `json:"committedAt"`
	AggregateID string          `json:"aggregateId"`
	Version     int64           `json:"version"`
	Events      json.RawMessage `json:"events"`
}

func decode(t *testing.T, raws []json.RawMessage) []commit {
	t.Helper()
	out := make([]commit, len(raws))
	for i, r := range raws {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("commit %d %s: %v", i, r, err)
		}
	}
	return out
}

func TestClientRunsThePackage(t *testing.T) {
	c := start(t)
	ctx := t.Context()
	info := c.Info()
	if info.Package != "2.2.0" || !strings.HasPrefix(info.AWSSDK, "2.") || info.Node == "" {
		t.Errorf("Info() = %+v, want package 2.2.0 on aws-sdk 2.x", info)
	}
	if err := c.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	var e *original.Error
	if err := c.CreateTable(ctx); !errors.As(err, &e) || e.Name != "ResourceInUseException" {
		t.Errorf("second CreateTable: %v, want ResourceInUseException", err)
	}

	before := time.Now().UnixMilli()
	if err := c.Append(ctx, "a", 0, json.RawMessage(`[{"type":"x","n":1}]`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(ctx, "a", 1, json.RawMessage(`[2]`)); err != nil {
		t.Fatal(err)
	}
	err := c.Append(ctx, "a", 1, json.RawMessage(`[3]`))
	if !errors.Is(err, original.ErrVersionConflict) {
		t.Fatalf("Append of a taken version: %v, want ErrVersionConflict", err)
	}
	if !errors.As(err, &e) || e.Name != "EventStoreVersionConflictError" || e.Op != "append" {
		t.Errorf("conflict error = %#v", err)
	}

	raws, err := c.Query(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, raws)
	if len(got) != 2 || got[0].Version != 0 || got[1].Version != 1 || string(got[1].Events) != "[2]" {
		t.Fatalf("Query = %s", raws)
	}
	if got[0].CommittedAt < before || !strings.HasSuffix(got[0].CommitID, ":a") || len(got[0].CommitID) != 19 {
		t.Errorf("commit 0 = %+v", got[0])
	}
	if raws, err = c.Query(ctx, "a", 1); err != nil || len(raws) != 1 {
		t.Errorf("Query from 1 = %s, %v; want 1 commit", raws, err)
	}

	if err := c.Append(ctx, "b", 0, json.RawMessage(`[]`)); err != nil {
		t.Fatal(err)
	}
	raws, err = c.Scan(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	all := decode(t, raws)
	if len(all) != 3 {
		t.Fatalf("Scan = %s, want 3 commits", raws)
	}
	raws, err = c.Scan(ctx, all[1].CommitID)
	if err != nil || len(raws) != 2 {
		t.Errorf("Scan from the second commit = %s, %v; want 2 commits (inclusive)", raws, err)
	}
}

func TestAppendMany(t *testing.T) {
	c := start(t)
	ctx := t.Context()
	if err := c.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	var commits []original.Commit
	for i := range 40 {
		commits = append(commits, original.Commit{AggregateID: fmt.Sprintf("agg-%d", i%8), Version: int64(i / 8), Events: json.RawMessage(`[{"i":` + fmt.Sprint(i) + `}]`)})
	}
	res, err := c.AppendMany(ctx, commits, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 40 || res.Elapsed <= 0 {
		t.Errorf("AppendMany = %+v, want 40 commits and a duration", res)
	}
	raws, err := c.Scan(ctx, "")
	if err != nil || len(raws) != 40 {
		t.Fatalf("Scan = %d commits, %v; want 40", len(raws), err)
	}
	_, err = c.AppendMany(ctx, commits[:1], 1)
	if !errors.Is(err, original.ErrVersionConflict) {
		t.Errorf("AppendMany of a taken version: %v, want ErrVersionConflict", err)
	}
}

func TestCallsAfterClose(t *testing.T) {
	c := start(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTable(t.Context()); !errors.Is(err, original.ErrClosed) {
		t.Errorf("CreateTable after Close: %v, want ErrClosed", err)
	}
}

func TestCancelledCallLeavesClientUsable(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.CreateTable(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateTable with a cancelled context: %v", err)
	}
	// The driver still ran it; the next call gets its own answer.
	var e *original.Error
	if err := c.CreateTable(t.Context()); !errors.As(err, &e) || e.Name != "ResourceInUseException" {
		t.Errorf("CreateTable again: %v, want ResourceInUseException", err)
	}
	if _, err := c.Scan(t.Context(), ""); err != nil {
		t.Error(err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := original.Start(t.Context(), original.Options{}); err == nil {
		t.Error("Start without an endpoint succeeded")
	}
	t.Run("no node", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := original.Start(t.Context(), original.Options{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir()})
		if !errors.Is(err, original.ErrNodeNotFound) {
			t.Errorf("Start: %v, want ErrNodeNotFound", err)
		}
	})
	t.Run("no npm", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := original.Install(t.Context(), t.TempDir())
		if !errors.Is(err, original.ErrNpmNotFound) {
			t.Errorf("Install: %v, want ErrNpmNotFound", err)
		}
	})
	t.Run("npm fails", func(t *testing.T) {
		bin := t.TempDir()
		script := "#!/bin/sh\necho 'npm error 404 Not Found - GET https://registry.npmjs.org/x' >&2\nexit 1\n"
		if err := os.WriteFile(filepath.Join(bin, "npm"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", bin)
		cache := t.TempDir()
		_, err := original.Install(t.Context(), cache)
		if err == nil || !strings.Contains(err.Error(), "npm error 404 Not Found") {
			t.Errorf("Install: %v, want npm's stderr in the error", err)
		}
		left, _ := os.ReadDir(cache)
		for _, e := range left {
			if !strings.HasSuffix(e.Name(), ".lock") {
				t.Errorf("failed install left %s in the cache", e.Name())
			}
		}
	})
}

func TestConcurrentInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs npm install twice into a fresh cache")
	}
	cache := t.TempDir()
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = original.Install(t.Context(), cache) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Errorf("Install %d = %s, want %s", i, dirs[i], dirs[0])
		}
	}
	for _, f := range []string{"driver.js", "node_modules/dynamodb-event-store/index.js", "node_modules/aws-sdk/package.json"} {
		if _, err := os.Stat(filepath.Join(dirs[0], f)); err != nil {
			t.Error(err)
		}
	}
	entries, _ := os.ReadDir(cache)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"dynamodb-event-store-2.2.0", "dynamodb-event-store-2.2.0.lock"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("cache holds %q, want %q", names, want)
	}
}
