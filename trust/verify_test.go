package trust_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"stellaops.io/stella/keys"
	"stellaops.io/stella/trust"
)

const predicateApproval = "https://stellaops.io/attestations/approval/v1"

var (
	packDigest  = digest.FromString("pack manifest")
	otherDigest = digest.FromString("another manifest")
)

// fixture is a trust store with a publisher (ECDSA, any tenant), an
// approver (Ed25519, tenant acme), a revoked publisher, and a key that is
// not trusted at all.
type fixture struct {
	store                                  *trust.Store
	publisher, approver, revoked, outsider *keys.Pair
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		store:     &trust.Store{},
		publisher: genKey(t, keys.AlgECDSAP256),
		approver:  genKey(t, keys.AlgEd25519),
		revoked:   genKey(t, keys.AlgEd25519),
		outsider:  genKey(t, keys.AlgECDSAP256),
	}
	add := func(name string, p *keys.Pair, role string, tenants ...string) {
		if err := f.store.Add(name, p.PublicPEM(), []string{role}, tenants, t0); err != nil {
			t.Fatal(err)
		}
	}
	add("publisher", f.publisher, trust.RolePublisher, trust.AnyTenant)
	add("approver", f.approver, trust.RoleApprove, "acme")
	add("old-publisher", f.revoked, trust.RolePublisher, trust.AnyTenant)
	if err := f.store.Revoke("old-publisher", t0); err != nil {
		t.Fatal(err)
	}
	return f
}

func statement(t testing.TB, predicateType string, d digest.Digest) keys.Statement {
	t.Helper()
	sub, err := keys.NewSubject("example.io/packs/hello:1.0.0", d)
	if err != nil {
		t.Fatal(err)
	}
	st, err := keys.NewStatement(predicateType, keys.PackSignature{Ref: "example.io/packs/hello:1.0.0", ArtifactType: "application/vnd.stellaops.pack.v1+json"}, sub)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func sign(t testing.TB, p *keys.Pair, st keys.Statement) []byte {
	t.Helper()
	env, err := p.SignStatement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func parseEnv(t testing.TB, b []byte) *keys.Envelope {
	t.Helper()
	env, err := keys.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func marshalEnv(t testing.TB, env *keys.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var packReq = trust.Requirement{Subject: packDigest, PredicateType: keys.PredicatePackSignature, Role: trust.RolePublisher, Tenant: "acme"}

func TestVerifyAccepts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	approvalReq := trust.Requirement{Subject: packDigest, PredicateType: predicateApproval, Role: trust.RoleApprove, Tenant: "acme"}

	// The same envelope without its keyid, as cosign or sigstore's
	// WrapSigner writes it.
	noKeyID := func(b []byte) []byte {
		env := parseEnv(t, b)
		env.Signatures[0].KeyID = ""
		return marshalEnv(t, env)
	}
	// Signed by sigstore's multi-signer, whose keyid is an SSH fingerprint.
	sshKeyID := func(p *keys.Pair) []byte {
		pemKey, err := keys.MarshalPrivatePEM(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := signature.LoadSigner(privateKey(t, pemKey), crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := keys.MarshalStatement(statement(t, keys.PredicatePackSignature, packDigest))
		env, err := dsse.WrapMultiSigner(keys.InTotoPayloadType, s).SignMessage(bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		if id := parseEnv(t, env).Signatures[0].KeyID; !strings.HasPrefix(id, "SHA256:") {
			t.Fatalf("sigstore multi-signer keyid %q", id)
		}
		return env
	}
	// A forged signature first, then a good one: one trusted signature is
	// enough.
	forgedThenGood := func() []byte {
		good := parseEnv(t, sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest)))
		bad := good.Signatures[0]
		bad.Sig = base64.StdEncoding.EncodeToString([]byte("forged"))
		good.Signatures = []keys.Signature{bad, good.Signatures[0]}
		return marshalEnv(t, good)
	}
	// Approver and publisher both sign; approval requirement picks the
	// approver even though the publisher signed first.
	twoSigners := func() []byte {
		st := statement(t, predicateApproval, packDigest)
		a := parseEnv(t, sign(t, f.publisher, st))
		b := parseEnv(t, sign(t, f.approver, st))
		a.Signatures = append(a.Signatures, b.Signatures...)
		return marshalEnv(t, a)
	}

	tests := []struct {
		name     string
		env      []byte
		req      trust.Requirement
		wantName string
		wantID   string
	}{
		{"ecdsa publisher", sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest)), packReq, "publisher", f.publisher.ID()},
		{"ecdsa publisher, no tenant", sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest)), withTenant(packReq, ""), "publisher", f.publisher.ID()},
		{"ed25519 approver", sign(t, f.approver, statement(t, predicateApproval, packDigest)), approvalReq, "approver", f.approver.ID()},
		{"no keyid", noKeyID(sign(t, f.approver, statement(t, predicateApproval, packDigest))), approvalReq, "approver", f.approver.ID()},
		{"ssh fingerprint keyid", sshKeyID(f.publisher), packReq, "publisher", f.publisher.ID()},
		{"forged then good", forgedThenGood(), packReq, "publisher", f.publisher.ID()},
		{"two signers", twoSigners(), approvalReq, "approver", f.approver.ID()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.store.Verify(ctx, tt.env, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if v.KeyName != tt.wantName || v.KeyID != tt.wantID {
				t.Fatalf("verified by %s (%s), want %s (%s)", v.KeyName, v.KeyID, tt.wantName, tt.wantID)
			}
			if !v.Statement.HasSubject(tt.req.Subject) || v.Statement.PredicateType != tt.req.PredicateType {
				t.Fatalf("verified statement %+v", v.Statement)
			}
			if len(v.Roles) == 0 || len(v.Tenants) == 0 {
				t.Fatalf("verified key roles %v tenants %v", v.Roles, v.Tenants)
			}
		})
	}
}

