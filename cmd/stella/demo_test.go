package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs scripts/demo.sh — what `make demo` runs — against this
// binary, so the README's first command stays true after every change.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	wrapper := filepath.Join(t.TempDir(), "stella")
	script := "#!/bin/sh\nSTELLA_RUN_MAIN=1 exec '" + os.Args[0] + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../../scripts/demo.sh", wrapper)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"valid pack rotate-creds:0.1.0", "approvals required: 1", "signature policy: required", "ERR_PACK_DIGEST_MISMATCH", "approved 1/1", "already recorded", "awaiting-approval", ": succeeded", "demo complete"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
