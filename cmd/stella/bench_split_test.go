package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Target of the split benchmark (issue 13): verify and import of a bundle in
// 100 parts against the same bundle as one file.
const targetSplitVsSingle = 1.2

// BenchmarkSplit measures, on one bundle of STELLA_BENCH_BYTES (1 GiB) in
// eight layers, `pack verify` and `pack import` (into an empty cache) of the
// bundle exported in 100 parts against the same commands on the single
// file, in the same run, each after a sync. Ratios at or below the target
// are within it.
func BenchmarkSplit(b *testing.B) {
	if _, err := exec.LookPath("sync"); err != nil {
		b.Skip("sync not installed")
	}
	dir := b.TempDir()
	size := benchBytes()
	src := benchPack(b, dir, size)
	home := filepath.Join(dir, "builder")
	var cpu time.Duration // of the last run: user and system time
	run := func(home string, args ...string) time.Duration {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home)
		d, _ := timed(b, cmd)
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return d
	}
	single := filepath.Join(dir, "single.stella.tar")
	split := filepath.Join(dir, "split.stella.tar")
	run(home, "--quiet", "pack", "build", "-o", single, src)
	run(home, "--quiet", "pack", "export", "--split", fmt.Sprint(size/100+1), "-o", split, "bench:1.0.0")
	if _, err := os.Stat(split + ".100"); err != nil {
		b.Fatalf("expected 100 parts: %v", err)
	}
	// Wall times, and CPU times (user and system), which say what the
	// work costs when other processes share the cores.
	var verify1, verifyN, import1, importN time.Duration
	var cpuVerify1, cpuVerifyN, cpuImport1, cpuImportN time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round := filepath.Join(dir, fmt.Sprintf("round-%d", i))
		syncAll(b)
		verify1 += run(home, "--quiet", "pack", "verify", single)
		cpuVerify1 += cpu
		syncAll(b)
		verifyN += run(home, "--quiet", "pack", "verify", split)
		cpuVerifyN += cpu
		syncAll(b)
		import1 += run(filepath.Join(round, "single"), "--quiet", "pack", "import", "--bundle", single)
		cpuImport1 += cpu
		syncAll(b)
		importN += run(filepath.Join(round, "split"), "--quiet", "pack", "import", "--bundle", split)
		cpuImportN += cpu
		_ = os.RemoveAll(round)
	}
	b.StopTimer()
	b.ReportMetric(float64(verifyN)/float64(verify1), "verify-split/single")
	b.ReportMetric(float64(importN)/float64(import1), "import-split/single")
	b.ReportMetric(float64(cpuVerifyN)/float64(cpuVerify1), "verify-cpu-split/single")
	b.ReportMetric(float64(cpuImportN)/float64(cpuImport1), "import-cpu-split/single")
	n := time.Duration(b.N)
	b.Logf("size %.0f MiB; per run: verify single %v (cpu %v), split %v (cpu %v); import single %v (cpu %v), split %v (cpu %v); target each <= %.1f",
		float64(size)/(1<<20), verify1/n, cpuVerify1/n, verifyN/n, cpuVerifyN/n, import1/n, cpuImport1/n, importN/n, cpuImportN/n, targetSplitVsSingle)
}
