package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.io/stella/vault"
)

func TestTrimNewline(t *testing.T) {
	for in, want := range map[string]string{
		"pass":       "pass",
		"pass\n":     "pass",
		"pass\r\n":   "pass",
		"pass\n\n":   "pass\n", // only one newline is a file ending
		" pass \n":   " pass ", // spaces are part of the passphrase
		"\n":         "",
		"pa\nss\n":   "pa\nss",
		"pass\n\r\n": "pass\n",
	} {
		if got := string(trimNewline([]byte(in))); got != want {
			t.Errorf("trimNewline(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVaultPathPrecedence(t *testing.T) {
	home := t.TempDir()
	abs := filepath.Join(home, "elsewhere", "v.age")
	cases := []struct {
		name, flag, url, config, want string
		err                           error
	}{
		{name: "default", want: filepath.Join(home, defaultVaultFile)},
		{name: "config relative to home", config: "vaults/ops.age", want: filepath.Join(home, "vaults/ops.age")},
		{name: "config absolute", config: abs, want: abs},
		{name: "url over config", url: "file://" + abs, config: "x.age", want: abs},
		{name: "flag over all", flag: "mine.age", url: "file://" + abs, config: "x.age", want: "mine.age"},
		{name: "url not a file url", url: "https://vault.example/v", err: vault.ErrUnsupportedURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &session{home: home, config: Config{Vault: c.config}, getenv: func(k string) string {
				if k == envVaultURL {
					return c.url
				}
				return ""
			}}
			got, err := s.vaultPath(c.flag)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if got != c.want {
				t.Errorf("path = %q, want %q", got, c.want)
			}
		})
	}
}

// Without a terminal, a missing passphrase is a usage error that says how
// to give one, never a hang.
func TestPassphraseWithoutTerminal(t *testing.T) {
	saved := openTTY
	t.Cleanup(func() { openTTY = saved })
	openTTY = func() (*os.File, error) { return nil, errors.New("no tty") }

	s := &session{getenv: func(string) string { return "" }}
	_, err := s.vaultUnlocker("", "Vault passphrase: ", false)
	if !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a usage error", err)
	}
	for _, want := range []string{envVaultPassphraseFile, "--identity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %s", err, want)
		}
	}
	_, err = s.passphrase(envKeyPassphraseFile, "Passphrase for key k: ", false, "")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), envKeyPassphraseFile) {
		t.Errorf("key passphrase without a terminal: %v", err)
	}

	// A regular file is not a terminal either.
	f, err := os.Create(filepath.Join(t.TempDir(), "not-a-tty"))
	if err != nil {
		t.Fatal(err)
	}
	openTTY = func() (*os.File, error) { return f, nil }
	if _, err := s.passphrase(envKeyPassphraseFile, "Passphrase: ", true, ""); !errors.Is(err, errUsage) {
		t.Errorf("non-terminal: err = %v, want a usage error", err)
	}
}

func TestPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pass")
	if err := os.WriteFile(file, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &session{getenv: func(k string) string {
		if k == envKeyPassphraseFile {
			return file
		}
		return ""
	}}
	p, err := s.passphrase(envKeyPassphraseFile, "", true, "")
	if err != nil || string(p) != "correct horse" {
		t.Errorf("passphrase = %q, %v; want %q", p, err, "correct horse")
	}
	// Stdin carries secret values; it is never a passphrase file.
	if _, err := s.readPassphraseFile("-"); !errors.Is(err, errUsage) {
		t.Errorf("stdin as passphrase file: %v, want a usage error", err)
	}
	if _, err := s.readPassphraseFile(filepath.Join(dir, "missing")); !errors.Is(err, errFileNotFound) {
		t.Errorf("missing passphrase file: %v, want errFileNotFound", err)
	}
}

func TestKeyValuesFlag(t *testing.T) {
	var kv keyValues
	for _, v := range []string{"owner=ops", "note=a,b=c", "empty="} {
		if err := kv.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	want := map[string]string{"owner": "ops", "note": "a,b=c", "empty": ""}
	if len(kv.m) != len(want) {
		t.Fatalf("got %v, want %v", kv.m, want)
	}
	for k, v := range want {
		if kv.m[k] != v {
			t.Errorf("%s = %q, want %q", k, kv.m[k], v)
		}
	}
	for _, bad := range []string{"novalue", "=x", "owner=again"} {
		if err := kv.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
