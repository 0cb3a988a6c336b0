package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/vault"
)

// resolveSecrets checks each secret reference of a plan by package secret's
// rule, against the environment and the vault. Outside sealed mode a
// missing or locked vault leaves vault secrets unchecked (with a note); in
// sealed mode the vault must open.
func (s *session) resolveSecrets(ctx context.Context, secrets []plan.Secret) ([]secret.Status, error) {
	src := secret.Sources{Sealed: s.sealed, Getenv: s.getenv}
	if slices.ContainsFunc(secrets, func(sec plan.Secret) bool { _, ok := vault.ParseRef(sec.Source); return ok }) {
		v, note, err := s.planVault(ctx)
		if err != nil {
			return nil, err
		}
		if v != nil {
			defer v.Close()
			src.Vault = v
		}
		src.VaultNote = note
	}
	return secret.Check(ctx, secrets, src)
}

// planVault opens the vault for checking secret references. Outside sealed
// mode a vault that does not exist, or cannot be unlocked without a prompt,
// is not an error: secrets are reported unchecked with a note saying why.
func (s *session) planVault(ctx context.Context) (*vault.Vault, string, error) {
	path, err := s.vaultPath("")
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if s.sealed {
			return nil, "", fmt.Errorf("sealed mode needs the sealed vault to resolve secrets: %s: %w", path, vault.ErrVaultNotFound)
		}
		return nil, "no vault at " + path, nil
	}
	if !s.sealed && s.getenv(envVaultIdentityFile) == "" && s.getenv(envVaultPassphraseFile) == "" && !s.interactive() {
		return nil, "vault is locked: set STELLA_VAULT_PASSPHRASE_FILE or STELLA_VAULT_IDENTITY_FILE to check", nil
	}
	v, err := s.openVault(ctx, vaultAccess{})
	if err != nil {
		return nil, "", err
	}
	return v, "", nil
}
