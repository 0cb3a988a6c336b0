package trust_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"stellaops.io/stella/keys"
	"stellaops.io/stella/trust"
)

func TestPolicyApproverRoles(t *testing.T) {
	s := &trust.Store{}
	for _, role := range []string{trust.RoleApprove} {
		if !s.IsApproverRole(role) {
			t.Errorf("IsApproverRole(%q) = false by default", role)
		}
	}
	for _, role := range []string{trust.RolePublisher, trust.RoleRun, "Change.Board"} {
		if s.IsApproverRole(role) {
			t.Errorf("IsApproverRole(%q) = true by default", role)
		}
		if err := s.CheckApproverRole(role); !errors.Is(err, trust.ErrNotApproverRole) || !strings.Contains(err.Error(), role) {
			t.Errorf("CheckApproverRole(%q) = %v, want ErrNotApproverRole naming it", role, err)
		}
	}
	// publisher and Packs.Run can never be declared.
	for _, role := range []string{trust.RolePublisher, trust.RoleRun, "bad role", ""} {
		if err := s.SetPolicy(trust.Policy{ApproverRoles: []string{role}}); !errors.Is(err, trust.ErrNotApproverRole) {
			t.Errorf("SetPolicy(%q) = %v, want ErrNotApproverRole", role, err)
		}
	}
	// A key cannot hold an undeclared role.
	alice := genKey(t, keys.AlgEd25519)
	if err := s.Add("alice", alice.PublicPEM(), []string{"Change.Board"}, []string{"*"}, t0); !errors.Is(err, trust.ErrUnknownRole) {
		t.Fatalf("Add with an undeclared role: %v, want ErrUnknownRole", err)
	}
	if err := s.SetPolicy(trust.Policy{ApproverRoles: []string{"Change.Board", trust.RoleApprove, "Change.Board"}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Policy(); !slices.Equal(got.ApproverRoles, []string{"Change.Board"}) || got.AllowSelfApproval {
		t.Fatalf("Policy() = %+v", got)
	}
	if !s.IsApproverRole("Change.Board") || s.IsApproverRole(trust.RolePublisher) {
		t.Fatal("declared role not an approver role, or publisher became one")
	}
	if err := s.Add("alice", alice.PublicPEM(), []string{"Change.Board"}, []string{"*"}, t0); err != nil {
		t.Fatalf("Add with a declared role: %v", err)
	}
	// Withdrawing a role a key holds is refused.
	if err := s.SetPolicy(trust.Policy{}); !errors.Is(err, trust.ErrRoleInUse) {
		t.Fatalf("SetPolicy withdrawing a held role: %v, want ErrRoleInUse", err)
	}
	if err := s.SetPolicy(trust.Policy{ApproverRoles: []string{"Change.Board"}, AllowSelfApproval: true}); err != nil {
		t.Fatal(err)
	}

	// Round trip through the file; a store with the default policy has no
	// policy member at all (files written before it existed are unchanged).
	path := filepath.Join(t.TempDir(), "trust.json")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := trust.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Policy(); !slices.Equal(got.ApproverRoles, []string{"Change.Board"}) || !got.AllowSelfApproval {
		t.Fatalf("policy after round trip = %+v", got)
	}
	b, _ := back.Marshal()
	if !strings.Contains(string(b), `"policy":{"allowSelfApproval":true,"approverRoles":["Change.Board"]}`) {
		t.Fatalf("stored policy: %s", b)
	}
	plain := &trust.Store{}
	if err := plain.Add("alice", alice.PublicPEM(), []string{trust.RoleApprove}, []string{"*"}, t0); err != nil {
		t.Fatal(err)
	}
	if b, _ := plain.Marshal(); strings.Contains(string(b), "policy") {
		t.Fatalf("default policy stored: %s", b)
	}
}

func TestPolicyFileRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"publisher declared": `{"keys":[],"policy":{"allowSelfApproval":false,"approverRoles":["publisher"]},"version":1}`,
		"unsorted":           `{"keys":[],"policy":{"allowSelfApproval":false,"approverRoles":["B","A"]},"version":1}`,
		"unknown field":      `{"keys":[],"policy":{"allowSelfApproval":false,"approverRoles":[],"x":1},"version":1}`,
	} {
		path := filepath.Join(t.TempDir(), "trust.json")
		writeFile(t, path, doc)
		if _, err := trust.Load(path); !errors.Is(err, trust.ErrInvalidStore) {
			t.Errorf("%s: Load = %v, want ErrInvalidStore", name, err)
		}
	}
}

func TestVerifyDeclaredApproverRole(t *testing.T) {
	s := &trust.Store{}
	alice := genKey(t, keys.AlgECDSAP256)
	if err := s.SetPolicy(trust.Policy{ApproverRoles: []string{"Change.Board"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("alice", alice.PublicPEM(), []string{"Change.Board"}, []string{"*"}, t0); err != nil {
		t.Fatal(err)
	}
	env := sign(t, alice, statement(t, keys.PredicatePackSignature, packDigest))
	v, err := s.Verify(context.Background(), env, trust.Requirement{Subject: packDigest, PredicateType: keys.PredicatePackSignature, Role: "Change.Board"})
	if err != nil || v.KeyName != "alice" {
		t.Fatalf("Verify with a declared role: %v, %v", v, err)
	}
	if _, err := s.Verify(context.Background(), env, trust.Requirement{Subject: packDigest, PredicateType: keys.PredicatePackSignature, Role: "Other.Role"}); !errors.Is(err, trust.ErrUnknownRole) {
		t.Fatalf("Verify with an undeclared role: %v, want ErrUnknownRole", err)
	}
}

func TestSigners(t *testing.T) {
	s := &trust.Store{}
	alice, bob, eve := genKey(t, keys.AlgECDSAP256), genKey(t, keys.AlgEd25519), genKey(t, keys.AlgEd25519)
	for name, p := range map[string]*keys.Pair{"alice": alice, "bob": bob} {
		if err := s.Add(name, p.PublicPEM(), []string{trust.RolePublisher}, []string{"*"}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke("bob", t0); err != nil {
		t.Fatal(err)
	}
	st := statement(t, keys.PredicatePackSignature, packDigest)
	if got := s.Signers(sign(t, alice, st)); !slices.Equal(got, []string{alice.ID()}) {
		t.Errorf("Signers(alice's envelope) = %v, want [%s]", got, alice.ID())
	}
	// Revoked keys still count as signers: who signed does not change.
	if got := s.Signers(sign(t, bob, st)); !slices.Equal(got, []string{bob.ID()}) {
		t.Errorf("Signers(bob's envelope) = %v, want [%s]", got, bob.ID())
	}
	if got := s.Signers(sign(t, eve, st)); len(got) != 0 {
		t.Errorf("Signers(an unknown key's envelope) = %v, want none", got)
	}
	if got := s.Signers([]byte("not an envelope")); len(got) != 0 {
		t.Errorf("Signers(garbage) = %v", got)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
