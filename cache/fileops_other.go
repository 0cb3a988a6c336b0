//go:build !linux

package cache

import (
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
