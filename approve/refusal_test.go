package approve

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"oras.land/oras-go/v2/content"
	"path/filepath"
	"testing"
	"testing/iotest"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/trust"
)

// craft signs a hand-made predicate about subject with key and writes the
// response bundle to the media.
func (o *operator) craft(key *keys.Pair, subject ocispec.Descriptor, p Predicate) string {
	o.t.Helper()
	resp, err := signPredicate(o.ctx, key, plainDesc(subject), p)
	if err != nil {
		o.t.Fatal(err)
	}
	return o.writeResponse(resp)
}

// predicateFor is what an honest approver with key signs on req at signedAt.
func predicateFor(req *Request, key *keys.Pair, v Verdict, signedAt time.Time) Predicate {
	return Predicate{RequestDigest: req.Descriptor.Digest, PlanHash: req.Doc.PlanHash, Gate: req.Doc.Gate,
		Tenant: req.Doc.Tenant, Decision: v, Comment: "", ApproverKeyID: key.ID(), SignedAt: signedAt,
		ExpiresAt: req.Doc.ExpiresAt, Nonce: req.Doc.Nonce}
}

// rewrap puts a modified envelope into a response artifact about subject.
func (o *operator) rewrap(subject ocispec.Descriptor, p Predicate, envelope []byte) string {
	o.t.Helper()
	resp, err := buildResponse(plainDesc(subject), p, envelope)
	if err != nil {
		o.t.Fatal(err)
	}
	return o.writeResponse(resp)
}

