package plan

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/pack"
)

var update = flag.Bool("update", false, "rewrite testdata/plans/hashes.txt")

func loadDir(t testing.TB, dir string) (*pack.Pack, digest.Digest) {
	t.Helper()
	p, err := pack.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, a.Digest()
}

func planHash(t testing.TB, p *pack.Pack, d digest.Digest, inputs string) digest.Digest {
	t.Helper()
	in, err := p.ResolveInputs("inputs.json", []byte(inputs))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, d, in)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pl.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestGoldenHashes pins the plan hash of every sample pack with its inputs.
// A change here invalidates approvals made on earlier plans: it must be a
// deliberate format change, made with -update.
func TestGoldenHashes(t *testing.T) {
	dirs, _ := filepath.Glob("../testdata/packs/*")
	var lines []string
	for _, dir := range dirs {
		p, d := loadDir(t, dir)
		raw, _ := os.ReadFile(filepath.Join(dir, "inputs.json"))
		lines = append(lines, fmt.Sprintf("%s %s %s", filepath.Base(dir), d, planHash(t, p, d, string(raw))))
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := "../testdata/plans/hashes.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("pack digests or plan hashes changed (-want +got):\n%s", diff)
	}
}

func TestHashStableAcrossRunsAndGOMAXPROCS(t *testing.T) {
	p, d := loadDir(t, "../testdata/packs/remediate-cve")
	raw, _ := os.ReadFile("../testdata/packs/remediate-cve/inputs.json")
	first := planHash(t, p, d, string(raw))
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for i := 0; i < 50; i++ {
		runtime.GOMAXPROCS(1 + i%4)
		// Reload the pack too: map iteration order differs between loads.
		p2, d2 := loadDir(t, "../testdata/packs/remediate-cve")
		if h := planHash(t, p2, d2, string(raw)); h != first {
			t.Fatalf("run %d: hash %s, want %s", i, h, first)
		}
	}
}

// TestHashStableAcrossProcesses plans in child processes with different
// GOMAXPROCS and compares with this process.
func TestHashStableAcrossProcesses(t *testing.T) {
	if os.Getenv("STELLA_PLAN_CHILD") == "1" {
		return
	}
	p, d := loadDir(t, "../testdata/packs/audit-evidence")
	raw, _ := os.ReadFile("../testdata/packs/audit-evidence/inputs.json")
	want := planHash(t, p, d, string(raw))
	for _, procs := range []string{"1", "2", "7"} {
		cmd := exec.Command(os.Args[0], "-test.run=TestChildPrintsHash$", "-test.v")
		cmd.Env = append(os.Environ(), "STELLA_PLAN_CHILD=1", "GOMAXPROCS="+procs)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "HASH="+string(want)) {
			t.Fatalf("GOMAXPROCS=%s child printed %s, want HASH=%s", procs, out, want)
		}
	}
}

func TestChildPrintsHash(t *testing.T) {
	if os.Getenv("STELLA_PLAN_CHILD") != "1" {
		t.Skip("helper for TestHashStableAcrossProcesses")
	}
	p, d := loadDir(t, "../testdata/packs/audit-evidence")
	raw, _ := os.ReadFile("../testdata/packs/audit-evidence/inputs.json")
	fmt.Printf("HASH=%s\n", planHash(t, p, d, string(raw)))
}

