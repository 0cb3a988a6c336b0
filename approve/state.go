package approve

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/trust"
)

// State is a gate's (or a request's) state.
type State string

// States. A gate is pending until its first approval, approved (n of m)
// from then on, rejected after one rejection (final), and expired when no
// live request and not enough live approvals remain.
const (
	StatePending  State = "pending"
	StateApproved State = "approved"
	StateRejected State = "rejected"
	StateExpired  State = "expired"
)

// AllTenants makes Gates list the gates of every tenant.
const AllTenants = "*"

// GateState is the state of one gate of one plan for one tenant.
type GateState struct {
	Tenant   string
	PlanHash digest.Digest
	Gate     string
	PackRef  string
	Approval ApprovalInfo // the gate's rule
	State    State
	// Approvals counts the distinct keys whose approval is still live (not
	// past its expiry); Required is the gate's minApprovers.
	Approvals int
	Required  int
	// Satisfied: the gate is open — approved by Required distinct keys, not
	// rejected. Only then may a run pass it.
	Satisfied bool
	// ExpiresAt is when the state next changes by itself: for a satisfied
	// gate the earliest expiry of the approvals counted, else the latest
	// expiry of its pending requests; zero when nothing is live.
	ExpiresAt time.Time
	Decisions []DecisionInfo // in the order accepted
	Requests  []RequestInfo  // in the order issued
}

// String renders the state as operators read it: "pending 0/2",
// "approved 1/2", "approved 2/2", "rejected", "expired".
func (g GateState) String() string {
	switch g.State {
	case StatePending, StateApproved:
		return fmt.Sprintf("%s %d/%d", g.State, g.Approvals, g.Required)
	}
	return string(g.State)
}

// DecisionInfo is one accepted decision.
type DecisionInfo struct {
	KeyID      string        `json:"keyId"`
	KeyName    string        `json:"keyName"` // the trust store's name for the key when accepted
	Decision   Verdict       `json:"decision"`
	Comment    string        `json:"comment"`
	SignedAt   time.Time     `json:"signedAt"`
	ImportedAt time.Time     `json:"importedAt"`
	ExpiresAt  time.Time     `json:"expiresAt"`
	Request    digest.Digest `json:"request"`  // request manifest
	Response   digest.Digest `json:"response"` // response manifest
	// Void says why an approval no longer counts ("key revoked
	// 2026-01-02T03:04:05Z", "key removed from the trust store", ...);
	// empty while it counts.
	Void string `json:"void,omitempty"`
}

// RequestInfo is one request issued for a gate.
type RequestInfo struct {
	Digest      digest.Digest `json:"digest"`
	Ref         string        `json:"ref"`
	Status      State         `json:"status"` // pending, approved, rejected or expired
	Requester   string        `json:"requester"`
	RequestedAt time.Time     `json:"requestedAt"`
	ExpiresAt   time.Time     `json:"expiresAt"`
	Nonce       string        `json:"nonce"`
}

// VoidNote says which approvals no longer count and why, as gate displays
// show it: "approval by alice no longer counts: key revoked
// 2026-01-02T03:04:05Z" (several joined by "; "), "" when all count.
func VoidNote(decisions []DecisionInfo) string {
	var notes []string
	for _, d := range decisions {
		if d.Void == "" {
			continue
		}
		who := d.KeyName
		if who == "" {
			who = d.KeyID
		}
		notes = append(notes, fmt.Sprintf("approval by %s no longer counts: %s", who, d.Void))
	}
	return strings.Join(notes, "; ")
}

// gateRecord is what the cache keeps of a gate: its requests and the
// decisions accepted on them.
type gateRecord struct {
	Tenant    string           `json:"tenant"`
	PlanHash  digest.Digest    `json:"planHash"`
	Gate      string           `json:"gate"`
	PackRef   string           `json:"packRef"`
	Approval  ApprovalInfo     `json:"approval"`
	Requests  []digest.Digest  `json:"requests"`
	Decisions []decisionRecord `json:"decisions"`

	// void is derived when read (loadRequests), never stored: for each
	// decision, why it no longer counts ("" when it counts).
	void []string
}

