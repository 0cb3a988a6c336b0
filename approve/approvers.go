package approve

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/signature"
	"stellaops.io/stella/trust"
)

// approvers is who may approve, as one operation sees it: the current
// trust store (keys, their roles and tenants, revocations, and the site's
// Policy) and the keys that signed each pack this cache has requests for.
// Its admit is the one rule of whose approval counts, applied when a
// decision is accepted and every time a gate's state is computed, so a
// key revoked or removed (by `stella trust` or by hand) stops counting at
// once.
type approvers struct {
	trust   *trust.Store
	signers map[digest.Digest][]string // pack manifest → ids of the keys whose signature on it verifies
}

// newApprovers reads the signers of every pack with a request in the
// cache, and of packs, from the pack signatures in the cache. A trust
// store is required: without one nothing could count.
func newApprovers(ctx context.Context, st *cache.Store, ts *trust.Store, packs ...digest.Digest) (*approvers, error) {
	if ts == nil {
		return nil, fmt.Errorf("approvals: %w: a trust store is required", ErrInvalidInput)
	}
	err := view(ctx, st, func(tx cache.RecordTx) error {
		return tx.ForEach(bucketRequests, nil, func(_, v []byte) error {
			var r struct {
				Pack struct {
					Digest digest.Digest `json:"digest"`
				} `json:"pack"`
			}
			// An undecodable record is loadRequests' to report.
			if json.Unmarshal(v, &r) == nil && r.Pack.Digest != "" && !slices.Contains(packs, r.Pack.Digest) {
				packs = append(packs, r.Pack.Digest)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	a := &approvers{trust: ts, signers: map[digest.Digest][]string{}}
	for _, p := range packs {
		if err := a.addPack(ctx, st, p); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// addPack reads the signers of pack, once.
func (a *approvers) addPack(ctx context.Context, st *cache.Store, pack digest.Digest) error {
	if _, ok := a.signers[pack]; ok || pack == "" {
		return nil
	}
	ids, err := signature.Signers(ctx, st, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: pack}, a.trust)
	if err != nil {
		return fmt.Errorf("signatures of pack %s: %w", pack, err)
	}
	a.signers[pack] = ids
	return nil
}

// admit is the rule of whose approval counts. It returns nil when an
// approval by keyID of a gate requiring role, for tenant, of the pack with
// manifest digest pack counts, else an error saying why not, with the
// short reason gate states and the ledger show:
//
//   - role is not an approver role at this site (trust.ErrNotApproverRole);
//   - the key is no longer in the trust store (trust.ErrUnknownKey) or is
//     revoked (trust.ErrKeyRevoked);
//   - the key does not hold role (trust.ErrRoleMissing) or may not act for
//     tenant (trust.ErrTenantNotAllowed);
//   - the key signed the pack and the site's policy does not allow self
//     approval (ErrSelfApproval).
func (a *approvers) admit(keyID, role, tenant string, pack digest.Digest) (reason string, err error) {
	if err := a.trust.CheckApproverRole(role); err != nil {
		return fmt.Sprintf("role %s is not an approver role", role), err
	}
	k, ok := a.trust.Lookup(keyID)
	switch {
	case !ok:
		return "key removed from the trust store", fmt.Errorf("key %s: %w", keyID, trust.ErrUnknownKey)
	case k.Revoked:
		at := k.RevokedAt.UTC().Format(time.RFC3339)
		return "key revoked " + at, fmt.Errorf("key %q (%s) revoked at %s: %w", k.Name, keyID, at, trust.ErrKeyRevoked)
	case !k.HasRole(role):
		return "key no longer holds role " + role, fmt.Errorf("key %q (%s) lacks role %q: %w", k.Name, keyID, role, trust.ErrRoleMissing)
	case !k.AllowsTenant(tenant):
		return fmt.Sprintf("key no longer allowed for tenant %q", tenant),
			fmt.Errorf("key %q (%s) may not act for tenant %q: %w", k.Name, keyID, tenant, trust.ErrTenantNotAllowed)
	case slices.Contains(a.signers[pack], keyID) && !a.trust.Policy().AllowSelfApproval:
		return "key signed the pack", fmt.Errorf("key %q (%s) signed pack %s: %w", k.Name, keyID, pack, ErrSelfApproval)
	}
	return "", nil
}

// voidOf returns why the accepted decision d, on a gate whose request is
// r, no longer counts ("" when it counts): a void recorded in the ledger
// stays void, whatever the trust store says later; otherwise admit
// decides against the current trust store. Rejections always count.
func (a *approvers) voidOf(tx cache.RecordTx, d *decisionRecord, r *requestRecord) (string, error) {
	if d.Decision != Approve {
		return "", nil
	}
	var logged string
	ok, err := get(tx, bucketVoids, string(d.Response), &logged)
	if err != nil || ok {
		return logged, err
	}
	if a == nil || r == nil {
		return "", nil
	}
	reason, _ := a.admit(d.KeyID, r.Approval.Role, r.Tenant, r.Pack.Digest)
	return reason, nil
}

// observeVoids appends one void entry to the ledger for every accepted
// approval that no longer counts and has none yet, and marks it void for
// good (bucketVoids).
func observeVoids(tx cache.RecordTx, a *approvers, now time.Time) error {
	if a == nil {
		return nil
	}
	type hit struct {
		g      *gateRecord
		d      decisionRecord
		reason string
	}
	var hits []hit
	err := tx.ForEach(bucketGates, nil, func(k, _ []byte) error {
		g := &gateRecord{}
		if _, err := get(tx, bucketGates, string(k), g); err != nil {
			return err
		}
		for _, d := range g.Decisions {
			// Only live approvals: one past its expiry counts no more anyway.
			if d.Decision != Approve || now.After(d.ExpiresAt) || tx.Get(bucketVoids, []byte(d.Response)) != nil {
				continue
			}
			var r requestRecord
			ok, err := get(tx, bucketRequests, string(d.Request), &r)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("gate %s: request %s: %w: record missing", g.Gate, d.Request, ErrRecordCorrupt)
			}
			if reason, _ := a.admit(d.KeyID, r.Approval.Role, r.Tenant, r.Pack.Digest); reason != "" {
				hits = append(hits, hit{g, d, reason})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range hits {
		if _, err := appendEntry(tx, Entry{Time: now, Event: EventVoid, Tenant: h.g.Tenant, PlanHash: h.g.PlanHash, Gate: h.g.Gate,
			RequestDigest: h.d.Request, ResponseDigest: h.d.Response, KeyID: h.d.KeyID, Decision: string(h.d.Decision),
			Reason: h.reason}); err != nil {
			return err
		}
		if err := put(tx, bucketVoids, string(h.d.Response), h.reason); err != nil {
			return err
		}
	}
	return nil
}

// observe records in the ledger what time and the trust store changed
// since the last look: approvals that no longer count, then requests seen
// past their expiry.
func observe(tx cache.RecordTx, a *approvers, now time.Time) error {
	if err := observeVoids(tx, a, now); err != nil {
		return err
	}
	return observeExpiry(tx, a, now)
}
