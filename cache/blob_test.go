package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
)

func TestPushFetch(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	data := []byte("hello, sealed world")
	desc := ocispec.Descriptor{MediaType: typeLayer, Digest: sha(data), Size: int64(len(data))}

	if err := s.Push(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatalf("push: %v", err)
	}
	if ok, err := s.Exists(ctx, desc); err != nil || !ok {
		t.Fatalf("exists after push = %v, %v; want true", ok, err)
	}
	if got := fetchAll(t, s, desc); !bytes.Equal(got, data) {
		t.Fatalf("fetch = %q, want %q", got, data)
	}
	fi, err := os.Stat(blobPath(s, desc.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("blob mode = %v, want 0444", fi.Mode().Perm())
	}
	// Pushing again is a no-op that does not even read the content.
	if err := s.Push(ctx, desc, errReader{}); err != nil {
		t.Errorf("second push: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestPushRefusesMismatch(t *testing.T) {
	data := []byte("the real content")
	other := []byte("something else!!") // same length, other digest
	tests := []struct {
		name string
		desc ocispec.Descriptor
		body []byte
		want error
	}{
		{"digest", ocispec.Descriptor{Digest: sha(other), Size: int64(len(data))}, data, integrity.ErrDigestMismatch},
		{"short", ocispec.Descriptor{Digest: sha(data), Size: int64(len(data)) + 5}, data, integrity.ErrSizeMismatch},
		{"long", ocispec.Descriptor{Digest: sha(data), Size: int64(len(data)) - 5}, data, integrity.ErrSizeMismatch},
		{"empty body", ocispec.Descriptor{Digest: sha(data), Size: int64(len(data))}, nil, integrity.ErrSizeMismatch},
		{"bad digest", ocispec.Descriptor{Digest: "sha256:xyz", Size: 1}, data, integrity.ErrInvalidDigest},
		{"unknown algorithm", ocispec.Descriptor{Digest: "md5:d41d8cd98f00b204e9800998ecf8427e", Size: 0}, nil, integrity.ErrInvalidDigest},
		{"negative size", ocispec.Descriptor{Digest: sha(data), Size: -1}, data, integrity.ErrInvalidDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := cachetest.Open(t)
			err := s.Push(ctx, tt.desc, bytes.NewReader(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("push error = %v, want %v", err, tt.want)
			}
			if tt.want != integrity.ErrInvalidDigest {
				if ok, _ := s.Exists(ctx, tt.desc); ok {
					t.Errorf("blob visible after a refused push")
				}
			}
			if got := dirEntries(t, filepath.Join(s.Root(), "blobs", "sha256")); len(got) != 0 {
				t.Errorf("blobs/sha256 = %v, want empty", got)
			}
			if got := dirEntries(t, filepath.Join(s.Root(), "ingest")); len(got) != 0 {
				t.Errorf("ingest = %v, want empty", got)
			}
		})
	}
}

func TestPushSHA512(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	data := []byte("sha512 content")
	desc := ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data), Size: int64(len(data))}
	if err := s.Push(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatalf("push: %v", err)
	}
	if got := fetchAll(t, s, desc); !bytes.Equal(got, data) {
		t.Fatalf("fetch = %q", got)
	}
}

func TestFetchVerifies(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: several reads
	desc := ocispec.Descriptor{Digest: sha(data), Size: int64(len(data))}

	t.Run("missing", func(t *testing.T) {
		s := cachetest.Open(t)
		if _, err := s.Fetch(ctx, desc); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("fetch error = %v, want ErrNotFound", err)
		}
	})
	t.Run("size of descriptor", func(t *testing.T) {
		s := cachetest.Open(t)
		if err := s.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		wrong := desc
		wrong.Size++
		if _, err := s.Fetch(ctx, wrong); !errors.Is(err, integrity.ErrSizeMismatch) {
			t.Fatalf("fetch error = %v, want integrity.ErrSizeMismatch", err)
		}
	})
	for _, copyWith := range []string{"Read", "WriteTo"} {
		t.Run("flipped byte/"+copyWith, func(t *testing.T) {
			s, err := cache.Open(ctx, t.TempDir(), cache.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Push(ctx, desc, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			flipByte(t, blobPath(s, desc.Digest), int64(len(data)/2))
			rc, err := s.Fetch(ctx, desc)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var buf bytes.Buffer
			if copyWith == "Read" {
				_, err = io.Copy(&buf, struct{ io.Reader }{rc}) // hides WriteTo
			} else {
				_, err = io.Copy(&buf, rc)
			}
			if !errors.Is(err, integrity.ErrDigestMismatch) {
				t.Fatalf("read error = %v, want integrity.ErrDigestMismatch", err)
			}
		})
	}
}

// flipByte inverts one byte of a (read-only) blob file.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
