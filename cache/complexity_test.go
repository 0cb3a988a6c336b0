package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// TestImportRecordWorkIsLinear: an import of n artifacts writes O(n) bytes
// of import record. Writing the whole growing record once per artifact (as
// before) made it O(n²): ten times the artifacts, a hundred times the bytes.
// Bytes are counted, not time measured.
func TestImportRecordWorkIsLinear(t *testing.T) {
	ctx := context.Background()
	work := func(n int) int64 {
		src := memory.New()
		cfg := []byte(`{}`)
		cd := ocispec.Descriptor{MediaType: "application/vnd.example.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
		if err := src.Push(ctx, cd, bytesReader(cfg)); err != nil {
			t.Fatal(err)
		}
		var arts []Artifact
		for i := range n {
			m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[],"annotations":{"n":"%d"}}`,
				ocispec.MediaTypeImageManifest, cd.MediaType, cd.Digest, cd.Size, i))
			md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
			if err := src.Push(ctx, md, bytesReader(m)); err != nil {
				t.Fatal(err)
			}
			arts = append(arts, Artifact{Descriptor: md, Kind: "pack", Ref: fmt.Sprintf("demo:1.0.%d", i)})
		}
		s, err := Open(ctx, t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Import(ctx, src, arts, ImportRecord{From: "test", Verified: []string{"sha256 per blob"}}, ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := s.Imports(ctx, arts[n-1].Descriptor.Digest)
		if err != nil || len(recs) != 1 || len(recs[0].Artifacts) != n || recs[0].ID != res.Record.ID {
			t.Fatalf("n=%d: import records %+v, %v: want one listing %d artifacts", n, recs, err, n)
		}
		return s.recordBytes.Load()
	}
	small, large := work(10), work(100)
	if large > 15*small {
		t.Fatalf("import record bytes: %d for 10 artifacts, %d for 100: grows faster than linearly", small, large)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// TestImportSyncsDoNotGrowWithFiles: the blobs of an import are made
// durable together (one syncfs of the cache's file system, then one fsync
// per blob directory), not one fsync per file and per rename; and a
// bundle of many artifacts is recorded in a transaction per batch, not one
// per artifact. Syncs and transactions are counted, not time measured.
func TestImportSyncsDoNotGrowWithFiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("syncfs(2) is Linux's; elsewhere each blob is fsynced")
	}
	ctx := context.Background()
	// onePack imports one pack of files layers; manyPacks imports n packs of
	// two layers each. Both return the syncs and index write transactions
	// of the import alone, after checking every blob is there.
	run := func(src *memory.Store, arts []Artifact) (syncs, updates int64) {
		s, err := Open(ctx, t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		s0, u0 := s.syncs.Load(), s.updates.Load()
		res, err := s.Import(ctx, src, arts, ImportRecord{From: "test"}, ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		syncs, updates = s.syncs.Load()-s0, s.updates.Load()-u0
		for _, a := range res.Artifacts {
			if a.Status != StatusNew {
				t.Fatalf("%s: status %s, want new", a.Artifact.Ref, a.Status)
			}
		}
		if rep, err := s.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
			t.Fatalf("verify after import: %+v, %v", rep, err)
		}
		return syncs, updates
	}
	pack := func(src *memory.Store, ref string, files int) Artifact {
		var layers []ocispec.Descriptor
		for i := range files {
			b := []byte(fmt.Sprintf("%s file %d", ref, i))
			d := ocispec.Descriptor{MediaType: "application/vnd.example.file", Digest: digest.FromBytes(b), Size: int64(len(b))}
			if err := src.Push(ctx, d, bytesReader(b)); err != nil {
				t.Fatal(err)
			}
			layers = append(layers, d)
		}
		cfg := []byte(`{}`)
		cd := ocispec.Descriptor{MediaType: "application/vnd.example.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
		_ = src.Push(ctx, cd, bytesReader(cfg)) // shared by every pack
		m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cd, Layers: layers, Annotations: map[string]string{"ref": ref}})
		if err != nil {
			t.Fatal(err)
		}
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
		if err := src.Push(ctx, md, bytesReader(m)); err != nil {
			t.Fatal(err)
		}
		return Artifact{Descriptor: md, Kind: "pack", Ref: ref}
	}
	files := func(n int) (int64, int64) {
		src := memory.New()
		return run(src, []Artifact{pack(src, "files:1", n)})
	}
	packs := func(n int) (int64, int64) {
		src := memory.New()
		var arts []Artifact
		for i := range n {
			arts = append(arts, pack(src, fmt.Sprintf("p%d:1", i), 2))
		}
		return run(src, arts)
	}
	// 20 files are written as blob files, 1,000 and 4,000 as a segment
	// (segmentMin) beside their manifest, too large for one: neither
	// form's syncs grow with the files. (Each runs in a new cache, whose
	// first segment also fsyncs the root, which gains segments/: one
	// sync more than the blob files' at most 4.)
	s20, u20 := files(20)
	s1000, u1000 := files(1000)
	s4000, u4000 := files(4000)
	if s20 > 4 || s4000 > s1000 || s4000 > 5 || u4000 != u20 || u1000 != u20 {
		t.Errorf("one pack: %d syncs and %d transactions for 20 files, %d and %d for 1,000, %d and %d for 4,000: want at most 4 syncs (5 with a cache's first segment), the same for 1,000 and 4,000, and as many transactions",
			s20, u20, s1000, u1000, s4000, u4000)
	}
	s10, _ := packs(10)
	if s10 > 4 {
		t.Errorf("packs: %d syncs for 10 packs, want at most 4", s10)
	}
	s100, u100 := packs(100)
	s600, u600 := packs(600)
	// 100 packs are one batch (a segment), 600 three batches of at most 256.
	if s600 > 3*s100 || u600 > 3*u100 {
		t.Errorf("packs: %d syncs and %d transactions for 100 packs, %d and %d for 600: want at most 3 times as many (one per batch of 256)",
			s100, u100, s600, u600)
	}
}

// TestListBlobNames: the blob files are listed when there are at most as
// many as asked, and not at all (nil: each is looked up) when there are
// more; a blob not listed is not present, one listed is looked up.
func TestListBlobNames(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var descs []ocispec.Descriptor
	for i := range 10 {
		b := []byte(fmt.Sprintf("blob %d", i))
		d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := s.Push(ctx, d, bytesReader(b)); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	if got := s.listBlobNames(9); got != nil {
		t.Fatalf("10 blob files listed with at most 9 asked: %d names", len(got))
	}
	listed := s.listBlobNames(10)
	if len(listed) != 10 {
		t.Fatalf("listing of 10 blob files: %d names", len(listed))
	}
	for _, d := range descs {
		if ok, err := s.present(d, nil, listed); !ok || err != nil {
			t.Fatalf("blob %s listed, not present: %v", d.Digest, err)
		}
	}
	other := []byte("not there")
	od := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(other), Size: int64(len(other))}
	if ok, err := s.present(od, nil, listed); ok || err != nil {
		t.Fatalf("blob not listed is present: %v", err)
	}
	// A wrong size is not the blob, listed or not.
	wrong := descs[0]
	wrong.Size++
	if ok, _ := s.present(wrong, nil, listed); ok {
		t.Fatal("a listed blob of another size is present")
	}
}
