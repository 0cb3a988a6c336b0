package bundle

import (
	"archive/tar"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

// Names of the files of a bundle (an OCI image layout in a tar).
const (
	LayoutFile    = "oci-layout"
	IndexFile     = "index.json"
	ChecksumsFile = "SHA256SUMS"
	BlobsDir      = "blobs/sha256/"
)

// layoutContent is the exact content of the oci-layout file stella writes.
const layoutContent = `{"imageLayoutVersion":"1.0.0"}`

// Limits of the reader and of Verify: the work done for a bundle is
// proportional to its size within these caps, whatever it declares. No
// allocation is ever sized from an untrusted number larger than these.
// docs/adr/0014-bounded-work-for-untrusted-input.md lists them with their
// error codes.
const (
	// MaxEntries bounds the number of tar entries in a bundle
	// (ErrTooManyEntries).
	MaxEntries = 100_000
	// MaxIndexEntries bounds the artifacts index.json lists: each becomes
	// one import transaction (ErrTooManyEntries).
	MaxIndexEntries = 10_000
	// DefaultMaxUncompressedSize is the absolute cap on the declared
	// uncompressed size of one compressed layer, whatever its annotation
	// says (ErrDecompressionLimit).
	DefaultMaxUncompressedSize int64 = 16 << 30
	// DefaultMaxTotalUncompressed caps the uncompressed bytes of all the
	// distinct compressed blobs of a bundle together, checked against
	// their declared sizes before anything is decompressed
	// (ErrDecompressionTotal). Each distinct blob is decompressed at most
	// once per Verify or VerifyCompressed, however many layers name it.
	DefaultMaxTotalUncompressed int64 = 64 << 30
	// maxLayoutSize bounds the oci-layout file.
	maxLayoutSize = 64 << 10
	// maxChecksumsSize bounds SHA256SUMS: one line per entry at most.
	maxChecksumsSize = MaxEntries * (64 + 2 + len(BlobsDir) + 64 + 1)
	// maxIndexDepth bounds the nesting of image indexes.
	maxIndexDepth = 8
	// maxRefLength bounds a ref annotation.
	maxRefLength = 255
)

// limits are the reader's bounds; tests lower them to exercise the checks
// without large vectors.
type limits struct {
	entries   int
	manifest  int64
	checksums int64
	depth     int
	index     int // entries of index.json
}

var defaultLimits = limits{
	entries:   MaxEntries,
	manifest:  integrity.MaxManifestSize, // index.json and every manifest
	checksums: int64(maxChecksumsSize),
	depth:     maxIndexDepth,
	index:     MaxIndexEntries,
}

// Entry is one artifact listed in a bundle's index.json: a manifest with its
// kind and, unless it is a referrer, its ref ("<id>:<version>").
type Entry struct {
	Descriptor ocispec.Descriptor
	Kind       string
	Ref        string
}

// kinds are the values artifact.AnnotationKind may take.
var kinds = map[string]bool{
	artifact.KindPack:             true,
	artifact.KindApprovalRequest:  true,
	artifact.KindApprovalResponse: true,
	artifact.KindEvidence:         true,
	artifact.KindSignature:        true,
}

// stellaMediaTypes are the config and layer media types a strict bundle may
// hold.
var stellaMediaTypes = map[string]bool{
	artifact.MediaTypePackConfig:       true,
	artifact.MediaTypePackFile:         true,
	artifact.MediaTypePlan:             true,
	artifact.MediaTypeApprovalRequest:  true,
	artifact.MediaTypeApprovalResponse: true,
	artifact.MediaTypeEvidence:         true,
	artifact.MediaTypeEvidenceRun:      true,
	artifact.MediaTypeEvidenceInputs:   true,
	artifact.MediaTypeEvidenceLog:      true,
	artifact.MediaTypeEvidenceLedger:   true,
	artifact.MediaTypeEvidenceOutput:   true,
	artifact.MediaTypeDSSE:             true,
	artifact.MediaTypeEmptyJSON:        true,
}

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == ocispec.MediaTypeImageIndex
}

