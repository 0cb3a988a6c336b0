package cache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// gcWait bounds how long a gc may take beside a running import (issue 13:
// a bounded wait of at most a second, never the whole import).
const gcWait = time.Second

// TestGCBesideLargeImport runs gc twice while a large import runs, with
// the default lock timeout: mid-copy (blobs in the import's ingest folder)
// and while it verifies (blobs durable, not recorded). Each gc finishes
// within gcWait, removes exactly the garbage that was there before the
// import (but not a blob of it the import found present), keeps what the
// import uses, and the imported pack is whole afterwards.
func TestGCBesideLargeImport(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := cachetest.OpenAt(t, root)
	g, err := cache.Open(ctx, root, cache.Options{Holder: "stella cache gc"})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	old := src.pack(t, "only in old", "shared by old and big")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(old, "old:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "old:1"); err != nil {
		t.Fatal(err)
	}
	garbage := sortedDigests(old.Digest, sha([]byte("only in old")))

	files := []string{"shared by old and big"}
	for i := range 300 {
		// Above the segments' blob size: each blob is a file of its own
		// in the import's folder (TestGCBesideSegmentImport has them in a
		// segment).
		files = append(files, fmt.Sprintf("big layer %d %s", i, make([]byte, 65<<10)))
	}
	big := src.pack(t, files...)
	bigBlobs := []digest.Digest{big.Digest, ocispec.DescriptorEmptyJSON.Digest}
	for _, f := range files {
		bigBlobs = append(bigBlobs, sha([]byte(f)))
	}
	bigBlobs = sortedDigests(bigBlobs...)

	midCopy, goOn := make(chan struct{}), make(chan struct{})
	inVerify, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		copied := 0
		_, err := s.Import(ctx, src, []cache.Artifact{packArtifact(big, "big:1")}, cache.ImportRecord{}, cache.ImportOptions{
			Progress: func(p cache.Progress) {
				if p.Event == cache.BlobDone {
					if copied++; copied == 150 {
						close(midCopy)
						<-goOn
					}
				}
			},
			Verify: func(context.Context, cache.Artifact, content.Fetcher) error {
				close(inVerify)
				<-finish
				return nil
			}})
		done <- err
	}()

	<-midCopy
	start := time.Now()
	res, err := g.GC(ctx, cache.GCOptions{})
	if took := time.Since(start); took > gcWait {
		t.Errorf("gc mid-copy took %v, want at most %v", took, gcWait)
	}
	if err != nil {
		t.Fatalf("gc mid-copy: %v", err)
	}
	if diff := cmp.Diff(garbage, res.Removed); diff != "" {
		t.Errorf("gc mid-copy removed (-want +got):\n%s", diff)
	}
	if res.Leftovers != 0 {
		t.Errorf("gc mid-copy removed %d leftovers: the import's ingest folder", res.Leftovers)
	}
	if !fileExists(blobPath(s, sha([]byte("shared by old and big")))) {
		t.Errorf("gc removed a blob the import found present")
	}
	ingest := dirEntries(t, filepath.Join(root, "ingest"))
	if len(ingest) != 1 || len(dirEntries(t, filepath.Join(root, "ingest", ingest[0]))) < 100 {
		t.Errorf("ingest after gc = %v, want the import's folder with its blobs", ingest)
	}
	close(goOn)

	<-inVerify
	start = time.Now()
	res, err = g.GC(ctx, cache.GCOptions{})
	if took := time.Since(start); took > gcWait {
		t.Errorf("gc during verify took %v, want at most %v", took, gcWait)
	}
	if err != nil {
		t.Fatalf("gc during verify: %v", err)
	}
	if res.Blobs != 0 || res.Leftovers != 0 {
		t.Errorf("gc during verify removed %+v", res)
	}
	if diff := cmp.Diff(bigBlobs, res.Held); diff != "" {
		t.Errorf("gc during verify held (-want +got):\n%s", diff)
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatalf("import beside gc: %v", err)
	}

	if d, err := s.Resolve(ctx, "big:1"); err != nil || d.Descriptor.Digest != big.Digest {
		t.Fatalf("big:1 = %v, %v", d, err)
	}
	for _, f := range files {
		if got := string(fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f)))); got != f {
			t.Fatalf("layer of big:1 reads %d bytes, want %d", len(got), len(f))
		}
	}
	res, err = g.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 0 || res.Leftovers != 0 || len(res.Held) != 0 {
		t.Errorf("gc after the import = %+v, %v", res, err)
	}
	if ents := dirEntries(t, filepath.Join(root, "ingest")); len(ents) != 0 {
		t.Errorf("ingest after the import = %v", ents)
	}
	cachetest.Check(t, s)
}

