package pack

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/integrity"
)

// ReadFunc reads one file of a pack to its end and returns the sha256
// digest and the size of exactly the bytes it read.
type ReadFunc func(name string, r io.Reader) (digest.Digest, int64, error)

// LoadOptions tune LoadDirWith and LoadWith.
type LoadOptions struct {
	// Read, if set, reads each file of the pack in place of hashing it:
	// `stella pack build` passes the cache's Stage.Add, so each file is
	// hashed while it is written into the cache, in one read (ADR 0023).
	Read ReadFunc
	// Concurrency is the number of files read at once (default 1); Read
	// must then be safe for concurrent use.
	Concurrency int
	// Progress, if set, is called as files are read with the bytes read
	// so far and the bytes of all files; calls may be concurrent.
	Progress func(done, total int64)
}

// countingReader reports each read's bytes to add.
type countingReader struct {
	r   io.Reader
	add func(n int64)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}

// racyWindow: a file whose modification time is this close to the start
// of its read (or later) may be written again without its modification
// time changing, since file systems keep times in ticks (a jiffy on Linux,
// two seconds on FAT). Its stat before and after the read cannot prove it
// unchanged, so it is read a second time and must give the same digest
// (ADR 0023; git calls such an entry racy).
const racyWindow = 2 * time.Second

// readFile reads the file file.Path of fsys once, with read or by hashing
// it, and sets its digest, size and mode (0755 when any execute bit is
// set, else 0644) from what it read and from the open file. It checks
// that the file is still a regular file (ErrUnsafePath) and did not change
// while it was read: its size, modification time and (where the system
// has one) change time are the same before and after the read, and the
// bytes read are its size. A file modified within racyWindow of the read
// is read again and must hash the same. A change fails with
// ErrFileChanged.
func readFile(fsys fs.FS, file *File, read ReadFunc, progress func(n int64)) error {
	d, n, mode, err := readOnce(fsys, file.Path, read, progress)
	if err != nil {
		return err
	}
	file.Digest, file.Size, file.Mode = d, n, mode
	return nil
}

func readOnce(fsys fs.FS, name string, read ReadFunc, progress func(n int64)) (digest.Digest, int64, fs.FileMode, error) {
	if read == nil {
		read = hashReader
	}
	f, err := fsys.Open(name)
	if errors.Is(err, syscall.ELOOP) { // opened without following a symlink (dirFS)
		return "", 0, 0, fmt.Errorf("%s is a symlink, not a regular file (it changed after the folder was listed): %w", name, ErrUnsafePath)
	}
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return "", 0, 0, err
	}
	if !before.Mode().IsRegular() {
		return "", 0, 0, fmt.Errorf("%s is a %s, not a regular file (it changed after the folder was listed): %w", name, typeName(before.Mode().Type()), ErrUnsafePath)
	}
	mode := fs.FileMode(0o644)
	if before.Mode()&0o111 != 0 {
		mode = 0o755
	}
	start := time.Now()
	var r io.Reader = f
	if progress != nil {
		r = countingReader{r: f, add: progress}
	}
	d, n, err := read(name, r)
	if err != nil {
		return "", 0, 0, fmt.Errorf("pack file %s: %w", name, err)
	}
	after, err := f.Stat()
	if err != nil {
		return "", 0, 0, err
	}
	if what := changed(before, after, n); what != "" {
		return "", 0, 0, fmt.Errorf("%s: %w: %s", name, ErrFileChanged, what)
	}
	if !before.ModTime().Before(start.Add(-racyWindow)) {
		again, m, err := hashAgain(fsys, name, f)
		if err != nil {
			return "", 0, 0, err
		}
		if again != d || m != n {
			return "", 0, 0, fmt.Errorf("%s: %w: modified within %v of the read, and reading it again gave %s (%d bytes), not %s (%d bytes)",
				name, ErrFileChanged, racyWindow, again, m, d, n)
		}
	}
	return d, n, mode, nil
}

// hashAgain hashes the open file f again from its start, through the
// same descriptor (the file that was read, wherever its name points now),
// or by opening name anew where f cannot read at an offset.
func hashAgain(fsys fs.FS, name string, f fs.File) (digest.Digest, int64, error) {
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return hashFile(fsys, name)
	}
	h := integrity.NewHash(digest.SHA256)
	n, err := io.Copy(h, io.NewSectionReader(ra, 0, math.MaxInt64))
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", name, err)
	}
	return integrity.SHA256Of(h), n, nil
}

// changed says what differs between the stat of a file before and after
// a read of n bytes of it, or "" when nothing does.
func changed(before, after fs.FileInfo, n int64) string {
	switch {
	case after.Size() != before.Size():
		return fmt.Sprintf("its size went from %d to %d bytes while it was read", before.Size(), after.Size())
	case n != before.Size():
		return fmt.Sprintf("%d bytes read, but its size is %d", n, before.Size())
	case !after.ModTime().Equal(before.ModTime()):
		return "its modification time changed while it was read"
	}
	if cb, ok := changeTime(before); ok {
		if ca, ok := changeTime(after); ok && !ca.Equal(cb) {
			return "its change time (ctime) changed while it was read"
		}
	}
	return ""
}

func hashReader(_ string, r io.Reader) (digest.Digest, int64, error) {
	h := integrity.NewHash(digest.SHA256)
	n, err := io.Copy(h, r)
	if err != nil {
		return "", 0, err
	}
	return integrity.SHA256Of(h), n, nil
}
