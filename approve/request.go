package approve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/trust"
)

// RequestAPIVersion identifies the request JSON format.
const RequestAPIVersion = "stellaops.io/approval-request.v1"

// MediaTypePlan is the media type of the canonical plan layer of a request.
const MediaTypePlan = artifact.MediaTypePlan

// Layer titles of a request artifact, so `oras pull` gives two files.
const (
	requestTitle = "approval-request.json"
	planTitle    = "plan.json"
)

// refPrefix names request artifacts in the cache: "approval-request:<the
// first 16 hex digits of the nonce>".
const refPrefix = "approval-request:"

// bundleAllowAny is what request bundles are written and opened with:
// strict, since the bundle format knows the plan layer's media type.
const bundleAllowAny = false

// RequestDoc is the request JSON: what the approver is asked, everything
// bound by the signature of a decision. Its bytes are RFC 8785 canonical.
type RequestDoc struct {
	APIVersion  string        `json:"apiVersion"`
	Tenant      string        `json:"tenant"` // "" for none
	Pack        plan.PackRef  `json:"pack"`
	PlanHash    digest.Digest `json:"planHash"`
	Gate        string        `json:"gate"` // the gate's step id in the plan
	Approval    ApprovalInfo  `json:"approval"`
	Requester   string        `json:"requester"`
	RequestedAt time.Time     `json:"requestedAt"` // UTC, whole seconds
	ExpiresAt   time.Time     `json:"expiresAt"`   // RequestedAt + Approval.ExpiresAfter
	Nonce       string        `json:"nonce"`       // 32 random bytes, lowercase hex
}

// ApprovalInfo is the gate's approval rule, as the plan states it.
type ApprovalInfo struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	MinApprovers int    `json:"minApprovers"`
	ExpiresAfter string `json:"expiresAfter"`
	Reason       string `json:"reason"`
}

// ParseRequest parses request JSON from an untrusted source strictly: at
// most MaxRequestSize bytes of RFC 8785 canonical JSON, no unknown or
// missing field, and every field well-formed (digests, UTC times,
// expiresAt = requestedAt + expiresAfter, a 64-hex nonce). Errors wrap
// ErrInvalidRequest.
func ParseRequest(data []byte) (*RequestDoc, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("request of %d bytes exceeds %d: %w", len(data), MaxRequestSize, ErrInvalidRequest)
	}
	var doc RequestDoc
	if err := decodeCanonical(data, &doc); err != nil {
		return nil, fmt.Errorf("request: %w: %v", ErrInvalidRequest, err)
	}
	if err := doc.validate(); err != nil {
		return nil, err
	}
	return &doc, nil
}

func (d *RequestDoc) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("request: %w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if d.APIVersion != RequestAPIVersion {
		return bad("apiVersion %q, want %q", d.APIVersion, RequestAPIVersion)
	}
	if err := checkTenant(d.Tenant); err != nil {
		return bad("%v", err)
	}
	if d.Pack.Name == "" || d.Pack.Version == "" {
		return bad("pack name and version are required")
	}
	if err := integrity.CheckSHA256(d.Pack.Digest); err != nil {
		return bad("pack digest: %v", err)
	}
	if err := integrity.CheckSHA256(d.PlanHash); err != nil {
		return bad("planHash: %v", err)
	}
	if d.Gate == "" || len(d.Gate) > maxGateID {
		return bad("gate %q: empty or longer than %d bytes", d.Gate, maxGateID)
	}
	if err := checkText("gate", d.Gate, maxGateID, false); err != nil {
		return bad("%v", err)
	}
	a := d.Approval
	if a.ID == "" || a.Role == "" {
		return bad("approval id and role are required")
	}
	if a.MinApprovers < 1 || a.MinApprovers > maxMinApprovers {
		return bad("minApprovers %d: want 1 to %d", a.MinApprovers, maxMinApprovers)
	}
	life, err := parseLife(a.ExpiresAfter)
	if err != nil {
		return bad("%v", err)
	}
	if d.Requester == "" {
		return bad("requester is required")
	}
	if err := checkText("requester", d.Requester, maxRequester, false); err != nil {
		return bad("%v", err)
	}
	if !wholeUTC(d.RequestedAt) || !wholeUTC(d.ExpiresAt) {
		return bad("times must be UTC whole seconds")
	}
	if !d.ExpiresAt.Equal(d.RequestedAt.Add(life)) {
		return bad("expiresAt %s is not requestedAt %s + %s", d.ExpiresAt.Format(time.RFC3339),
			d.RequestedAt.Format(time.RFC3339), a.ExpiresAfter)
	}
	if len(d.Nonce) != 64 || !integrity.IsLowerHex(d.Nonce) {
		return bad("nonce: want 64 lowercase hex digits")
	}
	return nil
}

