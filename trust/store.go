package trust

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/keys"
)

// Roles a trusted key may hold.
const (
	// RolePublisher signs packs.
	RolePublisher = "publisher"
	// RoleApprove signs approvals of run gates.
	RoleApprove = "Packs.Approve"
	// RoleRun signs the evidence of runs (runner keys).
	RoleRun = "Packs.Run"
)

// AnyTenant in a key's tenants lets the key act for every tenant.
const AnyTenant = "*"

// FileVersion is the version of the trust store file format.
const FileVersion = 1

// maxStoreSize bounds the trust store file Load reads.
const maxStoreSize = 16 << 20

var knownRoles = []string{RoleApprove, RoleRun, RolePublisher}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)
	tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Key is one trusted public key.
type Key struct {
	Name      string
	KeyID     string // "sha256:<hex>" of the DER SubjectPublicKeyInfo
	PublicKey string // PKIX "PUBLIC KEY" PEM
	Roles     []string
	Tenants   []string // AnyTenant allows every tenant
	Added     time.Time
	Revoked   bool
	RevokedAt time.Time // zero unless Revoked
}

// HasRole reports whether the key holds role.
func (k Key) HasRole(role string) bool { return slices.Contains(k.Roles, role) }

// AllowsTenant reports whether the key may act for tenant. An empty tenant
// is allowed only to keys trusted for any tenant.
func (k Key) AllowsTenant(tenant string) bool {
	return slices.Contains(k.Tenants, AnyTenant) || (tenant != "" && slices.Contains(k.Tenants, tenant))
}

func (k Key) clone() Key {
	k.Roles = slices.Clone(k.Roles)
	k.Tenants = slices.Clone(k.Tenants)
	return k
}

// entry is a Key with its parsed public key and verifier.
type entry struct {
	Key
	pub      crypto.PublicKey
	verifier signature.Verifier
}

// Store is the trust store: named public keys with roles and tenants. It is
// safe for concurrent use. Changes are in memory until Save.
type Store struct {
	mu      sync.RWMutex
	entries []*entry // sorted by name
	policy  Policy   // normalized (normalizePolicy)
}

// fileEntry is one key in the trust store file.
type fileEntry struct {
	Name      string   `json:"name"`
	KeyID     string   `json:"keyId"`
	PublicKey string   `json:"publicKey"`
	Roles     []string `json:"roles"`
	Tenants   []string `json:"tenants"`
	Added     string   `json:"added"`
	Revoked   bool     `json:"revoked"`
	RevokedAt string   `json:"revokedAt,omitempty"`
}

type file struct {
	Version int         `json:"version"`
	Keys    []fileEntry `json:"keys"`
	// Policy is absent while the site keeps the default policy, so files
	// written before it existed stay byte for byte what they were.
	Policy *filePolicy `json:"policy,omitempty"`
}

// filePolicy is the site's approval policy in the trust store file.
type filePolicy struct {
	ApproverRoles     []string `json:"approverRoles"`
	AllowSelfApproval bool     `json:"allowSelfApproval"`
}

// Load reads the trust store at path. A missing file is an empty store.
func Load(path string) (*Store, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Store{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStoreSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxStoreSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, maxStoreSize, ErrInvalidStore)
	}
	s, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func parse(data []byte) (*Store, error) {
	if _, err := canonical.Transform(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidStore, err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidStore, err)
	}
	if f.Version != FileVersion {
		return nil, fmt.Errorf("version %d, want %d: %w", f.Version, FileVersion, ErrInvalidStore)
	}
	s := &Store{}
	if f.Policy != nil {
		p, err := normalizePolicy(Policy{ApproverRoles: f.Policy.ApproverRoles, AllowSelfApproval: f.Policy.AllowSelfApproval})
		if err != nil {
			return nil, fmt.Errorf("policy: %w: %w", ErrInvalidStore, err)
		}
		if !slices.Equal(p.ApproverRoles, f.Policy.ApproverRoles) {
			return nil, fmt.Errorf("policy: approverRoles not sorted, unique and without %s: %w", RoleApprove, ErrInvalidStore)
		}
		s.policy = p
	}
	for _, fe := range f.Keys {
		e, err := entryFromFile(fe, s.policy.ApproverRoles)
		if err != nil {
			return nil, err
		}
		if err := s.insert(e); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidStore, err)
		}
	}
	return s, nil
}

