package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
)

// smallFiles is n distinct small contents named after prefix.
func smallFiles(prefix string, n int) []string {
	var fs []string
	for i := range n {
		fs = append(fs, fmt.Sprintf("%s file %d: %s", prefix, i, bytes.Repeat([]byte{'x'}, i%7*100)))
	}
	return fs
}

// segmentFiles lists the segment files of a cache.
func segmentFiles(t *testing.T, s *cache.Store) []string {
	t.Helper()
	got, err := filepath.Glob(filepath.Join(s.Root(), "segments", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func indexVersion(t *testing.T, s *cache.Store) int {
	t.Helper()
	v := 0
	if err := cache.Update(context.Background(), s, func(tx *bbolt.Tx) error {
		v, _ = strconv.Atoi(string(tx.Bucket([]byte("cache.meta")).Get([]byte("version"))))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// A pack of many small files is one segment file in the cache, not a file
// per blob; every blob reads back checked, and a damaged byte or footer in
// the segment is found by Fetch and Verify and named.
func TestSegmentImport(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := cache.Open(ctx, root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A new cache is of the version before segments (an earlier stella
	// reads it), raised when the first segment is committed, so an older
	// stella then refuses the cache.
	if v := indexVersion(t, st); v != 1 {
		t.Errorf("index version of a new cache = %d, want 1", v)
	}
	src := newSource()
	files := smallFiles("seg", 100)
	p := src.pack(t, files...)
	res, err := st.Import(ctx, src, []cache.Artifact{packArtifact(p, "seg:1")}, cache.ImportRecord{}, cache.ImportOptions{})
	if err != nil || res.Artifacts[0].Status != cache.StatusNew || res.BlobsWritten != 102 {
		t.Fatalf("import: %+v %v, want new with 102 blobs written", res, err)
	}
	segs := segmentFiles(t, st)
	if len(segs) != 1 {
		t.Fatalf("segments = %v, want one", segs)
	}
	if got := dirEntries(t, filepath.Join(root, "blobs", "sha256")); len(got) != 0 {
		t.Errorf("blob files = %v, want none: every blob is small", got)
	}
	if v := indexVersion(t, st); v != 2 {
		t.Errorf("index version after the first segment = %d, want 2", v)
	}
	for _, f := range files {
		d := content.NewDescriptorFromBytes(typeLayer, []byte(f))
		if ok, err := st.Exists(ctx, d); !ok || err != nil {
			t.Fatalf("Exists(%s) = %v, %v", d.Digest, ok, err)
		}
		if got := fetchAll(t, st, d); string(got) != f {
			t.Fatalf("blob %s reads %q, want %q", d.Digest, got, f)
		}
	}
	if rep, err := st.Verify(ctx, cache.VerifyOptions{}); err != nil || !rep.OK() || rep.Blobs != 102 {
		t.Fatalf("verify: %+v %v, want OK with 102 blobs", rep, err)
	}
	again, err := st.Import(ctx, src, []cache.Artifact{packArtifact(p, "seg:1")}, cache.ImportRecord{}, cache.ImportOptions{})
	if err != nil || again.Artifacts[0].Status != cache.StatusPresent || again.BlobsWritten != 0 {
		t.Fatalf("re-import: %+v %v, want present, nothing written", again, err)
	}
	if got := segmentFiles(t, st); !slices.Equal(got, segs) {
		t.Fatalf("segments after re-import = %v, want %v", got, segs)
	}

	// One byte of one blob changed in place.
	victim := files[42]
	vd := content.NewDescriptorFromBytes(typeLayer, []byte(victim))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte(victim))
	if at < 0 {
		t.Fatal("blob not found in its segment")
	}
	damaged := slices.Clone(b)
	damaged[at+3] ^= 1
	writeOver(t, segs[0], damaged)
	rc, err := st.Fetch(ctx, vd)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Errorf("fetch of a damaged segment blob: %v, want a digest mismatch", err)
	}
	rep, err := st.Verify(ctx, cache.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Problem != cache.ProblemBlobDigest || rep.Problems[0].Object != string(vd.Digest) {
		t.Errorf("verify of a damaged segment blob: %+v, want one %s of %s", rep.Problems, cache.ProblemBlobDigest, vd.Digest)
	}

	// The footer's count changed: the segment cannot be read at all.
	damaged = slices.Clone(b)
	damaged[len(damaged)-9] ^= 1
	writeOver(t, segs[0], damaged)
	rep, err = st.Verify(ctx, cache.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rel := "segments/" + filepath.Base(segs[0])
	if !slices.ContainsFunc(rep.Problems, func(p cache.Problem) bool {
		return p.Problem == cache.ProblemSegmentDamaged && p.Object == rel
	}) || !slices.ContainsFunc(rep.Problems, func(p cache.Problem) bool {
		return p.Problem == cache.ProblemBlobMissing && p.Object == string(vd.Digest)
	}) {
		t.Errorf("verify of a damaged footer: %+v, want %s of %s and its blobs missing", rep.Problems, cache.ProblemSegmentDamaged, rel)
	}
	writeOver(t, segs[0], b)
	cachetest.Check(t, st)
}

// openTwo opens a checked cache in a new folder and a second handle on
// it, as another process named holder would.
func openTwo(t *testing.T, holder string) (root string, s, other *cache.Store) {
	t.Helper()
	root = t.TempDir()
	s = cachetest.OpenAt(t, root)
	other, err := cache.Open(context.Background(), root, cache.Options{Holder: holder})
	if err != nil {
		t.Fatal(err)
	}
	return root, s, other
}

// sharedSegment imports "gone:1" (40 small files) and "kept:1" (the files
// kept) in one batch, so into one segment, and removes "gone:1": the next
// gc rewrites the segment without its blobs. It returns gone:1's manifest.
func sharedSegment(t *testing.T, s *cache.Store, src *source, kept []string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	gone := src.pack(t, smallFiles("gone", 40)...)
	k := src.pack(t, kept...)
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(gone, "gone:1"), packArtifact(k, "kept:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, s); len(got) != 1 {
		t.Fatalf("segments = %v, want one for the batch", got)
	}
	if err := s.Remove(ctx, "gone:1"); err != nil {
		t.Fatal(err)
	}
	return gone
}

// writeOver replaces a read-only file's content in place.
func writeOver(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
}

// GC removes a segment none of whose blobs is needed, and rewrites one
// part of which is: the blobs still needed move to a new segment, the
// others are gone, and nothing any artifact needs is lost.
func TestSegmentGC(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	shared := "a file both packs have"
	a := src.pack(t, append(smallFiles("a", 40), shared)...)
	bFiles := append(smallFiles("b", 40), shared)
	b := src.pack(t, bFiles...)
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "a:1"), packArtifact(b, "b:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	before := segmentFiles(t, s)
	if len(before) != 1 {
		t.Fatalf("segments = %v, want one for the batch", before)
	}
	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{a.Digest}
	for _, f := range smallFiles("a", 40) {
		want = append(want, sha([]byte(f)))
	}
	want = sortedDigests(want...)
	dry, err := s.GC(ctx, cache.GCOptions{DryRun: true})
	if err != nil || !cmp.Equal(dry.Removed, want) {
		t.Fatalf("gc dry run removed %v (%v), want %v", dry.Removed, err, want)
	}
	if got := segmentFiles(t, s); !slices.Equal(got, before) {
		t.Fatalf("a dry run changed the segments: %v", got)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, res.Removed); diff != "" {
		t.Errorf("gc removed (-want +got):\n%s", diff)
	}
	after := segmentFiles(t, s)
	if len(after) != 1 || after[0] == before[0] {
		t.Fatalf("segments after gc = %v, want one new segment in place of %v", after, before)
	}
	for _, f := range bFiles {
		if got := fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f))); string(got) != f {
			t.Fatalf("blob of b reads %q after gc, want %q", got, f)
		}
	}
	for _, f := range smallFiles("a", 40) {
		if ok, _ := s.Exists(ctx, content.NewDescriptorFromBytes(typeLayer, []byte(f))); ok {
			t.Fatalf("blob only a had is still there after gc")
		}
	}
	rep, err := s.Verify(ctx, cache.VerifyOptions{})
	if err != nil || !rep.OK() || rep.UnreferencedBlobs != 0 || rep.Blobs != 43 {
		t.Fatalf("verify after gc: %+v %v, want OK, 43 blobs, none unreferenced", rep, err)
	}

	// A blob held twice, as a file beside its segment copy (as an import
	// that wrote it loose leaves it), counts once in every count and
	// twice in the bytes.
	sd := sha([]byte(shared))
	if err := os.WriteFile(filepath.Join(s.Root(), "blobs", "sha256", sd.Encoded()), []byte(shared), 0o444); err != nil {
		t.Fatal(err)
	}
	again, err := s.Verify(ctx, cache.VerifyOptions{})
	if err != nil || !again.OK() || again.Blobs != 43 || again.Bytes != rep.Bytes+int64(len(shared)) {
		t.Fatalf("verify with a second copy: %+v %v, want OK, 43 blobs, %d bytes", again, err, rep.Bytes+int64(len(shared)))
	}
	du, err := s.Du(ctx)
	if err != nil || du.Blobs != 43 || du.Bytes != again.Bytes {
		t.Fatalf("du with a second copy: %+v %v, want 43 blobs, %d bytes", du, err, again.Bytes)
	}

	if err := s.Remove(ctx, "b:1"); err != nil {
		t.Fatal(err)
	}
	du, err = s.Du(ctx)
	if err != nil || du.UnreferencedBlobs != 43 || du.UnreferencedBytes != again.Bytes {
		t.Fatalf("du after b went: %+v %v, want 43 unreferenced blobs, %d bytes", du, err, again.Bytes)
	}
	unref, err := s.Verify(ctx, cache.VerifyOptions{})
	if err != nil || unref.UnreferencedBlobs != 43 || unref.UnreferencedBytes != again.Bytes {
		t.Fatalf("verify after b went: %+v %v, want 43 unreferenced blobs, %d bytes", unref, err, again.Bytes)
	}
	res, err = s.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 43 || len(res.Removed) != 43 || res.Bytes != again.Bytes {
		t.Fatalf("gc of the rest: %+v %v, want 43 blobs removed, each once, %d bytes freed", res, err, again.Bytes)
	}
	if got := segmentFiles(t, s); len(got) != 0 {
		t.Fatalf("segments after everything went = %v, want none", got)
	}
}

// GC beside an import that is verifying a pack whose blobs went into a
// segment: the segment is renamed into place but not recorded; gc keeps
// every blob of it, as held, and removes nothing.
func TestGCBesideSegmentImport(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := cachetest.OpenAt(t, root)
	g, err := cache.Open(ctx, root, cache.Options{Holder: "stella cache gc"})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	files := smallFiles("held", 60)
	p := src.pack(t, files...)
	want := []digest.Digest{p.Digest, ocispec.DescriptorEmptyJSON.Digest}
	for _, f := range files {
		want = append(want, sha([]byte(f)))
	}
	want = sortedDigests(want...)
	inVerify, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Import(ctx, src, []cache.Artifact{packArtifact(p, "held:1")}, cache.ImportRecord{}, cache.ImportOptions{
			Verify: func(context.Context, cache.Artifact, content.Fetcher) error {
				close(inVerify)
				<-finish
				return nil
			}})
		done <- err
	}()
	<-inVerify
	if got := segmentFiles(t, s); len(got) != 1 {
		t.Fatalf("segments while the import verifies = %v, want one", got)
	}
	start := time.Now()
	res, err := g.GC(ctx, cache.GCOptions{})
	if took := time.Since(start); took > gcWait {
		t.Errorf("gc took %v, want at most %v", took, gcWait)
	}
	if err != nil || res.Blobs != 0 {
		t.Fatalf("gc beside the import: %+v %v, want nothing removed", res, err)
	}
	if diff := cmp.Diff(want, res.Held); diff != "" {
		t.Errorf("gc held (-want +got):\n%s", diff)
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if got := fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f))); string(got) != f {
			t.Fatalf("blob reads %q, want %q", got, f)
		}
	}
}

// A build stages small files into a segment: what the import takes is
// committed as one segment, and a rebuild of the same files writes none.
func TestStagedSegment(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	build := func(ref string, files []string) cache.ImportResult {
		t.Helper()
		st, err := s.Stage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		src := newSource()
		var layers []ocispec.Descriptor
		for _, f := range files {
			d, n, err := st.Add(ctx, "file", bytes.NewReader([]byte(f)))
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, ocispec.Descriptor{MediaType: typeLayer, Digest: d, Size: n})
			// The source has the manifest only: the files come from the stage.
		}
		m := src.manifest(t, typePack, nil, layers...)
		res, err := s.Import(ctx, stagedSource{src}, []cache.Artifact{packArtifact(m, ref)}, cache.ImportRecord{}, cache.ImportOptions{Stage: st})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	files := smallFiles("staged", 50)
	if res := build("staged:1", files); res.BlobsWritten != 52 {
		t.Fatalf("build wrote %d blobs, want 52", res.BlobsWritten)
	}
	if got := segmentFiles(t, s); len(got) != 1 {
		t.Fatalf("segments = %v, want one", got)
	}
	if res := build("again:1", files); res.BlobsWritten != 0 || res.Artifacts[0].Status != cache.StatusLinked {
		t.Fatalf("rebuild under another ref: %d blobs written, status %s, want none and linked", res.BlobsWritten, res.Artifacts[0].Status)
	}
	if got := segmentFiles(t, s); len(got) != 1 {
		t.Fatalf("segments after a rebuild = %v, want still one", got)
	}
	if got, _ := filepath.Glob(filepath.Join(s.Root(), "ingest", "*")); len(got) != 0 {
		t.Fatalf("ingest after builds = %v, want empty", got)
	}
}

// stagedSource serves manifests from memory and nothing else: a layer
// fetched from it (not taken from the stage) fails the import.
type stagedSource struct{ *source }

func (s stagedSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if desc.MediaType == typeLayer {
		return nil, fmt.Errorf("layer %s fetched from the source, not taken from the stage", desc.Digest)
	}
	return s.source.Fetch(ctx, desc)
}

// A segment another process commits is found at once by a store that
// read segments/ just before, even within one tick of the folder's clock.
func TestSegmentSeenByAnotherStore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a := cachetest.OpenAt(t, root)
	b, err := cache.Open(ctx, root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	for round := range 5 {
		first := src.pack(t, smallFiles(fmt.Sprintf("first %d", round), 40)...)
		if _, err := a.Import(ctx, src, []cache.Artifact{packArtifact(first, fmt.Sprintf("first-%d:1", round))}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		// a lists segments/ now (a blob it does not have), right after
		// the folder changed.
		dir := filepath.Join(root, "segments")
		changed := time.Now()
		if err := os.Chtimes(dir, changed, changed); err != nil {
			t.Fatal(err)
		}
		if ok, _ := a.Exists(ctx, content.NewDescriptorFromBytes(typeLayer, []byte("nowhere"))); ok {
			t.Fatal("a blob never imported exists")
		}
		files := smallFiles(fmt.Sprintf("second %d", round), 40)
		second := src.pack(t, files...)
		if _, err := b.Import(ctx, src, []cache.Artifact{packArtifact(second, fmt.Sprintf("second-%d:1", round))}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		// As if b's segment came within the same tick of the file
		// system's clock: the folder's time is what a saw.
		if err := os.Chtimes(dir, changed, changed); err != nil {
			t.Fatal(err)
		}
		d := content.NewDescriptorFromBytes(typeLayer, []byte(files[7]))
		if ok, err := a.Exists(ctx, d); !ok || err != nil {
			t.Fatalf("round %d: a blob another store just committed in a segment: Exists = %v, %v", round, ok, err)
		}
		if got := fetchAll(t, a, d); string(got) != files[7] {
			t.Fatalf("round %d: reads %q", round, got)
		}
	}
}

// A blob being read from a segment that gc rewrites and removes meanwhile
// (its pack is still needed, another one is not) reads to its end, checked,
// and the next read comes from the new segment.
func TestSegmentReadAcrossCompaction(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	kept := smallFiles("kept", 40)
	kept[3] = string(bytes.Repeat([]byte("a long kept file "), 2000))
	sharedSegment(t, s, newSource(), kept)
	before := segmentFiles(t, s)
	d := content.NewDescriptorFromBytes(typeLayer, []byte(kept[3]))
	rc, err := s.Fetch(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	if res, err := s.GC(ctx, cache.GCOptions{}); err != nil || res.Blobs != 41 {
		t.Fatalf("gc: %+v %v, want the 41 blobs only gone:1 had", res, err)
	}
	if after := segmentFiles(t, s); len(after) != 1 || slices.Equal(after, before) {
		t.Fatalf("segments after gc = %v, want one new in place of %v", after, before)
	}
	// The store looks for a blob it does not have: it lists segments/
	// again and forgets the removed segment.
	if ok, _ := s.Exists(ctx, content.NewDescriptorFromBytes(typeLayer, []byte("nowhere"))); ok {
		t.Fatal("a blob never imported exists")
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading on across the compaction: %v", err)
	}
	if got := string(head) + string(rest); got != kept[3] {
		t.Fatalf("read %d bytes across the compaction, want the %d of the blob", len(got), len(kept[3]))
	}
	if got := fetchAll(t, s, d); string(got) != kept[3] {
		t.Fatal("the blob reads differently from the new segment")
	}
}

// Two gc runs at once, each compacting the same segment: the one that
// finds its dead blobs needed after all keeps the new segment when the
// other has already removed the old one, so no live blob is lost.
func TestSegmentTwoGCs(t *testing.T) {
	ctx := context.Background()
	root, s, gA := openTwo(t, "gc A")
	gB, err := cache.Open(ctx, root, cache.Options{Holder: "gc B"})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	bFiles := smallFiles("b", 40)
	a := sharedSegment(t, s, src, bFiles)
	calls := 0
	cache.SetAfterCompact(gA, func(next string, made bool) {
		if calls++; calls != 1 {
			return
		}
		if !made {
			t.Errorf("gc A did not make the new segment %s", next)
		}
		// gc B finds the same new segment there, and removes the old
		// one; then gone:1 comes back, so gc A finds its dead blobs
		// needed.
		if _, err := gB.GC(ctx, cache.GCOptions{}); err != nil {
			t.Error(err)
		}
		if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "gone:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
			t.Error(err)
		}
	})
	if _, err := gA.GC(ctx, cache.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("gc A compacted %d times, want once", calls)
	}
	for _, f := range append(bFiles, smallFiles("gone", 40)...) {
		if got := fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f))); string(got) != f {
			t.Fatalf("blob reads %q, want %q", got, f)
		}
	}
}

