// Package admission decides what content may enter stella, in one place.
//
// Every path that lets an artifact in — a bundle import, `pack verify`, a
// mirror pull from a registry or from a bundle file, and the runner when it
// loads a pack — asks the same Policy the same question and gets the same
// answer, with the same account of what was verified:
//
//   - a pack's name is bound to its signed manifest: the name the source
//     gives it (a bundle's index.json, a registry's repository and tag) must
//     be the io.stellaops.ref its manifest carries, which the pack digest and
//     so every signature and approval cover (ADR 0007);
//   - only a pack carries a pack's <name>:<version>; any other kind's ref
//     is in its own namespace, <kind>:<id> (CheckRef), so no unsigned
//     artifact can occupy the name a signed pack needs (ADR 0015);
//   - a pack artifact is exactly what `stella pack build` produces: a pack
//     config and plain file layers titled with paths build can write
//     (artifact.CheckTitles);
//   - signatures are checked against the trust store for the policy's role
//     and tenant, and required when the policy says so;
//   - a referrer (signature, approval, evidence) enters only after its
//     subject, and never when its subject was refused or failed;
//   - an admitted pack and the valid signatures that admitted it are
//     recorded in one cache transaction, or neither is;
//   - a pack loaded from the cache rebuilds to its own digest, and is used
//     only for a tenant its tenantVisibility lists (Visible).
//
// The policy's strictness is decided once, by Decide: sealed mode and the
// configuration's requireSignature cannot be weakened by an explicit
// relaxation, and contradictory requests are refused (ADR 0008).
//
// The package never prints and never reads the environment; it returns
// verdicts and the lines that go into the cache's import record.
package admission
