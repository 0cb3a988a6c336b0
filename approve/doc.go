// Package approve carries gate approvals across an air gap, bound to a plan
// hash: approval requests and responses, the decisions they record, the
// gates' states, and a hash-chained ledger of everything that happened. docs/approvals.md describes the flow for users; ADR 0005 the
// decisions behind it.
//
// # Model
//
// A plan (package plan) is saved in the cache under its hash (package
// plans: plans.Save). An approval is asked for one gate of one saved plan for one tenant
// (NewRequest): the request is an artifact stored in the cache and written
// to a bundle file (WriteRequestBundle) that travels to approvers. An
// approver, with an empty home, checks the bundle (Review) and signs a
// decision (Sign) into a response artifact written to another bundle
// (WriteResponseBundle). Back on the requesting side, Accept imports the
// response only if every check holds and records the decision. Decide is
// the same round trip for an approver at the requesting machine, through
// the same checks.
//
// # Artifacts
//
// Both are OCI image manifests (image-spec v1.1) with the OCI empty JSON
// config:
//
//	approval-request   artifactType artifact.ArtifactTypeApprovalRequest
//	                   layers: the request JSON (artifact.MediaTypeApprovalRequest,
//	                           RFC 8785 canonical, see RequestDoc), then the
//	                           canonical plan (MediaTypePlan)
//	                   subject: the pack manifest (digest = plan's pack digest)
//	                   cache ref: "approval-request:<first 16 hex of the nonce>"
//	approval-response  artifactType artifact.ArtifactTypeApprovalResponse
//	                   layer: one DSSE envelope (artifact.MediaTypeDSSE) over an
//	                          in-toto statement whose subject is the request
//	                          manifest and predicate type
//	                          PredicateApprovalDecision (see Predicate)
//	                   subject: the request manifest; kept in the cache by it
//
// The request binds tenant, pack (name, version, digest), plan hash, gate,
// the gate's rule (id, role, minApprovers, expiresAfter, reason), requester,
// requestedAt, expiresAt = requestedAt + expiresAfter, and a 32-byte random
// nonce. The decision binds request digest, plan hash, gate, tenant, nonce,
// verdict, comment, approver key id, signing time and an expiry never later
// than the request's.
//
// # Checks
//
// Review recomputes the plan hash from the plan layer (ErrPlanAltered) and
// checks the plan against the request. Accept checks, in order, the bundle
// (package bundle's errors), the artifact's shape (ErrInvalidResponse), that
// this cache issued the request (ErrUnknownRequest), that the gate's role is
// an approver role of the site (trust.ErrNotApproverRole), the signature
// against the trust store with the gate's role and the request's tenant
// (package trust's errors), that the key did not sign the pack unless the
// site allows it (ErrSelfApproval), every bound field (*MismatchError),
// replays (Duplicate,
// a no-op), a rejected gate (ErrGateRejected), the lifetime
// (ErrLifetimeTooLong), expiry (ErrExpired), signing time (ErrSigningTime),
// that the request is pending (ErrNotPending) and that the key did not
// already answer it otherwise (ErrAlreadyDecided). Every refusal appends a
// refusal entry to the ledger and records nothing else.
//
// # Who may approve
//
// One rule (admit, approvers.go) says whose approval counts, and it is the
// site's, from the trust store (trust.Policy), never the pack's: the gate's
// role must be RoleApprove or a role the site declared (never publisher or
// Packs.Run); the key must be in the store, not revoked, hold the role and
// the tenant; and it must not have signed the pack (a valid signature on
// the pack manifest in the cache) unless the policy allows self-approval.
// Accept refuses by it, NewRequest refuses a gate whose role cannot
// approve, and every computation of a gate's state (loadRequests) applies
// it again to every recorded approval against the trust store given then,
// so a key revoked or removed, by the CLI or by hand, stops counting at
// once. Such an approval does not count and closes no request; the first
// time it is seen, a void entry goes to the ledger and the approval is
// marked void for good (bucket approve.voids). Rejections always count.
//
// # State machine
//
// A gate (tenant, plan hash, gate) collects the decisions on all its
// requests. An approval counts while its expiry has not passed and admit
// admits it. The gate is
//
//	pending    a request is live, no approval counts yet
//	approved   n of m distinct keys' approvals count (n/m); it is Satisfied,
//	           and a run may pass it, only when n >= m
//	rejected   one rejection was accepted: final for this plan
//	expired    not satisfied and no request is live any more
//
// Requests are pending until the gate is satisfied or rejected (they are
// then closed as approved or rejected) or their expiry passes. A new request
// may be issued for a pending or expired gate, not for a satisfied or
// rejected one.
//
// # Ledger
//
// Every request, decision, refusal, first observed expiry and first
// observed void appends an Entry: seq (1, 2, ...), time, event, tenant, plan hash, gate, request and
// response digests, key id, decision, reason, prev (the previous entry's
// hash) and hash (sha256 of the entry's canonical JSON without hash). A
// head record names the last entry. VerifyLedger (and VerifyHook, for
// cache.Store.Verify) detects an altered, removed or moved entry and a
// removed tail. A writer able to rewrite every entry and the head is not
// detected locally: the head hash carried by evidence anchors it.
//
// # Storage
//
// Records live in the cache index, in this package's record namespace
// "approve" (cache.Store.Records), whose buckets are the index buckets
// approve.requests (request digest → request record), approve.gates
// (tenant 0x00 plan hash 0x00 gate → requests and decisions with their
// envelopes), approve.ledger (big-endian seq → canonical entry) and
// approve.meta (the ledger head) and approve.voids (response digest → the
// reason of its void entry). The namespace also holds approve.plans,
// which belongs to package plans (saved plans were this package's before;
// the bucket stayed so existing caches still read); this package reads it
// only through plans, and VerifyLedger checks that its records decode.
// Artifacts are stored with cache.Import.
package approve
