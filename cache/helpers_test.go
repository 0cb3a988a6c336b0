package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"

	"stellaops.io/stella/cache"
)

const (
	typePack      = "application/vnd.stellaops.pack.v1+json"
	typeSignature = "application/vnd.stellaops.pack.signature.v1+json"
	typeLayer     = "application/vnd.stellaops.pack.file.v1"
	created       = "2025-01-01T00:00:00Z"
)

// source is an oras memory store of test artifacts.
type source struct {
	*memory.Store
}

func newSource() *source { return &source{memory.New()} }

func (s *source) blob(t testing.TB, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(typeLayer, data)
	if err := s.Push(context.Background(), desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		t.Fatalf("push blob: %v", err)
	}
	return desc
}

// manifest packs an image manifest (v1.1, fixed created time) over layers.
func (s *source) manifest(t testing.TB, artifactType string, subject *ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	desc, err := oras.PackManifest(context.Background(), s, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		Subject:             subject,
		Layers:              layers,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: created},
	})
	if err != nil {
		t.Fatalf("pack manifest: %v", err)
	}
	return desc
}

// pack builds a pack artifact whose layers hold the given contents.
func (s *source) pack(t testing.TB, files ...string) ocispec.Descriptor {
	t.Helper()
	var layers []ocispec.Descriptor
	for _, f := range files {
		layers = append(layers, s.blob(t, []byte(f)))
	}
	return s.manifest(t, typePack, nil, layers...)
}

// signature builds a signature referrer of subject.
func (s *source) signature(t testing.TB, subject ocispec.Descriptor, body string) ocispec.Descriptor {
	t.Helper()
	return s.manifest(t, typeSignature, &subject, s.blob(t, []byte(body)))
}

// randomGraphs adds n packs of k random layers of size bytes each (plus
// one layer shared by every seed) and returns them as artifacts with refs
// "<prefix>-<i>:1". The same seed gives the same digests.
func randomGraphs(t testing.TB, src *source, seed uint64, prefix string, n, k, size int) []cache.Artifact {
	t.Helper()
	arts, err := genGraphs(src, seed, prefix, n, k, size)
	if err != nil {
		t.Fatal(err)
	}
	return arts
}

// genGraphs is randomGraphs for the helper process, which has no testing.TB.
func genGraphs(src *source, seed uint64, prefix string, n, k, size int) ([]cache.Artifact, error) {
	ctx := context.Background()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	push := func(data []byte) (ocispec.Descriptor, error) {
		desc := content.NewDescriptorFromBytes(typeLayer, data)
		err := src.Push(ctx, desc, bytes.NewReader(data))
		if errors.Is(err, errdef.ErrAlreadyExists) {
			err = nil
		}
		return desc, err
	}
	shared, err := push([]byte("a layer every graph shares"))
	if err != nil {
		return nil, err
	}
	var out []cache.Artifact
	for i := range n {
		layers := []ocispec.Descriptor{shared}
		for j := range k {
			d, err := push(layerBytes(rng, seed, i, j, size))
			if err != nil {
				return nil, err
			}
			layers = append(layers, d)
		}
		m, err := oras.PackManifest(ctx, src, oras.PackManifestVersion1_1, typePack, oras.PackManifestOptions{
			Layers:              layers,
			ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: created},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, cache.Artifact{Descriptor: m, Kind: "pack", Ref: fmt.Sprintf("%s-%d:1", prefix, i)})
	}
	return out, nil
}

// layerBytes is size bytes of random-looking content, unique per (seed, i,
// j): a header naming them, then a random 64 KiB chunk repeated (cheap to
// generate even under the race detector).
func layerBytes(rng *rand.ChaCha8, seed uint64, i, j, size int) []byte {
	chunk := make([]byte, 64<<10)
	_, _ = rng.Read(chunk)
	b := make([]byte, 0, size)
	b = fmt.Appendf(b, "layer %d/%d/%d\n", seed, i, j)
	for len(b) < size {
		b = append(b, chunk[:min(len(chunk), size-len(b))]...)
	}
	return b
}

func packArtifact(desc ocispec.Descriptor, ref string) cache.Artifact {
	return cache.Artifact{Descriptor: desc, Kind: "pack", Ref: ref}
}

func sigArtifact(desc ocispec.Descriptor) cache.Artifact {
	return cache.Artifact{Descriptor: desc, Kind: "signature"}
}

func blobPath(s *cache.Store, d digest.Digest) string {
	return filepath.Join(s.Root(), "blobs", d.Algorithm().String(), d.Encoded())
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// fetchAll reads a blob back from the cache (verified).
func fetchAll(t testing.TB, s *cache.Store, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := s.Fetch(context.Background(), desc)
	if err != nil {
		t.Fatalf("fetch %s: %v", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", desc.Digest, err)
	}
	return b
}

func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }
