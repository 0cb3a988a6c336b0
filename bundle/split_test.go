package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// splitBytes cuts a bundle into parts of partSize named after base, with
// their parts manifest.
func splitBytes(t testing.TB, b []byte, partSize int, base string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	whole := sha256.Sum256(b)
	m := partsManifest{Version: partsVersion, Name: base, Size: int64(len(b)), SHA256: hex.EncodeToString(whole[:])}
	for i := 0; i*partSize < len(b); i++ {
		chunk := b[i*partSize : min(len(b), (i+1)*partSize)]
		sum := sha256.Sum256(chunk)
		p := Part{Name: partName(base, i+1), Index: i + 1, Size: int64(len(chunk)), SHA256: hex.EncodeToString(sum[:])}
		m.Parts = append(m.Parts, p)
		files[p.Name] = chunk
	}
	mb, err := encodeParts(m)
	if err != nil {
		t.Fatal(err)
	}
	files[base+PartsSuffix] = mb
	return files
}

type splitVector struct {
	name, about string
	open        string // file name given to Open
	want        error
	part        string // entry or part the error names
	build       func(t testing.TB, valid []byte) map[string][]byte
}

var splitVectors = []splitVector{
	{"valid", "the valid bundle in parts of 4 KiB", "b.tar.parts.json", nil, "", func(t testing.TB, v []byte) map[string][]byte {
		return splitBytes(t, v, 4096, "b.tar")
	}},
	{"missing-part", "part 002 absent", "b.tar.001", ErrPartMissing, "b.tar.002", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		delete(fs, "b.tar.002")
		return fs
	}},
	{"truncated-part", "part 002 shorter than listed", "b.tar.parts.json", ErrPartSize, "b.tar.002", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		fs["b.tar.002"] = fs["b.tar.002"][:1000]
		return fs
	}},
	{"stale-part", "part 002 with other content of the same size", "b.tar", ErrPartDigest, "b.tar.002", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		fs["b.tar.002"] = flip(fs["b.tar.002"])
		return fs
	}},
	{"reordered-parts", "parts 001 and 002 swapped", "b.tar.parts.json", ErrPartOrder, "b.tar.001", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		fs["b.tar.001"], fs["b.tar.002"] = fs["b.tar.002"], fs["b.tar.001"]
		return fs
	}},
	{"invalid-parts-manifest", "parts manifest that is not JSON", "b.tar.parts.json", ErrPartsManifest, "b.tar.parts.json", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		fs["b.tar.parts.json"] = []byte(`{"version":1,`)
		return fs
	}},
	{"whole-digest", "whole-file sha256 disagrees with the parts", "b.tar.parts.json", ErrPartsManifest, "b.tar.parts.json", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		var m partsManifest
		mustUnmarshal(t, fs["b.tar.parts.json"], &m)
		m.SHA256 = hex.EncodeToString(make([]byte, 32))
		b, err := encodeParts(m)
		if err != nil {
			t.Fatal(err)
		}
		fs["b.tar.parts.json"] = b
		return fs
	}},
	{"no-parts-manifest", "parts without their manifest", "b.tar.001", ErrPartsManifest, "b.tar.parts.json", func(t testing.TB, v []byte) map[string][]byte {
		fs := splitBytes(t, v, 4096, "b.tar")
		delete(fs, "b.tar.parts.json")
		return fs
	}},
}

func TestSplitVectors(t *testing.T) {
	for _, sv := range splitVectors {
		t.Run(sv.name, func(t *testing.T) {
			err := openAndVerify(t, filepath.Join(vectorDir, "split", sv.name, sv.open))
			if sv.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkRefusal(t, err, sv.want, sv.part)
		})
	}
}

// TestSplitVectorsDeferred opens every split vector with the part checks
// deferred to the blob pass (DeferPartChecks): each is refused by Open or
// Verify with the same sentinel and names the same part or file as when
// Open checks the parts first.
func TestSplitVectorsDeferred(t *testing.T) {
	for _, sv := range splitVectors {
		t.Run(sv.name, func(t *testing.T) {
			err := openAndVerify(t, filepath.Join(vectorDir, "split", sv.name, sv.open), OpenOptions{DeferPartChecks: true})
			if sv.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkRefusal(t, err, sv.want, sv.part)
		})
	}
}

