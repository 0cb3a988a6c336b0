package pack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
)

// flipFS serves one file rewritten in place between its first read and
// any read after, while its stat stays the same: only a second read can
// show the change.
type flipFS struct {
	fstest.MapFS
	mtime  time.Time
	second int // reads of data.bin after the first
}

func (f *flipFS) Open(name string) (fs.File, error) {
	if name != "data.bin" {
		return f.MapFS.Open(name)
	}
	m := fstest.MapFS{name: {Data: []byte("first"), ModTime: f.mtime}}
	file, err := m.Open(name)
	if err != nil {
		return nil, err
	}
	return &flipFile{File: file, fs: f}, nil
}

// flipFile reads "first" from its start, and "other" at an offset, the
// read again that a racy file gets.
type flipFile struct {
	fs.File
	fs *flipFS
}

func (f *flipFile) ReadAt(p []byte, off int64) (int, error) {
	if off == 0 {
		f.fs.second++
	}
	return bytes.NewReader([]byte("other")).ReadAt(p, off)
}

// TestRacyFileIsReadTwice: a file modified within racyWindow of its read
// may change again without its stat showing it, so it is read a second
// time and must hash the same; an older one is read once.
func TestRacyFileIsReadTwice(t *testing.T) {
	manifest := []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: racy\n  version: 1.0.0\n  description: Racy.\nspec:\n  steps:\n    - id: a\n      run: {command: [\"true\"]}\n")
	base := fstest.MapFS{ManifestFile: {Data: manifest}, "data.bin": {Data: []byte("first")}}
	for _, tc := range []struct {
		name       string
		mtime      time.Time
		wantErr    bool
		wantSecond int
	}{
		{"just modified", time.Now(), true, 1},
		{"an hour old", time.Now().Add(-time.Hour), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &flipFS{MapFS: base, mtime: tc.mtime}
			reads := 0
			_, err := LoadWith(fsys, LoadOptions{Read: func(name string, r io.Reader) (digest.Digest, int64, error) {
				if name == "data.bin" {
					reads++
				}
				return hashReader(name, r)
			}})
			if got := errors.Is(err, ErrFileChanged); got != tc.wantErr {
				t.Fatalf("LoadWith: %v, want ErrFileChanged %v", err, tc.wantErr)
			}
			if fsys.second != tc.wantSecond || reads != 1 {
				t.Fatalf("data.bin read again %d times (want %d), given to Read %d times (want 1)", fsys.second, tc.wantSecond, reads)
			}
		})
	}
}

// TestLoadReportsProgress: with Progress set, the bytes read are reported
// against the bytes of all files, ending at the total.
func TestLoadReportsProgress(t *testing.T) {
	manifest := []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: prog\n  version: 1.0.0\n  description: Progress.\nspec:\n  steps:\n    - id: a\n      run: {command: [\"true\"]}\n")
	fsys := fstest.MapFS{ManifestFile: {Data: manifest}, "a.bin": {Data: make([]byte, 5000)}, "b/c.bin": {Data: make([]byte, 7)}}
	var mu sync.Mutex
	var last, total int64
	if _, err := LoadWith(fsys, LoadOptions{Concurrency: 2, Progress: func(d, tot int64) {
		mu.Lock()
		defer mu.Unlock()
		last, total = max(last, d), tot
	}}); err != nil {
		t.Fatal(err)
	}
	want := int64(len(manifest) + 5000 + 7)
	if last != want || total != want {
		t.Fatalf("progress ended at %d of %d, want %d of %d", last, total, want, want)
	}
}

// growFS serves data.bin as a regular file whose stats, once opened, give
// the sizes of sizes, one per Stat, and whose reads give content (all
// there is).
type growFS struct {
	fstest.MapFS
	sizes   []int64
	content []byte
}

type growFile struct {
	fs.File
	g    *growFS
	off  int
	stat int
}

type sizedInfo struct {
	fs.FileInfo
	size int64
}

func (s sizedInfo) Size() int64 { return s.size }

func (f *growFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	size := f.g.sizes[min(f.stat, len(f.g.sizes)-1)]
	f.stat++
	return sizedInfo{fi, size}, err
}

func (f *growFile) Read(p []byte) (int, error) {
	if f.off >= len(f.g.content) {
		return 0, io.EOF
	}
	n := copy(p, f.g.content[f.off:])
	f.off += n
	return n, nil
}

func (g *growFS) Open(name string) (fs.File, error) {
	f, err := g.MapFS.Open(name)
	if err != nil || name != "data.bin" {
		return f, err
	}
	return &growFile{File: f, g: g}, nil
}

// TestFileChangingSizeWhileRead: a file is read to its end, and refused
// when what was read is not the size its stat gave before and after the
// read: one that grew, one that shrank, and one whose stat is stale (a
// FUSE file system's, procfs's size of 0) though it did not change.
func TestFileChangingSizeWhileRead(t *testing.T) {
	manifest := []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: grow\n  version: 1.0.0\n  description: Grow.\nspec:\n  steps:\n    - id: a\n      run: {command: [\"true\"]}\n")
	old := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name    string
		sizes   []int64 // the stats of the open file: before the read, after it
		content string
		wantErr bool
	}{
		{"same size", []int64{5, 5}, "first", false},
		{"grew while read", []int64{5, 10}, "firstgrown", true},
		{"shrank while read", []int64{10, 10}, "first", true},
		{"more than its stat says", []int64{5, 5}, "firstgrown", true},
		{"empty by its stat", []int64{0, 0}, "first", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &growFS{MapFS: fstest.MapFS{ManifestFile: {Data: manifest, ModTime: old}, "data.bin": {Data: []byte(tc.content), ModTime: old}},
				sizes: tc.sizes, content: []byte(tc.content)}
			_, err := LoadWith(fsys, LoadOptions{})
			if errors.Is(err, ErrFileChanged) != tc.wantErr {
				t.Fatalf("LoadWith: %v, want ErrFileChanged %v", err, tc.wantErr)
			}
		})
	}
}

