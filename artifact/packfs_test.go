package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/fstest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
)

// TestPackFSRoundTrip: a pack loaded from its own artifact is the same pack,
// with the same digest, as the folder it was built from.
func TestPackFSRoundTrip(t *testing.T) {
	for _, dir := range []string{"../testdata/packs/remediate-cve", "../testdata/packs/rotate-registry-credentials"} {
		p, err := pack.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Build(p, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fsys, err := PackFS(context.Background(), a, a.ManifestBytes())
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(fsys, "pack.yaml", "scripts"); err != nil {
			t.Fatal(err)
		}
		p2, err := pack.Load(fsys)
		if err != nil {
			t.Fatal(err)
		}
		a2, err := Build(p2, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a2.Digest() != a.Digest() {
			t.Fatalf("%s: digest from artifact %s, from folder %s", dir, a2.Digest(), a.Digest())
		}
	}
}

func TestPackFSRefusesUnsafeTitles(t *testing.T) {
	for _, title := range []string{"../x", "/etc/passwd", "a/../../b", ".hidden", "", `a\\b`, `..\\x`, ".git/config", "a/.ssh/id", "./a", "a//b", "a/"} {
		m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"` + ArtifactTypePack + `","config":{"mediaType":"` + MediaTypePackConfig + `","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"` + MediaTypePackFile + `","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.opencontainers.image.title":"` + title + `"}}]}`)
		if _, err := PackFS(context.Background(), nil, m); !errors.Is(err, integrity.ErrInvalidManifest) || !errors.Is(err, ErrUnsafeTitle) {
			t.Errorf("title %q: want ErrUnsafeTitle (an integrity.ErrInvalidManifest), got %v", title, err)
		}
	}
}

// TestCheckTitles: the titles of the packs stella builds pass; a name given
// twice, or a file that is also a folder, does not.
func TestCheckTitles(t *testing.T) {
	p, err := pack.LoadDir("../testdata/packs/remediate-cve")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(p, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(a.ManifestBytes(), &m); err != nil {
		t.Fatal(err)
	}
	if err := CheckTitles(m.Layers); err != nil {
		t.Fatalf("a built pack: %v", err)
	}
	layer := func(title string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: MediaTypePackFile, Digest: m.Layers[0].Digest, Size: m.Layers[0].Size,
			Annotations: map[string]string{AnnotationTitle: title}}
	}
	for name, layers := range map[string][]ocispec.Descriptor{
		"twice":            {layer("pack.yaml"), layer("pack.yaml")},
		"file then folder": {layer("scripts"), layer("scripts/run.sh")},
		"folder then file": {layer("scripts/run.sh"), layer("scripts")},
		"backslash":        {layer(`scripts\run.sh`)},
	} {
		if err := CheckTitles(layers); !errors.Is(err, ErrUnsafeTitle) {
			t.Errorf("%s: want ErrUnsafeTitle, got %v", name, err)
		}
	}
}
