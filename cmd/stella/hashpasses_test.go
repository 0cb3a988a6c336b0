package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
)

// TestHashPasses counts the bytes each command hashes over a pack of a few
// MiB (integrity.HashedBytes), so that a pass added over the content fails
// a test whatever the speed of the machine (issue 13). The necessary passes:
//
//   - pack build -o: 4. The folder is hashed to name its files in the
//     manifest (1); each file is checked again as it is copied into the
//     cache, since it may have changed since (2, one check though both the
//     pack and the cache verify); the export checks each blob it reads from
//     the cache (3) and hashes the bundle file for the sha256 it prints (4).
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
	passes("builder", 4, "--quiet", "pack", "build", "-o", built, src)
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
	return src, int64(files * size)
}
