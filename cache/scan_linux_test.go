package cache

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// mappedKiB returns the resident KiB of the mapping of tx's index.db
// (its Rss line in /proc/self/smaps): the pages of the file this process
// has in its page tables, which count in its RSS.
func mappedKiB(t testing.TB, tx *bbolt.Tx) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatalf("the index mapping's residency: %v", err) // Linux has it
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", tx.DB().Info().Data)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, start) {
			in = true
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("smaps: %q: %v", line, err)
			}
			return kib
		}
	}
	t.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}

// peakMapped records, for the scans of s, the most KiB of index.db
// resident at any release or scan end, and how many times it looked.
func peakMapped(t *testing.T, s *Store) (peak, samples *int) {
	t.Helper()
	peak, samples = new(int), new(int)
	s.scanned = func(tx *bbolt.Tx) {
		*peak = max(*peak, mappedKiB(t, tx))
		*samples++
	}
	return peak, samples
}

// TestScanReleasesMappedPages: a scan of 40,000 records in random key
// order (as a cache's digests are; about 18 MiB of pages) keeps at most 6
// MiB of the index resident at once, where a plain ForEach of the same
// records has at least 8 MiB resident when it ends (which shows that the
// measure sees the mapping at all).
func TestScanReleasesMappedPages(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40000
	bucket := []byte("test.scan")
	rng := rand.New(rand.NewPCG(1, 2))
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for range n {
			k := fmt.Sprintf("sha256:%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())
			if err := b.Put([]byte(k), []byte(strings.Repeat("v", 120))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.path(indexFile))
	if err != nil {
		t.Fatal(err)
	}
	var plain, records int
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		_ = tx.Bucket(bucket).ForEach(func(k, v []byte) error { records++; return nil })
		plain = mappedKiB(t, tx)
		return nil
	})
	if err != nil || records != n {
		t.Fatalf("plain ForEach: %d records, %v", records, err)
	}
	t.Logf("index.db %d KiB; a plain ForEach leaves %d KiB of it resident", fi.Size()>>10, plain)
	if plain < 8<<10 {
		t.Fatalf("a plain ForEach of %d records leaves %d KiB of the index resident, want at least 8 MiB: the measure does not see the mapping", n, plain)
	}

	peak, samples := peakMapped(t, s)
	records = 0
	err = s.scan(ctx, func(tx *bbolt.Tx, sc *scanner) error {
		return sc.forEach(tx.Bucket(bucket), func(k, v []byte) error {
			if len(v) != 120 {
				return fmt.Errorf("record %q: %d bytes", k, len(v))
			}
			records++
			return nil
		})
	})
	if err != nil || records != n {
		t.Fatalf("scan: %d records, %v", records, err)
	}
	t.Logf("a scan keeps at most %d KiB resident (%d samples)", *peak, *samples)
	if *samples < 10 || *peak > 6<<10 {
		t.Errorf("a scan of %d records kept up to %d KiB of the index resident (%d samples), want at most 6 MiB", n, *peak, *samples)
	}
}

// fillArtifacts writes n artifact records (random digests, each with a
// ref and 400 bytes of annotations) and their refs straight into the
// index: an index of several MiB to scan, with no blob behind it.
func fillArtifacts(t *testing.T, s *Store, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	err := s.update(context.Background(), func(tx *bbolt.Tx) error {
		for i := range n {
			d := fmt.Sprintf("sha256:%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())
			ref := fmt.Sprintf("demo/p%05d:1.0.0", i)
			ar := artifactRecord{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 600, Kind: "pack",
				Refs: []string{ref}, Annotations: map[string]string{"org.example.note": strings.Repeat("n", 400)}}
			if err := putJSON(tx, bucketArtifacts, d, ar); err != nil {
				return err
			}
			if err := putJSON(tx, bucketRefs, ref, refRecord{Digest: digest.Digest(d)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestListReleasesMappedPages: List of 20,000 artifacts (an index of
// about 16 MiB) reads them as a scan, and keeps at most 6 MiB of the
// index resident at once (`pack list` of 30,000 packs had 78 MiB).
func TestListReleasesMappedPages(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	fillArtifacts(t, s, n)
	peak, samples := peakMapped(t, s)
	entries, err := s.List(ctx, "pack")
	if err != nil || len(entries) != n {
		t.Fatalf("List: %d entries, %v; want %d", len(entries), err, n)
	}
	t.Logf("List keeps at most %d KiB of the index resident (%d samples)", *peak, *samples)
	if *samples < 10 || *peak > 6<<10 {
		t.Errorf("List of %d artifacts kept up to %d KiB of the index resident (%d samples), want a scan that keeps at most 6 MiB", n, *peak, *samples)
	}
}

// TestVerifyReleasesMappedPages: Verify reads the index of 20,000
// artifacts (about 16 MiB) as a scan, keeping at most 6 MiB of it
// resident at once (`cache verify` of 30,000 packs had all of its 131 MiB).
// The artifacts have no blob behind them: what Verify reports is not the
// point here, only that it reads every record.
func TestVerifyReleasesMappedPages(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	fillArtifacts(t, s, n)
	peak, samples := peakMapped(t, s)
	r, err := s.Verify(ctx, VerifyOptions{})
	if err != nil || r.Artifacts != n || r.Refs != n {
		t.Fatalf("Verify: %d artifacts, %d refs, %v; want %d each", r.Artifacts, r.Refs, err, n)
	}
	t.Logf("Verify keeps at most %d KiB of the index resident (%d samples)", *peak, *samples)
	if *samples < 10 || *peak > 6<<10 {
		t.Errorf("Verify of %d artifacts kept up to %d KiB of the index resident (%d samples), want a scan that keeps at most 6 MiB", n, *peak, *samples)
	}
}
