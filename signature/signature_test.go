package signature

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"stellaops.io/stella/artifact"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/trust"
)

func buildPack(t *testing.T, st *cache.Store, dir string) *artifact.Pack {
	t.Helper()
	p, err := pack.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(context.Background(), a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return a
}

func attach(t *testing.T, st *cache.Store, signer *keys.Pair, subject ocispec.Descriptor, ref string) ocispec.Descriptor {
	t.Helper()
	sig, err := Sign(context.Background(), signer, subject, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(context.Background(), sig, []cache.Artifact{{Descriptor: sig.Manifest, Kind: artifact.KindSignature}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return sig.Manifest
}

func TestVerifyPolicy(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	publisher, _ := keys.Generate(keys.AlgECDSAP256)
	approver, _ := keys.Generate(keys.AlgEd25519)
	stranger, _ := keys.Generate(keys.AlgECDSAP256)
	acmeOnly, _ := keys.Generate(keys.AlgEd25519)
	revoked, _ := keys.Generate(keys.AlgECDSAP256)
	ts, err := trust.Load(t.TempDir() + "/trust.json")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ts.Add("publisher", publisher.PublicPEM(), []string{trust.RolePublisher}, []string{"*"}, now))
	must(ts.Add("approver", approver.PublicPEM(), []string{trust.RoleApprove}, []string{"*"}, now))
	must(ts.Add("acme", acmeOnly.PublicPEM(), []string{trust.RolePublisher}, []string{"acme"}, now))
	must(ts.Add("old", revoked.PublicPEM(), []string{trust.RolePublisher}, []string{"*"}, now))
	must(ts.Revoke("old", now))

	cases := []struct {
		name   string
		signer *keys.Pair
		swap   bool // sign another pack's digest but attach to this one
		tenant string
		want   error
	}{
		{"trusted publisher", publisher, false, "globex", nil},
		{"unknown key", stranger, false, "globex", trust.ErrUnknownKey},
		{"key without publisher role", approver, false, "globex", trust.ErrRoleMissing},
		{"key for another tenant", acmeOnly, false, "globex", trust.ErrTenantNotAllowed},
		{"key for this tenant", acmeOnly, false, "acme", nil},
		{"revoked key", revoked, false, "globex", trust.ErrKeyRevoked},
		{"signature over another digest", publisher, true, "globex", trust.ErrSubjectMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := cachetest.Open(t)
			a := buildPack(t, st, "../testdata/packs/backup-database")
			if c.swap {
				other := buildPack(t, st, "../testdata/packs/audit-evidence")
				sig, err := Sign(ctx, c.signer, other.Manifest, other.Ref)
				must(err)
				// Attach the other pack's envelope to this pack: a swapped signature.
				forged := reSubject(t, sig, a.Manifest)
				if _, err := st.Import(ctx, forged, []cache.Artifact{{Descriptor: forged.Manifest, Kind: artifact.KindSignature}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				attach(t, st, c.signer, a.Manifest, a.Ref)
			}
			res, err := Verify(ctx, st, a.Manifest, ts, Requirement{Role: trust.RolePublisher, Tenant: c.tenant})
			must(err)
			if len(res) != 1 {
				t.Fatalf("want one signature, got %d", len(res))
			}
			// Checked without being required: refuted unless valid or
			// by a key this host does not know.
			refuted := Refuted(a.Ref, res)
			if wantRefuted := c.want != nil && c.want != trust.ErrUnknownKey; (refuted != nil) != wantRefuted || (wantRefuted && !errors.Is(refuted, c.want)) {
				t.Fatalf("Refuted: %v, want refuted %v (%v)", refuted, wantRefuted, c.want)
			}
			err = Require(a.Ref, res)
			if c.want == nil {
				if err != nil || !res[0].Valid || res[0].KeyID != c.signer.ID() {
					t.Fatalf("want valid by %s, got %+v %v", c.signer.ID(), res[0], err)
				}
				return
			}
			if !errors.Is(err, ErrRejected) || !errors.Is(err, c.want) {
				t.Fatalf("want ErrRejected wrapping %v, got %v", c.want, err)
			}
		})
	}

	t.Run("unsigned", func(t *testing.T) {
		st := cachetest.Open(t)
		a := buildPack(t, st, "../testdata/packs/backup-database")
		res, err := Verify(ctx, st, a.Manifest, ts, Requirement{Role: trust.RolePublisher, Tenant: "x"})
		must(err)
		if err := Require(a.Ref, res); !errors.Is(err, ErrRejected) {
			t.Fatalf("unsigned pack: want ErrRejected, got %v", err)
		}
		if err := Refuted(a.Ref, res); err != nil {
			t.Fatalf("unsigned pack, signatures not required: %v", err)
		}
	})
	t.Run("one valid among bad ones", func(t *testing.T) {
		st := cachetest.Open(t)
		a := buildPack(t, st, "../testdata/packs/backup-database")
		attach(t, st, stranger, a.Manifest, a.Ref)
		attach(t, st, publisher, a.Manifest, a.Ref)
		res, err := Verify(ctx, st, a.Manifest, ts, Requirement{Role: trust.RolePublisher, Tenant: "x"})
		must(err)
		if len(res) != 2 || Require(a.Ref, res) != nil {
			t.Fatalf("want 2 results, one valid: %+v", res)
		}
	})
}

// reSubject returns a copy of sig whose manifest points at subject while its
// envelope still signs the original digest.
func reSubject(t *testing.T, sig *Artifact, subject ocispec.Descriptor) *Artifact {
	t.Helper()
	m, err := fetchManifest(context.Background(), sig, sig.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m.Subject = &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	mb, _ := json.Marshal(m)
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	md.ArtifactType = artifact.ArtifactTypeSignature
	blobs := map[digest.Digest][]byte{md.Digest: mb}
	for d, b := range sig.blobs {
		if d != sig.Manifest.Digest {
			blobs[d] = b
		}
	}
	return &Artifact{Manifest: md, blobs: blobs}
}
