package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

func TestVerifyCompressed(t *testing.T) {
	ctx := context.Background()
	cases := map[string]error{
		"../testdata/bundles/valid.stella.tar":                nil,
		"../testdata/bundles/corrupt/zstd-bomb.tar":           ErrDecompressionLimit,
		"../testdata/bundles/corrupt/zstd-bomb-many-refs.tar": ErrDecompressionLimit,
		"../testdata/bundles/corrupt/zstd-no-annotation.tar":  integrity.ErrInvalidManifest,
		"../testdata/bundles/corrupt/zstd-wrong-digest.tar":   integrity.ErrDigestMismatch,
	}
	for path, want := range cases {
		// The zstd vectors hold foreign layers: only AllowAnyMediaType
		// opens them (a strict open refuses them, see TestCorruptVectors).
		r, err := Open(ctx, path, OpenOptions{AllowAnyMediaType: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		err = r.VerifyCompressed(ctx, 0)
		r.Close()
		if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: want %v, got %v", path, want, err)
		}
		if n := r.decompressions.Load(); n > 1 {
			t.Errorf("%s: %d decompressions of one compressed blob", path, n)
		}
	}
}

// layersTimes repeats l n times.
func layersTimes(l ocispec.Descriptor, n int) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, n)
	for i := range out {
		out[i] = l
	}
	return out
}

// TestDecompressEachBlobOnce: however many layers (in one manifest or in
// several) name a compressed blob, Verify and VerifyCompressed decompress
// it once. The count, not the time, is asserted: work per reference would
// show as n decompressions.
func TestDecompressEachBlobOnce(t *testing.T) {
	ctx := context.Background()
	k := newKit(t)
	fine := k.f.zstdLayer("x", bytes.Repeat([]byte("ok "), 1000), -1)
	bomb := k.f.blob(foreignZstd, rleBomb(1<<10), map[string]string{
		artifact.AnnotationUncompressedSize:   "1024",
		artifact.AnnotationUncompressedDigest: digest.FromBytes(nil).String(),
	})
	for _, tt := range []struct {
		name  string
		layer ocispec.Descriptor
		want  error
	}{
		{"fine", fine, nil},
		{"bomb", bomb, ErrDecompressionLimit},
	} {
		for _, n := range []int{1, 10, 1000} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				// n layers in one manifest, and a second manifest naming it too.
				m1 := k.f.manifest(artifact.ArtifactTypePack, &k.cfg, nil, layersTimes(tt.layer, n)...)
				m2 := k.f.manifest(artifact.ArtifactTypePack, &k.cfg, nil, tt.layer, k.yaml)
				b, _ := writeBundle(t, k.f, []Entry{
					{Descriptor: m1, Kind: artifact.KindPack, Ref: "demo:1.0.0"},
					{Descriptor: m2, Kind: artifact.KindPack, Ref: "demo:2.0.0"},
				}, writeAny)
				r := openBytesWith(t, b, openAny)
				if _, err := r.Verify(ctx, VerifyOptions{}); !errors.Is(err, tt.want) {
					t.Fatalf("Verify: err = %v, want %v", err, tt.want)
				}
				if got := r.decompressions.Swap(0); got != 1 {
					t.Fatalf("Verify decompressed %d times, want once", got)
				}
				if err := r.VerifyCompressed(ctx, 0); !errors.Is(err, tt.want) {
					t.Fatalf("VerifyCompressed: err = %v, want %v", err, tt.want)
				}
				if got := r.decompressions.Load(); got != 1 {
					t.Fatalf("VerifyCompressed decompressed %d times, want once", got)
				}
			})
		}
	}
}

