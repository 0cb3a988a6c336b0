package plan

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/pack"
)

// Targets of the 2,000-step plan benchmark (issue: well under these).
const (
	targetPlanTime = 200 * time.Millisecond
	targetPlanMiB  = 100.0
)

const mapPack = `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: fan-out
  version: 1.0.0
  description: Touch every host of a large fleet.
spec:
  inputs:
    - name: hosts
      type: array
      required: true
  secrets:
    - {name: token, source: "vault:fleet/token", scope: run}
  steps:
    - id: fleet
      map:
        items: inputs.hosts
        maxParallel: 16
        steps:
          - id: touch
            when: "item != 'skip'"
            run:
              command: ["sh", "touch.sh", "${{ item }}", "${{ index }}"]
              env: {HOST: "${{ item }}"}
`

func mapInputs(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"hosts": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"host-%05d.fleet.sealed.local"`, i)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// planMap loads, resolves and plans the 2,000-step pack once: what
// `stella pack plan` does after reading its files.
func planMap(tb testing.TB, raw []byte) string {
	fsys := fstest.MapFS{"pack.yaml": {Data: []byte(mapPack)}, "touch.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}}
	p, err := pack.Load(fsys)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		tb.Fatal(err)
	}
	pl, err := Build(p, a.Digest(), in)
	if err != nil {
		tb.Fatal(err)
	}
	if n := len(pl.Steps[0].Children); n != 2000 {
		tb.Fatalf("expanded %d steps, want 2000", n)
	}
	h, err := pl.Hash()
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

// BenchmarkPlanMap2000 plans a pack whose map expands to 2,000 steps and
// reports time per plan and the peak RSS of a process doing one plan, each
// beside its target as a ratio (below 1 is within target).
func BenchmarkPlanMap2000(b *testing.B) {
	raw := mapInputs(2000)
	b.ReportAllocs()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		planMap(b, raw)
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/plan")
	b.ReportMetric(float64(per)/float64(targetPlanTime), "time/target")

	cmd := exec.Command(os.Args[0], "-test.run=TestPlanPeakChild$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "STELLA_PLAN_PEAK_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	peak := float64(ru.Maxrss) / 1024 // KiB on Linux
	b.ReportMetric(peak, "peak-RSS-MiB")
	b.ReportMetric(peak/targetPlanMiB, "mem/target")
}

// TestPlanPeakChild is the child process of BenchmarkPlanMap2000.
func TestPlanPeakChild(t *testing.T) {
	if os.Getenv("STELLA_PLAN_PEAK_CHILD") != "1" {
		t.Skip("helper process of BenchmarkPlanMap2000")
	}
	planMap(t, mapInputs(2000))
}

func TestPlanMap2000IDs(t *testing.T) {
	fsys := fstest.MapFS{"pack.yaml": {Data: []byte(mapPack)}, "touch.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}}
	p, err := pack.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := p.ResolveInputs("inputs.json", mapInputs(2000))
	pl, err := Build(p, "sha256:0000000000000000000000000000000000000000000000000000000000000000", in)
	if err != nil {
		t.Fatal(err)
	}
	last := pl.Steps[0].Children[1999]
	if last.ID != "fleet[1999]::touch" || last.Run.Command[2] != "host-01999.fleet.sealed.local" || last.Run.Command[3] != "1999" {
		t.Fatalf("last child %+v", last)
	}
}
