package regtest

import "syscall"

// sysProcAttr makes the kernel kill the registry if the test binary dies without running
// its cleanups (a panic or a test timeout), so no registry outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