// decisionRecord is one accepted decision, with its envelope (what
// evidence carries).
type decisionRecord struct {
	Request   digest.Digest `json:"request"`
	Response  digest.Digest `json:"response"`
	Payload   digest.Digest `json:"payload"` // sha256 of the signed statement
	KeyID     string        `json:"keyId"`
	KeyName   string        `json:"keyName"`
	Decision  Verdict       `json:"decision"`
	Comment   string        `json:"comment"`
	SignedAt  time.Time     `json:"signedAt"`
	ExpiresAt time.Time     `json:"expiresAt"`
	Imported  time.Time     `json:"importedAt"`
	Envelope  []byte        `json:"envelope"`
}

func gateKey(tenant string, planHash digest.Digest, gate string) string {
	return tenant + "\x00" + string(planHash) + "\x00" + gate
}

func loadGate(tx cache.RecordTx, tenant string, planHash digest.Digest, gate string) (*gateRecord, bool, error) {
	var g gateRecord
	ok, err := get(tx, bucketGates, gateKey(tenant, planHash, gate), &g)
	if err != nil || !ok {
		return nil, false, err
	}
	return &g, true, nil
}

// loadRequests loads the requests of g, each with the state its gate's
// decisions closed it in, if any, and derives which of g's decisions no
// longer count (approvers' voidOf; with a nil a, only voids the ledger
// recorded).
func loadRequests(tx cache.RecordTx, g *gateRecord, a *approvers) (map[digest.Digest]*requestRecord, error) {
	out := map[digest.Digest]*requestRecord{}
	for _, d := range g.Requests {
		var r requestRecord
		ok, err := get(tx, bucketRequests, string(d), &r)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("gate %s: request %s: %w: record missing", g.Gate, d, ErrRecordCorrupt)
		}
		out[d] = &r
	}
	g.void = make([]string, len(g.Decisions))
	for i := range g.Decisions {
		var err error
		if g.void[i], err = a.voidOf(tx, &g.Decisions[i], out[g.Decisions[i].Request]); err != nil {
			return nil, err
		}
	}
	for d, st := range closedStates(g, out) {
		out[d].closed = st
	}
	return out, nil
}

// closedStates derives which requests of g are closed, and how: the first
// decision after which the gate is rejected, or satisfied, closes (as
// rejected or approved) every request pending when it was accepted —
// issued by then and not yet past its expiry. A closed request stays closed
// when the approvals later expire. This is what earlier versions stored as
// a flag on the request when they accepted the decision. Approvals that no
// longer count (g.void) are left out, as if never made: a request they
// closed is open again.
func closedStates(g *gateRecord, reqs map[digest.Digest]*requestRecord) map[digest.Digest]State {
	closed := map[digest.Digest]State{}
	var counted []decisionRecord
	for k := range g.Decisions {
		if k < len(g.void) && g.void[k] != "" {
			continue
		}
		counted = append(counted, g.Decisions[k])
		at := g.Decisions[k].Imported
		st := decided(counted, g.Approval.MinApprovers, at)
		if st == "" {
			continue
		}
		for _, d := range g.Requests {
			r := reqs[d]
			if r == nil || closed[d] != "" || r.RequestedAt.After(at) || at.After(r.ExpiresAt) {
				continue
			}
			closed[d] = st
		}
	}
	return closed
}

// decided is StateRejected when one of decisions rejects, StateApproved
// when required distinct keys' approvals are live at now, else "".
func decided(decisions []decisionRecord, required int, now time.Time) State {
	live := map[string]bool{}
	for _, d := range decisions {
		switch {
		case d.Decision == Reject:
			return StateRejected
		case !now.After(d.ExpiresAt):
			live[d.KeyID] = true
		}
	}
	if len(live) >= required {
		return StateApproved
	}
	return ""
}

// requestStatus is a request's status at now.
func requestStatus(r *requestRecord, now time.Time) State {
	switch {
	case r.closed != "":
		return r.closed
	case now.After(r.ExpiresAt):
		return StateExpired
	}
	return StatePending
}