// parseLife parses a gate's expiresAfter (a Go duration, as plans write it).
func parseLife(s string) (time.Duration, error) {
	life, err := time.ParseDuration(s)
	if err != nil || life <= 0 || life > maxExpiresAfter {
		return 0, fmt.Errorf("expiresAfter %q: want a positive duration of at most %s", s, maxExpiresAfter)
	}
	return life, nil
}

// Request is an approval request issued by this cache.
type Request struct {
	Descriptor ocispec.Descriptor // the request manifest (kind approval-request)
	Ref        string             // its ref in the cache
	Doc        RequestDoc
}

// RequestOptions are the inputs of NewRequest.
type RequestOptions struct {
	// PlanHash names a saved plan (a hash or a unique prefix; see Plan).
	PlanHash string
	// Gate is the gate's step id, one of the plan's approvals.
	Gate string
	// Tenant the approval is for; empty means the tenant the plan was saved
	// with (possibly none).
	Tenant string
	// Requester says who asks (e.g. user@host); required.
	Requester string
	// Now is the request time; zero means now.
	Now time.Time
	// Rand is the source of the nonce; nil means crypto/rand.
	Rand io.Reader
	// Trust is the current trust store; required. It says whether the
	// gate's role may approve at all here, and which recorded approvals
	// still count (a gate is open to a new request while they do not
	// satisfy it).
	Trust *trust.Store
}

// requestRecord is what this cache remembers of a request it issued: where
// the artifact is, and the request document as issued (its JSON fields
// inline) — nothing derived. Whether a decision closed it is derived from
// its gate's decisions (closedStates), whether its expiry was logged from
// the ledger (observeExpiry).
//
// Records written before the document was kept whole have the same fields
// without apiVersion, plus "closed" and "expiryLogged" flags; they read the
// same (the flags are ignored: what they said is derived again, and agrees
// for every record those versions wrote).
type requestRecord struct {
	Size int64  `json:"size"`
	Ref  string `json:"ref"`
	RequestDoc

	// closed is derived when read (loadRequests), never stored.
	closed State
}

