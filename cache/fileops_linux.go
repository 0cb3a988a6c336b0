package cache

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// openNew creates name exclusively for reading and writing with mode (less
// the umask). os.OpenFile would try to add a regular file to the runtime's
// poller, which refuses it: four fcntl calls and a failed epoll_ctl per
// file, for each of the files of a pack. os.NewFile of the descriptor
// makes a blocking *os.File with one fcntl.
func openNew(name string, mode fs.FileMode) (*os.File, error) {
	for {
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(mode.Perm()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

// renameBlob renames a blob's temporary file to its final name.
// os.Rename would first lstat the new name, to refuse a directory there
// on every system alike; rename(2) refuses it itself (EISDIR), and that
// lstat is one more lookup per file of a pack.
func renameBlob(oldname, newname string) error {
	for {
		err := unix.Rename(oldname, newname)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
		}
		return nil
	}
}
