package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content/memory"
)

// TestVerifySnapshotHoldsNoAnnotations: what Verify holds of the index
// while it checks (its snapshot) does not grow with what it does not
// check — annotations, here 4 KiB on every descriptor — so a cache of
// 30,000 packs verifies in tens of MiB of heap, not hundreds (issue 13).
// The heap the snapshot keeps is measured after a GC, not timed.
func TestVerifySnapshotHoldsNoAnnotations(t *testing.T) {
	ctx := context.Background()
	const n = 200
	big := map[string]string{"org.example.note": strings.Repeat("x", 4<<10)}
	src := memory.New()
	push := func(mt string, b []byte, ann map[string]string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b)), Annotations: ann}
		if err := src.Push(ctx, d, bytesReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := push("application/vnd.example.config.v1+json", []byte(`{}`), big)
	var arts []Artifact
	for i := range n {
		layer := push("application/vnd.example.layer.v1", []byte(fmt.Sprintf("layer %d", i)), big)
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d,"annotations":{"org.example.note":%q}},"layers":[{"mediaType":%q,"digest":%q,"size":%d,"annotations":{"org.example.note":%q}}],"annotations":{"org.example.note":%q}}`,
			ocispec.MediaTypeImageManifest, cfg.MediaType, cfg.Digest, cfg.Size, big["org.example.note"],
			layer.MediaType, layer.Digest, layer.Size, big["org.example.note"], big["org.example.note"]))
		md := push(ocispec.MediaTypeImageManifest, m, nil)
		md.Annotations = big
		arts = append(arts, Artifact{Descriptor: md, Kind: "pack", Ref: fmt.Sprintf("demo:1.0.%d", i)})
	}
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, src, arts, ImportRecord{From: "test"}, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC() // sync.Pool keeps what it held one GC more
	runtime.ReadMemStats(&before)
	snap, err := s.snapshot(ctx, func(object, problem, expected, actual string) {
		t.Errorf("%s: %s", object, problem)
	})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(snap.artifacts) != n || len(snap.children) != n || len(snap.blobs) != 2*n+1 {
		t.Fatalf("snapshot of %d artifacts, %d children records, %d blobs: want %d, %d, %d", len(snap.artifacts), len(snap.children), len(snap.blobs), n, n, 2*n+1)
	}
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(snap)
	t.Logf("the snapshot holds %d bytes per artifact", held/n)
	if per := held / n; per > 4<<10 {
		t.Errorf("the verify snapshot holds %d bytes per artifact (%d in all), want at most 4 KiB: it keeps what it does not check", per, held)
	}
	r, err := s.Verify(ctx, VerifyOptions{})
	if err != nil || !r.OK() || r.Artifacts != n || r.Blobs != 2*n+1 {
		t.Fatalf("Verify = %+v, %v: want a clean report of %d artifacts and %d blobs", r, err, n, 2*n+1)
	}
}

// TestVerifySnapshotHoldsNoObjectPerRecord: what Verify holds of 20,000
// blob records (and the artifacts, refs and children of 2,000 packs) is a
// few slices and one string of every digest, not an object per record: a
// string per digest and a map entry per blob record held them in about
// 100 MiB of heap at 30,000 packs (120,000 blobs). Counted as live heap
// objects after a GC, so it does not depend on the machine's speed.
func TestVerifySnapshotHoldsNoObjectPerRecord(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const packs, blobs = 2000, 20000
	rng := rand.New(rand.NewPCG(5, 6))
	random := func() digest.Digest {
		return digest.Digest(fmt.Sprintf("sha256:%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()))
	}
	ds := make([]digest.Digest, blobs)
	for i := range ds {
		ds[i] = random()
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		for i, d := range ds {
			mt := "application/vnd.example.layer.v1"
			if i < packs {
				mt = ocispec.MediaTypeImageManifest
				ref := fmt.Sprintf("demo/p%05d:1.0.0", i)
				layer := ocispec.Descriptor{MediaType: "application/vnd.example.layer.v1", Digest: ds[packs+i], Size: 10}
				if err := putJSON(tx, bucketArtifacts, string(d), artifactRecord{MediaType: mt, Kind: "pack", Refs: []string{ref}}); err != nil {
					return err
				}
				if err := putJSON(tx, bucketRefs, ref, refRecord{Digest: d}); err != nil {
					return err
				}
				if err := putJSON(tx, bucketChildren, string(d), []ocispec.Descriptor{layer}); err != nil {
					return err
				}
			}
			if err := putJSON(tx, bucketBlobs, string(d), blobRecord{Size: 10, MediaType: mt, Refs: 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	snap, err := s.snapshot(ctx, func(object, problem, expected, actual string) {
		t.Errorf("%s: %s", object, problem)
	})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(snap.blobs) != blobs || len(snap.artifacts) != packs || len(snap.children) != packs || snap.refs.len() != packs || len(snap.extra) != 0 {
		t.Fatalf("snapshot of %d blobs, %d artifacts, %d children records, %d refs: want %d, %d, %d, %d",
			len(snap.blobs), len(snap.artifacts), len(snap.children), snap.refs.len(), blobs, packs, packs, packs)
	}
	objects := int64(after.HeapObjects) - int64(before.HeapObjects)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(snap)
	t.Logf("the snapshot holds %d heap objects, %d bytes (%d a blob record)", objects, held, held/blobs)
	// Each artifact keeps its list of refs (a slice and its string).
	if limit := int64(2*packs + 1000); objects > limit {
		t.Errorf("the verify snapshot holds %d heap objects for %d blob records and %d artifacts, want at most %d: an object per record", objects, blobs, packs, limit)
	}
	// A blob record: its digest (71 bytes), its end (4) and its entry (24),
	// in slices grown by appending.
	if per := held / blobs; per > 200 {
		t.Errorf("the verify snapshot holds %d bytes a blob record, want at most 200", per)
	}
}
