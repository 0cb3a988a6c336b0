package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// maxManifestSize bounds what is read into memory as a manifest.
const maxManifestSize = 4 << 20

const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

func isManifest(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		mediaTypeDockerManifest, mediaTypeDockerManifestList:
		return true
	}
	return false
}

// isForeign reports layers that are not distributed with their manifest;
// oras.CopyGraph skips them, and so does the cache's graph.
func isForeign(mediaType string) bool {
	switch mediaType {
	case mediaTypeDockerForeignLayer,
		ocispec.MediaTypeImageLayerNonDistributable,     //nolint:staticcheck // still met in the wild
		ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
		return true
	}
	return false
}

// manifestInfo is what the cache keeps of a manifest.
type manifestInfo struct {
	children     []ocispec.Descriptor // config and layers, or the index's manifests; no subject
	subject      *ocispec.Descriptor
	artifactType string
	annotations  map[string]string
}

func parseManifest(desc ocispec.Descriptor, b []byte) (manifestInfo, error) {
	var m struct {
		MediaType    string               `json:"mediaType"`
		ArtifactType string               `json:"artifactType"`
		Config       *ocispec.Descriptor  `json:"config"`
		Layers       []ocispec.Descriptor `json:"layers"`
		Manifests    []ocispec.Descriptor `json:"manifests"`
		Subject      *ocispec.Descriptor  `json:"subject"`
		Annotations  map[string]string    `json:"annotations"`
	}
	bad := func(format string, args ...any) (manifestInfo, error) {
		return manifestInfo{}, fmt.Errorf("manifest %s: %w: %s", desc.Digest, ErrInvalidArtifact, fmt.Sprintf(format, args...))
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return bad("%v", err)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		return bad("content says media type %q, descriptor %q", m.MediaType, desc.MediaType)
	}
	info := manifestInfo{artifactType: m.ArtifactType, subject: m.Subject, annotations: m.Annotations}
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		if m.Config == nil {
			return bad("no config")
		}
		info.children = append(info.children, *m.Config)
		for _, l := range m.Layers {
			if !isForeign(l.MediaType) {
				info.children = append(info.children, l)
			}
		}
		if info.artifactType == "" && m.Config.MediaType != ocispec.MediaTypeEmptyJSON {
			// OCI referrers rule: the config media type stands in.
			info.artifactType = m.Config.MediaType
		}
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		info.children = m.Manifests
	default:
		return bad("media type %q is not a manifest", desc.MediaType)
	}
	for _, c := range info.children {
		if err := checkDescriptor(c); err != nil {
			return bad("child: %v", err)
		}
	}
	if info.subject != nil {
		if err := checkDescriptor(*info.subject); err != nil {
			return bad("subject: %v", err)
		}
	}
	return info, nil
}

// readVerified reads a whole (small) blob and checks it against desc.
func readVerified(r io.Reader, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes, more than the %d allowed", desc.Digest, ErrInvalidArtifact, desc.Size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("blob %s: %w: expected %d bytes, got %d", desc.Digest, ErrSizeMismatch, desc.Size, len(b))
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: %w: content hashes to %s", desc.Digest, ErrDigestMismatch, got)
	}
	return b, nil
}

// graph is an artifact's graph as read from a source before copying.
type graph struct {
	root      ocispec.Descriptor
	info      manifestInfo                           // of the root
	nodes     []ocispec.Descriptor                   // unique, root first
	children  map[digest.Digest][]ocispec.Descriptor // of every manifest node
	manifests map[digest.Digest][]byte
	size      int64 // sum of node sizes
}

// walk reads the manifests of the graph rooted at root from src, verified.
func walk(ctx context.Context, src content.Fetcher, root ocispec.Descriptor) (*graph, error) {
	g := &graph{root: root, children: map[digest.Digest][]ocispec.Descriptor{}, manifests: map[digest.Digest][]byte{}}
	sizes := map[digest.Digest]int64{}
	queue := []ocispec.Descriptor{root}
	sizes[root.Digest] = root.Size
	for i := 0; i < len(queue); i++ {
		desc := queue[i]
		g.nodes = append(g.nodes, desc)
		g.size += desc.Size
		if !isManifest(desc.MediaType) {
			continue
		}
		b, err := fetchManifest(ctx, src, desc)
		if err != nil {
			return nil, err
		}
		info, err := parseManifest(desc, b)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			g.info = info
		}
		g.manifests[desc.Digest] = b
		g.children[desc.Digest] = info.children
		for _, c := range info.children {
			if n, seen := sizes[c.Digest]; seen {
				if n != c.Size {
					return nil, fmt.Errorf("blob %s: %w: described as %d and %d bytes", c.Digest, ErrSizeMismatch, n, c.Size)
				}
				continue
			}
			sizes[c.Digest] = c.Size
			queue = append(queue, c)
		}
	}
	return g, nil
}

func fetchManifest(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	return readVerified(rc, desc, maxManifestSize)
}

// postOrder returns the manifests of the graph, children before parents.
func (g *graph) postOrder() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	var visit func(d ocispec.Descriptor)
	visit = func(d ocispec.Descriptor) {
		if seen[d.Digest] {
			return
		}
		seen[d.Digest] = true
		children, isManifest := g.children[d.Digest]
		if !isManifest {
			return
		}
		for _, c := range children {
			visit(c)
		}
		out = append(out, d)
	}
	visit(g.root)
	return out
}
