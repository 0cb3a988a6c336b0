package approve

import (
	"bytes"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/keys"
)

// TestDecisions: the decisions accepted for a gate come back in the order
// accepted, each with its envelope exactly as signed; a gate never asked
// about has none.
func TestDecisions(t *testing.T) {
	o := newOperator(t)
	h := digest.Digest(o.fx.hash)
	if ds, err := Decisions(o.ctx, o.st, testTenant, h, testGate); err != nil || len(ds) != 0 {
		t.Fatalf("before any request: %v, %v", ds, err)
	}
	_, reqPath := o.request(t0)
	var signed []*Response
	for i, key := range []*keys.Pair{o.alice, o.bob} {
		now := t0.Add(time.Duration(i+1) * time.Minute)
		resp, path := approverSign(t, reqPath, key, Approve, now)
		if _, err := o.accept(path, now); err != nil {
			t.Fatal(err)
		}
		signed = append(signed, resp)
	}
	ds, err := Decisions(o.ctx, o.st, testTenant, h, testGate)
	if err != nil || len(ds) != len(signed) {
		t.Fatalf("got %d decisions (%v), want %d", len(ds), err, len(signed))
	}
	for i, d := range ds {
		want := signed[i]
		if !bytes.Equal(d.Envelope, want.Envelope) || d.Response != want.Descriptor.Digest || d.KeyID != want.Predicate.ApproverKeyID ||
			d.Gate != testGate || d.Decision != Approve || d.Request != want.Predicate.RequestDigest {
			t.Errorf("decision %d: %+v, want the envelope and facts of response %s", i, d, want.Descriptor.Digest)
		}
	}
	if ds, err := Decisions(o.ctx, o.st, "globex", h, testGate); err != nil || len(ds) != 0 {
		t.Fatalf("another tenant: %v, %v", ds, err)
	}
}
