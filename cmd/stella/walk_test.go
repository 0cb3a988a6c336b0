package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/keys"
)

// TestParseSize: sizes with units in any case, and what is refused.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512": 512, "1b": 1, "4KiB": 4 << 10, "4kib": 4 << 10, "4k": 4 << 10, "4KB": 4000, "4kb": 4000,
		"1.5MiB": 3 << 19, "2mb": 2e6, "4GiB": 4 << 30, "4gib": 4 << 30, "4G": 4 << 30, "1TiB": 1 << 40, "1tb": 1e12,
		"1.": 1, ".5k": 512, "8388607TiB": 8388607 << 40,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "-5MiB", "4 parsecs", "MiB", "4XiB", ".", "0.5", "0.0001", "1..5", "NaN", "Inf", "+Inf", "1e3",
		"1e19", "1e400", "0x10", "1_000", "4MiB garbage", "4 MiB", "9223372036854775808", "8388608TiB", " 4"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}

// TestSplitSizeRefused: a --split size that is not a positive size is
// ERR_PACK_PART_SIZE_INVALID (exit 1), as docs/errors.md says, for build
// and export, before anything is written.
func TestSplitSizeRefused(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	stellaSteps(t, home, nil, [][]string{{"pack", "init", "--dir", filepath.Join(dir, "hello"), "hello"}, {"pack", "build", filepath.Join(dir, "hello")}})
	want := lookupError(bundle.ErrInvalidPartSize)
	for _, size := range []string{"0", "-5", "4 parsecs", "NaN", "Inf", "1e19", "0.5"} {
		for _, args := range [][]string{
			{"pack", "build", "-o", filepath.Join(dir, "b.tar"), "--split", size, filepath.Join(dir, "hello")},
			{"pack", "export", "-o", filepath.Join(dir, "b.tar"), "--split", size, "hello:0.1.0"},
		} {
			r := stella(t, home, nil, args...)
			if r.code != want.Exit || !strings.Contains(r.stderr, "error: "+want.Code+": --split ") {
				t.Errorf("stella %v: exit %d, want %d and %s:\n%s", args, r.code, want.Exit, want.Code, r.stderr)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "b.tar*")); len(m) > 0 {
				t.Errorf("stella %v wrote %v", args, m)
			}
			// A build refused for its --split stores nothing either.
			if args[1] == "build" {
				if r := stella(t, filepath.Join(dir, "fresh"), nil, args...); r.code != want.Exit {
					t.Errorf("stella %v in a fresh home: exit %d:\n%s", args, r.code, r.stderr)
				}
				if _, err := os.Stat(filepath.Join(dir, "fresh", "packs")); err == nil {
					t.Errorf("stella %v stored the pack in a fresh home", args)
				}
			}
		}
	}
}

