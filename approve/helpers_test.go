package approve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/trust"
)

const (
	testTenant = "acme"
	testGate   = "change-board" // remediate-cve: minApprovers 2, expiresAfter 48h
	packDir    = "../testdata/packs/remediate-cve"
)

// t0 is the time the operator makes its first request.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fixture is the built sample pack and its plan.
type fixture struct {
	artifact  *artifact.Pack
	canonical []byte
	hash      string
}

func loadFixture(t testing.TB) fixture {
	t.Helper()
	p, err := pack.LoadDir(packDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(packDir, "inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := plan.Build(p, a.Digest(), in)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pl.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{artifact: a, canonical: c, hash: string(plan.HashBytes(c))}
}

// operator is the sealed operator's home: a cache with the plan saved, a
// trust store, and the approvers' keys (each approver keeps the private key
// in their own home; the operator only trusts the public halves).
type operator struct {
	t     *testing.T
	ctx   context.Context
	st    *cache.Store
	fx    fixture
	plan  *plans.Saved
	trust *trust.Store
	media string // where bundles are carried

	alice, bob, carol                  *keys.Pair // Packs.Approve for acme
	mallory, revoked, publisher, other *keys.Pair
	rnd                                *rand.ChaCha8
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	o := &operator{t: t, ctx: context.Background(), fx: loadFixture(t), media: t.TempDir(),
		trust: &trust.Store{}, rnd: rand.NewChaCha8([32]byte{1})}
	o.st = cachetest.Open(t, VerifyHook())
	sp, err := plans.Save(o.ctx, o.st, o.fx.canonical, plans.Meta{Tenant: testTenant, SavedAt: t0.Add(-time.Hour),
		PackSize: o.fx.artifact.Manifest.Size})
	if err != nil {
		t.Fatal(err)
	}
	o.plan = sp
	gen := func() *keys.Pair {
		k, err := keys.Generate(keys.AlgEd25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	o.alice, o.bob, o.carol = gen(), gen(), gen()
	o.mallory, o.revoked, o.publisher, o.other = gen(), gen(), gen(), gen()
	add := func(name string, k *keys.Pair, roles, tenants []string) {
		if err := o.trust.Add(name, k.PublicPEM(), roles, tenants, t0.Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	approve := []string{trust.RoleApprove}
	add("alice", o.alice, approve, []string{testTenant})
	add("bob", o.bob, approve, []string{testTenant})
	add("carol", o.carol, approve, []string{trust.AnyTenant})
	add("revoked", o.revoked, approve, []string{testTenant})
	add("publisher", o.publisher, []string{trust.RolePublisher}, []string{testTenant})
	add("other", o.other, approve, []string{"globex"})
	if err := o.trust.Revoke("revoked", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	return o
}

// request issues a request at now and writes its bundle to the media.
func (o *operator) request(now time.Time) (*Request, string) {
	o.t.Helper()
	req, err := NewRequest(o.ctx, o.st, RequestOptions{PlanHash: o.fx.hash, Gate: testGate, Requester: "ops@sealed-1", Trust: o.trust,
		Now: now, Rand: o.rnd})
	if err != nil {
		o.t.Fatal(err)
	}
	path := filepath.Join(o.media, "request-"+req.Doc.Nonce[:8]+".stella.tar")
	if _, err := WriteRequestBundle(o.ctx, o.st, req, path); err != nil {
		o.t.Fatal(err)
	}
	return req, path
}

// approver reviews a request bundle in a home of its own and signs a
// response bundle there; it returns the response and its bundle's path.
func approverSign(t *testing.T, requestPath string, key *keys.Pair, v Verdict, now time.Time) (*Response, string) {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	local := filepath.Join(home, "request.stella.tar")
	copyFile(t, requestPath, local)
	s, err := Review(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Sign(ctx, s, key, Decision{Verdict: v, Comment: "checked the plan\nlooks right"}, now)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(home, "response.stella.tar")
	if _, err := WriteResponseBundle(ctx, resp, out); err != nil {
		t.Fatal(err)
	}
	return resp, out
}

func (o *operator) accept(path string, now time.Time) (*Outcome, error) {
	return Accept(o.ctx, o.st, path, AcceptOptions{Trust: o.trust, Now: now, ClockSkew: 5 * time.Minute})
}

func (o *operator) gate(now time.Time) GateState {
	o.t.Helper()
	gs, err := Gate(o.ctx, o.st, o.trust, testTenant, o.fx.hash, testGate, now)
	if err != nil {
		o.t.Fatal(err)
	}
	return *gs
}

func (o *operator) ledger() []Entry {
	o.t.Helper()
	l, err := Ledger(o.ctx, o.st)
	if err != nil {
		o.t.Fatal(err)
	}
	return l
}

// writeResponse writes resp to a bundle on the media.
func (o *operator) writeResponse(resp *Response) string {
	o.t.Helper()
	path := filepath.Join(o.media, fmt.Sprintf("response-%s.stella.tar", resp.Descriptor.Digest.Encoded()[:12]))
	if _, err := WriteResponseBundle(o.ctx, resp, path); err != nil {
		o.t.Fatal(err)
	}
	return path
}

// expectRefused imports path at now and checks the refusal: the error is
// want, the gate's state did not change, and exactly one refusal entry
// with reason was appended to an intact ledger.
func (o *operator) expectRefused(path string, now time.Time, want error, reason string) error {
	o.t.Helper()
	before := o.gate(now)
	entries := o.ledger()
	responses := o.responses()
	out, err := o.accept(path, now)
	if !errors.Is(err, want) {
		o.t.Fatalf("accept: got %v (outcome %+v), want %v", err, out, want)
	}
	if diff := cmp.Diff(before, o.gate(now)); diff != "" {
		o.t.Errorf("gate state changed by a refused response (-before +after):\n%s", diff)
	}
	if got := o.responses(); got != responses {
		o.t.Errorf("a refused response was stored in the cache: %d responses, had %d", got, responses)
	}
	after := o.ledger()
	if len(after) != len(entries)+1 {
		o.t.Fatalf("ledger grew by %d entries, want 1", len(after)-len(entries))
	}
	last := after[len(after)-1]
	if last.Event != EventRefusal || last.Reason != reason {
		o.t.Errorf("last ledger entry: event %q reason %q, want refusal %q", last.Event, last.Reason, reason)
	}
	if problems, err := VerifyLedger(o.ctx, o.st); err != nil || len(problems) > 0 {
		o.t.Errorf("ledger after refusal: %v %+v", err, problems)
	}
	return err
}

// responses counts the approval responses in the cache.
func (o *operator) responses() int {
	o.t.Helper()
	l, err := o.st.List(o.ctx, artifact.KindApprovalResponse)
	if err != nil {
		o.t.Fatal(err)
	}
	return len(l)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipByteOf flips one byte of the first occurrence of part in the file.
func flipByteOf(t testing.TB, path string, part []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, part)
	if i < 0 {
		t.Fatalf("%s does not hold the bytes to flip", path)
	}
	b[i+len(part)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
