package cache

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to disk
// now, without waiting, so the fsync at the end of a large blob has little
// left to do and disk writes overlap with hashing.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// syncFS flushes the whole file system holding dir (syncfs(2)): every
// dirty page and inode of it, then the disk's cache. Since Linux 5.8 it
// reports writeback errors met since dir was opened. ok is false when
// the system has no syncfs; the caller then fsyncs each file.
func syncFS(dir string) (ok bool, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()
	err = unix.Syncfs(int(d.Fd()))
	if errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return true, err
}
