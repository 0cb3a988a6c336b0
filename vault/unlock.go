package vault

import (
	"bytes"
	"fmt"
	"io"

	"filippo.io/age"
)

// Unlocker opens and seals a vault: a passphrase (age scrypt recipient) or
// an age identity file (X25519 or hybrid post-quantum identities). Build one
// with Passphrase or IdentityFile. Unlockers never render their secret:
// every fmt verb shows only their kind.
type Unlocker interface {
	// identities returns what decrypts the vault.
	identities() ([]age.Identity, error)
	// recipients returns what a write encrypts to.
	recipients() ([]age.Recipient, error)
	// kind names the unlocker in messages ("passphrase", "identity file").
	kind() string
	// clone returns an independent copy; a Vault keeps its own clone so that
	// Close can wipe it without touching the caller's Unlocker.
	clone() Unlocker
	// wipe forgets the secret material.
	wipe()
}

// Passphrase returns an Unlocker for a passphrase-protected vault. It keeps
// a copy of p, so the caller may wipe p after the call. A write derives a new
// scrypt key with age's default work factor (about a second of CPU).
func Passphrase(p []byte) Unlocker {
	return &passphrase{p: bytes.Clone(p)}
}

// sealWorkFactor, when > 0, is the scrypt cost (log2 N) a Passphrase unlocker
// seals with instead of age's default (SetScryptWorkFactor).
var sealWorkFactor int

// SetScryptWorkFactor sets the scrypt cost (log2 N) with which Passphrase
// unlockers seal vaults from then on (0: age's default, 18), and returns the
// one it replaces. Opening a vault takes the cost from its file, as before.
//
// Only test binaries call it, before their tests start: at age's default one
// seal or open costs seconds of CPU under the race detector, and the CLI's
// scripts do dozens. No command calls it; the cost is what protects a copied
// vault against guessing.
func SetScryptWorkFactor(logN int) (previous int) {
	previous, sealWorkFactor = sealWorkFactor, logN
	return previous
}

type passphrase struct {
	p []byte
	// logN overrides age's scrypt work factor when > 0. Only tests set it,
	// to keep the suite fast; production always uses age's default.
	logN int
}

func (u *passphrase) check() error {
	if len(u.p) == 0 {
		return fmt.Errorf("%w: empty passphrase", ErrInvalidUnlocker)
	}
	return nil
}

func (u *passphrase) identities() ([]age.Identity, error) {
	if err := u.check(); err != nil {
		return nil, err
	}
	id, err := age.NewScryptIdentity(string(u.p))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidUnlocker, err)
	}
	if u.logN > 0 {
		// Test vaults are sealed with logN; refusing more keeps hostile
		// fuzz inputs from asking for gigabytes of scrypt memory.
		id.SetMaxWorkFactor(u.logN)
	}
	return []age.Identity{id}, nil
}

func (u *passphrase) recipients() ([]age.Recipient, error) {
	if err := u.check(); err != nil {
		return nil, err
	}
	r, err := age.NewScryptRecipient(string(u.p))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidUnlocker, err)
	}
	if u.logN > 0 {
		r.SetWorkFactor(u.logN)
	} else if sealWorkFactor > 0 {
		r.SetWorkFactor(sealWorkFactor)
	}
	return []age.Recipient{r}, nil
}

func (u *passphrase) kind() string { return "passphrase" }
func (u *passphrase) wipe()        { clear(u.p) }
func (u *passphrase) clone() Unlocker {
	return &passphrase{p: bytes.Clone(u.p), logN: u.logN}
}

func (u *passphrase) String() string   { return "vault.Passphrase(" + redacted + ")" }
func (u *passphrase) GoString() string { return u.String() }
func (u *passphrase) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, u.String())
}

// IdentityFile returns an Unlocker for an age identity file: one identity per
// line (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…), "#" comments allowed, as
// written by age-keygen. Init and every write encrypt to the recipients of
// all identities in the file. A malformed file is reported (ErrInvalidUnlocker)
// when the Unlocker is first used; the file's content never appears in it.
func IdentityFile(data []byte) Unlocker {
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		// age's parse errors never echo key material.
		return &identityFile{err: fmt.Errorf("%w: %v", ErrInvalidUnlocker, err)}
	}
	u := &identityFile{ids: ids}
	for _, id := range ids {
		switch id := id.(type) {
		case *age.X25519Identity:
			u.recips = append(u.recips, id.Recipient())
		case *age.HybridIdentity:
			u.recips = append(u.recips, id.Recipient())
		default:
			u.err = fmt.Errorf("%w: unsupported identity type %T", ErrInvalidUnlocker, id)
			return u
		}
	}
	return u
}

type identityFile struct {
	ids    []age.Identity
	recips []age.Recipient
	err    error
}

func (u *identityFile) identities() ([]age.Identity, error) {
	if u.err != nil {
		return nil, u.err
	}
	if len(u.ids) == 0 {
		return nil, fmt.Errorf("%w: no identities", ErrInvalidUnlocker)
	}
	return u.ids, nil
}

func (u *identityFile) recipients() ([]age.Recipient, error) {
	if _, err := u.identities(); err != nil {
		return nil, err
	}
	return u.recips, nil
}

func (u *identityFile) kind() string { return "identity file" }
func (u *identityFile) clone() Unlocker {
	c := *u
	return &c
}

// wipe drops the parsed identities. age keeps the scalar unexported, so the
// best this package can do is to let the garbage collector have it.
func (u *identityFile) wipe() { u.ids, u.recips = nil, nil }

func (u *identityFile) String() string   { return "vault.IdentityFile(" + redacted + ")" }
func (u *identityFile) GoString() string { return u.String() }
func (u *identityFile) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, u.String())
}
