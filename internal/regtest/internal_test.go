package regtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestToolVersion(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "regtest", "doc.go")); err != nil {
		t.Fatalf("repo root %s: %v", root, err)
	}
	got, err := toolVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	if got != "v3.1.2" {
		t.Fatalf("distribution version in tools/go.mod = %q, want v3.1.2", got)
	}
}

func TestModuleName(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ gomod, want string }{
		{"module stellaops.io/stella\n\ngo 1.26\n", "stellaops.io/stella"},
		{"// comment\nmodule \"stellaops.io/stella/tools\"\n", "stellaops.io/stella/tools"},
		{"go 1.26\n", ""},
	} {
		path := filepath.Join(dir, "go.mod")
		if err := os.WriteFile(path, []byte(tc.gomod), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := moduleName(path); got != tc.want {
			t.Errorf("moduleName(%q) = %q, want %q", tc.gomod, got, tc.want)
		}
	}
}

// The cleanup registered by Start leaves neither a process nor a listener behind.
func TestStartCleanupStopsRegistry(t *testing.T) {
	t.Parallel()
	var r *Registry
	t.Run("registry", func(t *testing.T) {
		r = Start(t, Options{})
		if r.pid == 0 || !processAlive(r.pid) {
			t.Fatalf("registry process %d is not running", r.pid)
		}
	})
	if r == nil || r.pid == 0 {
		t.Fatal("registry did not start")
	}
	if processAlive(r.pid) {
		t.Errorf("registry process %d still running after cleanup", r.pid)
	}
	if c, err := net.DialTimeout("tcp", r.Host, time.Second); err == nil {
		_ = c.Close()
		t.Errorf("%s still accepts connections after cleanup", r.Host)
	}
}
