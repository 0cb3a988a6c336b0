package integrity

import (
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker manifest media types, accepted next to OCI's.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Manifest is what stella reads of an OCI image manifest or index (or of
// their Docker equivalents): the fields as written in the document.
type Manifest struct {
	MediaType    string              // the descriptor's, equal to the document's when it has one
	ArtifactType string              // as written; Type derives the artifact's type
	Config       *ocispec.Descriptor // image manifests only, never nil for them
	Layers       []ocispec.Descriptor
	Manifests    []ocispec.Descriptor // indexes only
	Subject      *ocispec.Descriptor
	Annotations  map[string]string
}

// IsIndex reports whether m is an index (its children are Manifests).
func (m *Manifest) IsIndex() bool { return m.Config == nil }

// Type is the artifact type of m, derived one way for every reader of
// manifests: the manifest's artifactType; without one, for an image
// manifest, its config media type (the OCI 1.0 way of typing an artifact,
// as the referrers API reports it) unless that is the OCI empty config
// (application/vnd.oci.empty.v1+json), which says nothing of the artifact.
// An index without artifactType has none.
func (m *Manifest) Type() string {
	if m.ArtifactType != "" || m.Config == nil || m.Config.MediaType == ocispec.MediaTypeEmptyJSON {
		return m.ArtifactType
	}
	return m.Config.MediaType
}

// IsManifestType reports whether mediaType is one of the manifest and index
// media types DecodeManifest accepts.
func IsManifestType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// ParseManifest checks the bytes b of the manifest desc describes and
// decodes them: at most MaxManifestSize bytes (ErrTooLarge), exactly
// desc.Size of them (ErrSizeMismatch) hashing to desc.Digest
// (ErrDigestMismatch, ErrInvalidDigest) — all before any parsing — then
// DecodeManifest.
func ParseManifest(desc ocispec.Descriptor, b []byte) (*Manifest, error) {
	if err := CheckDescriptor(desc); err != nil {
		return nil, err
	}
	if len(b) > MaxManifestSize || desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest %s: %d bytes, limit %d", ErrTooLarge, desc.Digest, max(int64(len(b)), desc.Size), MaxManifestSize)
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("%w: manifest %s: expected %d bytes, got %d", ErrSizeMismatch, desc.Digest, desc.Size, len(b))
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("%w: expected %s, actual %s", ErrDigestMismatch, desc.Digest, got)
	}
	return DecodeManifest(desc.MediaType, b)
}

// DecodeManifest decodes manifest bytes whose size and digest the caller
// has checked (ParseManifest does both). mediaType is the descriptor's; it
// must be an OCI or Docker manifest or index (ErrUnsupportedMediaType). The
// document must be a JSON object of schemaVersion 2, its mediaType, if
// present, must equal the descriptor's, an image manifest must have a
// config, and every descriptor in it (config, layers, manifests, subject)
// must have a valid digest and a size that is not negative
// (ErrInvalidManifest).
func DecodeManifest(mediaType string, b []byte) (*Manifest, error) {
	if !IsManifestType(mediaType) {
		return nil, fmt.Errorf("%w: manifest media type %q", ErrUnsupportedMediaType, mediaType)
	}
	var doc manifestDoc
	if !doc.decodePlain(b) {
		doc = manifestDoc{}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
		}
	}
	return doc.checked(mediaType)
}

// ManifestOf is DecodeManifest of an image manifest (mediaType is OCI's or
// Docker's, or ErrUnsupportedMediaType) that is still the
// struct its bytes were marshalled from (a build that made them, as
// encoding/json writes them): the same checks, without decoding the bytes
// again. It is what DecodeManifest returns for those bytes
// (TestManifestOfIsDecodeManifest); the caller keeps to that.
func ManifestOf(mediaType string, m *ocispec.Manifest) (*Manifest, error) {
	if mediaType != ocispec.MediaTypeImageManifest && mediaType != MediaTypeDockerManifest {
		return nil, fmt.Errorf("%w: manifest media type %q", ErrUnsupportedMediaType, mediaType)
	}
	doc := manifestDoc{SchemaVersion: m.SchemaVersion, MediaType: m.MediaType, ArtifactType: m.ArtifactType,
		Config: &m.Config, Layers: m.Layers, Subject: m.Subject, Annotations: m.Annotations}
	if len(doc.Annotations) == 0 {
		doc.Annotations = nil // omitted from the bytes, absent when decoded
	}
	return doc.checked(mediaType)
}

// checked is DecodeManifest's checks of what it decoded.
func (doc *manifestDoc) checked(mediaType string) (*Manifest, error) {
	if doc.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion %d, want 2", ErrInvalidManifest, doc.SchemaVersion)
	}
	if doc.MediaType != "" && doc.MediaType != mediaType {
		return nil, fmt.Errorf("%w: content says mediaType %q, descriptor says %q", ErrInvalidManifest, doc.MediaType, mediaType)
	}
	m := &Manifest{MediaType: mediaType, ArtifactType: doc.ArtifactType, Subject: doc.Subject, Annotations: doc.Annotations}
	switch mediaType {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		if doc.Config == nil || doc.Config.Digest == "" {
			return nil, fmt.Errorf("%w: no config", ErrInvalidManifest)
		}
		if err := checkChild(*doc.Config, "config"); err != nil {
			return nil, err
		}
		m.Config, m.Layers = doc.Config, doc.Layers
		for i, l := range m.Layers {
			if err := CheckDescriptor(l); err != nil { // the role is named only on failure: 10,000 layers
				return nil, checkChild(l, fmt.Sprintf("layer %d", i))
			}
		}
	default:
		m.Manifests = doc.Manifests
		for i, c := range m.Manifests {
			if err := CheckDescriptor(c); err != nil {
				return nil, checkChild(c, fmt.Sprintf("manifest %d", i))
			}
		}
	}
	if m.Subject != nil {
		if err := checkChild(*m.Subject, "subject"); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// manifestDoc is what DecodeManifest reads of a manifest or an index.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func checkChild(d ocispec.Descriptor, role string) error {
	if err := CheckDescriptor(d); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidManifest, role, err)
	}
	return nil
}
