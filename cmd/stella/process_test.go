package main

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stellaProcess starts the real CLI as a separate process.
func stellaProcess(t *testing.T, home string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home)
	return cmd
}

// bigPack writes a pack folder named name with files of random content
// (size bytes in all, in n files) and returns its folder.
func bigPack(t *testing.T, dir, name string, n int, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, filepath.Join(p, "pack.yaml"), fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: %s
  version: 1.0.0
  description: A pack with large payloads, for crash and concurrency tests.
spec:
  steps:
    - id: load
      run: {command: ["sh", "load.sh"]}
`, name))
	buf := make([]byte, size/int64(n))
	for i := 0; i < n; i++ {
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("payload-%02d.bin", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// exportedBundle builds dir in a scratch home and exports it to a bundle.
func exportedBundle(t *testing.T, dir, ref, out string) {
	t.Helper()
	home := t.TempDir()
	if r := stella(t, home, nil, "pack", "build", "-o", out, dir); r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
}

func crashSize() int64 {
	if raceEnabled {
		return 24 << 20
	}
	return 128 << 20
}

// TestImportSurvivesSIGKILL kills a real `stella pack import` of a large
// bundle at many points. After every kill the cache verifies, lists nothing
// half-imported (the pack is either absent or complete), and a re-run of the
// import succeeds.
func TestImportSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("large import")
	}
	dir := t.TempDir()
	src := bigPack(t, dir, "payload", 8, crashSize())
	b := filepath.Join(dir, "big.tar")
	exportedBundle(t, src, "payload:1.0.0", b)

	// Time one complete import to spread the kills over it.
	start := time.Now()
	if out, err := stellaProcess(t, t.TempDir(), "pack", "import", "--bundle", b).CombinedOutput(); err != nil {
		t.Fatalf("reference import: %v\n%s", err, out)
	}
	full := time.Since(start)

	home := t.TempDir()
	kills, window := 0, full
	for i := 0; i < 8; i++ {
		cmd := stellaProcess(t, home, "pack", "import", "--bundle", b)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(window)))
		time.Sleep(time.Duration(n.Int64()))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++
		} else if err != nil {
			t.Fatalf("import %d ended with %v", i, err)
		} else {
			// It finished first: the reference import was slower than
			// this one (a cold page cache, a busy machine), so aim earlier.
			window /= 2
		}
		if r := stella(t, home, nil, "cache", "verify"); r.code != 0 {
			t.Fatalf("after kill %d: cache verify exit %d\n%s%s", i, r.code, r.stdout, r.stderr)
		}
		r := stella(t, home, nil, "pack", "list")
		if strings.Contains(r.stdout, "payload:1.0.0") {
			// Listed means complete: every blob is there and verifies.
			if rs := stella(t, home, nil, "pack", "export", "-o", filepath.Join(t.TempDir(), "x.tar"), "payload:1.0.0"); rs.code != 0 {
				t.Fatalf("after kill %d the listed pack cannot be exported: %s", i, rs.stderr)
			}
			// Start the next round from scratch so it is killed mid-way too.
			if rs := stella(t, home, nil, "pack", "rm", "payload:1.0.0"); rs.code != 0 {
				t.Fatal(rs.stderr)
			}
			if rs := stella(t, home, nil, "cache", "gc"); rs.code != 0 {
				t.Fatal(rs.stderr)
			}
		}
	}
	t.Logf("%d of 8 imports were killed mid-way (reference import took %v)", kills, full)
	if kills < 3 {
		t.Fatal("no import was killed: the test proved nothing")
	}
	if r := stella(t, home, nil, "pack", "import", "--bundle", b); r.code != 0 {
		t.Fatalf("re-import after the kills: %s", r.stderr)
	}
	if r := stella(t, home, nil, "cache", "gc"); r.code != 0 {
		t.Fatalf("gc: %s", r.stderr)
	}
	if r := stella(t, home, nil, "cache", "verify"); r.code != 0 || strings.Contains(r.stdout, "warning") {
		t.Fatalf("final verify: %s%s", r.stdout, r.stderr)
	}
}

// TestConcurrentImports imports two different bundles into one cache from
// two processes at once: both end correctly.
func TestConcurrentImports(t *testing.T) {
	dir := t.TempDir()
	size := crashSize() / 4
	var bundles []string
	for _, name := range []string{"left", "right"} {
		b := filepath.Join(dir, name+".tar")
		exportedBundle(t, bigPack(t, dir, name, 4, size), name+":1.0.0", b)
		bundles = append(bundles, b)
	}
	home := t.TempDir()
	var cmds []*exec.Cmd
	outs := make([]*strings.Builder, len(bundles))
	for i, b := range bundles {
		cmd := stellaProcess(t, home, "pack", "import", "--bundle", b)
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("import of %s: %v\n%s", bundles[i], err, outs[i])
		}
		if !strings.Contains(outs[i].String(), "new ") {
			t.Errorf("import of %s did not report a new pack:\n%s", bundles[i], outs[i])
		}
	}
	r := stella(t, home, nil, "pack", "list")
	if !strings.Contains(r.stdout, "left:1.0.0") || !strings.Contains(r.stdout, "right:1.0.0") {
		t.Fatalf("list after concurrent imports:\n%s", r.stdout)
	}
	if r := stella(t, home, nil, "cache", "verify"); r.code != 0 {
		t.Fatalf("verify after concurrent imports: %s%s", r.stdout, r.stderr)
	}
}
