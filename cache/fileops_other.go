//go:build !linux

package cache

import (
	"github.com/opencontainers/go-digest"
	"io/fs"
	"os"
)

// openNew creates name exclusively for reading and writing with mode (less
// the umask).
func openNew(name string, mode fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
}

// renameBlob renames a blob's temporary file to its final name.
func renameBlob(oldname, newname string) error { return os.Rename(oldname, newname) }

// statBlobFile stats blob file d.
func (s *Store) statBlobFile(d digest.Digest) (size int64, regular bool, err error) {
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Mode().IsRegular(), nil
}

// diskBytes is what a file takes on disk (its size, here).
func diskBytes(fi fs.FileInfo) int64 { return fi.Size() }
