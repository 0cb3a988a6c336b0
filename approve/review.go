package approve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
)

// Summary is what an approver is asked to decide, read from a request
// bundle by Review and checked: the plan inside hashes to the plan hash the
// request names, and agrees with the request on pack and gate.
type Summary struct {
	Request ocispec.Descriptor // the request manifest; a decision's subject
	Doc     RequestDoc         // the request JSON

	Pack         plan.PackRef
	Tenant       string
	PlanHash     digest.Digest
	Gate         string
	Approval     string // the approval rule's id
	Role         string
	MinApprovers int
	Reason       string
	Requester    string
	RequestedAt  time.Time
	ExpiresAt    time.Time

	Steps   Steps        // what the reviewer sees of each step, packed
	Network pack.Network // the plan's sandbox network: mode and allowlist
	Inputs  map[string]any
	Secrets []plan.Secret // references only: name, source, scope, steps
}

// StepSummary is one step of the plan as a reviewer sees it.
type StepSummary struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Name    string   `json:"name,omitempty"`
	Status  string   `json:"status"` // pending, skipped, requires-approval, requires-policy
	Depth   int      `json:"depth"`  // nesting under map, loop and conditional steps
	Command []string `json:"command,omitempty"`
	Secrets []string `json:"secrets,omitempty"`
	// Policy is a policy gate's expression; Decided, when set, is its
	// outcome, decided from the inputs when the plan was made (the gate
	// then passes or fails whatever anyone signs).
	Policy  string `json:"policy,omitempty"`
	Decided *bool  `json:"decided,omitempty"`
}

// Review opens a request bundle and checks it for an approver, who needs
// no cache: the bundle's structure (bundle.Open); exactly one
// approval-request entry, before any blob is hashed; every blob (Verify);
// the artifact's expected shape; the request
// JSON (ParseRequest); the plan layer, whose sha256 must equal the
// request's planHash (else ErrPlanAltered) and which must be canonical;
// the plan's pack equals the request's pack and the request's subject; the
// gate is one of the plan's approvals with the same rule (else
// ErrGateNotFound, *MismatchError).
func Review(ctx context.Context, path string) (*Summary, error) {
	r, err := bundle.Open(ctx, path, bundle.OpenOptions{AllowAnyMediaType: bundleAllowAny})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The cheap structural check before the blobs are hashed.
	entries := r.Entries()
	if len(entries) != 1 || entries[0].Kind != artifact.KindApprovalRequest {
		return nil, fmt.Errorf("request bundle %s: %w: want exactly one approval request, the bundle holds %s", path, ErrInvalidRequest, bundle.Holds(entries))
	}
	if _, err := r.Verify(ctx, bundle.VerifyOptions{}); err != nil {
		return nil, fmt.Errorf("request bundle %s: %w", path, err)
	}
	rv, err := reviewArtifact(ctx, r, entries[0].Descriptor)
	if err != nil {
		return nil, fmt.Errorf("request bundle %s: %w", path, err)
	}
	return rv, nil
}

// requestArtifact is a parsed request artifact.
type requestArtifact struct {
	desc    ocispec.Descriptor
	subject ocispec.Descriptor
	doc     *RequestDoc
	src     content.Fetcher
	plan    ocispec.Descriptor // the plan layer, read by openPlan
}

// openPlan opens the plan layer, checked against its descriptor as it is
// read (the last read fails when the bytes differ: ErrInvalidRequest).
// The plan is read as a stream: a plan of 100,000 steps is 26 MiB, and
// ten times that parsed.
func (ra *requestArtifact) openPlan(ctx context.Context) (io.ReadCloser, error) {
	rc, err := ra.src.Fetch(ctx, ra.plan)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", ra.plan.Digest, err)
	}
	v := integrity.NewReader(rc, ra.plan)
	v.Wrap = func(err error) error {
		if errors.Is(err, integrity.ErrDigestMismatch) || errors.Is(err, integrity.ErrSizeMismatch) {
			return fmt.Errorf("request %s: plan layer %s: %w: %w", ra.desc.Digest, ra.plan.Digest, ErrInvalidRequest, err)
		}
		return fmt.Errorf("fetch %s: %w", ra.plan.Digest, err) // a read that failed: not the request's fault
	}
	return v, nil
}

