package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

var errPolicy = errors.New("policy: refused")

// The Verify hook decides what enters the cache; it can read an artifact's signatures
// (listed at the registry) before they are imported; a refused artifact brings none of
// its referrers.
func TestPullVerifyHook(t *testing.T) {
	t.Parallel()
	r := regtest.StartReferrers(t)
	f := newFixture(t)
	src := mustRef(t, r.Host+"/stella/hook:1.0.0")
	if _, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, src, optionsFor(r)); err != nil {
		t.Fatal(err)
	}

	t.Run("pack refused", func(t *testing.T) {
		t.Parallel()
		c := cachetest.Open(t)
		var seen []digest.Digest
		rep, err := mirror.Pull(testContext(t), src, c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r),
			Verify: func(ctx context.Context, a cache.Artifact, _ content.Fetcher) error {
				seen = append(seen, a.Descriptor.Digest)
				return errPolicy
			}})
		if !errors.Is(err, errPolicy) {
			t.Fatalf("pull: %v; want the policy's error", err)
		}
		if !slices.Equal(seen, []digest.Digest{f.pack.Digest}) {
			t.Errorf("hook saw %v; want only the pack (its signature is refused with it)", seen)
		}
		if len(rep.Artifacts) != 2 || rep.Artifacts[0].Status != mirror.StatusFailed || rep.Artifacts[1].Status != mirror.StatusFailed {
			t.Errorf("report: %+v; want both failed", rep.Artifacts)
		}
		assertNothingStored(t, c)
	})

	t.Run("signature refused", func(t *testing.T) {
		t.Parallel()
		c := cachetest.Open(t)
		_, err := mirror.Pull(testContext(t), src, c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r),
			Verify: func(ctx context.Context, a cache.Artifact, _ content.Fetcher) error {
				if a.Kind == artifact.KindSignature {
					return errPolicy
				}
				return nil
			}})
		if !errors.Is(err, errPolicy) {
			t.Fatalf("pull: %v; want the policy's error", err)
		}
		list, err := c.List(testContext(t), "")
		if err != nil || len(list) != 1 || list[0].Descriptor.Digest != f.pack.Digest {
			t.Errorf("cache lists %+v, %v; want the pack only", list, err)
		}
	})

	t.Run("bound signature refused", func(t *testing.T) {
		t.Parallel()
		c := cachetest.Open(t)
		rep, err := mirror.Pull(testContext(t), src, c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r), BindSignatures: true,
			Verify: func(ctx context.Context, a cache.Artifact, _ content.Fetcher) error {
				if a.Kind == artifact.KindSignature {
					return errPolicy
				}
				return nil
			}})
		if !errors.Is(err, errPolicy) {
			t.Fatalf("pull: %v; want the policy's error", err)
		}
		if len(rep.Artifacts) != 2 || rep.Artifacts[0].Status != mirror.StatusFailed || rep.Artifacts[1].Status != mirror.StatusFailed {
			t.Errorf("report: %+v; want the pack failed with its bound signature", rep.Artifacts)
		}
		assertNothingStored(t, c)
	})

	t.Run("bound signature recorded with the pack", func(t *testing.T) {
		t.Parallel()
		c := cachetest.Open(t)
		rep, err := mirror.Pull(testContext(t), src, c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r), BindSignatures: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.ImportIDs) != 1 {
			t.Errorf("import records %v; want one for the pack and its signature", rep.ImportIDs)
		}
		if refs, err := c.Referrers(testContext(t), f.pack.Digest, ""); err != nil || len(refs) != 1 {
			t.Errorf("referrers of the pack: %v, %v; want its signature", refs, err)
		}
	})

	t.Run("policy reads the signature before it is imported", func(t *testing.T) {
		t.Parallel()
		c := cachetest.Open(t)
		var envelope []byte
		rep, err := mirror.Pull(testContext(t), src, c, cache.ImportRecord{Verified: []string{"signature policy"}}, mirror.PullOptions{Options: optionsFor(r),
			Verify: func(ctx context.Context, a cache.Artifact, fetcher content.Fetcher) error {
				if a.Kind != artifact.KindPack {
					return nil
				}
				// The pack's own blobs are in the cache already.
				if _, err := content.FetchAll(ctx, fetcher, f.layers[0]); err != nil {
					return err
				}
				g, ok := fetcher.(content.ReadOnlyGraphStorage)
				if !ok {
					return errors.New("fetcher lists no referrers")
				}
				sigs, err := g.Predecessors(ctx, a.Descriptor)
				if err != nil || len(sigs) != 1 || sigs[0].ArtifactType != artifact.ArtifactTypeSignature {
					return errors.New("signature not listed")
				}
				m, err := content.FetchAll(ctx, fetcher, sigs[0])
				if err != nil {
					return err
				}
				if !bytes.Contains(m, []byte(f.dsse.Digest)) {
					return errors.New("signature manifest lacks its envelope")
				}
				envelope, err = content.FetchAll(ctx, fetcher, f.dsse)
				return err
			}})
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if !bytes.Equal(envelope, f.blobs[f.dsse.Digest]) {
			t.Errorf("envelope read by the hook = %q", envelope)
		}
		checkPulled(t, c, rep, f)
		recs, err := c.Imports(testContext(t), f.pack.Digest)
		if err != nil || len(recs) != 1 || recs[0].From != src.String() || len(recs[0].Verified) != 2 {
			t.Errorf("import records %+v, %v; want one from %s naming both checks", recs, err, src)
		}
	})
}

