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
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/cachedir"
)

// Package is the npm package this package runs, pinned to one version.
const Package = "dynamodb-event-store@2.2.0"

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
	cacheDir, err := cachedir.Dir(cacheDir)
	if err != nil {
		return "", fmt.Errorf("original: %w (or set Options.CacheDir)", err)
	}
	target, err := cachedir.Ensure(ctx, cacheDir, installDirName(), Package, nil, npmInstallInto)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "original: ") {
			err = fmt.Errorf("original: installing %s: %w", Package, err)
		}
		return "", err
	}
	if err := writeDriver(target); err != nil {
		return "", err
	}
	return target, nil
}

// npmInstallInto installs the package into tmp and returns tmp.
func npmInstallInto(ctx context.Context, tmp string) (string, error) {
	// A package.json of its own keeps npm from looking for a project in the
	// folders above.
	manifest := []byte(`{"name":"eventstore-original-driver","private":true,"description":"runs ` + Package + ` for tests"}` + "\n")
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), manifest, 0o644); err != nil {
		return "", fmt.Errorf("original: %w", err)
	}
	if err := npmInstall(ctx, tmp); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(tmp, "node_modules", "dynamodb-event-store", "index.js")); err != nil {
		return "", fmt.Errorf("original: npm install %s left no node_modules/dynamodb-event-store/index.js: %w", Package, err)
	}
	return tmp, nil
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
