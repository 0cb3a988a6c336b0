package artifact

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

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
	for _, title := range []string{"../x", "/etc/passwd", "a/../../b", ".hidden", ""} {
		m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"` + ArtifactTypePack + `","config":{"mediaType":"` + MediaTypePackConfig + `","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"` + MediaTypePackFile + `","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.opencontainers.image.title":"` + title + `"}}]}`)
		if _, err := PackFS(context.Background(), nil, m); !errors.Is(err, integrity.ErrInvalidManifest) {
			t.Errorf("title %q: want integrity.ErrInvalidManifest, got %v", title, err)
		}
	}
}
