package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.io/stella/bundle"
)

// rewriteTar rewrites a bundle file through edit, which may change any
// entry's content; SHA256SUMS is recomputed for index.json so only a check
// that reads the signed manifest can notice.
func rewriteTar(t *testing.T, path string, edit func(name string, data []byte) []byte) {
	t.Helper()
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	var entries []entry
	tr := tar.NewReader(bytes.NewReader(in))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		entries = append(entries, entry{h, edit(h.Name, b)})
	}
	sums := map[string]string{}
	for _, e := range entries {
		sum := sha256.Sum256(e.data)
		sums[e.hdr.Name] = hex.EncodeToString(sum[:])
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range entries {
		if e.hdr.Name == "SHA256SUMS" {
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(string(e.data)), "\n") {
				f := strings.Fields(l)
				if len(f) == 2 {
					l = sums[f[1]] + "  " + f[1]
				}
				lines = append(lines, l)
			}
			e.data = []byte(strings.Join(lines, "\n") + "\n")
		}
		e.hdr.Size = int64(len(e.data))
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(e.data)
	}
	_ = tw.Close()
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImportRefusesRenamedPack: a bundle that lists a signed pack under
// another name (index.json rewritten, SHA256SUMS recomputed) is refused even
// though the signature verifies, and nothing is stored.
func TestImportRefusesRenamedPack(t *testing.T) {
	dir := t.TempDir()
	id := filepath.Join(dir, "id.agekey")
	writeFile(t, id, "AGE-SECRET-KEY-18K6XQ6TP3UFN4HRDXX554HPT66W659FMNA8U2YCGAX8U4L09PXAS07F66U\n")
	env := map[string]string{"STELLA_VAULT_IDENTITY_FILE": id}
	a, sealed := filepath.Join(dir, "a"), filepath.Join(dir, "sealed")
	b := filepath.Join(dir, "b.tar")
	for _, args := range [][]string{
		{"vault", "init"},
		{"key", "generate", "--dir", dir, "--vault", "pub", "pub"},
		{"pack", "build", "--sign", "--key", "vault:pub", "-o", b, "../../testdata/packs/backup-database"},
	} {
		if r := stella(t, a, env, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	if r := stella(t, sealed, env, "trust", "add", "--key", filepath.Join(dir, "pub.pub"), "--role", "publisher", "pub"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	rewriteTar(t, b, func(name string, data []byte) []byte {
		if name == "index.json" {
			return bytes.ReplaceAll(data, []byte("backup-database:0.4.2"), []byte("rotate-registry-credentials:9.9.9"))
		}
		return data
	})
	// The rewritten bundle still passes every checksum: only the signed
	// manifest tells the lie apart.
	br, err := bundle.Open(context.Background(), b, bundle.OpenOptions{})
	if err != nil {
		t.Fatalf("the rewritten bundle must pass its checksums for this test to mean anything: %v", err)
	}
	if _, err := br.Verify(context.Background(), bundle.VerifyOptions{}); err != nil {
		t.Fatalf("the rewritten bundle must verify for this test to mean anything: %v", err)
	}
	br.Close()
	if r := stella(t, sealed, env, "pack", "verify", "--bundle", b); r.code != exitInvalid || !strings.Contains(r.stderr, "ERR_PACK_REF_MISMATCH") {
		t.Fatalf("pack verify must name the mismatch: %d %s", r.code, r.stderr)
	}
	r := stella(t, sealed, env, "--sealed", "pack", "import", "--require-signature", "--bundle", b)
	if r.code != exitInvalid || !strings.Contains(r.stderr, "ERR_PACK_REF_MISMATCH") || !strings.Contains(r.stderr, "rotate-registry-credentials:9.9.9") {
		t.Fatalf("want exit 2 ERR_PACK_REF_MISMATCH naming the false ref, got %d:\n%s", r.code, r.stderr)
	}
	assertEmptyCache(t, sealed)
}
