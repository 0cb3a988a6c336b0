package trust

import "errors"

var (
	// ErrSignatureInvalid: the envelope is unreadable, has no signature, or
	// its signature does not verify with the key it names (forged or
	// corrupted bytes, payload altered after signing).
	ErrSignatureInvalid = errors.New("signature invalid")
	// ErrUnknownKey: no key in the trust store made the signature.
	ErrUnknownKey = errors.New("signing key not in trust store")
	// ErrKeyRevoked: the signature was made by a revoked key.
	ErrKeyRevoked = errors.New("signing key revoked")
	// ErrRoleMissing: the signing key does not hold the required role.
	ErrRoleMissing = errors.New("signing key lacks the required role")
	// ErrTenantNotAllowed: the signing key may not act for the tenant.
	ErrTenantNotAllowed = errors.New("signing key not allowed for tenant")
	// ErrSubjectMismatch: the statement is not about the expected digest.
	ErrSubjectMismatch = errors.New("statement subject does not match")
	// ErrPayloadType: the envelope does not carry an in-toto statement.
	ErrPayloadType = errors.New("unexpected envelope payload type")
	// ErrPredicateType: the statement has another predicate type than required.
	ErrPredicateType = errors.New("unexpected statement predicate type")
	// ErrUnknownRole: a role name is not one stella knows.
	ErrUnknownRole = errors.New("unknown role")
	// ErrExists: a key with that name or that key id is already trusted.
	ErrExists = errors.New("key already in trust store")
	// ErrKeyNotFound: no key of that name in the trust store.
	ErrKeyNotFound = errors.New("key not in trust store")
	// ErrInvalidEntry: a key name or tenant is malformed, or roles or
	// tenants are missing.
	ErrInvalidEntry = errors.New("invalid trust store entry")
	// ErrInvalidStore: the trust store file is malformed or inconsistent.
	ErrInvalidStore = errors.New("invalid trust store file")
	// ErrNotApproverRole: a role that is not an approver role at this site
	// was asked to approve a gate, or declared an approver role although it
	// never can be (publisher, Packs.Run). See Policy.
	ErrNotApproverRole = errors.New("role is not an approver role")
	// ErrRoleInUse: a declared approver role was withdrawn while a key
	// still holds it.
	ErrRoleInUse = errors.New("role still held by a trusted key")
	// ErrInvalidRequirement: a verification requirement is incomplete.
	ErrInvalidRequirement = errors.New("invalid verification requirement")
)
