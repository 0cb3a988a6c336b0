//go:build unix

package regtest

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with this id exists (a reaped child does not).
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
