package approve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
)

// PredicateApprovalDecision is the in-toto predicate type of a decision.
const PredicateApprovalDecision = "https://stellaops.io/attestations/approval-decision/v1"

// statementSubjectName names the request in a decision statement's subject.
const statementSubjectName = "approval-request"

// Verdict is an approver's answer.
type Verdict string

// Verdicts.
const (
	Approve Verdict = "approve"
	Reject  Verdict = "reject"
)

// Decision is what an approver decides on a request.
type Decision struct {
	Verdict Verdict
	Comment string // at most MaxCommentSize bytes of printable UTF-8 (newlines and tabs allowed)
}

// Predicate is the signed decision (the statement's predicate). Every field
// is always present in its canonical JSON.
type Predicate struct {
	RequestDigest digest.Digest `json:"requestDigest"` // the request manifest
	PlanHash      digest.Digest `json:"planHash"`
	Gate          string        `json:"gate"`
	Tenant        string        `json:"tenant"`
	Decision      Verdict       `json:"decision"`
	Comment       string        `json:"comment"`
	ApproverKeyID string        `json:"approverKeyId"`
	SignedAt      time.Time     `json:"signedAt"`  // UTC, whole seconds
	ExpiresAt     time.Time     `json:"expiresAt"` // never after the request's
	Nonce         string        `json:"nonce"`     // the request's
}

func (p *Predicate) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("decision: %w: %s", ErrInvalidResponse, fmt.Sprintf(format, args...))
	}
	if err := integrity.CheckSHA256(p.RequestDigest); err != nil {
		return bad("requestDigest: %v", err)
	}
	if err := integrity.CheckSHA256(p.PlanHash); err != nil {
		return bad("planHash: %v", err)
	}
	if p.Gate == "" || len(p.Gate) > maxGateID {
		return bad("gate: empty or longer than %d bytes", maxGateID)
	}
	if err := checkTenant(p.Tenant); err != nil {
		return bad("%v", err)
	}
	if p.Decision != Approve && p.Decision != Reject {
		return bad("decision %q: want approve or reject", p.Decision)
	}
	if err := checkText("comment", p.Comment, MaxCommentSize, true); err != nil {
		return bad("%v", err)
	}
	if p.ApproverKeyID == "" {
		return bad("approverKeyId is required")
	}
	if !wholeUTC(p.SignedAt) || !wholeUTC(p.ExpiresAt) {
		return bad("times must be UTC whole seconds")
	}
	if len(p.Nonce) != 64 || !integrity.IsLowerHex(p.Nonce) {
		return bad("nonce: want 64 lowercase hex digits")
	}
	return nil
}

// decodePredicate decodes and checks the predicate of a decision statement.
// The predicate must be canonical JSON with exactly the fields of Predicate.
func decodePredicate(st *keys.Statement) (*Predicate, error) {
	if st.PredicateType != PredicateApprovalDecision {
		return nil, fmt.Errorf("predicate type %q: %w", st.PredicateType, ErrInvalidResponse)
	}
	var p Predicate
	if err := decodeCanonical(st.Predicate, &p); err != nil {
		return nil, fmt.Errorf("decision: %w: %v", ErrInvalidResponse, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if !st.HasSubject(p.RequestDigest) {
		return nil, fmt.Errorf("decision: %w: statement subject is not requestDigest %s", ErrInvalidResponse, p.RequestDigest)
	}
	return &p, nil
}

// ParseResponse parses a decision envelope from an untrusted source WITHOUT
// verifying its signature (that is Accept's job, against the trust store):
// a strict DSSE envelope (keys.OpenEnvelope) over an in-toto statement of
// PredicateApprovalDecision whose predicate is a well-formed Predicate
// about the statement's subject. It returns the predicate, the statement
// and the key ids the signatures claim. Errors wrap ErrInvalidResponse.
func ParseResponse(envelope []byte) (*Predicate, *keys.Statement, []string, error) {
	st, ids, err := keys.OpenEnvelope(envelope)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrInvalidResponse, err)
	}
	p, err := decodePredicate(st)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, st, ids, nil
}

// Response is a signed approval-response artifact, held in memory until it
// is written to a bundle (WriteResponseBundle) or accepted (Decide).
type Response struct {
	Descriptor ocispec.Descriptor // the response manifest
	Predicate  Predicate
	Envelope   []byte // the DSSE envelope (canonical JSON)
	blobs      artifact.Blobs
}

// Fetch and Exists make a Response a content.ReadOnlyStorage of its blobs.
func (r *Response) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return r.blobs.Fetch(ctx, d)
}

// Exists reports whether d is one of the response's blobs.
func (r *Response) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	return r.blobs.Exists(ctx, d)
}

var _ content.ReadOnlyStorage = (*Response)(nil)

