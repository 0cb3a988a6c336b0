package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// gatedPackFolder writes a pack whose plan is an approval gate, then a
// map over n hosts (n+2 steps), and its inputs.
func gatedPackFolder(tb testing.TB, dir string, n int) (string, string) {
	tb.Helper()
	p, in := mapPackFolder(tb, dir, n)
	manifest := `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: fan-gate
  version: 1.0.0
  description: Touch every host of a large fleet, once approved.
spec:
  inputs:
    - name: hosts
      type: array
      required: true
  approvals:
    - id: change-board
      role: Packs.Approve
      minApprovers: 1
      expiresAfter: 8h
  steps:
    - id: approve
      gate:
        approval: change-board
    - id: fleet
      map:
        items: inputs.hosts
        maxParallel: 16
        steps:
          - id: touch
            run:
              command: ["sh", "touch.sh", "${{ item }}", "${{ index }}"]
`
	if err := os.WriteFile(filepath.Join(p, "pack.yaml"), []byte(manifest), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p, in
}

// savedPlanCommands are the commands that read a saved plan (or the plan
// an approval request carries), measured by savedPlanPeaks.
var savedPlanCommands = []string{"plans-show", "plans-show-json", "request", "review", "review-json", "sign", "approvals-show"}

// savedPlanPeaks saves, in home, the plan of a gated pack over n hosts
// and returns the peak RSS (MiB) of each of savedPlanCommands run on it,
// as real processes; it checks what each printed.
func savedPlanPeaks(tb testing.TB, dir, home string, n int) map[string]float64 {
	tb.Helper()
	packDir, inputs := gatedPackFolder(tb, dir, n)
	hwm, pass := filepath.Join(dir, "hwm"), filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("a throwaway test passphrase\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home, "STELLA_BENCH_HWM_FILE="+hwm, "STELLA_KEY_PASSPHRASE_FILE="+pass)
		out, err := cmd.Output()
		if err != nil {
			tb.Fatalf("stella %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	run("--quiet", "pack", "build", packDir)
	out := run("--quiet", "pack", "plan", "--pack", "fan-gate:1.0.0", "--inputs", inputs, "--save")
	m := regexp.MustCompile(`plan hash: sha256:([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		tb.Fatalf("pack plan --save printed no hash:\n%.300s", out)
	}
	hash := m[1]
	last := fmt.Sprintf("fleet[%d]::touch", n-1)
	request, response := filepath.Join(dir, "request.stella.tar"), filepath.Join(dir, "response.stella.tar")
	run("--quiet", "key", "generate", "--dir", filepath.Join(dir, "keys"), "approver")
	peaks := map[string]float64{}
	for _, c := range []struct {
		name string
		args []string
		want string // in what the command printed
	}{
		{"plans-show", []string{"pack", "plans", "show", hash[:12]}, last + " run pending"},
		{"plans-show-json", []string{"--output", "json", "pack", "plans", "show", hash[:12]}, ""},
		{"request", []string{"pack", "approve", "--offline-request", "--plan", hash[:12], "--gate", "approve", "-o", request}, request},
		{"review", []string{"pack", "approve", "review", request}, last},
		{"review-json", []string{"--output", "json", "pack", "approve", "review", request}, `"id": "` + last + `"`},
		{"sign", []string{"pack", "approve", "sign", "--yes", "--key", filepath.Join(dir, "keys", "approver.key"), "-o", response, request}, response},
		{"approvals-show", []string{"pack", "approvals", "show", hash[:12], "approve"}, "pending"},
	} {
		out := run(append([]string{"--quiet"}, c.args...)...)
		if c.name == "plans-show-json" {
			// The JSON is the plan's bytes: they hash to the plan hash.
			sum := sha256.Sum256([]byte(strings.TrimSuffix(out, "\n")))
			if got := hex.EncodeToString(sum[:]); got != hash {
				tb.Fatalf("plans show --output json printed bytes hashing to %s, want %s", got, hash)
			}
		} else if !strings.Contains(out, c.want) {
			tb.Fatalf("%s printed no %q:\n%.300s", c.name, c.want, out)
		}
		peaks[c.name] = readHWM(tb, hwm)
	}
	return peaks
}

// TestSavedPlanPeakRSSPerStep: the peak RSS of the commands that read a
// saved plan (plans show, an approval request, its review, the gate's
// state) grows by a bounded number of bytes a step from a plan of 2,000
// steps to one of 40,000, the small size of BenchmarkPeakRSSTenfold's
// saved-plan part. Each read the plan whole (its bytes, parsed, parsed
// again as a tree, encoded again): 5.2–6.3 KiB a step measured, ~550–650
// MiB at 100,000 steps.
func TestSavedPlanPeakRSSPerStep(t *testing.T) {
	const small, large = 2000, 40000
	limits := map[string]float64{"plans-show": 1024, "plans-show-json": 512, "request": 512, "review": 1024, "review-json": 1024, "sign": 1024, "approvals-show": 256}
	dir := t.TempDir()
	lo := savedPlanPeaks(t, filepath.Join(dir, "small"), filepath.Join(dir, "small-home"), small)
	hi := savedPlanPeaks(t, filepath.Join(dir, "large"), filepath.Join(dir, "large-home"), large)
	for _, name := range savedPlanCommands {
		perStep := (hi[name] - lo[name]) * (1 << 20) / (large - small)
		limit := limits[name]
		if raceEnabled {
			limit *= 3
		}
		t.Logf("%s: peak RSS %.1f MiB at %d steps, %.1f MiB at %d: %.0f bytes a step (limit %.0f)", name, lo[name], small, hi[name], large, perStep, limit)
		if perStep > limit {
			t.Errorf("peak RSS of %s grows by %.0f bytes a step (%.1f MiB at %d steps, %.1f MiB at %d), more than %.0f", name, perStep, lo[name], small, hi[name], large, limit)
		}
	}
}
