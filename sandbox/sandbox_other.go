//go:build !linux

package sandbox

import (
	"context"
	"fmt"
	"runtime"

	"stellaops.io/stella/run"
)

var _ run.Executor = (*Executor)(nil)
var _ run.Reaper = (*Executor)(nil)

func unavailable() error {
	return fmt.Errorf("%w: the sandbox needs Linux namespaces (this is %s)", run.ErrSandboxUnavailable, runtime.GOOS)
}

// Init returns at once: there is no sandbox helper on this system.
func Init() {}

// Probe reports that isolation is not available on this system.
func Probe(ctx context.Context) error { return unavailable() }

// Execute refuses to run anything: steps cannot be isolated here.
func (x *Executor) Execute(ctx context.Context, inv run.Invocation) run.Exit {
	return run.Exit{Code: -1, Err: unavailable()}
}

// Reap has nothing to stop: no isolated step ever ran here.
func (x *Executor) Reap(token string) error { return nil }

// server is the sandbox server, which only Linux has.
type server struct{}