// computeState derives a gate's state at now from its records.
func computeState(g *gateRecord, reqs map[digest.Digest]*requestRecord, now time.Time) GateState {
	gs := GateState{Tenant: g.Tenant, PlanHash: g.PlanHash, Gate: g.Gate, PackRef: g.PackRef, Approval: g.Approval,
		Required: g.Approval.MinApprovers}
	rejected := false
	live := map[string]time.Time{} // key id → latest live expiry
	for i, d := range g.Decisions {
		void := ""
		if i < len(g.void) {
			void = g.void[i]
		}
		gs.Decisions = append(gs.Decisions, DecisionInfo{KeyID: d.KeyID, KeyName: d.KeyName, Decision: d.Decision,
			Comment: d.Comment, SignedAt: d.SignedAt, ImportedAt: d.Imported, ExpiresAt: d.ExpiresAt,
			Request: d.Request, Response: d.Response, Void: void})
		switch {
		case void != "":
			// no longer counts (key revoked or removed, ...)
		case d.Decision == Reject:
			rejected = true
		case !now.After(d.ExpiresAt) && d.ExpiresAt.After(live[d.KeyID]):
			live[d.KeyID] = d.ExpiresAt
		}
	}
	var pendingUntil time.Time
	for _, d := range g.Requests {
		r := reqs[d]
		if r == nil {
			continue
		}
		status := requestStatus(r, now)
		gs.Requests = append(gs.Requests, RequestInfo{Digest: d, Ref: r.Ref, Status: status, Requester: r.Requester,
			RequestedAt: r.RequestedAt, ExpiresAt: r.ExpiresAt, Nonce: r.Nonce})
		if status == StatePending && r.ExpiresAt.After(pendingUntil) {
			pendingUntil = r.ExpiresAt
		}
	}
	gs.Approvals = len(live)
	gs.Satisfied = !rejected && gs.Approvals >= gs.Required
	switch {
	case rejected:
		gs.State = StateRejected
	case gs.Satisfied:
		gs.State = StateApproved
		exps := make([]time.Time, 0, len(live))
		for _, t := range live {
			exps = append(exps, t)
		}
		slices.SortFunc(exps, func(a, b time.Time) int { return a.Compare(b) })
		// The gate stays open while Required approvals live: until the
		// Required-th latest expiry passes.
		gs.ExpiresAt = exps[len(exps)-gs.Required]
	case !pendingUntil.IsZero():
		gs.State = StatePending
		if gs.Approvals > 0 {
			gs.State = StateApproved
		}
		gs.ExpiresAt = pendingUntil
	default:
		gs.State = StateExpired
	}
	return gs
}

// gateState loads and computes one gate's state inside tx.
func gateState(tx cache.RecordTx, a *approvers, tenant string, planHash digest.Digest, gate string, now time.Time) (*GateState, error) {
	g, ok, err := loadGate(tx, tenant, planHash, gate)
	if err != nil || !ok {
		return nil, err
	}
	reqs, err := loadRequests(tx, g, a)
	if err != nil {
		return nil, err
	}
	gs := computeState(g, reqs, now)
	return &gs, nil
}

// checkGateOpen refuses a new request on a rejected (ErrGateRejected) or
// satisfied (ErrNotPending) gate.
func checkGateOpen(tx cache.RecordTx, a *approvers, tenant string, planHash digest.Digest, gate string, now time.Time) error {
	gs, err := gateState(tx, a, tenant, planHash, gate, now)
	if err != nil || gs == nil {
		return err
	}
	switch {
	case gs.State == StateRejected:
		return fmt.Errorf("gate %q of plan %s (tenant %q): %w", gate, planHash, tenant, ErrGateRejected)
	case gs.Satisfied:
		return fmt.Errorf("gate %q of plan %s (tenant %q) is approved %d/%d until %s: %w", gate, planHash, tenant,
			gs.Approvals, gs.Required, gs.ExpiresAt.Format(time.RFC3339), ErrNotPending)
	}
	return nil
}

