package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
)

func TestImport(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	pack := src.pack(t, "pack.yaml body", "script body")
	sig := src.signature(t, pack, "dsse envelope")
	rec := cache.ImportRecord{From: "media.stella.tar", Verified: []string{"sha256 per blob", "signature by key K"}}

	var mu sync.Mutex
	var events []cache.Progress
	opts := cache.ImportOptions{Progress: func(p cache.Progress) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, p)
	}}
	before := time.Now().UTC().Truncate(time.Second)
	res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pack, "demo:1.0"), sigArtifact(sig)}, rec, opts)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	first := res
	if got := statuses(res); !slices.Equal(got, []cache.Status{cache.StatusNew, cache.StatusNew}) {
		t.Fatalf("statuses = %v", got)
	}
	// pack: manifest, empty config, 2 layers; signature: manifest, (config present), 1 layer.
	if res.BlobsWritten != 6 {
		t.Errorf("blobs written = %d, want 6", res.BlobsWritten)
	}
	if res.Artifacts[0].Artifact.Descriptor.ArtifactType != typePack {
		t.Errorf("artifact type = %q", res.Artifacts[0].Artifact.Descriptor.ArtifactType)
	}

	got, err := s.Resolve(ctx, "demo:1.0")
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got.Descriptor.Digest != pack.Digest || got.Kind != "pack" || got.Descriptor.ArtifactType != typePack || got.Descriptor.Size != pack.Size {
		t.Errorf("resolve = %+v, want %s", got, pack.Digest)
	}
	if _, err := s.Resolve(ctx, "demo:2.0"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("resolve missing = %v, want ErrNotFound", err)
	}

	refs, err := s.Referrers(ctx, pack.Digest, typeSignature)
	if err != nil || len(refs) != 1 || refs[0].Digest != sig.Digest || refs[0].ArtifactType != typeSignature {
		t.Errorf("referrers = %v, %v; want [%s]", refs, err, sig.Digest)
	}
	if refs, _ := s.Referrers(ctx, pack.Digest, "application/other"); len(refs) != 0 {
		t.Errorf("referrers of another type = %v", refs)
	}
	if preds, _ := s.Predecessors(ctx, pack); len(preds) != 1 || preds[0].Digest != sig.Digest {
		t.Errorf("predecessors = %v", preds)
	}

	list, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	wantList := []entry{{"", "signature", sig.Digest}, {"demo:1.0", "pack", pack.Digest}}
	if diff := cmp.Diff(wantList, entries(list)); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if list, _ := s.List(ctx, "pack"); len(list) != 1 || list[0].Ref != "demo:1.0" {
		t.Errorf("list pack = %v", list)
	}

	recs, err := s.Imports(ctx, pack.Digest)
	if err != nil || len(recs) != 1 {
		t.Fatalf("imports = %v, %v", recs, err)
	}
	r := recs[0]
	if r.From != rec.From || !slices.Equal(r.Verified, rec.Verified) || r.ID == 0 || r.Time.Location() != time.UTC ||
		r.Time.Before(before) || r.Time.Nanosecond() != 0 {
		t.Errorf("import record = %+v", r)
	}
	wantArts := []cache.ImportedArtifact{
		{Ref: "demo:1.0", Kind: "pack", Digest: pack.Digest, ArtifactType: typePack, Status: cache.StatusNew},
		{Kind: "signature", Digest: sig.Digest, ArtifactType: typeSignature, Status: cache.StatusNew},
	}
	if diff := cmp.Diff(wantArts, r.Artifacts); diff != "" {
		t.Errorf("import record artifacts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(r, res.Record); diff != "" {
		t.Errorf("result record differs from stored (-stored +result):\n%s", diff)
	}

	// Content reads back byte for byte.
	manifest, _ := content.FetchAll(ctx, src, pack)
	if got := fetchAll(t, s, pack); !bytes.Equal(got, manifest) {
		t.Errorf("manifest differs")
	}

	// Progress: every artifact done, with all its bytes.
	var done []cache.Progress
	for _, p := range events {
		if p.Event == cache.ArtifactDone {
			done = append(done, p)
		}
		if p.Event == cache.BlobDone && p.ArtifactBytes > p.ArtifactTotal {
			t.Errorf("progress beyond total: %+v", p)
		}
	}
	if len(done) != 2 {
		t.Fatalf("ArtifactDone events = %d, want 2", len(done))
	}
	last := map[int]cache.Progress{}
	for _, p := range events {
		if p.Event == cache.BlobDone || p.Event == cache.BlobSkipped {
			last[p.Index] = p
		}
	}
	for i, p := range last {
		if p.ArtifactBytes != p.ArtifactTotal || p.ArtifactTotal == 0 {
			t.Errorf("artifact %d: last progress %d of %d bytes", i, p.ArtifactBytes, p.ArtifactTotal)
		}
	}

	t.Run("re-import writes nothing", func(t *testing.T) {
		index := filepath.Join(s.Root(), "index.db")
		before, err := os.ReadFile(index)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pack, "demo:1.0"), sigArtifact(sig)}, rec, cache.ImportOptions{})
		if err != nil {
			t.Fatalf("re-import: %v", err)
		}
		if got := statuses(res); !slices.Equal(got, []cache.Status{cache.StatusPresent, cache.StatusPresent}) {
			t.Errorf("statuses = %v, want present", got)
		}
		if res.BlobsWritten != 0 || res.BytesWritten != 0 || res.Record.ID != 0 {
			t.Errorf("re-import wrote %d blobs, %d bytes, record %d", res.BlobsWritten, res.BytesWritten, res.Record.ID)
		}
		// What it found already there is what the first import wrote.
		if res.BlobsSkipped != first.BlobsWritten+first.BlobsSkipped || res.BytesSkipped != first.BytesWritten+first.BytesSkipped || res.BlobsSkipped == 0 {
			t.Errorf("re-import found %d blobs, %d bytes already present; the first import wrote %d, %d and skipped %d, %d",
				res.BlobsSkipped, res.BytesSkipped, first.BlobsWritten, first.BytesWritten, first.BlobsSkipped, first.BytesSkipped)
		}
		after, _ := os.ReadFile(index)
		if !bytes.Equal(before, after) {
			t.Errorf("index.db changed on a re-import")
		}
		if recs, _ := s.Imports(ctx, pack.Digest); len(recs) != 1 {
			t.Errorf("import records = %d, want 1", len(recs))
		}
	})

	t.Run("second ref to the same artifact", func(t *testing.T) {
		res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pack, "demo:latest")}, rec, cache.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Artifacts[0].Status != cache.StatusLinked || res.BlobsWritten != 0 {
			t.Errorf("status = %s, written %d; want linked, 0", res.Artifacts[0].Status, res.BlobsWritten)
		}
		// Removing one ref keeps the artifact and its referrers.
		if err := s.Remove(ctx, "demo:1.0"); err != nil {
			t.Fatal(err)
		}
		if a, err := s.Resolve(ctx, "demo:latest"); err != nil || a.Descriptor.Digest != pack.Digest {
			t.Errorf("resolve demo:latest = %v, %v", a, err)
		}
		if refs, _ := s.Referrers(ctx, pack.Digest, ""); len(refs) != 1 {
			t.Errorf("referrers after removing one of two refs = %v", refs)
		}
	})
}

