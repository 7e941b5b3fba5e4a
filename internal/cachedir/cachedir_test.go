package cachedir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEnsureFillsOnceForConcurrentCallers(t *testing.T) {
	cache := t.TempDir()
	var fills atomic.Int32
	fill := func(_ context.Context, tmp string) (string, error) {
		fills.Add(1)
		time.Sleep(50 * time.Millisecond) // others must wait on the lock
		return tmp, os.WriteFile(filepath.Join(tmp, "payload"), []byte("x"), 0o644)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			dir, err := Ensure(context.Background(), cache, "pkg-1.0", "pkg@1.0", nil, fill)
			if err != nil || dir != filepath.Join(cache, "pkg-1.0") {
				t.Errorf("Ensure = %q, %v", dir, err)
			}
		})
	}
	wg.Wait()
	if n := fills.Load(); n != 1 {
		t.Fatalf("filled %d times, want once", n)
	}
	if !Complete(filepath.Join(cache, "pkg-1.0")) {
		t.Fatal("not marked complete")
	}
	if _, err := os.Stat(filepath.Join(cache, "pkg-1.0", "payload")); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureLeavesNothingWhenTheFillFails(t *testing.T) {
	cache := t.TempDir()
	boom := errors.New("npm failed")
	_, err := Ensure(context.Background(), cache, "pkg", "pkg", nil, func(context.Context, string) (string, error) { return "", boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Ensure = %v, want the fill's error", err)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.Name() != "pkg.lock" {
			t.Fatalf("left %s behind", e.Name())
		}
	}
	// A later call fills it.
	if _, err := Ensure(context.Background(), cache, "pkg", "pkg", nil, func(_ context.Context, tmp string) (string, error) { return tmp, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureHonoursContextWhileWaiting(t *testing.T) {
	cache := t.TempDir()
	unlock, err := lock(context.Background(), filepath.Join(cache, "pkg.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	waited := false
	_, err = Ensure(ctx, cache, "pkg", "pkg", func() { waited = true }, func(_ context.Context, tmp string) (string, error) { return tmp, nil })
	if !errors.Is(err, context.DeadlineExceeded) || !waited {
		t.Fatalf("Ensure = %v (waited %v), want the deadline while another holds the lock", err, waited)
	}
}

func TestDir(t *testing.T) {
	t.Setenv(Env, "/from/env")
	if d, _ := Dir("/given"); d != "/given" {
		t.Fatalf("Dir(given) = %s", d)
	}
	if d, _ := Dir(""); d != "/from/env" {
		t.Fatalf("Dir from env = %s", d)
	}
	t.Setenv(Env, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, _ := Dir(""); d != "/xdg/eventstore" {
		t.Fatalf("Dir default = %s", d)
	}
}
