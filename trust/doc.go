// Package trust is stella's trust store and the one place signatures are
// verified.
//
// # The store
//
// The trust store is one JSON file (the CLI keeps it at <home>/trust.json)
// holding named public keys:
//
//	{"keys":[{"added":"2025-01-02T03:04:05Z","keyId":"sha256:<hex>","name":"alice",
//	          "publicKey":"-----BEGIN PUBLIC KEY-----\n...","revoked":false,
//	          "roles":["Packs.Approve"],"tenants":["acme"]}],
//	 "version":1}
//
// The file is RFC 8785 canonical JSON with keys sorted by name, roles and
// tenants sorted, times in UTC RFC 3339 (seconds); "revokedAt" appears only
// on revoked keys. A key id is keys.KeyID of the public key (sha256 of its
// DER SubjectPublicKeyInfo); Load recomputes it and refuses a file whose ids,
// roles or form disagree. Names and key ids are unique, revoked keys
// included, so a revoked key cannot come back under another name without
// being removed first. Writes go through internal/safefile. Load-modify-Save
// by two processes at once is the caller's to serialize (a file lock).
//
// # Roles and tenants
//
// A key holds one or more roles: RolePublisher ("publisher") signs packs,
// RoleApprove ("Packs.Approve") signs gate approvals, RoleRun
// ("Packs.Run") signs run evidence, plus any approver role the site's
// Policy declares. Other roles are refused. A key acts for the tenants listed, or for every tenant with
// AnyTenant ("*"); a requirement with no tenant is met only by "*" keys.
//
// # Approval policy
//
// The store also holds the site's approval Policy, the "policy" member of
// the file, present only when it is not the default:
//
//	"policy":{"allowSelfApproval":false,"approverRoles":["Change.Board"]}
//
// Approver roles (IsApproverRole) are RoleApprove and the declared roles;
// RolePublisher and RoleRun can never be (ErrNotApproverRole), and a
// declared role a key holds cannot be withdrawn (ErrRoleInUse).
// AllowSelfApproval lets a key approve gates of packs it signed; Signers
// says which keys really signed an envelope. Package approve applies both.
//
// # Verification
//
// Verify takes a DSSE envelope (see package keys for its shape) and a
// Requirement and is strict: the envelope must parse, carry an in-toto
// statement, and hold at least one signature that verifies, through
// sigstore's dsse verifier, with a non-revoked trusted key; the statement
// must have the required predicate type and name the required digest among
// its subjects; the key must hold the role and be allowed the tenant. Each
// failure has its own error (ErrSignatureInvalid, ErrUnknownKey,
// ErrKeyRevoked, ErrPayloadType, ErrPredicateType, ErrSubjectMismatch,
// ErrRoleMissing, ErrTenantNotAllowed) and names the key, digest, role or
// tenant concerned. Nothing is relaxed here; any relaxation belongs to the
// caller, explicitly.
//
// A signature's keyid is a hint: one naming a trusted key is checked against
// that key only; an empty or foreign keyid (cosign writes none, sigstore's
// multi-signer an SSH fingerprint) is tried against every trusted key.
package trust