type entry struct {
	Ref, Kind string
	Digest    digest.Digest
}

func entries(es []cache.Entry) []entry {
	var out []entry
	for _, e := range es {
		out = append(out, entry{e.Ref, e.Kind, e.Descriptor.Digest})
	}
	return out
}

func statuses(res cache.ImportResult) []cache.Status {
	var out []cache.Status
	for _, a := range res.Artifacts {
		out = append(out, a.Status)
	}
	return out
}

func TestImportRefConflict(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	v1 := src.pack(t, "version one", "common file")
	v2 := src.pack(t, "version two", "common file")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(v1, "demo:1")}, cache.ImportRecord{From: "a"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(v2, "demo:1")}, cache.ImportRecord{From: "b"}, cache.ImportOptions{})
	if !errors.Is(err, cache.ErrRefConflict) {
		t.Fatalf("import error = %v, want ErrRefConflict", err)
	}
	if res.Artifacts[0].Status != cache.StatusFailed || !errors.Is(res.Artifacts[0].Err, cache.ErrRefConflict) {
		t.Errorf("result = %+v", res.Artifacts[0])
	}
	if res.BlobsWritten != 0 {
		t.Errorf("a conflicting import wrote %d blobs", res.BlobsWritten)
	}
	if a, _ := s.Resolve(ctx, "demo:1"); a.Descriptor.Digest != v1.Digest {
		t.Errorf("ref moved to %s on conflict", a.Descriptor.Digest)
	}

	res, err = s.Import(ctx, src, []cache.Artifact{packArtifact(v2, "demo:1")}, cache.ImportRecord{From: "b"}, cache.ImportOptions{Replace: true})
	if err != nil {
		t.Fatalf("import with replace: %v", err)
	}
	if a, _ := s.Resolve(ctx, "demo:1"); a.Descriptor.Digest != v2.Digest {
		t.Errorf("ref = %s after replace, want %s", a.Descriptor.Digest, v2.Digest)
	}
	if list, _ := s.List(ctx, ""); len(list) != 1 {
		t.Errorf("list after replace = %v, want only v2", entries(list))
	}
	// v1's own blobs (manifest, its first layer) are now garbage.
	gc, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := sortedDigests(v1.Digest, sha([]byte("version one")))
	if diff := cmp.Diff(want, gc.Removed); diff != "" {
		t.Errorf("gc removed (-want +got):\n%s", diff)
	}
}

