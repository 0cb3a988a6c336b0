package approve

import (
	"errors"
	"fmt"
)

// Errors of requests, responses and the ledger. Every refusal of Accept
// wraps exactly one of them, or one of package trust's verification errors
// (ErrSignatureInvalid, ErrUnknownKey, ErrKeyRevoked, ErrRoleMissing,
// ErrTenantNotAllowed, ErrSubjectMismatch, ...), or one of package bundle's
// integrity errors for a damaged bundle file. Looking up a saved plan
// returns package plans' errors (plans.ErrNotFound, plans.ErrAmbiguous,
// plans.ErrCorrupt).
var (
	// ErrGateNotFound: the gate is not an approval gate of the plan, or no
	// approval was ever requested for it here.
	ErrGateNotFound = errors.New("approval gate not found")
	// ErrPackNotFound: the pack manifest a request must point at is neither
	// in the cache nor described by the saved plan, so its size is unknown.
	ErrPackNotFound = errors.New("pack manifest not known to this cache")
	// ErrInvalidInput: an option given to this package is malformed
	// (tenant, requester, comment, decision, missing trust store or signer).
	ErrInvalidInput = errors.New("invalid approval input")
	// ErrInvalidRequest: an approval request artifact or its request JSON
	// is malformed (shape, media types, sizes, fields, non-canonical bytes).
	ErrInvalidRequest = errors.New("invalid approval request")
	// ErrInvalidResponse: an approval response bundle, artifact, envelope
	// or decision predicate is malformed, or the bundle does not hold
	// exactly one response.
	ErrInvalidResponse = errors.New("invalid approval response")
	// ErrPlanAltered: the plan carried by a request does not hash to the
	// plan hash the request names.
	ErrPlanAltered = errors.New("plan was altered after it was hashed")
	// ErrMismatch: a signed decision, or a request's plan, disagrees with
	// the request on a bound field (plan hash, gate, tenant, nonce, ...).
	// Returned inside a *MismatchError naming the field.
	ErrMismatch = errors.New("approval does not match its request")
	// ErrUnknownRequest: a response answers a request this cache never
	// issued.
	ErrUnknownRequest = errors.New("response to a request this cache never issued")
	// ErrNotPending: the request is no longer waiting for decisions (its
	// gate is already approved).
	ErrNotPending = errors.New("request no longer pending")
	// ErrExpired: the request or the decision is past its expiry.
	ErrExpired = errors.New("approval expired")
	// ErrLifetimeTooLong: a decision claims to expire after its request.
	ErrLifetimeTooLong = errors.New("decision claims a longer life than its request")
	// ErrSigningTime: a decision's signing time lies in the future, or
	// before its request was made, beyond the clock-skew allowance.
	ErrSigningTime = errors.New("decision signing time out of range")
	// ErrAlreadyDecided: the key already answered this request with another
	// response (a change of mind is refused; ask with a new request).
	ErrAlreadyDecided = errors.New("key already decided on this request")
	// ErrGateRejected: the gate was already rejected; nothing more can be
	// decided on it for this plan.
	ErrGateRejected = errors.New("gate already rejected")
	// ErrSelfApproval: the approving key signed the pack whose gate it
	// approves, and the site's policy (trust.Policy.AllowSelfApproval) does
	// not allow it: separation of duties.
	ErrSelfApproval = errors.New("key may not approve a pack it signed")
	// ErrRecordCorrupt: a record of this package in the cache index
	// (request, gate, ledger entry) cannot be read, or one another needs is
	// missing. Altered, removed or reordered ledger entries are reported by
	// VerifyLedger instead.
	ErrRecordCorrupt = errors.New("approval record is corrupt")
)

// MismatchError names the field of a signed decision (or of a request's
// plan) that disagrees with the request. It unwraps to ErrMismatch.
type MismatchError struct {
	Field string // e.g. "planHash", "gate", "tenant", "nonce"
	Want  string // the request's value
	Got   string // the value found
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s %q, request has %q: %v", e.Field, e.Got, e.Want, ErrMismatch)
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

func mismatch(field, want, got string) error {
	return &MismatchError{Field: field, Want: want, Got: got}
}
