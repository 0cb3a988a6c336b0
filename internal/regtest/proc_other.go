//go:build !linux

package regtest

import "syscall"

// sysProcAttr has nothing to add outside Linux: t.Cleanup stops the registry.
func sysProcAttr() *syscall.SysProcAttr { return nil }