func sortedDigests(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}

var errRefused = errors.New("refused by policy")

func TestImportVerifyHookRefusal(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	bad := src.pack(t, "unsigned pack")
	good := src.pack(t, "signed pack")
	var seen []string
	opts := cache.ImportOptions{Verify: func(ctx context.Context, a cache.Artifact, f content.Fetcher) error {
		// The hook reads the cache: every blob is already there.
		if _, err := content.FetchAll(ctx, f, a.Descriptor); err != nil {
			t.Errorf("hook cannot read %s from the cache: %v", a.Ref, err)
		}
		seen = append(seen, a.Ref)
		if a.Ref == "bad:1" {
			return errRefused
		}
		return nil
	}}
	res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(bad, "bad:1"), packArtifact(good, "good:1")}, cache.ImportRecord{From: "x"}, opts)
	if !errors.Is(err, errRefused) {
		t.Fatalf("import error = %v, want errRefused", err)
	}
	if !slices.Equal(seen, []string{"bad:1", "good:1"}) {
		t.Errorf("hook saw %v", seen)
	}
	if got := statuses(res); !slices.Equal(got, []cache.Status{cache.StatusFailed, cache.StatusNew}) {
		t.Errorf("statuses = %v", got)
	}
	if _, err := s.Resolve(ctx, "bad:1"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("refused artifact resolves: %v", err)
	}
	if recs, _ := s.Imports(ctx, bad.Digest); len(recs) != 0 {
		t.Errorf("import record of a refused artifact: %v", recs)
	}
	if recs, _ := s.Imports(ctx, good.Digest); len(recs) != 1 || len(recs[0].Artifacts) != 1 {
		t.Errorf("import record of the good artifact: %v", recs)
	}
	if list, _ := s.List(ctx, ""); len(list) != 1 || list[0].Ref != "good:1" {
		t.Errorf("list = %v", entries(list))
	}
	// The refused artifact left nothing behind: its blob files were rolled
	// back, so gc has nothing to take.
	for _, d := range sortedDigests(bad.Digest, sha([]byte("unsigned pack"))) {
		if _, err := os.Stat(filepath.Join(s.Root(), "blobs", d.Algorithm().String(), d.Encoded())); err == nil {
			t.Errorf("blob %s of the refused artifact is still there", d)
		}
	}
	gc, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gc.Removed) != 0 {
		t.Errorf("gc removed %v after a refused import, want nothing", gc.Removed)
	}
}