// TestRefusals imports one bad response per case; each must be refused
// with its own error, leave the gate as it was and append one refusal
// entry with its reason.
func TestRefusals(t *testing.T) {
	at := t0.Add(time.Hour)
	cases := []struct {
		name   string
		make   func(o *operator, req *Request, reqPath string) string
		want   error
		reason string
		now    time.Time // import time; zero means at
	}{
		{"forged signature", func(o *operator, req *Request, reqPath string) string {
			resp, _ := approverSign(o.t, reqPath, o.alice, Approve, at)
			var env keys.Envelope
			if err := json.Unmarshal(resp.Envelope, &env); err != nil {
				o.t.Fatal(err)
			}
			sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
			sig[len(sig)/2] ^= 0x01
			env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			b, err := canonical.Marshal(env)
			if err != nil {
				o.t.Fatal(err)
			}
			return o.rewrap(req.Descriptor, resp.Predicate, b)
		}, trust.ErrSignatureInvalid, "signature-invalid", time.Time{}},
		{"corrupted envelope", func(o *operator, req *Request, reqPath string) string {
			resp, _ := approverSign(o.t, reqPath, o.alice, Approve, at)
			return o.rewrap(req.Descriptor, resp.Predicate, resp.Envelope[:len(resp.Envelope)/2])
		}, trust.ErrSignatureInvalid, "signature-invalid", time.Time{}},
		{"payload altered after signing", func(o *operator, req *Request, reqPath string) string {
			resp, _ := approverSign(o.t, reqPath, o.alice, Reject, at)
			var env keys.Envelope
			if err := json.Unmarshal(resp.Envelope, &env); err != nil {
				o.t.Fatal(err)
			}
			payload, _ := base64.StdEncoding.DecodeString(env.Payload)
			var st map[string]any
			if err := json.Unmarshal(payload, &st); err != nil {
				o.t.Fatal(err)
			}
			st["predicate"].(map[string]any)["decision"] = "approve"
			payload, _ = canonical.Marshal(st)
			env.Payload = base64.StdEncoding.EncodeToString(payload)
			b, _ := canonical.Marshal(env)
			return o.rewrap(req.Descriptor, resp.Predicate, b)
		}, trust.ErrSignatureInvalid, "signature-invalid", time.Time{}},
		{"unknown key", func(o *operator, req *Request, reqPath string) string {
			_, p := approverSign(o.t, reqPath, o.mallory, Approve, at)
			return p
		}, trust.ErrUnknownKey, "unknown-key", time.Time{}},
		{"revoked key", func(o *operator, req *Request, reqPath string) string {
			_, p := approverSign(o.t, reqPath, o.revoked, Approve, at)
			return p
		}, trust.ErrKeyRevoked, "key-revoked", time.Time{}},
		{"key without Packs.Approve", func(o *operator, req *Request, reqPath string) string {
			_, p := approverSign(o.t, reqPath, o.publisher, Approve, at)
			return p
		}, trust.ErrRoleMissing, "role-missing", time.Time{}},
		{"key for another tenant", func(o *operator, req *Request, reqPath string) string {
			_, p := approverSign(o.t, reqPath, o.other, Approve, at)
			return p
		}, trust.ErrTenantNotAllowed, "tenant-not-allowed", time.Time{}},
		{"request this cache never issued", func(o *operator, req *Request, reqPath string) string {
			elsewhere := newOperator(o.t)
			elsewhere.rnd = rand.NewChaCha8([32]byte{2}) // else it issues the very same request
			_, foreignPath := elsewhere.request(t0)
			_, p := approverSign(o.t, foreignPath, o.alice, Approve, at)
			return p
		}, ErrUnknownRequest, "unknown-request", time.Time{}},
		{"response for another gate", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.alice, Approve, at)
			p.Gate = "patch"
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrMismatch, "mismatch:gate", time.Time{}},
		{"response for another plan", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.alice, Approve, at)
			p.PlanHash = digest.FromString("another plan")
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrMismatch, "mismatch:planHash", time.Time{}},
		{"response for another tenant", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.carol, Approve, at) // carol may act for any tenant
			p.Tenant = "globex"
			return o.craft(o.carol, req.Descriptor, p)
		}, ErrMismatch, "mismatch:tenant", time.Time{}},
		{"approver key id not the signer's", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.bob, Approve, at)
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrMismatch, "mismatch:approverKeyId", time.Time{}},
		{"expired response", func(o *operator, req *Request, reqPath string) string {
			_, p := approverSign(o.t, reqPath, o.alice, Approve, t0.Add(47*time.Hour))
			return p
		}, ErrExpired, "expired", t0.Add(48*time.Hour + 6*time.Minute)},
		{"longer life than its request", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.alice, Approve, at)
			p.ExpiresAt = p.ExpiresAt.Add(time.Hour)
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrLifetimeTooLong, "lifetime-too-long", time.Time{}},
		{"signed in the future", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.alice, Approve, at.Add(time.Hour))
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrSigningTime, "signing-time", time.Time{}},
		{"signed before the request", func(o *operator, req *Request, reqPath string) string {
			p := predicateFor(req, o.alice, Approve, t0.Add(-time.Hour))
			return o.craft(o.alice, req.Descriptor, p)
		}, ErrSigningTime, "signing-time", time.Time{}},
		{"another predicate type", func(o *operator, req *Request, reqPath string) string {
			sub, _ := keys.NewSubject("approval-request", req.Descriptor.Digest)
			st, _ := keys.NewStatement(keys.PredicatePackSignature, keys.PackSignature{Ref: "x:1", ArtifactType: "y"}, sub)
			env, err := o.alice.SignStatement(o.ctx, st)
			if err != nil {
				o.t.Fatal(err)
			}
			return o.rewrap(req.Descriptor, predicateFor(req, o.alice, Approve, at), env)
		}, trust.ErrPredicateType, "predicate-type", time.Time{}},
		{"tampered bundle", func(o *operator, req *Request, reqPath string) string {
			resp, p := approverSign(o.t, reqPath, o.alice, Approve, at)
			flipByteOf(o.t, p, resp.Envelope)
			return p
		}, integrity.ErrDigestMismatch, "bundle-invalid", time.Time{}},
		{"request bundle instead of a response", func(o *operator, req *Request, reqPath string) string {
			return reqPath
		}, ErrInvalidResponse, "invalid-response", time.Time{}},
		// The count of entries is checked before any blob is hashed: a
		// damaged bundle of the wrong kind is refused as the wrong kind.
		{"tampered request bundle instead of a response", func(o *operator, req *Request, reqPath string) string {
			tampered := filepath.Join(o.t.TempDir(), "tampered.stella.tar")
			copyFile(o.t, reqPath, tampered)
			flipByteOf(o.t, tampered, []byte(`"requester":"ops@sealed-1"`))
			return tampered
		}, ErrInvalidResponse, "invalid-response", time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := newOperator(t)
			req, reqPath := o.request(t0)
			path := c.make(o, req, reqPath)
			now := c.now
			if now.IsZero() {
				now = at
			}
			o.expectRefused(path, now, c.want, c.reason)
		})
	}
}

