package secret_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/vault"
)

// fakeVault holds secrets by name; broken makes every Get fail.
type fakeVault struct {
	secrets map[string]string
	broken  error
}

func (f *fakeVault) Get(name string) (vault.Secret, error) {
	if f.broken != nil {
		return vault.Secret{}, f.broken
	}
	v, ok := f.secrets[name]
	if !ok {
		return vault.Secret{}, fmt.Errorf("secret %q: %w", name, vault.ErrSecretNotFound)
	}
	return vault.Secret{Name: name, Value: vault.NewValue([]byte(v))}, nil
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestCheckAndResolve(t *testing.T) {
	v := &fakeVault{secrets: map[string]string{"db": "vault-db-value"}}
	environ := env(map[string]string{"TOKEN": "env-token-value"})
	const note = "no vault at /x"
	tests := []struct {
		name     string
		source   string
		required bool
		sealed   bool
		noVault  bool
		// want of Check
		resolution string
		resolves   *bool
		note       string
		checkErr   error
		// want of Resolve
		value      string
		resolveErr error
	}{
		{name: "env present", source: "env:TOKEN", required: true, resolution: secret.FromEnv, resolves: ptr(true), value: "env-token-value"},
		{name: "env present optional", source: "env:TOKEN", resolution: secret.FromEnv, resolves: ptr(true), value: "env-token-value"},
		{name: "env missing required", source: "env:NOPE", required: true, resolution: secret.Missing, resolves: ptr(false), checkErr: secret.ErrMissing, resolveErr: secret.ErrMissing},
		{name: "env missing optional", source: "env:NOPE", resolution: secret.Missing, resolves: ptr(false), resolveErr: secret.ErrMissing},
		{name: "env present sealed required", source: "env:TOKEN", required: true, sealed: true, resolution: secret.RefusedSealed, resolves: ptr(false),
			note: "sealed mode takes secrets only from the sealed vault", checkErr: secret.ErrSealedSource, resolveErr: secret.ErrSealedSource},
		{name: "env present sealed optional", source: "env:TOKEN", sealed: true, resolution: secret.RefusedSealed, resolves: ptr(false),
			note: "sealed mode takes secrets only from the sealed vault", resolveErr: secret.ErrSealedSource},
		{name: "env missing sealed required", source: "env:NOPE", required: true, sealed: true, resolution: secret.RefusedSealed, resolves: ptr(false),
			note: "sealed mode takes secrets only from the sealed vault", checkErr: secret.ErrSealedSource, resolveErr: secret.ErrSealedSource},
		{name: "vault present", source: "vault:db", required: true, resolution: secret.FromVault, resolves: ptr(true), value: "vault-db-value"},
		{name: "vault present sealed", source: "vault:db", required: true, sealed: true, resolution: secret.FromVault, resolves: ptr(true), value: "vault-db-value"},
		{name: "vault missing required", source: "vault:gone", required: true, resolution: secret.Missing, resolves: ptr(false), checkErr: secret.ErrMissing, resolveErr: secret.ErrMissing},
		{name: "vault missing optional", source: "vault:gone", resolution: secret.Missing, resolves: ptr(false), resolveErr: secret.ErrMissing},
		{name: "vault missing sealed required", source: "vault:gone", required: true, sealed: true, resolution: secret.Missing, resolves: ptr(false), checkErr: secret.ErrMissing, resolveErr: secret.ErrMissing},
		{name: "nil vault required", source: "vault:db", required: true, noVault: true, resolution: secret.Unchecked, note: note, resolveErr: vault.ErrVaultNotFound},
		{name: "nil vault optional", source: "vault:db", noVault: true, resolution: secret.Unchecked, note: note, resolveErr: vault.ErrVaultNotFound},
		{name: "nil vault env still checked", source: "env:TOKEN", required: true, noVault: true, resolution: secret.FromEnv, resolves: ptr(true), value: "env-token-value"},
		{name: "nil vault sealed env", source: "env:TOKEN", required: true, sealed: true, noVault: true, resolution: secret.RefusedSealed, resolves: ptr(false),
			note: "sealed mode takes secrets only from the sealed vault", checkErr: secret.ErrSealedSource, resolveErr: secret.ErrSealedSource},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := secret.Sources{Sealed: tc.sealed, Getenv: environ, Vault: v}
			if tc.noVault {
				src.Vault, src.VaultNote = nil, note
			}
			sec := plan.Secret{Name: "s", Source: tc.source, Required: tc.required, Scope: "step", Steps: []string{"deploy"}}
			got, err := secret.Check(ctx, []plan.Secret{sec}, src)
			if !errors.Is(err, tc.checkErr) || (tc.checkErr == nil) != (err == nil) {
				t.Fatalf("Check error = %v, want %v", err, tc.checkErr)
			}
			want := []secret.Status{{Secret: sec, Resolution: tc.resolution, Resolves: tc.resolves, Note: tc.note}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			val, err := secret.Resolve(ctx, sec, src)
			if !errors.Is(err, tc.resolveErr) || (tc.resolveErr == nil) != (err == nil) {
				t.Fatalf("Resolve error = %v, want %v", err, tc.resolveErr)
			}
			if string(val.Reveal()) != tc.value {
				t.Errorf("Resolve value = %q, want %q", val.Reveal(), tc.value)
			}
		})
	}
}

// TestCheckNamesEverySecret: the error names every failing required secret
// with its steps, a sealed refusal wins over a missing secret, and no value
// appears in an error.
func TestCheckNamesEverySecret(t *testing.T) {
	ctx := context.Background()
	secrets := []plan.Secret{
		{Name: "a", Source: "env:A", Required: true, Steps: []string{"x", "y"}},
		{Name: "b", Source: "vault:b", Required: true},
		{Name: "c", Source: "env:C", Required: true},
	}
	v := &fakeVault{secrets: map[string]string{}}
	_, err := secret.Check(ctx, secrets, secret.Sources{Getenv: env(map[string]string{"C": "c-value"}), Vault: v})
	if !errors.Is(err, secret.ErrMissing) {
		t.Fatalf("err = %v, want ErrMissing", err)
	}
	if want := "a (env:A, used by steps x, y); b (vault:b, used by no step): required secret missing"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	_, err = secret.Check(ctx, secrets, secret.Sources{Sealed: true, Getenv: env(map[string]string{"C": "c-value"}), Vault: v})
	if !errors.Is(err, secret.ErrSealedSource) || errors.Is(err, secret.ErrMissing) {
		t.Fatalf("sealed: err = %v, want ErrSealedSource only", err)
	}
	if want := "required secrets from the environment in sealed mode: a (env:A, used by steps x, y); c (env:C, used by no step): secret source not allowed in sealed mode"; err.Error() != want {
		t.Errorf("sealed: err = %q, want %q", err, want)
	}
}

// TestVaultFailure: a vault that cannot be read is an error, not "missing".
func TestVaultFailure(t *testing.T) {
	ctx := context.Background()
	broken := errors.New("vault unreadable")
	src := secret.Sources{Vault: &fakeVault{broken: broken}}
	sec := plan.Secret{Name: "s", Source: "vault:s"}
	if st, err := secret.Check(ctx, []plan.Secret{sec}, src); !errors.Is(err, broken) || st != nil {
		t.Errorf("Check = %v, %v; want no statuses and the vault's error", st, err)
	}
	if _, err := secret.Resolve(ctx, sec, src); !errors.Is(err, broken) {
		t.Errorf("Resolve error = %v, want the vault's error", err)
	}
}

func ptr(b bool) *bool { return &b }
