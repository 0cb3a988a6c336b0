package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
)

// counting serves blobs and records the digest of each one fetched.
type counting struct {
	content.Fetcher
	fetched []digest.Digest
}

func (c *counting) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	c.fetched = append(c.fetched, d.Digest)
	return c.Fetcher.Fetch(ctx, d)
}

// TestVerifyReadsNothingUnsigned: an attacker who can rewrite the manifest
// (the media, a registry) but holds no key adds thousands of layers that
// all name one large blob under new titles; the verifier must refuse
// before reading any part the signed statement does not name, else one
// 256 MiB blob stored once is read into memory once per title.
func TestVerifyReadsNothingUnsigned(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ev := build(t, f.in)
	desc, src, err := ev.manifest()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src[desc.Digest], &m); err != nil {
		t.Fatal(err)
	}
	big := m.Layers[len(m.Layers)-1]
	n := len(m.Layers)
	layers := append([]ocispec.Descriptor(nil), m.Layers[:n-1]...)
	for i := range 100 {
		l := big
		l.MediaType = artifact.MediaTypeEvidenceOutput
		l.Annotations = map[string]string{artifact.AnnotationTitle: fmt.Sprintf("outputs/copy%03d", i)}
		layers = append(layers, l)
	}
	m.Layers = append(layers, m.Layers[n-1])
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	forged := src.add(ocispec.MediaTypeImageManifest, mb)
	c := &counting{Fetcher: src}
	_, err = VerifyArtifact(ctx, c, forged, "forged", "", VerifyOptions{Trust: f.trust})
	var pe *PartError
	if !errors.Is(err, ErrPartAltered) || !errors.As(err, &pe) || pe.Part != "outputs/copy000" {
		t.Fatalf("got %v, want ErrPartAltered naming outputs/copy000", err)
	}
	if len(c.fetched) > 2 {
		t.Errorf("%d blobs read before the statement was checked, want only the manifest and the statement", len(c.fetched))
	}
}
