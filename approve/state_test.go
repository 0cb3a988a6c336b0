package approve

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
)

// TestRequestRecordIsTheDocument: a request record holds the request
// document as issued and where its artifact is — no derived flag — and
// which requests a decision closed is derived when read.
func TestRequestRecordIsTheDocument(t *testing.T) {
	o := newOperator(t)
	req, reqPath := o.request(t0)
	_, pathA := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Minute))
	if _, err := o.accept(pathA, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, pathB := approverSign(t, reqPath, o.bob, Approve, t0.Add(2*time.Hour))
	if _, err := o.accept(pathB, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	stored := map[string]any{}
	if err := view(o.ctx, o.st, func(tx cache.RecordTx) error {
		return json.Unmarshal(tx.Get(bucketRequests, []byte(req.Descriptor.Digest)), &stored)
	}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range stored {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"apiVersion", "approval", "expiresAt", "gate", "nonce", "pack", "planHash", "ref", "requestedAt", "requester", "size", "tenant"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("stored request record fields (-want +got):\n%s", diff)
	}
	// Satisfied: the request is closed as approved, and stays so when the
	// approvals expire (the gate is then expired, the request approved).
	if g := o.gate(t0.Add(3 * time.Hour)); g.String() != "approved 2/2" || g.Requests[0].Status != StateApproved {
		t.Fatalf("gate: %s %+v", g, g.Requests)
	}
	if g := o.gate(t0.Add(49 * time.Hour)); g.State != StateExpired || g.Requests[0].Status != StateApproved {
		t.Fatalf("gate after the approvals expired: %s %+v", g, g.Requests)
	}
	// No expiry entry for a request a decision closed.
	if diff := cmp.Diff([]string{"request", "decision:approve", "decision:approve"}, events(o.ledger())); diff != "" {
		t.Errorf("ledger events (-want +got):\n%s", diff)
	}
}

// TestLegacyRequestRecords: records written by the version that stored
// the request's fields one by one, with "closed" and "expiryLogged" flags
// and no apiVersion, read to the same gate states, and no expiry is logged
// twice.
func TestLegacyRequestRecords(t *testing.T) {
	o := newOperator(t)
	_, reqPath := o.request(t0)
	_, pathA := approverSign(t, reqPath, o.alice, Approve, t0.Add(time.Minute))
	if _, err := o.accept(pathA, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, pathB := approverSign(t, reqPath, o.bob, Approve, t0.Add(2*time.Hour))
	if _, err := o.accept(pathB, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A second request after the approvals expired, left to expire.
	later := t0.Add(50 * time.Hour)
	o.request(later)
	end := later.Add(49 * time.Hour)
	before, err := Gates(o.ctx, o.st, o.trust, AllTenants, end)
	if err != nil {
		t.Fatal(err)
	}
	ledger := o.ledger()
	if diff := cmp.Diff([]string{"request", "decision:approve", "decision:approve", "request", "expiry"}, events(ledger)); diff != "" {
		t.Fatalf("ledger events (-want +got):\n%s", diff)
	}

	// Rewrite every request record as the previous version wrote it.
	status := map[digest.Digest]State{}
	for _, r := range before[0].Requests {
		status[r.Digest] = r.Status
	}
	if err := update(o.ctx, o.st, func(tx cache.RecordTx) error {
		var keys [][]byte
		if err := tx.ForEach(bucketRequests, nil, func(k, _ []byte) error {
			keys = append(keys, slices.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			var m map[string]any
			if err := json.Unmarshal(tx.Get(bucketRequests, k), &m); err != nil {
				return err
			}
			delete(m, "apiVersion")
			switch status[digest.Digest(k)] {
			case StateApproved, StateRejected:
				m["closed"] = string(status[digest.Digest(k)])
			case StateExpired:
				m["expiryLogged"] = true
			}
			raw, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketRequests, k, raw); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after, err := Gates(o.ctx, o.st, o.trust, AllTenants, end.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("gate states from legacy records (-new +legacy):\n%s", diff)
	}
	if got := o.ledger(); len(got) != len(ledger) {
		t.Errorf("reading legacy records appended %d ledger entries", len(got)-len(ledger))
	}
}
