// Command stella moves, approves, runs and accounts for StellaOps Task Packs
// across air gaps. This package is the only one that knows urfave/cli, reads
// the environment, prints, or exits: each command parses its flags into an
// options struct, makes one library call, and renders the result.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"stellaops.io/stella/sandbox"
)

func main() {
	// Started as the sandbox helper of a step, this process is that and
	// nothing else.
	sandbox.Init()
	os.Exit(runMain())
}

func runMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &session{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	}
	return s.run(ctx, os.Args)
}
