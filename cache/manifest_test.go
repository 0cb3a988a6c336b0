package cache

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func FuzzParseManifest(f *testing.F) {
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.stellaops.pack.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.stellaops.pack.file.v1","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9","size":3}}`))
	f.Add(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}]}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"config":{"digest":"sha256:zz","size":-1}}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"mediaType":"application/vnd.oci.image.index.v1+json"}`))
	f.Add("text/plain", []byte(`{}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`not json`))
	f.Fuzz(func(t *testing.T, mediaType string, b []byte) {
		desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		info, err := parseManifest(desc, b)
		if err != nil {
			if !errors.Is(err, ErrInvalidArtifact) {
				t.Fatalf("error %v is not ErrInvalidArtifact", err)
			}
			return
		}
		if !isManifest(mediaType) {
			t.Fatalf("accepted media type %q", mediaType)
		}
		for _, c := range info.children {
			if c.Digest.Validate() != nil || c.Size < 0 {
				t.Fatalf("accepted child %+v", c)
			}
		}
	})
}

func TestParseManifest(t *testing.T) {
	layer := ocispec.Descriptor{MediaType: "application/x", Digest: digest.FromString("x"), Size: 1}
	foreign := ocispec.Descriptor{MediaType: mediaTypeDockerForeignLayer, Digest: digest.FromString("y"), Size: 1}
	cfg := ocispec.Descriptor{MediaType: "application/vnd.example.config+json", Digest: digest.FromString("{}"), Size: 2}
	b := []byte(`{"schemaVersion":2,"config":{"mediaType":"` + cfg.MediaType + `","digest":"` + string(cfg.Digest) + `","size":2},` +
		`"layers":[{"mediaType":"application/x","digest":"` + string(layer.Digest) + `","size":1},` +
		`{"mediaType":"` + foreign.MediaType + `","digest":"` + string(foreign.Digest) + `","size":1}]}`)
	info, err := parseManifest(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.children) != 2 || info.children[0].Digest != cfg.Digest || info.children[1].Digest != layer.Digest {
		t.Errorf("children = %v, want config and the non-foreign layer", info.children)
	}
	if info.artifactType != cfg.MediaType {
		t.Errorf("artifactType = %q, want the config media type", info.artifactType)
	}
}
