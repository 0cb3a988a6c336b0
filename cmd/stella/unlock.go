package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"stellaops.io/stella/display"
	"stellaops.io/stella/vault"
)

// Environment variables read by the vault and key commands
// (docs/adr/0003-keys-vault-trust.md).
const (
	// envVaultURL names the vault file as a file:// URL, the way the task
	// runner is told where its sealed vault is.
	envVaultURL = "TASKRUNNER_SEALED_VAULT_URL"
	// envVaultIdentityFile names an age identity file that unlocks the vault.
	envVaultIdentityFile = "STELLA_VAULT_IDENTITY_FILE"
	// envVaultPassphraseFile names a file holding the vault passphrase.
	envVaultPassphraseFile = "STELLA_VAULT_PASSPHRASE_FILE"
	// envKeyPassphraseFile names a file holding the passphrase of private
	// key files.
	envKeyPassphraseFile = "STELLA_KEY_PASSPHRASE_FILE"
)

const (
	// defaultVaultFile is the vault's name under the home folder.
	defaultVaultFile = "vault.age"
	// maxPassphraseFile bounds what is read as a passphrase or identity file.
	maxPassphraseFile = 64 << 10
)

// vaultAccess is where the vault is and how to unlock it, as given on the
// command line; empty fields fall back to the environment, the config and
// the defaults.
type vaultAccess struct {
	path     string // --vault (on `stella vault`) or --vault-file
	identity string // --identity or --vault-identity
}

// vaultFlags are the location and unlock flags of `stella vault` and each of
// its subcommands (either place works: `stella vault --vault F list` and
// `stella vault list --vault F`).
func vaultFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "vault", Usage: "vault file", DefaultText: "$" + envVaultURL + " (file://), config vault, else <home>/" + defaultVaultFile},
		&cli.StringFlag{Name: "identity", Usage: "age identity file that unlocks the vault instead of a passphrase", DefaultText: "$" + envVaultIdentityFile},
	}
}

// vaultAccessFrom reads vaultFlags from the command or any parent command;
// the innermost value wins.
func vaultAccessFrom(c *cli.Context) vaultAccess {
	return vaultAccess{path: lineageString(c, "vault"), identity: lineageString(c, "identity")}
}

// lineageString returns the first non-empty value of a string flag, looking
// from the command up through its parents.
func lineageString(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.Command == nil {
			continue
		}
		for _, f := range cc.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					if v := cc.String(name); v != "" {
						return v
					}
				}
			}
		}
	}
	return ""
}

// vaultPath decides which vault file to use: the flag, then
// TASKRUNNER_SEALED_VAULT_URL, then the config's vault (relative to the home
// folder), then <home>/vault.age.
func (s *session) vaultPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if u := s.getenv(envVaultURL); u != "" {
		p, err := vault.PathFromURL(u)
		if err != nil {
			return "", fmt.Errorf("%s: %w", envVaultURL, err)
		}
		return p, nil
	}
	if p := s.config.Vault; p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(s.home, p)
		}
		return p, nil
	}
	return filepath.Join(s.home, defaultVaultFile), nil
}

// vaultUnlocker returns what unlocks the vault, in this order: an identity
// file (flag, then STELLA_VAULT_IDENTITY_FILE), the passphrase in
// STELLA_VAULT_PASSPHRASE_FILE, a passphrase typed at the terminal. confirm
// asks twice, for a passphrase that is about to seal a vault.
func (s *session) vaultUnlocker(identity, prompt string, confirm bool) (vault.Unlocker, error) {
	if identity == "" {
		identity = s.getenv(envVaultIdentityFile)
	}
	if identity != "" {
		data, err := s.readSecretFile(identity)
		if err != nil {
			return nil, err
		}
		defer clear(data)
		return vault.IdentityFile(data), nil
	}
	p, err := s.passphrase(envVaultPassphraseFile, prompt, confirm, "--identity")
	if err != nil {
		return nil, err
	}
	defer clear(p)
	return vault.Passphrase(p), nil
}

