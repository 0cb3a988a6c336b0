package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// TestGCHonoursHolds: what a running export holds (its closure, resolved
// and held at once) survives a gc that runs after its refs were removed,
// is reported as held with its holder, and goes with the first gc after
// the hold ends.
func TestGCHonoursHolds(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := cache.Open(ctx, root, cache.Options{Holder: "stella pack export"})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	a := src.pack(t, "only in a", "shared by a and b")
	sigA := src.signature(t, a, "signature of a")
	b := src.pack(t, "shared by a and b", "only in b")
	arts := []cache.Artifact{packArtifact(a, "a:1"), sigArtifact(sigA), packArtifact(b, "b:1")}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}

	got, h, err := s.HoldClosure(ctx, []string{"a:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	if len(got) != 2 || got[0].Descriptor.Digest != a.Digest || got[1].Descriptor.Digest != sigA.Digest {
		t.Fatalf("closure = %+v", got)
	}
	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	aOnly := sortedDigests(a.Digest, sha([]byte("only in a")), sigA.Digest, sha([]byte("signature of a")))

	for _, dry := range []bool{true, false} {
		res, err := s.GC(ctx, cache.GCOptions{DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if res.Blobs != 0 || len(res.Removed) != 0 {
			t.Errorf("gc (dry run %v) removed held blobs: %v", dry, res.Removed)
		}
		if diff := cmp.Diff(aOnly, res.Held); diff != "" {
			t.Errorf("gc (dry run %v) held (-want +got):\n%s", dry, diff)
		}
		if len(res.Holders) != 1 || res.Holders[0].PID != os.Getpid() || res.Holders[0].Command != "stella pack export" {
			t.Errorf("gc (dry run %v) holders = %+v", dry, res.Holders)
		}
	}
	// What the export reads is whole.
	for _, d := range aOnly {
		if !fileExists(blobPath(s, d)) {
			t.Errorf("held %s is gone", d)
		}
	}
	if n := len(fetchAll(t, s, a)); n != int(a.Size) {
		t.Errorf("held manifest of a: %d bytes, want %d", n, a.Size)
	}

	h.Release()
	h.Release() // idempotent
	if ents, _ := os.ReadDir(filepath.Join(root, "holds")); len(ents) != 0 {
		t.Errorf("release left hold files: %v", ents)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(aOnly, res.Removed); diff != "" {
		t.Errorf("gc after release (-want +got):\n%s", diff)
	}
	if len(res.Held) != 0 || len(res.Holders) != 0 {
		t.Errorf("gc after release still honours a hold: %+v", res)
	}
	cachetest.Check(t, s)
}

// TestGCIgnoresStaleHolds: a hold file nobody has locked (its process was
// killed) keeps nothing and is removed.
func TestGCIgnoresStaleHolds(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := cache.Open(ctx, root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	a := src.pack(t, "only in a")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "a:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "holds", "999999-00.hold")
	writeTestFile(t, stale, `{"pid":999999,"command":"stella pack export","since":"2026-01-01T00:00:00Z","digests":["`+string(a.Digest)+`"]}`)
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 3 || len(res.Held) != 0 || len(res.Holders) != 0 || fileExists(blobPath(s, a.Digest)) {
		t.Errorf("gc honoured a stale hold: %+v", res)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale hold file kept: %v", err)
	}
}

// TestHoldClosureNotFound: a ref that names nothing holds nothing.
func TestHoldClosureNotFound(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := cache.Open(ctx, root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.HoldClosure(ctx, []string{"nope:1"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "holds")); len(ents) != 0 {
		t.Errorf("a failed hold left files: %v", ents)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