func withTenant(r trust.Requirement, tenant string) trust.Requirement {
	r.Tenant = tenant
	return r
}

// privateKey returns the raw private key of a PKCS#8 PEM, for signing with
// sigstore directly.
func privateKey(t testing.TB, pemKey []byte) crypto.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(pemKey)
	if block == nil {
		t.Fatal("no PEM block")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestVerifyRefuses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	goodEnv := sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest))

	forged := func() []byte {
		env := parseEnv(t, goodEnv)
		sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
		sig[len(sig)/2] ^= 0x01
		env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		return marshalEnv(t, env)
	}
	payloadAltered := func() []byte {
		env := parseEnv(t, goodEnv)
		other, _ := keys.MarshalStatement(statement(t, keys.PredicatePackSignature, otherDigest))
		env.Payload = base64.StdEncoding.EncodeToString(other)
		return marshalEnv(t, env)
	}
	payloadTypeAltered := func() []byte {
		env := parseEnv(t, goodEnv)
		env.PayloadType = "application/json"
		return marshalEnv(t, env)
	}
	zeroSigs := func() []byte {
		env := parseEnv(t, goodEnv)
		env.Signatures = nil
		return marshalEnv(t, env)
	}
	unknownNoKeyID := func() []byte {
		env := parseEnv(t, sign(t, f.outsider, statement(t, keys.PredicatePackSignature, packDigest)))
		env.Signatures[0].KeyID = ""
		return marshalEnv(t, env)
	}
	// A trusted key signs bytes that are not a statement.
	notAStatement := func() []byte {
		pemKey, _ := keys.MarshalPrivatePEM(f.publisher)
		s, err := signature.LoadSigner(privateKey(t, pemKey), crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		env, err := dsse.WrapSigner(s, keys.InTotoPayloadType).SignMessage(strings.NewReader(`{"hello":"world"}`))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	tests := []struct {
		name string
		env  []byte
		req  trust.Requirement
		want []error
	}{
		{"forged signature bytes", forged(), packReq, []error{trust.ErrSignatureInvalid}},
		{"payload altered after signing", payloadAltered(), packReq, []error{trust.ErrSignatureInvalid}},
		{"payload type altered", payloadTypeAltered(), packReq, []error{trust.ErrPayloadType}},
		{"unknown key", sign(t, f.outsider, statement(t, keys.PredicatePackSignature, packDigest)), packReq, []error{trust.ErrUnknownKey}},
		{"unknown key without keyid", unknownNoKeyID(), packReq, []error{trust.ErrUnknownKey}},
		{"revoked key", sign(t, f.revoked, statement(t, keys.PredicatePackSignature, packDigest)), packReq, []error{trust.ErrKeyRevoked}},
		{"wrong role", sign(t, f.approver, statement(t, keys.PredicatePackSignature, packDigest)), packReq, []error{trust.ErrRoleMissing}},
		{"wrong tenant", sign(t, f.approver, statement(t, predicateApproval, packDigest)),
			trust.Requirement{Subject: packDigest, PredicateType: predicateApproval, Role: trust.RoleApprove, Tenant: "globex"}, []error{trust.ErrTenantNotAllowed}},
		{"no tenant for a tenant-bound key", sign(t, f.approver, statement(t, predicateApproval, packDigest)),
			trust.Requirement{Subject: packDigest, PredicateType: predicateApproval, Role: trust.RoleApprove}, []error{trust.ErrTenantNotAllowed}},
		{"other subject digest", goodEnv, withSubject(packReq, otherDigest), []error{trust.ErrSubjectMismatch}},
		{"wrong predicate type", goodEnv, withPredicate(packReq, predicateApproval), []error{trust.ErrPredicateType}},
		{"zero signatures", zeroSigs(), packReq, []error{trust.ErrSignatureInvalid}},
		{"garbage json", []byte(`{"payloadType":`), packReq, []error{trust.ErrSignatureInvalid, keys.ErrMalformedEnvelope}},
		{"not json at all", []byte("\x00\x01garbage"), packReq, []error{trust.ErrSignatureInvalid, keys.ErrMalformedEnvelope}},
		{"signed payload not a statement", notAStatement(), packReq, []error{keys.ErrMalformedStatement}},
		{"requirement without subject", goodEnv, withSubject(packReq, ""), []error{trust.ErrInvalidRequirement}},
		{"requirement with unknown role", goodEnv, withRole(packReq, "admin"), []error{trust.ErrUnknownRole}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.store.Verify(ctx, tt.env, tt.req)
			if err == nil {
				t.Fatalf("Verify accepted: %+v", v)
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Verify: %v, want %v", err, want)
				}
			}
		})
	}

	// Errors name what they concern.
	_, err := f.store.Verify(ctx, goodEnv, withSubject(packReq, otherDigest))
	if !strings.Contains(err.Error(), otherDigest.String()) || !strings.Contains(err.Error(), packDigest.String()) {
		t.Errorf("subject mismatch error does not name expected and found digests: %v", err)
	}
	_, err = f.store.Verify(ctx, sign(t, f.approver, statement(t, keys.PredicatePackSignature, packDigest)), packReq)
	if !strings.Contains(err.Error(), "approver") || !strings.Contains(err.Error(), trust.RolePublisher) {
		t.Errorf("role error does not name key and role: %v", err)
	}

	// A canceled context stops verification.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.store.Verify(cctx, goodEnv, packReq); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with canceled context: %v", err)
	}
}

