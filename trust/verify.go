package trust

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"stellaops.io/stella/keys"
)

// Requirement is what a signature must establish.
type Requirement struct {
	// Subject is the digest the statement must be about.
	Subject digest.Digest
	// PredicateType is the statement's required predicate type.
	PredicateType string
	// Role is the role the signing key must hold.
	Role string
	// Tenant is the tenant the key must be allowed to act for. Empty means
	// no particular tenant: only keys trusted for AnyTenant qualify.
	Tenant string
}

// Verified is the outcome of a successful Verify.
type Verified struct {
	KeyName   string
	KeyID     string
	Roles     []string
	Tenants   []string
	Statement *keys.Statement
}

// Verify checks a DSSE envelope against the trust store and req, strictly:
//
//   - the envelope parses (keys.ParseEnvelope) and carries an in-toto
//     statement (else ErrSignatureInvalid, ErrPayloadType);
//   - at least one signature verifies with a trusted key: a signature naming
//     a trusted key id is checked against that key only, any other signature
//     against every key (else ErrKeyRevoked when only a revoked key verifies,
//     ErrSignatureInvalid when the named key does not verify or there is no
//     signature, ErrUnknownKey otherwise);
//   - the signed payload is a well-formed statement (keys.ErrMalformedStatement)
//     of req.PredicateType (ErrPredicateType) with req.Subject among its
//     subjects (ErrSubjectMismatch);
//   - a verifying key holds req.Role (ErrRoleMissing) and may act for
//     req.Tenant (ErrTenantNotAllowed).
//
// With several verifying keys, the first in envelope order that meets the
// role and tenant is returned.
func (s *Store) Verify(ctx context.Context, envelope []byte, req Requirement) (*Verified, error) {
	if err := s.validate(req); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	env, err := keys.ParseEnvelope(envelope)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignatureInvalid, err)
	}
	if env.PayloadType != keys.InTotoPayloadType {
		return nil, fmt.Errorf("payloadType %q, want %q: %w", env.PayloadType, keys.InTotoPayloadType, ErrPayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("envelope has no signatures: %w", ErrSignatureInvalid)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()

	var (
		valid      []*entry // verified, not revoked, in envelope order
		revoked    []*entry
		badNamed   []*entry // named by keyid, signature does not verify
		unknownIDs []string
		payload    []byte
	)
	for _, sig := range env.Signatures {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		candidates := s.entries
		named := s.byKeyID(sig.KeyID)
		if named != nil {
			candidates = []*entry{named}
		} else if sig.KeyID != "" {
			// An id in another format may still be a trusted key's signature.
			unknownIDs = append(unknownIDs, sig.KeyID)
		}
		var signer *entry
		for _, e := range candidates {
			p, err := verifyOne(e, env, sig)
			if err == nil {
				signer, payload = e, p
				break
			}
		}
		switch {
		case signer == nil && named != nil:
			badNamed = append(badNamed, named)
		case signer == nil:
		case signer.Revoked:
			revoked = appendOnce(revoked, signer)
		default:
			valid = appendOnce(valid, signer)
		}
	}
	if len(valid) == 0 {
		switch {
		case len(revoked) > 0:
			return nil, fmt.Errorf("signed by key %s: %w", describe(revoked, true), ErrKeyRevoked)
		case len(badNamed) > 0:
			return nil, fmt.Errorf("signature by key %s does not verify: %w", describe(badNamed, false), ErrSignatureInvalid)
		case len(unknownIDs) > 0:
			return nil, fmt.Errorf("signed by key %s: %w", strings.Join(unknownIDs, ", "), ErrUnknownKey)
		default:
			return nil, fmt.Errorf("no trusted key verifies the envelope's signature: %w", ErrUnknownKey)
		}
	}

	st, err := keys.ParseStatement(payload)
	if err != nil {
		return nil, fmt.Errorf("envelope signed by key %s: %w", describe(valid, false), err)
	}
	if st.PredicateType != req.PredicateType {
		return nil, fmt.Errorf("predicate type %q, want %q: %w", st.PredicateType, req.PredicateType, ErrPredicateType)
	}
	if !st.HasSubject(req.Subject) {
		return nil, fmt.Errorf("expected subject %s, statement names %s: %w", req.Subject, strings.Join(st.SubjectDigests(), ", "), ErrSubjectMismatch)
	}

	var withRole []*entry
	for _, e := range valid {
		if !e.HasRole(req.Role) {
			continue
		}
		withRole = append(withRole, e)
		if e.AllowsTenant(req.Tenant) {
			return &Verified{
				KeyName:   e.Name,
				KeyID:     e.KeyID,
				Roles:     slices.Clone(e.Roles),
				Tenants:   slices.Clone(e.Tenants),
				Statement: st,
			}, nil
		}
	}
	if len(withRole) == 0 {
		return nil, fmt.Errorf("key %s lacks role %q: %w", describe(valid, false), req.Role, ErrRoleMissing)
	}
	tenant := req.Tenant
	if tenant == "" {
		tenant = "(any)"
	}
	return nil, fmt.Errorf("key %s may not act for tenant %q: %w", describe(withRole, false), tenant, ErrTenantNotAllowed)
}

func (s *Store) validate(r Requirement) error {
	if err := r.Subject.Validate(); err != nil {
		return fmt.Errorf("subject %q: %w: %v", r.Subject, ErrInvalidRequirement, err)
	}
	if r.PredicateType == "" {
		return fmt.Errorf("no predicate type: %w", ErrInvalidRequirement)
	}
	s.mu.RLock()
	known := s.isKnownRole(r.Role)
	s.mu.RUnlock()
	if !known {
		return fmt.Errorf("required role %q: %w", r.Role, ErrUnknownRole)
	}
	if r.Tenant != "" && !tenantRE.MatchString(r.Tenant) {
		return fmt.Errorf("tenant %q: %w", r.Tenant, ErrInvalidRequirement)
	}
	return nil
}

// verifyOne verifies one signature of env with e's key through sigstore's
// DSSE verifier and returns the verified payload. The signature is passed
// without its keyid: the key was already chosen, and sigstore's verifier
// would skip a keyid that is not its own SSH-fingerprint form.
func verifyOne(e *entry, env *keys.Envelope, sig keys.Signature) ([]byte, error) {
	single, err := json.Marshal(keys.Envelope{
		PayloadType: env.PayloadType,
		Payload:     env.Payload,
		Signatures:  []keys.Signature{{Sig: sig.Sig}},
	})
	if err != nil {
		return nil, err
	}
	var payload []byte
	v := dsse.WrapVerifier(e.verifier,
		dsse.WithExpectedPayloadType(keys.InTotoPayloadType),
		dsse.WithDecodedPayload(&payload))
	if err := v.VerifySignature(bytes.NewReader(single), nil); err != nil {
		return nil, err
	}
	return payload, nil
}

// Signers returns the ids of the keys of the store, revoked ones included,
// whose signature in envelope verifies, whatever their roles and whatever
// the envelope's keyid hints say. A malformed envelope has none. It is how
// a caller learns who really signed something (a pack's publisher), as
// opposed to who is trusted to have.
func (s *Store) Signers(envelope []byte) []string {
	env, err := keys.ParseEnvelope(envelope)
	if err != nil || env.PayloadType != keys.InTotoPayloadType {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, sig := range env.Signatures {
		for _, e := range s.entries {
			if slices.Contains(out, e.KeyID) {
				continue
			}
			if _, err := verifyOne(e, env, sig); err == nil {
				out = append(out, e.KeyID)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func appendOnce(list []*entry, e *entry) []*entry {
	if slices.Contains(list, e) {
		return list
	}
	return append(list, e)
}

// describe names keys as `"name" (sha256:...)`, with revocation times.
func describe(list []*entry, withRevocation bool) string {
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = fmt.Sprintf("%q (%s)", e.Name, e.KeyID)
		if withRevocation {
			parts[i] += " revoked at " + formatTime(e.RevokedAt)
		}
	}
	return strings.Join(parts, ", ")
}
