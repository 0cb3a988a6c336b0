package evidence

import (
	"context"
	"testing"

	"stellaops.io/stella/plan"
)

// FuzzCheckParts feeds arbitrary run, inputs, log and ledger parts to the
// checks that read them after the signature verified (a runner key's
// holder is trusted to sign, not to write well-formed parts): they must
// refuse or accept, never panic.
func FuzzCheckParts(f *testing.F) {
	fx := newFixture(f)
	ev := build(f, fx.in)
	seed := map[string][]byte{}
	for _, p := range ev.Parts {
		seed[p.Title] = p.Data
	}
	f.Add(seed[PartRun], seed[PartInputs], seed[PartLog], seed[PartLedger])
	f.Add([]byte(`{}`), []byte(`{"inputs":null}`), []byte("{}\n{"), []byte(`{"entries":[{"seq":2}],"head":{}}`))
	pl, h, err := plan.Parse(seed[PartPlan])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, runDoc, inputs, log, ledger []byte) {
		v := verifier{rep: &Report{}, trust: fx.trust, pred: ev.Predicate, plan: pl, hash: h,
			parts: map[string][]byte{PartPlan: seed[PartPlan], PartRun: runDoc, PartInputs: inputs, PartLog: log, PartLedger: ledger}}
		ctx := context.Background()
		for _, check := range []func(context.Context) error{v.checkRun, v.checkInputs, v.checkLog, v.checkLedger, v.checkApprovals} {
			_ = check(ctx)
		}
	})
}
