package runs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/trust"
)

// Targets of the runner benchmarks, as ratios to baselines measured in the
// same run (docs/benchmarks.md).
const (
	targetSequentialVsShell = 3.0   // 1,000 `true` steps vs a shell loop forking the same
	targetParallelVsIdeal   = 1.2   // 200 × 0.2 s at maxParallel 8 vs 5 s
	targetPeakRunnerMiB     = 100.0 // runner of a 10,000-step plan
	targetStdoutVsCat       = 2.0   // 1 GiB of step stdout, 100 secrets masked, vs cat into a file
)

// benchPlan plans a pack whose spec is the YAML given (after "spec:"),
// loaded from memory as the engine tests do.
func benchPlan(tb testing.TB, spec string, inputs map[string]any) (*plan.Plan, *pack.Pack) {
	tb.Helper()
	y := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: bench\n  version: 1.0.0\n  description: runner benchmark\nspec:\n" + spec
	p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(y)}})
	if err != nil {
		tb.Fatalf("pack: %v\n%s", err, y)
	}
	pl, err := plan.Build(p, digest.Digest("sha256:"+strings.Repeat("0", 64)), inputs)
	if err != nil {
		tb.Fatal(err)
	}
	return pl, p
}

// countingStore is the real runs.Store, timing every save: the engine
// saves at each transition, so how a save's cost grows with the run is the
// figure to watch (it must not: a save appends only what changed).
type countingStore struct {
	*runs.Store
	each []time.Duration
}

func (c *countingStore) Save(ctx context.Context, rec *run.Record, d run.Delta) error {
	start := time.Now()
	err := c.Store.Save(ctx, rec, d)
	c.each = append(c.each, time.Since(start))
	return err
}

func (c *countingStore) stats() (saves int, total, first, last time.Duration) {
	const k = 100 // saves averaged at each end
	for _, d := range c.each {
		total += d
	}
	if len(c.each) < 2*k {
		return len(c.each), total, 0, 0
	}
	for i := 0; i < k; i++ {
		first += c.each[i]
		last += c.each[len(c.each)-1-i]
	}
	return len(c.each), total, first / k, last / k
}

// runStats is what one run through the real store cost.
type runStats struct {
	wall        time.Duration
	streamed    time.Duration // until the log was written (Create to log Close, before its sync)
	cpu         time.Duration // CPU time of this process and its children (the steps) until then
	saves       int
	saveTime    time.Duration
	firstSave   time.Duration // mean of the first 100 saves
	lastSave    time.Duration // mean of the last 100
	recordBytes int
}

func (s runStats) String() string {
	return fmt.Sprintf("%d saves, %v in Save (%.0f%% of the run; first 100 saves %.1f ms each, last 100 %.1f ms), final record %d KiB",
		s.saves, s.saveTime.Round(time.Millisecond), 100*float64(s.saveTime)/float64(s.wall),
		float64(s.firstSave)/1e6, float64(s.lastSave)/1e6, s.recordBytes>>10)
}

