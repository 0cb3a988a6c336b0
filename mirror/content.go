package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"stellaops.io/stella/cache"
)

// maxManifestSize bounds a manifest read into memory (as bundle files do).
const maxManifestSize = 4 << 20

func isManifestType(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == ocispec.MediaTypeImageIndex
}

// plain keeps the fields of a descriptor that name content.
func plain(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
}

// manifestInfo is what mirror needs to know of a manifest.
type manifestInfo struct {
	artifactType string // artifactType, or the config media type without one
	subject      *ocispec.Descriptor
	annotations  map[string]string
}

func parseManifest(desc ocispec.Descriptor, data []byte) (manifestInfo, error) {
	var m struct {
		MediaType    string              `json:"mediaType"`
		ArtifactType string              `json:"artifactType"`
		Config       *ocispec.Descriptor `json:"config"`
		Subject      *ocispec.Descriptor `json:"subject"`
		Annotations  map[string]string   `json:"annotations"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return manifestInfo{}, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		return manifestInfo{}, fmt.Errorf("manifest %s: media type %q, its descriptor says %q", desc.Digest, m.MediaType, desc.MediaType)
	}
	info := manifestInfo{artifactType: m.ArtifactType, subject: m.Subject, annotations: m.Annotations}
	if info.artifactType == "" && m.Config != nil && desc.MediaType == ocispec.MediaTypeImageManifest {
		info.artifactType = m.Config.MediaType
	}
	return info, nil
}

// fetchManifest reads a manifest of at most maxManifestSize bytes and
// checks it against its descriptor before returning it.
func fetchManifest(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes (at most %d)", desc.Digest, ErrUnsupportedArtifact, desc.Size, maxManifestSize)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, desc)
}

// readVerified reads content of a small descriptor and checks size and digest.
func readVerified(r io.Reader, desc ocispec.Descriptor) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != desc.Size {
		return nil, fmt.Errorf("blob %s: %w: expected %d bytes, got %d or more", desc.Digest, cache.ErrSizeMismatch, desc.Size, len(data))
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: %w: content hashes to %s", desc.Digest, cache.ErrDigestMismatch, got)
	}
	return data, nil
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
	return &verifyReader{rc: rc, desc: desc, h: desc.Digest.Algorithm().Hash(), from: s.name}, nil
}

func (s *remoteSource) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if _, ok := s.manifests[desc.Digest]; ok {
		return true, nil
	}
	return s.repo.Exists(ctx, desc)
}

// verifyReader hashes a blob as it streams. The read that completes the
// blob's size checks the digest and, on a mismatch, fails instead of
// returning those last bytes, so a consumer never receives a complete,
// wrong blob; more bytes than the size fail at once.
type verifyReader struct {
	rc   io.ReadCloser
	desc ocispec.Descriptor
	h    hash.Hash
	from string
	n    int64
	err  error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.n += int64(n)
	switch {
	case v.n > v.desc.Size:
		v.err = fmt.Errorf("blob %s from %s: %w: more than %d bytes", v.desc.Digest, v.from, cache.ErrSizeMismatch, v.desc.Size)
		return 0, v.err
	case n > 0:
		v.h.Write(p[:n])
		if v.n == v.desc.Size {
			if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
				v.err = fmt.Errorf("blob %s from %s: %w: content hashes to %s", v.desc.Digest, v.from, cache.ErrDigestMismatch, got)
				return 0, v.err
			}
		}
	}
	switch {
	case err == io.EOF && v.n < v.desc.Size:
		v.err = fmt.Errorf("blob %s from %s: %w: got %d of %d bytes", v.desc.Digest, v.from, cache.ErrSizeMismatch, v.n, v.desc.Size)
		return n, v.err
	case err == io.EOF && v.desc.Size == 0:
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
			v.err = fmt.Errorf("blob %s from %s: %w: content hashes to %s", v.desc.Digest, v.from, cache.ErrDigestMismatch, got)
			return 0, v.err
		}
	case err != nil && err != io.EOF:
		v.err = fmt.Errorf("blob %s from %s: %w", v.desc.Digest, v.from, err)
		return n, v.err
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }
