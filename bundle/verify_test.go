package bundle

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

// openBytes opens a bundle held in memory through a file.
func openBytes(t testing.TB, b []byte) *Reader {
	t.Helper()
	return openBytesWith(t, b, OpenOptions{})
}

// openBytesWith is openBytes with options.
func openBytesWith(t testing.TB, b []byte, opts OpenOptions) *Reader {
	t.Helper()
	p := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), p, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestVerifyReport(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	b, _ := writeBundle(t, f, entries, WriteOptions{})
	r := openBytes(t, b)
	var last [2]int64
	one, err := r.Verify(ctx, VerifyOptions{Concurrency: 1, Progress: func(done, total int64) { last = [2]int64{done, total} }})
	if err != nil {
		t.Fatal(err)
	}
	two, err := r.Verify(ctx, VerifyOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if last[0] != last[1] || last[1] == 0 {
		t.Fatalf("progress ended at %v", last)
	}
	var blobBytes int64
	for _, e := range r.blobs {
		blobBytes += e.size
	}
	if one.Blobs != 7 || one.Bytes != blobBytes || len(one.Entries) != 2 {
		t.Fatalf("report = %+v, want 7 blobs of %d bytes", one, blobBytes)
	}
	for i, e := range one.Entries {
		if e.Err != nil || e.Bytes == 0 || e.Blobs != two.Entries[i].Blobs || e.Bytes != two.Entries[i].Bytes {
			t.Fatalf("entry %d: %+v vs %+v", i, e, two.Entries[i])
		}
	}

	// A flipped pack layer fails the pack, not its signature.
	fs := readTarFiles(t, b)
	var layer ocispec.Descriptor
	var blobs []ocispec.Descriptor
	if err := walkStore(ctx, f.store, entries[1].Descriptor, &blobs); err != nil {
		t.Fatal(err)
	}
	layer = blobs[2]
	i := find(t, fs, blobPath(layer.Digest))
	fs[i].data = flip(fs[i].data)
	rep, err := openBytes(t, writeTarFiles(t, fs)).Verify(ctx, VerifyOptions{})
	if !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("err = %v, want integrity.ErrDigestMismatch", err)
	}
	if rep.Entries[0].Kind != artifact.KindPack || !errors.Is(rep.Entries[0].Err, integrity.ErrDigestMismatch) || rep.Entries[1].Err != nil {
		t.Fatalf("entries = %+v", rep.Entries)
	}
}

// rleBomb is a hand-made zstd frame of RLE blocks: 128 KiB of zeros per 4
// bytes of input.
func rleBomb(blocks int) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50} // magic, no content size, 1 MiB window
	for i := range blocks {
		h := uint32(128<<10)<<3 | 1<<1 // block size, type RLE
		if i == blocks-1 {
			h |= 1 // last block
		}
		var le [4]byte
		binary.LittleEndian.PutUint32(le[:], h)
		b = append(b, le[0], le[1], le[2], 0x00)
	}
	return b
}