// checkBlobType checks the media type of a config or layer descriptor.
func checkBlobType(mt string, allowAny bool) error {
	if mt == "" {
		return fmt.Errorf("%w: empty media type", integrity.ErrUnsupportedMediaType)
	}
	if stellaMediaTypes[mt] || allowAny {
		return nil
	}
	return fmt.Errorf("%w: %q", integrity.ErrUnsupportedMediaType, mt)
}

// checkKind checks that the kind an index.json entry claims agrees with the
// manifest's artifact type (integrity.Manifest.Type: its artifactType or,
// for an OCI 1.0-style artifact without one, its config media type). The
// writer wraps the error as ErrInvalidEntry, the reader as ErrInvalidIndex.
func (n *node) checkKind(kind string) error {
	t := n.typ
	if k := artifact.KindOf(t); k != "" && k != kind {
		return fmt.Errorf("listed as kind %q but its type %q is kind %q", kind, t, k)
	}
	return nil
}

// parseDigest accepts only a valid, lowercase sha256 digest.
func parseDigest(s digest.Digest) (digest.Digest, error) {
	if integrity.CheckSHA256(s) == nil {
		return s, nil // what Parse would return, without its regular expression
	}
	d, err := digest.Parse(string(s))
	if err != nil {
		return "", fmt.Errorf("digest %q: %v", string(s), err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("digest %q: only sha256 is supported", string(s))
	}
	return d, nil
}

// blobPath is the layout path of a blob.
func blobPath(d digest.Digest) string { return BlobsDir + d.Encoded() }

// checkRef validates a ref annotation: "<id>:<version>", printable ASCII
// without spaces, both parts non-empty.
func checkRef(ref string) error {
	if ref == "" || len(ref) > maxRefLength {
		return fmt.Errorf("ref %q: empty or longer than %d bytes", ref, maxRefLength)
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("ref %q: only printable ASCII without spaces", ref)
		}
	}
	i := strings.LastIndexByte(ref, ':')
	if i <= 0 || i == len(ref)-1 {
		return fmt.Errorf("ref %q: want <id>:<version>", ref)
	}
	return nil
}

// entryKind says what a tar entry name is in the layout.
type entryKind int

const (
	entryOther entryKind = iota
	entryLayout
	entryIndex
	entryChecksums
	entryBlob
	entryDir // "blobs" or "blobs/sha256": tolerated, never written
)

// cleanName normalises a tar entry name: a leading "./" is dropped, as is
// the trailing "/" of a directory. It refuses absolute names and names
// with a ".." component, and reports whether the remainder belongs to the
// layout.
func cleanName(name string) (string, entryKind, error) {
	if strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) ||
		(len(name) >= 2 && name[1] == ':' && (name[0]|0x20) >= 'a' && (name[0]|0x20) <= 'z') {
		return name, entryOther, ErrAbsolutePath
	}
	for _, c := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if c == ".." {
			return name, entryOther, ErrPathTraversal
		}
	}
	if name == "." || name == "./" {
		return ".", entryDir, nil
	}
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	switch n {
	case LayoutFile:
		return n, entryLayout, nil
	case IndexFile:
		return n, entryIndex, nil
	case ChecksumsFile:
		return n, entryChecksums, nil
	case "blobs", "blobs/sha256":
		return n, entryDir, nil
	}
	if hex, ok := strings.CutPrefix(n, BlobsDir); ok && isLowerHex64(hex) {
		return n, entryBlob, nil
	}
	return n, entryOther, nil
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// maxUSTARSize is the largest size a USTAR header can encode (8 GiB - 1).
const maxUSTARSize = 1<<33 - 1

// fileHeader is the one tar header stella writes: a regular file, mode
// 0644, owner 0:0 without names, mtime at the Unix epoch, USTAR unless the
// size needs PAX.
func fileHeader(name string, size int64) *tar.Header {
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o644,
		Size:     size,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
	if size > maxUSTARSize {
		h.Format = tar.FormatPAX
	}
	return h
}

// node is what the bundle keeps of a manifest or index: its descriptor (with
// the manifest's artifactType as written and its annotations), its subject,
// its children (config and layers, or the manifests of an index) and its
// artifact type as integrity.Manifest.Type derives it.
type node struct {
	desc     ocispec.Descriptor
	subject  *ocispec.Descriptor
	children []ocispec.Descriptor
	index    bool
	typ      string
	// annotated: the manifest has an annotations member, which the reader drops
	// from desc and reads again when asked (Reader.annotate).
	annotated bool
}