// What a pull records and what it leaves out: the ref without an annotation, foreign
// referrers, artifacts that are not stella's.
func TestPullSelection(t *testing.T) {
	t.Parallel()
	r := regtest.StartReferrers(t)
	ctx := testContext(t)
	f := newFixture(t)
	repo := r.Repository(t, "stella/select")

	// A pack without io.stellaops.ref, with a foreign referrer.
	for _, l := range append([]ocispec.Descriptor{f.config}, f.layers...) {
		if err := repo.Push(ctx, l, bytes.NewReader(f.blobs[l.Digest])); err != nil {
			t.Fatal(err)
		}
	}
	bare, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, artifact.ArtifactTypePack, oras.PackManifestOptions{
		ConfigDescriptor:    &f.config,
		Layers:              f.layers,
		ManifestAnnotations: map[string]string{artifact.AnnotationCreated: testCreated},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, bare, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	sbom, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.sbom", oras.PackManifestOptions{
		Subject: &bare, ManifestAnnotations: map[string]string{artifact.AnnotationCreated: testCreated}})
	if err != nil {
		t.Fatal(err)
	}
	c := cachetest.Open(t)
	rep, err := mirror.Pull(ctx, mustRef(t, r.Host+"/stella/select:2.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if a, err := c.Resolve(ctx, "stella/select:2.0.0"); err != nil || a.Descriptor.Digest != bare.Digest {
		t.Errorf("cache ref stella/select:2.0.0 = %+v, %v; want %s", a, err, bare.Digest)
	}
	if len(rep.Ignored) != 1 || rep.Ignored[0].Digest != sbom.Digest {
		t.Errorf("ignored %v; want the foreign referrer %s", rep.Ignored, sbom.Digest)
	}
	if list, _ := c.List(ctx, ""); len(list) != 1 {
		t.Errorf("cache lists %+v; want the pack only", list)
	}

	// Pulled by digest, without a tag or an annotation.
	c2 := cachetest.Open(t)
	if _, err := mirror.Pull(ctx, mustRef(t, r.Host+"/stella/select@"+bare.Digest.String()), c2, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)}); err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if a, err := c2.Resolve(ctx, "stella/select@"+bare.Digest.String()); err != nil || a.Descriptor.Digest != bare.Digest {
		t.Errorf("cache ref by digest = %+v, %v", a, err)
	}

	// Pulled by tag and digest: the digest pins, the tag names.
	c3 := cachetest.Open(t)
	if _, err := mirror.Pull(ctx, mustRef(t, r.Host+"/stella/select:2.0.0@"+bare.Digest.String()), c3, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)}); err != nil {
		t.Fatalf("pull by tag and digest: %v", err)
	}
	if a, err := c3.Resolve(ctx, "stella/select:2.0.0"); err != nil || a.Descriptor.Digest != bare.Digest {
		t.Errorf("cache ref after a pull by tag and digest = %+v, %v", a, err)
	}

	// Not a stella artifact.
	if err := repo.Tag(ctx, sbom, "sbom"); err != nil {
		t.Fatal(err)
	}
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/select:sbom"), cachetest.Open(t), cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
	if !errors.Is(err, mirror.ErrUnsupportedArtifact) {
		t.Errorf("pull of a foreign artifact: %v; want ErrUnsupportedArtifact", err)
	}
	// Neither a tag nor a digest.
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/select"), cachetest.Open(t), cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
	if !errors.Is(err, mirror.ErrInvalidReference) {
		t.Errorf("pull without tag or digest: %v; want ErrInvalidReference", err)
	}
}
