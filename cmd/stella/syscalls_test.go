package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBuildSyscallsPerFile counts, under strace -f -c, the system calls a
// `pack build` of a pack of many small files makes, per file (issue 13:
// what is left of the build's cost is per-file work). Counted, not timed.
// Per file: the source's open, fstat before and after its read, its reads
// (the bytes, and the end: a stat's size is not trusted to be the file's)
// and close (the folder's listing takes each file's type from the folder,
// with no stat, ADR 0028); its bytes appended to the
// batch's segment (ADR 0030), which the index's check finds in the
// segment's table, not by a lookup; whether it is present already is read
// from one listing of the blob files (two lookups a file before: is it
// present, and is it still there as the index names it). What was
// cut: the four fcntl calls and failed epoll_ctl os.Open makes per regular
// file (for the source and the temporary file: ten calls), the lstat
// os.Rename makes of the new name, and the index write transaction (two
// fdatasyncs) every Open of an existing cache made. The syncs do not grow
// with the files: one syncfs for the blobs, the blob folders' fsyncs, the
// index transactions'.
func TestBuildSyscallsPerFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts Linux system calls")
	}
	strace := requireTool(t, "strace", "strace")
	const n = 400
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	count := func(src string) map[string]int {
		t.Helper()
		return straceStella(t, strace, home, filepath.Join(dir, "strace-"+filepath.Base(src)), "pack", "build", src)
	}
	sum := func(calls map[string]int, names ...string) int {
		total := 0
		for _, name := range names {
			total += calls[name]
		}
		return total
	}
	check := func(label string, calls map[string]int, syncsMax, fdatasyncMax int) {
		t.Helper()
		t.Logf("%s, %d files: fcntl %d, epoll_ctl %d, newfstatat %d, statx %d, openat %d, read %d, renameat %d, fsync %d, fdatasync %d, syncfs %d; total %d",
			label, n, calls["fcntl"], calls["epoll_ctl"], calls["newfstatat"], calls["statx"], calls["openat"], calls["read"], calls["renameat"],
			calls["fsync"], calls["fdatasync"], calls["syncfs"], calls["total"])
		for _, c := range []struct {
			what    string
			names   []string
			perFile int
		}{
			{"fcntl and epoll_ctl", []string{"fcntl", "epoll_ctl"}, 2},                                // was 10
			{"path lookups (stat)", []string{"newfstatat", "statx", "stat", "lstat", "fstatat64"}, 0}, // was 4, then 2, then 1
			{"opens", []string{"openat", "open"}, 2},
			{"renames", []string{"rename", "renameat", "renameat2"}, 1},
			{"reads", []string{"read", "pread64", "readv"}, 2}, // the bytes, and the read that finds the end
		} {
			if got, limit := sum(calls, c.names...), c.perFile*n+150; got > limit {
				t.Errorf("%s: %d %s for %d files, want at most %d a file (%d)", label, got, c.what, n, c.perFile, limit)
			}
		}
		if got := sum(calls, "fsync", "fdatasync", "syncfs", "sync"); got > syncsMax {
			t.Errorf("%s: %d syncs (fsync, fdatasync, syncfs) for %d files, want at most %d", label, got, n, syncsMax)
		}
		if got := calls["fdatasync"]; got > fdatasyncMax {
			t.Errorf("%s: %d fdatasyncs (index transactions), want at most %d", label, got, fdatasyncMax)
		}
	}
	// A new cache: its index is created (bbolt's file and the layout's
	// transaction), then the build's one transaction.
	check("build into a new cache", count(smallFilesPack(t, dir, "first", n)), 12, 6)
	// An existing cache: the build's transaction only.
	check("build into an existing cache", count(smallFilesPack(t, dir, "second", n)), 8, 2)
}

// straceStella runs stella args in home under strace -f -c, its summary
// written to out, and returns the calls it counted. It skips the test
// where strace cannot trace (unless tools are required) and fails it when
// the command fails.
func straceStella(t *testing.T, strace, home, out string, args ...string) map[string]int {
	t.Helper()
	cmd := exec.Command(strace, append([]string{"-f", "-c", "-o", out, os.Args[0], "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home)
	b, runErr := cmd.CombinedOutput()
	calls, err := straceCounts(out)
	if err != nil || calls["total"] == 0 {
		if requireTools() {
			t.Fatalf("strace could not trace %v (%v, %v): %s", args, runErr, err, b)
		}
		t.Skipf("strace could not trace %v (%v, %v): %s", args, runErr, err, b)
	}
	if runErr != nil {
		t.Fatalf("%v: %v\n%s", args, runErr, b)
	}
	return calls
}

// smallFilesPack writes a pack named name of n files of 1 KiB in folders of
// 100, dated an hour back (a file modified in the last two seconds is read
// twice: ADR 0023), and returns its folder.
func smallFilesPack(t *testing.T, dir, name string, n int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, filepath.Join(p, "pack.yaml"), fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: %s
  version: 1.0.0
  description: Many small files.
spec:
  steps:
    - id: load
      run: {command: ["true"]}
`, name))
	old := time.Now().Add(-time.Hour)
	for i := range n {
		f := filepath.Join(p, fmt.Sprintf("d%02d", i/100), fmt.Sprintf("f%04d.bin", i))
		writeFile(t, f, fmt.Sprintf("%s file %d\n%s", name, i, strings.Repeat("x", 1000)))
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// straceCounts reads the summary of strace -c: calls by system call name,
// and "total".
func straceCounts(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	calls := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// % time, seconds, usecs/call, calls, [errors,] syscall
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		c, err := strconv.Atoi(fields[3])
		if err != nil {
			continue
		}
		calls[fields[len(fields)-1]] += c
	}
	return calls, sc.Err()
}

// requireTools reports whether a test must fail rather than skip when a
// tool it needs is missing or unusable: on CI (or STELLA_REQUIRE_TOOLS),
// which installs every tool the tests use.
func requireTools() bool { return os.Getenv("CI") != "" || os.Getenv("STELLA_REQUIRE_TOOLS") != "" }

// TestExportStartsWriteback: a bundle is sent on its way to disk as it is
// written, every 8 MiB (sync_file_range), so that the fsync that makes it
// durable has little left to write: an export of a 40 MiB pack starts
// the writeback of the bundle at least four times.
func TestExportStartsWriteback(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts Linux system calls")
	}
	strace := requireTool(t, "strace", "strace")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	src := filepath.Join(dir, "big")
	writeFile(t, filepath.Join(src, "pack.yaml"), "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: big, version: 1.0.0, description: Big.}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n")
	writeFile(t, filepath.Join(src, "data.bin"), strings.Repeat("0123456789abcdef", 40<<20/16))
	cmd := exec.Command(os.Args[0], "--quiet", "pack", "build", src)
	cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pack build: %v\n%s", err, b)
	}
	calls := straceStella(t, strace, home, filepath.Join(dir, "strace-export"), "pack", "export", "-o", filepath.Join(dir, "big.tar"), "big:1.0.0")
	if got := calls["sync_file_range"]; got < 4 {
		t.Errorf("export of 40 MiB started the writeback %d times, want at least 4 (every 8 MiB)", got)
	}
}
