package trust

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
)

// Policy is the site's approval policy, kept in the trust store with the
// keys it applies to: which roles approve gates, and whether a key may
// approve a gate of a pack it signed. The zero Policy is the default:
// only RoleApprove approves, and never a pack's own signer.
type Policy struct {
	// ApproverRoles are the roles, besides RoleApprove, that a pack's gate
	// may require of its approvers. Keys may then hold them too. They can
	// never be RolePublisher or RoleRun.
	ApproverRoles []string
	// AllowSelfApproval lets a key approve a gate of a pack it signed as
	// publisher. Off by default: separation of duties.
	AllowSelfApproval bool
}

// DefaultApproverRoles are the roles that approve gates on every site.
var DefaultApproverRoles = []string{RoleApprove}

// approverRoleRE is the form of a site-declared approver role: the form a
// pack's gate role may take (package pack's check).
var approverRoleRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,62}$`)

// IsDefaultApproverRole reports whether role approves gates on every site,
// whatever the site declares (only RoleApprove).
func IsDefaultApproverRole(role string) bool { return slices.Contains(DefaultApproverRoles, role) }

// normalizePolicy checks p and returns it with its roles sorted and
// deduplicated. Declaring RolePublisher or RoleRun (or a role in another
// form) is ErrNotApproverRole.
func normalizePolicy(p Policy) (Policy, error) {
	roles := make([]string, 0, len(p.ApproverRoles))
	for _, r := range p.ApproverRoles {
		switch {
		case r == RolePublisher || r == RoleRun:
			return Policy{}, fmt.Errorf("role %q can never approve gates: %w", r, ErrNotApproverRole)
		case !approverRoleRE.MatchString(r):
			return Policy{}, fmt.Errorf("approver role %q: expected a letter, then letters, digits and '.': %w", r, ErrNotApproverRole)
		case IsDefaultApproverRole(r):
			continue // always an approver role
		}
		roles = append(roles, r)
	}
	sort.Strings(roles)
	roles = slices.Compact(roles)
	if len(roles) == 0 {
		roles = nil
	}
	return Policy{ApproverRoles: roles, AllowSelfApproval: p.AllowSelfApproval}, nil
}

// Policy returns the site's approval policy.
func (s *Store) Policy() Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Policy{ApproverRoles: slices.Clone(s.policy.ApproverRoles), AllowSelfApproval: s.policy.AllowSelfApproval}
}

// SetPolicy replaces the site's approval policy. A role that cannot
// approve (RolePublisher, RoleRun) is ErrNotApproverRole; withdrawing a
// declared role that a key still holds is ErrRoleInUse (take it from the
// key first).
func (s *Store) SetPolicy(p Policy) error {
	np, err := normalizePolicy(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		for _, r := range e.Roles {
			if !slices.Contains(knownRoles, r) && !slices.Contains(np.ApproverRoles, r) {
				return fmt.Errorf("role %q is held by key %q: %w", r, e.Name, ErrRoleInUse)
			}
		}
	}
	s.policy = np
	return nil
}

// IsApproverRole reports whether a gate requiring role may be approved at
// this site: RoleApprove, or a role the site declared in its Policy.
// RolePublisher and RoleRun never are.
func (s *Store) IsApproverRole(role string) bool {
	if IsDefaultApproverRole(role) {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Contains(s.policy.ApproverRoles, role)
}

// CheckApproverRole returns nil when role is an approver role here (see
// IsApproverRole), else an error wrapping ErrNotApproverRole that names it.
func (s *Store) CheckApproverRole(role string) error {
	if s.IsApproverRole(role) {
		return nil
	}
	return fmt.Errorf("role %q is not an approver role (approver roles: %s): %w", role, s.approverRolesText(), ErrNotApproverRole)
}

func (s *Store) approverRolesText() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Concat(DefaultApproverRoles, s.policy.ApproverRoles)
	text := ""
	for i, r := range out {
		if i > 0 {
			text += ", "
		}
		text += r
	}
	return text
}

// isKnownRole reports whether a key may hold role: a built-in role or a
// declared approver role. Callers hold s.mu.
func (s *Store) isKnownRole(role string) bool {
	return slices.Contains(knownRoles, role) || slices.Contains(s.policy.ApproverRoles, role)
}
