package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stellaops.io/stella/internal/safefile"
)

// heldCache imports a pack of n files (size bytes in all) into a new home
// and returns the home and the sha256 of the pack's export, made before
// anything else happens to the cache.
func heldCache(t *testing.T, n int, size int64) (home, want string) {
	t.Helper()
	dir := t.TempDir()
	b := filepath.Join(dir, "payload.tar")
	exportedBundle(t, bigPack(t, dir, "payload", n, size), "payload:1.0.0", b)
	home = t.TempDir()
	if r := stella(t, home, nil, "pack", "import", "--bundle", b); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	return home, exportDigest(t, stella(t, home, nil, "--output", "json", "pack", "export", "-o", filepath.Join(dir, "ref.tar"), "payload:1.0.0"))
}

func exportDigest(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("export: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ Digest string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Digest == "" {
		t.Fatalf("export output %q: %v", r.stdout, err)
	}
	return out.Digest
}

type gcOut struct {
	Removed []string
	Held    []string
	Holders []struct {
		PID     int
		Command string
	}
}

func cacheGC(t *testing.T, home string) gcOut {
	t.Helper()
	r := stella(t, home, nil, "--output", "json", "cache", "gc")
	if r.code != 0 {
		t.Fatalf("cache gc: exit %d: %s", r.code, r.stderr)
	}
	var out gcOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("cache gc output %q: %v", r.stdout, err)
	}
	return out
}

// TestExportHoldsAgainstGC: the pack is removed and gc runs after an export
// resolved what it will write and before it reads it. The export still
// writes the whole bundle (the same bytes as before), gc reports the blobs
// as held by the export and removes them only once it ended.
func TestExportHoldsAgainstGC(t *testing.T) {
	home, want := heldCache(t, 4, 1<<20)
	var during gcOut
	var text result
	exportHeld = func() {
		exportHeld = nil
		if r := stella(t, home, nil, "pack", "rm", "payload:1.0.0"); r.code != 0 {
			t.Errorf("pack rm: %s", r.stderr)
		}
		during = cacheGC(t, home)
		text = stella(t, home, nil, "cache", "gc", "--dry-run")
	}
	t.Cleanup(func() { exportHeld = nil })
	got := exportDigest(t, stella(t, home, nil, "--output", "json", "pack", "export", "-o", filepath.Join(t.TempDir(), "x.tar"), "payload:1.0.0"))
	if exportHeld != nil {
		t.Fatal("the export never reached its hook")
	}
	if got != want {
		t.Errorf("export under gc wrote sha256 %s, want %s", got, want)
	}
	// manifest, config, pack.yaml, load.sh? and the 4 payloads: at least 6.
	if len(during.Removed) != 0 || len(during.Held) < 6 {
		t.Errorf("gc during the export: removed %d, held %d blobs", len(during.Removed), len(during.Held))
	}
	if len(during.Holders) != 1 || during.Holders[0].PID != os.Getpid() || during.Holders[0].Command != "stella pack export" {
		t.Errorf("gc during the export named holders %+v", during.Holders)
	}
	wantText := fmt.Sprintf("would remove 0 blobs (0 B) and 0 leftovers (0 B)\n"+
		"kept %d unreachable blobs a running operation still reads; the next gc after it ends removes them\n"+
		"  held by pid %d (stella pack export) since ", len(during.Held), os.Getpid())
	if text.code != 0 || !strings.HasPrefix(text.stdout, wantText) || strings.Count(text.stdout, "\n") != 3 {
		t.Errorf("cache gc --dry-run during the export: exit %d\n%s\nwant\n%s…", text.code, text.stdout, wantText)
	}
	after := cacheGC(t, home)
	if len(after.Removed) != len(during.Held) || len(after.Held) != 0 {
		t.Errorf("gc after the export removed %d (want %d), held %d", len(after.Removed), len(during.Held), len(after.Held))
	}
	if r := stella(t, home, nil, "cache", "verify"); r.code != 0 {
		t.Fatalf("cache verify: %s%s", r.stdout, r.stderr)
	}
}

