// Package evidence exports the evidence of a run and verifies it offline.
// docs/evidence.md is the user's description and the normative layout;
// ADR 0011 records the decisions behind it.
//
// # Model
//
// Evidence is one OCI image manifest of artifactType
// artifact.ArtifactTypeEvidence, with the OCI empty config and, as subject,
// the manifest of the pack that ran. Its layers are the parts, each titled
// (org.opencontainers.image.title), in this order:
//
//	plan.json            the canonical plan (artifact.MediaTypePlan)
//	inputs.lock.json     resolved inputs and secret references, metadata only
//	run.json             the run: state, steps, timeline, outputs, host
//	log.ndjson           the redacted log, long records' text filled in
//	outputs/<path>       each file named by spec.outputs[].path
//	approvals/NNN.dsse.json  each accepted approval response envelope
//	approvals/ledger.json    the ledger entries they were recorded under
//	statement.dsse.json  the runner's DSSE envelope over an in-toto
//	                     statement naming the pack and every other part
//
// Every JSON part is RFC 8785 canonical JSON, and the signature is
// deterministic, so the same finished run exported twice (Build, then
// Write) gives the same bytes.
//
// # Checks
//
// Verify checks a bundle file with only a trust store, in this order, and
// stops at the first failure, returned as a *PartError naming the part:
// the bundle (package bundle's errors); the artifact's shape (ErrInvalid);
// the statement's digest as it is read (integrity errors); the run
// signature (package trust's errors, role trust.RoleRun and the run's
// tenant); every subject digest (ErrPartAltered); each other part's digest
// as it is read, no part being read before the statement naming it
// verified (integrity errors); every blob of the bundle; the plan hash recomputed from the plan
// and the parts' agreement (ErrInconsistent); each approval envelope
// against the trust store (trust's errors, role trust.RoleApprove) and
// bound to the plan hash, gate and tenant and to a ledger entry
// (ErrApprovalMismatch); the ledger chain (ErrLedgerBroken).
//
// VerifyArtifact makes the same checks, but the bundle file's own, on
// evidence read from any content.Fetcher (a registry repository, where
// hosts push evidence beside their pack); it hashes every part itself
// whatever the source checked, and can require the evidence to be of a
// given pack. Inspect reads only what evidence claims (its predicate and
// key ids), checking no signature, for listings. The package reads content
// it is given and never reaches the network itself.
//
// The package never reads a secret: the run record keeps only secret
// metadata (name, scope, source, delivery), and logs are redacted before
// they are stored.
package evidence
