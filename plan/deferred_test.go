package plan

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
)

// TestRunTimeExpansionMatchesPlanTime plans sync-vuln-db twice: once with
// the load map over inputs.scanners (expanded when planning), once over a
// step output (deferred). Expanding the deferred step at run time over the
// same items must give exactly the steps planning gave.
func TestRunTimeExpansionMatchesPlanTime(t *testing.T) {
	raw, err := os.ReadFile("../testdata/packs/sync-vuln-db/inputs.json")
	if err != nil {
		t.Fatal(err)
	}
	build := func(items string) (*pack.Pack, *Plan) {
		fsys := copyPack(t, "../testdata/packs/sync-vuln-db")
		f := fsys["pack.yaml"]
		f.Data = []byte(strings.Replace(string(f.Data), "items: inputs.scanners", "items: "+items, 1))
		p, err := pack.Load(fsys)
		if err != nil {
			t.Fatal(err)
		}
		in, err := p.ResolveInputs("inputs.json", raw)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Build(p, digest.Digest("sha256:"+strings.Repeat("0", 64)), in)
		if err != nil {
			t.Fatal(err)
		}
		return p, pl
	}
	_, literal := build("inputs.scanners")
	p, deferred := build(`steps."verify-snapshot".outputs.ageDays`)

	want := literal.Steps[2]
	if want.Deferred || len(want.Children) != 6 {
		t.Fatalf("literal map: deferred %v, %d children; want 6 children", want.Deferred, len(want.Children))
	}
	step := &deferred.Steps[2]
	if !step.Deferred || len(step.Children) != 0 {
		t.Fatalf("map over a step output: deferred %v, %d children", step.Deferred, len(step.Children))
	}

	// The runner evaluates the items with the finished steps' outputs.
	items, err := deferred.Items(step, Scope{Steps: map[string]any{
		"verify-snapshot": map[string]any{"outputs": map[string]any{"ageDays": deferred.Inputs["scanners"]}}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(deferred.Inputs["scanners"], any(items)); diff != "" {
		t.Fatalf("items (-want +got):\n%s", diff)
	}
	exp, err := deferred.Expand(p.Manifest, step, items)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Children, exp.Steps); diff != "" {
		t.Errorf("run-time expansion differs from plan-time (-plan +run):\n%s", diff)
	}
	if len(exp.Approvals) != 0 {
		t.Errorf("approvals: %+v", exp.Approvals)
	}

	// Nothing to expand over gives no steps; items that are not a list, a
	// step that is not deferred or is not in the manifest are refused.
	if exp, err := deferred.Expand(p.Manifest, step, nil); err != nil || len(exp.Steps) != 0 {
		t.Errorf("no items: %v, %v", exp, err)
	}
	if _, err := deferred.Items(step, Scope{Steps: map[string]any{
		"verify-snapshot": map[string]any{"outputs": map[string]any{"ageDays": 3.0}}}}); !errors.Is(err, ErrExpansion) {
		t.Errorf("items not a list: %v", err)
	}
	if _, err := literal.Expand(p.Manifest, &literal.Steps[2], items); !errors.Is(err, ErrExpansion) {
		t.Errorf("expanding a step expanded when planning: %v", err)
	}
	other := *step
	other.ID, other.Items = "nope", "steps.x.outputs.y"
	if _, err := deferred.Expand(p.Manifest, &other, items); !errors.Is(err, ErrExpansion) {
		t.Errorf("a step not in the manifest: %v", err)
	}
}

// TestRunTimeExpansionOfGates: gates in an expanded body need approvers,
// as they would when planned, under their expanded ids.
func TestRunTimeExpansionOfGates(t *testing.T) {
	fsys := copyPack(t, "../testdata/packs/sync-vuln-db")
	f := fsys["pack.yaml"]
	y := string(f.Data)
	y = strings.Replace(y, "items: inputs.scanners", `items: steps."verify-snapshot".outputs.ageDays`, 1)
	y = strings.Replace(y, "          - id: smoke-test\n", "          - id: scanner-owner\n            gate:\n              approval: owner\n          - id: smoke-test\n", 1)
	y = strings.Replace(y, "  steps:\n", "  approvals:\n    - id: owner\n      role: Packs.Approve\n      minApprovers: 1\n      expiresAfter: 1h\n  steps:\n", 1)
	f.Data = []byte(y)
	p, err := pack.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile("../testdata/packs/sync-vuln-db/inputs.json")
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, digest.Digest("sha256:"+strings.Repeat("0", 64)), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Approvals) != 0 {
		t.Fatalf("a gate in a deferred body is not planned: %+v", pl.Approvals)
	}
	exp, err := pl.Expand(p.Manifest, &pl.Steps[2], []any{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Approval{
		{Gate: "load[0]::scanner-owner", Approval: "owner", Role: "Packs.Approve", MinApprovers: 1, ExpiresAfter: "1h0m0s"},
		{Gate: "load[1]::scanner-owner", Approval: "owner", Role: "Packs.Approve", MinApprovers: 1, ExpiresAfter: "1h0m0s"},
	}
	if diff := cmp.Diff(want, exp.Approvals); diff != "" {
		t.Errorf("approvals (-want +got):\n%s", diff)
	}
	if got := exp.Steps[1]; got.ID != "load[0]::scanner-owner" || got.Status != StatusRequiresApproval || *got.Index != 0 {
		t.Errorf("gate step: %+v", got)
	}
}