func withSubject(r trust.Requirement, d digest.Digest) trust.Requirement {
	r.Subject = d
	return r
}

func withPredicate(r trust.Requirement, p string) trust.Requirement {
	r.PredicateType = p
	return r
}

func withRole(r trust.Requirement, role string) trust.Requirement {
	r.Role = role
	return r
}

// TestVerifyAfterRevoke checks that revocation takes effect on envelopes
// that verified before, and survives a save and load.
func TestVerifyAfterRevoke(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	env := sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest))
	if _, err := f.store.Verify(ctx, env, packReq); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Revoke("publisher", t0); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/trust.json"
	if err := f.store.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := trust.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Verify(ctx, env, packReq); !errors.Is(err, trust.ErrKeyRevoked) {
		t.Fatalf("Verify after revoke: %v, want ErrKeyRevoked", err)
	}
	if err := loaded.Remove("publisher"); err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Verify(ctx, env, packReq); !errors.Is(err, trust.ErrUnknownKey) {
		t.Fatalf("Verify after remove: %v, want ErrUnknownKey", err)
	}
}

// TestVerifyConcurrent runs verifications while keys are added (go test -race).
func TestVerifyConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	env := sign(t, f.publisher, statement(t, keys.PredicatePackSignature, packDigest))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := f.store.Verify(ctx, env, packReq); err != nil {
					errs <- err
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := keys.Generate(keys.AlgEd25519)
			if err != nil {
				errs <- err
				return
			}
			if err := f.store.Add("extra"+string(rune('a'+i)), p.PublicPEM(), []string{trust.RoleApprove}, []string{"*"}, t0); err != nil {
				errs <- err
			}
			_ = f.store.List()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.store.List()); n != 7 {
		t.Errorf("%d keys after concurrent adds, want 7", n)
	}
}

// TestVerifyRunRole: runner keys hold Packs.Run; roles do not imply each
// other, so neither a publisher nor an approver key signs run evidence, and
// a runner key signs nothing else.
func TestVerifyRunRole(t *testing.T) {
	f := newFixture(t)
	runner := genKey(t, keys.AlgECDSAP256)
	if err := f.store.Add("runner", runner.PublicPEM(), []string{trust.RoleRun}, []string{"acme"}, t0); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := statement(t, "https://stellaops.io/attestations/pack-run/v1", packDigest)
	run := trust.Requirement{Subject: packDigest, PredicateType: st.PredicateType, Role: trust.RoleRun, Tenant: "acme"}
	v, err := f.store.Verify(ctx, sign(t, runner, st), run)
	if err != nil || v.KeyName != "runner" {
		t.Fatalf("runner key: %v, %+v", err, v)
	}
	for name, p := range map[string]*keys.Pair{"publisher": f.publisher, "approver": f.approver} {
		if _, err := f.store.Verify(ctx, sign(t, p, st), run); !errors.Is(err, trust.ErrRoleMissing) {
			t.Errorf("%s key signing run evidence: got %v, want ErrRoleMissing", name, err)
		}
	}
	if _, err := f.store.Verify(ctx, sign(t, runner, st), trust.Requirement{Subject: packDigest, PredicateType: st.PredicateType,
		Role: trust.RoleApprove, Tenant: "acme"}); !errors.Is(err, trust.ErrRoleMissing) {
		t.Errorf("runner key approving: got %v, want ErrRoleMissing", err)
	}
	if _, err := f.store.Verify(ctx, sign(t, runner, st), trust.Requirement{Subject: packDigest, PredicateType: st.PredicateType,
		Role: trust.RoleRun, Tenant: "globex"}); !errors.Is(err, trust.ErrTenantNotAllowed) {
		t.Errorf("runner key for another tenant: got %v, want ErrTenantNotAllowed", err)
	}
}