// TestRefusalAfterFirstApproval checks refusals that need a decision
// already recorded: the same key changing its mind, and replays against a
// new request for the same plan.
func TestRefusalAfterFirstApproval(t *testing.T) {
	o := newOperator(t)
	parent := t
	req1, reqPath1 := o.request(t0)
	respA, pathA := approverSign(t, reqPath1, o.alice, Approve, t0.Add(time.Minute))
	if _, err := o.accept(pathA, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	t.Run("change of mind", func(t *testing.T) {
		o.t = t
		defer func() { o.t = parent }()
		_, p := approverSign(t, reqPath1, o.alice, Reject, t0.Add(90*time.Minute))
		o.expectRefused(p, t0.Add(2*time.Hour), ErrAlreadyDecided, "already-decided")
	})

	req2, _ := o.request(t0.Add(3 * time.Hour))
	t.Run("replayed envelope under a new request", func(t *testing.T) {
		o.t = t
		defer func() { o.t = parent }()
		p := o.rewrap(req2.Descriptor, respA.Predicate, respA.Envelope)
		o.expectRefused(p, t0.Add(4*time.Hour), trust.ErrSubjectMismatch, "subject-mismatch")
	})
	t.Run("old nonce signed for a new request", func(t *testing.T) {
		o.t = t
		defer func() { o.t = parent }()
		pr := predicateFor(req2, o.bob, Approve, t0.Add(4*time.Hour))
		pr.Nonce = req1.Doc.Nonce
		p := o.craft(o.bob, req2.Descriptor, pr)
		err := o.expectRefused(p, t0.Add(4*time.Hour), ErrMismatch, "mismatch:nonce")
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != "nonce" || me.Want != req2.Doc.Nonce || me.Got != req1.Doc.Nonce {
			t.Fatalf("mismatch error: %#v", err)
		}
	})
	t.Run("old request digest signed for a new request", func(t *testing.T) {
		o.t = t
		defer func() { o.t = parent }()
		pr := predicateFor(req2, o.bob, Approve, t0.Add(4*time.Hour))
		pr.RequestDigest = req1.Descriptor.Digest
		// The statement is about req1, the artifact claims req2.
		resp, err := signPredicate(o.ctx, o.bob, plainDesc(req1.Descriptor), pr)
		if err != nil {
			t.Fatal(err)
		}
		p := o.rewrap(req2.Descriptor, pr, resp.Envelope)
		o.expectRefused(p, t0.Add(4*time.Hour), trust.ErrSubjectMismatch, "subject-mismatch")
	})
}

// TestPlanAlteredAfterHashing: a request bundle rewritten with another plan
// layer (and a manifest that matches it) fails review; one whose request
// JSON was rewritten to the new hash reviews, but its response is refused
// by the cache that never issued that request.
func TestPlanAlteredAfterHashing(t *testing.T) {
	o := newOperator(t)
	req, _ := o.request(t0)
	ra, err := readRequestArtifact(o.ctx, o.st, req.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	altered := planBytes(t, o.ctx, ra)
	i := indexOf(altered, "CVE-2026-12345")
	if i < 0 {
		t.Fatal("fixture plan lacks the CVE input")
	}
	copy(altered[i:], "CVE-2026-99999")

	write := func(doc *RequestDoc, plan []byte) string {
		src, desc, err := buildRequestArtifact(doc, plan, ra.subject)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "forged.stella.tar")
		if _, err := bundle.WriteFile(o.ctx, path, src, []bundle.Entry{{Descriptor: desc, Kind: artifact.KindApprovalRequest, Ref: "forged:1"}},
			bundle.WriteOptions{AllowAnyMediaType: true}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if _, err := Review(o.ctx, write(&req.Doc, altered)); !errors.Is(err, ErrPlanAltered) {
		t.Fatalf("review of an altered plan: %v", err)
	}

	doc := req.Doc
	doc.PlanHash = digest.FromBytes(altered)
	forged := write(&doc, altered)
	if _, err := Review(o.ctx, forged); err != nil {
		t.Fatalf("review of a consistent forged request: %v", err)
	}
	_, p := approverSign(t, forged, o.alice, Approve, t0.Add(time.Minute))
	o.expectRefused(p, t0.Add(time.Hour), ErrUnknownRequest, "unknown-request")
}

// TestReviewRefusesDamage: the approver's side refuses a tampered request
// bundle and a request whose JSON disagrees with its plan.
func TestReviewRefusesDamage(t *testing.T) {
	o := newOperator(t)
	req, reqPath := o.request(t0)
	tampered := filepath.Join(t.TempDir(), "tampered.stella.tar")
	copyFile(t, reqPath, tampered)
	flipByteOf(t, tampered, []byte(`"requester":"ops@sealed-1"`))
	if _, err := Review(o.ctx, tampered); !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("review of a tampered bundle: %v", err)
	}
	// A byte of the plan layer as review reads it, as a stream, from a
	// source that does not check it first: the bytes that differ from
	// their digest are named as such, whatever a parse made of them
	// (a plan still valid, or no plan).
	for _, part := range []string{`CVE-2026-12345`, `"apiVersion":"stellaops.io/plan.v1"`} {
		src := flippedFetcher{Fetcher: o.st, part: []byte(part)}
		if _, err := reviewArtifact(o.ctx, src, req.Descriptor); !errors.Is(err, integrity.ErrDigestMismatch) || !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("review of a request whose plan has %s tampered: %v, want a digest mismatch of an invalid request", part, err)
		}
	}

	// A read of the plan layer that fails half way is reported as that
	// failure, not as an invalid request (which asks for a new bundle).
	errIO := errors.New("input/output error on the test's medium")
	if _, err := reviewArtifact(o.ctx, failingFetcher{Fetcher: o.st, layer: req.Doc.PlanHash, err: errIO}, req.Descriptor); !errors.Is(err, errIO) || errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("review whose plan layer fails to read: %v, want the read's error, not an invalid request", err)
	}

	ra, err := readRequestArtifact(o.ctx, o.st, req.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	doc := req.Doc
	doc.Approval.MinApprovers = 1
	src, desc, err := buildRequestArtifact(&doc, planBytes(t, o.ctx, ra), ra.subject)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fewer.stella.tar")
	if _, err := bundle.WriteFile(o.ctx, path, src, []bundle.Entry{{Descriptor: desc, Kind: artifact.KindApprovalRequest, Ref: "fewer:1"}},
		bundle.WriteOptions{AllowAnyMediaType: true}); err != nil {
		t.Fatal(err)
	}
	var me *MismatchError
	if _, err := Review(o.ctx, path); !errors.As(err, &me) || me.Field != "approval.minApprovers" {
		t.Fatalf("review of a request that lowers minApprovers: %v", err)
	}
}

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// flippedFetcher serves what Fetcher does with one bit of part flipped in
// the blob that holds it, unchecked.
type flippedFetcher struct {
	content.Fetcher
	part []byte
}

func (f flippedFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.Fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(b, f.part); i >= 0 {
		b[i+len(f.part)/2] ^= 0x01
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// failingFetcher serves what Fetcher does, but the blob layer fails with
// err half way.
type failingFetcher struct {
	content.Fetcher
	layer digest.Digest
	err   error
}

func (f failingFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.Fetcher.Fetch(ctx, desc)
	if err != nil || desc.Digest != f.layer {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, desc.Size/2), iotest.ErrReader(f.err)), rc}, nil
}
