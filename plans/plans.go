// Package plans keeps saved plans in the cache: the canonical bytes of a
// plan (package plan), stored under the plan's hash with a little metadata
// (the pack ref, the tenant approvals are asked for, the save time, the
// pack manifest's size). `stella pack plan --save` saves them; `stella pack
// plans list|show` and package approve read them.
//
// # Invariants
//
// Only bytes that are exactly the RFC 8785 canonical JSON of a valid plan
// are saved (ParseCanonical), so a saved plan's key is the hash of its
// bytes. A saved plan is never changed: saving it again keeps the first
// record, whatever the new metadata says. Saved plans are never deleted.
// Readers may therefore look a plan up in one transaction and rely on it
// in a later one (package approve does, before its gate transactions).
//
// # Storage
//
// Records live in the cache index (cache.Store.Records). For compatibility
// with caches written before this package existed, when saved plans were
// part of package approve, they stay where they were: bucket "plans" of
// record namespace "approve", the index bucket approve.plans (plan hash →
// JSON record of the canonical plan and its metadata). This package reads
// and writes only that bucket of the namespace; package approve keeps its
// own buckets beside it and checks that each plan record decodes when the
// cache is verified (approve.VerifyHook).
package plans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/plan"
)

// Where saved plans are kept: see the package comment.
const (
	namespace = "approve"
	bucket    = "plans"
)

const (
	// MinHashPrefix is the shortest hash prefix (hex digits) Get accepts.
	MinHashPrefix = 12
	// MaxSize bounds a plan's canonical bytes.
	MaxSize = 32 << 20
)

var (
	// ErrNotFound: no saved plan has that hash (or hash prefix), or the
	// hash given is malformed or too short a prefix.
	ErrNotFound = errors.New("plan not saved in this cache")
	// ErrAmbiguous: a hash prefix matches more than one saved plan.
	ErrAmbiguous = errors.New("plan hash prefix matches several plans")
	// ErrInvalidMeta: the Meta given to Save is malformed (tenant syntax,
	// negative pack size).
	ErrInvalidMeta = errors.New("invalid saved plan metadata")
	// ErrCorrupt: a saved plan record in the cache cannot be decoded, or
	// its bytes are not a canonical plan.
	ErrCorrupt = errors.New("saved plan record is corrupt")
)

// tenantRE is the tenant syntax of the trust store.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Meta describes a plan being saved.
type Meta struct {
	// PackRef is "<name>:<version>" of the planned pack; empty means the
	// plan's own. A value that disagrees with the plan is refused.
	PackRef string
	// Tenant is the tenant approvals of this plan are asked for, unless a
	// request names another; empty for none.
	Tenant string
	// SavedAt is the save time; zero means now. It is kept in UTC, whole
	// seconds.
	SavedAt time.Time
	// PackSize is the size of the pack's manifest (the pack digest's
	// content), which an approval request's subject descriptor needs. The
	// caller knows it when it derived the digest (artifact.Build); zero means
	// unknown, and requests then need the pack in the cache.
	PackSize int64
}

// Saved is a plan saved in the cache.
type Saved struct {
	Hash      digest.Digest
	PackRef   string
	Pack      plan.PackRef
	Tenant    string
	SavedAt   time.Time
	PackSize  int64
	Size      int64           // bytes of the canonical plan
	Approvals []plan.Approval // the plan's approval gates
	// Canonical and Plan are set by Get and Save, not by List.
	Canonical []byte
	Plan      *plan.Plan
}

// record is the stored form of a saved plan. Its JSON is the on-disk
// format of approve.plans: do not rename fields.
type record struct {
	PackRef   string          `json:"packRef"`
	Pack      plan.PackRef    `json:"pack"`
	Tenant    string          `json:"tenant"`
	SavedAt   time.Time       `json:"savedAt"`
	PackSize  int64           `json:"packSize"`
	Approvals []plan.Approval `json:"approvals"`
	Canonical []byte          `json:"canonical"`
}

func (r *record) saved(h digest.Digest, full bool) *Saved {
	sp := &Saved{Hash: h, PackRef: r.PackRef, Pack: r.Pack, Tenant: r.Tenant, SavedAt: r.SavedAt,
		PackSize: r.PackSize, Size: int64(len(r.Canonical)), Approvals: slices.Clone(r.Approvals)}
	if full {
		sp.Canonical = slices.Clone(r.Canonical)
	}
	return sp
}

// ParseCanonical parses plan bytes that must be exactly the canonical JSON
// of a plan: at most MaxSize bytes, plan.Parse accepts them, hashing them
// as they are gives the same hash as hashing their RFC 8785 form,
// re-encoding the parsed plan gives the same bytes, and the pack digest is
// a sha256 digest. It returns the plan and its hash; every refusal wraps
// plan.ErrInvalid.
func ParseCanonical(b []byte) (*plan.Plan, digest.Digest, error) {
	if len(b) > MaxSize {
		return nil, "", fmt.Errorf("plan of %d bytes exceeds %d: %w", len(b), MaxSize, plan.ErrInvalid)
	}
	pl, h, err := plan.Parse(b)
	if err != nil {
		return nil, "", err
	}
	if plan.HashBytes(b) != h {
		return nil, "", fmt.Errorf("plan %s: %w: bytes are not RFC 8785 canonical", h, plan.ErrInvalid)
	}
	again, err := pl.Canonical()
	if err != nil || !bytes.Equal(again, b) {
		return nil, "", fmt.Errorf("plan %s: %w: does not re-encode to the same bytes", h, plan.ErrInvalid)
	}
	if err := integrity.CheckSHA256(pl.Pack.Digest); err != nil {
		return nil, "", fmt.Errorf("plan %s: %w: pack digest: %v", h, plan.ErrInvalid, err)
	}
	return pl, h, nil
}

