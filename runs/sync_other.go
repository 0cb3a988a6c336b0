//go:build !linux

package runs

import "os"

func datasync(f *os.File) error { return f.Sync() }
