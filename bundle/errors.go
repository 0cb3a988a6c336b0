package bundle

import (
	"errors"
	"fmt"
	"strconv"

	"oras.land/oras-go/v2/errdef"
)

// Errors of bundle files. Every refusal of Open, Fetch, Verify and the
// writers wraps exactly one of them; most come inside an *EntryError or a
// *PartError that names the tar entry or the part concerned.
var (
	// ErrNotFound is oras-go's errdef.ErrNotFound, so that oras copies
	// treat a digest or reference absent from a bundle as absent.
	ErrNotFound = errdef.ErrNotFound

	// ErrInvalidEntry: an Entry given to a writer is unusable (unknown kind,
	// missing or malformed ref, not a manifest, duplicate).
	ErrInvalidEntry = errors.New("invalid bundle entry")
	// ErrInvalidPartSize: the part size of a split write is not positive or
	// would need more parts than the naming scheme allows.
	ErrInvalidPartSize = errors.New("invalid part size")

	// Tar-level refusals, found while scanning headers.
	ErrAbsolutePath  = errors.New("absolute path in bundle")
	ErrPathTraversal = errors.New("path with .. component in bundle")
	ErrSymlink       = errors.New("symbolic link in bundle")
	ErrHardLink      = errors.New("hard link in bundle")
	// ErrIsFolder: the bundle file named is a folder.
	ErrIsFolder             = errors.New("is a folder, not a file")
	ErrUnsupportedEntryType = errors.New("unsupported tar entry type (not a regular file)")
	ErrDuplicateEntry       = errors.New("duplicate tar entry")
	ErrUnexpectedEntry      = errors.New("entry not part of the bundle layout")
	ErrInvalidTar           = errors.New("invalid tar data")
	ErrTruncated            = errors.New("bundle file is truncated")
	ErrTooManyEntries       = errors.New("too many entries in bundle")

	// Layout-level refusals.
	ErrBadLayout     = errors.New("missing or unsupported oci-layout")
	ErrInvalidIndex  = errors.New("invalid index.json")
	ErrChecksums     = errors.New("SHA256SUMS disagrees with the bundle")
	ErrBlobMissing   = errors.New("referenced blob missing from bundle")
	ErrExtraBlob     = errors.New("blob referenced by nothing")
	ErrSelfReference = errors.New("manifest references itself")
	ErrCycle         = errors.New("manifest graph has a cycle")

	// Decompression checks of Verify.
	ErrDecompressionLimit = errors.New("decompressed size exceeds its limit")
	ErrBadCompression     = errors.New("compressed layer does not decompress")
	// ErrDecompressionTotal: the compressed layers of a bundle together
	// declare more uncompressed bytes than DefaultMaxTotalUncompressed (or
	// the caller's cap); nothing was decompressed.
	ErrDecompressionTotal = errors.New("compressed layers together exceed the decompression limit")

	// Split sets.
	ErrPartsManifest = errors.New("missing or invalid parts manifest")
	ErrPartMissing   = errors.New("bundle part missing")
	ErrPartSize      = errors.New("bundle part has the wrong size")
	ErrPartDigest    = errors.New("bundle part content differs from the parts manifest (stale part)")
	ErrPartOrder     = errors.New("bundle parts out of order")
)

// EntryError says which tar entry of a bundle a refusal concerns. Path is
// the name as found in the tar (or, for a blob, blobs/sha256/<hex>).
type EntryError struct {
	Path string
	Err  error
}

func (e *EntryError) Error() string {
	return "entry " + strconv.Quote(e.Path) + ": " + e.Err.Error()
}

func (e *EntryError) Unwrap() error { return e.Err }

// PartError says which part of a split set a refusal concerns.
type PartError struct {
	Index int    // 1-based, as in the file name
	Name  string // base name of the part file
	Err   error
}

func (e *PartError) Error() string {
	return fmt.Sprintf("part %03d (%s): %v", e.Index, e.Name, e.Err)
}

func (e *PartError) Unwrap() error { return e.Err }

// entryErr wraps sentinel with a formatted detail and names the entry.
func entryErr(path string, sentinel error, format string, args ...any) error {
	if format == "" {
		return &EntryError{Path: path, Err: sentinel}
	}
	return &EntryError{Path: path, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}