// Save stores the canonical plan bytes in the cache under their hash.
// Bytes that are not exactly a canonical plan, and a PackRef of another
// pack, are refused (plan.ErrInvalid); malformed metadata with
// ErrInvalidMeta. Saving a plan already saved changes nothing and returns
// the saved record.
func Save(ctx context.Context, st *cache.Store, canonical []byte, meta Meta) (*Saved, error) {
	pl, h, err := ParseCanonical(canonical)
	if err != nil {
		return nil, err
	}
	own := pl.Pack.Name + ":" + pl.Pack.Version
	if meta.PackRef == "" {
		meta.PackRef = own
	}
	if meta.PackRef != own {
		return nil, fmt.Errorf("plan %s is of pack %s, not %s: %w", h, own, meta.PackRef, plan.ErrInvalid)
	}
	if meta.Tenant != "" && !tenantRE.MatchString(meta.Tenant) {
		return nil, fmt.Errorf("tenant %q: %w: letters, digits, '.', '_' and '-', at most 128", meta.Tenant, ErrInvalidMeta)
	}
	if meta.PackSize < 0 {
		return nil, fmt.Errorf("pack size %d: %w", meta.PackSize, ErrInvalidMeta)
	}
	savedAt := meta.SavedAt
	if savedAt.IsZero() {
		savedAt = time.Now()
	}
	rec := record{PackRef: meta.PackRef, Pack: pl.Pack, Tenant: meta.Tenant, SavedAt: savedAt.UTC().Truncate(time.Second),
		PackSize: meta.PackSize, Approvals: pl.Approvals, Canonical: canonical}
	err = st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		var old record
		ok, err := get(tx, string(h), &old)
		if err != nil {
			return err
		}
		if ok {
			rec = old
			return nil
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return tx.Put(bucket, []byte(h), raw)
	})
	if err != nil {
		return nil, err
	}
	sp := rec.saved(h, true)
	sp.Plan = pl
	return sp, nil
}

// List returns the saved plans, sorted by pack ref, then save time, then
// hash. Canonical and Plan are not set. ErrCorrupt: a record cannot be
// decoded.
func List(ctx context.Context, st *cache.Store) ([]Saved, error) {
	var out []Saved
	err := st.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		return tx.ForEach(bucket, nil, func(k, _ []byte) error {
			var r record
			if _, err := get(tx, string(k), &r); err != nil {
				return err
			}
			out = append(out, *r.saved(digest.Digest(k), false))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Saved) int {
		if c := strings.Compare(a.PackRef, b.PackRef); c != 0 {
			return c
		}
		if c := a.SavedAt.Compare(b.SavedAt); c != 0 {
			return c
		}
		return strings.Compare(string(a.Hash), string(b.Hash))
	})
	return out, nil
}

// Get returns the saved plan with hash h: a full "sha256:<hex>" hash, or a
// unique prefix of at least MinHashPrefix lowercase hex digits (with or
// without "sha256:"), with Canonical and Plan set. ErrNotFound names the
// hash; ErrAmbiguous a prefix that matches several plans; ErrCorrupt a
// record that cannot be decoded or whose bytes are not a canonical plan.
func Get(ctx context.Context, st *cache.Store, h string) (*Saved, error) {
	hex := strings.TrimPrefix(h, string(digest.SHA256)+":")
	if len(hex) < MinHashPrefix || len(hex) > 64 || !integrity.IsLowerHex(hex) {
		return nil, fmt.Errorf("plan %q: %w (give the plan hash or at least %d of its lowercase hex digits)", h, ErrNotFound, MinHashPrefix)
	}
	prefix := []byte(string(digest.SHA256) + ":" + hex)
	var sp *Saved
	err := st.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		var found []string
		if err := tx.ForEach(bucket, prefix, func(k, _ []byte) error {
			found = append(found, string(k))
			return nil
		}); err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("plan %s: %w", h, ErrNotFound)
		case 1:
		default:
			return fmt.Errorf("plan %s: %w: %s", h, ErrAmbiguous, strings.Join(found, ", "))
		}
		var r record
		if _, err := get(tx, found[0], &r); err != nil {
			return err
		}
		sp = r.saved(digest.Digest(found[0]), true)
		return nil
	})
	if err != nil {
		return nil, err
	}
	pl, _, err := ParseCanonical(sp.Canonical)
	if err != nil {
		return nil, fmt.Errorf("saved plan %s: %w: %w", sp.Hash, ErrCorrupt, err)
	}
	sp.Plan = pl
	return sp, nil
}

// get reads the record of key; a missing bucket or key is (false, nil).
func get(tx cache.RecordTx, key string, r *record) (bool, error) {
	raw := tx.Get(bucket, []byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, r); err != nil {
		return false, fmt.Errorf("record %s.%s/%s: %w: %v", namespace, bucket, key, ErrCorrupt, err)
	}
	return true, nil
}
