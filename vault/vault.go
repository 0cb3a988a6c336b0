package vault

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"stellaops.io/stella/internal/safefile"
)

// DefaultLockTimeout is how long a write waits for another writer's lock
// when Options.LockTimeout is zero.
const DefaultLockTimeout = 10 * time.Second

// Options tune an opened Vault.
type Options struct {
	// LockTimeout bounds the wait for the vault lock on each write;
	// zero means DefaultLockTimeout. A write that times out returns ErrLocked.
	LockTimeout time.Duration
}

// Secret is one named secret. Its Value renders as "[redacted]" everywhere;
// use Value.Reveal for the bytes.
type Secret struct {
	Name    string
	Value   Value
	Scope   string
	Meta    map[string]string
	Created time.Time
	Updated time.Time
}

// SecretInfo describes a secret without its value.
type SecretInfo struct {
	Name  string
	Scope string
	// Hint is the last four characters of the value when the value is
	// printable UTF-8 of at least twelve characters, else "****".
	Hint    string
	Created time.Time
	Updated time.Time
}

// KeyEntry is a private signing key held in the vault.
type KeyEntry struct {
	Name       string
	Algorithm  string
	KeyID      string
	PrivatePEM Value // PKCS#8 "PRIVATE KEY" PEM
	PublicPEM  []byte
	Created    time.Time
}

// KeyInfo describes a signing key without its private part.
type KeyInfo struct {
	Name      string
	Algorithm string
	KeyID     string
	PublicPEM []byte
	Created   time.Time
}

// Vault is an opened vault: a decrypted snapshot plus what is needed to
// re-read and rewrite the file. Reads (Get, List, Key, Keys, Resolve) see
// the snapshot taken by Open or by this handle's last write; every write
// re-reads the file under the lock, so it never loses another writer's
// change. A Vault is safe for concurrent use.
type Vault struct {
	path        string
	lockTimeout time.Duration

	mu     sync.Mutex
	unlock Unlocker // the Vault's own clone, wiped by Close
	p      *payload // nil once closed
}

// Init creates an empty vault at path sealed with unlock: a passphrase, or
// the recipients of every identity in an identity file. It refuses to
// replace any existing file (ErrExists). The parent directory is created
// with mode 0700 if missing; the vault file has mode 0600.
func Init(ctx context.Context, path string, unlock Unlocker) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if unlock == nil {
		return fmt.Errorf("init vault %s: %w: none given", path, ErrInvalidUnlocker)
	}
	recips, err := unlock.recipients()
	if err != nil {
		return fmt.Errorf("init vault %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("init vault %s: %w", path, err)
	}
	release, err := acquire(ctx, path, DefaultLockTimeout)
	if err != nil {
		return err
	}
	defer release()
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("init vault %s: %w", path, ErrExists)
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("init vault %s: %w", path, err)
	}
	return write(ctx, path, newPayload(), recips)
}

// Open reads and decrypts the vault at path. Errors: ErrVaultNotFound,
// ErrNotAVault (not an age file, or not a stella vault inside),
// ErrBadPassphrase (also *age.NoIdentityMatchError), ErrCorrupt (tampered
// or truncated), ErrInvalidUnlocker. Open takes no lock: writes replace the
// file atomically, so a reader sees one complete version. Leftover temp
// files of killed writers are ignored (and removed by the next write).
func Open(ctx context.Context, path string, unlock Unlocker, opts Options) (*Vault, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if unlock == nil {
		return nil, fmt.Errorf("open vault %s: %w: none given", path, ErrInvalidUnlocker)
	}
	u := unlock.clone()
	p, err := load(path, u)
	if err != nil {
		u.wipe()
		return nil, err
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	return &Vault{path: path, lockTimeout: timeout, unlock: u, p: p}, nil
}

// load reads, decrypts and decodes the vault file.
func load(path string, u Unlocker) (*payload, error) {
	ids, err := u.identities()
	if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", path, err)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	plain, err := unseal(data, ids)
	if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", path, err)
	}
	defer clear(plain)
	p, err := decode(plain)
	if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", path, err)
	}
	return p, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("vault %s: %w", path, ErrVaultNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open vault %s: %w: not a regular file", path, ErrNotAVault)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read vault %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("open vault %s: %w: larger than %d bytes", path, ErrNotAVault, maxFileSize)
	}
	return data, nil
}

