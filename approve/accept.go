package approve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/trust"
)

// AcceptOptions are the inputs of Accept.
type AcceptOptions struct {
	// Trust is the trust store signatures are verified against; required.
	Trust *trust.Store
	// Now is the time of the checks; zero means now.
	Now time.Time
	// ClockSkew is the allowance for the approver's clock: a decision may
	// be signed up to ClockSkew in the future, and is accepted up to
	// ClockSkew after its expiry (it counts for the gate only until its
	// expiry, though).
	ClockSkew time.Duration
}

// Outcome is what an accepted (or duplicate) response did.
type Outcome struct {
	// Duplicate: this very response (or the same signed decision) was
	// accepted before; nothing was recorded again.
	Duplicate bool
	Request   digest.Digest // request manifest
	Response  digest.Digest // response manifest
	KeyID     string
	KeyName   string
	Decision  Verdict
	Gate      GateState // the gate's state after the decision
}

// Accept imports an approval response bundle. It records the decision only
// if every check holds, in this order:
//
//   - the bundle file's structure is intact (bundle.Open), it lists
//     exactly one approval-response artifact (ErrInvalidResponse; checked
//     before any blob is hashed), its blobs are intact (Verify; package
//     bundle's errors) and the artifact has the expected shape
//     (ErrInvalidResponse);
//   - its subject is a request this cache issued (ErrUnknownRequest);
//   - the DSSE envelope verifies with a key of the trust store, not revoked,
//     holding the gate's role (Packs.Approve) for the request's tenant, over
//     a statement about the request (trust's errors, unchanged);
//   - the decision is well-formed (ErrInvalidResponse) and its request
//     digest, plan hash, gate, tenant, nonce and approver key id equal the
//     request's and the verifying key's (*MismatchError, ErrMismatch);
//   - the same response was not accepted before (if it was, the outcome is
//     Duplicate and nothing is recorded);
//   - the gate is not rejected (ErrGateRejected); the decision does not
//     outlive its request (ErrLifetimeTooLong); now is not past its expiry
//     plus ClockSkew (ErrExpired); it was not signed in the future or before
//     the request, beyond ClockSkew (ErrSigningTime); the request is still
//     pending (ErrNotPending); the key did not already answer the request
//     differently (ErrAlreadyDecided).
//
// The response artifact is then imported into the cache (kind
// approval-response, kept by its subject), and the decision recorded with
// a decision entry in the ledger. A refusal records nothing but a refusal
// entry in the ledger.
func Accept(ctx context.Context, st *cache.Store, path string, opts AcceptOptions) (*Outcome, error) {
	if opts.Trust == nil {
		return nil, fmt.Errorf("accept: %w: a trust store is required", ErrInvalidInput)
	}
	now := nowOr(opts.Now)
	a, err := newApprovers(ctx, st, opts.Trust)
	if err != nil {
		return nil, err
	}
	info := refusalInfo{approvers: a}
	r, err := bundle.Open(ctx, path, bundle.OpenOptions{})
	if err != nil {
		return nil, refuse(ctx, st, now, info, err)
	}
	defer r.Close()
	// The cheap structural check before the blobs are hashed: a bundle
	// that is not one approval response is refused without reading them.
	entries := r.Entries()
	if len(entries) != 1 || entries[0].Kind != artifact.KindApprovalResponse {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response bundle %s: %w: want exactly one approval response, the bundle holds %s",
			path, ErrInvalidResponse, bundle.Holds(entries)))
	}
	if _, err := r.Verify(ctx, bundle.VerifyOptions{}); err != nil {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response bundle %s: %w", path, err))
	}
	return acceptArtifact(ctx, st, a, r, entries[0].Descriptor, opts, now, filepath.Base(path))
}

// LocalDecision is a decision made by an approver at this machine.
type LocalDecision struct {
	PlanHash string // a saved plan's hash or unique prefix
	Gate     string
	Tenant   string // empty: the plan's saved tenant
	Signer   *keys.Pair
	Decision Verdict
	Comment  string
	Trust    *trust.Store
	Now      time.Time // zero means now
	// ClockSkew as in AcceptOptions.
	ClockSkew time.Duration
	// Requester names who asks when a request must be made; empty means
	// "local decision by <key id>".
	Requester string
	// Rand is the nonce source of a request made here; nil means crypto/rand.
	Rand io.Reader
}

