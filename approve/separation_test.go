package approve

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/signature"
	"stellaops.io/stella/trust"
)

// savePlanWithRole saves, in o's cache, the plan of the sample pack with
// its gate's role changed to role, and returns the plan's hash.
func (o *operator) savePlanWithRole(role string) string {
	o.t.Helper()
	dir := filepath.Join(o.t.TempDir(), "pack")
	if err := os.CopyFS(dir, os.DirFS(packDir)); err != nil {
		o.t.Fatal(err)
	}
	y := filepath.Join(dir, "pack.yaml")
	b, err := os.ReadFile(y)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := os.WriteFile(y, []byte(strings.Replace(string(b), "role: Packs.Approve", "role: "+role, 1)), 0o644); err != nil {
		o.t.Fatal(err)
	}
	p, err := pack.LoadDir(dir)
	if err != nil {
		o.t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		o.t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
	if err != nil {
		o.t.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		o.t.Fatal(err)
	}
	pl, err := plan.Build(p, a.Digest(), in)
	if err != nil {
		o.t.Fatal(err)
	}
	c, err := pl.Canonical()
	if err != nil {
		o.t.Fatal(err)
	}
	sp, err := plans.Save(o.ctx, o.st, c, plans.Meta{Tenant: testTenant, SavedAt: t0.Add(-time.Hour), PackSize: a.Manifest.Size})
	if err != nil {
		o.t.Fatal(err)
	}
	return string(sp.Hash)
}

func genPair(t testing.TB) *keys.Pair {
	t.Helper()
	k, err := keys.Generate(keys.AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGateRoleNotApprover: a gate whose role cannot approve (publisher,
// Packs.Run, an undeclared role) gets no request and no approval; a
// declared role does.
func TestGateRoleNotApprover(t *testing.T) {
	o := newOperator(t)
	hashes := map[string]string{}
	for _, role := range []string{trust.RolePublisher, trust.RoleRun, "Change.Board"} {
		h := o.savePlanWithRole(role)
		hashes[role] = h
		_, err := NewRequest(o.ctx, o.st, RequestOptions{PlanHash: h, Gate: testGate, Requester: "ops", Now: t0, Trust: o.trust})
		if !errors.Is(err, trust.ErrNotApproverRole) || !strings.Contains(err.Error(), role) {
			t.Fatalf("request for a gate of role %s: %v, want ErrNotApproverRole naming it", role, err)
		}
		// The publisher's local decision is refused the same way.
		_, err = Decide(o.ctx, o.st, LocalDecision{PlanHash: h, Gate: testGate, Signer: o.publisher, Decision: Approve,
			Trust: o.trust, Now: t0})
		if !errors.Is(err, trust.ErrNotApproverRole) {
			t.Fatalf("local decision on a gate of role %s: %v, want ErrNotApproverRole", role, err)
		}
	}

	// The site declares Change.Board: dave, who holds it, may approve.
	if err := o.trust.SetPolicy(trust.Policy{ApproverRoles: []string{"Change.Board"}}); err != nil {
		t.Fatal(err)
	}
	dave := genPair(t)
	if err := o.trust.Add("dave", dave.PublicPEM(), []string{"Change.Board"}, []string{testTenant}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	h := hashes["Change.Board"]
	req, err := NewRequest(o.ctx, o.st, RequestOptions{PlanHash: h, Gate: testGate, Requester: "ops", Now: t0, Trust: o.trust})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.media, "board-request.stella.tar")
	if _, err := WriteRequestBundle(o.ctx, o.st, req, path); err != nil {
		t.Fatal(err)
	}
	_, resp := approverSign(t, path, dave, Approve, t0.Add(time.Minute))
	// Alice holds Packs.Approve, not Change.Board: her approval does not do.
	_, aliceResp := approverSign(t, path, o.alice, Approve, t0.Add(time.Minute))
	if _, err := o.accept(aliceResp, t0.Add(2*time.Minute)); !errors.Is(err, trust.ErrRoleMissing) {
		t.Fatalf("Packs.Approve key on a Change.Board gate: %v, want ErrRoleMissing", err)
	}
	out, err := o.accept(resp, t0.Add(2*time.Minute))
	if err != nil || out.Gate.Approvals != 1 {
		t.Fatalf("declared approver role: %+v, %v", out, err)
	}

	// A trust store without the declaration (changed by hand) refuses the
	// next answer, and no longer counts dave's.
	plain := &trust.Store{}
	if err := plain.Add("erin", o.carol.PublicPEM(), []string{trust.RoleApprove}, []string{"*"}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, carolResp := approverSign(t, path, o.carol, Approve, t0.Add(3*time.Minute))
	_, err = Accept(o.ctx, o.st, carolResp, AcceptOptions{Trust: plain, Now: t0.Add(4 * time.Minute)})
	if !errors.Is(err, trust.ErrNotApproverRole) || Reason(err) != "not-approver-role" {
		t.Fatalf("answer to a gate whose role the site no longer declares: %v", err)
	}
	gs, err := Gate(o.ctx, o.st, plain, testTenant, h, testGate, t0.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if gs.Approvals != 0 || gs.Decisions[0].Void != "role Change.Board is not an approver role" {
		t.Fatalf("gate after the role was withdrawn: %d approvals, void %q", gs.Approvals, gs.Decisions[0].Void)
	}
}

// TestSelfApproval: the key that signed the pack may not approve its gate,
// unless the site's policy allows it.
func TestSelfApproval(t *testing.T) {
	o := newOperator(t)
	// ops publishes and approves.
	ops := genPair(t)
	if err := o.trust.Add("ops", ops.PublicPEM(), []string{trust.RolePublisher, trust.RoleApprove}, []string{testTenant}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := o.fx.artifact
	if _, err := o.st.Import(o.ctx, a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	sig, err := signature.Sign(o.ctx, ops, a.Manifest, a.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.st.Import(o.ctx, sig, []cache.Artifact{{Descriptor: sig.Manifest, Kind: artifact.KindSignature}},
		cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}

	_, path := o.request(t0)
	_, resp := approverSign(t, path, ops, Approve, t0.Add(time.Minute))
	err = o.expectRefused(resp, t0.Add(2*time.Minute), ErrSelfApproval, "self-approval")
	for _, want := range []string{ops.ID(), testGate, string(a.Manifest.Digest)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("self-approval refusal %q does not name %s", err, want)
		}
	}

	// The site allows it explicitly: accepted.
	if err := o.trust.SetPolicy(trust.Policy{AllowSelfApproval: true}); err != nil {
		t.Fatal(err)
	}
	out, err := o.accept(resp, t0.Add(3*time.Minute))
	if err != nil || out.Gate.Approvals != 1 {
		t.Fatalf("self-approval allowed by policy: %+v, %v", out, err)
	}
	// Turned off again: the approval no longer counts, and the ledger says so.
	if err := o.trust.SetPolicy(trust.Policy{}); err != nil {
		t.Fatal(err)
	}
	gs := o.gate(t0.Add(4 * time.Minute))
	if gs.Approvals != 0 || gs.Decisions[0].Void != "key signed the pack" {
		t.Fatalf("gate after self-approval was disallowed: %d approvals, void %q", gs.Approvals, gs.Decisions[0].Void)
	}
	if l := o.ledger(); l[len(l)-1].Event != EventVoid || l[len(l)-1].KeyID != ops.ID() {
		t.Fatalf("last ledger entry %+v, want a void of ops' approval", l[len(l)-1])
	}
}

// TestRevocationTakesEffect: an approver's key revoked or removed after it
// approved stops counting at once: the gate is no longer satisfied, its
// request is open again, the ledger records a void entry (once) and still
// verifies, and the approval stays void even if the key comes back.
func TestRevocationTakesEffect(t *testing.T) {
	for _, how := range []string{"revoke", "remove"} {
		t.Run(how, func(t *testing.T) {
			o := newOperator(t)
			_, path := o.request(t0)
			_, alice := approverSign(t, path, o.alice, Approve, t0.Add(time.Minute))
			_, bob := approverSign(t, path, o.bob, Approve, t0.Add(time.Minute))
			for _, r := range []string{alice, bob} {
				if _, err := o.accept(r, t0.Add(2*time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			if gs := o.gate(t0.Add(3 * time.Minute)); !gs.Satisfied {
				t.Fatalf("gate before revocation: %s", gs)
			}
			at := t0.Add(4 * time.Minute)
			want := "key revoked " + at.Format(time.RFC3339)
			if how == "revoke" {
				if err := o.trust.Revoke("alice", at); err != nil {
					t.Fatal(err)
				}
			} else {
				want = "key removed from the trust store"
				if err := o.trust.Remove("alice"); err != nil {
					t.Fatal(err)
				}
			}
			n := len(o.ledger())
			gs := o.gate(t0.Add(5 * time.Minute))
			if gs.Satisfied || gs.String() != "approved 1/2" || gs.Decisions[0].Void != want || gs.Decisions[1].Void != "" {
				t.Fatalf("gate after %s: %s, voids %q %q", how, gs, gs.Decisions[0].Void, gs.Decisions[1].Void)
			}
			if gs.Requests[0].Status != StatePending {
				t.Fatalf("request after %s: %s, want pending again", how, gs.Requests[0].Status)
			}
			l := o.ledger()
			if len(l) != n+1 || l[n].Event != EventVoid || l[n].KeyID != o.alice.ID() || l[n].Reason != want || l[n].Decision != "approve" {
				t.Fatalf("ledger after %s: %+v", how, l[n:])
			}
			// Seen again: no second entry.
			o.gate(t0.Add(6 * time.Minute))
			if len(o.ledger()) != n+1 {
				t.Fatalf("void recorded twice")
			}
			if problems, err := VerifyLedger(o.ctx, o.st); err != nil || len(problems) > 0 {
				t.Fatalf("ledger with a void entry: %v %+v", err, problems)
			}
			// The request is open again: carol's approval completes the gate.
			_, carol := approverSign(t, path, o.carol, Approve, t0.Add(7*time.Minute))
			if out, err := o.accept(carol, t0.Add(8*time.Minute)); err != nil || !out.Gate.Satisfied {
				t.Fatalf("carol after %s: %+v, %v", how, out, err)
			}
			// Alice's key back under another name: her old approval stays void.
			if how == "remove" {
				if err := o.trust.Add("alice2", o.alice.PublicPEM(), []string{trust.RoleApprove}, []string{testTenant}, at); err != nil {
					t.Fatal(err)
				}
				if gs := o.gate(t0.Add(9 * time.Minute)); gs.Approvals != 2 || gs.Decisions[0].Void != want {
					t.Fatalf("gate after alice's key came back: %s, void %q", gs, gs.Decisions[0].Void)
				}
			}
		})
	}
}