func entryFromFile(fe fileEntry, extraRoles []string) (*entry, error) {
	e, err := newEntry(fe.Name, []byte(fe.PublicKey), fe.Roles, fe.Tenants, extraRoles)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w: %w", fe.Name, ErrInvalidStore, err)
	}
	if e.KeyID != fe.KeyID {
		return nil, fmt.Errorf("key %q: keyId %s does not match its public key (%s): %w", fe.Name, fe.KeyID, e.KeyID, ErrInvalidStore)
	}
	if !slices.Equal(e.Roles, fe.Roles) || !slices.Equal(e.Tenants, fe.Tenants) || e.PublicKey != fe.PublicKey {
		return nil, fmt.Errorf("key %q: roles, tenants or public key not in canonical form: %w", fe.Name, ErrInvalidStore)
	}
	if e.Added, err = parseTime(fe.Added); err != nil {
		return nil, fmt.Errorf("key %q: added: %w", fe.Name, err)
	}
	e.Revoked = fe.Revoked
	switch {
	case fe.Revoked:
		if e.RevokedAt, err = parseTime(fe.RevokedAt); err != nil {
			return nil, fmt.Errorf("key %q: revokedAt: %w", fe.Name, err)
		}
	case fe.RevokedAt != "":
		return nil, fmt.Errorf("key %q: revokedAt set on a key not revoked: %w", fe.Name, ErrInvalidStore)
	}
	return e, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Location() != time.UTC || formatTime(t) != s {
		return time.Time{}, fmt.Errorf("%q is not a UTC RFC 3339 time in seconds: %w", s, ErrInvalidStore)
	}
	return t, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// newEntry validates and normalizes a key's fields: name, public key (stored
// re-encoded), roles (built-in ones and extraRoles, the site's declared
// approver roles) and tenants (sorted, deduplicated).
func newEntry(name string, pubPEM []byte, roles, tenants, extraRoles []string) (*entry, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("key name %q: %w", name, ErrInvalidEntry)
	}
	pub, id, err := keys.ParsePublic(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	v, err := keys.Verifier(pub)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	normRoles, err := normalizeRoles(roles, extraRoles)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	normTenants, err := normalizeTenants(tenants)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	p, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	return &entry{
		Key:      Key{Name: name, KeyID: id, PublicKey: string(p), Roles: normRoles, Tenants: normTenants},
		pub:      pub,
		verifier: v,
	}, nil
}