// TestExportHoldsAgainstGCProcess is TestExportHoldsAgainstGC across real
// processes: a `stella pack export` is stopped (SIGSTOP) while it streams
// its bundle (its temp file exists on the output folder), another process
// removes the pack and runs gc, and the export, continued, writes the same
// bundle as before.
func TestExportHoldsAgainstGCProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("large export")
	}
	home, want := heldCache(t, 8, crashSize()/2)
	media := t.TempDir()
	temps := filepath.Join(media, safefile.TempPrefix+"*")
	var stopped *os.Process
	var cmd *stellaCmd
	for try := 0; try < 10 && stopped == nil; try++ {
		cmd = startStella(t, home, "--output", "json", "pack", "export", "-o", filepath.Join(media, "x.tar"), "payload:1.0.0")
		for !cmd.exited() {
			if m, _ := filepath.Glob(temps); len(m) > 0 {
				_ = cmd.Process.Signal(syscall.SIGSTOP)
				waitStopped(t, cmd.Process.Pid)
				// Still writing, once stopped: caught mid-export.
				if m, _ := filepath.Glob(temps); len(m) > 0 {
					stopped = cmd.Process
				} else {
					_ = cmd.Process.Signal(syscall.SIGCONT)
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		if stopped == nil {
			cmd.wait(t)
			_ = os.Remove(filepath.Join(media, "x.tar"))
		}
	}
	if stopped == nil {
		t.Fatal("no export was caught while holding: the test proved nothing")
	}
	if r := stella(t, home, nil, "pack", "rm", "payload:1.0.0"); r.code != 0 {
		_ = stopped.Signal(syscall.SIGCONT)
		t.Fatalf("pack rm: %s", r.stderr)
	}
	during := cacheGC(t, home)
	_ = stopped.Signal(syscall.SIGCONT)
	out := cmd.wait(t)
	if got := exportDigest(t, result{stdout: out}); got != want {
		t.Errorf("export under gc wrote sha256 %s, want %s", got, want)
	}
	if len(during.Removed) != 0 || len(during.Held) < 10 {
		t.Errorf("gc during the export: removed %d, held %d blobs", len(during.Removed), len(during.Held))
	}
	if len(during.Holders) != 1 || during.Holders[0].PID != stopped.Pid || during.Holders[0].Command != "stella pack export" {
		t.Errorf("gc during the export named holders %+v (export pid %d)", during.Holders, stopped.Pid)
	}
	if after := cacheGC(t, home); len(after.Removed) != len(during.Held) {
		t.Errorf("gc after the export removed %d blobs, want %d", len(after.Removed), len(during.Held))
	}
	if m, _ := filepath.Glob(filepath.Join(home, "packs", "holds", "*")); len(m) != 0 {
		t.Errorf("hold files left: %v", m)
	}
}

// stellaCmd is a real stella process started in the background.
type stellaCmd struct {
	*exec.Cmd
	out, errb bytes.Buffer
	done      chan struct{}
	err       error
}

func startStella(t *testing.T, home string, args ...string) *stellaCmd {
	t.Helper()
	c := &stellaCmd{Cmd: stellaProcess(t, home, args...), done: make(chan struct{})}
	c.Stdout, c.Stderr = &c.out, &c.errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.Cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if !c.exited() {
			_ = c.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *stellaCmd) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to end and returns its stdout; it must
// succeed.
func (c *stellaCmd) wait(t *testing.T) string {
	t.Helper()
	<-c.done
	if c.err != nil {
		t.Fatalf("%v: %v\n%s", c.Args[1:], c.err, c.errb.String())
	}
	return c.out.String()
}

// waitStopped waits until the kernel shows process pid stopped (state T in
// /proc/<pid>/stat): kill(2) returns before a running process stops.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	path := filepath.Join("/proc", strconv.Itoa(pid), "stat")
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skipf("cannot tell a stopped process here: %v", err)
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
	}
	t.Fatalf("process %d did not stop", pid)
}

// TestGCBesideImportProcess runs `stella cache gc` while a real `stella pack
// import` is stopped mid-copy (issue 13: gc used to wait for the whole
// import, then fail): gc finishes within a second, removes exactly the
// garbage that was there before (what `--dry-run` listed), leaves the
// import's ingest folder alone; the import then completes, the cache
// verifies clean and the imported pack exports to the same bundle digest.
func TestGCBesideImportProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("large import")
	}
	home, _ := heldCache(t, 2, 64<<10)
	if r := stella(t, home, nil, "pack", "rm", "payload:1.0.0"); r.code != 0 {
		t.Fatalf("pack rm: %s", r.stderr)
	}
	dry := stella(t, home, nil, "--output", "json", "cache", "gc", "--dry-run")
	var garbage gcOut
	if dry.code != 0 || json.Unmarshal([]byte(dry.stdout), &garbage) != nil || len(garbage.Removed) == 0 {
		t.Fatalf("gc --dry-run: exit %d, %s%s", dry.code, dry.stdout, dry.stderr)
	}

	dir := t.TempDir()
	b := filepath.Join(dir, "other.tar")
	exportedBundle(t, bigPack(t, dir, "other", 8, crashSize()), "other:1.0.0", b)
	ref := t.TempDir()
	if r := stella(t, ref, nil, "pack", "import", "--bundle", b); r.code != 0 {
		t.Fatalf("reference import: %s", r.stderr)
	}
	want := exportDigest(t, stella(t, ref, nil, "--output", "json", "pack", "export", "-o", filepath.Join(dir, "ref.tar"), "other:1.0.0"))
	ingest := filepath.Join(home, "packs", "ingest", "*", safefile.TempPrefix+"*")
	var stopped *os.Process
	var cmd *stellaCmd
	for try := 0; try < 10 && stopped == nil; try++ {
		cmd = startStella(t, home, "pack", "import", "--bundle", b)
		for !cmd.exited() {
			if m, _ := filepath.Glob(ingest); len(m) > 0 {
				_ = cmd.Process.Signal(syscall.SIGSTOP)
				waitStopped(t, cmd.Process.Pid)
				if m, _ := filepath.Glob(ingest); len(m) > 0 {
					stopped = cmd.Process
				} else {
					_ = cmd.Process.Signal(syscall.SIGCONT)
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		if stopped == nil {
			cmd.wait(t)
			if r := stella(t, home, nil, "pack", "rm", "other:1.0.0"); r.code != 0 {
				t.Fatalf("pack rm: %s", r.stderr)
			}
		}
	}
	if stopped == nil {
		t.Fatal("no import was caught mid-copy: the test proved nothing")
	}
	before, _ := filepath.Glob(ingest)
	start := time.Now()
	during := cacheGC(t, home)
	took := time.Since(start)
	t.Logf("gc beside a stopped import: %v, removed %d blobs", took, len(during.Removed))
	after, _ := filepath.Glob(ingest)
	_ = stopped.Signal(syscall.SIGCONT)
	cmd.wait(t)
	if took > time.Second {
		t.Errorf("gc beside a running import took %v, want at most 1s", took)
	}
	if strings.Join(during.Removed, " ") != strings.Join(garbage.Removed, " ") {
		t.Errorf("gc beside the import removed %v, want the garbage %v", during.Removed, garbage.Removed)
	}
	if len(after) != len(before) {
		t.Errorf("gc removed the import's files in ingest: %d before, %d after", len(before), len(after))
	}
	if r := stella(t, home, nil, "cache", "verify"); r.code != 0 || strings.Contains(r.stdout, "warning") {
		t.Fatalf("verify after the import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := exportDigest(t, stella(t, home, nil, "--output", "json", "pack", "export", "-o", filepath.Join(dir, "again.tar"), "other:1.0.0")); got != want {
		t.Errorf("the pack imported beside gc exports to %s, want %s", got, want)
	}
}
