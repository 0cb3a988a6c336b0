package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
)

// TestRecordFiles: a staged blob kept as a record file is at its place,
// read-only, out of the stage (nothing left in ingest/ once the stage is
// closed), left alone by gc and verify (cachetest's check on the way out
// reports no stray file, leftover or unreferenced blob), and read back
// checked: altered or truncated, it fails with the integrity sentinels;
// one never staged, or gone, is ErrNotFound.
func TestRecordFiles(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	recs := s.Records("approve")
	content := bytes.Repeat([]byte("a saved plan's canonical json "), 40000)
	st, err := s.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, n, err := st.Add(ctx, "plan", bytes.NewReader(content))
	if err != nil || n != int64(len(content)) || d != sha(content) {
		t.Fatalf("staged %s %d: %v", d, n, err)
	}
	if err := recs.KeepStaged(ctx, st, "plans", d, n); err != nil {
		t.Fatal(err)
	}
	if err := recs.KeepStaged(ctx, st, "plans", d, n); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("kept twice: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if left := dirEntries(t, filepath.Join(s.Root(), "ingest")); len(left) != 0 {
		t.Fatalf("left in ingest: %v", left)
	}
	path := filepath.Join(s.Root(), "records", "approve.plans", "sha256", d.Encoded())
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != n || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("record file %s: %v %v", path, fi, err)
	}
	res, err := s.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 0 || res.Leftovers != 0 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	if u, err := s.Du(ctx); err != nil || u.RecordFiles != 1 || u.RecordBytes != n || u.Blobs != 0 || u.LeftoverFiles != 0 {
		t.Fatalf("du: %+v %v; want 1 record file of %d bytes", u, err, n)
	}

	read := func() ([]byte, error) {
		rc, err := recs.OpenFile(ctx, "plans", d, n)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	if got, err := read(); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if _, err := recs.OpenFile(ctx, "plans", sha([]byte("other")), 5); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("never kept: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(content)
	altered[len(altered)/2] ^= 1
	for name, c := range map[string]struct {
		data []byte
		want error
	}{
		"altered":   {altered, integrity.ErrDigestMismatch},
		"truncated": {content[:len(content)-1], integrity.ErrSizeMismatch},
	} {
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := read(); !errors.Is(err, c.want) || !strings.Contains(err.Error(), "records/approve.plans/sha256/"+d.Encoded()) {
			t.Errorf("%s: got %v, want %v naming the file", name, err, c.want)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("removed: %v", err)
	}
}
