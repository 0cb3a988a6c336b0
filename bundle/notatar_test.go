package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestOpenSaysWhatTheFileIs: a bundle compressed for the trip is refused
// as not a tar (ErrInvalidTar), naming the compression and how to undo it,
// whatever its size; a file shorter than one tar header says so. The
// bundle itself still opens.
func TestOpenSaysWhatTheFileIs(t *testing.T) {
	f, entries := standard(t)
	b, _ := writeBundle(t, f, entries, WriteOptions{})
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(b)
	gw.Close()
	zw, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	zw.Close()
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want error
		says string
	}{
		{"bundle", b, nil, ""},
		{"gzip", gz.Bytes(), ErrInvalidTar, "the file is gzip-compressed, not a tar: decompress it first (gunzip -k FILE)"},
		{"short gzip", gz.Bytes()[:100], ErrInvalidTar, "gzip-compressed"},
		{"zstd", zs.Bytes(), ErrInvalidTar, "the file is zstd-compressed"},
		{"xz", append([]byte("\xfd7zXZ\x00"), make([]byte, 2000)...), ErrInvalidTar, "the file is xz-compressed"},
		{"bzip2", append([]byte("BZh91AY&SY"), make([]byte, 2000)...), ErrInvalidTar, "the file is bzip2-compressed"},
		{"zip", append([]byte("PK\x03\x04"), make([]byte, 2000)...), ErrInvalidTar, "the file is zip-compressed"},
		{"six bytes", []byte("hello\n"), ErrTruncated, "the file has 6 bytes, less than one tar header (512): not a bundle, or cut short"},
		{"empty", nil, ErrTruncated, "the file has 0 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".tar")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(context.Background(), path, OpenOptions{})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				r.Close()
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Open: %v; want %v saying %q", err, c.want, c.says)
			}
		})
	}
}
