package main

import (
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

// TestExportRemovesStaleTemps: an export into a folder removes the temp
// file a killed export left there (named with the dead writer's pid) and
// says so; the temp files of writes still running stay.
func TestExportRemovesStaleTemps(t *testing.T) {
	home, want := heldCache(t, 2, 64<<10)
	media := t.TempDir()
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	killed := filepath.Join(media, safefile.TempPrefix+"old.tar-"+strconv.Itoa(ended.Process.Pid)+"-123456")
	if err := os.WriteFile(killed, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// A write of this process that has just created its temp file.
	starting := filepath.Join(media, safefile.TempPrefix+"other.tar-"+strconv.Itoa(os.Getpid())+"-1")
	if err := os.WriteFile(starting, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A write in progress, untouched for long but locked by its writer.
	pending, err := safefile.Create(filepath.Join(media, "pending.tar"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Abort()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(pending.Name(), old, old); err != nil {
		t.Fatal(err)
	}

	r := stella(t, home, nil, "--output", "json", "pack", "export", "-o", filepath.Join(media, "x.tar"), "payload:1.0.0")
	if got := exportDigest(t, r); got != want {
		t.Errorf("export wrote sha256 %s, want %s", got, want)
	}
	msg := "removed " + killed + " (3.0 MiB), a temp file left by an interrupted stella write\n"
	if r.stderr != msg {
		t.Errorf("stderr = %q, want %q", r.stderr, msg)
	}
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Errorf("stale temp file kept: %v", err)
	}
	for _, p := range []string{starting, pending.Name()} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("temp file of a running write removed: %v", err)
		}
	}
	// Nothing more to remove: the next export says nothing.
	if r := stella(t, home, nil, "pack", "export", "-o", filepath.Join(media, "y.tar"), "payload:1.0.0"); r.code != 0 || r.stderr != "" {
		t.Errorf("second export: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestKilledExportCleanedUp SIGKILLs a real `stella pack export` while it
// writes its temp file on the output folder; the next export into that
// folder removes the leftover and says so.
func TestKilledExportCleanedUp(t *testing.T) {
	if testing.Short() {
		t.Skip("large export")
	}
	home, want := heldCache(t, 8, crashSize()/2)
	media := t.TempDir()
	temps := filepath.Join(media, safefile.TempPrefix+"*")
	var left []string
	for try := 0; try < 10 && len(left) == 0; try++ {
		cmd := startStella(t, home, "pack", "export", "-o", filepath.Join(media, "x.tar"), "payload:1.0.0")
		for !cmd.exited() {
			if m, _ := filepath.Glob(temps); len(m) > 0 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-cmd.done
				break
			}
			time.Sleep(time.Millisecond)
		}
		<-cmd.done
		left, _ = filepath.Glob(temps)
		_ = os.Remove(filepath.Join(media, "x.tar"))
	}
	if len(left) != 1 {
		t.Fatalf("no export was killed while writing (temp files %v): the test proved nothing", left)
	}
	r := stella(t, home, nil, "--output", "json", "pack", "export", "-o", filepath.Join(media, "x.tar"), "payload:1.0.0")
	if got := exportDigest(t, r); got != want {
		t.Errorf("export after the kill wrote sha256 %s, want %s", got, want)
	}
	if !strings.HasPrefix(r.stderr, "removed "+left[0]+" (") || !strings.HasSuffix(r.stderr, "), a temp file left by an interrupted stella write\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if m, _ := filepath.Glob(temps); len(m) != 0 {
		t.Errorf("temp files left: %v", m)
	}
}