// TestGCBesideImportProcesses runs gc again and again while two real
// processes import: no gc waits longer than gcWait, both imports succeed,
// and the cache verifies clean with every artifact whole.
func TestGCBesideImportProcesses(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	specs := []helperSpec{
		{root: root, seed: 21, prefix: "p", n: 4, k: 8, size: 512 << 10},
		{root: root, seed: 22, prefix: "q", n: 4, k: 8, size: 512 << 10},
	}
	g, err := cache.Open(ctx, root, cache.Options{Holder: "stella cache gc"})
	if err != nil {
		t.Fatal(err)
	}
	waits := make(chan error, len(specs))
	for _, h := range specs {
		cmd, _, goAhead := startHelper(t, h)
		goAhead()
		go func() { waits <- cmd.Wait() }()
	}
	var slowest time.Duration
	runs := 0
	for finished := 0; finished < len(specs); {
		select {
		case err := <-waits:
			if err != nil {
				t.Errorf("import process: %v", err)
			}
			finished++
			continue
		default:
		}
		start := time.Now()
		if _, err := g.GC(ctx, cache.GCOptions{}); err != nil {
			t.Fatalf("gc beside imports: %v", err)
		}
		slowest = max(slowest, time.Since(start))
		runs++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d gc runs beside two imports, slowest %v", runs, slowest)
	if slowest > gcWait {
		t.Errorf("a gc beside imports took %v, want at most %v", slowest, gcWait)
	}
	s := cachetest.OpenAt(t, root)
	got := listed(t, s)
	for _, h := range specs {
		src, arts, want := expected(t, h)
		for ref, d := range want {
			if got[ref] != d {
				t.Errorf("ref %s = %s, want %s", ref, got[ref], d)
			}
		}
		for _, a := range arts {
			// Every layer reads back whole and verified.
			b, err := content.FetchAll(ctx, src, a.Descriptor)
			if err != nil {
				t.Fatal(err)
			}
			if got := fetchAll(t, s, a.Descriptor); string(got) != string(b) {
				t.Errorf("manifest %s differs", a.Descriptor.Digest)
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "holds")); len(ents) != 0 {
		t.Errorf("hold files left: %d", len(ents))
	}
}

// TestGCBesideExport: an export holds its closure and reads it while its
// pack is removed and gc runs again and again; every read succeeds, and
// the first gc after the export ends removes the pack.
func TestGCBesideExport(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	var files []string
	for i := range 20 {
		files = append(files, fmt.Sprintf("exported layer %d %s", i, make([]byte, 64<<10)))
	}
	a := src.pack(t, files...)
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "a:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	arts, h, err := s.HoldClosure(ctx, []string{"a:1"})
	if err != nil || len(arts) != 1 {
		t.Fatalf("hold closure = %v, %v", arts, err)
	}
	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	stop, gcDone := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			if _, err := s.GC(ctx, cache.GCOptions{}); err != nil {
				gcDone <- err
				return
			}
		}
	}()
	for range 3 {
		for _, f := range files {
			if got := string(fetchAll(t, s, content.NewDescriptorFromBytes(typeLayer, []byte(f)))); got != f {
				t.Fatalf("export read %d bytes of a layer, want %d", len(got), len(f))
			}
		}
		if n := len(fetchAll(t, s, a)); n != int(a.Size) {
			t.Fatalf("export read %d bytes of the manifest, want %d", n, a.Size)
		}
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatalf("gc beside an export: %v", err)
	}
	h.Release()
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != len(files)+2 { // the layers, the manifest and its config
		t.Errorf("gc after the export = %+v, %v", res, err)
	}
}

// TestGCBesideVerify: a gc started while cache verify runs finishes
// within a second (it used to wait for the whole verify, then give up
// after the lock timeout), removes nothing, not even what nothing
// references, names verify as the holder, and verify reports no problem;
// the next gc removes the garbage.
func TestGCBesideVerify(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	src := newSource()
	a := src.pack(t, "kept layer", "garbage layer")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "a:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	b := src.pack(t, "kept layer")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(b, "b:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	var beside cache.GCResult
	var took time.Duration
	hook := cache.VerifyHook{Name: "gc-beside", Check: func(ctx context.Context, st *cache.Store) ([]cache.Problem, error) {
		start := time.Now()
		res, err := st.GC(ctx, cache.GCOptions{})
		beside, took = res, time.Since(start)
		return nil, err
	}}
	rep, err := s.Verify(ctx, cache.VerifyOptions{Hooks: []cache.VerifyHook{hook}})
	if err != nil {
		t.Fatalf("verify with a gc beside it: %v", err)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("verify with a gc beside it reports %+v", rep.Problems)
	}
	if took > time.Second {
		t.Errorf("gc beside verify took %v, want under a second", took)
	}
	// a's manifest and its garbage layer (its config and kept layer are
	// b's too).
	if beside.Blobs != 0 || len(beside.Held) != 2 || len(beside.Holders) != 1 || !strings.Contains(beside.Holders[0].Command, "TestGCBesideVerify") {
		t.Errorf("gc beside verify = %+v, want nothing removed, 2 blobs held by this process", beside)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 2 || fmt.Sprint(res.Removed) != fmt.Sprint(beside.Held) {
		t.Errorf("gc after verify = %+v, %v; want the 2 blobs it held removed", res, err)
	}
}
