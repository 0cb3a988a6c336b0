package cache_test

import (
	"context"
	"path/filepath"
	"testing"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
)

// TestExportHashPasses counts the bytes hashed (integrity.HashedBytes) by an
// export of a pack from the cache to a bundle file, and by the import of that
// bundle into an empty cache: a regression that adds a pass over the content
// fails it, whatever the speed of the machine.
//
// Export needs two passes: each blob read from the cache is checked as it
// streams (a damaged cache must not travel on media), and the bundle file is
// hashed as a whole for the sha256 the export prints. The bundle writer's
// own check of the blob is the same check of the same bytes and is skipped.
// Import from a bundle needs one pass over each blob as it is written into
// the cache (the bundle reader's check and the cache's are one).
func TestExportHashPasses(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	const layers, size = 4, 1 << 20
	arts := randomGraphs(t, src, 7, "bytes", 1, layers, size)
	content := int64(layers * size)

	st, err := cache.Open(ctx, t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(ctx, src, arts, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	entries := []bundle.Entry{{Descriptor: arts[0].Descriptor, Kind: arts[0].Kind, Ref: arts[0].Ref}}
	file := filepath.Join(t.TempDir(), "b.stella.tar")
	before := integrity.HashedBytes()
	sum, err := bundle.WriteFile(ctx, file, st, entries, bundle.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exported := integrity.HashedBytes() - before
	// Slack: manifests, tar headers and padding (a few KiB).
	if limit := content + sum.Size + 64<<10; exported > limit {
		t.Fatalf("export of %d bytes (bundle %d bytes) hashed %d bytes (%.2f passes), want at most %d: blob check and whole-file sha256 only",
			content, sum.Size, exported, float64(exported)/float64(content), limit)
	}
	if exported < content+sum.Size {
		t.Fatalf("export hashed %d bytes, fewer than the blobs (%d) and the file (%d): something went unchecked", exported, content, sum.Size)
	}

	r, err := bundle.Open(ctx, file, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dst, err := cache.Open(ctx, t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before = integrity.HashedBytes()
	if _, err := dst.Import(ctx, r, arts, cache.ImportRecord{From: "bundle"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	imported := integrity.HashedBytes() - before
	if limit := content + 64<<10; imported > limit || imported < content {
		t.Fatalf("import of %d bytes from a bundle hashed %d bytes (%.2f passes), want one pass (at most %d)",
			content, imported, float64(imported)/float64(content), limit)
	}
}