// write encodes, checks, encrypts and atomically replaces the vault file.
// The caller holds the lock.
func write(ctx context.Context, path string, p *payload, recips []age.Recipient) error {
	plain := p.encode()
	defer clear(plain)
	// Never write a payload this package would refuse to read back.
	back, err := decode(plain)
	if err != nil {
		return fmt.Errorf("write vault %s: internal error: %w", path, err)
	}
	back.wipe()
	sealed, err := seal(plain, recips)
	if err != nil {
		return fmt.Errorf("write vault %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	removeStaleTemps(path)
	if err := safefile.WriteBytes(path, sealed, 0o600); err != nil {
		return fmt.Errorf("write vault %s: %w", path, err)
	}
	return nil
}

// removeStaleTemps deletes temp files that safefile left for this vault when
// a writer was killed. Only called under the lock, when no other writer of
// this vault can have a temp file open. A temp name is the safefile prefix,
// the vault's base name, '-', the writer's pid, '-' and random digits (or,
// written by older versions, the random digits only); other files never
// match.
func removeStaleTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := safefile.TempPrefix + base + "-"
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !tempSuffix(rest) || !e.Type().IsRegular() {
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
}

// tempSuffix reports whether rest is "<digits>-<digits>" or "<digits>".
func tempSuffix(rest string) bool {
	parts := strings.Split(rest, "-")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// update applies fn to the vault as it is on disk now, under the lock, and
// writes the result. If next is not nil the result is sealed to it and it
// replaces the handle's unlocker. On any error neither the file nor the
// snapshot changes.
func (v *Vault) update(ctx context.Context, fn func(*payload) error, next Unlocker) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return fmt.Errorf("vault %s: %w", v.path, ErrClosed)
	}
	sealTo := v.unlock
	if next != nil {
		sealTo = next
	}
	recips, err := sealTo.recipients()
	if err != nil {
		return fmt.Errorf("vault %s: %w", v.path, err)
	}
	release, err := acquire(ctx, v.path, v.lockTimeout)
	if err != nil {
		return err
	}
	defer release()
	p, err := load(v.path, v.unlock)
	if err != nil {
		return err
	}
	if err := fn(p); err != nil {
		p.wipe()
		return err
	}
	if err := write(ctx, v.path, p, recips); err != nil {
		p.wipe()
		return err
	}
	v.p.wipe()
	v.p = p
	if next != nil {
		v.unlock.wipe()
		v.unlock = next
	}
	return nil
}

// nameError reports an invalid name without echoing it: a mistyped call
// could pass a secret where a name belongs.
func nameError(kind, name string) error {
	return fmt.Errorf("%s name of %d bytes: %w", kind, len(name), ErrInvalidName)
}

// notFound is ErrSecretNotFound for name, which it does not repeat: a name
// that is not there may be a value typed in its place.
func notFound(name string) error {
	return fmt.Errorf("secret name of %d bytes: %w", len(name), ErrSecretNotFound)
}

// Put creates or replaces the secret name. A replaced secret keeps its
// creation time; Updated becomes now (UTC; the zero time means the current
// time). The vault keeps its own copy of value and meta. Errors:
// ErrInvalidName, ErrInvalidEntry (empty value, bad scope or metadata),
// ErrLocked, and the errors of Open.
func (v *Vault) Put(ctx context.Context, name string, value []byte, scope string, meta map[string]string, now time.Time) error {
	if validName(name) != nil {
		return nameError("secret", name)
	}
	now, err := normTime(now)
	if err != nil {
		return fmt.Errorf("secret %q: %w", name, err)
	}
	if err := checkSecret(name, value, scope, meta); err != nil {
		return err
	}
	val := bytes.Clone(value)
	var m map[string]string
	if len(meta) > 0 {
		m = maps.Clone(meta)
	}
	err = v.update(ctx, func(p *payload) error {
		rec := &secretRecord{Created: now, Updated: now, Scope: scope, Meta: m, Value: val}
		if old := p.Secrets[name]; old != nil {
			rec.Created = old.Created
			clear(old.Value)
		}
		p.Secrets[name] = rec
		return nil
	}, nil)
	if err != nil {
		clear(val)
	}
	return err
}

// Get returns a copy of the secret name (ErrSecretNotFound if absent). The
// error gives the name's length, never the name: an operator may have typed
// a value where the name belongs (Put's ErrInvalidName does the same).
func (v *Vault) Get(name string) (Secret, error) {
	if validName(name) != nil {
		return Secret{}, nameError("secret", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return Secret{}, fmt.Errorf("vault %s: %w", v.path, ErrClosed)
	}
	rec := v.p.Secrets[name]
	if rec == nil {
		return Secret{}, notFound(name)
	}
	s := Secret{
		Name:    name,
		Value:   cloneValue(rec.Value),
		Scope:   rec.Scope,
		Created: rec.Created,
		Updated: rec.Updated,
	}
	if len(rec.Meta) > 0 {
		s.Meta = maps.Clone(rec.Meta)
	}
	return s, nil
}

// Resolve returns the value a pack secret source names: source must be
// vault:<name> (ErrInvalidRef otherwise) and the secret must exist
// (ErrSecretNotFound).
func (v *Vault) Resolve(source string) (Value, error) {
	name, ok := ParseRef(source)
	if !ok {
		// Not echoed: a misplaced value must not reach a message.
		return Value{}, fmt.Errorf("secret source of %d bytes: %w, want %s<name>", len(source), ErrInvalidRef, RefPrefix)
	}
	s, err := v.Get(name)
	if err != nil {
		return Value{}, err
	}
	return s.Value, nil
}

// List describes every secret, sorted by name. It never returns values.
func (v *Vault) List() []SecretInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return nil
	}
	out := make([]SecretInfo, 0, len(v.p.Secrets))
	for _, name := range sortedKeys(v.p.Secrets) {
		rec := v.p.Secrets[name]
		out = append(out, SecretInfo{
			Name:    name,
			Scope:   rec.Scope,
			Hint:    hint(rec.Value),
			Created: rec.Created,
			Updated: rec.Updated,
		})
	}
	return out
}

