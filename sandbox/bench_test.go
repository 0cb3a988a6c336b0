package sandbox

import (
	"context"
	"testing"
	"time"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
)

// targetAddedPerStep is issue 15's bound on what isolation adds to the
// start of one step (docs/benchmarks.md).
const targetAddedPerStep = 10 * time.Millisecond

// BenchmarkStepStartAdded starts a step running /bin/true unisolated,
// isolated in its namespaces, and isolated with limits (in a cgroup where
// the runner may make one), in turn in the same run, and reports what the
// namespaces add per step (the target) and what limits add on top.
func BenchmarkStepStartAdded(b *testing.B) {
	ctx := context.Background()
	if err := Probe(ctx); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	inv := run.Invocation{Command: []string{"/bin/true"}, Dir: dir, Token: "bench"}
	limited := inv
	limited.Sandbox = pack.Sandbox{Limits: pack.Limits{MemoryMiB: 256, Pids: 64}}
	iso, plain := &Executor{Env: []string{testPath}}, &process.Executor{Env: []string{testPath}}
	var tIso, tLimited, tPlain time.Duration
	n := 0
	for b.Loop() {
		for _, c := range []struct {
			x   run.Executor
			inv run.Invocation
			t   *time.Duration
		}{{plain, inv, &tPlain}, {iso, inv, &tIso}, {iso, limited, &tLimited}} {
			start := time.Now()
			if ex := c.x.Execute(ctx, c.inv); ex.Err != nil || ex.Code != 0 {
				b.Fatalf("%+v", ex)
			}
			*c.t += time.Since(start)
		}
		n++
	}
	per := func(d time.Duration) time.Duration { return (d / time.Duration(n)).Round(10 * time.Microsecond) }
	added := (tIso - tPlain) / time.Duration(n)
	b.ReportMetric(float64(added)/1e6, "added-ms/step")
	b.ReportMetric(float64(tIso)/float64(tPlain), "isolated/unisolated")
	b.ReportMetric(float64(tLimited-tIso)/float64(n)/1e6, "limits-ms/step")
	b.Logf("bench step start: unisolated %v, isolated %v (added %v; target <= %v), isolated with cgroup limits %v",
		per(tPlain), per(tIso), added.Round(10*time.Microsecond), targetAddedPerStep, per(tLimited))
}
