package pack

import (
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
		t.Skipf("no write lease here: %v", err)
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
