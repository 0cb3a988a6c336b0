// Package safefile writes files so that a reader sees either the old content or
// the complete new content, never a partial file: temp file in the same
// directory → write → fsync → rename → fsync of the directory. Every durable
// write in stella (cache blobs and index side files, vault, bundle files,
// keys, trust store, config) goes through this one helper.
//
// A killed writer leaves its temp file behind (as large as the bundle it
// was writing, on removable media). Temp files name their writer's pid and
// are flock(2)ed while written, so Stale can tell a leftover from a write
// still running, in any process, and RemoveStale can remove leftovers
// without ever touching a running write.
package safefile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// TempPrefix starts the name of every temporary file this package creates.
// Leftovers of a killed process carry it, so cleaners (cache gc, Stale) can
// find them. The full name is TempPrefix, the final file's base name, '-',
// the writer's pid, '-' and random digits.
const TempPrefix = ".stella-tmp-"

// Write atomically replaces path with the bytes read from r, with mode perm.
// It returns the number of bytes written.
func Write(path string, r io.Reader, perm os.FileMode) (int64, error) {
	f, err := Create(path, perm)
	if err != nil {
		return 0, err
	}
	defer f.Abort()
	n, err := io.Copy(f, r)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	return n, f.Commit()
}

// WriteBytes atomically replaces path with b.
func WriteBytes(path string, b []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// File is a pending atomic write. Write to it, then Commit to make it visible
// at its final path, or Abort to discard it. Abort after Commit is a no-op, so
// `defer f.Abort()` is always safe.
//
// While it is pending, its temp file carries the writer's pid in its name
// and an exclusive flock(2) on it (where the system has flock), so Stale
// never takes it for a leftover.
type File struct {
	*os.File
	path string
	done bool

	written, started int64 // bytes written by Write; bytes whose writeback was started
}

// writebackChunk: every this many bytes written, Write starts their way
// to disk, so that Commit's fsync of a bundle of a GiB has little left to
// write and the disk works while the writer hashes (as the cache does for
// a large blob).
const writebackChunk = 8 << 20

// ReadFrom copies r into the file through Write (the *os.File's own
// ReadFrom would skip the writeback), as io.Copy into a File does.
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{f}, r)
}

// WriteString is Write of s.
func (f *File) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

// Write writes p at the file's offset and starts the writeback of every
// full writebackChunk written.
func (f *File) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.written += int64(n)
	if f.written-f.started >= writebackChunk {
		startWriteback(f.File, f.started, f.written-f.started)
		f.started = f.written
	}
	return n, err
}

// Create starts an atomic write of path. The directory is created if needed.
func Create(path string, perm os.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-"+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, err
	}
	lock(f)
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit fsyncs the data, renames it over the final path and fsyncs the
// directory so the rename itself is durable.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already finished", f.path)
	}
	f.done = true
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort discards the pending write. It is a no-op after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// SyncDir fsyncs a directory so that renames and removals in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
