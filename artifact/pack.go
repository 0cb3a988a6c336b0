package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
)

// PackConfig is the config blob of a pack artifact: what the pack is, what it
// needs, and the digest of every file. It is RFC 8785 canonical JSON.
type PackConfig struct {
	APIVersion       string            `json:"apiVersion"`
	Name             string            `json:"name"`
	Version          string            `json:"version"`
	Description      string            `json:"description"`
	Tags             []string          `json:"tags,omitempty"`
	TenantVisibility []string          `json:"tenantVisibility,omitempty"`
	Maintainers      []pack.Maintainer `json:"maintainers,omitempty"`
	License          string            `json:"license,omitempty"`
	Inputs           []pack.Input      `json:"inputs,omitempty"`
	Secrets          []pack.Secret     `json:"secrets,omitempty"`
	Approvals        []pack.Approval   `json:"approvals,omitempty"`
	Files            []PackFile        `json:"files"`
}

// PackFile is one file of a pack as recorded in its config.
type PackFile struct {
	Path   string        `json:"path"`
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
	Mode   string        `json:"mode"`
}

// BuildOptions tune a pack build.
type BuildOptions struct {
	// Created stamps org.opencontainers.image.created. The pack's own
	// metadata.created wins over it; with neither, no time is recorded, so
	// the same folder always gives the same digest.
	Created *time.Time
}

// Pack is a pack built in memory: its manifest and config are held as
// bytes; its files are read from the pack when fetched, and verified against
// the digests taken when the pack was loaded. It is a content.ReadOnlyStorage,
// so it can be copied into the cache or a registry like any other store.
type Pack struct {
	// Manifest describes the image manifest, with ArtifactType set.
	Manifest ocispec.Descriptor
	// Ref is "<name>:<version>".
	Ref    string
	Config PackConfig
	blobs  map[digest.Digest][]byte
	pack   *pack.Pack

	filesOnce sync.Once
	files     map[digest.Digest]string // digest → pack path (fileOf)
	built     *ocispec.Manifest        // what the manifest's bytes were marshalled from
}

var _ content.ReadOnlyStorage = (*Pack)(nil)

// Build derives the pack's OCI artifact: a config blob describing it and one
// layer per file, titled with its path so `oras pull` gives back the folder.
// Building is deterministic: the same pack gives byte-identical manifests.
func Build(p *pack.Pack, opts BuildOptions) (*Pack, error) {
	md := p.Manifest.Metadata
	cfg := PackConfig{
		APIVersion:       pack.APIVersion,
		Name:             md.Name,
		Version:          md.Version,
		Description:      md.Description,
		Tags:             md.Tags,
		TenantVisibility: md.TenantVisibility,
		Maintainers:      md.Maintainers,
		License:          md.License,
		Inputs:           p.Manifest.Spec.Inputs,
		Secrets:          p.Manifest.Spec.Secrets,
		Approvals:        p.Manifest.Spec.Approvals,
	}
	a := &Pack{Ref: p.ID(), blobs: map[digest.Digest][]byte{}, pack: p}
	layers := make([]ocispec.Descriptor, len(p.Files))
	cfg.Files = make([]PackFile, len(p.Files))
	for i, f := range p.Files {
		mode := modeString(f.Mode)
		cfg.Files[i] = PackFile{Path: f.Path, Size: f.Size, Digest: f.Digest, Mode: mode}
		layers[i] = ocispec.Descriptor{
			MediaType: MediaTypePackFile,
			Digest:    f.Digest,
			Size:      f.Size,
			Annotations: map[string]string{
				AnnotationTitle:    f.Path,
				AnnotationFileMode: mode,
			},
		}
	}
	// The layers are encoded beside the config (two cores: a pack of
	// 10,000 files has 2.5 MB of layers and 1 MB of config to encode and
	// hash).
	var enc []byte
	var encoded bool
	var encoding sync.WaitGroup
	encoding.Go(func() { enc, encoded = encodeLayers(layers) })
	cfgBytes, err := marshalConfig(cfg)
	encoding.Wait()
	if err != nil {
		return nil, err
	}
	cfgDesc := content.NewDescriptorFromBytes(MediaTypePackConfig, cfgBytes)
	ann := map[string]string{
		AnnotationRef:                          a.Ref,
		"org.opencontainers.image.version":     md.Version,
		"org.opencontainers.image.description": md.Description,
		"org.opencontainers.image.ref.name":    md.Version,
		"io.stellaops.pack.name":               md.Name,
	}
	switch {
	case md.Created != "":
		t, err := time.Parse(time.RFC3339, md.Created)
		if err != nil {
			return nil, fmt.Errorf("metadata.created %q: %w", md.Created, pack.ErrManifestInvalid)
		}
		ann[AnnotationCreated] = t.UTC().Format(time.RFC3339)
	case opts.Created != nil:
		ann[AnnotationCreated] = opts.Created.UTC().Format(time.RFC3339)
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypePack,
		Config:       cfgDesc,
		Layers:       layers,
		Annotations:  ann,
	}
	mBytes, err := marshalWithLayers(m, enc, encoded)
	if err != nil {
		return nil, err
	}
	a.Config = cfg
	a.built = &m
	a.blobs[cfgDesc.Digest] = cfgBytes
	a.Manifest = content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mBytes)
	a.Manifest.ArtifactType = ArtifactTypePack
	a.blobs[a.Manifest.Digest] = mBytes
	return a, nil
}

