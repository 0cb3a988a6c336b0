package mirror_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// Push from memory → registry, pull into a cache, push from that cache to a second
// repository and pull again: the same digests and the signature at every hop, on each
// kind of registry.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		start  func(t *testing.T) *regtest.Registry
		native bool // the registry has the referrers API
	}{
		{"distribution plain HTTP", func(t *testing.T) *regtest.Registry { return regtest.Start(t, regtest.Options{}) }, false},
		{"distribution TLS and basic auth", func(t *testing.T) *regtest.Registry {
			return regtest.Start(t, regtest.Options{TLS: true, Username: "alice", Password: "correct horse"})
		}, false},
		{"olareg referrers API", func(t *testing.T) *regtest.Registry { return regtest.StartReferrers(t) }, true},
		{"debian docker-registry 2.8", func(t *testing.T) *regtest.Registry {
			return regtest.Start(t, regtest.Options{Binary: regtest.Debian(t)})
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.start(t)
			ctx := testContext(t)
			f := newFixture(t)
			opts := optionsFor(r)
			var ev events
			opts.Progress = ev.add

			// Hop 1: memory → registry.
			rep, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/one:1.0.0"), opts)
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			if rep.BlobsCopied != 8 || rep.BytesCopied != f.packBytes+f.sigBytes || rep.BlobsSkipped != 0 {
				t.Errorf("push copied %d blobs (%d bytes), skipped %d; want 8 (%d bytes), 0",
					rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, f.packBytes+f.sigBytes)
			}
			wantArtifacts := []mirror.ArtifactReport{
				{Descriptor: f.pack, Kind: artifact.KindPack, Ref: "1.0.0", Status: mirror.StatusCopied},
				{Descriptor: f.sig, Kind: artifact.KindSignature, Subject: f.pack.Digest, Status: mirror.StatusCopied},
			}
			if diff := cmp.Diff(wantArtifacts, rep.Artifacts); diff != "" {
				t.Errorf("push report artifacts (-want +got):\n%s", diff)
			}
			if ev.count(mirror.BlobCopied) != 8 || ev.count(mirror.ArtifactDone) != 1 {
				t.Errorf("events: %d BlobCopied, %d ArtifactDone; want 8, 1", ev.count(mirror.BlobCopied), ev.count(mirror.ArtifactDone))
			}
			checkRegistry(t, r, "stella/one", "1.0.0", f, tc.native)

			// Pushing again sends nothing.
			rep, err = mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack, Tag: "1.0.0"}}, mustRef(t, r.Host+"/stella/one"), opts)
			if err != nil {
				t.Fatalf("push again: %v", err)
			}
			if rep.BlobsCopied != 0 || rep.BlobsSkipped != 8 || rep.BytesSkipped != f.packBytes+f.sigBytes {
				t.Errorf("push again copied %d, skipped %d blobs (%d bytes); want 0, 8 (%d bytes)",
					rep.BlobsCopied, rep.BlobsSkipped, rep.BytesSkipped, f.packBytes+f.sigBytes)
			}
			if rep.Artifacts[0].Status != mirror.StatusPresent || rep.Artifacts[1].Status != mirror.StatusPresent {
				t.Errorf("push again statuses %s, %s; want present", rep.Artifacts[0].Status, rep.Artifacts[1].Status)
			}

			// Hop 2: registry → cache B.
			cacheB := cachetest.Open(t)
			pulled, err := mirror.Pull(ctx, mustRef(t, r.Host+"/stella/one:1.0.0"), cacheB, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			checkPulled(t, cacheB, pulled, f)
			if len(pulled.ImportIDs) != 1 {
				t.Errorf("pull import records %v; want one", pulled.ImportIDs)
			}

			// Hop 3: cache B → second repository, then → cache C.
			if _, err := mirror.Push(ctx, cacheB, []mirror.Artifact{{Descriptor: f.pack, Tag: "v1"}}, mustRef(t, r.Host+"/stella/two"), opts); err != nil {
				t.Fatalf("push from cache: %v", err)
			}
			checkRegistry(t, r, "stella/two", "v1", f, tc.native)
			cacheC := cachetest.Open(t)
			pulled, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/two@"+f.pack.Digest.String()), cacheC, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
			if err != nil {
				t.Fatalf("pull by digest: %v", err)
			}
			checkPulled(t, cacheC, pulled, f)

			// Pulling again stores nothing new.
			again, err := mirror.Pull(ctx, mustRef(t, r.Host+"/stella/two:v1"), cacheC, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
			if err != nil {
				t.Fatalf("pull again: %v", err)
			}
			if again.BlobsCopied != 0 || again.Artifacts[0].Status != mirror.StatusPresent || again.Artifacts[1].Status != mirror.StatusPresent {
				t.Errorf("pull again: %d blobs copied, statuses %s, %s; want 0, present", again.BlobsCopied, again.Artifacts[0].Status, again.Artifacts[1].Status)
			}
		})
	}
}

