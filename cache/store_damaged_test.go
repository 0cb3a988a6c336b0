package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"go.etcd.io/bbolt"
)

// TestOpenDamagedIndex: an index file that is not a bbolt database fails
// with ErrIndexDamaged and is left as it was.
func TestOpenDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	junk := []byte("not a database, but long enough to look like one was meant\n")
	if err := os.WriteFile(filepath.Join(dir, indexFile), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := Open(ctx, dir, Options{})
	if err == nil {
		_, err = st.Resolve(ctx, "p:1.0.0")
	}
	if !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("Open and Resolve: %v, want ErrIndexDamaged", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, indexFile))
	if string(got) != string(junk) {
		t.Fatalf("the damaged index was rewritten: %q", got)
	}
}

// TestOpenExistingIndexWritesNothing: every command opens the cache, and a
// write transaction of the index costs two fdatasyncs; an index already laid
// out is only read. The first Open of a folder creates the index (one write
// transaction); the next makes none, and still refuses an index written by
// a newer version.
func TestOpenExistingIndexWritesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := first.updates.Load(); got != 1 {
		t.Errorf("first Open: %d index write transactions, want 1 (the layout)", got)
	}
	again, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.updates.Load(); got != 0 {
		t.Errorf("Open of an existing cache: %d index write transactions, want 0", got)
	}
	if _, err := again.Resolve(ctx, "p:1.0.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve in the reopened cache: %v, want ErrNotFound", err)
	}
	if err := first.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("version"), []byte(strconv.Itoa(indexVersion+1)))
	}); err != nil {
		t.Fatal(err)
	}
	newer, err := Open(ctx, dir, Options{})
	if !errors.Is(err, ErrIndexVersion) {
		t.Fatalf("Open of an index of version %d: %v, want ErrIndexVersion", indexVersion+1, err)
	}
	if newer != nil {
		t.Fatal("Open returned a store with its error")
	}
}
