package cache

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/integrity"
)

const mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

// isManifest reports the OCI and Docker manifest and index media types.
func isManifest(mediaType string) bool { return integrity.IsManifestType(mediaType) }

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

// parseManifest decodes the checked bytes of the manifest desc
// (integrity.DecodeManifest) into what the cache keeps of it. Every
// refusal wraps ErrInvalidArtifact only (the integrity sentinel is named in
// the message), so that it keeps its row in the error table.
func parseManifest(desc ocispec.Descriptor, b []byte) (manifestInfo, error) {
	m, err := integrity.DecodeManifest(desc.MediaType, b)
	if err != nil {
		return manifestInfo{}, fmt.Errorf("manifest %s: %w: %v", desc.Digest, ErrInvalidArtifact, err)
	}
	return infoOf(m), nil
}

// infoOf is what the cache keeps of the checked manifest m.
func infoOf(m *integrity.Manifest) manifestInfo {
	info := manifestInfo{artifactType: m.Type(), subject: m.Subject, annotations: m.Annotations}
	if m.IsIndex() {
		info.children = m.Manifests
		return info
	}
	info.children = make([]ocispec.Descriptor, 0, 1+len(m.Layers))
	info.children = append(info.children, *m.Config)
	for _, l := range m.Layers {
		if !isForeign(l.MediaType) {
			info.children = append(info.children, l)
		}
	}
	return info
}

// BuiltManifests is a source that built the manifests it serves in this
// process, such as a pack built from a folder (artifact.Pack):
// BuiltManifest hands the image manifest d as the struct its bytes were
// marshalled from, as encoding/json marshals them, or false. The import
// then checks that struct (integrity.ManifestOf) instead of decoding the
// bytes again; the bytes are still read and checked against their digest,
// and are what the cache stores. The import trusts the struct to be what
// the bytes decode to (the graph it records comes from it): no source of
// content from outside the process (a bundle, a registry) implements it.
type BuiltManifests interface {
	BuiltManifest(d digest.Digest) (*ocispec.Manifest, bool)
}

// manifestOf is parseManifest of the manifest desc whose checked bytes are
// b, taken from src's built struct when it has one (BuiltManifests).
func manifestOf(src content.Fetcher, desc ocispec.Descriptor, b []byte) (manifestInfo, error) {
	bm, ok := src.(BuiltManifests)
	if !ok {
		return parseManifest(desc, b)
	}
	built, ok := bm.BuiltManifest(desc.Digest)
	if !ok {
		return parseManifest(desc, b)
	}
	m, err := integrity.ManifestOf(desc.MediaType, built)
	if err != nil {
		return manifestInfo{}, fmt.Errorf("manifest %s: %w: %v", desc.Digest, ErrInvalidArtifact, err)
	}
	return infoOf(m), nil
}

// graph is an artifact's graph as read from a source before copying.
type graph struct {
	root      ocispec.Descriptor
	info      manifestInfo                           // of the root
	nodes     []ocispec.Descriptor                   // unique, root first
	children  map[digest.Digest][]ocispec.Descriptor // of every manifest node
	manifests map[digest.Digest][]byte
	size      int64                    // sum of node sizes
	sorted    []ocispec.Descriptor     // nodes by digest (byDigest)
	encoded   map[digest.Digest][]byte // children records (encodeRecords)
}

// encodeRecords computes beforehand what recording the graph needs and
// takes time: its nodes in key order, and each manifest's children record.
// It may run while nothing else uses g.
func (g *graph) encodeRecords() {
	g.byDigest()
	g.encoded = make(map[digest.Digest][]byte, len(g.children))
	for d := range g.children {
		if raw, err := g.marshalChildren(d); err == nil {
			g.encoded[d] = raw
		}
	}
}

// childrenJSON is the children record of manifest d: the JSON array of its
// children, each with its media type, digest and size only. What reads it
// (a graph's blobs, gc's mark, verify's comparison with the manifest)
// needs no more; the rest (a pack file's title and mode) is in the
// manifest, and held twice it was a third of the index.
func (g *graph) childrenJSON(d digest.Digest) ([]byte, error) {
	if raw, ok := g.encoded[d]; ok {
		return raw, nil
	}
	return g.marshalChildren(d)
}

func (g *graph) marshalChildren(d digest.Digest) ([]byte, error) {
	cs := make([]ocispec.Descriptor, len(g.children[d]))
	for i, c := range g.children[d] {
		cs[i] = ocispec.Descriptor{MediaType: c.MediaType, Digest: c.Digest, Size: c.Size}
	}
	return integrity.MarshalDescriptors(cs) // json.Marshal(cs), faster
}

// byDigest returns the graph's nodes sorted by digest (the index's key
// order), computed once.
func (g *graph) byDigest() []ocispec.Descriptor {
	if g.sorted == nil {
		// Sorted by their places: a descriptor is 136 bytes to move.
		at := make([]int32, len(g.nodes))
		for i := range at {
			at[i] = int32(i)
		}
		slices.SortFunc(at, func(a, b int32) int {
			return strings.Compare(string(g.nodes[a].Digest), string(g.nodes[b].Digest))
		})
		g.sorted = make([]ocispec.Descriptor, len(at))
		for i, j := range at {
			g.sorted[i] = g.nodes[j]
		}
	}
	return g.sorted
}

// walk reads the manifests of the graph rooted at root from src, verified.
func walk(ctx context.Context, src content.Fetcher, root ocispec.Descriptor) (*graph, error) {
	g := &graph{root: root, children: map[digest.Digest][]ocispec.Descriptor{}, manifests: map[digest.Digest][]byte{}}
	sizes := map[digest.Digest]int64{root.Digest: root.Size} // sized once the root's children are known
	queue := []ocispec.Descriptor{root}
	for i := 0; i < len(queue); i++ {
		desc := queue[i]
		g.size += desc.Size
		if !isManifest(desc.MediaType) {
			continue
		}
		b, err := fetchManifest(ctx, src, desc)
		if err != nil {
			return nil, err
		}
		info, err := manifestOf(src, desc, b)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			g.info = info
			sizes = make(map[digest.Digest]int64, 1+len(info.children))
			sizes[root.Digest] = root.Size
		}
		g.manifests[desc.Digest] = b
		g.children[desc.Digest] = info.children
		queue = slices.Grow(queue, len(info.children))
		for _, c := range info.children {
			if n, seen := sizes[c.Digest]; seen {
				if n != c.Size {
					return nil, fmt.Errorf("blob %s: %w: described as %d and %d bytes", c.Digest, integrity.ErrSizeMismatch, n, c.Size)
				}
				continue
			}
			sizes[c.Digest] = c.Size
			queue = append(queue, c)
		}
	}
	g.nodes = queue // every node once, root first
	return g, nil
}

func fetchManifest(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > integrity.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes, more than the %d allowed", desc.Digest, ErrInvalidArtifact, desc.Size, integrity.MaxManifestSize)
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	b, err := integrity.ReadAll(rc, desc, integrity.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return b, nil
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