// corruptSource serves other bytes than its descriptors say for one digest.
type corruptSource struct {
	*source
	bad digest.Digest
}

func (c corruptSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if desc.Digest == c.bad {
		return io.NopCloser(bytes.NewReader(bytes.Repeat([]byte("x"), int(desc.Size)))), nil
	}
	return c.source.Fetch(ctx, desc)
}

func TestImportBadSource(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	layer := []byte("a layer that will be corrupted in transit")
	pack := src.pack(t, string(layer), "fine layer")
	other := src.pack(t, "another pack")
	missing := src.manifest(t, typePack, nil, ocispec.Descriptor{MediaType: typeLayer, Digest: sha([]byte("nowhere")), Size: 7})
	orphan := src.manifest(t, typeSignature, nil, src.blob(t, []byte("a signature of nothing")))

	tests := []struct {
		name string
		src  interface {
			content.ReadOnlyStorage
		}
		art  cache.Artifact
		want error
	}{
		{"corrupt layer", corruptSource{src, sha(layer)}, packArtifact(pack, "p:1"), integrity.ErrDigestMismatch},
		{"corrupt manifest", corruptSource{src, pack.Digest}, packArtifact(pack, "p:1"), integrity.ErrDigestMismatch},
		{"missing layer", src, packArtifact(missing, "p:1"), nil},
		{"no ref and no subject", src, sigArtifact(orphan), cache.ErrInvalidArtifact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cachetest.Open(t)
			res, err := s.Import(ctx, tt.src, []cache.Artifact{tt.art, packArtifact(other, "other:1")}, cache.ImportRecord{}, cache.ImportOptions{})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("import error = %v, want %v", err, tt.want)
			}
			if got := statuses(res); !slices.Equal(got, []cache.Status{cache.StatusFailed, cache.StatusNew}) {
				t.Errorf("statuses = %v", got)
			}
			if list, _ := s.List(ctx, ""); len(list) != 1 || list[0].Ref != "other:1" {
				t.Errorf("list = %v, want only other:1", entries(list))
			}
			if ok, _ := s.Exists(ctx, tt.art.Descriptor); ok {
				t.Errorf("manifest of the failed artifact is visible")
			}
			if _, err := s.GC(ctx, cache.GCOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestImportInvalidInput(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	pack := src.pack(t, "x")
	layer := src.blob(t, []byte("just a blob"))
	tests := []struct {
		name string
		art  cache.Artifact
	}{
		{"not a manifest", cache.Artifact{Descriptor: layer, Kind: "pack", Ref: "a:1"}},
		{"no kind", cache.Artifact{Descriptor: pack, Ref: "a:1"}},
		{"ref without version", packArtifact(pack, "a")},
		{"ref with blank", packArtifact(pack, "a b:1")},
		{"ref ending in colon", packArtifact(pack, "a:")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Import(ctx, src, []cache.Artifact{tt.art}, cache.ImportRecord{}, cache.ImportOptions{})
			if !errors.Is(err, cache.ErrInvalidArtifact) {
				t.Fatalf("import error = %v, want ErrInvalidArtifact", err)
			}
		})
	}
	if got := dirEntries(t, filepath.Join(s.Root(), "blobs", "sha256")); len(got) != 0 {
		t.Errorf("invalid input wrote blobs: %v", got)
	}
}

func TestImportRepairsMissingBlob(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	pack := src.pack(t, "layer one", "layer two")
	arts := []cache.Artifact{packArtifact(pack, "demo:1")}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blobPath(s, sha([]byte("layer two")))); err != nil {
		t.Fatal(err)
	}
	res, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Artifacts[0].Status != cache.StatusPresent || res.BlobsWritten != 1 || res.BytesWritten != int64(len("layer two")) {
		t.Errorf("repair: status %s, %d blobs %d bytes written", res.Artifacts[0].Status, res.BlobsWritten, res.BytesWritten)
	}
}

func TestRemoveCascadesReferrers(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	pack := src.pack(t, "the pack")
	sig := src.signature(t, pack, "signature of the pack")
	sigOfSig := src.signature(t, sig, "countersignature")
	other := src.pack(t, "another pack")
	arts := []cache.Artifact{packArtifact(pack, "demo:1"), sigArtifact(sig), sigArtifact(sigOfSig), packArtifact(other, "other:1")}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "demo:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "demo:1"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("second remove = %v, want ErrNotFound", err)
	}
	if list, _ := s.List(ctx, ""); len(list) != 1 || list[0].Ref != "other:1" {
		t.Errorf("list = %v, want only other:1", entries(list))
	}
	if refs, _ := s.Referrers(ctx, pack.Digest, ""); len(refs) != 0 {
		t.Errorf("referrers of removed pack = %v", refs)
	}
	du, err := s.Du(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// pack manifest + layer, sig manifest + layer, sigOfSig manifest + layer.
	if du.UnreferencedBlobs != 6 || du.ByKind["pack"].Artifacts != 1 || du.ByKind["signature"].Artifacts != 0 {
		t.Errorf("du = %+v", du)
	}
	// Import records are history: they stay.
	if recs, _ := s.Imports(ctx, sig.Digest); len(recs) != 1 {
		t.Errorf("imports of removed signature = %d, want 1", len(recs))
	}
}

func TestDu(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	pack := src.pack(t, "12345", "1234567890")
	sig := src.signature(t, pack, "sig")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pack, "d:1"), sigArtifact(sig)}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	stray := []byte("pushed, never imported")
	if err := s.Push(ctx, ocispec.Descriptor{Digest: sha(stray), Size: int64(len(stray))}, bytes.NewReader(stray)); err != nil {
		t.Fatal(err)
	}
	du, err := s.Du(ctx)
	if err != nil {
		t.Fatal(err)
	}
	empty := int64(2) // "{}"
	want := cache.Usage{
		Blobs: 7, Bytes: pack.Size + empty + 5 + 10 + sig.Size + 3 + int64(len(stray)),
		IndexBytes: du.IndexBytes,
		ByKind: map[string]cache.KindUsage{
			"pack":      {Artifacts: 1, Blobs: 4, Bytes: pack.Size + empty + 15},
			"signature": {Artifacts: 1, Blobs: 3, Bytes: sig.Size + empty + 3},
		},
		UnreferencedBlobs: 1, UnreferencedBytes: int64(len(stray)),
	}
	if diff := cmp.Diff(want, du); diff != "" {
		t.Errorf("du (-want +got):\n%s", diff)
	}
	if du.IndexBytes == 0 {
		t.Errorf("index bytes = 0")
	}
	if _, err := s.GC(ctx, cache.GCOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestImportProgress(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	arts := randomGraphs(t, src, 3, "prog", 2, 3, 1<<20) // the two share a layer
	var events []cache.Progress
	opts := cache.ImportOptions{Concurrency: 4, Progress: func(p cache.Progress) { events = append(events, p) }}
	res, err := s.Import(ctx, src, arts, cache.ImportRecord{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The second artifact finds the shared layer and the empty config present.
	if res.BlobsSkipped != 2 || res.BlobsWritten != 2+2*3+1+1 {
		t.Errorf("written %d, skipped %d", res.BlobsWritten, res.BlobsSkipped)
	}
	last := map[int]int64{}
	count := map[cache.ProgressEvent]int{}
	for _, p := range events {
		count[p.Event]++
		if p.Event == cache.ArtifactStarted || p.Event == cache.ArtifactDone {
			continue
		}
		if p.ArtifactBytes < last[p.Index] || p.ArtifactBytes > p.ArtifactTotal {
			t.Fatalf("artifact %d: progress went from %d to %d (of %d)", p.Index, last[p.Index], p.ArtifactBytes, p.ArtifactTotal)
		}
		if p.BlobBytes > p.Blob.Size {
			t.Fatalf("blob %s: %d of %d bytes", p.Blob.Digest, p.BlobBytes, p.Blob.Size)
		}
		last[p.Index] = p.ArtifactBytes
	}
	for i, a := range arts {
		var total int64
		for _, p := range events {
			if p.Index == i && p.ArtifactTotal > 0 {
				total = p.ArtifactTotal
			}
		}
		if last[i] != total || total < 3<<20 {
			t.Errorf("artifact %s: ended at %d of %d bytes", a.Ref, last[i], total)
		}
	}
	// Every blob written reports its bytes at least once.
	if count[cache.BlobBytes] < res.BlobsWritten || count[cache.BlobSkipped] != 2 || count[cache.ArtifactDone] != 2 {
		t.Errorf("event counts = %v", count)
	}
}

// TestImportBoundFailsTogether: artifacts bound by WithPrevious are
// recorded together or not at all — a refused signature takes its pack
// with it (and the pack's new blobs are removed again), a pack already
// present stays, and an unbound import of the same artifacts is unaffected.
func TestImportBoundFailsTogether(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	pk := src.pack(t, "bound file one", "bound file two")
	good, bad := src.signature(t, pk, "good"), src.signature(t, pk, "bad")
	refuse := func(_ context.Context, a cache.Artifact, _ content.Fetcher) error {
		if a.Descriptor.Digest == bad.Digest {
			return errors.New("refused by the test")
		}
		return nil
	}
	bound := func(d ocispec.Descriptor) cache.Artifact {
		a := sigArtifact(d)
		a.WithPrevious = true
		return a
	}

	s := cachetest.Open(t)
	res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pk, "bound:1"), bound(good), bound(bad)},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{Verify: refuse})
	if err == nil {
		t.Fatal("want the refusal reported")
	}
	for _, a := range res.Artifacts {
		if a.Status != cache.StatusFailed || a.Err == nil {
			t.Errorf("%s: want failed with the group, got %s %v", a.Artifact.Descriptor.Digest, a.Status, a.Err)
		}
	}
	if res.Record.ID != 0 {
		t.Errorf("nothing recorded, yet import record %d", res.Record.ID)
	}
	if list, _ := s.List(ctx, ""); len(list) != 0 {
		t.Fatalf("nothing may be recorded: %+v", list)
	}
	for _, d := range []ocispec.Descriptor{pk, good, bad} {
		if fileExists(blobPath(s, d.Digest)) {
			t.Errorf("manifest %s left behind by a failed group", d.Digest)
		}
	}

	// The pack alone, then the group again: the present pack is not undone
	// by its bound signature's failure.
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pk, "bound:1")}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = s.Import(ctx, src, []cache.Artifact{packArtifact(pk, "bound:1"), bound(good), bound(bad)},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{Verify: refuse})
	if err == nil || res.Artifacts[1].Status != cache.StatusFailed || res.Artifacts[2].Status != cache.StatusFailed {
		t.Fatalf("want the signatures failed: %v %+v", err, res.Artifacts)
	}
	if a, err := s.Resolve(ctx, "bound:1"); err != nil || a.Descriptor.Digest != pk.Digest {
		t.Fatalf("the pack recorded before must stay: %v", err)
	}
	if refs, _ := s.Referrers(ctx, pk.Digest, ""); len(refs) != 0 {
		t.Fatalf("no signature of a failed group may be recorded: %+v", refs)
	}

	// Without the bad one, the group enters whole, in one import record.
	s2 := cachetest.Open(t)
	res, err = s2.Import(ctx, src, []cache.Artifact{packArtifact(pk, "bound:1"), bound(good)},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{Verify: refuse})
	if err != nil || res.Artifacts[0].Status != cache.StatusNew || res.Artifacts[1].Status != cache.StatusNew {
		t.Fatalf("want both new: %v %+v", err, res.Artifacts)
	}
	if len(res.Record.Artifacts) != 2 {
		t.Errorf("import record lists %d artifacts, want 2", len(res.Record.Artifacts))
	}
	if refs, _ := s2.Referrers(ctx, pk.Digest, ""); len(refs) != 1 || refs[0].Digest != good.Digest {
		t.Errorf("referrers: %+v", refs)
	}

	if _, err := s2.Import(ctx, src, []cache.Artifact{bound(good)}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); !errors.Is(err, cache.ErrInvalidArtifact) {
		t.Errorf("a first artifact bound to nothing: want ErrInvalidArtifact, got %v", err)
	}
}

