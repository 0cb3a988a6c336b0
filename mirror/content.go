package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"stellaops.io/stella/integrity"
)

func isManifestType(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == ocispec.MediaTypeImageIndex
}

// plain keeps the fields of a descriptor that name content.
func plain(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
}

// manifestInfo is what mirror needs to know of a manifest.
type manifestInfo struct {
	artifactType string // integrity.Manifest.Type
	subject      *ocispec.Descriptor
	annotations  map[string]string
}

// parseManifest checks and parses the bytes of the manifest desc
// (integrity.ParseManifest).
func parseManifest(desc ocispec.Descriptor, data []byte) (manifestInfo, error) {
	m, err := integrity.ParseManifest(desc, data)
	if err != nil {
		return manifestInfo{}, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return manifestInfo{artifactType: m.Type(), subject: m.Subject, annotations: m.Annotations}, nil
}

// fetchManifest reads a manifest of at most integrity.MaxManifestSize bytes
// and checks it against its descriptor before returning it.
func fetchManifest(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > integrity.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %w: %d bytes (at most %d)", desc.Digest, ErrUnsupportedArtifact, integrity.ErrTooLarge, desc.Size, integrity.MaxManifestSize)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, desc)
}

// readVerified reads a manifest whole and checks its size and digest.
func readVerified(r io.Reader, desc ocispec.Descriptor) ([]byte, error) {
	b, err := integrity.ReadAll(r, desc, integrity.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return b, nil
}

// remoteSource is a registry repository as the source of a pull: every
// fetch is hashed while it streams and checked against the descriptor's
// digest and size (oras-go's remote Fetch checks only the announced length
// and digest header), and manifests already fetched and checked are served
// from memory.
type remoteSource struct {
	repo      *remote.Repository
	name      string // host/repository, for messages
	manifests map[digest.Digest][]byte
}

func (s *remoteSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if b, ok := s.manifests[desc.Digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor %q: %w", desc.Digest, err)
	}
	ctx = context.WithValue(ctx, expectKey{}, expectation{digest: desc.Digest, size: desc.Size})
	rc, err := s.repo.Fetch(ctx, desc)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("%s in %s: %w", desc.Digest, s.name, ErrNotFound)
		}
		return nil, fmt.Errorf("fetch %s from %s: %w", desc.Digest, s.name, err)
	}
	v := integrity.NewReader(rc, desc)
	v.Wrap = func(err error) error { return fmt.Errorf("blob %s from %s: %w", desc.Digest, s.name, err) }
	return v, nil
}

func (s *remoteSource) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if _, ok := s.manifests[desc.Digest]; ok {
		return true, nil
	}
	return s.repo.Exists(ctx, desc)
}
