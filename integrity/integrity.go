// Package integrity is stella's one toolkit for content that comes from
// outside (a bundle, a registry, removable media, the cache's own files):
//
//   - Reader, the one verifying reader: it hashes content as it streams and
//     withholds the read that would complete a wrong blob (ReadAll reads a
//     small blob whole through it);
//   - ParseManifest, the one bounded manifest parser, and Manifest.Type, the
//     one rule deriving an artifact's type;
//   - the sentinel errors every reader wraps when content is not what its
//     descriptor says, and the fixed bound on manifests read into memory.
//
// Every package that checks content uses these and wraps these sentinels
// (with the object concerned named in the message: tar entry, registry
// host, cache blob) instead of declaring its own, so that one row of the
// error table covers one failure whatever path met it. The package does no
// I/O of its own.
package integrity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// MaxManifestSize bounds every OCI manifest or index read into memory.
const MaxManifestSize = 4 << 20

var (
	// ErrDigestMismatch: content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: content is shorter or longer than its descriptor says.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidDigest: a descriptor's digest is malformed or of an
	// unsupported algorithm, or its size is negative, so content cannot be
	// checked against it.
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrTooLarge: something to be read into memory exceeds its fixed bound.
	ErrTooLarge = errors.New("entry exceeds its size limit")
	// ErrInvalidManifest: an OCI manifest is malformed or not the shape its
	// artifact kind requires.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrUnsupportedMediaType: a config or layer has a media type the
	// artifact kind does not allow.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
)

// CheckSHA256 accepts a well-formed lowercase sha256 digest; its error says
// what is wrong and wraps no sentinel, so callers name their own.
func CheckSHA256(d digest.Digest) error {
	if isSHA256(d) {
		return nil
	}
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %s: only sha256 is accepted", d)
	}
	return nil
}

// IsLowerHex reports whether s is a non-empty string of lowercase hex digits.
func IsLowerHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}