// driveReal runs pl once as `stella pack run` does after planning: a fresh
// home, a cache-backed runs.Store (every transition a durable index
// transaction), a created and locked run, the NDJSON log, the engine, and
// the final save. The wall time covers Create through the final Save.
func driveReal(tb testing.TB, pl *plan.Plan, p *pack.Pack, exe run.Executor, opts ...func(*run.Engine)) runStats {
	tb.Helper()
	ctx := context.Background()
	home, err := os.MkdirTemp(tb.TempDir(), "home")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(home)
	cs, err := cache.Open(ctx, filepath.Join(home, "packs"), cache.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	rs := &countingStore{Store: runs.Open(cs, filepath.Join(home, "runs"), nil)}
	cpu0 := cpuTime()
	start := time.Now()
	hash, err := pl.Hash()
	if err != nil {
		tb.Fatal(err)
	}
	rec := &run.Record{Tenant: "default", Pack: pl.Pack, PlanHash: hash, State: run.Running, Inputs: pl.Inputs}
	if err := rs.Create(ctx, rec); err != nil {
		tb.Fatal(err)
	}
	lock, err := rs.Lock(rec.ID, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	defer lock.Unlock()
	defer rs.Close()
	folder := rs.Folder(rec.ID)
	log, err := rs.OpenLog(rec.ID)
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	if exe == nil {
		exe = &process.Executor{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}}
	}
	eng := &run.Engine{
		Executor: exe,
		Store:    rs,
		Gates:    runs.Gates{Cache: cs, Trust: &trust.Store{}},
		Expand:   func(s *plan.Step, items []any) (*plan.Expansion, error) { return pl.Expand(p.Manifest, s, items) },
		Work:     filepath.Join(folder, "work"),
		Outputs:  filepath.Join(folder, "outputs"),
		Log:      log.Write, // as stella pack run logs
	}
	for _, o := range opts {
		o(eng)
	}
	if err := eng.Drive(ctx, pl, rec); err != nil || rec.State != run.Succeeded {
		tb.Fatalf("run %s: %v", rec.State, err)
	}
	// Every record handed to the operating system: what `cat` into a
	// file has done when it exits. Close then syncs the log to disk.
	if err := log.Flush(); err != nil {
		tb.Fatal(err)
	}
	streamed := time.Since(start)
	cpu := cpuTime() - cpu0
	if err := log.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := rs.Save(ctx, rec, run.Delta{}); err != nil {
		tb.Fatal(err)
	}
	wall := time.Since(start)
	got, err := rs.Get(ctx, rec.ID)
	if err != nil || got.State != run.Succeeded {
		tb.Fatalf("stored record: %v, %v", got, err)
	}
	for id, s := range got.Steps {
		if s.State != run.Succeeded {
			tb.Fatalf("stored step %s is %s", id, s.State)
		}
	}
	b, _ := json.Marshal(got)
	st := runStats{wall: wall, streamed: streamed, cpu: cpu, recordBytes: len(b)}
	st.saves, st.saveTime, st.firstSave, st.lastSave = rs.stats()
	return st
}

func loopSpec(n int, command string) string {
	return fmt.Sprintf("  steps:\n    - id: each\n      loop:\n        count: %d\n        steps:\n          - id: step\n            run: {command: [%s]}\n", n, command)
}

// BenchmarkSequentialTrue runs 1,000 sequential `true` steps through the
// real process executor and the real cache-backed store, against a shell
// loop forking and executing /bin/true 1,000 times, and reports the ratio
// and the runner's overhead per step.
func BenchmarkSequentialTrue(b *testing.B) {
	const n = 1000
	if _, err := exec.LookPath("true"); err != nil {
		b.Skip("true not installed")
	}
	pl, p := benchPlan(b, loopSpec(n, `"true"`), nil)
	if got := len(pl.Steps[0].Children); got != n {
		b.Fatalf("planned %d steps, want %d", got, n)
	}
	shellLoop := fmt.Sprintf("for i in $(seq %d); do /bin/true; done", n)
	var stella, shell, saving time.Duration
	var last runStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if out, err := exec.Command("sh", "-c", shellLoop).CombinedOutput(); err != nil {
			b.Fatalf("shell loop: %v\n%s", err, out)
		}
		shell += time.Since(start)
		last = driveReal(b, pl, p, nil)
		stella += last.wall
		saving += last.saveTime
	}
	b.StopTimer()
	perStep := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Millisecond) / n }
	b.ReportMetric(float64(stella)/float64(shell), "stella/shell")
	b.ReportMetric(perStep(stella-shell), "overhead-ms/step")
	b.ReportMetric(perStep(saving), "save-ms/step")
	b.Logf("bench %d steps: stella %v, shell loop %v per run; target stella/shell <= %.1f",
		n, (stella / time.Duration(b.N)).Round(time.Millisecond), (shell / time.Duration(b.N)).Round(time.Millisecond), targetSequentialVsShell)
	b.Logf("bench last run: %v", last)
}

// BenchmarkParallelSleep runs a map of 200 steps sleeping 0.2 s at
// maxParallel 8 (real processes, real store) against the ideal
// 200 × 0.2 s / 8 = 5 s.
func BenchmarkParallelSleep(b *testing.B) {
	const (
		n     = 200
		par   = 8
		sleep = 200 * time.Millisecond
	)
	if _, err := exec.LookPath("sleep"); err != nil {
		b.Skip("sleep not installed")
	}
	items := make([]any, n)
	for i := range items {
		items[i] = float64(i)
	}
	spec := fmt.Sprintf(`  inputs:
    - {name: items, type: array, required: true}
  steps:
    - id: fan
      map:
        items: inputs.items
        maxParallel: %d
        steps:
          - id: nap
            run: {command: [sleep, "%g"]}
`, par, sleep.Seconds())
	pl, p := benchPlan(b, spec, map[string]any{"items": items})
	ideal := time.Duration(n/par) * sleep
	var total time.Duration
	var last runStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		last = driveReal(b, pl, p, nil)
		total += last.wall
	}
	b.StopTimer()
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(ideal), "time/ideal")
	b.Logf("bench %d × %v at maxParallel %d: %v per run, ideal %v; target time/ideal <= %.1f",
		n, sleep, par, per.Round(time.Millisecond), ideal, targetParallelVsIdeal)
	b.Logf("bench last run: %v", last)
}