// Decide records a decision made locally, without media: it uses the
// latest pending request for (tenant, plan, gate), or issues one, reviews
// the request artifact from the cache exactly as Review does, signs the
// decision with d.Signer and accepts the response through the same checks
// as Accept (the signer must be in the trust store with the role and
// tenant, like any approver).
func Decide(ctx context.Context, st *cache.Store, d LocalDecision) (*Outcome, error) {
	if d.Signer == nil || d.Trust == nil {
		return nil, fmt.Errorf("decide: %w: a signer and a trust store are required", ErrInvalidInput)
	}
	if d.Decision != Approve && d.Decision != Reject {
		return nil, fmt.Errorf("decision %q: %w: want approve or reject", d.Decision, ErrInvalidInput)
	}
	if err := checkTenant(d.Tenant); err != nil {
		return nil, err
	}
	now := nowOr(d.Now)
	// Saved plans are never changed or deleted, so the plan read here
	// still holds in the transactions below.
	sp, err := plans.Find(ctx, st, d.PlanHash)
	if err != nil {
		return nil, err
	}
	if d.Tenant == "" {
		d.Tenant = sp.Tenant
	}
	a, err := newApprovers(ctx, st, d.Trust, sp.Pack.Digest)
	if err != nil {
		return nil, err
	}
	var desc ocispec.Descriptor
	err = view(ctx, st, func(tx cache.RecordTx) error {
		g, ok, err := loadGate(tx, d.Tenant, sp.Hash, d.Gate)
		if err != nil || !ok {
			return err
		}
		reqs, err := loadRequests(tx, g, a)
		if err != nil {
			return err
		}
		for i := len(g.Requests) - 1; i >= 0; i-- {
			r := reqs[g.Requests[i]]
			if requestStatus(r, now) == StatePending {
				desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: g.Requests[i], Size: r.Size}
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if desc.Digest == "" {
		// No pending request: a rejected or approved gate refuses the
		// decision here, as Accept would.
		if err := view(ctx, st, func(tx cache.RecordTx) error {
			return checkGateOpen(tx, a, d.Tenant, sp.Hash, d.Gate, now)
		}); err != nil {
			return nil, refuse(ctx, st, now, refusalInfo{approvers: a, tenant: d.Tenant, planHash: sp.Hash, gate: d.Gate, claimed: d.Signer.ID()}, err)
		}
		requester := d.Requester
		if requester == "" {
			requester = "local decision by " + d.Signer.ID()
		}
		req, err := NewRequest(ctx, st, RequestOptions{PlanHash: string(sp.Hash), Gate: d.Gate, Tenant: d.Tenant,
			Requester: requester, Now: now, Rand: d.Rand, Trust: d.Trust})
		if err != nil {
			return nil, err
		}
		desc = plainDesc(req.Descriptor)
	}
	s, err := reviewArtifact(ctx, st, desc)
	if err != nil {
		return nil, fmt.Errorf("request %s in cache: %w", desc.Digest, err)
	}
	resp, err := Sign(ctx, s, d.Signer, Decision{Verdict: d.Decision, Comment: d.Comment}, now)
	if err != nil {
		return nil, err
	}
	return acceptArtifact(ctx, st, a, resp, resp.Descriptor, AcceptOptions{Trust: d.Trust, Now: now, ClockSkew: d.ClockSkew},
		now, "local decision")
}

// acceptArtifact runs every check of Accept after the bundle level on the
// response artifact desc read from src, then records it.
func acceptArtifact(ctx context.Context, st *cache.Store, a *approvers, src content.ReadOnlyStorage, desc ocispec.Descriptor,
	opts AcceptOptions, now time.Time, from string) (*Outcome, error) {
	info := refusalInfo{approvers: a, response: desc.Digest}
	ra, err := readResponseArtifact(ctx, src, desc)
	if err != nil {
		return nil, refuse(ctx, st, now, info, err)
	}
	info.request = ra.subject.Digest
	if env, err := keys.ParseEnvelope(ra.envelope); err == nil {
		info.claimed = strings.Join(env.KeyIDs(), ",")
	}

	var req requestRecord
	err = view(ctx, st, func(tx cache.RecordTx) error {
		ok, err := get(tx, bucketRequests, string(ra.subject.Digest), &req)
		if err == nil && !ok {
			err = fmt.Errorf("response %s answers request %s: %w", desc.Digest, ra.subject.Digest, ErrUnknownRequest)
		}
		return err
	})
	if err != nil {
		return nil, refuse(ctx, st, now, info, err)
	}
	info.tenant, info.planHash, info.gate = req.Tenant, req.PlanHash, req.Gate
	if ra.subject.Size != req.Size {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s: %w: subject size %d, request is %d bytes",
			desc.Digest, ErrInvalidResponse, ra.subject.Size, req.Size))
	}

	// The gate's role must be one the site lets approve (admit checks it
	// again below; checked first so that no signature is even looked at
	// for a role that cannot approve).
	if err := a.trust.CheckApproverRole(req.Approval.Role); err != nil {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s to request %s, gate %q of pack %s: %w",
			desc.Digest, ra.subject.Digest, req.Gate, req.Pack.Digest, err))
	}
	v, err := opts.Trust.Verify(ctx, ra.envelope, trust.Requirement{Subject: ra.subject.Digest,
		PredicateType: PredicateApprovalDecision, Role: req.Approval.Role, Tenant: req.Tenant})
	if err != nil {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s to request %s: %w", desc.Digest, ra.subject.Digest, err))
	}
	info.keyID = v.KeyID
	if err := a.addPack(ctx, st, req.Pack.Digest); err != nil {
		return nil, err
	}
	if _, err := a.admit(v.KeyID, req.Approval.Role, req.Tenant, req.Pack.Digest); err != nil {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s to request %s, gate %q: %w", desc.Digest, ra.subject.Digest, req.Gate, err))
	}
	p, err := decodePredicate(v.Statement)
	if err != nil {
		return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s: %w", desc.Digest, err))
	}
	for _, c := range []struct{ field, want, got string }{
		{"planHash", string(req.PlanHash), string(p.PlanHash)},
		{"gate", req.Gate, p.Gate},
		{"tenant", req.Tenant, p.Tenant},
		{"nonce", req.Nonce, p.Nonce},
		{"requestDigest", string(ra.subject.Digest), string(p.RequestDigest)},
		{"approverKeyId", v.KeyID, p.ApproverKeyID},
	} {
		if c.want != c.got {
			return nil, refuse(ctx, st, now, info, fmt.Errorf("response %s by key %s: %w", desc.Digest, v.KeyID,
				mismatch(c.field, c.want, c.got)))
		}
	}
	env, err := keys.ParseEnvelope(ra.envelope)
	if err != nil {
		return nil, err // cannot happen: trust.Verify parsed it
	}
	payload, err := env.DecodePayload()
	if err != nil {
		return nil, err
	}
	dec := decisionRecord{Request: ra.subject.Digest, Response: desc.Digest, Payload: digest.FromBytes(payload),
		KeyID: v.KeyID, KeyName: v.KeyName, Decision: p.Decision, Comment: p.Comment, SignedAt: p.SignedAt,
		ExpiresAt: p.ExpiresAt, Imported: now, Envelope: ra.envelope}
	chk := stateCheck{approvers: a, dec: &dec, pred: p, now: now, skew: opts.ClockSkew}

	var out *Outcome
	if err := view(ctx, st, func(tx cache.RecordTx) error {
		var err error
		out, err = chk.run(tx)
		return err
	}); err != nil {
		return nil, refuse(ctx, st, now, info, err)
	}
	if out.Duplicate {
		return out, nil
	}

	verified := []string{
		"bundle checksums and sha256 of every blob",
		fmt.Sprintf("dsse signature by key %s (%s) holding %s for tenant %q", v.KeyID, v.KeyName, req.Approval.Role, req.Tenant),
		"request issued by this cache and pending; plan hash, gate, tenant and nonce match",
		"not expired, not replayed",
	}
	if _, err := st.Import(ctx, src, []cache.Artifact{{Descriptor: plainDesc(desc), Kind: artifact.KindApprovalResponse}},
		cache.ImportRecord{From: from, Verified: verified}, cache.ImportOptions{}); err != nil {
		return nil, fmt.Errorf("store response %s: %w", desc.Digest, err)
	}

	var refused error
	err = update(ctx, st, func(tx cache.RecordTx) error {
		if err := observe(tx, a, now); err != nil {
			return err
		}
		var err error
		if out, err = chk.run(tx); err != nil {
			refused = err // a concurrent decision changed the gate since the first check
			return err
		}
		if out.Duplicate {
			return nil
		}
		out, err = chk.record(tx)
		return err
	})
	if refused != nil {
		return nil, refuse(ctx, st, now, info, refused)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// stateCheck holds a verified decision while it is checked against the
// gate's state and recorded.
type stateCheck struct {
	approvers *approvers
	dec       *decisionRecord
	pred      *Predicate
	now       time.Time
	skew      time.Duration
}

// run checks the decision against the recorded state in tx. It returns a
// Duplicate outcome for a decision already accepted.
func (c *stateCheck) run(tx cache.RecordTx) (*Outcome, error) {
	dec, p, now := c.dec, c.pred, c.now
	var req requestRecord
	ok, err := get(tx, bucketRequests, string(dec.Request), &req)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("request %s: %w", dec.Request, ErrUnknownRequest)
	}
	g, ok, err := loadGate(tx, req.Tenant, req.PlanHash, req.Gate)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("request %s: gate %q: %w: record missing", dec.Request, req.Gate, ErrRecordCorrupt)
	}
	reqs, err := loadRequests(tx, g, c.approvers)
	if err != nil {
		return nil, err
	}
	gs := computeState(g, reqs, now)
	out := &Outcome{Request: dec.Request, Response: dec.Response, KeyID: dec.KeyID, KeyName: dec.KeyName,
		Decision: dec.Decision, Gate: gs}
	for _, d := range g.Decisions {
		if d.Response == dec.Response || (d.Request == dec.Request && d.KeyID == dec.KeyID && d.Payload == dec.Payload) {
			out.Duplicate = true
			return out, nil
		}
	}
	what := fmt.Sprintf("response %s by key %s to request %s (gate %q)", dec.Response, dec.KeyID, dec.Request, req.Gate)
	switch {
	case gs.State == StateRejected:
		return nil, fmt.Errorf("%s: %w", what, ErrGateRejected)
	case p.ExpiresAt.After(req.ExpiresAt):
		return nil, fmt.Errorf("%s: expires %s, request expires %s: %w", what,
			p.ExpiresAt.Format(time.RFC3339), req.ExpiresAt.Format(time.RFC3339), ErrLifetimeTooLong)
	case now.After(p.ExpiresAt.Add(c.skew)):
		return nil, fmt.Errorf("%s: expired at %s: %w", what, p.ExpiresAt.Format(time.RFC3339), ErrExpired)
	case p.SignedAt.After(p.ExpiresAt):
		return nil, fmt.Errorf("%s: signed %s, after its expiry: %w", what, p.SignedAt.Format(time.RFC3339), ErrExpired)
	case p.SignedAt.After(now.Add(c.skew)):
		return nil, fmt.Errorf("%s: signed %s, in the future: %w", what, p.SignedAt.Format(time.RFC3339), ErrSigningTime)
	case p.SignedAt.Before(req.RequestedAt.Add(-c.skew)):
		return nil, fmt.Errorf("%s: signed %s, before the request of %s: %w", what, p.SignedAt.Format(time.RFC3339),
			req.RequestedAt.Format(time.RFC3339), ErrSigningTime)
	case reqs[dec.Request].closed == StateApproved || gs.Satisfied:
		return nil, fmt.Errorf("%s: gate already approved %d/%d: %w", what, gs.Approvals, gs.Required, ErrNotPending)
	}
	for _, d := range g.Decisions {
		if d.Request == dec.Request && d.KeyID == dec.KeyID {
			return nil, fmt.Errorf("%s: the key decided %s on it already (response %s): %w", what, d.Decision, d.Response, ErrAlreadyDecided)
		}
	}
	return out, nil
}

