package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// largeFiles is n distinct contents of 66 KiB, past what segments hold:
// each is a blob file of its own.
func largeFiles(prefix string, n int) []string {
	var fs []string
	for i := range n {
		fs = append(fs, fmt.Sprintf("%s %d ", prefix, i)+strings.Repeat("y", 66<<10))
	}
	return fs
}

// TestImportListsBlobFiles: an import that looks for many blobs lists the
// blob files once, and still skips exactly the blobs the cache has —
// whether the listing is taken (a small cache) or given up (a cache of
// many more blob files than the import looks for, looked up one by one).
func TestImportListsBlobFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		before int // blob files of an unrelated pack already there
	}{{"listed", 0}, {"too many to list", 400}} {
		t.Run(tc.name, func(t *testing.T) {
			s := cachetest.Open(t)
			src := newSource()
			if tc.before > 0 {
				other := src.pack(t, largeFiles("other", tc.before)...)
				if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(other, "other:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			shared := largeFiles("shared", 70)
			a := src.pack(t, shared...)
			if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(a, "a:1")}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			b := src.pack(t, append(largeFiles("new", 5), shared...)...)
			res, err := s.Import(ctx, src, []cache.Artifact{packArtifact(b, "b:1")}, cache.ImportRecord{}, cache.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// b's manifest, its config (a's too: already there) and its 5 new files.
			if res.BlobsSkipped != 71 || res.BlobsWritten != 6 {
				t.Fatalf("import of b: %d written, %d skipped; want 6 written (manifest, 5 files), 71 skipped (70 shared files, the config)", res.BlobsWritten, res.BlobsSkipped)
			}
			if rep, err := s.Verify(ctx, cache.VerifyOptions{}); err != nil || !rep.OK() || rep.Blobs != tc.before+70+5+3+min(tc.before, 1) {
				t.Fatalf("verify: %+v %v", rep, err)
			}
		})
	}
}
