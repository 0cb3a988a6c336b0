package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/secret"
)

// openPTY returns a pseudo-terminal's master and its terminal side.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestRunSecretsPromptsOnATerminal: a required secret that resolves from
// nowhere is asked for on the terminal (without echo) and used for the
// run; without a terminal it is ERR_PACK_SECRET_MISSING.
func TestRunSecretsPromptsOnATerminal(t *testing.T) {
	secrets := []plan.Secret{{Name: "api-token", Source: "env:API_TOKEN", Required: true, Scope: "step", Steps: []string{"apply"}}}
	ctx := context.Background()

	s := &session{getenv: func(string) string { return "" }, stderr: os.Stderr}
	if _, err := s.runSecrets(ctx, "", secrets); !errors.Is(err, secret.ErrMissing) {
		t.Fatalf("without a terminal: %v, want ErrMissing", err)
	}

	master, tty := openPTY(t)
	saved := openTTY
	t.Cleanup(func() { openTTY = saved })
	openTTY = func() (*os.File, error) { return os.OpenFile(tty.Name(), os.O_RDWR, 0) }
	if _, err := master.Write([]byte("typed-token-value-42\n")); err != nil {
		t.Fatal(err)
	}
	s.stderr = tty
	r, err := s.runSecrets(ctx, "", secrets)
	if err != nil {
		t.Fatal(err)
	}
	defer r.done()
	v, err := r.resolve(ctx, secrets[0])
	if err != nil || string(v) != "typed-token-value-42" {
		t.Errorf("resolved %q, %v", v, err)
	}
}

// TestLoginPromptsOnATerminal: without -u and --password-stdin, the user
// name and the password are asked on the terminal; without one, login
// says how to give them.
func TestLoginPromptsOnATerminal(t *testing.T) {
	home := t.TempDir()
	saved := openTTY
	t.Cleanup(func() { openTTY = saved })
	openTTY = func() (*os.File, error) { return nil, errors.New("no terminal") }
	if r := stella(t, home, nil, "registry", "login", "--no-check", "registry.sealed.local:5000"); r.code != 1 || !strings.Contains(r.stderr, "no terminal to ask on") {
		t.Fatalf("without a terminal: %d %s", r.code, r.stderr)
	}

	master, tty := openPTY(t)
	openTTY = func() (*os.File, error) { return os.OpenFile(tty.Name(), os.O_RDWR, 0) }
	auth := filepath.Join(t.TempDir(), "auth.json")
	// Typed ahead, both at once: the user name is read without taking
	// the password with it.
	if _, err := master.Write([]byte("robot\ntyped-registry-pass-7\n")); err != nil {
		t.Fatal(err)
	}
	r := stella(t, home, map[string]string{"REGISTRY_AUTH_FILE": auth}, "registry", "login", "--no-check", "https://registry.sealed.local:5000/")
	if r.code != 0 || !strings.Contains(r.stdout, "stored credential for registry.sealed.local:5000") {
		t.Fatalf("login: %d %s %s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(auth)
	if err != nil || !strings.Contains(string(b), "registry.sealed.local:5000") {
		t.Fatalf("auth file: %s %v", b, err)
	}
	if strings.Contains(r.stdout+r.stderr, "typed-registry-pass-7") {
		t.Error("the password was printed")
	}
}
