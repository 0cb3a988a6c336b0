package approve

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/plan"
)

// seedRequest is a valid request JSON.
func seedRequest(t testing.TB) []byte {
	d := RequestDoc{
		APIVersion: RequestAPIVersion, Tenant: "acme",
		Pack:     plan.PackRef{Name: "demo", Version: "1.0.0", Digest: digest.FromString("pack")},
		PlanHash: digest.FromString("plan"), Gate: "approve",
		Approval:  ApprovalInfo{ID: "board", Role: "Packs.Approve", MinApprovers: 2, ExpiresAfter: "48h0m0s", Reason: "two of the board"},
		Requester: "ops@host", RequestedAt: t0, ExpiresAt: t0.Add(48 * time.Hour),
		Nonce: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	}
	b, err := canonical.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRequest(b); err != nil {
		t.Fatalf("seed request does not parse: %v", err)
	}
	return b
}

func FuzzParseRequest(f *testing.F) {
	valid := seedRequest(f)
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add(bytes.Replace(valid, []byte(`"tenant"`), []byte(`"Tenant"`), 1))
	f.Add(bytes.Replace(valid, []byte(`2026-03-03T09:00:00Z`), []byte(`2026-03-03T10:00:00+01:00`), 1))
	f.Add(append([]byte(" "), valid...))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParseRequest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error does not wrap ErrInvalidRequest: %v", err)
			}
			return
		}
		// Whatever parses is exactly the canonical form of what it holds.
		again, err := canonical.Marshal(doc)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted bytes differ from their canonical form")
		}
		if !doc.ExpiresAt.Equal(doc.RequestedAt.Add(mustLife(t, doc.Approval.ExpiresAfter))) {
			t.Fatal("accepted inconsistent expiry")
		}
	})
}

func mustLife(t *testing.T, s string) time.Duration {
	d, err := parseLife(s)
	if err != nil {
		t.Fatalf("accepted expiresAfter %q", s)
	}
	return d
}

// seedEnvelope is a valid decision envelope signed with a fresh key.
func seedEnvelope(t testing.TB) []byte {
	k, err := keys.Generate(keys.AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	p := Predicate{RequestDigest: digest.FromString("request"), PlanHash: digest.FromString("plan"), Gate: "approve",
		Tenant: "acme", Decision: Approve, Comment: "ok", ApproverKeyID: k.ID(), SignedAt: t0, ExpiresAt: t0.Add(time.Hour),
		Nonce: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: p.RequestDigest, Size: 100}
	resp, err := signPredicate(context.Background(), k, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Envelope
}

func FuzzParseResponse(f *testing.F) {
	valid := seedEnvelope(f)
	f.Add(valid)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`))
	f.Add([]byte(`{}`))
	f.Add(valid[:len(valid)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		p, st, _, err := ParseResponse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error does not wrap ErrInvalidResponse: %v", err)
			}
			return
		}
		if err := p.validate(); err != nil {
			t.Fatalf("accepted an invalid predicate: %v", err)
		}
		if !st.HasSubject(p.RequestDigest) || st.PredicateType != PredicateApprovalDecision {
			t.Fatal("accepted a statement about something else")
		}
	})
}

func TestParseResponseSeed(t *testing.T) {
	p, _, ids, err := ParseResponse(seedEnvelope(t))
	if err != nil || p.Decision != Approve || len(ids) != 1 || ids[0] != p.ApproverKeyID {
		t.Fatalf("seed envelope: %+v %v %v", p, ids, err)
	}
}
