package cache_test

import (
	"context"
	"os"
	"testing"

	"stellaops.io/stella/cache"
)

// BenchmarkImport imports 256 MiB (4 packs of 4 layers of 16 MiB) from a
// memory source into a fresh cache; MB/s is the import throughput,
// fsyncs included.
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	src := newSource()
	arts := randomGraphs(b, src, 7, "bench", 4, 4, 16<<20)
	var total int64
	for _, a := range arts {
		total += a.Descriptor.Size
	}
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root, err := os.MkdirTemp(b.TempDir(), "cache")
		if err != nil {
			b.Fatal(err)
		}
		s, err := cache.Open(ctx, root, cache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := s.Import(ctx, src, arts, cache.ImportRecord{From: "bench"}, cache.ImportOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if res.BytesWritten < 256<<20 {
			b.Fatalf("wrote %d bytes", res.BytesWritten)
		}
		_ = os.RemoveAll(root)
		b.StartTimer()
	}
}

// BenchmarkVerify re-hashes a 256 MiB cache.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	src := newSource()
	arts := randomGraphs(b, src, 8, "bench", 4, 4, 16<<20)
	s, err := cache.Open(ctx, b.TempDir(), cache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := s.Verify(ctx, cache.VerifyOptions{})
		if err != nil || !r.OK() {
			b.Fatalf("verify: %v %+v", err, r.Problems)
		}
	}
}
