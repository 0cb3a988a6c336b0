package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/integrity"
)

// TestMarshalManifestIsJSON: marshalManifest gives the bytes of
// json.Marshal for the manifests a build makes and for layers it hands to
// the generic path, which must then give them too.
func TestMarshalManifestIsJSON(t *testing.T) {
	layer := func(path string, size int64) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: MediaTypePackFile, Digest: digest.FromString(path), Size: size,
			Annotations: map[string]string{AnnotationTitle: path, AnnotationFileMode: "0644"}}
	}
	var many []ocispec.Descriptor
	for i := range 1000 {
		many = append(many, layer(fmt.Sprintf("d%03d/f%05d.bin", i/100, i), int64(i*37)))
	}
	base := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypePack, Config: ocispec.Descriptor{MediaType: MediaTypePackConfig, Digest: digest.FromString("{}"), Size: 2},
		Annotations: map[string]string{AnnotationRef: "many:1.0.0", "org.opencontainers.image.description": "d <&> \u2028 é"}}
	with := func(f func(l *ocispec.Descriptor)) []ocispec.Descriptor {
		l := layer("x", 1)
		f(&l)
		return []ocispec.Descriptor{layer("a", 1), l}
	}
	sentinelAnn := base
	sentinelAnn.Annotations = map[string]string{"x": layersSentinel}
	tests := []struct {
		name   string
		m      ocispec.Manifest
		layers []ocispec.Descriptor
		fast   bool // appendLayers takes the layers
	}{
		{"plain", base, many, true},
		{"one layer", base, many[:1], true},
		{"no layers", base, []ocispec.Descriptor{}, false},
		{"nil layers", base, nil, false},
		{"no annotations", base, with(func(l *ocispec.Descriptor) { l.Annotations = nil }), true},
		{"empty annotations", base, with(func(l *ocispec.Descriptor) { l.Annotations = map[string]string{} }), true},
		{"three annotations", base, with(func(l *ocispec.Descriptor) { l.Annotations["a.first"] = "1"; l.Annotations["z.last"] = "" }), true},
		{"negative size", base, with(func(l *ocispec.Descriptor) { l.Size = -1 }), true},
		{"largest size", base, with(func(l *ocispec.Descriptor) { l.Size = 1<<63 - 1 }), true},
		{"non-ASCII path", base, []ocispec.Descriptor{layer("données/é.txt", 1)}, false},
		{"HTML in path", base, []ocispec.Descriptor{layer("a<b>&c", 1)}, false},
		{"quote in path", base, []ocispec.Descriptor{layer(`a"b`, 1)}, false},
		{"backslash in path", base, []ocispec.Descriptor{layer(`a\b`, 1)}, false},
		{"control character", base, []ocispec.Descriptor{layer("a\tb", 1)}, false},
		{"DEL in path", base, []ocispec.Descriptor{layer("a\x7fb", 1)}, false},
		{"line separator in path", base, []ocispec.Descriptor{layer("a\u2028b", 1)}, false},
		{"odd annotation name", base, with(func(l *ocispec.Descriptor) { l.Annotations["é"] = "1" }), false},
		{"urls", base, with(func(l *ocispec.Descriptor) { l.URLs = []string{"https://x"} }), false},
		{"data", base, with(func(l *ocispec.Descriptor) { l.Data = []byte("x") }), false},
		{"platform", base, with(func(l *ocispec.Descriptor) { l.Platform = &ocispec.Platform{OS: "linux"} }), false},
		{"artifactType", base, with(func(l *ocispec.Descriptor) { l.ArtifactType = "x" }), false},
		{"odd media type", base, with(func(l *ocispec.Descriptor) { l.MediaType = "a<b" }), false},
		{"sentinel elsewhere", sentinelAnn, many, true}, // layers plain; the count sends it to the generic path
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			m.Layers = tt.layers
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshalManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshalManifest:\n%.600s\nwant json.Marshal:\n%.600s", got, want)
			}
			if _, ok := integrity.AppendDescriptors(nil, tt.layers); len(tt.layers) > 0 && ok != tt.fast {
				t.Errorf("fast path taken = %v, want %v", ok, tt.fast)
			}
		})
	}
}
