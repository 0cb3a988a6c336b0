package trust_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/keys"
	"stellaops.io/stella/trust"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func genKey(t testing.TB, alg keys.Algorithm) *keys.Pair {
	t.Helper()
	p, err := keys.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust.json")
	s, err := trust.Load(path)
	if err != nil {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if len(s.List()) != 0 {
		t.Fatal("missing file is not an empty store")
	}
	alice, bob := genKey(t, keys.AlgEd25519), genKey(t, keys.AlgECDSAP256)
	// Added out of order, with duplicate and unsorted roles/tenants.
	if err := s.Add("bob", bob.PublicPEM(), []string{trust.RolePublisher}, []string{"*"}, t0); err != nil {
		t.Fatal(err)
	}
	local := time.FixedZone("x", 3600)
	if err := s.Add("alice", alice.PublicPEM(), []string{trust.RolePublisher, trust.RoleApprove, trust.RoleApprove}, []string{"zeta", "acme"}, t0.In(local).Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke("bob", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("trust store mode %o, want 644", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	want := `{"keys":[` +
		`{"added":"2025-01-02T03:04:05Z","keyId":"` + alice.ID() + `","name":"alice","publicKey":` + jsonString(alice.PublicPEM()) +
		`,"revoked":false,"roles":["Packs.Approve","publisher"],"tenants":["acme","zeta"]},` +
		`{"added":"2025-01-02T03:04:05Z","keyId":"` + bob.ID() + `","name":"bob","publicKey":` + jsonString(bob.PublicPEM()) +
		`,"revoked":true,"revokedAt":"2025-01-02T04:04:05Z","roles":["publisher"],"tenants":["*"]}` +
		`],"version":1}` + "\n"
	if string(data) != want {
		t.Fatalf("trust.json:\n%s\nwant\n%s", data, want)
	}

	again, err := trust.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.List(), again.List()); diff != "" {
		t.Errorf("reloaded store (-saved +loaded):\n%s", diff)
	}
	b2, _ := again.Marshal()
	if !bytes.Equal(b2, data) {
		t.Error("re-saving a loaded store changes its bytes")
	}
	k, ok := again.Lookup(bob.ID())
	if !ok || k.Name != "bob" || !k.Revoked || !k.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Lookup(bob) = %+v, %v", k, ok)
	}
	if _, ok := again.Lookup("sha256:00"); ok {
		t.Error("Lookup of an unknown id succeeds")
	}
	if k, ok := again.Get("alice"); !ok || k.KeyID != alice.ID() || !k.HasRole(trust.RoleApprove) || !k.AllowsTenant("acme") || k.AllowsTenant("other") || k.AllowsTenant("") {
		t.Errorf("Get(alice) = %+v, %v", k, ok)
	}

	// Revoking again keeps the first revocation time.
	if err := again.Revoke("bob", t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if k, _ := again.Get("bob"); !k.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("second Revoke moved revokedAt to %v", k.RevokedAt)
	}
	if err := again.Remove("bob"); err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Get("bob"); ok {
		t.Error("removed key still present")
	}
	// List returns copies.
	l := again.List()
	l[0].Roles[0] = "mutated"
	if k, _ := again.Get("alice"); k.Roles[0] == "mutated" {
		t.Error("List exposes the store's slices")
	}
}

func jsonString(b []byte) string {
	return `"` + strings.ReplaceAll(string(b), "\n", `\n`) + `"`
}

func TestStoreAddRefuses(t *testing.T) {
	s := &trust.Store{}
	a, b := genKey(t, keys.AlgEd25519), genKey(t, keys.AlgEd25519)
	if err := s.Add("alice", a.PublicPEM(), []string{trust.RoleApprove}, []string{"acme"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke("alice", t0); err != nil {
		t.Fatal(err)
	}
	pub := func() []byte { return b.PublicPEM() }
	tests := []struct {
		name    string
		keyName string
		pem     []byte
		roles   []string
		tenants []string
		want    error
	}{
		{"duplicate name", "alice", pub(), []string{trust.RoleApprove}, []string{"*"}, trust.ErrExists},
		{"duplicate key (revoked)", "alice2", a.PublicPEM(), []string{trust.RoleApprove}, []string{"*"}, trust.ErrExists},
		{"unknown role", "bob", pub(), []string{"admin"}, []string{"*"}, trust.ErrUnknownRole},
		{"role case differs", "bob", pub(), []string{"packs.approve"}, []string{"*"}, trust.ErrUnknownRole},
		{"run role case differs", "bob", pub(), []string{"packs.run"}, []string{"*"}, trust.ErrUnknownRole},
		{"no roles", "bob", pub(), nil, []string{"*"}, trust.ErrInvalidEntry},
		{"no tenants", "bob", pub(), []string{trust.RolePublisher}, nil, trust.ErrInvalidEntry},
		{"bad tenant", "bob", pub(), []string{trust.RolePublisher}, []string{"a b"}, trust.ErrInvalidEntry},
		{"empty name", "", pub(), []string{trust.RolePublisher}, []string{"*"}, trust.ErrInvalidEntry},
		{"name with slash", "a/b", pub(), []string{trust.RolePublisher}, []string{"*"}, trust.ErrInvalidEntry},
		{"name with newline", "a\nb", pub(), []string{trust.RolePublisher}, []string{"*"}, trust.ErrInvalidEntry},
		{"not a public key", "bob", []byte("hello"), []string{trust.RolePublisher}, []string{"*"}, keys.ErrNotAPublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Add(tt.keyName, tt.pem, tt.roles, tt.tenants, t0); !errors.Is(err, tt.want) {
				t.Fatalf("Add: %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(s.List()); n != 1 {
		t.Fatalf("refused adds changed the store: %d keys", n)
	}
	if err := s.Revoke("nobody", t0); !errors.Is(err, trust.ErrKeyNotFound) {
		t.Errorf("Revoke(nobody): %v", err)
	}
	if err := s.Remove("nobody"); !errors.Is(err, trust.ErrKeyNotFound) {
		t.Errorf("Remove(nobody): %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	a, b := genKey(t, keys.AlgEd25519), genKey(t, keys.AlgECDSAP256)
	s := &trust.Store{}
	if err := s.Add("alice", a.PublicPEM(), []string{trust.RoleApprove}, []string{"acme"}, t0); err != nil {
		t.Fatal(err)
	}
	good, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("fixture lacks %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"garbage", []byte("garbage"), trust.ErrInvalidStore},
		{"empty", []byte(""), trust.ErrInvalidStore},
		{"unknown field", edit(`"version":1`, `"extra":1,"version":1`), trust.ErrInvalidStore},
		{"other version", edit(`"version":1`, `"version":2`), trust.ErrInvalidStore},
		{"key id of another key", edit(a.ID(), b.ID()), trust.ErrInvalidStore},
		{"public key of another key", edit(jsonString(a.PublicPEM()), jsonString(b.PublicPEM())), trust.ErrInvalidStore},
		{"unknown role", edit(`"roles":["Packs.Approve"]`, `"roles":["root"]`), trust.ErrUnknownRole},
		{"unsorted roles", edit(`"roles":["Packs.Approve"]`, `"roles":["publisher","Packs.Approve"]`), trust.ErrInvalidStore},
		{"local time", edit(`"added":"2025-01-02T03:04:05Z"`, `"added":"2025-01-02T04:04:05+01:00"`), trust.ErrInvalidStore},
		{"revokedAt without revoked", edit(`"revoked":false`, `"revoked":false,"revokedAt":"2025-01-02T03:04:05Z"`), trust.ErrInvalidStore},
		{"revoked without revokedAt", edit(`"revoked":false`, `"revoked":true`), trust.ErrInvalidStore},
		{"duplicate member", edit(`"version":1`, `"version":1,"version":1`), trust.ErrInvalidStore},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "trust"+string(rune('a'+i))+".json")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := trust.Load(path); !errors.Is(err, tt.want) {
				t.Fatalf("Load: %v, want %v", err, tt.want)
			}
		})
	}
	// Two entries with the same name.
	two := &trust.Store{}
	two.Add("alice", a.PublicPEM(), []string{trust.RoleApprove}, []string{"acme"}, t0)
	two.Add("bob", b.PublicPEM(), []string{trust.RoleApprove}, []string{"acme"}, t0)
	data, _ := two.Marshal()
	data = bytes.Replace(data, []byte(`"name":"bob"`), []byte(`"name":"alice"`), 1)
	path := filepath.Join(dir, "dup.json")
	os.WriteFile(path, data, 0o644)
	if _, err := trust.Load(path); !errors.Is(err, trust.ErrInvalidStore) || !errors.Is(err, trust.ErrExists) {
		t.Fatalf("Load with duplicate names: %v", err)
	}
}
