package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// evidenceOf builds, in a store of its own, an evidence-like artifact
// whose subject is pack: the source of a push that does not hold the pack.
func evidenceOf(t testing.TB, f *fixture, run string) (*memory.Store, ocispec.Descriptor, []byte) {
	t.Helper()
	st := memory.New()
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := st.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	empty := push(artifact.MediaTypeEmptyJSON, []byte("{}"))
	part := push(artifact.MediaTypeEvidenceLog, []byte(`{"runId":"`+run+`"}`+"\n"))
	part.Annotations = map[string]string{artifact.AnnotationTitle: "log.ndjson"}
	subject := plainDesc(f.pack)
	var data []byte
	d := f.pushManifest(t, func(mt string, b []byte) ocispec.Descriptor { data = b; return push(mt, b) }, ocispec.Manifest{
		ArtifactType: artifact.ArtifactTypeEvidence,
		Config:       empty,
		Layers:       []ocispec.Descriptor{part},
		Subject:      &subject,
		Annotations:  map[string]string{artifact.AnnotationCreated: testCreated},
	})
	return st, d, data
}

// TestPushBesideSubject: an artifact with a subject of its own (evidence)
// is refused where its pack is not, and lands as a referrer of the pack
// where it is, from a source that does not hold the pack; Repository lists
// the pack's referrers of one type and fetches them verified. Two hosts'
// evidence of one pack are listed together.
func TestPushBesideSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *regtest.Registry
	}{
		{"distribution", func(t *testing.T) *regtest.Registry { return regtest.Start(t, regtest.Options{}) }},
		{"olareg referrers API", func(t *testing.T) *regtest.Registry { return regtest.StartReferrers(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.start(t)
			ctx := testContext(t)
			opts := optionsFor(r)
			f := newFixture(t, 1024)
			dst := mustRef(t, r.Host+"/stella/demo")
			srcA, evA, dataA := evidenceOf(t, f, "run:a")
			srcB, evB, _ := evidenceOf(t, f, "run:b")

			// Before the pack: refused, nothing sent.
			rep, err := mirror.Push(ctx, srcA, []mirror.Artifact{{Descriptor: evA}}, dst, opts)
			if !errors.Is(err, mirror.ErrSubjectMissing) {
				t.Fatalf("push before the pack: %v, want ErrSubjectMissing", err)
			}
			if rep.BlobsCopied != 0 || len(rep.Artifacts) != 1 || rep.Artifacts[0].Status != mirror.StatusFailed {
				t.Fatalf("refused push report %+v", rep)
			}
			if ok, err := r.Repository(t, "stella/demo").Exists(ctx, plainDesc(evA)); err != nil || ok {
				t.Fatalf("refused evidence is in the registry (%v, %v)", ok, err)
			}

			if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack, Tag: "1.0.0"}}, dst, opts); err != nil {
				t.Fatalf("push pack: %v", err)
			}
			for _, e := range []struct {
				src  *memory.Store
				desc ocispec.Descriptor
			}{{srcA, evA}, {srcB, evB}} {
				// The manifest and its part are sent; the empty config is
				// there already (the pack's signature has it).
				rep, err = mirror.Push(ctx, e.src, []mirror.Artifact{{Descriptor: e.desc}}, dst, opts)
				if err != nil {
					t.Fatalf("push evidence: %v", err)
				}
				if len(rep.Artifacts) != 1 || rep.Artifacts[0].Status != mirror.StatusCopied || rep.Artifacts[0].Subject != f.pack.Digest ||
					rep.Artifacts[0].Kind != artifact.KindEvidence || rep.BlobsCopied != 2 || rep.BlobsSkipped != 1 {
					t.Fatalf("evidence push report %+v", rep)
				}
			}
			// Again: present, nothing sent.
			rep, err = mirror.Push(ctx, srcA, []mirror.Artifact{{Descriptor: evA}}, dst, opts)
			if err != nil || rep.Artifacts[0].Status != mirror.StatusPresent || rep.BlobsCopied != 0 {
				t.Fatalf("second push: %v, %+v", err, rep)
			}

			repo, err := mirror.Open(mustRef(t, r.Host+"/stella/demo:1.0.0"), opts)
			if err != nil {
				t.Fatal(err)
			}
			pack, err := repo.Resolve(ctx)
			if err != nil || pack.Digest != f.pack.Digest {
				t.Fatalf("resolve: %s, %v", pack.Digest, err)
			}
			listed, err := repo.Referrers(ctx, pack, artifact.ArtifactTypeEvidence)
			if err != nil {
				t.Fatal(err)
			}
			want := []digest.Digest{evA.Digest, evB.Digest}
			slices.Sort(want)
			var got []digest.Digest
			for _, d := range listed {
				got = append(got, d.Digest)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("evidence listed %v, want %v", got, want)
			}
			rc, err := repo.Fetch(ctx, plainDesc(evA))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(b, dataA) {
				t.Fatalf("fetched evidence manifest differs (%v)", err)
			}
			if _, err := mirror.Open(mustRef(t, r.Host+"/stella/demo"), opts); err != nil {
				t.Fatal(err)
			}
			if _, err := func() (ocispec.Descriptor, error) {
				repo, _ := mirror.Open(mustRef(t, r.Host+"/stella/demo:9.9.9"), opts)
				return repo.Resolve(ctx)
			}(); !errors.Is(err, mirror.ErrNotFound) {
				t.Fatalf("resolve a missing tag: %v", err)
			}
		})
	}
}
