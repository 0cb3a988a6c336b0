package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

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
	// 20 files are written as files of their own, 200 and 2,000 as a
	// segment (segmentMin): the syncs of either form do not grow with the
	// files.
	s200, _ := run(s, "mid:1", 200)
	s2000, _ := run(s, "large:1", 2000)
	if runtime.GOOS == "linux" && (s20 > 4 || s2000 > s200 || s2000 > 4) {
		t.Errorf("staged import: %d syncs for 20 files, %d for 200, %d for 2,000: want at most 4, the same for 200 and 2,000", s20, s200, s2000)
	}
}

// TestGCBesideStage: a stage writes into its own hold's ingest folder, as
// an import does (ADR 0025), so gc runs beside a build stopped mid-stage:
// it finishes within a second (it waited for the whole stage, up to the
// lock timeout, when the stage held the gc lock shared), removes the
// garbage that was there before, leaves every staged file, and the import
// then takes them all and records a whole pack.
func TestGCBesideStage(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{LockTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("no artifact names this blob")
	gd := ocispec.Descriptor{MediaType: "application/vnd.example.file", Digest: digest.FromBytes(garbage), Size: int64(len(garbage))}
	if err := s.Push(ctx, gd, bytesReader(garbage)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var layers []ocispec.Descriptor
	for i := range 20 { // more than syncEachMax: the import syncs the file system
		b := []byte(fmt.Sprintf("staged file %d", i))
		d, size, err := st.Add(ctx, "file", bytesReader(b))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, ocispec.Descriptor{MediaType: "application/vnd.example.file", Digest: d, Size: size})
	}
	staged := map[string]bool{}
	for _, b := range st.blobs {
		if b.seg != nil {
			staged[b.seg.tmp] = true
			continue
		}
		staged[b.tmp] = true
	}
	start := time.Now()
	res, err := s.GC(ctx, GCOptions{})
	if waited := time.Since(start); err != nil || waited > time.Second {
		t.Fatalf("gc beside a stage: %v after %v, want done within a second", err, waited)
	}
	if len(res.Removed) != 1 || res.Removed[0] != gd.Digest || res.Leftovers != 0 {
		t.Fatalf("gc beside a stage removed %v and %d leftovers, want only the garbage blob %s", res.Removed, res.Leftovers, gd.Digest)
	}
	for tmp := range staged {
		if _, err := os.Stat(tmp); err != nil {
			t.Fatalf("staged file after gc: %v", err)
		}
	}
	src := memory.New()
	cfg := []byte(`{}`)
	cd := ocispec.Descriptor{MediaType: "application/vnd.example.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := src.Push(ctx, cd, bytesReader(cfg)); err != nil {
		t.Fatal(err)
	}
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	if err := src.Push(ctx, md, bytesReader(m)); err != nil {
		t.Fatal(err)
	}
	// src has no layer: each must be taken from the stage.
	imp, err := s.Import(ctx, src, []Artifact{{Descriptor: md, Kind: "pack", Ref: "staged:1"}}, ImportRecord{From: "test"}, ImportOptions{Stage: st})
	if err != nil || imp.Artifacts[0].Status != StatusNew || imp.BlobsWritten != 22 {
		t.Fatalf("import of the stage after gc: %+v, %v; want new, 22 blobs written", imp.Artifacts, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if left, err := os.ReadDir(s.path(ingestDir)); err != nil || len(left) > 0 {
		t.Fatalf("ingest/ after the staged import: %v %v", left, err)
	}
	if res, err := s.GC(ctx, GCOptions{}); err != nil || res.Blobs != 0 || res.Leftovers != 0 {
		t.Fatalf("gc after the staged import: %+v, %v; want nothing removed", res, err)
	}
	if rep, err := s.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after the staged import: %+v, %v", rep, err)
	}
}