// observeExpiry appends one expiry entry for every request still pending
// past its expiry that has none in the ledger yet.
func observeExpiry(tx cache.RecordTx, a *approvers, now time.Time) error {
	type hit struct {
		key string
		rec requestRecord
	}
	var hits []hit
	gates := map[string]map[digest.Digest]*requestRecord{} // gate key → its requests, closed derived
	err := tx.ForEach(bucketRequests, nil, func(k, _ []byte) error {
		var r requestRecord
		if _, err := get(tx, bucketRequests, string(k), &r); err != nil {
			return err
		}
		if !now.After(r.ExpiresAt) {
			return nil
		}
		gk := gateKey(r.Tenant, r.PlanHash, r.Gate)
		reqs, ok := gates[gk]
		if !ok {
			g, found, err := loadGate(tx, r.Tenant, r.PlanHash, r.Gate)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("request %s: gate %q: %w: record missing", k, r.Gate, ErrRecordCorrupt)
			}
			if reqs, err = loadRequests(tx, g, a); err != nil {
				return err
			}
			gates[gk] = reqs
		}
		if lr := reqs[digest.Digest(k)]; lr != nil && lr.closed == "" {
			hits = append(hits, hit{string(k), r})
		}
		return nil
	})
	if err != nil || len(hits) == 0 {
		return err
	}
	logged, err := expiriesLogged(tx)
	if err != nil {
		return err
	}
	hits = slices.DeleteFunc(hits, func(h hit) bool { return logged[digest.Digest(h.key)] })
	slices.SortFunc(hits, func(a, b hit) int { return a.rec.ExpiresAt.Compare(b.rec.ExpiresAt) })
	for _, h := range hits {
		if _, err := appendEntry(tx, Entry{Time: now, Event: EventExpiry, Tenant: h.rec.Tenant, PlanHash: h.rec.PlanHash,
			Gate: h.rec.Gate, RequestDigest: digest.Digest(h.key), Reason: "expired at " + h.rec.ExpiresAt.Format(time.RFC3339)}); err != nil {
			return err
		}
	}
	return nil
}

// Gates returns the state at now (zero means now) of every gate of tenant
// ("" for no tenant, AllTenants for all) that had a request, sorted by
// tenant, plan hash and gate. An approval counts only while ts, the
// current trust store, admits it (see the package comment: a key revoked
// or removed, or one that signed the pack, does not count); one seen not
// counting for the first time gets a void entry in the ledger, and
// requests seen past their expiry for the first time an expiry entry.
func Gates(ctx context.Context, st *cache.Store, ts *trust.Store, tenant string, now time.Time) ([]GateState, error) {
	now = nowOr(now)
	a, err := newApprovers(ctx, st, ts)
	if err != nil {
		return nil, err
	}
	var out []GateState
	err = update(ctx, st, func(tx cache.RecordTx) error {
		out = nil
		if err := observe(tx, a, now); err != nil {
			return err
		}
		var prefix []byte
		if tenant != AllTenants {
			prefix = []byte(tenant + "\x00")
		}
		return tx.ForEach(bucketGates, prefix, func(k, _ []byte) error {
			var g gateRecord
			if _, err := get(tx, bucketGates, string(k), &g); err != nil {
				return err
			}
			reqs, err := loadRequests(tx, &g, a)
			if err != nil {
				return err
			}
			out = append(out, computeState(&g, reqs, now))
			return nil
		})
	})
	return out, err
}

// Gate returns the state at now (zero means now) of one gate. planHash may
// be a unique prefix of a saved plan's hash (see plans.Find, whose errors it
// returns). ErrGateNotFound: no request was ever made for it here. Like
// Gates, it counts approvals against ts and records voids and expiries it
// observes.
func Gate(ctx context.Context, st *cache.Store, ts *trust.Store, tenant, planHash, gate string, now time.Time) (*GateState, error) {
	now = nowOr(now)
	h := digest.Digest(planHash)
	if integrity.CheckSHA256(h) != nil {
		// Saved plans are never deleted, so the hash resolved here still
		// names a saved plan in the transaction below.
		sp, err := plans.Find(ctx, st, planHash)
		if err != nil {
			return nil, err
		}
		h = sp.Hash
	}
	a, err := newApprovers(ctx, st, ts)
	if err != nil {
		return nil, err
	}
	var gs *GateState
	err = update(ctx, st, func(tx cache.RecordTx) error {
		if err := observe(tx, a, now); err != nil {
			return err
		}
		var err error
		gs, err = gateState(tx, a, tenant, h, gate, now)
		if err == nil && gs == nil {
			err = fmt.Errorf("gate %q of plan %s (tenant %q): no approval was requested: %w", gate, h, tenant, ErrGateNotFound)
		}
		return err
	})
	return gs, err
}
