package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOfflinePackagesStayOffline keeps the network and the CLI framework out
// of every package but mirror (network) and cmd/stella (CLI).
func TestOfflinePackagesStayOffline(t *testing.T) {
	offline := []string{"pack", "plan", "bundle", "cache", "keys", "trust", "vault", "approve", "signature", "internal/safefile"}
	forbidden := []string{"net/http", "github.com/urfave/cli/v2", "stellaops.io/stella/mirror"}
	for _, p := range offline {
		out, err := exec.Command("go", "list", "-deps", "stellaops.io/stella/"+p).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "cannot find package") || strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "is not in std") || strings.Contains(string(out), "no required module provides") {
				continue // not written yet
			}
			t.Fatalf("go list %s: %v\n%s", p, err, out)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, f := range forbidden {
				if d == f {
					t.Errorf("%s imports %s (directly or not): offline packages must not", p, f)
				}
			}
		}
	}
}