// readRequestArtifact fetches and checks the shape of a request artifact
// and parses its request JSON; the plan layer's descriptor is checked,
// its bytes are read by openPlan.
func readRequestArtifact(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*requestArtifact, error) {
	desc = plainDesc(desc)
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("request %s: %w: media type %q", desc.Digest, ErrInvalidRequest, desc.MediaType)
	}
	mb, err := fetchBlob(ctx, src, desc, integrity.MaxManifestSize, ErrInvalidRequest)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("request %s: %w: manifest: %v", desc.Digest, ErrInvalidRequest, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("request %s: %w: %s", desc.Digest, ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	switch {
	case m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest:
		return nil, bad("not an OCI image manifest")
	case m.ArtifactType != artifact.ArtifactTypeApprovalRequest:
		return nil, bad("artifactType %q", m.ArtifactType)
	case !isEmptyConfig(m.Config):
		return nil, bad("config is not the OCI empty JSON")
	case len(m.Layers) != 2 || m.Layers[0].MediaType != artifact.MediaTypeApprovalRequest || m.Layers[1].MediaType != MediaTypePlan:
		return nil, bad("want two layers, %s then %s", artifact.MediaTypeApprovalRequest, MediaTypePlan)
	case m.Subject == nil || m.Subject.MediaType != ocispec.MediaTypeImageManifest || integrity.CheckSHA256(m.Subject.Digest) != nil || m.Subject.Size <= 0:
		return nil, bad("subject must be the pack's OCI image manifest")
	}
	rb, err := fetchBlob(ctx, src, m.Layers[0], MaxRequestSize, ErrInvalidRequest)
	if err != nil {
		return nil, err
	}
	doc, err := ParseRequest(rb)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", desc.Digest, err)
	}
	if m.Subject.Digest != doc.Pack.Digest {
		return nil, fmt.Errorf("request %s: %w", desc.Digest, mismatch("subject", string(doc.Pack.Digest), string(m.Subject.Digest)))
	}
	pd := plainDesc(m.Layers[1])
	if pd.Size < 0 || pd.Size > MaxPlanSize {
		return nil, fmt.Errorf("blob %s: %w: %d bytes, limit %d", pd.Digest, ErrInvalidRequest, pd.Size, MaxPlanSize)
	}
	if err := integrity.CheckSHA256(pd.Digest); err != nil {
		return nil, fmt.Errorf("blob %q: %w: %v", pd.Digest, ErrInvalidRequest, err)
	}
	return &requestArtifact{desc: desc, subject: plainDesc(*m.Subject), doc: doc, src: src, plan: pd}, nil
}

// reviewArtifact checks a request artifact read from src (a bundle, or the
// cache for a local decision) and summarizes it.
func reviewArtifact(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*Summary, error) {
	ra, err := readRequestArtifact(ctx, src, desc)
	if err != nil {
		return nil, err
	}
	doc := ra.doc
	// The plan layer is the plan's canonical bytes: its digest is the
	// plan hash, and its bytes are checked against it as they are read.
	if got := ra.plan.Digest; got != doc.PlanHash {
		return nil, fmt.Errorf("request %s: plan layer hashes to %s, request says %s: %w", ra.desc.Digest, got, doc.PlanHash, ErrPlanAltered)
	}
	rc, err := ra.openPlan(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// What a reviewer sees of each step.
	var steps Steps
	pl, err := plans.Scan(rc, doc.PlanHash, func(s *plan.Step, depth int) stepAt {
		ss := StepSummary{ID: s.ID, Kind: s.Kind, Name: s.Name, Status: s.Status, Depth: depth}
		if s.Run != nil {
			ss.Command, ss.Secrets = s.Run.Command, s.Run.Secrets
		}
		if s.Gate != nil && s.Gate.Policy != "" {
			ss.Policy, ss.Decided = s.Gate.Policy, s.Gate.PolicyResult
		}
		return steps.add(ss)
	}, steps.list)
	// To its end, where its digest is checked: bytes that differ from
	// their descriptor are reported as such, whatever Scan made of them.
	if _, cerr := io.Copy(io.Discard, rc); cerr != nil {
		err = cerr
	}
	if errors.Is(err, ErrInvalidRequest) || err != nil && !errors.Is(err, plan.ErrInvalid) {
		return nil, err // the layer's bytes are not its digest's, or could not be read
	}
	if err != nil {
		return nil, fmt.Errorf("request %s: %w: plan layer: %w", ra.desc.Digest, ErrInvalidRequest, err)
	}
	for _, c := range []struct{ field, want, got string }{
		{"pack.name", doc.Pack.Name, pl.Pack.Name},
		{"pack.version", doc.Pack.Version, pl.Pack.Version},
		{"pack.digest", string(doc.Pack.Digest), string(pl.Pack.Digest)},
	} {
		if c.want != c.got {
			return nil, fmt.Errorf("request %s: plan: %w", ra.desc.Digest, mismatch(c.field, c.want, c.got))
		}
	}
	var gate *plan.Approval
	for i := range pl.Approvals {
		if pl.Approvals[i].Gate == doc.Gate {
			gate = &pl.Approvals[i]
		}
	}
	if gate == nil {
		return nil, fmt.Errorf("request %s: gate %q is not an approval gate of plan %s: %w", ra.desc.Digest, doc.Gate, doc.PlanHash, ErrGateNotFound)
	}
	for _, c := range []struct{ field, want, got string }{
		{"approval.id", gate.Approval, doc.Approval.ID},
		{"approval.role", gate.Role, doc.Approval.Role},
		{"approval.minApprovers", fmt.Sprint(gate.MinApprovers), fmt.Sprint(doc.Approval.MinApprovers)},
		{"approval.expiresAfter", gate.ExpiresAfter, doc.Approval.ExpiresAfter},
		{"approval.reason", gate.Reason, doc.Approval.Reason},
	} {
		if c.want != c.got {
			return nil, fmt.Errorf("request %s: against its plan: %w", ra.desc.Digest, mismatch(c.field, c.want, c.got))
		}
	}

	rv := &Summary{
		Request: ra.desc, Doc: *doc,
		Pack: doc.Pack, Tenant: doc.Tenant, PlanHash: doc.PlanHash, Gate: doc.Gate,
		Approval: doc.Approval.ID, Role: doc.Approval.Role, MinApprovers: doc.Approval.MinApprovers,
		Reason: doc.Approval.Reason, Requester: doc.Requester,
		RequestedAt: doc.RequestedAt, ExpiresAt: doc.ExpiresAt,
		Inputs: pl.Inputs, Secrets: pl.Secrets, Network: pl.Sandbox.Network, Steps: steps,
	}
	return rv, nil
}
