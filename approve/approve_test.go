package approve

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/trust"
)

func events(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		s := string(e.Event)
		if e.Decision != "" {
			s += ":" + e.Decision
		}
		if e.Reason != "" && e.Event == EventRefusal {
			s += ":" + e.Reason
		}
		out = append(out, s)
	}
	return out
}

// TestRoundTripTwoApprovers is the whole flow across three homes: the
// sealed operator's cache, and approvers A and B who have nothing but the
// request bundle and their key.
func TestRoundTripTwoApprovers(t *testing.T) {
	o := newOperator(t)
	req, reqPath := o.request(t0)

	if g := o.gate(t0); g.State != StatePending || g.Approvals != 0 || g.Required != 2 || g.Satisfied || g.String() != "pending 0/2" {
		t.Fatalf("new request: gate %s %+v", g, g)
	}

	// The request bundle holds the request only (not the pack), whose
	// subject is the pack manifest.
	r, err := bundle.Open(o.ctx, reqPath, bundle.OpenOptions{AllowAnyMediaType: true})
	if err != nil {
		t.Fatal(err)
	}
	entries := r.Entries()
	r.Close()
	if len(entries) != 1 || entries[0].Descriptor.Digest != req.Descriptor.Digest || entries[0].Kind != artifact.KindApprovalRequest {
		t.Fatalf("request bundle entries: %+v", entries)
	}
	ra, err := readRequestArtifact(o.ctx, o.st, req.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: o.fx.artifact.Digest(),
		Size: o.fx.artifact.Manifest.Size}); !cmp.Equal(ra.subject, want) {
		t.Fatalf("request subject %+v, want the pack manifest %+v", ra.subject, want)
	}
	if string(planBytes(t, o.ctx, ra)) != string(o.fx.canonical) {
		t.Fatal("request plan layer differs from the saved canonical plan")
	}

	// Approver A reviews in a home of their own.
	s, err := Review(o.ctx, reqPath)
	if err != nil {
		t.Fatal(err)
	}
	if s.Request.Digest != req.Descriptor.Digest || string(s.PlanHash) != o.fx.hash || s.Tenant != testTenant ||
		s.Gate != testGate || s.Role != trust.RoleApprove || s.MinApprovers != 2 || s.Pack.Name != "remediate-cve" ||
		s.Pack.Digest != o.fx.artifact.Digest() || !s.RequestedAt.Equal(t0) || !s.ExpiresAt.Equal(t0.Add(48*time.Hour)) ||
		s.Requester != "ops@sealed-1" {
		t.Fatalf("review summary: %+v", s)
	}
	var steps []StepSummary
	s.Steps.Each(func(st StepSummary) error { steps = append(steps, st); return nil })
	i := slices.IndexFunc(steps, func(st StepSummary) bool { return st.ID == testGate })
	if i < 0 || steps[i].Status != "requires-approval" || len(steps) != s.Steps.Len() {
		t.Fatalf("review steps: gate step missing or wrong status: %+v", steps)
	}
	if s.Inputs["cve"] != "CVE-2026-12345" || len(s.Secrets) == 0 {
		t.Fatalf("review inputs %v secrets %v", s.Inputs, s.Secrets)
	}

	respA, pathA := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Hour))
	if respA.Predicate.ApproverKeyID != o.alice.ID() || respA.Predicate.Nonce != req.Doc.Nonce ||
		!respA.Predicate.ExpiresAt.Equal(req.Doc.ExpiresAt) || respA.Predicate.RequestDigest != req.Descriptor.Digest {
		t.Fatalf("response predicate %+v", respA.Predicate)
	}
	out, err := o.accept(pathA, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if out.Duplicate || out.KeyID != o.alice.ID() || out.KeyName != "alice" || out.Decision != Approve ||
		out.Gate.String() != "approved 1/2" || out.Gate.Satisfied {
		t.Fatalf("first approval: %+v gate %s", out, out.Gate)
	}

	_, pathB := approverSign(t, reqPath, o.bob, Approve, t0.Add(3*time.Hour))
	out, err = o.accept(pathB, t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	g := out.Gate
	if g.String() != "approved 2/2" || !g.Satisfied || !g.ExpiresAt.Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("second approval: gate %s %+v", g, g)
	}
	if len(g.Decisions) != 2 || g.Decisions[0].KeyName != "alice" || g.Decisions[1].KeyName != "bob" ||
		!g.Decisions[1].ImportedAt.Equal(t0.Add(4*time.Hour)) || g.Decisions[0].Comment != "checked the plan\nlooks right" {
		t.Fatalf("decisions: %+v", g.Decisions)
	}
	if len(g.Requests) != 1 || g.Requests[0].Status != StateApproved {
		t.Fatalf("requests: %+v", g.Requests)
	}

	// The responses are in the cache, referrers of the request.
	refs, err := o.st.Referrers(o.ctx, req.Descriptor.Digest, artifact.ArtifactTypeApprovalResponse)
	if err != nil || len(refs) != 2 {
		t.Fatalf("response referrers of the request: %v %v", refs, err)
	}

	if diff := cmp.Diff([]string{"request", "decision:approve", "decision:approve"}, events(o.ledger())); diff != "" {
		t.Errorf("ledger events (-want +got):\n%s", diff)
	}
	l := o.ledger()
	if l[1].RequestDigest != req.Descriptor.Digest || l[1].ResponseDigest != respA.Descriptor.Digest ||
		l[1].KeyID != o.alice.ID() || string(l[1].PlanHash) != o.fx.hash || l[1].Gate != testGate || l[1].Tenant != testTenant {
		t.Errorf("decision entry: %+v", l[1])
	}

	// A third approval of an approved gate is refused: nothing is pending.
	_, pathC := approverSign(t, reqPath, o.carol, Approve, t0.Add(5*time.Hour))
	o.expectRefused(pathC, t0.Add(5*time.Hour), ErrNotPending, "not-pending")

	// Past the approvals' expiry the gate is expired.
	if g := o.gate(t0.Add(49 * time.Hour)); g.State != StateExpired || g.Satisfied || g.Approvals != 0 {
		t.Fatalf("after expiry: gate %s %+v", g, g)
	}

	all, err := Gates(o.ctx, o.st, o.trust, AllTenants, t0.Add(4*time.Hour))
	if err != nil || len(all) != 1 || all[0].String() != "approved 2/2" {
		t.Fatalf("gates: %+v %v", all, err)
	}
	if none, err := Gates(o.ctx, o.st, o.trust, "globex", t0); err != nil || len(none) != 0 {
		t.Fatalf("gates of another tenant: %+v %v", none, err)
	}
}

