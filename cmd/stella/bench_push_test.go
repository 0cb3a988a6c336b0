package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/internal/regtest"
)

// targetPushExistingVsOras is issue 13's target for pushing content the
// registry already has, against `oras copy` of the same.
const targetPushExistingVsOras = 1.2

// BenchmarkPushExisting pushes a pack of 1,000 files of 1–8 KiB that the
// registry already has, again, as operators run it (real processes):
// `stella pack push` from the cache (by default, trusting the manifest the
// registry has; and with --check-blobs, checking every blob) against `oras
// copy --from-oci-layout` of the same pack's bundle to a repository that
// has it. Runs alternate, so the ratios are measured in the same conditions.
func BenchmarkPushExisting(b *testing.B) {
	orasBin := regtest.Tool(b, "oras")
	dir := b.TempDir()
	folder, _ := manyFilesPack(b, dir, 1000)
	home := filepath.Join(dir, "home")
	bundleFile := filepath.Join(dir, "many.stella.tar")
	runStella(b, home, "pack", "build", "-o", bundleFile, folder)
	st, err := cache.Open(context.Background(), filepath.Join(home, "packs"), cache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	art, err := st.Resolve(context.Background(), "many:1.0.0")
	if err != nil {
		b.Fatal(err)
	}
	r := regtest.Start(b, regtest.Options{})
	stellaRepo := r.Host + "/bench/many-stella"
	orasArgs := []string{"copy", "--from-oci-layout", bundleFile + "@" + art.Descriptor.Digest.String(), "--to-plain-http", r.Host + "/bench/many-oras:1.0.0"}
	orasHome := filepath.Join(dir, "oras-home")
	oras := func() time.Duration {
		cmd := exec.Command(orasBin, orasArgs...)
		cmd.Env = append(os.Environ(), "HOME="+orasHome, "DOCKER_CONFIG="+orasHome, "XDG_CONFIG_HOME="+orasHome)
		d, _ := timed(b, cmd)
		return d
	}
	runStella(b, home, "pack", "push", "--plain-http", "many:1.0.0", stellaRepo)
	oras()
	var stella, check, orasTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stella += runStella(b, home, "pack", "push", "--plain-http", "many:1.0.0", stellaRepo)
		check += runStella(b, home, "pack", "push", "--check-blobs", "--plain-http", "many:1.0.0", stellaRepo)
		orasTime += oras()
	}
	b.StopTimer()
	b.ReportMetric(stella.Seconds()/orasTime.Seconds(), "push-existing/oras-copy")
	b.ReportMetric(check.Seconds()/orasTime.Seconds(), "check-blobs/oras-copy")
	per := func(d time.Duration) string { return fmt.Sprint(d / time.Duration(b.N)) }
	b.Logf("per run: stella pack push %s, with --check-blobs %s, oras copy %s; target push-existing/oras-copy <= %.1f",
		per(stella), per(check), per(orasTime), targetPushExistingVsOras)
}
