package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"stellaops.io/stella/run"
)

// crashPack writes a pack of 24 steps (sequential, a parallel block and a
// map) whose every step records each execution in runs.log and, once, its
// line in marker.
func crashPack(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "crash")
	step := func(indent, id string) string {
		return fmt.Sprintf(`%s- id: %s
%s  run:
%s    command: ["sh", "step.sh", "%s", "${{ inputs.dir }}"]
`, indent, id, indent, indent, id)
	}
	var b strings.Builder
	b.WriteString(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: crash
  version: 1.0.0
  description: Steps that leave a trace, for the crash test.
spec:
  inputs:
    - name: dir
      type: string
      required: true
  failure:
    retries: 10
    backoff: {initial: 1ms, max: 1ms}
  steps:
`)
	for i := 0; i < 8; i++ {
		b.WriteString(step("    ", fmt.Sprintf("seq%d", i)))
	}
	b.WriteString("    - id: fan\n      parallel:\n        maxParallel: 3\n        steps:\n")
	for i := 0; i < 6; i++ {
		b.WriteString(step("          ", fmt.Sprintf("par%d", i)))
	}
	b.WriteString(`    - id: each
      map:
        items: "[` + "`1`, `2`, `3`, `4`, `5`, `6`" + `]"
        maxParallel: 2
        steps:
          - id: item
            run:
              command: ["sh", "step.sh", "item-${{ item }}", "${{ inputs.dir }}"]
`)
	for i := 8; i < 12; i++ {
		b.WriteString(step("    ", fmt.Sprintf("seq%d", i)))
	}
	writeFile(t, filepath.Join(p, "pack.yaml"), b.String())
	writeFile(t, filepath.Join(p, "step.sh"), `echo "$1" >> "$2/runs.log"
sleep 0.12
grep -qx "$1" "$2/marker" 2>/dev/null || echo "$1" >> "$2/marker"
`)
	return p
}

func crashStepIDs() []string {
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, fmt.Sprintf("seq%d", i))
	}
	for i := 0; i < 6; i++ {
		ids = append(ids, fmt.Sprintf("par%d", i))
	}
	for i := 1; i <= 6; i++ {
		ids = append(ids, fmt.Sprintf("item-%d", i))
	}
	return ids
}

func countLines(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Fields(string(b)) {
		out[l]++
	}
	return out
}

func runRecord(t *testing.T, home, id string) *run.Record {
	t.Helper()
	r := stella(t, home, nil, "--output", "json", "pack", "runs", "show", id)
	if r.code != 0 {
		t.Fatalf("runs show: %s", r.stderr)
	}
	var rec run.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatal(err)
	}
	return &rec
}

// traceID is the runs.log name of a step record.
func traceID(id string) string {
	if strings.HasPrefix(id, "each[") {
		var i int
		fmt.Sscanf(id, "each[%d]::item", &i)
		return fmt.Sprintf("item-%d", i+1)
	}
	return id
}

// TestRunSurvivesSIGKILL kills real runners of a 24-step run at random
// moments and resumes each time. The run ends succeeded, every step's line
// is in the marker exactly once, a step recorded succeeded never runs again,
// no step runs more often than attempts were recorded for it, and the cache
// verifies.
func TestRunSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	p := crashPack(t, dir)
	writeFile(t, filepath.Join(dir, "inputs.json"), fmt.Sprintf(`{"dir": %q}`, dir))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	// Time one complete run of the same pack, in a folder of its own, to
	// size the kill window: a runner killed on average a twelfth of a run
	// after it starts cannot finish the run in fewer than 10 kills, on a
	// fast machine or a slow one, race-built or not.
	ref := t.TempDir()
	writeFile(t, filepath.Join(ref, "inputs.json"), fmt.Sprintf(`{"dir": %q}`, ref))
	refRun := stellaProcess(t, filepath.Join(ref, "home"), "-q", "pack", "run", "--insecure-skip-isolation",
		"--pack", crashPack(t, ref), "--inputs", filepath.Join(ref, "inputs.json"))
	start := time.Now()
	if out, err := refRun.CombinedOutput(); err != nil {
		t.Fatalf("reference run: %v\n%s", err, out)
	}
	window := max(time.Since(start)/6, 100*time.Millisecond)
	id := ""
	kills := 0
	frozen := map[string]int{} // step → executions when first seen succeeded
	for attempt := 0; attempt < 60 && kills < 12; attempt++ {
		args := []string{"pack", "run", "--insecure-skip-isolation", "--pack", p, "--inputs", filepath.Join(dir, "inputs.json")}
		if id != "" {
			args = []string{"pack", "runs", "resume", "--insecure-skip-isolation", "--run", id}
		}
		cmd := stellaProcess(t, home, append([]string{"-q"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if id == "" {
			// Let the first runner record the run before any kill.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if l := stella(t, home, nil, "--output", "json", "pack", "runs", "list"); strings.Contains(l.stdout, "run:") {
					break
				}
			}
		}
		time.Sleep(30*time.Millisecond + time.Duration(rng.Int64N(int64(window))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			kills++
		} else if cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("%v: exit %d\n%s", args, cmd.ProcessState.ExitCode(), stderr.String())
		}
		if id == "" {
			l := stella(t, home, nil, "--output", "json", "pack", "runs", "list")
			var list []runSummary
			_ = json.Unmarshal([]byte(l.stdout), &list)
			if len(list) == 0 {
				continue // killed before the run was recorded
			}
			id = list[0].RunID
		}
		rec := runRecord(t, home, id)
		if rec.State == run.Succeeded {
			break
		}
		execs := countLines(t, filepath.Join(dir, "runs.log"))
		for sid, sr := range rec.Steps {
			if sr.State == run.Succeeded && sr.Kind == "run" {
				if _, ok := frozen[traceID(sid)]; !ok {
					frozen[traceID(sid)] = execs[traceID(sid)]
				}
			}
		}
	}
	if kills < 10 {
		t.Fatalf("only %d runners were killed mid-run; the test needs at least 10", kills)
	}
	if id == "" {
		t.Fatal("no run was ever recorded")
	}
	r := stella(t, home, nil, "pack", "runs", "resume", "--insecure-skip-isolation", "--run", id)
	rec := runRecord(t, home, id)
	if rec.State != run.Succeeded && !(r.code == exitGeneric && strings.Contains(r.stderr, "ERR_PACK_RUN_STATE")) {
		t.Fatalf("final resume: %d %s\n%s", r.code, r.stdout, r.stderr)
	}
	if rec.State != run.Succeeded {
		t.Fatalf("run ended %s", rec.State)
	}
	marker := countLines(t, filepath.Join(dir, "marker"))
	execs := countLines(t, filepath.Join(dir, "runs.log"))
	for _, sid := range crashStepIDs() {
		if marker[sid] != 1 {
			t.Errorf("step %s: %d lines in the marker, want 1", sid, marker[sid])
		}
	}
	for sid, sr := range rec.Steps {
		if sr.Kind != "run" {
			continue
		}
		tid := traceID(sid)
		if n, ok := frozen[tid]; ok && execs[tid] != n {
			t.Errorf("step %s ran %d times after it was recorded succeeded (%d before)", sid, execs[tid]-n, n)
		}
		if execs[tid] > sr.Attempts {
			t.Errorf("step %s ran %d times but only %d attempts were recorded", sid, execs[tid], sr.Attempts)
		}
	}
	if v := stella(t, home, nil, "cache", "verify"); v.code != 0 {
		t.Fatalf("cache verify: %s %s", v.stdout, v.stderr)
	}
	t.Logf("%d kills in a window of %v; executions %v", kills, window, execs)
}

// TestRunsConcurrencyAndCancel: two runs of different packs at once on one
// home; a second runner of a live run is refused at once; a cancel from
// another process stops the live runner's step and records cancelled; a run
// whose runner was killed is listed as such.
func TestRunsConcurrencyAndCancel(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	for _, name := range []string{"one", "two"} {
		writeFile(t, filepath.Join(dir, name, "pack.yaml"), fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: %s, version: 1.0.0, description: concurrency}
spec:
  steps:
    - id: a
      parallel:
        steps:
          - {id: x, run: {command: ["sh", "-c", "echo x"]}}
          - {id: y, run: {command: ["sh", "-c", "echo y"]}}
    - {id: b, run: {command: ["sh", "-c", "echo b"]}}
`, name))
	}
	// Two runner processes at once (the test binary: built with -race under
	// make test, so each runner is checked for races). In-process sessions
	// cannot run side by side: urfave/cli keeps global flag state.
	var cmds []*exec.Cmd
	var outs, errs []*strings.Builder
	for _, name := range []string{"one", "two"} {
		cmd := stellaProcess(t, home, "--output", "json", "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, name))
		out, errb := &strings.Builder{}, &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs, errs = append(cmds, cmd), append(outs, out), append(errs, errb)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil || !strings.Contains(outs[i].String(), `"state": "succeeded"`) {
			t.Fatalf("run %d: %v %s %s", i, err, outs[i].String(), errs[i].String())
		}
	}
	if l := stella(t, home, nil, "pack", "runs", "list", "--state", "succeeded"); strings.Count(l.stdout, "succeeded") != 2 {
		t.Fatalf("both runs must be recorded succeeded:\n%s", l.stdout)
	}

	writeFile(t, filepath.Join(dir, "slow", "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: slow, version: 1.0.0, description: cancel me}
spec:
  inputs:
    - {name: dir, type: string, required: true}
  steps:
    - id: wait
      run: {command: ["sh", "-c", "echo waiting for the cancel; echo $$ > \"$1/pid\"; sleep 60; echo late > \"$1/late\"", "sh", "${{ inputs.dir }}"]}
    - id: after
      run: {command: ["sh", "-c", "echo after > \"$1/after\"", "sh", "${{ inputs.dir }}"]}
`)
	writeFile(t, filepath.Join(dir, "slow.json"), fmt.Sprintf(`{"dir": %q}`, dir))
	start := func() (*execCmd, string) {
		_ = os.Remove(filepath.Join(dir, "pid"))
		cmd := stellaProcess(t, home, "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "slow"), "--inputs", filepath.Join(dir, "slow.json"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the step never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		l := stella(t, home, nil, "--output", "json", "pack", "runs", "list", "--state", "running")
		var list []runSummary
		if err := json.Unmarshal([]byte(l.stdout), &list); err != nil || len(list) != 1 || list[0].Runner != "live" {
			t.Fatalf("want one live running run: %v %s", err, l.stdout)
		}
		return &execCmd{cmd: cmd, stderr: &stderr}, list[0].RunID
	}

	c, id := start()
	if r := stella(t, home, nil, "pack", "runs", "resume", "--insecure-skip-isolation", "--run", id); r.code != exitTransient || !strings.Contains(r.stderr, "ERR_PACK_RUN_LOCKED") || !strings.Contains(r.stderr, "pid ") {
		t.Fatalf("a second runner must be refused at once: %d %s", r.code, r.stderr)
	}
	// A follower of the live run's log sees the step's line, and stops when
	// the run does.
	follow := stellaProcess(t, home, "pack", "runs", "logs", "--follow", id)
	var followOut, followErr strings.Builder
	follow.Stdout, follow.Stderr = &followOut, &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() { followed <- follow.Wait() }()
	began := time.Now()
	if r := stella(t, home, nil, "pack", "runs", "cancel", "--run", id); r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("cancel: %d %s %s", r.code, r.stdout, r.stderr)
	}
	_ = c.cmd.Wait()
	if code := c.cmd.ProcessState.ExitCode(); code != exitGeneric || !strings.Contains(c.stderr.String(), "ERR_PACK_RUN_CANCELLED") {
		t.Fatalf("the runner must end cancelled: exit %d\n%s", code, c.stderr.String())
	}
	if time.Since(began) > 15*time.Second {
		t.Errorf("cancel took %s", time.Since(began))
	}
	select {
	case err := <-followed:
		if err != nil || !strings.Contains(followOut.String(), "[wait] stdout: waiting for the cancel") {
			t.Errorf("runs logs --follow: %v\n%s%s", err, followOut.String(), followErr.String())
		}
	case <-time.After(15 * time.Second):
		_ = follow.Process.Kill()
		t.Error("runs logs --follow did not stop with the run")
	}
	rec := runRecord(t, home, id)
	if rec.State != run.Cancelled || rec.Steps["wait"].State != run.Cancelled || rec.Steps["after"] != nil {
		t.Fatalf("record: %s %+v", rec.State, rec.Steps)
	}
	pidb, _ := os.ReadFile(filepath.Join(dir, "pid"))
	var pid int
	fmt.Sscanf(string(pidb), "%d", &pid)
	if alive(pid) {
		t.Errorf("the cancelled step's process %d is still alive", pid)
	}

	// A runner killed mid-step: listed as gone; a cancel then records it and
	// stops the step it left behind.
	c, id = start()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
	l := stella(t, home, nil, "pack", "runs", "list", "--state", "running")
	if !strings.Contains(l.stdout, id) || !strings.Contains(l.stdout, "gone") {
		t.Fatalf("a run without its runner must be listed as gone:\n%s", l.stdout)
	}
	pidb, _ = os.ReadFile(filepath.Join(dir, "pid"))
	fmt.Sscanf(string(pidb), "%d", &pid)
	if r := stella(t, home, nil, "pack", "runs", "cancel", "--run", id); r.code != 0 || !strings.Contains(r.stdout, "no live runner") {
		t.Fatalf("cancel without a runner: %d %s %s", r.code, r.stdout, r.stderr)
	}
	time.Sleep(100 * time.Millisecond)
	if alive(pid) {
		t.Errorf("the orphaned step %d survived the cancel", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, "after")); err == nil {
		t.Error("a step after the cancelled one ran")
	}
}

type execCmd struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
}

// alive reports whether pid is a live process (a zombie, killed but not yet
// reaped by an init that does not reap, is not).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