// instant is an executor whose every command succeeds at once: the runner
// and its store alone.
type instant struct{}

func (instant) Execute(context.Context, run.Invocation) run.Exit { return run.Exit{} }

// peakSteps is the size of the peak-RSS plan: STELLA_BENCH_RUN_STEPS, else
// the 10,000 steps the target is set at (about 20 s here).
func peakSteps() int {
	if v, err := strconv.Atoi(os.Getenv("STELLA_BENCH_RUN_STEPS")); err == nil && v > 0 {
		return v
	}
	return 10000
}

// BenchmarkRunnerPeak drives a plan of peakSteps steps (a loop over an
// instant executor) through the real store in a child process and reports
// the child's peak RSS against the 100 MiB target.
func BenchmarkRunnerPeak(b *testing.B) {
	n := peakSteps()
	var peak float64
	var wall time.Duration
	var report string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "STELLA_RUN_PEAK_CHILD=1", "STELLA_BENCH_RUN_STEPS="+strconv.Itoa(n))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		wall += time.Since(start)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if mib := float64(ru.Maxrss) / 1024; mib > peak { // KiB on Linux
			peak = mib
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "child:") {
				report = strings.TrimSpace(l)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(peak, "peak-RSS-MiB")
	b.ReportMetric(peak/targetPeakRunnerMiB, "mem/target")
	b.Logf("bench %d steps: %v per run (child process); target peak RSS < %.0f MiB at 10,000 steps", n, (wall / time.Duration(b.N)).Round(time.Millisecond), targetPeakRunnerMiB)
	b.Logf("bench last run: %s", report)
}

// TestMain runs the child process of BenchmarkRunnerPeak when asked to
// (STELLA_RUN_PEAK_CHILD=1), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv("STELLA_RUN_PEAK_CHILD") == "1" {
		os.Exit(runnerPeakChild())
	}
	os.Exit(m.Run())
}

// runnerPeakChild drives the peak plan once (testing.Benchmark supplies the
// testing.TB the helpers need) and prints its report for the parent.
func runnerPeakChild() int {
	var report string
	res := testing.Benchmark(func(b *testing.B) {
		if report != "" {
			return // one run is the measurement
		}
		pl, p := benchPlan(b, loopSpec(peakSteps(), "ok"), nil)
		st := driveReal(b, pl, p, instant{})
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		report = fmt.Sprintf("child: %v; Go heap in use %d MiB of %d MiB obtained, %d MiB allocated in all over %d GCs",
			st, ms.HeapInuse>>20, ms.Sys>>20, ms.TotalAlloc>>20, ms.NumGC)
	})
	if res.N == 0 || report == "" {
		fmt.Fprintln(os.Stderr, "child: the peak run failed")
		return 1
	}
	fmt.Println(report)
	return 0
}

