package evidence

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
)

// lying serves one blob altered, as a registry might.
type lying struct {
	content.Fetcher
	blob digest.Digest
}

func (l lying) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := l.Fetcher.Fetch(ctx, d)
	if err != nil || d.Digest != l.blob {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[0] ^= 1
	return io.NopCloser(bytes.NewReader(b)), nil
}

// TestVerifyArtifact: evidence read from a content store (as from a
// registry) verifies as the bundle file does; evidence of another pack,
// and a part served altered by the store, are refused naming the part.
func TestVerifyArtifact(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ev := build(t, f.in)
	desc, st, err := ev.Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := ev.Descriptor(); desc.Digest != want.Digest {
		t.Fatalf("storage manifest %s, the bundle's is %s", desc.Digest, want.Digest)
	}
	name := "registry.local/packs/gated@" + desc.Digest.String()
	rep, err := VerifyArtifact(ctx, st, desc, name, f.in.Pack.Digest, VerifyOptions{Trust: f.trust})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.Verified || rep.File != name || rep.Evidence != desc.Digest || rep.Signer.KeyID != f.runner.ID() || rep.Run.RunID != f.in.Record.ID {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Checks) == 0 || rep.Checks[0].Part != PartManifest || len(rep.Approvals) != 1 {
		t.Fatalf("checks %+v, approvals %+v", rep.Checks, rep.Approvals)
	}

	_, err = VerifyArtifact(ctx, st, desc, name, digest.FromString("another pack"), VerifyOptions{Trust: f.trust})
	var pe *PartError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &pe) || pe.Part != PartManifest {
		t.Fatalf("evidence of another pack: %v", err)
	}

	log := digest.FromBytes(part(t, ev, PartLog).Data)
	rep, err = VerifyArtifact(ctx, lying{st, log}, desc, name, "", VerifyOptions{Trust: f.trust})
	if !errors.Is(err, integrity.ErrDigestMismatch) || !errors.As(err, &pe) || pe.Part != PartLog || rep.Verified || rep.Failure.Part != PartLog {
		t.Fatalf("altered log served: %v, report %+v", err, rep.Failure)
	}
	_, err = VerifyArtifact(ctx, lying{st, desc.Digest}, desc, name, "", VerifyOptions{Trust: f.trust})
	if !errors.Is(err, integrity.ErrDigestMismatch) || !errors.As(err, &pe) || pe.Part != PartManifest {
		t.Fatalf("altered manifest served: %v", err)
	}
}

// TestVerifyArtifactTampered: every tamper case that is not the bundle
// file's own is refused through VerifyArtifact with the same error and
// part as through Verify: one verifier.
func TestVerifyArtifactTampered(t *testing.T) {
	n := 0
	for _, tc := range tamperCases {
		if tc.part == PartBundle {
			continue
		}
		n++
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b, f := tampered(t, tc)
			path := filepath.Join(t.TempDir(), "evidence.stella.tar")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := bundle.Open(ctx, path, bundle.OpenOptions{})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer r.Close()
			rep, err := VerifyArtifact(ctx, r, r.Entries()[0].Descriptor, path, "", VerifyOptions{Trust: f.trust})
			var pe *PartError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Part != tc.part || rep.Verified {
				t.Fatalf("got %v (part %+v), want %v naming %s", err, pe, tc.want, tc.part)
			}
		})
	}
	if n < 5 {
		t.Fatalf("only %d tamper cases ran", n)
	}
}

// TestInspect: what evidence claims, read without a trust store.
func TestInspect(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	desc, st, err := build(t, f.in).Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Inspect(ctx, st, desc)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Evidence != desc.Digest || sum.Pack != f.in.Pack.Digest || sum.Claimed.RunID != f.in.Record.ID ||
		sum.Claimed.Tenant != tenant || sum.Claimed.State != "succeeded" || len(sum.KeyIDs) != 1 || sum.KeyIDs[0] != f.runner.ID() {
		t.Fatalf("summary %+v", sum)
	}
	_, err = Inspect(ctx, lying{st, desc.Digest}, desc)
	if !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("altered manifest: %v", err)
	}
}