// record adds the decision to its gate, closes the gate's pending requests
// when the gate is now rejected or satisfied, and appends the decision
// entry. It runs after run succeeded in the same transaction.
func (c *stateCheck) record(tx cache.RecordTx) (*Outcome, error) {
	dec, now := c.dec, c.now
	var req requestRecord
	if _, err := get(tx, bucketRequests, string(dec.Request), &req); err != nil {
		return nil, err
	}
	g, _, err := loadGate(tx, req.Tenant, req.PlanHash, req.Gate)
	if err != nil {
		return nil, err
	}
	g.Decisions = append(g.Decisions, *dec)
	if err := put(tx, bucketGates, gateKey(g.Tenant, g.PlanHash, g.Gate), g); err != nil {
		return nil, err
	}
	reqs, err := loadRequests(tx, g, c.approvers)
	if err != nil {
		return nil, err
	}
	// The requests this decision closes are derived from the decisions
	// (closedStates): nothing to write on them.
	gs := computeState(g, reqs, now)
	if _, err := appendEntry(tx, Entry{Time: now, Event: EventDecision, Tenant: g.Tenant, PlanHash: g.PlanHash, Gate: g.Gate,
		RequestDigest: dec.Request, ResponseDigest: dec.Response, KeyID: dec.KeyID, Decision: string(dec.Decision)}); err != nil {
		return nil, err
	}
	return &Outcome{Request: dec.Request, Response: dec.Response, KeyID: dec.KeyID, KeyName: dec.KeyName,
		Decision: dec.Decision, Gate: gs}, nil
}

