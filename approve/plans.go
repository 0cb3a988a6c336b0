package approve

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/plan"
)

// MinHashPrefix is the shortest hash prefix (hex digits) Plan accepts.
const MinHashPrefix = 12

// PlanMeta describes a plan being saved.
type PlanMeta struct {
	// PackRef is "<name>:<version>" of the planned pack; empty means the
	// plan's own. A value that disagrees with the plan is refused.
	PackRef string
	// Tenant is the tenant approvals of this plan are asked for, unless a
	// request names another; empty for none.
	Tenant string
	// SavedAt is the save time; zero means now.
	SavedAt time.Time
	// PackSize is the size of the pack's manifest (the pack digest's
	// content), which an approval request's subject descriptor needs. The
	// caller knows it when it derived the digest (artifact.Build); zero means
	// unknown, and requests then need the pack in the cache.
	PackSize int64
}

// SavedPlan is a plan saved in the cache.
type SavedPlan struct {
	Hash      digest.Digest
	PackRef   string
	Pack      plan.PackRef
	Tenant    string
	SavedAt   time.Time
	PackSize  int64
	Size      int64           // bytes of the canonical plan
	Approvals []plan.Approval // the plan's approval gates
	// Canonical and Plan are set by Plan and SavePlan, not by Plans.
	Canonical []byte
	Plan      *plan.Plan
}

type planRecord struct {
	PackRef   string          `json:"packRef"`
	Pack      plan.PackRef    `json:"pack"`
	Tenant    string          `json:"tenant"`
	SavedAt   time.Time       `json:"savedAt"`
	PackSize  int64           `json:"packSize"`
	Approvals []plan.Approval `json:"approvals"`
	Canonical []byte          `json:"canonical"`
}

func (r *planRecord) saved(h digest.Digest, full bool) *SavedPlan {
	sp := &SavedPlan{Hash: h, PackRef: r.PackRef, Pack: r.Pack, Tenant: r.Tenant, SavedAt: r.SavedAt,
		PackSize: r.PackSize, Size: int64(len(r.Canonical)), Approvals: slices.Clone(r.Approvals)}
	if full {
		sp.Canonical = slices.Clone(r.Canonical)
	}
	return sp
}

// parseCanonicalPlan parses plan bytes that must be exactly the canonical
// JSON of a plan: plan.Parse accepts them, hashing them as they are gives
// the same hash as hashing their RFC 8785 form, and re-encoding the parsed
// plan gives the same bytes. It returns the plan and its hash.
func parseCanonicalPlan(b []byte) (*plan.Plan, digest.Digest, error) {
	if len(b) > MaxPlanSize {
		return nil, "", fmt.Errorf("plan of %d bytes exceeds %d: %w", len(b), MaxPlanSize, plan.ErrInvalid)
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
	if err := checkSHA256(pl.Pack.Digest); err != nil {
		return nil, "", fmt.Errorf("plan %s: %w: pack digest: %v", h, plan.ErrInvalid, err)
	}
	return pl, h, nil
}

// SavePlan stores the canonical plan bytes in the cache under their hash.
// Bytes that are not exactly a canonical plan are refused (plan.ErrInvalid).
// Saving a plan already saved changes nothing and returns the saved record.
func SavePlan(ctx context.Context, st *cache.Store, canonical []byte, meta PlanMeta) (*SavedPlan, error) {
	pl, h, err := parseCanonicalPlan(canonical)
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
	if err := checkTenant(meta.Tenant); err != nil {
		return nil, err
	}
	if meta.PackSize < 0 {
		return nil, fmt.Errorf("pack size %d: %w", meta.PackSize, ErrInvalidInput)
	}
	rec := planRecord{PackRef: meta.PackRef, Pack: pl.Pack, Tenant: meta.Tenant, SavedAt: nowOr(meta.SavedAt),
		PackSize: meta.PackSize, Approvals: pl.Approvals, Canonical: canonical}
	err = update(ctx, st, func(tx cache.RecordTx) error {
		var old planRecord
		ok, err := get(tx, bucketPlans, string(h), &old)
		if err != nil {
			return err
		}
		if ok {
			rec = old
			return nil
		}
		return put(tx, bucketPlans, string(h), rec)
	})
	if err != nil {
		return nil, err
	}
	sp := rec.saved(h, true)
	sp.Plan = pl
	return sp, nil
}

// Plans lists the saved plans, sorted by pack ref, then save time, then hash.
// Canonical and Plan are not set.
func Plans(ctx context.Context, st *cache.Store) ([]SavedPlan, error) {
	var out []SavedPlan
	err := view(ctx, st, func(tx cache.RecordTx) error {
		return tx.ForEach(bucketPlans, nil, func(k, _ []byte) error {
			var r planRecord
			if _, err := get(tx, bucketPlans, string(k), &r); err != nil {
				return err
			}
			out = append(out, *r.saved(digest.Digest(k), false))
			return nil
		})
	})
	slices.SortFunc(out, func(a, b SavedPlan) int {
		if c := strings.Compare(a.PackRef, b.PackRef); c != 0 {
			return c
		}
		if c := a.SavedAt.Compare(b.SavedAt); c != 0 {
			return c
		}
		return strings.Compare(string(a.Hash), string(b.Hash))
	})
	return out, err
}

// Plan returns the saved plan with hash h: a full "sha256:<hex>" hash, or
// a unique prefix of at least MinHashPrefix hex digits (with or without
// "sha256:"). ErrPlanNotFound names the hash; ErrPlanAmbiguous a prefix
// that matches several plans.
func Plan(ctx context.Context, st *cache.Store, h string) (*SavedPlan, error) {
	var sp *SavedPlan
	err := view(ctx, st, func(tx cache.RecordTx) error {
		var err error
		sp, err = lookupPlan(tx, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	pl, _, err := parseCanonicalPlan(sp.Canonical)
	if err != nil {
		return nil, fmt.Errorf("saved plan %s: %w: %w", sp.Hash, ErrRecordCorrupt, err)
	}
	sp.Plan = pl
	return sp, nil
}

func lookupPlan(tx cache.RecordTx, h string) (*SavedPlan, error) {
	hex := strings.TrimPrefix(h, string(digest.SHA256)+":")
	if len(hex) < MinHashPrefix || len(hex) > 64 || !isLowerHex(hex) {
		return nil, fmt.Errorf("plan %q: %w (give the plan hash or at least %d of its lowercase hex digits)", h, ErrPlanNotFound, MinHashPrefix)
	}
	prefix := []byte(string(digest.SHA256) + ":" + hex)
	var found []string
	if err := tx.ForEach(bucketPlans, prefix, func(k, _ []byte) error {
		found = append(found, string(k))
		return nil
	}); err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("plan %s: %w", h, ErrPlanNotFound)
	case 1:
	default:
		return nil, fmt.Errorf("plan %s: %w: %s", h, ErrPlanAmbiguous, strings.Join(found, ", "))
	}
	var r planRecord
	if _, err := get(tx, bucketPlans, found[0], &r); err != nil {
		return nil, err
	}
	return r.saved(digest.Digest(found[0]), true), nil
}