// modeString is a file mode as a pack records it: "0644", "0755", or its
// permission bits in four octal digits.
func modeString(m fs.FileMode) string {
	switch m.Perm() {
	case 0o644:
		return "0644"
	case 0o755:
		return "0755"
	}
	return fmt.Sprintf("%04o", uint32(m.Perm()))
}

// fileOf returns the pack path of the file blob d; the map is made at the
// first lookup (a build into the cache takes the files from its stage and
// never looks).
func (a *Pack) fileOf(d digest.Digest) (string, bool) {
	a.filesOnce.Do(func() {
		a.files = make(map[digest.Digest]string, len(a.Config.Files))
		for _, f := range a.Config.Files {
			a.files[f.Digest] = f.Path
		}
	})
	p, ok := a.files[d]
	return p, ok
}

// Digest is the pack's manifest digest: the pack digest plans are bound to.
func (a *Pack) Digest() digest.Digest { return a.Manifest.Digest }

// ManifestBytes returns the manifest as stored.
func (a *Pack) ManifestBytes() []byte { return a.blobs[a.Manifest.Digest] }

// Fetch returns a blob of the artifact. Pack files are read from the pack and
// verified while read (integrity.Reader): a file changed since the pack was
// loaded fails with ErrFileChanged, wrapping integrity.ErrDigestMismatch or
// integrity.ErrSizeMismatch, and never completes.
func (a *Pack) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if b, ok := a.blobs[d.Digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	p, ok := a.fileOf(d.Digest)
	if !ok {
		return nil, fmt.Errorf("blob %s is not part of pack %s: %w", d.Digest, a.Ref, ErrNotInArtifact)
	}
	f, err := a.pack.Open(p)
	if err != nil {
		return nil, err
	}
	v := integrity.NewReader(f, d)
	v.Wrap = func(err error) error {
		return fmt.Errorf("pack file %s (%s): %w: %w", p, d.Digest, ErrFileChanged, err)
	}
	return v, nil
}

// BuiltManifest hands a copy of the pack's manifest as the struct its
// bytes were marshalled from (marshalManifest, which writes what
// json.Marshal does), so an import into the cache checks it without
// decoding 10,000 layers again (cache.BuiltManifests). Its layers slice
// and annotations are the caller's: changing them changes neither the pack
// nor a later copy. What they point to (each layer's annotations, the
// config's, a subject) is shared, and an import reads it only.
func (a *Pack) BuiltManifest(d digest.Digest) (*ocispec.Manifest, bool) {
	if a.built == nil || d != a.Manifest.Digest {
		return nil, false
	}
	m := *a.built
	m.Layers = slices.Clone(m.Layers)
	m.Annotations = maps.Clone(m.Annotations)
	return &m, true
}

// Exists reports whether the blob is part of the artifact.
func (a *Pack) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	if _, ok := a.blobs[d.Digest]; ok {
		return true, nil
	}
	_, ok := a.fileOf(d.Digest)
	return ok, nil
}

// ErrNotInArtifact: a blob asked of an artifact is not part of it.
var ErrNotInArtifact = errors.New("blob not in artifact")

// ErrFileChanged: a pack file changed between loading and reading it, or
// while it was read; it is pack.ErrFileChanged.
var ErrFileChanged = pack.ErrFileChanged