// On a file system that keeps folder times in whole seconds, an import
// whose segment left segments/'s time as it was still finds it when it
// records (and a second import, its blobs).
func TestSegmentCoarseFolderTime(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := cachetest.OpenAt(t, root)
	src := newSource()
	first := src.pack(t, smallFiles("first", 40)...)
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(first, "first:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "segments")
	coarse := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	if err := os.Chtimes(dir, coarse, coarse); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, content.NewDescriptorFromBytes(typeLayer, []byte("nowhere"))); ok {
		t.Fatal("a blob never imported exists")
	}
	files := smallFiles("second", 40)
	second := src.pack(t, files...)
	_, err := s.Import(ctx, src, []cache.Artifact{packArtifact(second, "second:1")}, cache.ImportRecord{}, cache.ImportOptions{
		Verify: func(context.Context, cache.Artifact, content.Fetcher) error {
			// Committed, not yet recorded: the folder's time as the
			// second it was.
			return os.Chtimes(dir, coarse, coarse)
		}})
	if err != nil {
		t.Fatalf("import with the folder's time unchanged: %v", err)
	}
	for _, f := range files {
		if got := fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f))); string(got) != f {
			t.Fatalf("blob reads %q, want %q", got, f)
		}
	}
}

// gc beside cache verify (which holds everything) leaves a segment with
// dead blobs as it is: no rewrite that verify could meet half done.
func TestSegmentGCBesideVerify(t *testing.T) {
	ctx := context.Background()
	root, s, g := openTwo(t, "stella cache gc")
	sharedSegment(t, s, newSource(), smallFiles("kept", 40))
	before := segmentFiles(t, s)
	cache.SetAfterCompact(g, func(next string, _ bool) {
		t.Errorf("gc beside verify rewrote a segment into %s, only to remove it again", next)
	})
	ran := false
	rep, err := s.Verify(ctx, cache.VerifyOptions{Hooks: []cache.VerifyHook{{Name: "gc", Check: func(ctx context.Context, _ *cache.Store) ([]cache.Problem, error) {
		ran = true
		res, err := g.GC(ctx, cache.GCOptions{})
		if err != nil || res.Blobs != 0 || len(res.Held) != 41 {
			t.Errorf("gc beside verify: %+v %v, want nothing removed, the 41 dead blobs held", res, err)
		}
		if got := segmentFiles(t, s); !slices.Equal(got, before) {
			t.Errorf("segments after gc beside verify = %v, want %v untouched", got, before)
		}
		if got, _ := filepath.Glob(filepath.Join(root, "ingest", "*", "*")); len(got) != 0 {
			t.Errorf("gc left %v in ingest/", got)
		}
		return nil, nil
	}}}})
	if err != nil || !ran || !rep.OK() {
		t.Fatalf("verify: %+v %v (hook ran: %v)", rep, err, ran)
	}
}