// openVault opens the vault named by va, the environment and the config.
func (s *session) openVault(ctx context.Context, va vaultAccess) (*vault.Vault, error) {
	path, err := s.vaultPath(va.path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		// Say so before asking for a passphrase that cannot help.
		return nil, fmt.Errorf("%s: %w", path, vault.ErrVaultNotFound)
	}
	u, err := s.vaultUnlocker(va.identity, "Vault passphrase: ", false)
	if err != nil {
		return nil, err
	}
	return vault.Open(ctx, path, u, vault.Options{LockTimeout: configuredLockTimeout(s.config)})
}

// defaultLockTimeout is the documented default of the config's lockTimeout
// (docs/configuration.md).
const defaultLockTimeout = 30 * time.Second

// configuredLockTimeout bounds the wait for another process's change of the
// vault or the trust store.
func configuredLockTimeout(c Config) time.Duration {
	if c.LockTimeout > 0 {
		return c.LockTimeout
	}
	return defaultLockTimeout
}

// passphrase reads a passphrase from the file named by env, else asks on the
// terminal (twice when confirm). alt names the other way to supply it, for
// the error when there is no terminal. The caller clears the result.
func (s *session) passphrase(env, prompt string, confirm bool, alt string) ([]byte, error) {
	if f := s.getenv(env); f != "" {
		p, err := s.readPassphraseFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", env, err) // which setting sent us there
		}
		return p, nil
	}
	how := "set " + env + " to a file holding it"
	if alt != "" {
		how += ", or use " + alt
	}
	return s.promptPassphrase(prompt, confirm, how)
}

// readPassphraseFile reads a passphrase file: its content without one
// trailing newline.
func (s *session) readPassphraseFile(path string) ([]byte, error) {
	b, err := s.readSecretFile(path)
	if err != nil {
		return nil, err
	}
	return trimNewline(b), nil
}

// trimNewline drops one trailing "\n" or "\r\n", as editors and echo add.
func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// readSecretFile reads a passphrase or identity file. Unlike readFileArg it
// never reads stdin, which carries secret values for `vault put`.
func (s *session) readSecretFile(path string) ([]byte, error) {
	if path == "-" {
		return nil, usageError("a passphrase or identity file cannot be stdin (-); name a file")
	}
	return s.readFileArg(path, maxPassphraseFile)
}

// openTTY opens the controlling terminal for prompts. Tests replace it.
var openTTY = func() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) }

// promptPassphrase asks on the terminal, without echo. The prompt goes to
// the terminal itself, so it is seen even when stderr is redirected; stdout
// stays for results. Without a terminal it fails with a usage error saying
// how else to supply the passphrase.
func (s *session) promptPassphrase(prompt string, confirm bool, how string) ([]byte, error) {
	tty, err := openTTY()
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return nil, usageError(fmt.Sprintf("no terminal to ask for a passphrase (%s): %s", trimPrompt(prompt), how))
	}
	defer tty.Close()
	p, err := readHidden(tty, prompt)
	if err != nil {
		return nil, err
	}
	if !confirm {
		return p, nil
	}
	again, err := readHidden(tty, "Repeat "+lowerFirst(prompt))
	if err != nil {
		clear(p)
		return nil, err
	}
	defer clear(again)
	if !bytes.Equal(p, again) {
		clear(p)
		return nil, usageError("the two passphrases differ; nothing was changed")
	}
	return p, nil
}

func readHidden(tty *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(tty, display.Text(prompt))
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	return p, nil
}

func trimPrompt(p string) string {
	p = string(bytes.TrimRight([]byte(p), ": "))
	return lowerFirst(p)
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

// readLimited reads at most limit bytes of r; more is errFileTooLarge
// naming what.
func readLimited(r io.Reader, what string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, &fileError{path: what, err: errFileTooLarge}
	}
	return b, nil
}