// refusalInfo is what is known about a response when it is refused.
type refusalInfo struct {
	approvers *approvers // observes voids and expiries in the refusal's transaction
	tenant    string
	planHash  digest.Digest
	gate      string
	request   digest.Digest
	response  digest.Digest
	keyID     string // the verifying key
	claimed   string // the key ids the envelope claims (unverified)
}

// refuse appends a refusal entry for err, when err is a refusal (see
// Reason), and returns err.
func refuse(ctx context.Context, st *cache.Store, now time.Time, info refusalInfo, err error) error {
	code := Reason(err)
	if code == "" {
		return err
	}
	keyID := info.keyID
	if keyID == "" {
		keyID = info.claimed // unverified: what the envelope claims
	}
	lerr := update(ctx, st, func(tx cache.RecordTx) error {
		if err := observe(tx, info.approvers, now); err != nil {
			return err
		}
		_, err := appendEntry(tx, Entry{Time: now, Event: EventRefusal, Tenant: info.tenant, PlanHash: info.planHash,
			Gate: info.gate, RequestDigest: info.request, ResponseDigest: info.response, KeyID: keyID, Reason: code})
		return err
	})
	if lerr != nil {
		return errors.Join(err, fmt.Errorf("record refusal in the approval ledger: %w", lerr))
	}
	return err
}