// TestSegmentCopiesWithoutRecords: blobs the index has no record of (an
// import's that it rolled back, in a segment it shared), one of them also
// a blob file, count once each in verify, du and gc, as recorded ones do.
func TestSegmentCopiesWithoutRecords(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	files := smallFiles("norecord", 40)
	p := src.pack(t, files...)
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(p, "p:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "p:1"); err != nil {
		t.Fatal(err)
	}
	// Every record goes: the blobs are in the segment, known to no record.
	if err := cache.Update(ctx, s, func(tx *bbolt.Tx) error {
		for _, name := range []string{"cache.blobs", "cache.children"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := sha([]byte(files[0]))
	if err := os.WriteFile(filepath.Join(s.Root(), "blobs", "sha256", d.Encoded()), []byte(files[0]), 0o444); err != nil {
		t.Fatal(err)
	}
	const blobs = 40 + 2 // the files, the config and the manifest
	rep, err := s.Verify(ctx, cache.VerifyOptions{})
	if err != nil || rep.Blobs != blobs || rep.UnreferencedBlobs != blobs {
		t.Fatalf("verify: %d blobs, %d unreferenced (%v), want %d each", rep.Blobs, rep.UnreferencedBlobs, err, blobs)
	}
	du, err := s.Du(ctx)
	if err != nil || du.Blobs != blobs || du.UnreferencedBlobs != blobs || du.UnreferencedBytes != rep.UnreferencedBytes {
		t.Fatalf("du: %+v %v, want %d blobs, all unreferenced, %d bytes", du, err, blobs, rep.UnreferencedBytes)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != blobs || res.Bytes != rep.UnreferencedBytes {
		t.Fatalf("gc: %d blobs, %d bytes (%v), want %d, %d", res.Blobs, res.Bytes, err, blobs, rep.UnreferencedBytes)
	}
}

// Files staged by several readers at once fill the segment's buffers in
// turns, each full buffer written at its place by the reader that filled
// it while the others go on appending (and the commit waits for those
// writes, made slow here): every blob reads back whole from
// the one segment, at the place its entry gives (Fetch checks each by
// digest), and the cache verifies.
func TestStagedSegmentConcurrentAdds(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	st, err := s.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Slow chunk writes: the import's seal must wait for them.
	cache.SetChunkWriting(func() { time.Sleep(20 * time.Millisecond) })
	defer cache.SetChunkWriting(nil)
	const readers, each = 4, 700
	contents := make([][]byte, readers*each)
	layers := make([]ocispec.Descriptor, len(contents))
	errs := make(chan error, readers)
	for r := range readers {
		go func() {
			for i := r * each; i < (r+1)*each; i++ {
				b := bytes.Repeat([]byte(fmt.Sprintf("reader %d file %d;", r, i)), 1+i*37%900)
				d, n, err := st.Add(ctx, "file", bytes.NewReader(b))
				if err != nil {
					errs <- err
					return
				}
				contents[i], layers[i] = b, ocispec.Descriptor{MediaType: typeLayer, Digest: d, Size: n}
			}
			errs <- nil
		}()
	}
	var total int
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range contents {
		total += len(b)
	}
	if total < 8<<20 {
		t.Fatalf("%d bytes staged: too few to fill several buffers", total)
	}
	src := newSource()
	m := src.manifest(t, typePack, nil, layers...)
	if _, err := s.Import(ctx, stagedSource{src}, []cache.Artifact{packArtifact(m, "many:1")}, cache.ImportRecord{}, cache.ImportOptions{Stage: st}); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, s); len(got) != 1 {
		t.Fatalf("segments = %v, want one", got)
	}
	for i, l := range layers {
		rc, err := s.Fetch(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, contents[i]) {
			t.Fatalf("file %d: read back %d bytes (%v), want its %d", i, len(b), err, len(contents[i]))
		}
	}
}
