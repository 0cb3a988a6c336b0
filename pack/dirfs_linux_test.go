package pack

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOpenWaitsForALease: a file another holder has a write lease on (as
// Samba or an NFS server take them) answers an O_NONBLOCK open with
// EAGAIN; dirFS then opens it as a plain open would, waiting for the
// lease to be given up, and reads it.
func TestOpenWaitsForALease(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "leased")
	if err := os.WriteFile(p, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	holder, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := unix.FcntlInt(holder.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		// Only a kernel with leases switched off has none to take; the
		// owner of a file may take one on it otherwise.
		if on, _ := os.ReadFile("/proc/sys/fs/leases-enable"); string(bytes.TrimSpace(on)) == "0" {
			t.Skipf("leases are switched off on this system (fs.leases-enable 0): %v", err)
		}
		t.Fatalf("a write lease on a file of our own: %v", err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = unix.FcntlInt(holder.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
		close(released)
	}()
	f := File{Path: "leased"}
	if err := readFile(openDir(dir), &f, nil, nil); err != nil {
		t.Fatalf("read of a leased file: %v", err)
	}
	select {
	case <-released:
	default:
		t.Fatal("the read did not wait for the lease to be given up")
	}
	if f.Size != int64(len("content")) {
		t.Fatalf("read %d bytes, want %d", f.Size, len("content"))
	}
}

// TestRawFileIsAFile: a dirFS file reads to io.EOF, reads at an offset
// as io.ReaderAt says (io.EOF past the end, with the bytes there were),
// stats as os.Stat does, and is closed once.
func TestRawFileIsAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("0123456789"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "f"), 0o750|fs.ModeSetuid); err != nil { // os's mode bits
		t.Fatal(err)
	}
	f, err := openDir(dir).Open("f")
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(f)
	if err != nil || string(all) != "0123456789" {
		t.Fatalf("ReadAll = %q, %v", all, err)
	}
	ra := f.(io.ReaderAt)
	p := make([]byte, 4)
	if n, err := ra.ReadAt(p, 3); n != 4 || err != nil || string(p) != "3456" {
		t.Fatalf("ReadAt(3) = %d %q %v", n, p[:n], err)
	}
	if n, err := ra.ReadAt(p, 8); n != 2 || err != io.EOF || string(p[:n]) != "89" {
		t.Fatalf("ReadAt(8) = %d %q %v, want 2 \"89\" EOF", n, p[:n], err)
	}
	got, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != want.Name() || got.Size() != want.Size() || got.Mode() != want.Mode() || !got.ModTime().Equal(want.ModTime()) || got.IsDir() {
		t.Fatalf("Stat = %s %d %v %v, os.Stat = %s %d %v %v", got.Name(), got.Size(), got.Mode(), got.ModTime(), want.Name(), want.Size(), want.Mode(), want.ModTime())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second Close = %v, want fs.ErrClosed", err)
	}
	if _, err := f.Read(p); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Read after Close = %v, want fs.ErrClosed", err)
	}
}