// BenchmarkStepStdoutMasked runs one step printing STELLA_BENCH_BYTES (1
// GiB under make bench, 64 MiB otherwise) of log lines through the real
// process executor, the secret masker with 100 secrets registered, the
// line framer and the run's NDJSON log, against `cat` of the same bytes
// into a file. Two more figures, measured in the same runs, put it in
// perspective: `cat | cat` into a file (what any capture through a pipe
// costs on this host, with no masking or framing at all), and the run
// through the sync of its log against `cat` into a file and fsync. On a
// busy host the wall times are mostly waiting for a core (`cat` into a
// file then takes several times as long as alone, and every ratio tends
// to 1), so the CPU time of the run (the runner and its step) against
// that of `cat` is reported too.
func BenchmarkStepStdoutMasked(b *testing.B) {
	size := int64(64 << 20)
	if v, err := strconv.ParseInt(os.Getenv("STELLA_BENCH_BYTES"), 10, 64); err == nil && v > 0 {
		size = v
	}
	src := filepath.Join(b.TempDir(), "stdout.txt")
	writeLogLines(b, src, size)
	set := redact.New()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100; i++ {
		v := make([]byte, 24)
		for j := range v {
			v[j] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[rnd.IntN(64)]
		}
		if err := set.Add(v); err != nil {
			b.Fatal(err)
		}
	}
	pl, p := benchPlan(b, fmt.Sprintf("  steps:\n    - id: dump\n      run: {command: [cat, %q]}\n", src), nil)
	// Each run starts on a synced file system, so none pays for writing
	// back what the one before it wrote; the figures are the best of the
	// b.N runs of each, interleaved (this machine's disk is noisy: a run
	// may take twice as long as the same run a moment later).
	var cat, catSynced, catCat, stella, stellaSynced, plain time.Duration
	var catCPU, catCatCPU, stellaCPU time.Duration // the CPU time of the same runs (best of each)
	best := func(min *time.Duration, d time.Duration) {
		if *min == 0 || d < *min {
			*min = d
		}
	}
	shell := func(script string) (written, synced, cpu time.Duration) {
		syncFS(b, src)
		out := filepath.Join(b.TempDir(), "cat.out")
		cpu0 := cpuTime()
		start := time.Now()
		if msg, err := exec.Command("sh", "-c", script, "sh", src, out).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v %s", script, err, msg)
		}
		written = time.Since(start)
		cpu = cpuTime() - cpu0
		f, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		synced = time.Since(start)
		f.Close()
		os.Remove(out)
		return written, synced, cpu
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, sy, c := shell(`cat "$1" > "$2"`)
		best(&cat, w)
		best(&catSynced, sy)
		best(&catCPU, c)
		w, _, c = shell(`cat "$1" | cat > "$2"`)
		best(&catCat, w)
		best(&catCatCPU, c)
		syncFS(b, src)
		st := driveReal(b, pl, p, nil, func(e *run.Engine) { e.Redact = set })
		best(&stella, st.streamed)
		best(&stellaSynced, st.wall)
		best(&stellaCPU, st.cpu)
		syncFS(b, src)
		// The same run with no secret registered: what masking itself adds.
		best(&plain, driveReal(b, pl, p, nil, func(e *run.Engine) { e.Redact = redact.New() }).streamed)
	}
	b.StopTimer()
	b.ReportMetric(float64(stella)/float64(cat), "stella/cat")
	b.ReportMetric(float64(catCat)/float64(cat), "cat|cat/cat")
	b.ReportMetric(float64(stella)/float64(plain), "masked/unmasked")
	b.ReportMetric(float64(stellaSynced)/float64(catSynced), "synced-stella/cat+fsync")
	b.ReportMetric(float64(stellaCPU)/float64(catCPU), "cpu-stella/cat")
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	b.Logf("bench %d MiB of stdout, 100 secrets, best of %d: stella %v (%v with no secret), cat into a file %v, cat | cat into a file %v; target stella/cat <= %.1f",
		size>>20, b.N, ms(stella), ms(plain), ms(cat), ms(catCat), targetStdoutVsCat)
	b.Logf("bench the same through the sync of the log: stella %v, cat into a file and fsync %v", ms(stellaSynced), ms(catSynced))
	b.Logf("bench CPU time (runner and step; what counts when the host is busy): stella %v, cat into a file %v, cat | cat into a file %v (%.2f)",
		ms(stellaCPU), ms(catCPU), ms(catCatCPU), float64(catCatCPU)/float64(catCPU))
}

// cpuTime is the CPU time used so far by this process and its waited-for
// children: on a busy host, what a run costs when the wall time is mostly
// waiting for a core.
func cpuTime() time.Duration {
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// syncFS writes back everything pending on the file system holding path.
func syncFS(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		tb.Fatal(err)
	}
}

// writeLogLines fills path with size bytes of varied, log-like text lines.
func writeLogLines(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rnd := rand.New(rand.NewPCG(3, 4))
	levels := []string{"INFO", "DEBUG", "WARN"}
	var n int64
	var line []byte
	for i := 0; n < size; i++ {
		line = fmt.Appendf(line[:0], "2026-11-27T18:%02d:%02d.%03dZ %s worker=%d msg=\"processed batch %d of %d items\" id=%016x took=%dms\n",
			i/60000%60, i/1000%60, i%1000, levels[rnd.IntN(3)], rnd.IntN(64), i, rnd.IntN(5000), rnd.Uint64(), rnd.IntN(900))
		if rest := size - n; int64(len(line)) > rest {
			line = append(line[:rest-1], '\n')
		}
		w.Write(line)
		n += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}
