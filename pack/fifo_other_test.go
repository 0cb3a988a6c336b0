//go:build !unix

package pack

import "errors"

// mkfifo: no named pipes in a folder here.
func mkfifo(string) error { return errors.New("no named pipes on this system") }
