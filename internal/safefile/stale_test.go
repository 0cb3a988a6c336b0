package safefile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no process to spawn: %v", err)
	}
	return cmd.Process.Pid
}

func TestStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * StaleAfter)
	me := strconv.Itoa(os.Getpid())
	dead := strconv.Itoa(deadPID(t))
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial bundle"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	killed := mk(TempPrefix+"x.tar-"+dead+"-123", time.Now())                                // writer gone
	reused := mk(TempPrefix+"y.tar-"+me+"-456", old)                                         // pid alive, untouched for long
	legacyOld := mk(TempPrefix+"z.tar-789", old)                                             // no pid, old
	mk(TempPrefix+"starting.tar-"+me+"-1", time.Now())                                       // pid alive, fresh: between create and lock
	mk(TempPrefix+"legacy.tar-2", time.Now())                                                // no pid, fresh
	mk("x.tar", old)                                                                         // not a temp file
	if err := os.Mkdir(filepath.Join(dir, TempPrefix+"dir-"+dead+"-1"), 0o755); err != nil { // not a file
		t.Fatal(err)
	}
	// A pending write, even untouched for long, is locked by its writer.
	pending, err := Create(filepath.Join(dir, "pending.tar"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Abort()
	if err := os.Chtimes(pending.Name(), old, old); err != nil {
		t.Fatal(err)
	}

	want := []string{killed, reused, legacyOld} // by name
	paths := func(ls []Leftover) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Path)
		}
		return out
	}
	got, err := Stale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, paths(got)); diff != "" {
		t.Fatalf("Stale (-want +got):\n%s", diff)
	}
	if got[0].Size != int64(len("partial bundle")) || strconv.Itoa(got[0].PID) != dead || got[1].PID != os.Getpid() || got[2].PID != 0 {
		t.Errorf("Stale = %+v", got)
	}
	for _, p := range want {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("Stale removed %s", p)
		}
	}
	removed, err := RemoveStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, paths(removed)); diff != "" {
		t.Fatalf("RemoveStale (-want +got):\n%s", diff)
	}
	for _, p := range want {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("RemoveStale left %s", p)
		}
	}
	if again, err := Stale(dir); err != nil || len(again) != 0 {
		t.Errorf("Stale after RemoveStale = %v, %v", again, err)
	}
	// The pending write is whole and commits.
	if _, err := pending.Write([]byte("done")); err != nil {
		t.Fatal(err)
	}
	if err := pending.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pending.tar")); string(b) != "done" {
		t.Errorf("pending write after RemoveStale: %q", b)
	}
}

func TestTempPID(t *testing.T) {
	for name, want := range map[string]int{
		TempPrefix + "x.tar-123-456":     123,
		TempPrefix + "my-file.tar-7-8":   7,
		TempPrefix + "x.tar-456":         0,
		TempPrefix + "x.tar-+12-456":     0,
		TempPrefix + "x.tar-0-456":       0,
		TempPrefix + "x.tar-12-abc":      0,
		TempPrefix + "backup-x.tar--456": 0,
		TempPrefix + "x.tar-12-":         0,
		TempPrefix + "x.tar-012-3":       0,
		"x.tar-123-456":                  0,
	} {
		if got := tempPID(name); got != want {
			t.Errorf("tempPID(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestCreateNamesWriter(t *testing.T) {
	f, err := Create(filepath.Join(t.TempDir(), "out.tar"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if got := tempPID(filepath.Base(f.Name())); got != os.Getpid() {
		t.Errorf("temp %s names pid %d, want %d", f.Name(), got, os.Getpid())
	}
}

// FuzzTempPID: names on an output folder (removable media) are anyone's.
// tempPID never panics, and a pid it finds is spelled in the name as
// "-<pid>-" followed by digits only.
func FuzzTempPID(f *testing.F) {
	for _, s := range []string{TempPrefix + "x.tar-123-456", TempPrefix + "x-1-2-3", TempPrefix + "-", TempPrefix + "--", "x-9-9", TempPrefix + "a-99999999999999999999-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		pid := tempPID(name)
		if pid < 0 {
			t.Fatalf("tempPID(%q) = %d", name, pid)
		}
		if pid == 0 {
			return
		}
		spelled := "-" + strconv.Itoa(pid) + "-"
		i := strings.LastIndex(name, spelled)
		if !strings.HasPrefix(name, TempPrefix) || i < 0 || !digits(name[i+len(spelled):]) {
			t.Fatalf("tempPID(%q) = %d, not spelled -<pid>-<digits>", name, pid)
		}
	})
}
