package safefile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f.txt")
	if err := WriteBytes(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p, strings.NewReader("new content"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new content" {
		t.Fatalf("got %q, %v", got, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	assertNoTemp(t, filepath.Dir(p))
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestFailedWriteLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteBytes(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p, failReader{}, 0o644); err == nil {
		t.Fatal("want error")
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Fatalf("content %q, want old", got)
	}
	assertNoTemp(t, dir)
}

func TestAbortAfterCommitIsNoop(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("x"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if got, _ := os.ReadFile(p); string(got) != "x" {
		t.Fatalf("content %q", got)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("second commit must fail")
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
}

// TestFileCountsEveryWrite: whichever way bytes reach a File (Write,
// io.Copy, WriteString), they count towards its writeback.
func TestFileCountsEveryWrite(t *testing.T) {
	f, err := Create(filepath.Join(t.TempDir(), "out"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write(make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, struct{ io.Reader }{bytes.NewReader(make([]byte, writebackChunk))}); err != nil { // no WriterTo: io.Copy calls ReadFrom
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "abcd"); err != nil {
		t.Fatal(err)
	}
	if want := int64(3 + writebackChunk + 4); f.written != want || f.started != 3+writebackChunk {
		t.Fatalf("written %d, writeback started to %d; want %d and %d", f.written, f.started, want, 3+writebackChunk)
	}
}