// Remove deletes the secret name (ErrSecretNotFound if absent, without the
// name, as Get).
func (v *Vault) Remove(ctx context.Context, name string) error {
	if validName(name) != nil {
		return nameError("secret", name)
	}
	return v.update(ctx, func(p *payload) error {
		rec := p.Secrets[name]
		if rec == nil {
			return notFound(name)
		}
		clear(rec.Value)
		delete(p.Secrets, name)
		return nil
	}, nil)
}

// PutKey stores a private signing key: privatePEM is one PKCS#8
// "PRIVATE KEY" block; publicPEM, if not empty, the matching PKIX
// "PUBLIC KEY" block. alg and keyID are recorded as given (for example
// "ed25519" and "sha256:…"). Keys are never replaced: a taken name gives
// ErrExists. Invalid input gives ErrInvalidName or ErrInvalidEntry.
func (v *Vault) PutKey(ctx context.Context, name string, privatePEM []byte, alg, keyID string, publicPEM []byte, now time.Time) error {
	if validName(name) != nil {
		return nameError("key", name)
	}
	now, err := normTime(now)
	if err != nil {
		return fmt.Errorf("key %q: %w", name, err)
	}
	if err := checkKey(name, privatePEM, alg, keyID, publicPEM); err != nil {
		return err
	}
	priv := bytes.Clone(privatePEM)
	err = v.update(ctx, func(p *payload) error {
		if p.Keys[name] != nil {
			return fmt.Errorf("key %q: %w", name, ErrExists)
		}
		p.Keys[name] = &keyRecord{
			Algorithm:  alg,
			Created:    now,
			KeyID:      keyID,
			PrivatePEM: priv,
			PublicPEM:  string(publicPEM),
		}
		return nil
	}, nil)
	if err != nil {
		clear(priv)
	}
	return err
}