func TestVerifyZstd(t *testing.T) {
	ctx := context.Background()
	k := newKit(t)
	annotated := func(data []byte, size int64, plain []byte) ocispec.Descriptor {
		return k.f.blob(foreignZstd, data, map[string]string{
			artifact.AnnotationUncompressedSize:   strconv.FormatInt(size, 10),
			artifact.AnnotationUncompressedDigest: digest.FromBytes(plain).String(),
		})
	}
	tests := map[string]struct {
		layer ocispec.Descriptor
		opts  VerifyOptions
		want  error
	}{
		// 64 GiB of zeros from 2 MiB: must stop right after the declared KiB.
		"bomb":        {annotated(rleBomb(1<<19), 1024, nil), VerifyOptions{}, ErrDecompressionLimit},
		"over cap":    {k.f.zstdLayer("x", []byte("hello"), 1<<40), VerifyOptions{}, ErrDecompressionLimit},
		"option cap":  {k.f.zstdLayer("x", make([]byte, 4096), -1), VerifyOptions{MaxUncompressedSize: 1000}, ErrDecompressionLimit},
		"short":       {k.f.zstdLayer("x", []byte("hello"), 6), VerifyOptions{}, integrity.ErrSizeMismatch},
		"garbage":     {annotated([]byte("not zstd at all"), 5, []byte("hello")), VerifyOptions{}, ErrBadCompression},
		"bad size":    {k.f.blob(foreignZstd, []byte("x"), map[string]string{artifact.AnnotationUncompressedSize: "-1", artifact.AnnotationUncompressedDigest: digest.FromString("").String()}), VerifyOptions{}, integrity.ErrInvalidManifest},
		"bad digest":  {k.f.blob(foreignZstd, []byte("y"), map[string]string{artifact.AnnotationUncompressedSize: "1", artifact.AnnotationUncompressedDigest: "md5:00"}), VerifyOptions{}, integrity.ErrInvalidManifest},
		"fine":        {k.f.zstdLayer("x", bytes.Repeat([]byte("ok "), 1000), -1), VerifyOptions{}, nil},
		"empty input": {k.f.zstdLayer("x", nil, -1), VerifyOptions{}, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			// zstd layers are foreign: only AllowAnyMediaType carries them.
			b, _ := k.bundleOf(WriteOptions{AllowAnyMediaType: true}, tt.layer)
			start := time.Now()
			_, err := openBytesWith(t, b, OpenOptions{AllowAnyMediaType: true}).Verify(ctx, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var ee *EntryError
			if tt.want != nil && (!errors.As(err, &ee) || ee.Path != blobPath(tt.layer.Digest)) {
				t.Fatalf("err = %v does not name the layer %s", err, blobPath(tt.layer.Digest))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// Strict bundles hold no zstd layer: neither the writer nor the reader
// accepts one, of the retired stella zstd pack file type or anyone else's.
func TestStrictBundlesRefuseZstd(t *testing.T) {
	k := newKit(t)
	for _, mt := range []string{retiredPackZstd, foreignZstd} {
		l := k.f.zstdLayerOf(mt, "files/run.sh", []byte("echo stella\n"), -1)
		m := k.f.manifest(artifact.ArtifactTypePack, &k.cfg, nil, l)
		entries := []Entry{{Descriptor: m, Kind: artifact.KindPack, Ref: "demo:1.0.0"}}
		var buf bytes.Buffer
		if _, err := Write(context.Background(), &buf, k.f.store, entries, WriteOptions{}); !errors.Is(err, integrity.ErrUnsupportedMediaType) {
			t.Errorf("%s: strict write: err = %v, want ErrUnsupportedMediaType", mt, err)
		}
		b, _ := writeBundle(t, k.f, entries, writeAny)
		p := filepath.Join(t.TempDir(), "b.tar")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(context.Background(), p, OpenOptions{}); !errors.Is(err, integrity.ErrUnsupportedMediaType) {
			t.Errorf("%s: strict open: err = %v, want ErrUnsupportedMediaType", mt, err)
		}
		r := openBytesWith(t, b, openAny)
		if _, err := r.Verify(context.Background(), VerifyOptions{}); err != nil {
			t.Errorf("%s: with AllowAnyMediaType: %v", mt, err)
		}
	}
}

func TestVerifyCancelled(t *testing.T) {
	f, entries := standard(t)
	b, _ := writeBundle(t, f, entries, WriteOptions{})
	r := openBytes(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Verify(ctx, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	cfg := f.blob(artifact.MediaTypePackConfig, []byte(`{}`), nil)
	m := f.manifest(artifact.ArtifactTypePack, &cfg, nil,
		f.blob(artifact.MediaTypePackFile, random(4<<20), nil),
		f.blob(artifact.MediaTypePackFile, random(4<<20), nil),
		f.zstdLayer("z", bytes.Repeat(random(64<<10), 64), -1),
	)
	data, sum := writeBundle(b, f, []Entry{{Descriptor: m, Kind: artifact.KindPack, Ref: "bench:1"}}, WriteOptions{AllowAnyMediaType: true})
	r := openBytesWith(b, data, OpenOptions{AllowAnyMediaType: true})
	b.SetBytes(sum.Size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Verify(context.Background(), VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
