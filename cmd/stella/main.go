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
	s := &session{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	}
	// The first SIGINT or SIGTERM cancels the command, which cleans up and
	// exits 128+signal; later ones are absorbed while it does.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case sig := <-sigs:
			if n, ok := sig.(syscall.Signal); ok {
				s.signal.Store(int32(n))
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.run(ctx, os.Args)
}