// copyPack copies a sample pack into a MapFS so tests can alter it.
func copyPack(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, _ := de.Info()
		rel, _ := filepath.Rel(dir, path)
		fsys[filepath.ToSlash(rel)] = &fstest.MapFile{Data: b, Mode: info.Mode()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

func hashOf(t *testing.T, fsys fstest.MapFS, inputs string) digest.Digest {
	t.Helper()
	p, err := pack.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return planHash(t, p, a.Digest(), inputs)
}

func TestHashSensitivity(t *testing.T) {
	const dir = "../testdata/packs/rotate-registry-credentials"
	const inputs = `{"registry": "registry.sealed.local:5000", "mirrors": ["a.mirror.sealed.local"]}`
	base := hashOf(t, copyPack(t, dir), inputs)

	replace := func(old, new string) func(fstest.MapFS) {
		return func(fs fstest.MapFS) {
			y := string(fs["pack.yaml"].Data)
			if !strings.Contains(y, old) {
				t.Fatalf("pack.yaml has no %q", old)
			}
			fs["pack.yaml"].Data = []byte(strings.Replace(y, old, new, 1))
		}
	}
	changes := []struct {
		name   string
		alter  func(fstest.MapFS)
		inputs string
	}{
		{"input value", nil, `{"registry": "registry.sealed.local:5001", "mirrors": ["a.mirror.sealed.local"]}`},
		{"input defaulted explicitly to another value", nil, `{"registry": "registry.sealed.local:5000", "mirrors": ["a.mirror.sealed.local"], "account": "other"}`},
		{"one byte of a script", func(fs fstest.MapFS) { fs["scripts/rotate.sh"].Data = append(fs["scripts/rotate.sh"].Data, ' ') }, inputs},
		{"a file's executable bit", func(fs fstest.MapFS) { fs["scripts/verify.sh"].Mode = 0o644 }, inputs},
		{"a new file", func(fs fstest.MapFS) { fs["docs/notes.md"] = &fstest.MapFile{Data: []byte("x")} }, inputs},
		{"a step parameter", replace(`"scripts/verify.sh", "${{ inputs.registry }}"`, `"scripts/verify.sh", "--strict", "${{ inputs.registry }}"`), inputs},
		{"a step timeout", replace("timeout: 5m", "timeout: 6m"), inputs},
		{"the gate's approvers", replace("minApprovers: 1", "minApprovers: 2"), inputs},
		{"the gate's expiry", replace("expiresAfter: 8h", "expiresAfter: 9h"), inputs},
		{"the network policy", replace(`"*.mirror.sealed.local"`, `"*.mirror2.sealed.local"`), inputs},
		{"the failure policy", replace("retries: 2", "retries: 3"), inputs},
		{"a secret reference", replace("vault:registry/admin-password", "vault:registry/admin-password-2"), inputs},
	}
	seen := map[digest.Digest]string{base: "base"}
	for _, c := range changes {
		fs := copyPack(t, dir)
		if c.alter != nil {
			c.alter(fs)
		}
		h := hashOf(t, fs, c.inputs)
		if prev, dup := seen[h]; dup {
			t.Errorf("changing %s gives the same hash as %s", c.name, prev)
		}
		seen[h] = c.name
	}

	same := []struct{ name, inputs string }{
		{"reordered input keys", `{"mirrors": ["a.mirror.sealed.local"], "registry": "registry.sealed.local:5000"}`},
		{"whitespace in the inputs file", "{\n  \"registry\":   \"registry.sealed.local:5000\",\n\t\"mirrors\": [ \"a.mirror.sealed.local\" ]\n}\n"},
		{"a default given explicitly", `{"registry": "registry.sealed.local:5000", "mirrors": ["a.mirror.sealed.local"], "account": "stella-robot"}`},
	}
	for _, c := range same {
		if h := hashOf(t, copyPack(t, dir), c.inputs); h != base {
			t.Errorf("%s changed the hash: %s, want %s", c.name, h, base)
		}
	}
}

func TestExpansionIDsAndStatuses(t *testing.T) {
	p, d := loadDir(t, "../testdata/packs/remediate-cve")
	in, err := p.ResolveInputs("inputs.json", []byte(`{"cve":"CVE-1","package":"p","hosts":["h1","h2"],"reboot":false}`))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, d, in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	pl.Walk(func(s *Step, depth int) {
		got = append(got, fmt.Sprintf("%s%s %s %s", strings.Repeat(" ", depth), s.ID, s.Kind, s.Status))
	})
	want := []string{
		"assess map pending",
		" assess[0]::check-version run pending",
		" assess[1]::check-version run pending",
		"change-board gate.approval requires-approval",
		"patch map pending",
		" patch[0]::install run pending",
		" patch[0]::maybe-reboot conditional pending",
		"  patch[0]::reboot run skipped",
		"  patch[0]::note-pending-reboot run pending",
		" patch[1]::install run pending",
		" patch[1]::maybe-reboot conditional pending",
		"  patch[1]::reboot run skipped",
		"  patch[1]::note-pending-reboot run pending",
		"confirm run pending",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	// Placeholders that read only inputs and item are resolved in the plan.
	install := pl.Steps[2].Children[0]
	if diff := cmp.Diff([]string{"sh", "scripts/patch.sh", "h1", "p"}, install.Run.Command); diff != "" {
		t.Errorf("install command (-want +got)\n%s", diff)
	}
	if install.Run.Env["CVE_ID"] != "CVE-1" {
		t.Errorf("env not rendered: %v", install.Run.Env)
	}
	// Run-scoped secrets reach every run step that is not skipped.
	if diff := cmp.Diff([]Secret{{Name: "ssh-key", Source: "vault:ops/ssh-deploy-key", Required: true, Scope: "run",
		Steps: []string{"assess[0]::check-version", "assess[1]::check-version", "patch[0]::install", "patch[0]::note-pending-reboot", "patch[1]::install", "patch[1]::note-pending-reboot", "confirm"}}}, pl.Secrets); diff != "" {
		t.Errorf("secrets (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]Approval{{Gate: "change-board", Approval: "change-board", Role: "Packs.Approve", MinApprovers: 2, ExpiresAfter: "48h0m0s", Reason: "Production change: two change-board members must approve."}}, pl.Approvals); diff != "" {
		t.Errorf("approvals (-want +got)\n%s", diff)
	}
}

func TestDeferredAndPolicy(t *testing.T) {
	p, d := loadDir(t, "../testdata/packs/sync-vuln-db")
	raw, _ := os.ReadFile("../testdata/packs/sync-vuln-db/inputs.json")
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, d, in)
	if err != nil {
		t.Fatal(err)
	}
	gate := pl.Steps[1]
	if gate.Status != StatusRequiresPolicy || gate.Gate.PolicyResult != nil {
		t.Fatalf("a policy reading step outputs is decided at run time: %+v", gate)
	}
	if n := len(pl.Steps[2].Children); n != 6 {
		t.Fatalf("load over 3 scanners × 2 steps: %d children", n)
	}
}

func TestParseRoundTrip(t *testing.T) {
	p, d := loadDir(t, "../testdata/packs/backup-database")
	in, _ := p.ResolveInputs("inputs.json", []byte(`{"database":"inv"}`))
	pl, err := Build(p, d, in)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := pl.Canonical()
	h, _ := pl.Hash()
	_, h2, err := Parse(c)
	if err != nil || h2 != h {
		t.Fatalf("parse: %v, hash %s want %s", err, h2, h)
	}
	if _, _, err := Parse([]byte(`{"apiVersion":"other"}`)); err == nil {
		t.Fatal("want ErrInvalid")
	}
}