func TestRejection(t *testing.T) {
	o := newOperator(t)
	_, reqPath := o.request(t0)
	_, pathA := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Minute))
	if _, err := o.accept(pathA, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	respB, pathB := approverSign(t, reqPath, o.bob, Reject, t0.Add(2*time.Hour))
	out, err := o.accept(pathB, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if out.Gate.State != StateRejected || out.Gate.Satisfied || out.Decision != Reject || out.Response != respB.Descriptor.Digest {
		t.Fatalf("rejection: %+v", out)
	}
	if out.Gate.Requests[0].Status != StateRejected {
		t.Fatalf("request status after rejection: %+v", out.Gate.Requests)
	}
	// A decision after the rejection is refused.
	_, pathC := approverSign(t, reqPath, o.carol, Approve, t0.Add(3*time.Hour))
	o.expectRefused(pathC, t0.Add(3*time.Hour), ErrGateRejected, "gate-rejected")
	// Nor may an approver at the console decide on it.
	n := len(o.ledger())
	if _, err := Decide(o.ctx, o.st, LocalDecision{PlanHash: o.fx.hash, Gate: testGate, Signer: o.carol, Decision: Approve,
		Trust: o.trust, Now: t0.Add(3 * time.Hour)}); !errors.Is(err, ErrGateRejected) {
		t.Fatalf("local decision on a rejected gate: %v", err)
	}
	if l := o.ledger(); len(l) != n+1 || l[n].Reason != "gate-rejected" || l[n].KeyID != o.carol.ID() {
		t.Fatalf("ledger after a refused local decision: %+v", l[n:])
	}
	// And no new request can reopen the gate.
	if _, err := NewRequest(o.ctx, o.st, RequestOptions{PlanHash: o.fx.hash, Gate: testGate, Requester: "ops", Now: t0.Add(4 * time.Hour), Trust: o.trust}); !errors.Is(err, ErrGateRejected) {
		t.Fatalf("new request on a rejected gate: %v", err)
	}
	if diff := cmp.Diff([]string{"request", "decision:approve", "decision:reject", "refusal:gate-rejected", "refusal:gate-rejected"}, events(o.ledger())); diff != "" {
		t.Errorf("ledger events (-want +got):\n%s", diff)
	}
}

func TestDuplicateIsNoop(t *testing.T) {
	o := newOperator(t)
	_, reqPath := o.request(t0)
	_, pathA := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Minute))
	first, err := o.accept(pathA, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	n := len(o.ledger())
	again, err := o.accept(pathA, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Response != first.Response || again.Gate.String() != "approved 1/2" {
		t.Fatalf("second import: %+v", again)
	}
	if len(o.ledger()) != n {
		t.Fatal("a duplicate import appended to the ledger")
	}
	if g := o.gate(t0.Add(2 * time.Hour)); len(g.Decisions) != 1 {
		t.Fatalf("duplicate recorded: %+v", g.Decisions)
	}
}

func TestDecideLocal(t *testing.T) {
	o := newOperator(t)
	d := LocalDecision{PlanHash: o.fx.hash[:7+16], Gate: testGate, Signer: o.alice, Decision: Approve, Comment: "at the console",
		Trust: o.trust, Now: t0, Rand: o.rnd}
	out, err := Decide(o.ctx, o.st, d)
	if err != nil {
		t.Fatal(err)
	}
	if out.Gate.String() != "approved 1/2" || out.Gate.Tenant != testTenant || len(out.Gate.Requests) != 1 {
		t.Fatalf("first local decision: %+v", out.Gate)
	}
	d.Signer, d.Now = o.bob, t0.Add(time.Minute)
	out, err = Decide(o.ctx, o.st, d)
	if err != nil {
		t.Fatal(err)
	}
	if out.Gate.String() != "approved 2/2" || len(out.Gate.Requests) != 1 {
		t.Fatalf("second local decision used another request or did not count: %+v", out.Gate)
	}
	// An untrusted key at the console goes through the same checks.
	o2 := newOperator(t)
	d2 := LocalDecision{PlanHash: o2.fx.hash, Gate: testGate, Signer: o2.mallory, Decision: Approve, Trust: o2.trust, Now: t0}
	if _, err := Decide(o2.ctx, o2.st, d2); !errors.Is(err, trust.ErrUnknownKey) {
		t.Fatalf("local decision by an unknown key: %v", err)
	}
	if got := events(o2.ledger()); len(got) != 2 || got[1] != "refusal:unknown-key" {
		t.Fatalf("ledger after refused local decision: %v", got)
	}
	if g := o2.gate(t0); g.State != StatePending || len(g.Decisions) != 0 {
		t.Fatalf("gate after refused local decision: %s", g)
	}
}

func TestExpiryObservedOnce(t *testing.T) {
	o := newOperator(t)
	_, reqPath := o.request(t0)
	late := t0.Add(48*time.Hour + time.Second)
	if g := o.gate(late); g.State != StateExpired || g.Requests[0].Status != StateExpired {
		t.Fatalf("gate past expiry: %s %+v", g, g.Requests)
	}
	o.gate(late.Add(time.Hour))
	if _, err := Gates(o.ctx, o.st, o.trust, testTenant, late.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"request", "expiry"}, events(o.ledger())); diff != "" {
		t.Errorf("ledger events (-want +got):\n%s", diff)
	}
	// The approver refuses to sign an expired request.
	s, err := Review(o.ctx, reqPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(o.ctx, s, o.alice, Decision{Verdict: Approve}, late); !errors.Is(err, ErrExpired) {
		t.Fatalf("sign an expired request: %v", err)
	}
	// A new request reopens the gate.
	o.request(late)
	if g := o.gate(late); g.State != StatePending || len(g.Requests) != 2 {
		t.Fatalf("gate after a new request: %s", g)
	}
}

func TestNewRequestChecks(t *testing.T) {
	o := newOperator(t)
	cases := []struct {
		name string
		opts RequestOptions
		want error
	}{
		{"unknown plan", RequestOptions{PlanHash: "sha256:" + digest.FromString("x").Encoded(), Gate: testGate, Requester: "ops"}, plans.ErrNotFound},
		{"short prefix", RequestOptions{PlanHash: o.fx.hash[:7+8], Gate: testGate, Requester: "ops"}, plans.ErrNotFound},
		{"a step that is no gate", RequestOptions{PlanHash: o.fx.hash, Gate: "patch", Requester: "ops"}, ErrGateNotFound},
		{"no such step", RequestOptions{PlanHash: o.fx.hash, Gate: "nosuch", Requester: "ops"}, ErrGateNotFound},
		{"no requester", RequestOptions{PlanHash: o.fx.hash, Gate: testGate}, ErrInvalidInput},
		{"bad tenant", RequestOptions{PlanHash: o.fx.hash, Gate: testGate, Requester: "ops", Tenant: "a b"}, ErrInvalidInput},
	}
	cases = append(cases, struct {
		name string
		opts RequestOptions
		want error
	}{"no trust store", RequestOptions{PlanHash: o.fx.hash, Gate: testGate, Requester: "ops"}, ErrInvalidInput})
	for i, c := range cases {
		if i < len(cases)-1 {
			c.opts.Trust = o.trust
		}
		t.Run(c.name, func(t *testing.T) {
			_, err := NewRequest(o.ctx, o.st, c.opts)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			// Why the gate is not one, and which are.
			why := map[string]string{"a step that is no gate": `that step of the plan asks for no approval (status "pending")`,
				"no such step": "the plan has no step of that id"}[c.name]
			if why != "" && !strings.HasSuffix(err.Error(), why+`; the plan's approval gates: "`+testGate+`"`) {
				t.Fatalf("error says %q, want it to end %q and the gates", err, why)
			}
		})
	}
	if l := o.ledger(); len(l) != 0 {
		t.Fatalf("failed requests wrote the ledger: %v", events(l))
	}
}

// TestPackSubjectSize: without the pack size recorded with the plan, the
// request needs the pack in the cache, and takes its manifest size there.
func TestPackSubjectSize(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := cachetest.Open(t, VerifyHook())
	sp, err := plans.Save(ctx, st, fx.canonical, plans.Meta{Tenant: testTenant})
	if err != nil {
		t.Fatal(err)
	}
	opts := RequestOptions{PlanHash: fx.hash, Gate: testGate, Requester: "ops", Now: t0, Trust: &trust.Store{}}
	if _, err := NewRequest(ctx, st, opts); !errors.Is(err, ErrPackNotFound) {
		t.Fatalf("request without a known pack size: %v", err)
	}
	if _, err := st.Import(ctx, fx.artifact, []cache.Artifact{{Descriptor: fx.artifact.Manifest, Kind: artifact.KindPack, Ref: sp.PackRef}},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	req, err := NewRequest(ctx, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := readRequestArtifact(ctx, st, req.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	if ra.subject.Size != fx.artifact.Manifest.Size || ra.subject.Digest != fx.artifact.Digest() {
		t.Fatalf("subject %+v, want the pack manifest %+v", ra.subject, fx.artifact.Manifest)
	}
	got, err := LoadRequest(ctx, st, req.Ref)
	if err != nil || got.Descriptor.Digest != req.Descriptor.Digest || got.Doc.Nonce != req.Doc.Nonce {
		t.Fatalf("load request by ref: %+v %v", got, err)
	}
}

// TestAcceptMissingFile: a file that is not there is not a refusal: nothing
// is written to the ledger.
func TestAcceptMissingFile(t *testing.T) {
	o := newOperator(t)
	o.request(t0)
	if _, err := o.accept(filepath.Join(o.media, "absent.stella.tar"), t0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("accept of a missing file: %v", err)
	}
	if _, err := Accept(o.ctx, o.st, "x", AcceptOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("accept without a trust store: %v", err)
	}
	if got := events(o.ledger()); len(got) != 1 {
		t.Fatalf("ledger: %v", got)
	}
}

// planBytes reads the plan layer of a request artifact, checked.
func planBytes(t testing.TB, ctx context.Context, ra *requestArtifact) []byte {
	t.Helper()
	rc, err := ra.openPlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
