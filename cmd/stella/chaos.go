package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
)

// maxChaosFile bounds a --chaos-file.
const maxChaosFile = 64 << 10

// chaosFaults reads --chaos and --chaos-file: each fault is checked
// against the plan's steps, printed, and recorded in the run. drop-network
// needs the sandbox: with --insecure-skip-isolation steps have the host's
// network, which chaos cannot take away, so it is refused.
func (s *session) chaosFaults(c *cli.Context, pl *plan.Plan) ([]run.Fault, error) {
	specs := append([]string(nil), c.StringSlice("chaos")...)
	if f := c.String("chaos-file"); f != "" {
		b, err := s.readFileArg(f, maxChaosFile)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			specs = append(specs, line)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("chaos file %s: %w: %v", f, run.ErrChaosSpec, err)
		}
	}
	var faults []run.Fault
	for _, spec := range specs {
		f, err := run.ParseFault(spec)
		if err != nil {
			return nil, err
		}
		if f.Kind == run.ChaosDropNetwork && s.unisolated {
			return nil, fmt.Errorf("chaos fault %s: steps run without isolation (--%s) keep the host's network: %w", f, relaxIsolation, run.ErrChaosSpec)
		}
		faults = append(faults, f)
	}
	if err := run.CheckFaults(pl, faults); err != nil {
		return nil, err
	}
	for _, f := range faults {
		s.warnf("chaos: %s will be injected; it is recorded in the run and its evidence", f)
	}
	return faults, nil
}

// killRunner ends this process at once, as a crash would (chaos
// kill-after): no deferred cleanup, no lock released but by the kernel.
func killRunner() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Kill()
	}
	select {}
}
