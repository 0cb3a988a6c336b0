package approve

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/plans"
)

// ledgerOperator is an operator whose cache is not checked on the way out
// (the tests below damage its ledger on purpose), with four entries:
// request, decision, refusal, decision.
func ledgerOperator(t *testing.T) *operator {
	t.Helper()
	o := newOperator(t)
	st, err := cache.Open(o.ctx, t.TempDir(), cache.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o.st = st
	if _, err := plans.Save(o.ctx, st, o.fx.canonical, plans.Meta{Tenant: testTenant, PackSize: o.fx.artifact.Manifest.Size}); err != nil {
		t.Fatal(err)
	}
	_, reqPath := o.request(t0)
	_, a := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Minute))
	_, m := approverSign(t, reqPath, o.mallory, Approve, t0.Add(time.Minute))
	_, b := approverSign(t, reqPath, o.bob, Approve, t0.Add(time.Minute))
	if _, err := o.accept(a, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := o.accept(m, t0.Add(time.Hour)); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := o.accept(b, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := events(o.ledger()); !slices.Equal(got, []string{"request", "decision:approve", "refusal:unknown-key", "decision:approve"}) {
		t.Fatalf("ledger: %v", got)
	}
	return o
}

func problemCodes(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Object+" "+p.Problem)
	}
	return out
}

func TestLedgerIntact(t *testing.T) {
	o := ledgerOperator(t)
	ps, err := VerifyLedger(o.ctx, o.st)
	if err != nil || len(ps) != 0 {
		t.Fatalf("intact ledger: %v %v", err, problemCodes(ps))
	}
	l := o.ledger()
	for i, e := range l {
		if e.Seq != uint64(i+1) {
			t.Errorf("entry %d has seq %d", i, e.Seq)
		}
		if i > 0 && e.Prev != l[i-1].Hash {
			t.Errorf("entry %d prev %s, want %s", e.Seq, e.Prev, l[i-1].Hash)
		}
		if h, _ := e.ComputeHash(); h != e.Hash {
			t.Errorf("entry %d hash %s, computed %s", e.Seq, e.Hash, h)
		}
	}
	if l[0].Prev != "" {
		t.Errorf("first entry prev %q", l[0].Prev)
	}
	if l[2].KeyID != o.mallory.ID() || l[2].Reason != "unknown-key" || l[2].RequestDigest != l[0].RequestDigest {
		t.Errorf("refusal entry: %+v", l[2])
	}
}

func TestLedgerTamper(t *testing.T) {
	rewrite := func(fn func(e *Entry)) func(tx cache.RecordTx) error {
		return func(tx cache.RecordTx) error {
			var e Entry
			if err := json.Unmarshal(tx.Get(bucketLedger, seqKey(2)), &e); err != nil {
				return err
			}
			fn(&e)
			raw, err := e.Canonical()
			if err != nil {
				return err
			}
			return tx.Put(bucketLedger, seqKey(2), raw)
		}
	}
	cases := []struct {
		name   string
		tamper func(tx cache.RecordTx) error
		want   []string
	}{
		{"altered entry", rewrite(func(e *Entry) { e.Decision = "reject" }),
			[]string{"ledger entry 2 ledger-entry-altered"}},
		{"altered entry with its hash recomputed", rewrite(func(e *Entry) {
			e.KeyID = "sha256:0000"
			e.Hash, _ = e.ComputeHash()
		}), []string{"ledger entry 3 ledger-chain-broken"}},
		{"removed entry", func(tx cache.RecordTx) error { return tx.Delete(bucketLedger, seqKey(2)) },
			[]string{"ledger entry 3 ledger-entry-missing", "ledger entry 3 ledger-chain-broken"}},
		{"removed last entry", func(tx cache.RecordTx) error { return tx.Delete(bucketLedger, seqKey(4)) },
			[]string{"ledger head ledger-head-mismatch"}},
		{"reordered entries", func(tx cache.RecordTx) error {
			two, three := slices.Clone(tx.Get(bucketLedger, seqKey(2))), slices.Clone(tx.Get(bucketLedger, seqKey(3)))
			if err := tx.Put(bucketLedger, seqKey(2), three); err != nil {
				return err
			}
			return tx.Put(bucketLedger, seqKey(3), two)
		}, []string{"ledger entry 2 ledger-entry-moved", "ledger entry 2 ledger-chain-broken",
			"ledger entry 3 ledger-entry-moved", "ledger entry 3 ledger-chain-broken", "ledger entry 4 ledger-chain-broken"}},
		{"undecodable entry", func(tx cache.RecordTx) error { return tx.Put(bucketLedger, seqKey(2), []byte("{")) },
			[]string{"ledger entry 2 ledger-entry-invalid", "ledger entry 3 ledger-chain-broken"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ledgerOperator(t)
			if err := update(o.ctx, o.st, c.tamper); err != nil {
				t.Fatal(err)
			}
			ps, err := VerifyLedger(o.ctx, o.st)
			if err != nil {
				t.Fatal(err)
			}
			if got := problemCodes(ps); !slices.Equal(got, c.want) {
				t.Fatalf("problems %q, want %q", got, c.want)
			}
			// stella cache verify sees them through the hook.
			rep, err := o.st.Verify(context.Background(), cache.VerifyOptions{Hooks: []cache.VerifyHook{VerifyHook()}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !slices.ContainsFunc(rep.Problems, func(p cache.Problem) bool { return p.Source == LedgerSource }) {
				t.Fatalf("cache verify with the hook: %+v", rep.Problems)
			}
			// Appending after the damage does not hide it.
			o.request(t0.Add(100 * time.Hour)) // the approvals expired: a new request
			ps, err = VerifyLedger(o.ctx, o.st)
			if err != nil || len(ps) == 0 {
				t.Fatalf("after appending, problems %q (%v)", problemCodes(ps), err)
			}
		})
	}
}