// TestReadTakesModeAndRefusesSwaps: a file's size and mode are those of
// the file opened (the listing does not stat it); a symlink, in place of
// pack.yaml or of any file, is refused, and so is a file that became a
// symlink or a folder after the folder was listed.
func TestReadTakesModeAndRefusesSwaps(t *testing.T) {
	manifest := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: modes, version: 1.0.0, description: Modes.}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n"
	old := time.Now().Add(-time.Hour)
	write := func(t *testing.T, dir, name, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	write(t, dir, ManifestFile, manifest, 0o644)
	write(t, dir, "bin/run.sh", "#!/bin/sh\n", 0o750)
	write(t, dir, "secret.txt", "abc", 0o600)
	write(t, dir, "group-exec", "x", 0o614)
	p, err := LoadDirWith(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		size int64
		mode fs.FileMode
	}{ManifestFile: {int64(len(manifest)), 0o644}, "bin/run.sh": {10, 0o755}, "secret.txt": {3, 0o644}, "group-exec": {1, 0o755}}
	for _, f := range p.Files {
		if w, ok := want[f.Path]; !ok || f.Size != w.size || f.Mode != w.mode || f.Digest == "" {
			t.Errorf("%s: size %d, mode %04o, digest %q; want %+v", f.Path, f.Size, f.Mode, f.Digest, w)
		}
	}
	if len(p.Files) != len(want) {
		t.Errorf("%d files, want %d", len(p.Files), len(want))
	}

	t.Run("symlink listed", func(t *testing.T) {
		d := t.TempDir()
		write(t, d, ManifestFile, manifest, 0o644)
		write(t, d, "target", "x", 0o644)
		if err := os.Symlink("target", filepath.Join(d, "link")); err != nil {
			t.Fatal(err)
		}
		_, err := LoadDirWith(d, LoadOptions{})
		if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "link is a symlink") {
			t.Fatalf("err = %v, want ErrUnsafePath naming link", err)
		}
	})
	t.Run("pack.yaml a named pipe", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("os.DirFS blocks opening a pipe")
		}
		d := t.TempDir()
		if err := mkfifo(filepath.Join(d, ManifestFile)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := LoadDirWith(d, LoadOptions{}); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), ManifestFile+" is a named pipe") {
				t.Fatalf("err = %v, want ErrUnsafePath naming %s", err, ManifestFile)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the load blocked opening a named pipe")
		}
	})
	t.Run("pack.yaml a symlink", func(t *testing.T) {
		d := t.TempDir()
		write(t, d, "real.yaml", manifest, 0o644)
		if err := os.Symlink("real.yaml", filepath.Join(d, ManifestFile)); err != nil {
			t.Fatal(err)
		}
		_, err := LoadDirWith(d, LoadOptions{})
		if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), ManifestFile+" is a symlink") {
			t.Fatalf("err = %v, want ErrUnsafePath naming %s", err, ManifestFile)
		}
	})
	// What the listing saw as a regular file is read by readFile; these
	// stand for a file swapped after the listing.
	swapped := t.TempDir()
	write(t, swapped, "target", "x", 0o644)
	if err := os.Symlink("target", filepath.Join(swapped, "now-a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(swapped, "now-a-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" {
		if err := mkfifo(filepath.Join(swapped, "now-a-pipe")); err != nil {
			t.Fatal(err)
		}
	}
	for name, says := range map[string]string{"now-a-folder": "is a folder", "now-a-link": "is a symlink", "now-a-pipe": "is a named pipe"} {
		if runtime.GOOS != "linux" && name != "now-a-folder" {
			continue // os.DirFS follows a symlink and blocks on a pipe: only the Linux dirFS opens neither
		}
		f := File{Path: name}
		done := make(chan error, 1)
		go func() { done <- readFile(openDir(swapped), &f, nil, nil) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the read blocked opening it", name)
		}
		if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), name+" "+says) || f.Digest != "" {
			t.Errorf("%s: err = %v, digest %q; want ErrUnsafePath saying %q", name, err, f.Digest, says)
		}
	}
}

// TestLoadStopsAfterFailure: once a file fails, no reader starts another
// but the one it may have taken already: of the reads started after the
// failure, at most one for each other reader (each is slowed down, so the
// failing reader has long stopped the others when they look for more).
func TestLoadStopsAfterFailure(t *testing.T) {
	manifest := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: m, version: 1.0.0, description: d}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n"
	fsys := fstest.MapFS{ManifestFile: {Data: []byte(manifest)}}
	for i := range 100 {
		fsys[fmt.Sprintf("f%03d", i)] = &fstest.MapFile{Data: []byte("x")}
	}
	boom := errors.New("boom")
	const readers = 3
	var failed atomic.Bool
	var after atomic.Int64
	_, err := LoadWith(fsys, LoadOptions{Concurrency: readers, Read: func(name string, r io.Reader) (digest.Digest, int64, error) {
		if failed.Load() {
			after.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
		if name == "f010" {
			failed.Store(true)
			return "", 0, boom
		}
		return hashReader(name, r)
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the failing file's", err)
	}
	if n := after.Load(); n > readers-1 {
		t.Fatalf("%d files started after the failure, want at most %d (one for each other reader)", n, readers-1)
	}
}
