package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	a := src.pack(t, "only in a", "shared by a and b")
	sigA := src.signature(t, a, "signature of a")
	b := src.pack(t, "shared by a and b", "only in b")
	arts := []cache.Artifact{packArtifact(a, "a:1"), sigArtifact(sigA), packArtifact(b, "b:1")}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}

	// Nothing to collect while everything is referenced.
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 0 || res.Leftovers != 0 {
		t.Fatalf("gc of a clean cache removed %+v", res)
	}

	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(s.Root(), "ingest", ".stella-tmp-deadbeef-1")
	if err := os.WriteFile(old, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	want := sortedDigests(a.Digest, sha([]byte("only in a")), sigA.Digest, sha([]byte("signature of a")))
	var wantBytes int64 = a.Size + sigA.Size + int64(len("only in a")+len("signature of a"))

	dry, err := s.GC(ctx, cache.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, dry.Removed); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if dry.Bytes != wantBytes || dry.Leftovers != 1 || dry.LeftoverBytes != 1000 || !dry.DryRun {
		t.Errorf("dry run = %+v", dry)
	}
	for _, d := range want {
		if !fileExists(blobPath(s, d)) {
			t.Errorf("dry run removed %s", d)
		}
	}

	res, err = s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, res.Removed); diff != "" {
		t.Errorf("gc (-want +got):\n%s", diff)
	}
	if res.Bytes != wantBytes || res.Leftovers != 1 {
		t.Errorf("gc = %+v", res)
	}
	for _, d := range want {
		if fileExists(blobPath(s, d)) {
			t.Errorf("gc left %s", d)
		}
	}
	if fileExists(old) {
		t.Errorf("gc left the ingest leftover")
	}
	// b is whole.
	for _, d := range []digest.Digest{b.Digest, sha([]byte("shared by a and b")), sha([]byte("only in b"))} {
		if !fileExists(blobPath(s, d)) {
			t.Errorf("gc removed %s of b", d)
		}
	}
	if got := fetchAll(t, s, b); len(got) != int(b.Size) {
		t.Errorf("b's manifest unreadable")
	}
	again, err := s.GC(ctx, cache.GCOptions{})
	if err != nil || again.Blobs != 0 || again.Leftovers != 0 {
		t.Errorf("second gc = %+v, %v", again, err)
	}
}

func TestGCKeepsFreshLeftovers(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	root := t.TempDir()
	s, err := cache.Open(ctx, root, cache.Options{Now: func() time.Time { return now.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(root, "ingest", ".stella-tmp-fresh")
	if err := os.WriteFile(fresh, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Leftovers != 0 || !fileExists(fresh) {
		t.Errorf("gc removed a file newer than its start: %+v", res)
	}
	_ = os.Remove(fresh)
	cachetest.Check(t, s)
}
