package cache

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
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
