package artifact

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// Blobs is an in-memory content.ReadOnlyStorage of an artifact being
// made (an approval request or response, run evidence): its manifest,
// config and layers by digest, for bundle.Write or a push to read.
type Blobs map[digest.Digest][]byte

var _ content.ReadOnlyStorage = Blobs(nil)

// Add keeps b and returns its descriptor.
func (m Blobs) Add(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	m[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// Fetch returns the blob d names; a digest or size it does not hold is
// errdef.ErrNotFound.
func (m Blobs) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := m[d.Digest]
	if !ok || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("%s: %w", d.Digest, errdef.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Exists reports whether d's blob is held, with d's size.
func (m Blobs) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	b, ok := m[d.Digest]
	return ok && int64(len(b)) == d.Size, nil
}
