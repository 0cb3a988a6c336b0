package pack

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// dirFS is os.DirFS(dir) whose Open makes a blocking *os.File from
// open(2). os.DirFS's Open would try to add each regular file to the
// runtime's poller, which refuses it: four fcntl calls and a failed
// epoll_ctl for each file of a pack. ReadDir and Stat are os.DirFS's.
type dirFS struct {
	dir  string
	fsys fs.FS
}

func openDir(dir string) fs.FS { return dirFS{dir: dir, fsys: os.DirFS(dir)} }

func (d dirFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	full := d.dir + "/" + name
	for {
		// O_NOFOLLOW: a file the listing saw as regular and that was
		// replaced by a symlink since is refused, not followed.
		fd, err := unix.Open(full, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), full), nil
	}
}

func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(d.fsys, name) }

func (d dirFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(d.fsys, name) }
