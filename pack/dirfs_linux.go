package pack

import (
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dirFS is os.DirFS(dir) whose Open makes a plain file of open(2), not an
// *os.File: os.DirFS's Open would try to add each regular file to the
// runtime's poller, which refuses it (four fcntl calls and a failed
// epoll_ctl a file), and an *os.File is an allocation and a cleanup the
// runtime tracks, 10,000 times for a pack of 10,000 files. ReadDir and
// Stat are os.DirFS's.
//
// Files are opened with O_NOFOLLOW, so a symlink put in place of a file
// after the folder was listed is refused (ELOOP) rather than followed (a
// folder of the path replaced by a symlink is still followed: the build
// guards against an honest race, not a writer who controls the folder,
// ADR 0023), and with O_NONBLOCK, so a named pipe put there fails its
// regular-file check instead of blocking the open. A regular file may
// still answer O_NONBLOCK with EAGAIN: its open, while another process
// holds a lease on it (Samba, an NFS server), and its reads on some FUSE
// file systems. Then it is opened again, or its reads go on, without
// O_NONBLOCK, waiting as a plain open and read would (a pipe opened for
// reading with O_NONBLOCK never answers EAGAIN).
type dirFS struct {
	dir  string
	fsys fs.FS
}

func openDir(dir string) fs.FS { return dirFS{dir: dir, fsys: os.DirFS(dir)} }

func (d dirFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	for {
		fd, err := unix.Open(d.dir+"/"+name, flags, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && flags&unix.O_NONBLOCK != 0:
			flags &^= unix.O_NONBLOCK // a lease: wait for it, as open(2) does
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &rawFile{fd: fd, name: name}, nil
	}
}

func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(d.fsys, name) }

func (d dirFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(d.fsys, name) }

// rawFile is an open file of a dirFS: its descriptor and its name in the
// folder. Its methods are not safe for concurrent use; Close must be
// called (nothing closes it for a caller that forgets).
type rawFile struct {
	fd     int
	name   string
	closed bool
	waits  bool // O_NONBLOCK cleared (blocking)
}

func (f *rawFile) Read(p []byte) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.read1(p, 0, false)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// ReadAt reads at off without moving the offset Read uses (pread(2)).
func (f *rawFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	done := 0
	for done < len(p) {
		n, err := f.read1(p[done:], off+int64(done), true)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// read1 is one read(2), or pread(2) at off when at is set, made again on
// EINTR and, once O_NONBLOCK is cleared, on EAGAIN; 0 bytes is the end.
func (f *rawFile) read1(p []byte, off int64, at bool) (int, error) {
	for {
		var n int
		var err error
		if at {
			n, err = unix.Pread(f.fd, p, off)
		} else {
			n, err = unix.Read(f.fd, p)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && f.blocking() == nil:
			continue
		case err != nil:
			return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
		return n, nil
	}
}

// blocking clears O_NONBLOCK, once: a read that answered EAGAIN (a FUSE
// file system's) then waits as a plain read does. It fails when the flag
// was cleared already, so a read does not spin on EAGAIN.
func (f *rawFile) blocking() error {
	if f.waits {
		return unix.EAGAIN
	}
	f.waits = true
	fl, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(uintptr(f.fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	return err
}

func (f *rawFile) Stat() (fs.FileInfo, error) {
	if f.closed {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: fs.ErrClosed}
	}
	fi := &rawInfo{name: path.Base(f.name)}
	for {
		err := syscall.Fstat(f.fd, &fi.st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "stat", Path: f.name, Err: err}
		}
		return fi, nil
	}
}

func (f *rawFile) Close() error {
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	if err := unix.Close(f.fd); err != nil {
		return &fs.PathError{Op: "close", Path: f.name, Err: err}
	}
	return nil
}

// rawInfo is the fs.FileInfo of an fstat, as os reports it; Sys is the
// *syscall.Stat_t (changeTime reads the ctime there).
type rawInfo struct {
	name string
	st   syscall.Stat_t
}

func (fi *rawInfo) Name() string       { return fi.name }
func (fi *rawInfo) Size() int64        { return fi.st.Size }
func (fi *rawInfo) ModTime() time.Time { return time.Unix(fi.st.Mtim.Sec, fi.st.Mtim.Nsec) }
func (fi *rawInfo) IsDir() bool        { return fi.Mode().IsDir() }
func (fi *rawInfo) Sys() any           { return &fi.st }

// Mode is os's FileMode of st_mode (os.fillFileStatFromSys).
func (fi *rawInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.st.Mode & 0o777)
	switch fi.st.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if fi.st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
