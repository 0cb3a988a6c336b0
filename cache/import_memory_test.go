package cache

import (
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content/memory"
)

// TestImportRecordPagesFull: the import record's keys only ever grow (the
// record's id, then id and entry number), so its leaf pages are filled
// whole instead of split half full as for keys that land anywhere. The
// pages of index.db count in the RSS of every process that maps them, and
// an import's write transactions map most of the file (issue 13). The
// bucket's page use is read, not timed.
func TestImportRecordPagesFull(t *testing.T) {
	ctx := context.Background()
	src := memory.New()
	cfg := []byte(`{}`)
	cd := ocispec.Descriptor{MediaType: "application/vnd.example.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := src.Push(ctx, cd, bytesReader(cfg)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Two imports of 600 artifacts (three batches each).
	for imp := range 2 {
		var arts []Artifact
		for i := range 600 {
			m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[],"annotations":{"n":"%d-%d"}}`,
				ocispec.MediaTypeImageManifest, cd.MediaType, cd.Digest, cd.Size, imp, i))
			md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
			if err := src.Push(ctx, md, bytesReader(m)); err != nil {
				t.Fatal(err)
			}
			arts = append(arts, Artifact{Descriptor: md, Kind: "pack", Ref: fmt.Sprintf("p%d-%03d:1.0.0", imp, i)})
		}
		res, err := s.Import(ctx, src, arts, ImportRecord{From: "test", Verified: []string{"sha256 per blob"}}, ImportOptions{})
		if err != nil || len(res.Artifacts) != 600 || len(res.Record.Artifacts) != 600 {
			t.Fatalf("import %d: %d results, record of %d, %v: want 600 new", imp, len(res.Artifacts), len(res.Record.Artifacts), err)
		}
		recs, err := s.Imports(ctx, arts[0].Descriptor.Digest)
		if err != nil || len(recs) != 1 || len(recs[0].Artifacts) != 600 || recs[0].Artifacts[599].Digest != arts[599].Descriptor.Digest {
			t.Fatalf("import %d: records %d, %v: want one listing its 600 artifacts in order", imp, len(recs), err)
		}
	}
	var st bbolt.BucketStats
	var pageSize int
	if err := s.view(ctx, func(tx *bbolt.Tx) error {
		st, pageSize = tx.Bucket(bucketImports).Stats(), tx.DB().Info().PageSize
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pages := st.LeafPageN + st.LeafOverflowN
	use := float64(st.LeafInuse) / float64(pages*pageSize)
	t.Logf("import records: %d keys on %d leaf pages, %.0f%% used", st.KeyN, pages, 100*use)
	if st.KeyN != 1202 || use < 0.85 {
		t.Errorf("import records: %d keys on %d leaf pages %.0f%% used, want 1,202 keys on pages at least 85%% used", st.KeyN, pages, 100*use)
	}
}
