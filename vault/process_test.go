package vault

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Child processes are this test binary re-executed with helperEnv set;
// TestMain runs the helper instead of the tests.
const (
	helperEnv  = "STELLA_VAULT_TEST_HELPER"
	helperPath = "STELLA_VAULT_TEST_PATH"
	helperName = "STELLA_VAULT_TEST_PREFIX"
	helperN    = "STELLA_VAULT_TEST_N"
	helperPass = "process-test-passphrase"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// valueFor derives a secret's value from its name, so a reader can check
// that every value it sees is whole.
func valueFor(name string) string { return "value-of-" + name + "-0123456789" }

// runHelper is the child side: "put" writes N secrets and exits; "loop"
// writes secrets until killed, printing "ready" after the first.
func runHelper(mode string) int {
	ctx := context.Background()
	path, prefix := os.Getenv(helperPath), os.Getenv(helperName)
	n, _ := strconv.Atoi(os.Getenv(helperN))
	v, err := Open(ctx, path, testPass(helperPass), Options{LockTimeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper open:", err)
		return 3
	}
	for i := 0; mode == "loop" || i < n; i++ {
		name := fmt.Sprintf("%s-%06d", prefix, i)
		if err := v.Put(ctx, name, []byte(valueFor(name)), "", nil, t0); err != nil {
			fmt.Fprintln(os.Stderr, "helper put:", err)
			return 4
		}
		if i == 0 && mode == "loop" {
			fmt.Println("ready")
		}
	}
	return 0
}

func helperCmd(t *testing.T, mode, path, prefix string, n int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+mode, helperPath+"="+path, helperName+"="+prefix, helperN+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	return cmd
}

// checkWhole opens the vault and checks every secret has its own value and
// that each prefix's secrets are numbered 0..k-1 without gaps. It returns
// the count per prefix.
func checkWhole(t *testing.T, path string) map[string]int {
	t.Helper()
	v, err := Open(context.Background(), path, testPass(helperPass), Options{})
	if err != nil {
		t.Fatalf("vault does not open: %v", err)
	}
	defer v.Close()
	counts := map[string]int{}
	for _, info := range v.List() {
		prefix, num, ok := strings.Cut(info.Name, "-")
		if !ok {
			continue // not written by a helper (the filler)
		}
		s, err := v.Get(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Value.Reveal()) != valueFor(info.Name) {
			t.Fatalf("secret %s has a wrong value", info.Name)
		}
		i, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("unexpected name %s", info.Name)
		}
		if i != counts[prefix] {
			t.Fatalf("secret %s present but %s-%06d missing", info.Name, prefix, counts[prefix])
		}
		counts[prefix]++
	}
	return counts
}

func initHelperVault(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault")
	if err := Init(context.Background(), path, testPass(helperPass)); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConcurrentGoroutines(t *testing.T) {
	ctx := context.Background()
	path := initHelperVault(t)
	shared, err := Open(ctx, path, testPass(helperPass), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			// Half the writers have their own handle, half share one.
			v := shared
			if w%2 == 0 {
				own, err := Open(ctx, path, testPass(helperPass), Options{})
				if err != nil {
					errs <- err
					return
				}
				v = own
			}
			for i := range each {
				name := fmt.Sprintf("g%d-%06d", w, i)
				if err := v.Put(ctx, name, []byte(valueFor(name)), "", nil, t0); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	counts := checkWhole(t, path)
	for w := range writers {
		if got := counts[fmt.Sprintf("g%d", w)]; got != each {
			t.Errorf("writer %d: %d of %d secrets present", w, got, each)
		}
	}
}

func TestConcurrentProcesses(t *testing.T) {
	path := initHelperVault(t)
	const each = 15
	cmds := []*exec.Cmd{helperCmd(t, "put", path, "p1", each), helperCmd(t, "put", path, "p2", each)}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	counts := checkWhole(t, path)
	if counts["p1"] != each || counts["p2"] != each {
		t.Fatalf("secrets present per process: %v, want %d each", counts, each)
	}
	assertOnlyVaultFiles(t, filepath.Dir(path), "vault", false)
}

// TestKillDuringPut SIGKILLs a process that keeps writing, at random times:
// each time the vault must open, hold whole values and have lost nothing
// that an earlier check saw. Only safefile temp files may be left over, and
// the next write removes them.
func TestKillDuringPut(t *testing.T) {
	ctx := context.Background()
	path := initHelperVault(t)
	v, err := Open(ctx, path, testPass(helperPass), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A large filler makes each write take long enough to be hit mid-way.
	filler := strings.Repeat("f", 64<<10)
	for _, name := range []string{"filler"} {
		if err := v.Put(ctx, name, []byte(filler), "", nil, t0); err != nil {
			t.Fatal(err)
		}
	}
	const kills = 20
	seen, midWrite := 0, 0
	for iter := range kills {
		cmd := helperCmd(t, "loop", path, fmt.Sprintf("k%d", iter), 0)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper did not start: %q %v", line, err)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		counts := checkWhole(t, path)
		total := 0
		for _, c := range counts {
			total += c
		}
		if total < seen {
			t.Fatalf("iteration %d: %d secrets, fewer than the %d seen before", iter, total, seen)
		}
		if counts[fmt.Sprintf("k%d", iter)] < 1 {
			t.Fatalf("iteration %d: the write acknowledged before the kill is missing", iter)
		}
		seen = total
		assertOnlyVaultFiles(t, filepath.Dir(path), "vault", true)
		if temps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".stella-tmp-*")); len(temps) > 0 {
			midWrite++
		}
		s, err := v.Resolve("vault:filler")
		if err != nil || s.Len() != len(filler) {
			t.Fatalf("filler: %v", err)
		}
	}
	t.Logf("%d of %d kills left a temp file (hit mid-write)", midWrite, kills)
	if err := v.Put(ctx, "last", []byte("last-value-value"), "", nil, t0); err != nil {
		t.Fatal(err)
	}
	assertOnlyVaultFiles(t, filepath.Dir(path), "vault", false)
}