// NewRequest issues an approval request for a gate of a saved plan: it
// builds the request artifact (request JSON and canonical plan, subject the
// pack manifest), stores it in the cache under ref
// "approval-request:<16 hex of the nonce>", records the request as pending
// and appends a request entry to the ledger.
//
// plans.ErrNotFound: the plan is not saved. ErrGateNotFound: the gate is not
// one of the plan's approval gates. ErrGateRejected: the gate was rejected.
// ErrNotPending: the gate is approved. ErrPackNotFound: the pack manifest's
// size is unknown (neither in the cache nor recorded with the plan).
// trust.ErrNotApproverRole: the gate's role cannot approve at this site, so
// no answer could ever count.
func NewRequest(ctx context.Context, st *cache.Store, opts RequestOptions) (*Request, error) {
	if opts.Trust == nil {
		return nil, fmt.Errorf("request: %w: a trust store is required", ErrInvalidInput)
	}
	if err := checkTenant(opts.Tenant); err != nil {
		return nil, err
	}
	if opts.Requester == "" {
		return nil, fmt.Errorf("requester: %w: required", ErrInvalidInput)
	}
	if err := checkText("requester", opts.Requester, maxRequester, false); err != nil {
		return nil, err
	}
	now := nowOr(opts.Now)
	sp, err := plans.FindCanonical(ctx, st, opts.PlanHash)
	if err != nil {
		return nil, err
	}
	var gate *plan.Approval
	for i := range sp.Approvals {
		if sp.Approvals[i].Gate == opts.Gate {
			gate = &sp.Approvals[i]
		}
	}
	if gate == nil {
		return nil, fmt.Errorf("gate %q of plan %s: %w: %s", opts.Gate, sp.Hash, ErrGateNotFound, gateAbsence(sp, opts.Gate))
	}
	life, err := parseLife(gate.ExpiresAfter)
	if err != nil {
		return nil, fmt.Errorf("gate %q of plan %s: %w: %v", opts.Gate, sp.Hash, plan.ErrInvalid, err)
	}
	if err := opts.Trust.CheckApproverRole(gate.Role); err != nil {
		return nil, fmt.Errorf("gate %q of plan %s (pack %s): %w", opts.Gate, sp.Hash, sp.PackRef, err)
	}
	tenant := opts.Tenant
	if tenant == "" {
		tenant = sp.Tenant
	}
	a, err := newApprovers(ctx, st, opts.Trust, sp.Pack.Digest)
	if err != nil {
		return nil, err
	}
	if err := view(ctx, st, func(tx cache.RecordTx) error {
		return checkGateOpen(tx, a, tenant, sp.Hash, opts.Gate, now)
	}); err != nil {
		return nil, err
	}
	subject, err := packDescriptor(ctx, st, sp)
	if err != nil {
		return nil, err
	}

	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("request nonce: %w", err)
	}
	doc := RequestDoc{
		APIVersion: RequestAPIVersion,
		Tenant:     tenant,
		Pack:       sp.Pack,
		PlanHash:   sp.Hash,
		Gate:       gate.Gate,
		Approval: ApprovalInfo{ID: gate.Approval, Role: gate.Role, MinApprovers: gate.MinApprovers,
			ExpiresAfter: gate.ExpiresAfter, Reason: gate.Reason},
		Requester:   opts.Requester,
		RequestedAt: now,
		ExpiresAt:   now.Add(life),
		Nonce:       hex.EncodeToString(nonce),
	}
	if err := doc.validate(); err != nil {
		return nil, err
	}
	src, desc, err := buildRequestArtifact(&doc, sp.Canonical, subject)
	if err != nil {
		return nil, err
	}
	ref := refPrefix + doc.Nonce[:16]
	if _, err := st.Import(ctx, src, []cache.Artifact{{Descriptor: desc, Kind: artifact.KindApprovalRequest, Ref: ref}},
		cache.ImportRecord{From: "approval request " + ref, Verified: []string{"built by this cache"}},
		cache.ImportOptions{}); err != nil {
		return nil, fmt.Errorf("store request %s: %w", ref, err)
	}
	rec := requestRecord{Size: desc.Size, Ref: ref, RequestDoc: doc}
	err = update(ctx, st, func(tx cache.RecordTx) error {
		if err := observe(tx, a, now); err != nil {
			return err
		}
		if err := checkGateOpen(tx, a, tenant, sp.Hash, doc.Gate, now); err != nil {
			return err
		}
		g, _, err := loadGate(tx, tenant, sp.Hash, doc.Gate)
		if err != nil {
			return err
		}
		if g == nil {
			g = &gateRecord{Tenant: tenant, PlanHash: sp.Hash, Gate: doc.Gate, Approval: doc.Approval, PackRef: sp.PackRef}
		}
		g.Requests = append(g.Requests, desc.Digest)
		if err := put(tx, bucketGates, gateKey(tenant, sp.Hash, doc.Gate), g); err != nil {
			return err
		}
		if err := put(tx, bucketRequests, string(desc.Digest), rec); err != nil {
			return err
		}
		_, err = appendEntry(tx, Entry{Time: now, Event: EventRequest, Tenant: tenant, PlanHash: sp.Hash,
			Gate: doc.Gate, RequestDigest: desc.Digest})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Request{Descriptor: desc, Ref: ref, Doc: doc}, nil
}

// packDescriptor is the request's subject: the pack manifest. Its size
// comes from the cache when the pack is there (by ref, else by digest),
// else from the saved plan; without either the request is refused, since
// an OCI descriptor must state the true size.
func packDescriptor(ctx context.Context, st *cache.Store, sp *plans.Saved) (ocispec.Descriptor, error) {
	want := sp.Pack.Digest
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: want}
	if a, err := st.Resolve(ctx, sp.PackRef); err == nil && a.Descriptor.Digest == want {
		d.Size = a.Descriptor.Size
		return d, nil
	}
	entries, err := st.List(ctx, artifact.KindPack)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, e := range entries {
		if e.Descriptor.Digest == want {
			d.Size = e.Descriptor.Size
			return d, nil
		}
	}
	if sp.PackSize > 0 {
		d.Size = sp.PackSize
		return d, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("pack %s (%s): %w: build or import the pack, or save the plan with its pack size",
		sp.PackRef, want, ErrPackNotFound)
}

// buildRequestArtifact makes the request manifest, its config and layers.
func buildRequestArtifact(doc *RequestDoc, canonicalPlan []byte, subject ocispec.Descriptor) (artifact.Blobs, ocispec.Descriptor, error) {
	reqJSON, err := canonical.Marshal(doc)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	src := artifact.Blobs{}
	cfg := emptyConfig()
	src[cfg.Digest] = []byte("{}")
	l1 := src.Add(artifact.MediaTypeApprovalRequest, reqJSON)
	l1.Annotations = map[string]string{artifact.AnnotationTitle: requestTitle}
	l2 := src.Add(MediaTypePlan, canonicalPlan)
	l2.Annotations = map[string]string{artifact.AnnotationTitle: planTitle}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypeApprovalRequest,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{l1, l2},
		Subject:      &subject,
		Annotations:  map[string]string{artifact.AnnotationCreated: doc.RequestedAt.Format(time.RFC3339)},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	desc := src.Add(ocispec.MediaTypeImageManifest, mb)
	desc.ArtifactType = artifact.ArtifactTypeApprovalRequest
	return src, desc, nil
}

// WriteRequestBundle writes a bundle file at path holding the request
// artifact (not its subject pack), read from the cache.
func WriteRequestBundle(ctx context.Context, st *cache.Store, req *Request, path string) (bundle.Summary, error) {
	d := plainDesc(req.Descriptor)
	return bundle.WriteFile(ctx, path, st, []bundle.Entry{{Descriptor: d, Kind: artifact.KindApprovalRequest, Ref: req.Ref}},
		bundle.WriteOptions{AllowAnyMediaType: bundleAllowAny})
}

// LoadRequest returns a request this cache issued, by manifest digest or
// by ref ("approval-request:<hex>"), e.g. to write its bundle again.
func LoadRequest(ctx context.Context, st *cache.Store, digestOrRef string) (*Request, error) {
	d := digest.Digest(digestOrRef)
	if integrity.CheckSHA256(d) != nil {
		a, err := st.Resolve(ctx, digestOrRef)
		if err != nil {
			return nil, fmt.Errorf("request %s: %w: %w", digestOrRef, ErrUnknownRequest, err)
		}
		d = a.Descriptor.Digest
	}
	var rec requestRecord
	err := view(ctx, st, func(tx cache.RecordTx) error {
		ok, err := get(tx, bucketRequests, string(d), &rec)
		if err == nil && !ok {
			err = fmt.Errorf("request %s: %w", digestOrRef, ErrUnknownRequest)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: rec.Size,
		ArtifactType: artifact.ArtifactTypeApprovalRequest}
	ra, err := readRequestArtifact(ctx, st, desc)
	if err == nil {
		var rc io.ReadCloser
		if rc, err = ra.openPlan(ctx); err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("request %s in cache: %w", d, err)
	}
	return &Request{Descriptor: desc, Ref: rec.Ref, Doc: *ra.doc}, nil
}

// gateAbsence says why gate is not an approval gate of the saved plan sp
// (whose bytes it holds): a step of that id the plan skips or does not
// gate, or no such step; and which approval gates the plan has.
func gateAbsence(sp *plans.Saved, gate string) string {
	status := ""
	if len(sp.Canonical) > 0 {
		_, _, _ = plan.Scan(bytes.NewReader(sp.Canonical), func(s *plan.Step, _ int) string {
			if s.ID == gate && status == "" {
				status = s.Status
			}
			return ""
		}, func(string) {})
	}
	gates := make([]string, 0, len(sp.Approvals))
	for _, a := range sp.Approvals {
		gates = append(gates, strconv.Quote(a.Gate))
	}
	has := "the plan has no approval gate"
	if len(gates) > 0 {
		has = "the plan's approval gates: " + strings.Join(gates, ", ")
	}
	switch status {
	case "":
		return "the plan has no step of that id; " + has
	case "skipped":
		return "the plan skips that step (its when: condition is false for the plan's inputs; plan again with the inputs of the real run); " + has
	default:
		return "that step of the plan asks for no approval (status " + strconv.Quote(status) + "); " + has
	}
}