func TestWriteSplitRoundTrip(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.tar")
	ws, err := WriteFile(ctx, whole, f.store, entries, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "media.stella.tar")
	// Stale parts of an earlier, finer split must go.
	if _, err := WriteSplit(ctx, base, 1024, f.store, entries, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	sum, err := WriteSplit(ctx, base, 5000, f.store, entries, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Digest != ws.Digest || sum.Size != ws.Size {
		t.Fatalf("split %v/%d, whole %v/%d", sum.Digest, sum.Size, ws.Digest, ws.Size)
	}
	wantParts := int((ws.Size + 4999) / 5000)
	if len(sum.Parts) != wantParts {
		t.Fatalf("%d parts, want %d", len(sum.Parts), wantParts)
	}
	var cat []byte
	for _, p := range sum.Parts {
		b, err := os.ReadFile(filepath.Join(dir, p.Name))
		if err != nil {
			t.Fatal(err)
		}
		if p.Index < len(sum.Parts) && len(b) != 5000 {
			t.Fatalf("part %s: %d bytes", p.Name, len(b))
		}
		cat = append(cat, b...)
	}
	wb, _ := os.ReadFile(whole)
	if !bytes.Equal(cat, wb) {
		t.Fatal("the parts do not concatenate to the whole bundle")
	}
	if _, err := os.Stat(partName(base, wantParts+1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a stale part of the earlier split remains")
	}
	// The manifest is canonical and parses back to the summary.
	mb, err := os.ReadFile(base + PartsSuffix)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseParts(mb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sum.Parts, m.Parts); diff != "" {
		t.Fatalf("parts (-summary +manifest):\n%s", diff)
	}
	if again, _ := encodeParts(*m); !bytes.Equal(again, mb) {
		t.Fatalf("parts manifest is not canonical:\n%s", mb)
	}
	for _, name := range []string{base, base + ".001", base + PartsSuffix, partName(base, wantParts)} {
		r, err := Open(ctx, name, OpenOptions{})
		if err != nil {
			t.Fatalf("open %s: %v", filepath.Base(name), err)
		}
		if diff := cmp.Diff(sum.Entries, r.Entries()); diff != "" {
			t.Fatalf("entries via %s (-written +read):\n%s", filepath.Base(name), diff)
		}
		if _, err := r.Verify(ctx, VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
}

func TestWriteSplitFailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "b.tar")
	if _, err := WriteSplit(ctx, base, 0, f.store, entries, WriteOptions{}); !errors.Is(err, ErrInvalidPartSize) {
		t.Fatalf("part size 0: %v", err)
	}
	if _, err := WriteSplit(ctx, base, 8, f.store, entries, WriteOptions{}); !errors.Is(err, ErrInvalidPartSize) {
		t.Fatalf("more than 999 parts: %v", err)
	}
	// An earlier set, then a write that fails midway: the source breaks
	// on the last blob, after several parts are committed.
	if _, err := WriteSplit(ctx, base, 1024, f.store, entries, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var last ocispec.Descriptor
	src := content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		last = d // the last fetch streams the last non-manifest blob
		return f.store.Fetch(ctx, d)
	})
	if _, err := Write(ctx, io.Discard, src, entries, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A failure before anything is written leaves the earlier set intact.
	broken := errors.New("source broke")
	bad := content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) { return nil, broken })
	if _, err := WriteSplit(ctx, base, 2048, bad, entries, WriteOptions{}); !errors.Is(err, broken) {
		t.Fatalf("err = %v, want the source's error", err)
	}
	if err := openAndVerify(t, base); err != nil {
		t.Fatalf("the earlier set was damaged: %v", err)
	}
	src = content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if d.Digest == last.Digest {
			return nil, broken
		}
		return f.store.Fetch(ctx, d)
	})
	if _, err := WriteSplit(ctx, base, 2048, src, entries, WriteOptions{}); !errors.Is(err, broken) {
		t.Fatalf("err = %v, want the source's error", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed split left %v", left)
	}
}

