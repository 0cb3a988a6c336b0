package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// TestStagedImport: blobs staged before their digests were known (the one
// read of a pack build, ADR 0023) are taken by the import instead of being
// fetched (the source here has only the manifest and config, so a fetch
// fails), made durable with the batch (as few syncs for 2,000 staged files
// as for 20), recorded, and read back intact. What the import does not
// take (already in the cache, or not in the graph) is removed by Close, and
// nothing is left in ingest/.
func TestStagedImport(t *testing.T) {
	ctx := context.Background()
	build := func(s *Store, ref string, n int, extra ...string) (Artifact, *Stage, map[digest.Digest][]byte, *memory.Store) {
		st, err := s.Stage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[digest.Digest][]byte{}
		var layers []ocispec.Descriptor
		for i := range n {
			b := []byte(fmt.Sprintf("file %d of %d", i, n))
			if i == n-1 {
				b = []byte(fmt.Sprintf("file %d of %d", 0, n)) // the same content twice: staged once
			}
			d, size, err := st.Add(ctx, "file", bytesReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if d != digest.FromBytes(b) || size != int64(len(b)) {
				t.Fatalf("staged %q as %s (%d bytes)", b, d, size)
			}
			want[d] = b
			layers = append(layers, ocispec.Descriptor{MediaType: "application/vnd.example.file", Digest: d, Size: size})
		}
		for _, e := range extra {
			if _, _, err := st.Add(ctx, "extra", bytesReader([]byte(e))); err != nil {
				t.Fatal(err)
			}
		}
		src := memory.New()
		cfg := []byte(`{}`)
		cd := ocispec.Descriptor{MediaType: "application/vnd.example.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
		if err := src.Push(ctx, cd, bytesReader(cfg)); err != nil {
			t.Fatal(err)
		}
		m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cd, Layers: layers})
		if err != nil {
			t.Fatal(err)
		}
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
		if err := src.Push(ctx, md, bytesReader(m)); err != nil {
			t.Fatal(err)
		}
		return Artifact{Descriptor: md, Kind: "pack", Ref: ref}, st, want, src
	}
	run := func(s *Store, ref string, n int, extra ...string) (syncs int64, res ImportResult) {
		// src has only the manifest and config: a layer fetched, not
		// taken from the stage, fails the import.
		a, st, want, src := build(s, ref, n, extra...)
		s0 := s.syncs.Load()
		res, err := s.Import(ctx, src, []Artifact{a}, ImportRecord{From: "test"}, ImportOptions{Stage: st})
		if err != nil {
			t.Fatal(err)
		}
		syncs = s.syncs.Load() - s0
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Add(ctx, "late", bytesReader([]byte("late"))); err == nil {
			t.Fatal("Add after Close succeeded")
		}
		for d, b := range want {
			rc, err := s.Fetch(ctx, ocispec.Descriptor{Digest: d, Size: int64(len(b))})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(b)+1)
			k, _ := rc.Read(got)
			_ = rc.Close()
			if string(got[:k]) != string(b) {
				t.Fatalf("blob %s: %q, want %q", d, got[:k], b)
			}
		}
		if left, err := os.ReadDir(s.path(ingestDir)); err != nil || len(left) > 0 {
			t.Fatalf("ingest/ after a staged import: %v %v", left, err)
		}
		if rep, err := s.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
			t.Fatalf("verify after staged import: %+v, %v", rep, err)
		}
		return syncs, res
	}
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s20, res := run(s, "small:1", 20, "not in the graph")
	if res.Artifacts[0].Status != StatusNew || res.BlobsWritten != 19+2 { // 19 distinct files, the config and the manifest
		t.Fatalf("staged import: status %s, %d blobs written, want new and 21", res.Artifacts[0].Status, res.BlobsWritten)
	}
	// The same files again under another ref: all present, the staged
	// copies are removed.
	if _, res = run(s, "again:1", 20); res.BlobsWritten != 0 || res.Artifacts[0].Status != StatusLinked {
		t.Fatalf("staged import of present blobs: %d written, status %s", res.BlobsWritten, res.Artifacts[0].Status)
	}
	s2000, _ := run(s, "large:1", 2000)
	if runtime.GOOS == "linux" && (s2000 > s20 || s2000 > 4) {
		t.Errorf("staged import: %d syncs for 20 files, %d for 2,000: want the same, at most 4", s20, s2000)
	}
}
