//go:build unix

package safefile

import (
	"errors"
	"os"
	"syscall"
)

// lock takes an exclusive flock on a temp file being written, so Stale
// knows it is in use. It is released when the file is closed (or its
// process dies). A failure only weakens Stale's check to pid and age.
func lock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// tryLock reports whether no one else holds f's flock; the lock it takes
// goes with f's close. A file system without flock (an error other than
// "would block") says nothing: the caller's pid and age checks decide.
func tryLock(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return err == nil || !errors.Is(err, syscall.EWOULDBLOCK)
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
