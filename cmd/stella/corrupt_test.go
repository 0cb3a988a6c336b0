package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
)

var sentinels = map[string]error{
	"ErrDigestMismatch": integrity.ErrDigestMismatch, "ErrTruncated": bundle.ErrTruncated, "ErrInvalidTar": bundle.ErrInvalidTar,
	"ErrBlobMissing": bundle.ErrBlobMissing, "ErrExtraBlob": bundle.ErrExtraBlob, "ErrSizeMismatch": integrity.ErrSizeMismatch,
	"ErrTooLarge": integrity.ErrTooLarge, "ErrUnsupportedMediaType": integrity.ErrUnsupportedMediaType, "ErrAbsolutePath": bundle.ErrAbsolutePath,
	"ErrPathTraversal": bundle.ErrPathTraversal, "ErrSymlink": bundle.ErrSymlink, "ErrHardLink": bundle.ErrHardLink,
	"ErrUnsupportedEntryType": bundle.ErrUnsupportedEntryType, "ErrDuplicateEntry": bundle.ErrDuplicateEntry,
	"ErrUnexpectedEntry": bundle.ErrUnexpectedEntry, "ErrDecompressionLimit": bundle.ErrDecompressionLimit,
	"ErrInvalidManifest": integrity.ErrInvalidManifest, "ErrChecksums": bundle.ErrChecksums, "ErrBadLayout": bundle.ErrBadLayout,
	"ErrInvalidIndex": bundle.ErrInvalidIndex, "ErrPartMissing": bundle.ErrPartMissing, "ErrPartSize": bundle.ErrPartSize,
	"ErrPartDigest": bundle.ErrPartDigest, "ErrPartOrder": bundle.ErrPartOrder, "ErrPartsManifest": bundle.ErrPartsManifest,
}

// vectors reads the table of testdata/bundles/README.md: vector path → sentinel name.
func vectors(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../testdata/bundles/README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([^`]+)` \\| `(Err[A-Za-z]+)` \\|")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

// TestImportRefusesCorruptBundles imports every corrupt vector with the real
// CLI into a fresh home: each is refused with its code and exit 2, the
// message names the entry or part, and the cache is left empty and consistent.
func TestImportRefusesCorruptBundles(t *testing.T) {
	vs := vectors(t)
	if len(vs) < 40 {
		t.Fatalf("found %d vectors in the README table, want the full corpus", len(vs))
	}
	for vec, name := range vs {
		t.Run(vec, func(t *testing.T) {
			path := filepath.Join("../../testdata/bundles", vec)
			if strings.HasPrefix(vec, "split/") {
				path = filepath.Join(path, "b.tar.001")
				if _, err := os.Stat(path); err != nil {
					path = filepath.Join(filepath.Dir(path), "b.tar.parts.json")
				}
			}
			home := t.TempDir()
			r := stella(t, home, nil, "pack", "import", "--bundle", path)
			want := lookupError(sentinels[name])
			if sentinels[name] == nil {
				t.Fatalf("no sentinel %s", name)
			}
			if r.code != want.Exit || !strings.Contains(r.stderr, "error: "+want.Code+": ") {
				t.Fatalf("want exit %d and %s, got exit %d:\n%s", want.Exit, want.Code, r.code, r.stderr)
			}
			if !regexp.MustCompile(`entry "|part |blob sha256:|sha256:[0-9a-f]{12}|parts\.json|\.tar[: ]`).MatchString(r.stderr) {
				t.Errorf("message names no entry, part or digest: %s", r.stderr)
			}
			assertEmptyCache(t, home)
		})
	}
}
