package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBuildRefusesFileModifiedWhileRead: a build reads each file once
// (ADR 0023), so a file modified while it is read must be caught by the
// stat around the read, whether the write changes its size or keeps its
// size and puts its modification time back; the build fails with
// ERR_PACK_DIGEST_MISMATCH naming the file, and leaves nothing in the
// cache (no artifact, no blob, no staged file).
func TestBuildRefusesFileModifiedWhileRead(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		modify func(t *testing.T, path string)
	}{
		{"grows", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("more"); err != nil {
				t.Fatal(err)
			}
		}},
		{"same size, time put back", func(t *testing.T, path string) {
			time.Sleep(20 * time.Millisecond) // a later clock tick than the file's last change
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("XXXX"), 100); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "p")
			writeFile(t, filepath.Join(src, "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: changing
  version: 1.0.0
  description: A file changes while the build reads it.
spec:
  steps:
    - id: load
      run: {command: ["true"]}
`)
			for _, n := range []string{"a.bin", "b.bin", "c.bin"} {
				p := filepath.Join(src, n)
				writeFile(t, p, strings.Repeat(n, 20000))
				if err := os.Chtimes(p, old, old); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var seen []string
			buildReading = func(name string) {
				mu.Lock()
				seen = append(seen, name)
				mu.Unlock()
				if name == "b.bin" {
					tc.modify(t, filepath.Join(src, name))
				}
			}
			defer func() { buildReading = nil }()
			home := filepath.Join(dir, "home")
			r := stella(t, home, nil, "pack", "build", "-o", filepath.Join(dir, "out.tar"), src)
			if r.code != exitInvalid || !strings.Contains(r.stderr, "ERR_PACK_DIGEST_MISMATCH") || !strings.Contains(r.stderr, "b.bin") || !strings.Contains(r.stderr, "changed while it was read") {
				t.Fatalf("build of a pack whose file changed while read: exit %d, want %d with ERR_PACK_DIGEST_MISMATCH naming b.bin\n%s", r.code, exitInvalid, r.stderr)
			}
			if !bytes.Contains([]byte(strings.Join(seen, " ")), []byte("b.bin")) {
				t.Fatalf("the build never read b.bin: %v", seen)
			}
			buildReading = nil
			assertEmptyCache(t, home)
			if _, err := os.Stat(filepath.Join(dir, "out.tar")); !os.IsNotExist(err) {
				t.Fatalf("a refused build wrote its bundle: %v", err)
			}
		})
	}
}
