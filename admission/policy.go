package admission

import (
	"errors"
	"fmt"

	"stellaops.io/stella/trust"
)

var (
	// ErrConflictingFlags: a strict and a relaxed policy were both asked for
	// (--require-signature with --insecure-skip-signature).
	ErrConflictingFlags = errors.New("contradictory signature policy flags")
	// ErrSealedRelaxation: a relaxation was asked for in sealed mode, where
	// signatures are always required.
	ErrSealedRelaxation = errors.New("sealed mode does not allow relaxing the signature policy")
	// ErrConfiguredRelaxation: a relaxation was asked for where the
	// configuration requires signatures (requireSignature: true).
	ErrConfiguredRelaxation = errors.New("the configuration does not allow relaxing the signature policy")
	// ErrRefMismatch: the name a source gives a pack is not the one its
	// manifest carries (and its signature covers).
	ErrRefMismatch = errors.New("pack name does not match its manifest")
	// ErrPackLayout: a pack artifact holds something other than its config
	// and plain file layers.
	ErrPackLayout = errors.New("pack artifact holds unexpected content")
	// ErrSubjectRefused: a referrer was left out because its subject was
	// refused or failed.
	ErrSubjectRefused = errors.New("subject failed")
	// ErrRefNamespace: an artifact other than a pack carries a ref outside
	// its kind's namespace ("<kind>:<id>", never a pack's <name>:<version>),
	// which could take a name a signed pack needs.
	ErrRefNamespace = errors.New("ref outside its kind's namespace")
	// ErrNotVisible: the pack's tenantVisibility does not list the tenant
	// it is to be planned, approved or run for.
	ErrNotVisible = errors.New("pack not visible to the tenant")
)

// Relaxation names an explicit weakening of the policy, printed and recorded.
const RelaxSkipSignatures = "insecure-skip-signature"

// Settings are the inputs of a policy decision, from every place that may
// state one.
type Settings struct {
	Sealed        bool // sealed mode (flag, environment or configuration)
	ConfigRequire bool // requireSignature: true in the configuration
	Require       bool // --require-signature
	SkipSignature bool // --insecure-skip-signature
}

// Mode is how signatures are treated.
type Mode int

const (
	// Check: signatures are verified and reported; an artifact without a
	// valid one still enters.
	Check Mode = iota
	// Require: an artifact without a valid signature is refused.
	Require
	// Skip: signatures are not checked at all (an explicit, recorded
	// relaxation).
	Skip
)

// Decide is the one rule of strictness: required when sealed, configured or
// asked; a relaxation may not weaken sealed mode or the configuration; asking
// for both strict and relaxed is contradictory.
func Decide(s Settings) (Mode, error) {
	switch {
	case s.SkipSignature && s.Require:
		return 0, fmt.Errorf("--require-signature and --%s: %w", RelaxSkipSignatures, ErrConflictingFlags)
	case s.SkipSignature && s.Sealed:
		return 0, fmt.Errorf("--%s: %w", RelaxSkipSignatures, ErrSealedRelaxation)
	case s.SkipSignature && s.ConfigRequire:
		return 0, fmt.Errorf("--%s: %w", RelaxSkipSignatures, ErrConfiguredRelaxation)
	case s.SkipSignature:
		return Skip, nil
	case s.Require || s.Sealed || s.ConfigRequire:
		return Require, nil
	}
	return Check, nil
}

// Policy is what content must establish to enter.
type Policy struct {
	Mode Mode
	// Trust verifies signatures; nil only when Mode is Skip.
	Trust *trust.Store
	// Tenant the signing key must be allowed to act for.
	Tenant string
	// Role the signing key must hold (default trust.RolePublisher).
	Role string
}

// New decides the mode from s and returns the policy. ts may be nil when
// the mode is Skip.
func New(s Settings, ts *trust.Store, tenant string) (Policy, error) {
	m, err := Decide(s)
	if err != nil {
		return Policy{}, err
	}
	return Policy{Mode: m, Trust: ts, Tenant: tenant}, nil
}

func (p Policy) role() string {
	if p.Role == "" {
		return trust.RolePublisher
	}
	return p.Role
}

// Relaxations are the explicit weakenings in force, for the record.
func (p Policy) Relaxations() []string {
	if p.Mode == Skip {
		return []string{RelaxSkipSignatures}
	}
	return nil
}

// Describe is the policy's line in an import record, or "" for Check.
func (p Policy) Describe() string {
	switch p.Mode {
	case Skip:
		return RelaxSkipSignatures + ": signatures not checked"
	case Require:
		return fmt.Sprintf("signature policy: required, %s role, tenant %s", p.role(), p.Tenant)
	}
	return ""
}
