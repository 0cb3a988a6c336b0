package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
)

// TestHashPasses counts the bytes each command hashes over a pack of a few
// MiB (integrity.HashedBytes), so that a pass added over the content fails
// a test whatever the speed of the machine (issue 13). The necessary passes:
//
//   - pack build: 1. Each file is hashed while it is written into the
//     cache, in its one read, and named by that digest (ADR 0023): a stat
//     before and after the read, not a second hash, shows it did not change
//     meanwhile. A file modified less than two seconds before its read is
//     read a second time (2), since its modification time could not show a
//     change; the test's files are dated an hour back, as files a build
//     reads usually are.
//   - pack build -o: 3, that one pass, then those of the export: it checks
//     each blob it reads from the cache (2) and hashes the bundle file for
//     the sha256 it prints (3).
//   - pack export: 2, the last two of those.
//   - pack import: 1, each blob checked as it is written into the cache
//     (the bundle's check and the cache's are one).
//   - pack export --split: 3, the cache's read check, each part's sha256
//     and the whole-file sha256 of the parts manifest.
//   - pack import of a split set: 3, each part's sha256 and the whole-file
//     sha256 (bundle-format.md §7), checked beside the import and before
//     anything is recorded, and the import's one pass.
//
// Slack: manifests, tar headers and padding, a few KiB.
func TestHashPasses(t *testing.T) {
	dir := t.TempDir()
	src, content := passesPack(t, dir)
	const size = 1 << 20
	passes := func(name string, want int, args ...string) {
		t.Helper()
		before := integrity.HashedBytes()
		if r := stella(t, filepath.Join(dir, name), nil, args...); r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
		got := integrity.HashedBytes() - before
		if got < int64(want)*content || got > int64(want)*content+64<<10 {
			t.Errorf("%s of %d bytes hashed %d bytes (%.2f passes), want %d passes", name, content, got, float64(got)/float64(content), want)
		}
	}
	built := filepath.Join(dir, "built.stella.tar")
	passes("builder", 3, "--quiet", "pack", "build", "-o", built, src)
	passes("builder", 1, "--quiet", "pack", "build", src)
	// A file just written is read twice: its stat cannot prove it unchanged.
	now := time.Now()
	if err := os.Chtimes(filepath.Join(src, "layer-0.bin"), now, now); err != nil {
		t.Fatal(err)
	}
	racy := integrity.HashedBytes()
	if r := stella(t, filepath.Join(dir, "racy"), nil, "--quiet", "pack", "build", src); r.code != 0 {
		t.Fatalf("racy build: exit %d\n%s", r.code, r.stderr)
	}
	if got, want := integrity.HashedBytes()-racy, content+size; got < want || got > want+64<<10 {
		t.Errorf("build with one file just modified hashed %d bytes, want %d (that file twice)", got, want)
	}
	passes("builder", 2, "--quiet", "pack", "export", "-o", filepath.Join(dir, "exported.stella.tar"), "bench:1.0.0")
	passes("importer", 1, "--quiet", "pack", "import", "--bundle", built)
	split := filepath.Join(dir, "split.stella.tar")
	passes("builder", 3, "--quiet", "pack", "export", "--split", "1MiB", "-o", split, "bench:1.0.0")
	passes("split-importer", 3, "--quiet", "pack", "import", "--bundle", split)
}

// TestSplitPasses counts the reads of the parts of a split set
// (bundle.PartBytesRead) and the bytes hashed by `pack verify` and
// `pack import` of it (issue 13): the part and whole-file checks are not
// passes of their own.
//
//   - pack verify: one read of the parts, in file order, which hashes the
//     blobs, each part and the whole set (3 hash passes, side by side).
//   - pack import: at most two reads, the import's of the blobs (in graph
//     order, several at once) and the part checks' beside it, in file
//     order; 3 hash passes.
//   - pack verify of the single file, for comparison: one read, one hash.
func TestSplitPasses(t *testing.T) {
	dir := t.TempDir()
	src, content := passesPack(t, dir)
	single := filepath.Join(dir, "single.stella.tar")
	split := filepath.Join(dir, "split.stella.tar")
	home := filepath.Join(dir, "builder")
	for _, args := range [][]string{
		{"pack", "build", "-o", single, src},
		{"pack", "export", "--split", "700KiB", "-o", split, "bench:1.0.0"},
	} {
		if r := stella(t, home, nil, append([]string{"--quiet"}, args...)...); r.code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	fi, err := os.Stat(single)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	const slack = 64 << 10 // headers, index and manifests, read by open and by the admission check
	run := func(name string, reads, hashes int, args ...string) {
		t.Helper()
		read, hashed := bundle.PartBytesRead(), integrity.HashedBytes()
		if r := stella(t, filepath.Join(dir, name), nil, append([]string{"--quiet"}, args...)...); r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
		read, hashed = bundle.PartBytesRead()-read, integrity.HashedBytes()-hashed
		if read > int64(reads)*size+slack {
			t.Errorf("%v read %d bytes of a %d-byte split set (%.2f passes), want at most %d", args, read, size, float64(read)/float64(size), reads)
		}
		// Each hash pass covers the content at least, the set at most.
		if hashed < int64(hashes)*content || hashed > int64(hashes)*size+slack {
			t.Errorf("%v hashed %d bytes of %d (set %d bytes): %.2f passes, want %d", args, hashed, content, size, float64(hashed)/float64(content), hashes)
		}
	}
	run("builder", 0, 1, "pack", "verify", single)
	run("builder", 1, 3, "pack", "verify", split)
	run("split-importer", 2, 3, "pack", "import", "--bundle", split)
}

// passesPack writes a pack of four random 1 MiB files under dir and
// returns its folder and the size of its files.
func passesPack(t *testing.T, dir string) (string, int64) {
	t.Helper()
	const files, size = 4, 1 << 20
	src := filepath.Join(dir, "bench")
	writeFile(t, filepath.Join(src, "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: bench
  version: 1.0.0
  description: Hash passes.
spec:
  steps:
    - id: load
      run: {command: ["true"]}
`)
	rng := rand.NewChaCha8([32]byte{13})
	for i := range files {
		b := make([]byte, size)
		_, _ = rng.Read(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("layer-%d.bin", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Dated an hour back, as files a build reads usually are (a file
	// modified in the last two seconds is read twice: ADR 0023).
	old := time.Now().Add(-time.Hour)
	for i := range files {
		if err := os.Chtimes(filepath.Join(src, fmt.Sprintf("layer-%d.bin", i)), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return src, int64(files * size)
}