// TestSignWithAPublicKey: a public key given to sign with is named as
// such, not as "not a key".
func TestSignWithAPublicKey(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	pass := filepath.Join(dir, "pass")
	writeFile(t, pass, "a throwaway test passphrase\n")
	env := map[string]string{"STELLA_KEY_PASSPHRASE_FILE": pass}
	stellaSteps(t, home, env, [][]string{{"key", "generate", "--dir", dir, "alice"}, {"pack", "init", "--dir", filepath.Join(dir, "hello"), "hello"}})
	r := stella(t, home, env, "pack", "build", "--sign", "--key", filepath.Join(dir, "alice.pub"), filepath.Join(dir, "hello"))
	want := lookupError(keys.ErrNotAKey)
	if r.code != want.Exit || !strings.Contains(r.stderr, "error: "+want.Code+": ") || !strings.Contains(r.stderr, "alice.pub: a public key, which cannot sign") {
		t.Fatalf("build --sign with a public key: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestRequestForASkippedGate: asking approval of a gate the plan skips
// (`pack init`'s pack planned without inputs: dryRun) says so, rather
// than only that the gate is not found.
func TestRequestForASkippedGate(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	stellaSteps(t, home, nil, [][]string{{"pack", "init", "--dir", filepath.Join(dir, "hello"), "hello"}, {"pack", "build", filepath.Join(dir, "hello")}})
	r := stella(t, home, nil, "--output", "json", "pack", "plan", "--save", "--pack", "hello:0.1.0")
	var out struct{ PlanHash string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.PlanHash == "" {
		t.Fatalf("pack plan --save: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	r = stella(t, home, nil, "pack", "approve", "--offline-request", "--plan", out.PlanHash, "--gate", "approve", "-o", filepath.Join(dir, "req.tar"))
	want := lookupError(approve.ErrGateNotFound)
	if r.code != want.Exit || !strings.Contains(r.stderr, "error: "+want.Code+": ") ||
		!strings.Contains(r.stderr, "the plan skips that step") || !strings.Contains(r.stderr, "the plan has no approval gate") {
		t.Fatalf("request for a skipped gate: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestPassphraseFileMissing: a passphrase file that is not there is
// named with the setting that named it.
func TestPassphraseFileMissing(t *testing.T) {
	dir := t.TempDir()
	r := stella(t, filepath.Join(dir, "home"), map[string]string{"STELLA_KEY_PASSPHRASE_FILE": filepath.Join(dir, "nonexist")}, "key", "generate", "--dir", dir, "alice")
	want := lookupError(errFileNotFound)
	if r.code != want.Exit || !strings.Contains(r.stderr, "error: "+want.Code+": STELLA_KEY_PASSPHRASE_FILE: "+filepath.Join(dir, "nonexist")+": ") {
		t.Fatalf("missing passphrase file: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestApprovalsShowOneGate: `pack approvals show PLAN` shows the plan's
// one approval gate as `pack approvals show PLAN GATE` does; for a plan
// without exactly one, it asks for the GATE and names the gates.
func TestApprovalsShowOneGate(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	packDir, inputs := gatedPackFolder(t, dir, 2)
	hello := filepath.Join(dir, "hello")
	stellaSteps(t, home, nil, [][]string{{"pack", "build", packDir}, {"pack", "init", "--dir", hello, "hello"}, {"pack", "build", hello}})
	hash := func(args ...string) string {
		r := stella(t, home, nil, append([]string{"--output", "json", "pack", "plan", "--save"}, args...)...)
		var out struct{ PlanHash string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("pack plan --save %v: exit %d: %s", args, r.code, r.stderr)
		}
		return out.PlanHash
	}
	gated, ungated := hash("--pack", "fan-gate:1.0.0", "--inputs", inputs), hash("--pack", "hello:0.1.0")
	if r := stella(t, home, nil, "pack", "approve", "--offline-request", "--plan", gated, "--gate", "approve", "-o", filepath.Join(dir, "req.tar")); r.code != 0 {
		t.Fatal(r.stderr)
	}
	both := stella(t, home, nil, "pack", "approvals", "show", gated, "approve")
	one := stella(t, home, nil, "pack", "approvals", "show", gated)
	if both.code != 0 || one.code != 0 || one.stdout != both.stdout || !strings.Contains(one.stdout, "gate approve of plan") {
		t.Fatalf("approvals show with and without its one gate: exit %d, %d:\n%s\n%s%s", both.code, one.code, both.stdout, one.stdout, one.stderr)
	}
	r := stella(t, home, nil, "pack", "approvals", "show", ungated)
	if want := lookupError(errUsage); r.code != want.Exit || !strings.Contains(r.stderr, "show: plan "+ungated+" has no approval gate: no gate to show") {
		t.Fatalf("approvals show of a plan without a gate: exit %d:\n%s", r.code, r.stderr)
	}
	// A request without --gate names the plan's gates too.
	r = stella(t, home, nil, "pack", "approve", "--offline-request", "--plan", gated, "-o", filepath.Join(dir, "req2.tar"))
	if want := lookupError(errUsage); r.code != want.Exit || !strings.Contains(r.stderr, "--gate is required: plan "+gated+"'s approval gates: approve") {
		t.Fatalf("request without --gate: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestCounted: one ref, two refs, no blobs.
func TestCounted(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0 refs"}, {1, "1 ref"}, {2, "2 refs"}} {
		if got := counted(c.n, "ref"); got != c.want {
			t.Errorf("counted(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

// stellaSteps runs each command line in home, failing the test at the
// first that does not exit 0.
func stellaSteps(t *testing.T, home string, env map[string]string, steps [][]string) {
	t.Helper()
	for _, args := range steps {
		if r := stella(t, home, env, args...); r.code != 0 {
			t.Fatalf("stella %v: exit %d:\n%s", args, r.code, r.stderr)
		}
	}
}