// reasons maps refusals to the reason codes the ledger records, sharpest
// first.
var reasons = []struct {
	err  error
	code string
}{
	{ErrUnknownRequest, "unknown-request"},
	{trust.ErrKeyRevoked, "key-revoked"},
	{trust.ErrUnknownKey, "unknown-key"},
	{trust.ErrSignatureInvalid, "signature-invalid"},
	{trust.ErrNotApproverRole, "not-approver-role"},
	{ErrSelfApproval, "self-approval"},
	{trust.ErrRoleMissing, "role-missing"},
	{trust.ErrTenantNotAllowed, "tenant-not-allowed"},
	{trust.ErrSubjectMismatch, "subject-mismatch"},
	{trust.ErrPayloadType, "payload-type"},
	{trust.ErrPredicateType, "predicate-type"},
	{trust.ErrUnknownRole, "unknown-role"},
	{trust.ErrInvalidRequirement, "invalid-requirement"},
	{keys.ErrMalformedStatement, "statement-malformed"},
	{keys.ErrMalformedEnvelope, "envelope-malformed"},
	{ErrInvalidResponse, "invalid-response"},
	{ErrGateRejected, "gate-rejected"},
	{ErrLifetimeTooLong, "lifetime-too-long"},
	{ErrExpired, "expired"},
	{ErrSigningTime, "signing-time"},
	{ErrNotPending, "not-pending"},
	{ErrAlreadyDecided, "already-decided"},
}

// bundleRefusals are package bundle's errors for a damaged or forged
// bundle file (as opposed to a missing file or an I/O failure).
var bundleRefusals = []error{
	bundle.ErrAbsolutePath, bundle.ErrPathTraversal, bundle.ErrSymlink, bundle.ErrHardLink,
	bundle.ErrUnsupportedEntryType, bundle.ErrDuplicateEntry, bundle.ErrUnexpectedEntry, bundle.ErrInvalidTar,
	bundle.ErrTruncated, bundle.ErrTooManyEntries, integrity.ErrTooLarge, bundle.ErrBadLayout, bundle.ErrInvalidIndex,
	integrity.ErrInvalidManifest, bundle.ErrChecksums, bundle.ErrBlobMissing, bundle.ErrExtraBlob, integrity.ErrSizeMismatch,
	integrity.ErrDigestMismatch, integrity.ErrUnsupportedMediaType, bundle.ErrSelfReference, bundle.ErrCycle,
	bundle.ErrDecompressionLimit, bundle.ErrBadCompression, bundle.ErrPartsManifest, bundle.ErrPartMissing,
	bundle.ErrPartSize, bundle.ErrPartDigest, bundle.ErrPartOrder,
}

// Reason returns the ledger's reason code for a refusal of Accept
// ("signature-invalid", "mismatch:nonce", "bundle-invalid", ...), or ""
// when err is not a refusal (an I/O failure, a cancelled context).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var me *MismatchError
	if errors.As(err, &me) {
		return "mismatch:" + me.Field
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	for _, e := range bundleRefusals {
		if errors.Is(err, e) {
			return "bundle-invalid"
		}
	}
	return ""
}
