// Package integrity is stella's one toolkit for content that comes from
// outside (a bundle, a registry, removable media, the cache's own files):
// the sentinel errors every reader wraps when content is not what its
// descriptor says, and the fixed bounds on what is read into memory.
//
// Every package that checks content wraps these sentinels (with the object
// concerned named in the message) instead of declaring its own, so that one
// row of the error table covers one failure whatever path met it.
package integrity

import "errors"

// MaxManifestSize bounds every OCI manifest or index read into memory.
const MaxManifestSize = 4 << 20

var (
	// ErrDigestMismatch: content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: content is shorter or longer than its descriptor says.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrTooLarge: something to be read into memory exceeds its fixed bound.
	ErrTooLarge = errors.New("entry exceeds its size limit")
	// ErrInvalidManifest: an OCI manifest is malformed or not the shape its
	// artifact kind requires.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrUnsupportedMediaType: a config or layer has a media type the
	// artifact kind does not allow.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
)
