package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/integrity"
)

// TestImportReportSaysWhatWasRead: what `pack import` reports of its
// blobs is what it did. A first import streamed and checked every blob; a
// second found all of them already present (its counts are the first's
// writes) and read none; an import whose blob does not check out does not
// claim that every blob that streamed did, and leaves nothing behind.
func TestImportReportSaysWhatWasRead(t *testing.T) {
	dir := t.TempDir()
	author := filepath.Join(dir, "author")
	stellaSteps(t, author, nil, [][]string{
		{"pack", "init", "--dir", filepath.Join(dir, "hello"), "hello"},
		{"pack", "build", filepath.Join(dir, "hello")},
		{"pack", "export", "-o", filepath.Join(dir, "b.tar"), "hello:0.1.0"},
	})
	type report struct {
		BlobsWritten, BlobsSkipped int
		BytesWritten, BytesSkipped int64
		Verified                   []string
	}
	imp := func(home, file string, code int) report {
		t.Helper()
		r := stella(t, home, nil, "--output", "json", "pack", "import", "--bundle", file)
		var rep report
		if r.code != code || json.Unmarshal([]byte(r.stdout), &rep) != nil {
			t.Fatalf("pack import %s: exit %d, want %d:\n%s\n%s", file, r.code, code, r.stdout, r.stderr)
		}
		return rep
	}
	sealed := filepath.Join(dir, "sealed")
	first := imp(sealed, filepath.Join(dir, "b.tar"), 0)
	if first.BlobsWritten == 0 || !slices.Contains(first.Verified, admission.VerifiedStreamed) {
		t.Fatalf("first import: %+v", first)
	}
	again := imp(sealed, filepath.Join(dir, "b.tar"), 0)
	if again.BlobsWritten != 0 || again.BlobsSkipped != first.BlobsWritten+first.BlobsSkipped ||
		again.BytesSkipped != first.BytesWritten+first.BytesSkipped ||
		!slices.Contains(again.Verified, admission.VerifiedNothingRead) || slices.Contains(again.Verified, admission.VerifiedStreamed) {
		t.Fatalf("second import: %+v, after the first %+v", again, first)
	}

	// One byte of the pack's manifest file flipped inside the bundle.
	b, err := os.ReadFile(filepath.Join(dir, "b.tar"))
	if err != nil {
		t.Fatal(err)
	}
	yaml, err := os.ReadFile(filepath.Join(dir, "hello", "pack.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, yaml)
	if at < 0 || bytes.Count(b, yaml) != 1 {
		t.Fatalf("pack.yaml found %d times in the bundle", bytes.Count(b, yaml))
	}
	b[at+len(yaml)/2] ^= 1
	bad := filepath.Join(dir, "bad.tar")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh")
	refused := imp(fresh, bad, lookupError(integrity.ErrDigestMismatch).Exit)
	// The failure names the file of the pack whose bytes changed.
	if r := stella(t, filepath.Join(dir, "fresh2"), nil, "pack", "import", "--bundle", bad); !strings.Contains(r.stderr, `file "pack.yaml": blob sha256:`) {
		t.Errorf("the refusal does not name the pack file:\n%s", r.stderr)
	}
	if slices.Contains(refused.Verified, admission.VerifiedStreamed) || !slices.Contains(refused.Verified, admission.VerifiedStreamedFailed) {
		t.Fatalf("refused import claims: %q", refused.Verified)
	}
	assertEmptyCache(t, fresh)
}
