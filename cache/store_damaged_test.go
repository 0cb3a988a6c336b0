package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
