package cache

import (
	"github.com/opencontainers/go-digest"
	"io/fs"
	"os"
	"syscall"

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

// statBlobFile stats blob file d: for sha256, by name within the
// blobs/sha256 folder, held open for the Store's life (one lookup, not a
// walk of the whole path, for each blob an import looks for).
func (s *Store) statBlobFile(d digest.Digest) (size int64, regular bool, err error) {
	if d.Algorithm() == digest.SHA256 {
		s.sha256DirOnce.Do(func() {
			s.sha256Dir, _ = os.Open(s.path(blobsDir, "sha256"))
		})
		if s.sha256Dir != nil {
			var st unix.Stat_t
			for {
				err = unix.Fstatat(int(s.sha256Dir.Fd()), d.Encoded(), &st, 0)
				if err != unix.EINTR {
					break
				}
			}
			if err != nil {
				return 0, false, &fs.PathError{Op: "stat", Path: s.blobPath(d), Err: err}
			}
			return st.Size, st.Mode&unix.S_IFMT == unix.S_IFREG, nil
		}
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Mode().IsRegular(), nil
}

// diskBytes is what a file takes on disk: its allocated blocks, which
// for a sparse file (the index, grown ahead of its content) is less than
// its size.
func diskBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return min(st.Blocks*512, fi.Size())
	}
	return fi.Size()
}
