package regtest

import (
	"net"
	"path/filepath"
	"testing"
)

// StartReferrers runs olareg (github.com/olareg/olareg, declared with `tool` in
// tools/go.mod and built like the other tools) as a child process on a free loopback
// port: memory storage, deletes enabled, the native OCI 1.1 referrers API, plain HTTP,
// no auth. It waits until GET /v2/ answers; t.Cleanup kills the process and waits for
// it.
//
// It runs out of process rather than behind httptest because olareg's config package
// hashes a password with bcrypt when it is initialized: a test binary linking it pays
// that in every process it starts, and cmd/stella's scripts start the test binary
// hundreds of times, under -race at more than a second of CPU each.
func StartReferrers(t testing.TB) *Registry {
	t.Helper()
	bin := Tool(t, "olareg")
	dir := t.TempDir()
	r := &Registry{PlainHTTP: true, LogFile: filepath.Join(dir, "registry.log")}
	for attempt := 1; ; attempt++ {
		addr, err := freePort()
		if err != nil {
			t.Fatalf("regtest: %v", err)
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("regtest: %v", err)
		}
		r.Host, r.URL = addr, "http://"+addr
		if r.launch(t, attempt, bin, []string{"serve", "--addr", "127.0.0.1", "--port", port,
			"--store-type", "mem", "--api-delete", "--api-blob-delete", "--api-referrer"}, "", false) {
			return r
		}
	}
}
