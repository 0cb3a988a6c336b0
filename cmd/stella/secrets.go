package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/vault"
)

var (
	// errSecretMissing: a required secret of a plan does not resolve.
	errSecretMissing = errors.New("required secret missing")
	// errSealedSecretSource: sealed mode forbids a secret source (env:).
	errSealedSecretSource = errors.New("secret source not allowed in sealed mode")
)

// Secret resolutions shown by plan. Values are never read into the output.
const (
	resolvedVault     = "vault"
	resolvedEnv       = "env"
	resolvedMissing   = "missing"
	resolvedUnchecked = "unchecked"
	resolvedRefused   = "refused-sealed"
)

// secretStatus is plan's per-secret report: whether the reference resolves
// and from where — never the value.
type secretStatus struct {
	plan.Secret
	Resolves   *bool  `json:"resolves"` // null when not checked
	Resolution string `json:"resolution"`
	Note       string `json:"note,omitempty"`
}

// resolveSecrets checks each secret reference of a plan: vault: sources
// against the vault, env: sources against the environment — except in sealed
// mode, where only the sealed vault counts. Outside sealed mode a missing or
// locked vault leaves vault secrets unchecked (with a note); in sealed mode
// the vault must open. It returns the statuses and, for missing required
// secrets, an error naming each with the steps that need it.
func (s *session) resolveSecrets(ctx context.Context, secrets []plan.Secret) ([]secretStatus, error) {
	out := make([]secretStatus, 0, len(secrets))
	var v *vault.Vault
	var vaultNote string
	needVault := false
	for _, sec := range secrets {
		if _, ok := vault.ParseRef(sec.Source); ok {
			needVault = true
		}
	}
	if needVault {
		var err error
		v, vaultNote, err = s.planVault(ctx)
		if err != nil {
			return nil, err
		}
		if v != nil {
			defer v.Close()
		}
	}
	var problems []string
	var sealedProblems []string
	for _, sec := range secrets {
		st := secretStatus{Secret: sec}
		set := func(ok bool, how string) { st.Resolves, st.Resolution = &ok, how }
		switch {
		case strings.HasPrefix(sec.Source, "env:"):
			name := strings.TrimPrefix(sec.Source, "env:")
			if s.sealed {
				set(false, resolvedRefused)
				st.Note = "sealed mode takes secrets only from the sealed vault"
				if sec.Required {
					sealedProblems = append(sealedProblems, fmt.Sprintf("%s (%s, used by %s)", sec.Name, sec.Source, stepsOrNone(sec.Steps)))
				}
				break
			}
			if s.getenv(name) != "" {
				set(true, resolvedEnv)
			} else {
				set(false, resolvedMissing)
			}
		default:
			name, _ := vault.ParseRef(sec.Source)
			if v == nil {
				st.Resolution, st.Note = resolvedUnchecked, vaultNote
				break
			}
			if _, err := v.Get(name); err == nil {
				set(true, resolvedVault)
			} else if errors.Is(err, vault.ErrSecretNotFound) {
				set(false, resolvedMissing)
			} else {
				return nil, err
			}
		}
		if st.Resolution == resolvedMissing && sec.Required {
			problems = append(problems, fmt.Sprintf("%s (%s, used by %s)", sec.Name, sec.Source, stepsOrNone(sec.Steps)))
		}
		out = append(out, st)
	}
	if len(sealedProblems) > 0 {
		return out, fmt.Errorf("required secrets from the environment in sealed mode: %s: %w", strings.Join(sealedProblems, "; "), errSealedSecretSource)
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("%s: %w", strings.Join(problems, "; "), errSecretMissing)
	}
	return out, nil
}

func stepsOrNone(steps []string) string {
	if len(steps) == 0 {
		return "no step"
	}
	return "steps " + strings.Join(steps, ", ")
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