// TestDecompressionCheapChecksFirst: what the manifests alone refuse is
// refused before any blob is decompressed.
func TestDecompressionCheapChecksFirst(t *testing.T) {
	ctx := context.Background()
	k := newKit(t)
	a := k.f.zstdLayer("a", bytes.Repeat([]byte("a"), 4000), -1)
	b := k.f.zstdLayer("b", bytes.Repeat([]byte("b"), 4000), -1)
	// The same blob as a, declared with other contents by a second layer.
	other := a
	other.Annotations = map[string]string{
		artifact.AnnotationUncompressedSize:   "5",
		artifact.AnnotationUncompressedDigest: digest.FromString("hello").String(),
	}
	tests := map[string]struct {
		layers []ocispec.Descriptor
		opts   VerifyOptions
		want   error
	}{
		"total over the cap":     {[]ocispec.Descriptor{a, b}, VerifyOptions{MaxTotalUncompressed: 7999}, ErrDecompressionTotal},
		"total at the cap":       {[]ocispec.Descriptor{a, b, a}, VerifyOptions{MaxTotalUncompressed: 8000}, nil},
		"disagreeing layers":     {[]ocispec.Descriptor{a, other}, VerifyOptions{}, integrity.ErrInvalidManifest},
		"one layer over its cap": {[]ocispec.Descriptor{a}, VerifyOptions{MaxUncompressedSize: 3999}, ErrDecompressionLimit},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			bb, _ := k.bundleOf(writeAny, tt.layers...)
			r := openBytesWith(t, bb, openAny)
			_, err := r.Verify(ctx, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			want := int64(0)
			if tt.want == nil {
				want = 2 // a and b, once each
			}
			if got := r.decompressions.Load(); got != want {
				t.Fatalf("decompressed %d blobs, want %d", got, want)
			}
		})
	}
}

func TestIndexEntriesLimit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var entries []Entry
	for i := range 4 {
		entries = append(entries, Entry{Descriptor: f.pack("demo", fmt.Sprintf("1.0.%d", i)), Kind: artifact.KindPack, Ref: fmt.Sprintf("demo:1.0.%d", i)})
	}
	b, _ := writeBundle(t, f, entries, WriteOptions{})
	lim := defaultLimits
	lim.index = 3
	if _, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, lim); !errors.Is(err, ErrTooManyEntries) {
		t.Fatalf("4 entries, limit 3: err = %v, want ErrTooManyEntries", err)
	}
	lim.index = 4
	if _, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, lim); err != nil {
		t.Fatalf("4 entries, limit 4: %v", err)
	}
}

// FuzzCompressedLayer: the check of a zstd layer (its annotations, then one
// bounded decompression) never panics, never reads past the declared size,
// and accepts only a blob that decompresses to exactly the declared size
// and digest.
func FuzzCompressedLayer(f *testing.F) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	hello := []byte("hello, sealed world\n")
	f.Add(enc.EncodeAll(hello, nil), "20", digest.FromBytes(hello).String())
	f.Add(enc.EncodeAll(nil, nil), "0", digest.FromBytes(nil).String())
	f.Add(rleBomb(64), "1024", digest.FromBytes(nil).String())
	f.Add([]byte("not zstd at all"), "5", digest.FromString("hello").String())
	f.Add(enc.EncodeAll(hello, nil), "-1", "md5:00")
	f.Add(enc.EncodeAll(hello, nil), "99999999999999999999", digest.FromBytes(hello).String())
	enc.Close()
	f.Fuzz(func(t *testing.T, blob []byte, sizeText, digestText string) {
		d := digest.FromBytes(blob)
		r := &Reader{ra: bytes.NewReader(blob), blobs: map[digest.Digest]tarEntry{}}
		e := tarEntry{name: blobPath(d), size: int64(len(blob))}
		r.blobs[d] = e
		l := ocispec.Descriptor{MediaType: foreignZstd, Digest: d, Size: e.size, Annotations: map[string]string{
			artifact.AnnotationUncompressedSize:   sizeText,
			artifact.AnnotationUncompressedDigest: digestText,
		}}
		const maxSize = 1 << 20
		c := r.layerCheck(e, l, maxSize)
		if c.err != nil {
			if c.size != 0 || c.digest != "" {
				t.Fatalf("refused layer with a plan: %+v", c)
			}
			return
		}
		if c.size > maxSize {
			t.Fatalf("planned %d bytes over the cap", c.size)
		}
		var read int64
		err := r.checkZstd(context.Background(), e, d, c, func(n int64) { read += n })
		if read != e.size && err == nil {
			t.Fatalf("accepted after reading %d of %d compressed bytes", read, e.size)
		}
		if err != nil {
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Path != e.name {
				t.Fatalf("error does not name the blob: %v", err)
			}
			return
		}
		// Accepted: a reference decode agrees with the annotations.
		dec, derr := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if derr != nil {
			t.Fatal(derr)
		}
		defer dec.Close()
		plain, derr := dec.DecodeAll(blob, nil)
		if derr != nil || int64(len(plain)) != c.size || digest.FromBytes(plain) != c.digest {
			t.Fatalf("accepted a layer that decodes to %d bytes (%v), declared %d %s", len(plain), derr, c.size, c.digest)
		}
	})
}