// Key returns a copy of the signing key name (ErrKeyNotFound if absent).
func (v *Vault) Key(name string) (KeyEntry, error) {
	if validName(name) != nil {
		return KeyEntry{}, nameError("key", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return KeyEntry{}, fmt.Errorf("vault %s: %w", v.path, ErrClosed)
	}
	rec := v.p.Keys[name]
	if rec == nil {
		return KeyEntry{}, fmt.Errorf("key %q: %w", name, ErrKeyNotFound)
	}
	return KeyEntry{
		Name:       name,
		Algorithm:  rec.Algorithm,
		KeyID:      rec.KeyID,
		PrivatePEM: cloneValue(rec.PrivatePEM),
		PublicPEM:  bytesOrNil(rec.PublicPEM),
		Created:    rec.Created,
	}, nil
}

// Keys describes every signing key, sorted by name, without private parts.
func (v *Vault) Keys() []KeyInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return nil
	}
	out := make([]KeyInfo, 0, len(v.p.Keys))
	for _, name := range sortedKeys(v.p.Keys) {
		rec := v.p.Keys[name]
		out = append(out, KeyInfo{
			Name:      name,
			Algorithm: rec.Algorithm,
			KeyID:     rec.KeyID,
			PublicPEM: bytesOrNil(rec.PublicPEM),
			Created:   rec.Created,
		})
	}
	return out
}

// RemoveKey deletes the signing key name (ErrKeyNotFound if absent).
func (v *Vault) RemoveKey(ctx context.Context, name string) error {
	if validName(name) != nil {
		return nameError("key", name)
	}
	return v.update(ctx, func(p *payload) error {
		rec := p.Keys[name]
		if rec == nil {
			return fmt.Errorf("key %q: %w", name, ErrKeyNotFound)
		}
		clear(rec.PrivatePEM)
		delete(p.Keys, name)
		return nil
	}, nil)
}

// Passwd re-encrypts the vault to next (a new passphrase or identity file)
// and makes this handle use it. The content is re-read under the lock and
// unchanged. After it, the old unlocker no longer opens the vault.
func (v *Vault) Passwd(ctx context.Context, next Unlocker) error {
	if next == nil {
		return fmt.Errorf("passwd vault %s: %w: none given", v.path, ErrInvalidUnlocker)
	}
	n := next.clone()
	if err := v.update(ctx, func(*payload) error { return nil }, n); err != nil {
		n.wipe()
		return err
	}
	return nil
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// Path returns the vault file's path.
func (v *Vault) Path() string { return v.path }

// Close wipes the decrypted snapshot and the handle's copy of the
// passphrase. Later calls return ErrClosed (List and Keys return nil).
func (v *Vault) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p == nil {
		return nil
	}
	v.p.wipe()
	v.p = nil
	v.unlock.wipe()
	return nil
}

// String names the vault by path; it never shows content.
func (v *Vault) String() string { return "vault.Vault(" + v.path + ")" }

// GoString is String: a Vault never renders its content.
func (v *Vault) GoString() string { return v.String() }

// Format renders String for every verb, so %+v and %#v cannot reach the
// decrypted snapshot through reflection.
func (v *Vault) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, v.String()) }