// TestImportFailureReportedBeforeLaterVerify: artifacts of one batch are
// copied together and recorded together, yet a failed artifact's
// ArtifactDone still goes out before the Verify hook of any later one, so
// a hook can refuse a referrer whose subject failed — whether the subject
// failed in its copy or in the transaction (here a ref conflict with an
// earlier artifact of the same batch).
func TestImportFailureReportedBeforeLaterVerify(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	corrupt := []byte("corrupted in transit")
	broken := src.pack(t, string(corrupt))
	first := src.pack(t, "first holder of the name")
	second := src.pack(t, "second claimant of the name")
	sigBroken := src.signature(t, broken, "signs the broken pack")
	sigSecond := src.signature(t, second, "signs the second claimant")
	arts := []cache.Artifact{
		packArtifact(broken, "broken:1"),
		sigArtifact(sigBroken),
		packArtifact(first, "name:1"),
		packArtifact(second, "name:1"),
		sigArtifact(sigSecond),
	}
	s := cachetest.Open(t)
	failed := map[digest.Digest]bool{}
	res, err := s.Import(ctx, corruptSource{src, sha(corrupt)}, arts, cache.ImportRecord{}, cache.ImportOptions{
		Progress: func(p cache.Progress) {
			if p.Event == cache.ArtifactDone && p.Status == cache.StatusFailed {
				failed[p.Artifact.Descriptor.Digest] = true
			}
		},
		Verify: func(ctx context.Context, a cache.Artifact, f content.Fetcher) error {
			for _, sub := range []digest.Digest{broken.Digest, second.Digest} {
				if failed[sub] && (a.Descriptor.Digest == sigBroken.Digest && sub == broken.Digest ||
					a.Descriptor.Digest == sigSecond.Digest && sub == second.Digest) {
					return errors.New("subject failed")
				}
			}
			return nil
		},
	})
	if err == nil {
		t.Fatal("import succeeded, want failures")
	}
	want := []cache.Status{cache.StatusFailed, cache.StatusFailed, cache.StatusNew, cache.StatusFailed, cache.StatusFailed}
	if got := statuses(res); !slices.Equal(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if !errors.Is(res.Artifacts[3].Err, cache.ErrRefConflict) {
		t.Errorf("second claimant: %v, want ErrRefConflict", res.Artifacts[3].Err)
	}
	for _, i := range []int{1, 4} {
		if e := res.Artifacts[i].Err; e == nil || !strings.Contains(e.Error(), "subject failed") {
			t.Errorf("signature %d: %v, want refused by the hook", i, e)
		}
	}
	if list, _ := s.List(ctx, ""); len(list) != 1 || list[0].Ref != "name:1" || list[0].Descriptor.Digest != first.Digest {
		t.Errorf("list = %v, want only name:1 (the first)", entries(list))
	}
}