func TestParseParts(t *testing.T) {
	ok := splitBytes(t, bytes.Repeat([]byte("x"), 2500), 1000, "b.tar")["b.tar.parts.json"]
	if _, err := parseParts(ok); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(make([]byte, 32))
	bad := map[string]string{
		"not json":       `{`,
		"trailing":       string(ok) + `{}`,
		"unknown field":  `{"version":1,"extra":1}`,
		"version":        `{"version":2,"name":"b","size":1,"sha256":"` + h + `","parts":[{"name":"b.001","index":1,"size":1,"sha256":"` + h + `"}]}`,
		"path name":      `{"version":1,"name":"../b","size":1,"sha256":"` + h + `","parts":[{"name":"../b.001","index":1,"size":1,"sha256":"` + h + `"}]}`,
		"no parts":       `{"version":1,"name":"b","size":0,"sha256":"` + h + `","parts":[]}`,
		"index":          `{"version":1,"name":"b","size":1,"sha256":"` + h + `","parts":[{"name":"b.002","index":2,"size":1,"sha256":"` + h + `"}]}`,
		"part name":      `{"version":1,"name":"b","size":1,"sha256":"` + h + `","parts":[{"name":"c.001","index":1,"size":1,"sha256":"` + h + `"}]}`,
		"sum mismatch":   `{"version":1,"name":"b","size":2,"sha256":"` + h + `","parts":[{"name":"b.001","index":1,"size":1,"sha256":"` + h + `"}]}`,
		"size overflow":  `{"version":1,"name":"b","size":9223372036854775807,"sha256":"` + h + `","parts":[{"name":"b.001","index":1,"size":9223372036854775807,"sha256":"` + h + `"},{"name":"b.002","index":2,"size":9223372036854775807,"sha256":"` + h + `"}]}`,
		"negative size":  `{"version":1,"name":"b","size":-1,"sha256":"` + h + `","parts":[{"name":"b.001","index":1,"size":-1,"sha256":"` + h + `"}]}`,
		"uppercase hash": `{"version":1,"name":"b","size":1,"sha256":"` + h + `","parts":[{"name":"b.001","index":1,"size":1,"sha256":"AB` + h[2:] + `"}]}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := parseParts([]byte(in)); !errors.Is(err, ErrPartsManifest) {
				t.Fatalf("err = %v, want ErrPartsManifest", err)
			}
		})
	}
}

func TestMultiReaderAt(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 10000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	mr := &multiReaderAt{size: int64(len(data))}
	defer mr.Close()
	for i, cut := range [][2]int{{0, 3000}, {3000, 3001}, {3001, 10000}} {
		p := filepath.Join(dir, partName("p", i+1))
		if err := os.WriteFile(p, data[cut[0]:cut[1]], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		mr.parts = append(mr.parts, partFile{f: f, off: int64(cut[0]), size: int64(cut[1] - cut[0])})
	}
	for range 200 {
		off := rng.IntN(len(data))
		n := rng.IntN(5000)
		buf := make([]byte, n)
		got, err := mr.ReadAt(buf, int64(off))
		want := min(n, len(data)-off)
		if got != want || !bytes.Equal(buf[:got], data[off:off+want]) {
			t.Fatalf("ReadAt(%d, %d) = %d bytes, want %d", n, off, got, want)
		}
		if (want < n) != errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d, %d): err = %v", n, off, err)
		}
	}
}

// FuzzParts checks that the parts manifest parser never panics and that
// whatever it accepts survives a canonical round trip.
func FuzzParts(f *testing.F) {
	f.Add(splitBytes(f, bytes.Repeat([]byte("x"), 2500), 1000, "b.tar")["b.tar.parts.json"])
	f.Add([]byte(`{"version":1,"name":"b","size":1,"sha256":"","parts":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseParts(b)
		if err != nil {
			if !errors.Is(err, ErrPartsManifest) {
				t.Fatalf("refusal without ErrPartsManifest: %v", err)
			}
			return
		}
		enc, err := encodeParts(*m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseParts(enc)
		if err != nil {
			t.Fatalf("canonical form refused: %v", err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
