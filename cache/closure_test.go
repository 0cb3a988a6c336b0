package cache_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// TestClosure: each named artifact, then its referrers depth first, each
// level sorted by digest, each artifact once even when named twice.
func TestClosure(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	s := cachetest.Open(t)
	p1, p2 := src.pack(t, "one"), src.pack(t, "two")
	sigA, sigB := src.signature(t, p1, "a"), src.signature(t, p1, "b")
	sigOfSig := src.signature(t, sigA, "nested")
	sigP2 := src.signature(t, p2, "c")
	arts := []cache.Artifact{packArtifact(p1, "one:1"), packArtifact(p2, "two:1"), sigArtifact(sigA), sigArtifact(sigB), sigArtifact(sigOfSig), sigArtifact(sigP2)}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Closure(ctx, []string{"two:1", "one:1", "two:1"})
	if err != nil {
		t.Fatal(err)
	}
	first, second := sigA, sigB
	if second.Digest < first.Digest {
		first, second = second, first
	}
	want := []digest.Digest{p2.Digest, sigP2.Digest, p1.Digest, first.Digest}
	if first.Digest == sigA.Digest {
		want = append(want, sigOfSig.Digest)
	}
	want = append(want, second.Digest)
	if second.Digest == sigA.Digest {
		want = append(want, sigOfSig.Digest)
	}
	var gotDigests []digest.Digest
	for _, a := range got {
		gotDigests = append(gotDigests, a.Descriptor.Digest)
		if a.Descriptor.Digest != p1.Digest && a.Descriptor.Digest != p2.Digest && a.Kind != "signature" {
			t.Errorf("%s: kind %q, want signature", a.Descriptor.Digest, a.Kind)
		}
	}
	if diff := cmp.Diff(want, gotDigests); diff != "" {
		t.Fatalf("closure order (-want +got):\n%s", diff)
	}
	if _, err := s.Closure(ctx, []string{"three:1"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}