// parseManifest parses and checks the verified bytes of the manifest or
// index desc (integrity.DecodeManifest), then what a bundle requires more:
// OCI media types only, sha256 digests, the media types of its children,
// a stella artifactType unless allowAny, and that it does not reference
// itself. It does not look at the children's content.
func parseManifest(b []byte, desc ocispec.Descriptor, allowAny bool) (*node, error) {
	if !isManifestType(desc.MediaType) {
		return nil, fmt.Errorf("%w: manifest media type %q", integrity.ErrUnsupportedMediaType, desc.MediaType)
	}
	m, err := integrity.DecodeManifest(desc.MediaType, b)
	if err != nil {
		return nil, err
	}
	n := &node{
		desc:  ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations},
		index: m.IsIndex(),
		typ:   m.Type(),
	}
	if n.index {
		for i, c := range m.Manifests {
			if !isManifestType(c.MediaType) {
				return nil, fmt.Errorf("%w: manifest %d of index: %q", integrity.ErrUnsupportedMediaType, i, c.MediaType)
			}
			if err := checkChild(desc, c, fmt.Sprintf("manifest %d", i)); err != nil {
				return nil, err
			}
			n.children = append(n.children, child(c))
		}
	} else {
		for i, d := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			role := "config"
			if i > 0 {
				role = fmt.Sprintf("layer %d", i-1)
			}
			if err := checkChild(desc, d, role); err != nil {
				return nil, err
			}
			if err := checkBlobType(d.MediaType, allowAny); err != nil {
				return nil, fmt.Errorf("%s %s: %w", role, d.Digest, err)
			}
			n.children = append(n.children, child(d))
		}
	}
	// index.json and the referrers carry the artifactType as written; a
	// strict bundle holds only stella ones.
	if t := m.ArtifactType; artifact.KindOf(t) == "" && t != "" && !allowAny {
		return nil, fmt.Errorf("%w: artifactType %q", integrity.ErrUnsupportedMediaType, t)
	}
	if m.Subject != nil {
		d, err := parseDigest(m.Subject.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: subject: %v", integrity.ErrInvalidManifest, err)
		}
		if d == desc.Digest {
			return nil, fmt.Errorf("%w: as subject", ErrSelfReference)
		}
		s := child(*m.Subject)
		n.subject = &s
	}
	return n, nil
}

// checkChild checks the digest and size of one descriptor inside the
// manifest parent, and that it does not point back at parent.
func checkChild(parent, d ocispec.Descriptor, role string) error {
	if _, err := parseDigest(d.Digest); err != nil {
		return fmt.Errorf("%w: %s: %v", integrity.ErrInvalidManifest, role, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s: negative size %d", integrity.ErrInvalidManifest, role, d.Size)
	}
	if d.Digest == parent.Digest {
		return fmt.Errorf("%w: as %s", ErrSelfReference, role)
	}
	return nil
}

// plain keeps what identifies content (media type, digest, size) and the
// annotations.
func plain(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Annotations: d.Annotations}
}

// child is what a node keeps of a descriptor it holds (config, layer,
// manifest of an index, subject): what identifies the content, and the
// annotations only of a zstd layer, which Verify needs (layerCheck). The
// annotations of the other layers (a title and a mode per pack file) are
// most of what a bundle of many small packs would otherwise hold.
func child(d ocispec.Descriptor) ocispec.Descriptor {
	c := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	if strings.HasSuffix(d.MediaType, "+zstd") {
		c.Annotations = d.Annotations
	}
	return c
}

// Holds says what entries are, by kind, in an operator's words: "nothing",
// "1 pack", "2 packs and 1 signature". Refusals of a bundle of the wrong
// kind name what it holds instead.
func Holds(entries []Entry) string {
	if len(entries) == 0 {
		return "nothing"
	}
	count := map[string]int{}
	var order []string
	for _, e := range entries {
		k := e.Kind
		if k == "" {
			k = "unnamed artifact"
		}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	sort.Strings(order)
	parts := make([]string, len(order))
	for i, k := range order {
		if count[k] == 1 {
			parts[i] = "1 " + k
		} else {
			parts[i] = fmt.Sprintf("%d %ss", count[k], k)
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
