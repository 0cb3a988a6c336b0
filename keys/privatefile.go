package keys

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"stellaops.io/stella/internal/safefile"
)

// File name suffixes written by WriteFiles.
const (
	PrivateKeySuffix = ".key"
	PublicKeySuffix  = ".pub"
)

// maxKeyFileSize bounds what ParsePrivate reads; a key file is under 1 KiB.
const maxKeyFileSize = 64 << 10

// scryptWorkFactor is the scrypt cost (log2 N) of the key files MarshalPrivate
// writes: age's default, unless a test lowered it (SetScryptWorkFactor).
var scryptWorkFactor = 18

// SetScryptWorkFactor sets the scrypt cost (log2 N) that MarshalPrivate gives
// the key files it writes from then on, and returns the cost it replaces (18,
// age's default, until it is called). The file format and the reading side do
// not change: ParsePrivate takes the cost from the file, up to 22.
//
// Only test binaries call it, before their tests start: at 18 one key file
// costs seconds of CPU under the race detector, and the CLI's scripts write
// and open dozens. No command calls it; the cost is what protects a stolen
// key file against guessing.
func SetScryptWorkFactor(logN int) (previous int) {
	previous, scryptWorkFactor = scryptWorkFactor, logN
	return previous
}

// maxScryptWorkFactor bounds the cost a key file may demand of ParsePrivate.
const maxScryptWorkFactor = 22

// MarshalPrivatePEM returns the private key as an unencrypted PKCS#8
// "PRIVATE KEY" PEM block. Store it only inside something already
// encrypted (the vault); for a file on disk use MarshalPrivate.
func MarshalPrivatePEM(p *Pair) ([]byte, error) {
	b, err := cryptoutils.MarshalPrivateKeyToPEM(p.priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key %s: %w", p.id, err)
	}
	return b, nil
}

// ParsePrivatePEM parses an unencrypted PKCS#8 "PRIVATE KEY" PEM block
// holding an ECDSA P-256 or Ed25519 key.
func ParsePrivatePEM(data []byte) (*Pair, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != string(cryptoutils.PrivateKeyPEMType) || len(block.Headers) != 0 {
		return nil, ErrNotAKey
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("data after the private key block: %w", ErrNotAKey)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAKey, err)
	}
	return newPair(priv)
}

// MarshalPrivate returns the private key file: the PKCS#8 PEM of the key,
// encrypted with age to a scrypt (passphrase) recipient and ASCII-armored
// ("-----BEGIN AGE ENCRYPTED FILE-----"). `age -d` opens it too.
func MarshalPrivate(p *Pair, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	plain, err := MarshalPrivatePEM(p)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	r, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", p.id, err)
	}
	r.SetWorkFactor(scryptWorkFactor)
	var out bytes.Buffer
	aw := armor.NewWriter(&out)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, fmt.Errorf("encrypt key %s: %w", p.id, err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt key %s: %w", p.id, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt key %s: %w", p.id, err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("encrypt key %s: %w", p.id, err)
	}
	return out.Bytes(), nil
}

// ParsePrivate opens a private key file written by MarshalPrivate.
// A wrong passphrase gives ErrBadPassphrase, data that is not a
// passphrase-encrypted key file gives ErrNotAKey, and a damaged or altered
// file gives ErrKeyFileCorrupt wrapping age's error.
func ParsePrivate(data, passphrase []byte) (*Pair, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file of %d bytes: %w", len(data), ErrNotAKey)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(armor.Header)) {
		return nil, ErrNotAKey
	}
	id, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, err
	}
	id.SetMaxWorkFactor(maxScryptWorkFactor)
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(data)), id)
	if err != nil {
		return nil, classifyAgeError(err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize))
	defer clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFileCorrupt, err)
	}
	p, err := ParsePrivatePEM(plain)
	if err != nil {
		return nil, fmt.Errorf("decrypted key file: %w", err)
	}
	return p, nil
}

// classifyAgeError maps an age.Decrypt failure to this package's errors.
func classifyAgeError(err error) error {
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		if slices.Contains(noMatch.StanzaTypes, "scrypt") && len(noMatch.StanzaTypes) == 1 {
			return ErrBadPassphrase
		}
		// Encrypted to a public key, not to a passphrase.
		return fmt.Errorf("age file not encrypted to a passphrase: %w", ErrNotAKey)
	}
	return fmt.Errorf("%w: %w", ErrKeyFileCorrupt, err)
}

// WriteFiles writes <dir>/<name>.key (the encrypted private key, mode 0600)
// and <dir>/<name>.pub (the public key PEM, mode 0644) atomically. It
// refuses with ErrExists when either file already exists.
func WriteFiles(dir, name string, p *Pair, passphrase []byte) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("key name %q: %w", name, ErrInvalidName)
	}
	keyPath := filepath.Join(dir, name+PrivateKeySuffix)
	pubPath := filepath.Join(dir, name+PublicKeySuffix)
	for _, path := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, ErrExists)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	enc, err := MarshalPrivate(p, passphrase)
	if err != nil {
		return err
	}
	if err := safefile.WriteBytes(keyPath, enc, 0o600); err != nil {
		return err
	}
	return safefile.WriteBytes(pubPath, p.PublicPEM(), 0o644)
}
