package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

// bigSplit writes a pack of four random layers of a little over 1 MiB
// (sizes that leave tar padding after each) as a split set in parts of
// 300 KiB, and returns the path of its parts manifest, the set's size and
// the size of the layers.
func bigSplit(t *testing.T) (manifest string, size, content int64) {
	t.Helper()
	f := newFixture(t)
	rng := rand.New(rand.NewChaCha8([32]byte{24}))
	cfg := f.blob(artifact.MediaTypePackConfig, []byte(`{"id":"big","version":"1.0.0"}`), nil)
	var layers []ocispec.Descriptor
	for i := range 4 {
		b := make([]byte, 1<<20+1000+i)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		layers = append(layers, f.blob(artifact.MediaTypePackFile, b, map[string]string{artifact.AnnotationTitle: fmt.Sprintf("layer-%d.bin", i)}))
		content += int64(len(b))
	}
	p := f.manifestAnnotated(artifact.ArtifactTypePack, &cfg, nil, map[string]string{artifact.AnnotationRef: "big:1.0.0"}, layers...)
	base := filepath.Join(t.TempDir(), "big.stella.tar")
	sum, err := WriteSplit(context.Background(), base, 300<<10, f.store, []Entry{{Descriptor: p, Kind: artifact.KindPack, Ref: "big:1.0.0"}}, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return base + PartsSuffix, sum.Size, content
}

// TestSplitChecksInOnePass holds Open with DeferPartChecks and Verify of a
// split set to one read of its parts, which also feeds each part's sha256
// and the whole-file sha256 (issue 13: the part checks were a pass of
// their own before Verify's, reading and hashing everything twice more).
// Open checking the parts first reads everything twice; that is kept for
// callers that do not defer, and counted here too.
func TestSplitChecksInOnePass(t *testing.T) {
	ctx := context.Background()
	path, size, content := bigSplit(t)
	const slack = 64 << 10 // headers, index, manifests read by Open

	read, hashed := PartBytesRead(), integrity.HashedBytes()
	r, err := Open(ctx, path, OpenOptions{DeferPartChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bytes < content {
		t.Fatalf("verify hashed %d blob bytes, fewer than the layers' %d", rep.Bytes, content)
	}
	read, hashed = PartBytesRead()-read, integrity.HashedBytes()-hashed
	if read < size || read > size+slack {
		t.Errorf("open and verify of a %d-byte split set read %d bytes from its parts (%.2f passes), want one pass", size, read, float64(read)/float64(size))
	}
	// The blobs once, each part once, the whole set once.
	if want := rep.Bytes + 2*size; hashed < want || hashed > want+slack {
		t.Errorf("open and verify hashed %d bytes, want %d: the blobs (%d), every part and the whole set (%d each)", hashed, want, rep.Bytes, size)
	}

	read = PartBytesRead()
	r, err = Open(ctx, path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(ctx, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if read = PartBytesRead() - read; read < 2*size-slack || read > 2*size+slack {
		t.Errorf("open checking the parts first, then verify, read %d bytes, want two passes (%d)", read, 2*size)
	}
}

// TestSplitChecksBesideReads checks the parts in their own sweep while
// other goroutines read blobs out of file order, as an import does: the
// check succeeds, and the reads and the sweep together read each byte at
// most twice.
func TestSplitChecksBesideReads(t *testing.T) {
	ctx := context.Background()
	path, size, _ := bigSplit(t)
	read := PartBytesRead()
	r, err := Open(ctx, path, OpenOptions{DeferPartChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	var checkErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		checkErr = r.CheckParts(ctx)
	}()
	blobs := slices.Collect(func(yield func(tarEntry) bool) {
		for _, e := range r.blobs {
			if !yield(e) {
				return
			}
		}
	})
	slices.SortFunc(blobs, func(a, b tarEntry) int { return int(b.off - a.off) }) // last first
	errs := make([]error, len(blobs))
	for i, e := range blobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = io.Copy(io.Discard, io.NewSectionReader(r.ra, e.off, e.size))
		}()
	}
	wg.Wait()
	if err := errors.Join(append(errs, checkErr)...); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckParts(ctx); err != nil {
		t.Fatalf("second CheckParts: %v", err)
	}
	if read = PartBytesRead() - read; read > 2*size+64<<10 {
		t.Errorf("reads and part checks of a %d-byte set read %d bytes, want at most two passes", size, read)
	}
}

// TestSplitDamageOutsideBlobs damages bytes of a split set that no blob
// check reads (the padding after a blob, the end-of-archive blocks) while
// its parts manifest stays as written: with the part checks deferred,
// Verify still refuses the set with ErrPartDigest naming the part, and
// CheckParts says the same.
func TestSplitDamageOutsideBlobs(t *testing.T) {
	ctx := context.Background()
	path, size, _ := bigSplit(t)
	r, err := Open(ctx, path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var padding int64 = -1
	for _, e := range r.blobs {
		if e.size%512 != 0 && e.size > 1<<20 {
			padding = e.off + e.size + 3
			break
		}
	}
	r.Close()
	if padding < 0 {
		t.Fatal("no blob followed by padding")
	}
	dir := filepath.Dir(path)
	for _, off := range []int64{padding, size - 7} {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			index := int(off/(300<<10)) + 1
			part := filepath.Join(dir, partName("big.stella.tar", index))
			orig, err := os.ReadFile(part)
			if err != nil {
				t.Fatal(err)
			}
			bad := slices.Clone(orig)
			bad[off%(300<<10)] ^= 0x20
			if err := os.WriteFile(part, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(part, orig, 0o644)

			r, err := Open(ctx, path, OpenOptions{DeferPartChecks: true})
			if err == nil {
				_, err = r.Verify(ctx, VerifyOptions{})
				if cerr := r.CheckParts(ctx); !errors.Is(cerr, ErrPartDigest) {
					t.Errorf("CheckParts after Verify: %v, want ErrPartDigest", cerr)
				}
				r.Close()
			}
			checkRefusal(t, err, ErrPartDigest, filepath.Base(part))
		})
	}
}

// TestSplitWholeDigestBindsParts holds the decision of ADR 0027: the
// whole-file sha256 is checked even when every part matches the parts
// manifest. The set here is another bundle's, cut into parts listed with
// their true sha256 and sizes, under a parts manifest that keeps the
// whole-file sha256 of the bundle the operator expects (the sha256 export
// printed, the single file's). Each part checks out and the content is a
// valid bundle of its own: only the whole-file hash refuses it, with
// ErrPartsManifest naming the parts manifest, whether the parts are
// checked by Open, by Verify or by CheckParts (as import does). With its
// own whole-file sha256 the same set opens and verifies.
func TestSplitWholeDigestBindsParts(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	dir := t.TempDir()
	expected, err := WriteFile(ctx, filepath.Join(dir, "expected.tar"), f.store, entries, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := f.pack("other", "2.0.0")
	foreignPath := filepath.Join(dir, "foreign.tar")
	foreignSum, err := WriteFile(ctx, foreignPath, f.store, []Entry{{Descriptor: other, Kind: artifact.KindPack, Ref: "other:2.0.0"}}, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(foreignPath)
	if err != nil {
		t.Fatal(err)
	}
	files := splitBytes(t, foreign, 4096, "b.tar")
	var m partsManifest
	mustUnmarshal(t, files["b.tar.parts.json"], &m)
	if len(m.Parts) < 2 {
		t.Fatalf("%d parts, want several", len(m.Parts))
	}
	for _, p := range m.Parts {
		sum := sha256.Sum256(files[p.Name])
		if got := hex.EncodeToString(sum[:]); got != p.SHA256 || int64(len(files[p.Name])) != p.Size {
			t.Fatalf("part %s does not match its listing", p.Name)
		}
	}
	set := func(t *testing.T, whole string) string {
		t.Helper()
		m.SHA256 = whole
		b, err := encodeParts(m)
		if err != nil {
			t.Fatal(err)
		}
		files["b.tar.parts.json"] = b
		d := t.TempDir()
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(d, "b.tar.parts.json")
	}

	t.Run("expected-whole-digest", func(t *testing.T) {
		path := set(t, expected.Digest.Encoded())
		for _, opts := range []OpenOptions{{}, {DeferPartChecks: true}} {
			checkRefusal(t, openAndVerify(t, path, opts), ErrPartsManifest, "b.tar.parts.json")
		}
		r, err := Open(ctx, path, OpenOptions{DeferPartChecks: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		checkRefusal(t, r.CheckParts(ctx), ErrPartsManifest, "b.tar.parts.json")
	})
	t.Run("own-whole-digest", func(t *testing.T) {
		path := set(t, foreignSum.Digest.Encoded())
		for _, opts := range []OpenOptions{{}, {DeferPartChecks: true}} {
			if err := openAndVerify(t, path, opts); err != nil {
				t.Fatalf("%+v: %v", opts, err)
			}
		}
	})
}
