package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/vault"
)

// resolveSecrets checks each secret reference of a plan by package secret's
// rule, against the environment and the vault. Outside sealed mode a
// missing or locked vault leaves vault secrets unchecked (with a note); in
// sealed mode the vault must open.
func (s *session) resolveSecrets(ctx context.Context, secrets []plan.Secret) ([]secret.Status, error) {
	src, closeVault, err := s.secretSources(ctx, secrets)
	if err != nil {
		return nil, err
	}
	defer closeVault()
	return secret.Check(ctx, secrets, src)
}

// secretSources are where secrets come from for this command: the
// environment, and the vault when a secret names one (opened as planVault
// says). The caller calls the returned func when done with the vault.
func (s *session) secretSources(ctx context.Context, secrets []plan.Secret) (secret.Sources, func(), error) {
	src := secret.Sources{Sealed: s.sealed, Getenv: s.getenv}
	closeVault := func() {}
	if slices.ContainsFunc(secrets, func(sec plan.Secret) bool { _, ok := vault.ParseRef(sec.Source); return ok }) {
		v, note, err := s.planVault(ctx)
		if err != nil {
			return src, closeVault, err
		}
		if v != nil {
			src.Vault = v
			closeVault = func() { v.Close() }
		}
		src.VaultNote = note
	}
	return src, closeVault, nil
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

// maxSecretsFile bounds a --secrets file.
const maxSecretsFile = 1 << 20

func secretsFlag() cli.Flag {
	return &cli.StringFlag{Name: "secrets", Usage: "`FILE` of name=value lines with secret values for this run only (never given on the command line; refused in sealed mode, where the sealed vault is the only source); on a terminal, each required secret still missing is asked for"}
}

// stepSecrets is where the steps of one run get their secrets when they
// start: values given for this run (--secrets, or typed at a prompt),
// then the pack's own sources by package secret's rule.
type stepSecrets struct {
	given map[string][]byte
	src   secret.Sources
	close func()
}

// runSecrets gathers the run's given values and opens the sources, then
// checks that every required secret resolves: one that does not is
// ERR_PACK_SECRET_MISSING before anything runs (on a terminal, it is
// asked for first).
// file is --secrets ("" when not given).
func (s *session) runSecrets(ctx context.Context, file string, secrets []plan.Secret) (*stepSecrets, error) {
	r := &stepSecrets{given: map[string][]byte{}, close: func() {}}
	if f := file; f != "" {
		if err := r.readFile(s, f, secrets); err != nil {
			r.wipe()
			return nil, err
		}
	}
	src, closeVault, err := s.secretSources(ctx, secrets)
	if err != nil {
		r.wipe()
		return nil, err
	}
	r.src, r.close = src, closeVault
	var pending []plan.Secret
	for _, sec := range secrets {
		if _, ok := r.given[sec.Name]; !ok {
			pending = append(pending, sec)
		}
	}
	sts, err := secret.Check(ctx, pending, r.src)
	if err == nil {
		// A run needs the values, not a check: a required vault secret
		// with no vault to read it from is missing.
		var unread []string
		for _, st := range sts {
			if st.Required && st.Resolution == secret.Unchecked {
				unread = append(unread, fmt.Sprintf("%s (%s, used by %s): %s", st.Name, st.Source, secret.StepsOrNone(st.Steps), st.Note))
				st.Resolution = secret.Missing
			}
		}
		if len(unread) > 0 {
			err = fmt.Errorf("%s: %w", strings.Join(unread, "; "), secret.ErrMissing)
		}
	}
	if errors.Is(err, secret.ErrMissing) && !s.sealed && s.interactive() {
		err = r.ask(s, sts)
	}
	if err != nil {
		r.done()
		return nil, err
	}
	return r, nil
}

// readFile reads name=value lines ('#' comments and blank lines aside);
// each name must be one the pack declares, once.
func (r *stepSecrets) readFile(s *session, file string, secrets []plan.Secret) error {
	b, err := s.readFileArg(file, maxSecretsFile)
	if err != nil {
		return err
	}
	defer clear(b)
	declared := map[string]bool{}
	for _, sec := range secrets {
		declared[sec.Name] = true
	}
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if t := bytes.TrimSpace(line); len(t) == 0 || t[0] == '#' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		n := string(bytes.TrimSpace(name))
		switch {
		case !ok:
			return usageError(fmt.Sprintf("--secrets %s:%d: expected name=value", file, i+1))
		case !declared[n]:
			return usageError(fmt.Sprintf("--secrets %s:%d: the pack declares no secret %q", file, i+1, n))
		case r.given[n] != nil:
			return usageError(fmt.Sprintf("--secrets %s:%d: secret %q given twice", file, i+1, n))
		case len(value) == 0:
			return usageError(fmt.Sprintf("--secrets %s:%d: secret %q has an empty value", file, i+1, n))
		}
		r.given[n] = bytes.Clone(value)
	}
	return nil
}

// ask prompts on the terminal, without echo, for each required secret
// that does not resolve.
func (r *stepSecrets) ask(s *session, sts []secret.Status) error {
	for _, st := range sts {
		if !st.Required || (st.Resolution != secret.Missing && st.Resolution != secret.Unchecked) {
			continue
		}
		v, err := s.promptPassphrase(fmt.Sprintf("Value of secret %s (%s, for %s): ", st.Name, st.Source, secret.StepsOrNone(st.Steps)), false,
			"give it in a --secrets file or put it into its source")
		if err != nil {
			return err
		}
		if len(v) == 0 {
			return fmt.Errorf("secret %s: no value typed: %w", st.Name, secret.ErrMissing)
		}
		r.given[st.Name] = v
	}
	return nil
}

// resolve is run.Engine.Secrets: a given value first, then the source.
func (r *stepSecrets) resolve(ctx context.Context, sec plan.Secret) ([]byte, error) {
	if v, ok := r.given[sec.Name]; ok {
		return bytes.Clone(v), nil
	}
	v, err := secret.Resolve(ctx, sec, r.src)
	if err != nil && !sec.Required && errors.Is(err, vault.ErrVaultNotFound) {
		// An optional secret with no vault to read it from is left out.
		return nil, fmt.Errorf("%w: %w", secret.ErrMissing, err)
	}
	if err != nil {
		return nil, err
	}
	defer v.Wipe()
	return bytes.Clone(v.Reveal()), nil
}

func (r *stepSecrets) wipe() {
	for _, v := range r.given {
		clear(v)
	}
}

// done wipes the given values and closes the vault.
func (r *stepSecrets) done() {
	r.wipe()
	r.close()
}
