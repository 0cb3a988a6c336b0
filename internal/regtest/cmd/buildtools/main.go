// Command buildtools builds every tool the tests build on first use (each tool declared
// in tools/go.mod: the distribution registry, olareg, oras, crane, cosign) into the per-machine
// cache where regtest.Tool and regtest.Binary find them, one line per tool. `make test`
// runs it first (`make tools`), so no build runs against a test's timeout: cosign alone
// takes minutes on a cold cache.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"stellaops.io/stella/internal/regtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "buildtools: %v\n", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	tools, err := regtest.CachedTools()
	if err != nil {
		return err
	}
	for _, c := range tools {
		fmt.Printf("building %s… ", c.Name)
		start := time.Now()
		built, err := c.Build(ctx)
		if err != nil {
			fmt.Println("failed")
			return err
		}
		if built {
			fmt.Printf("done in %s: %s\n", time.Since(start).Round(time.Second), c.Path)
		} else {
			fmt.Printf("already built: %s\n", c.Path)
		}
	}
	return nil
}