func normalizeRoles(roles, extraRoles []string) ([]string, error) {
	if len(roles) == 0 {
		return nil, fmt.Errorf("no roles: %w", ErrInvalidEntry)
	}
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !slices.Contains(knownRoles, r) && !slices.Contains(extraRoles, r) {
			known := slices.Concat(knownRoles, extraRoles)
			return nil, fmt.Errorf("role %q (known: %s): %w", r, strings.Join(known, ", "), ErrUnknownRole)
		}
		out = append(out, r)
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

func normalizeTenants(tenants []string) ([]string, error) {
	if len(tenants) == 0 {
		return nil, fmt.Errorf("no tenants (use %q for any): %w", AnyTenant, ErrInvalidEntry)
	}
	out := make([]string, 0, len(tenants))
	for _, t := range tenants {
		if t != AnyTenant && !tenantRE.MatchString(t) {
			return nil, fmt.Errorf("tenant %q: %w", t, ErrInvalidEntry)
		}
		out = append(out, t)
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// insert adds e keeping entries sorted; duplicate name or key id is ErrExists.
func (s *Store) insert(e *entry) error {
	for _, o := range s.entries {
		if o.Name == e.Name {
			return fmt.Errorf("key name %q: %w", e.Name, ErrExists)
		}
		if o.KeyID == e.KeyID {
			return fmt.Errorf("key %s is already trusted as %q: %w", e.KeyID, o.Name, ErrExists)
		}
	}
	i, _ := slices.BinarySearchFunc(s.entries, e.Name, func(o *entry, name string) int {
		switch {
		case o.Name < name:
			return -1
		case o.Name > name:
			return 1
		}
		return 0
	})
	s.entries = slices.Insert(s.entries, i, e)
	return nil
}

func (s *Store) byName(name string) *entry {
	for _, e := range s.entries {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func (s *Store) byKeyID(id string) *entry {
	for _, e := range s.entries {
		if e.KeyID == id {
			return e
		}
	}
	return nil
}

// Add trusts the public key pubPEM (PKIX PEM, ECDSA P-256 or Ed25519)
// under name, with roles (RolePublisher, RoleApprove, RoleRun, or an
// approver role the site's Policy declares) and tenants (names, or
// AnyTenant). A name or key already present, even revoked, is ErrExists;
// an unknown role is ErrUnknownRole.
func (s *Store) Add(name string, pubPEM []byte, roles, tenants []string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := newEntry(name, pubPEM, roles, tenants, s.policy.ApproverRoles)
	if err != nil {
		return err
	}
	e.Added = now.UTC().Truncate(time.Second)
	return s.insert(e)
}

// Revoke marks the key called name revoked: signatures it made no longer
// verify. The entry stays so the key cannot be added again unnoticed.
// Revoking a revoked key changes nothing.
func (s *Store) Revoke(name string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byName(name)
	if e == nil {
		return fmt.Errorf("key %q: %w", name, ErrKeyNotFound)
	}
	if !e.Revoked {
		e.Revoked = true
		e.RevokedAt = now.UTC().Truncate(time.Second)
	}
	return nil
}

// Remove deletes the key called name from the store.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.entries, func(e *entry) bool { return e.Name == name })
	if i < 0 {
		return fmt.Errorf("key %q: %w", name, ErrKeyNotFound)
	}
	s.entries = slices.Delete(s.entries, i, i+1)
	return nil
}

// List returns every key, revoked ones included, sorted by name.
func (s *Store) List() []Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Key, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.Key.clone()
	}
	return out
}

// Lookup returns the key with id keyID ("sha256:<hex>"), revoked or not.
func (s *Store) Lookup(keyID string) (Key, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.byKeyID(keyID); e != nil {
		return e.Key.clone(), true
	}
	return Key{}, false
}

// Get returns the key called name, revoked or not.
func (s *Store) Get(name string) (Key, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.byName(name); e != nil {
		return e.Key.clone(), true
	}
	return Key{}, false
}

// Marshal returns the trust store file: RFC 8785 canonical JSON (members
// sorted, keys sorted by name) and a final newline.
func (s *Store) Marshal() ([]byte, error) {
	s.mu.RLock()
	f := file{Version: FileVersion, Keys: make([]fileEntry, len(s.entries))}
	for i, e := range s.entries {
		fe := fileEntry{
			Name: e.Name, KeyID: e.KeyID, PublicKey: e.PublicKey,
			Roles: e.Roles, Tenants: e.Tenants,
			Added: formatTime(e.Added), Revoked: e.Revoked,
		}
		if e.Revoked {
			fe.RevokedAt = formatTime(e.RevokedAt)
		}
		f.Keys[i] = fe
	}
	if len(s.policy.ApproverRoles) > 0 || s.policy.AllowSelfApproval {
		f.Policy = &filePolicy{ApproverRoles: slices.Clone(s.policy.ApproverRoles), AllowSelfApproval: s.policy.AllowSelfApproval}
		if f.Policy.ApproverRoles == nil {
			f.Policy.ApproverRoles = []string{}
		}
	}
	s.mu.RUnlock()
	canon, err := canonical.Marshal(f)
	if err != nil {
		return nil, err
	}
	return append(canon, '\n'), nil
}

// Save writes the trust store to path atomically, mode 0644.
func (s *Store) Save(path string) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	return safefile.WriteBytes(path, b, 0o644)
}