// Sign signs decision on the reviewed request with signer, at time now
// (zero means now): a DSSE envelope over an in-toto statement whose subject
// is the request manifest and whose predicate binds the request digest,
// plan hash, gate, tenant, nonce, the decision and comment, the signer's
// key id, the signing time and the request's expiry. It refuses an expired
// request (ErrExpired) and a malformed decision (ErrInvalidInput).
func Sign(ctx context.Context, s *Summary, signer *keys.Pair, decision Decision, now time.Time) (*Response, error) {
	if s == nil || signer == nil {
		return nil, fmt.Errorf("sign: %w: a reviewed request and a signer are required", ErrInvalidInput)
	}
	if decision.Verdict != Approve && decision.Verdict != Reject {
		return nil, fmt.Errorf("decision %q: %w: want approve or reject", decision.Verdict, ErrInvalidInput)
	}
	if err := checkText("comment", decision.Comment, MaxCommentSize, true); err != nil {
		return nil, err
	}
	now = nowOr(now)
	if now.After(s.ExpiresAt) {
		return nil, fmt.Errorf("request %s expired at %s: %w", s.Request.Digest, s.ExpiresAt.Format(time.RFC3339), ErrExpired)
	}
	p := Predicate{
		RequestDigest: s.Request.Digest,
		PlanHash:      s.PlanHash,
		Gate:          s.Gate,
		Tenant:        s.Tenant,
		Decision:      decision.Verdict,
		Comment:       decision.Comment,
		ApproverKeyID: signer.ID(),
		SignedAt:      now,
		ExpiresAt:     s.ExpiresAt,
		Nonce:         s.Doc.Nonce,
	}
	return signPredicate(ctx, signer, plainDesc(s.Request), p)
}

// signPredicate signs p about the request manifest subject and wraps the
// envelope in a response artifact.
func signPredicate(ctx context.Context, signer *keys.Pair, subject ocispec.Descriptor, p Predicate) (*Response, error) {
	sub, err := keys.NewSubject(statementSubjectName, subject.Digest)
	if err != nil {
		return nil, err
	}
	st, err := keys.NewStatement(PredicateApprovalDecision, p, sub)
	if err != nil {
		return nil, err
	}
	env, err := signer.SignStatement(ctx, st)
	if err != nil {
		return nil, err
	}
	return buildResponse(subject, p, env)
}

// buildResponse wraps an envelope in an approval-response artifact.
func buildResponse(subject ocispec.Descriptor, p Predicate, envelope []byte) (*Response, error) {
	src := artifact.Blobs{}
	cfg := emptyConfig()
	src[cfg.Digest] = []byte("{}")
	layer := src.Add(artifact.MediaTypeDSSE, envelope)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypeApprovalResponse,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subject,
		Annotations:  map[string]string{artifact.AnnotationCreated: p.SignedAt.UTC().Format(time.RFC3339)},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	desc := src.Add(ocispec.MediaTypeImageManifest, mb)
	desc.ArtifactType = artifact.ArtifactTypeApprovalResponse
	return &Response{Descriptor: desc, Predicate: p, Envelope: envelope, blobs: src}, nil
}

// WriteResponseBundle writes a bundle file at path holding only the
// response artifact: its subject, the request, is in the requesting cache.
func WriteResponseBundle(ctx context.Context, resp *Response, path string) (bundle.Summary, error) {
	return bundle.WriteFile(ctx, path, resp, []bundle.Entry{{Descriptor: plainDesc(resp.Descriptor), Kind: artifact.KindApprovalResponse}},
		bundle.WriteOptions{})
}

// responseArtifact is a response artifact whose shape was checked.
type responseArtifact struct {
	desc     ocispec.Descriptor
	subject  ocispec.Descriptor
	envelope []byte
}

// readResponseArtifact fetches a response artifact from src and checks its
// shape: an OCI image manifest of artifactType approval-response, the
// empty config, one DSSE layer of at most keys.MaxEnvelopeSize bytes, and a
// subject that is an OCI image manifest.
func readResponseArtifact(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*responseArtifact, error) {
	desc = plainDesc(desc)
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("response %s: %w: media type %q", desc.Digest, ErrInvalidResponse, desc.MediaType)
	}
	mb, err := fetchBlob(ctx, src, desc, integrity.MaxManifestSize, ErrInvalidResponse)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("response %s: %w: manifest: %v", desc.Digest, ErrInvalidResponse, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("response %s: %w: %s", desc.Digest, ErrInvalidResponse, fmt.Sprintf(format, args...))
	}
	switch {
	case m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest:
		return nil, bad("not an OCI image manifest")
	case m.ArtifactType != artifact.ArtifactTypeApprovalResponse:
		return nil, bad("artifactType %q", m.ArtifactType)
	case !isEmptyConfig(m.Config):
		return nil, bad("config is not the OCI empty JSON")
	case len(m.Layers) != 1 || m.Layers[0].MediaType != artifact.MediaTypeDSSE:
		return nil, bad("want one %s layer", artifact.MediaTypeDSSE)
	case m.Subject == nil || m.Subject.MediaType != ocispec.MediaTypeImageManifest || integrity.CheckSHA256(m.Subject.Digest) != nil:
		return nil, bad("subject must be the request's OCI image manifest")
	}
	env, err := fetchBlob(ctx, src, m.Layers[0], keys.MaxEnvelopeSize, ErrInvalidResponse)
	if err != nil {
		return nil, err
	}
	return &responseArtifact{desc: desc, subject: plainDesc(*m.Subject), envelope: env}, nil
}