// checkRegistry reads repository name through a fresh client: the tag names the pack and
// the signature is listed as its referrer, by the referrers API or the tag schema.
func checkRegistry(t *testing.T, r *regtest.Registry, name, tag string, f *fixture, native bool) {
	t.Helper()
	ctx := testContext(t)
	repo := r.Repository(t, name)
	got, err := repo.Resolve(ctx, tag)
	if err != nil || got.Digest != f.pack.Digest {
		t.Fatalf("%s:%s resolves to %s, %v; want %s", name, tag, got.Digest, err, f.pack.Digest)
	}
	if refs := referrersAt(t, r, name, f.pack); !slices.Equal(refs, []digest.Digest{f.sig.Digest}) {
		t.Errorf("referrers of the pack in %s = %v; want [%s]", name, refs, f.sig.Digest)
	}
	_, err = repo.Resolve(ctx, "sha256-"+f.pack.Digest.Encoded())
	if native && !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("tag-schema index in %s on a registry with the referrers API: %v; want not found", name, err)
	}
	if !native && err != nil {
		t.Errorf("tag-schema index in %s: %v", name, err)
	}
}

// checkPulled checks a pull of the fixture: the pack under its annotation ref and its
// signature linked to it, both verified blob by blob.
func checkPulled(t *testing.T, c *cache.Store, rep mirror.Report, f *fixture) {
	t.Helper()
	ctx := testContext(t)
	a, err := c.Resolve(ctx, testRef)
	if err != nil || a.Descriptor.Digest != f.pack.Digest || a.Kind != artifact.KindPack {
		t.Fatalf("cache ref %s = %+v, %v; want pack %s", testRef, a, err, f.pack.Digest)
	}
	sigs, err := c.Referrers(ctx, f.pack.Digest, artifact.ArtifactTypeSignature)
	if err != nil || len(sigs) != 1 || sigs[0].Digest != f.sig.Digest {
		t.Fatalf("cache signatures of the pack = %v, %v; want [%s]", sigs, err, f.sig.Digest)
	}
	for d, want := range f.blobs {
		got, err := content.FetchAll(ctx, c, ocispec.Descriptor{Digest: d, Size: int64(len(want))})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("cache blob %s: %d bytes, %v; want the %d bytes pushed", d, len(got), err, len(want))
		}
	}
	if len(rep.Artifacts) != 2 || rep.Artifacts[0].Descriptor.Digest != f.pack.Digest || rep.Artifacts[0].Ref != testRef ||
		rep.Artifacts[1].Descriptor.Digest != f.sig.Digest || rep.Artifacts[1].Subject != f.pack.Digest ||
		rep.Artifacts[1].Kind != artifact.KindSignature {
		t.Errorf("pull report artifacts = %+v", rep.Artifacts)
	}
	if len(rep.Ignored) != 0 {
		t.Errorf("pull ignored %v", rep.Ignored)
	}
}
