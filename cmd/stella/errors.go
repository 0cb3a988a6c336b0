package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/approve"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/doctor"
	"stellaops.io/stella/egress"
	"stellaops.io/stella/evidence"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/mirror"
	"stellaops.io/stella/notify"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/serve"
	"stellaops.io/stella/signature"
	"stellaops.io/stella/traces/otlp"
	"stellaops.io/stella/trust"
	"stellaops.io/stella/vault"
)

// Exit codes. They are part of the CLI contract (docs/errors.md).
const (
	exitOK        = 0
	exitGeneric   = 1
	exitInvalid   = 2 // validation or integrity
	exitTrust     = 3 // authentication, authorization or trust
	exitNotFound  = 4
	exitSealed    = 5 // sealed-mode or offline violation
	exitTransient = 10
	// exitSignal + n: stopped by signal n (130 for Ctrl-C, 143 for SIGTERM).
	exitSignal = 128
)

// errorRow maps a domain error to its stable code, exit code and hint.
type errorRow struct {
	Err  error
	Code string
	Exit int
	Hint string
}

// errorTable is the one table of operator-facing failures. Order matters:
// the first row whose error matches (errors.Is) wins, so sharper errors come
// before the general ones they wrap. docs/errors.md is generated from it.
var errorTable = []errorRow{
	// Usage and environment.
	{errUsage, "ERR_PACK_USAGE", exitGeneric, "run the command with --help to see its flags and examples"},
	{serve.ErrPlainRemote, "ERR_PACK_SERVE_TLS_REQUIRED", exitGeneric, "listen on loopback (--listen 127.0.0.1:PORT, the default) and reach it through an SSH tunnel, or give --cert-file and --key-file to serve HTTPS on that address"},
	// A hook's own row first: the config error wraps both.
	{notify.ErrHook, "ERR_PACK_NOTIFY_HOOK", exitInvalid, "a notify hook of <home>/config.yaml needs a name and exactly one of command (argv) and url (http or https), and event patterns such as pack.run.*: see docs/operations/notifications.md"},
	{ErrConfigInvalid, "ERR_PACK_CONFIG_INVALID", exitInvalid, "fix or remove the named key in <home>/config.yaml; unknown keys are refused so a typo never weakens a policy"},
	{errFileNotFound, "ERR_PACK_FILE_NOT_FOUND", exitNotFound, "check the path; on removable media, check that the volume is mounted"},
	{fs.ErrNotExist, "ERR_PACK_FILE_NOT_FOUND", exitNotFound, "check the path; on removable media, check that the volume is mounted"},
	{errFolderMissing, "ERR_PACK_FOLDER_NOT_FOUND", exitNotFound, "the folder to write into does not exist: check the path and that the media is mounted (stella does not create it)"},
	{errFileTooLarge, "ERR_PACK_FILE_TOO_LARGE", exitInvalid, "the file is larger than stella reads for this purpose; check that it is the right file"},
	{errInputIsFolder, "ERR_PACK_FILE_IS_FOLDER", exitGeneric, "name the file itself, not the folder holding it: for a bundle, NAME.stella.tar or the first part NAME.stella.tar.001"},
	{bundle.ErrIsFolder, "ERR_PACK_FILE_IS_FOLDER", exitGeneric, "name the file itself, not the folder holding it: for a bundle, NAME.stella.tar or the first part NAME.stella.tar.001"},
	{syscall.EISDIR, "ERR_PACK_FILE_IS_FOLDER", exitGeneric, "name the file itself, not the folder holding it: for a bundle, NAME.stella.tar or the first part NAME.stella.tar.001"},
	{errOutputNotFile, "ERR_PACK_OUTPUT_NOT_FILE", exitGeneric, "name a regular file to write (stella writes bundles as files, through a temporary file and a rename): to use removable media, mount it and name a file on it"},
	{errOutputIsFolder, "ERR_PACK_OUTPUT_IS_FOLDER", exitGeneric, "name a file to write, not a folder: for example FOLDER/name.stella.tar"},
	{errFolderNotWritable, "ERR_PACK_FOLDER_NOT_WRITABLE", exitGeneric, "stella cannot create files there (read-only mount, write-protected media, or permissions): fix that, or write to another folder"},
	{errHomeInvalid, "ERR_PACK_HOME_INVALID", exitGeneric, "--home (or STELLA_HOME) must be a folder, or a path where stella can create one"},
	{errHomeMissing, "ERR_PACK_HOME_MISSING", exitNotFound, "check --home and STELLA_HOME for a typo; a home is created by the commands that store something (pack import, pack build, trust add, vault init, key generate, registry login)"},
	{doctor.ErrUnknownCheck, "ERR_PACK_DOCTOR_CHECK_UNKNOWN", exitGeneric, "name a check by its id or a prefix of ids (cache, runs.stuck): `stella doctor --list` lists them"},
	{context.Canceled, "ERR_PACK_INTERRUPTED", exitSignal + int(syscall.SIGINT), "the command was interrupted; run it again — nothing partial was kept"},

	// Run evidence. Before the plan rows: a plan part that does not
	// parse wraps plan.ErrInvalid inside ErrInconsistent.
	{evidence.ErrRunInProgress, "ERR_PACK_RUN_IN_PROGRESS", exitGeneric, "the run has not finished (running, awaiting approval, or its runner is alive): export it when it has, or with --partial for evidence marked partial"},
	{evidence.ErrOutputInvalid, "ERR_PACK_EVIDENCE_OUTPUT_INVALID", exitInvalid, "a file named by the pack's spec.outputs[].path is a link, a folder or too large: evidence carries only regular files inside the run's work folder (see the runbook evidence-missing)"},
	{evidence.ErrInvalid, "ERR_PACK_EVIDENCE_INVALID", exitInvalid, "the file is not well-formed stella evidence (the part is named): export it again with `stella pack runs export`; see the runbook evidence-integrity"},
	{evidence.ErrPartAltered, "ERR_PACK_EVIDENCE_ALTERED", exitInvalid, "the named part differs from what the runner signed: the evidence was altered after export; get a fresh export from the sealed side (runbook evidence-integrity)"},
	{evidence.ErrInconsistent, "ERR_PACK_EVIDENCE_INCONSISTENT", exitInvalid, "signed parts disagree (the part is named): the runner or its cache was damaged; run `stella cache verify` on the sealed side (runbook evidence-integrity)"},
	{evidence.ErrApprovalMismatch, "ERR_PACK_EVIDENCE_APPROVAL_MISMATCH", exitTrust, "an approval in the evidence does not bind this run's plan, gate and tenant, is missing from the ledger, or a gate lacks approvals: treat the run as unapproved (runbook evidence-integrity)"},
	{evidence.ErrLedgerBroken, "ERR_PACK_EVIDENCE_LEDGER_BROKEN", exitInvalid, "the approval ledger entries in the evidence are not one hash chain: run `stella cache verify` on the sealed side (runbook evidence-integrity)"},

	// Pack model and plans.
	{pack.ErrManifestInvalid, "ERR_PACK_MANIFEST_INVALID", exitInvalid, "fix every problem listed (file:line:column) and run `stella pack validate` again"},
	{pack.ErrInputInvalid, "ERR_PACK_INPUT_INVALID", exitInvalid, "fix the inputs file; `stella pack show` or pack.yaml lists each input's type and schema"},
	{pack.ErrInputLimit, "ERR_PACK_INPUT_LIMIT", exitInvalid, "the inputs file nests arrays and objects deeper than 64 levels or holds more than 200000 values: flatten it or pass fewer values"},
	{pack.ErrTooManyFiles, "ERR_PACK_TOO_MANY_FILES", exitInvalid, "a pack holds at most 10000 files besides pack.yaml: archive the rest into fewer files, or split the pack"},
	{pack.ErrUnsafePath, "ERR_PACK_UNSAFE_PATH", exitInvalid, "packs hold regular files only: replace symlinks and special files with real files"},
	{pack.ErrNotFound, "ERR_PACK_NOT_FOUND", exitNotFound, "check the name: a pack folder must hold pack.yaml, and an <id>:<version> or digest must be in the cache (`stella pack list`; import or pull it first)"},
	{pack.ErrExists, "ERR_PACK_EXISTS", exitGeneric, "choose another folder or remove the existing one"},
	// Saved plans. A corrupt record before plan.ErrInvalid, which it may
	// wrap; it keeps the code it had when saved plans were approve's.
	{plans.ErrCorrupt, "ERR_PACK_APPROVAL_RECORD_CORRUPT", exitInvalid, "a saved plan or approval record in the cache is damaged: run `stella cache verify`, and save the plan again from its pack"},
	{plans.ErrNotFound, "ERR_PACK_PLAN_NOT_FOUND", exitNotFound, "save the plan with `stella pack plan --save`; `stella pack plans list` shows saved plans (give at least 12 hex digits)"},
	{plans.ErrAmbiguous, "ERR_PACK_PLAN_AMBIGUOUS", exitInvalid, "several saved plans start with those digits: give more of the plan hash"},
	{plans.ErrInvalidMeta, "ERR_PACK_APPROVAL_INPUT_INVALID", exitGeneric, "fix the named option (tenant: letters, digits, '.', '_' and '-', at most 128; requester, comment or decision)"},
	// Approvals. Corrupt records and altered plans before plan.ErrInvalid,
	// which they may wrap.
	{approve.ErrRecordCorrupt, "ERR_PACK_APPROVAL_RECORD_CORRUPT", exitInvalid, "a saved plan or approval record in the cache is damaged: run `stella cache verify`, and save the plan again from its pack"},
	{approve.ErrPlanAltered, "ERR_PACK_HASH_MISMATCH", exitInvalid, "the plan is not the one made, claimed or approved: plan again (`stella pack plan`) and have the new plan approved; never sign a request whose plan does not hash to its claim"},
	{approve.ErrGateNotFound, "ERR_PACK_GATE_NOT_FOUND", exitNotFound, "`stella pack plans show HASH` lists the plan's approval gates (their step ids)"},
	{approve.ErrPackNotFound, "ERR_PACK_APPROVAL_PACK_UNKNOWN", exitNotFound, "build or import the pack into this cache, or save the plan again from the pack"},
	{approve.ErrInvalidInput, "ERR_PACK_APPROVAL_INPUT_INVALID", exitGeneric, "fix the named option (tenant: letters, digits, '.', '_' and '-', at most 128; requester, comment or decision)"},
	{approve.ErrInvalidRequest, "ERR_PACK_APPROVAL_REQUEST_INVALID", exitInvalid, "the file is not a stella approval request: ask the operator for a new request bundle"},
	{approve.ErrInvalidResponse, "ERR_PACK_APPROVAL_RESPONSE_INVALID", exitInvalid, "the file is not one well-formed approval response: ask the approver to sign again with `stella pack approve sign`"},
	{approve.ErrMismatch, "ERR_PACK_APPROVAL_MISMATCH", exitTrust, "the response answers another plan, gate, tenant or request (the field is named): import the response that answers this request"},
	{approve.ErrUnknownRequest, "ERR_PACK_APPROVAL_UNKNOWN_REQUEST", exitTrust, "the response answers a request this cache never issued: import it on the machine that issued the request"},
	{approve.ErrNotPending, "ERR_PACK_APPROVAL_NOT_PENDING", exitTrust, "the gate is approved already: nothing more to import or request for it; `stella pack approvals show PLAN GATE` shows who approved"},
	{approve.ErrExpired, "ERR_PACK_APPROVAL_TIMEOUT", exitTrust, "the approval window passed: issue a new request (`stella pack approve --offline-request`, with --run RUN --gate GATE for a waiting run), have it signed before it expires, then resume the run (`stella pack runs resume --run RUN`)"},
	{approve.ErrLifetimeTooLong, "ERR_PACK_APPROVAL_LIFETIME", exitTrust, "the decision claims to outlive its request: it was not made by stella, or was altered; have it signed again"},
	{approve.ErrSigningTime, "ERR_PACK_APPROVAL_CLOCK", exitTrust, "the decision's signing time is out of range: check the approver's clock, or the clockSkew setting"},
	{approve.ErrAlreadyDecided, "ERR_PACK_APPROVAL_ALREADY_DECIDED", exitTrust, "this key already answered this request; a change of mind needs a new request"},
	{approve.ErrSelfApproval, "ERR_PACK_APPROVAL_SELF_APPROVAL", exitTrust, "separation of duties: a key may not approve a gate of a pack it signed; have another approver sign, or, if the site accepts it, allow it with `stella trust policy --self-approval allow`"},
	{approve.ErrGateRejected, "ERR_PACK_GATE_REJECTED", exitTrust, "an approver rejected the gate for this plan; a changed plan (new hash) must be approved anew"},

	{secret.ErrSealedSource, "ERR_PACK_SEALED_SECRET_SOURCE", exitSealed, "in sealed mode secrets come only from the sealed vault: store them there (`stella vault put`) and point the pack's source at vault:<name>"},
	{secret.ErrMissing, "ERR_PACK_SECRET_MISSING", exitNotFound, "put each named secret into the vault (`stella vault put NAME`); outside sealed mode, set the named environment variable or give the value for this run with `--secrets FILE`"},
	{plan.ErrExpansion, "ERR_PACK_PLAN_EXPANSION", exitInvalid, "a map or loop could not be expanded from the inputs: check that its items expression gives a list"},
	{plan.ErrInvalid, "ERR_PACK_PLAN_INVALID", exitInvalid, "the plan file is not a stella plan; produce it again with `stella pack plan --out`"},

	// Signature policy: a refusal names every signature and why, and wraps
	// the trust error of each, so this row must come before the trust rows.
	{signature.ErrRejected, "ERR_PACK_SIGNATURE_INVALID", exitTrust, "no valid signature by a key trusted for the role and tenant (unsigned, forged, malformed, or by a key not trusted for it): check `stella trust list`, or get the artifact and its signature again from the publisher"},
	{signature.ErrNotSignature, "ERR_PACK_SIGNATURE_INVALID", exitTrust, "no valid signature by a key trusted for the role and tenant (unsigned, forged, malformed, or by a key not trusted for it): check `stella trust list`, or get the artifact and its signature again from the publisher"},

	{admission.ErrConflictingFlags, "ERR_PACK_USAGE", exitGeneric, "run the command with --help to see its flags and examples"},
	{admission.ErrSealedRelaxation, "ERR_PACK_SEALED_POLICY", exitSealed, "sealed mode always requires signatures: drop --insecure-skip-signature and import a pack signed by a trusted publisher key"},
	{admission.ErrConfiguredRelaxation, "ERR_PACK_POLICY_RELAXATION_REFUSED", exitTrust, "<home>/config.yaml sets requireSignature: true, which a flag cannot weaken: drop --insecure-skip-signature, or change the configuration"},
	{admission.ErrRefMismatch, "ERR_PACK_REF_MISMATCH", exitInvalid, "the bundle or registry names a pack differently from its signed manifest: the source was altered or mis-tagged; get a fresh copy, or pull <prefix>/<name>:<version> as published"},
	{admission.ErrRefNamespace, "ERR_PACK_REF_NAMESPACE", exitInvalid, "only a pack may carry a pack's <name>:<version>, and only as its signed manifest names it; other artifacts are named <kind>:<id>: the source was altered, get a fresh copy from the publisher"},
	{admission.ErrNotVisible, "ERR_PACK_TENANT_NOT_VISIBLE", exitTrust, "the pack's metadata.tenantVisibility does not list this tenant: use --tenant with a tenant it lists, or ask the publisher for a pack built for yours"},
	{artifact.ErrUnsafeTitle, "ERR_PACK_FILE_TITLE_UNSAFE", exitInvalid, "a pack file is titled with a path `stella pack build` never writes (outside the pack, absolute, backslash, hidden, twice, or file and folder at once): the artifact was crafted or altered; rebuild it with stella"},
	{admission.ErrPackLayout, "ERR_PACK_ARTIFACT_UNSUPPORTED", exitInvalid, "not an artifact stella makes (a pack is a config plus plain file layers; approvals, evidence and signatures are stella's too): rebuild or export it with stella"},

	// Runs.
	{plan.ErrHashMismatch, "ERR_PACK_HASH_MISMATCH", exitInvalid, "the plan is not the one made, claimed or approved: plan again (`stella pack plan`) and have the new plan approved; never sign a request whose plan does not hash to its claim"},
	{run.ErrIsolationRequired, "ERR_PACK_SEALED_ISOLATION", exitSealed, "sealed mode never runs steps unisolated: drop --insecure-skip-isolation"},
	{run.ErrSandboxUnavailable, "ERR_PACK_SANDBOX_UNAVAILABLE", exitSealed, "steps cannot be isolated on this host: the message names the check that failed (user namespaces, loopback, mounts); see the runbook sandbox-unavailable"},
	{redact.ErrTooShort, "ERR_PACK_SECRET_TOO_SHORT", exitInvalid, "a secret value shorter than 8 bytes cannot be masked safely in logs and outputs, so it is not used: replace it with a longer one in its source"},
	{run.ErrLimit, "ERR_PACK_STEP_LIMIT", exitGeneric, "a step was stopped by the sandbox limit named (memoryMiB, pids, cpu): raise sandbox.limits in the pack (a new plan, approved anew) or make the step use less"},
	{run.ErrStepFailed, "ERR_PACK_STEP_FAILED", exitGeneric, "a step's command exited non-zero: read its lines (`stella pack runs logs RUN --step STEP`), fix the cause, then `stella pack runs resume --run RUN`"},
	{run.ErrStepErrored, "ERR_PACK_STEP_ERRORED", exitGeneric, "a step could not start, timed out or lost its runner: see `stella pack runs show RUN`, fix the cause, then `stella pack runs resume --run RUN`"},
	{notify.ErrHostRefused, "ERR_PACK_NOTIFY_HOST_REFUSED", exitSealed, "in sealed mode a webhook is posted only to a host listed in notify.sealedAllowlist of <home>/config.yaml: add it there, or use a command hook (a local relay)"},
	{otlp.ErrHostRefused, "ERR_PACK_TRACES_HOST_REFUSED", exitSealed, "in sealed mode spans go only to a collector host listed in traces.sealedAllowlist of <home>/config.yaml: add it there, or leave traces.endpoint empty (no spans are sent)"},
	{otlp.ErrUndelivered, "ERR_PACK_TRACES_UNDELIVERED", exitTransient, "the collector did not take every span (the message says why): fix the collector or traces.endpoint, then `stella pack runs trace RUN --export`; the run itself is unaffected"},
	{notify.ErrDelivery, "ERR_PACK_NOTIFY_UNDELIVERED", exitTransient, "a hook did not take an event (the message says how): fix the hook or its host, then `stella notify deliver`; events given up on are listed by `stella notify dead-letters`"},
	{run.ErrChaosSpec, "ERR_PACK_CHAOS_SPEC", exitInvalid, "a --chaos fault is KIND=STEP (pause-after, fail, drop-network, kill-after; a step of the plan, and drop-network only for isolated steps) or delay-approvals=DURATION: see docs/operations/chaos.md"},
	{run.ErrExpression, "ERR_PACK_EXPRESSION_FAILED", exitInvalid, "a when, items, policy or ${{ }} expression failed on the run's values: check the step outputs it reads (`stella pack runs show RUN`)"},
	{run.ErrPolicyDenied, "ERR_PACK_POLICY_DENIED", exitTrust, "a gate.policy of the pack refused these inputs or outputs (the gate and its message are named); change the inputs and run again"},
	{run.ErrGateRejected, "ERR_PACK_GATE_REJECTED", exitTrust, "an approver rejected the gate for this plan; a changed plan (new hash) must be approved anew"},
	{run.ErrApprovalTimeout, "ERR_PACK_APPROVAL_TIMEOUT", exitTrust, "the approval window passed: issue a new request (`stella pack approve --offline-request`, with --run RUN --gate GATE for a waiting run), have it signed before it expires, then resume the run (`stella pack runs resume --run RUN`)"},
	{run.ErrRunTimeout, "ERR_PACK_RUN_TIMEOUT", exitGeneric, "the run exceeded sandbox.limits.timeout; `stella pack runs resume --run RUN` continues it with a new allowance"},
	{run.ErrCancelled, "ERR_PACK_RUN_CANCELLED", exitGeneric, "the run was cancelled (`stella pack runs cancel`, or an interrupt); `stella pack runs resume --run RUN` continues it"},
	{runs.ErrNotFound, "ERR_PACK_RUN_NOT_FOUND", exitNotFound, "check the run id: `stella pack runs list` shows the runs of this home"},
	{runs.ErrLocked, "ERR_PACK_RUN_LOCKED", exitTransient, "another stella process drives this run (named in the message): wait for it, or cancel it with `stella pack runs cancel --run RUN`"},
	{runs.ErrCorrupt, "ERR_PACK_RUN_RECORD_CORRUPT", exitInvalid, "a run record in the cache is damaged: run `stella cache verify`"},
	{runs.ErrRetention, "ERR_PACK_RETENTION_INVALID", exitGeneric, "give the retention period as a positive Go duration or whole days, such as 720h or 30d (--older-than, or runRetention in the config)"},
	{runs.ErrState, "ERR_PACK_RUN_STATE", exitGeneric, "the run is not in a state that allows this; `stella pack runs show RUN` says what it is"},

	// Keys, trust and vault.
	{trust.ErrInvalidStore, "ERR_PACK_TRUST_STORE_INVALID", exitInvalid, "<home>/trust.json is damaged or was edited by hand; restore it from a backup or re-add the keys with `stella trust add`"},
	{errTrustBusy, "ERR_PACK_TRUST_BUSY", exitTransient, "another stella is changing the trust store; run the command again when it has finished"},
	{trust.ErrSignatureInvalid, "ERR_PACK_SIGNATURE_INVALID", exitTrust, "no valid signature by a key trusted for the role and tenant (unsigned, forged, malformed, or by a key not trusted for it): check `stella trust list`, or get the artifact and its signature again from the publisher"},
	{trust.ErrKeyRevoked, "ERR_PACK_KEY_REVOKED", exitTrust, "the signing key was revoked (`stella trust list`); ask for a signature by a current key"},
	{trust.ErrUnknownKey, "ERR_PACK_KEY_UNTRUSTED", exitTrust, "the signing key is not in the trust store; if you trust it, add its public key with `stella trust add`"},
	{trust.ErrRoleMissing, "ERR_PACK_ROLE_MISSING", exitTrust, "the signing key does not hold the role this needs; see `stella trust list`, and re-add the key with the role if it should hold it"},
	{trust.ErrTenantNotAllowed, "ERR_PACK_TENANT_NOT_ALLOWED", exitTrust, "the signing key may not act for this tenant; see its tenants in `stella trust list`"},
	{trust.ErrSubjectMismatch, "ERR_PACK_SUBJECT_MISMATCH", exitTrust, "the signature is about another artifact (another digest); it was swapped or belongs to another version"},
	{trust.ErrPayloadType, "ERR_PACK_PAYLOAD_TYPE_UNEXPECTED", exitTrust, "the envelope does not carry an in-toto statement; it is not a stella signature"},
	{trust.ErrPredicateType, "ERR_PACK_PREDICATE_TYPE_UNEXPECTED", exitTrust, "the statement is another kind of attestation than required (for example an approval where a pack signature is expected)"},
	{trust.ErrUnknownRole, "ERR_PACK_ROLE_UNKNOWN", exitInvalid, "roles are publisher (signs packs), Packs.Approve (signs approvals), Packs.Run (signs run evidence) and the approver roles the site declares (`stella trust policy`); spelling and case matter"},
	{trust.ErrNotApproverRole, "ERR_PACK_ROLE_NOT_APPROVER", exitTrust, "gates are approved by Packs.Approve or by a role the site declares with `stella trust policy --add-approver-role ROLE`; publisher and Packs.Run never approve, so change the gate's role in pack.yaml"},
	{trust.ErrRoleInUse, "ERR_PACK_ROLE_IN_USE", exitGeneric, "a trusted key still holds that role (`stella trust list`): remove or re-add the key without it first"},
	{trust.ErrExists, "ERR_PACK_TRUST_KEY_EXISTS", exitGeneric, "that name or that key is already in the trust store (`stella trust list`); a revoked key must be removed with `stella trust rm` before it is added again"},
	{trust.ErrKeyNotFound, "ERR_PACK_TRUST_KEY_NOT_FOUND", exitNotFound, "no trusted key has that name; see `stella trust list`"},
	{trust.ErrInvalidEntry, "ERR_PACK_TRUST_ENTRY_INVALID", exitInvalid, "key names are letters, digits and . _ @ + - (at most 128); give at least one --role, and tenants as names or \"*\""},
	{trust.ErrInvalidRequirement, "ERR_PACK_TRUST_REQUIREMENT_INVALID", exitGeneric, "a verification was asked without a digest, predicate type or role; this is a bug in the calling command"},
	{keys.ErrBadPassphrase, "ERR_PACK_KEY_BAD_PASSPHRASE", exitTrust, "the passphrase does not open the key file; check STELLA_KEY_PASSPHRASE_FILE (one trailing newline is ignored)"},
	{keys.ErrKeyFileCorrupt, "ERR_PACK_KEY_CORRUPT", exitInvalid, "the private key file was damaged or altered; restore it from a backup"},
	{keys.ErrEmptyPassphrase, "ERR_PACK_KEY_PASSPHRASE_EMPTY", exitInvalid, "a private key file needs a non-empty passphrase"},
	{keys.ErrNotAPublicKey, "ERR_PACK_PUBLIC_KEY_INVALID", exitInvalid, "give the public key as PKIX PEM (BEGIN PUBLIC KEY), such as the NAME.pub written by `stella key generate`"},
	{keys.ErrNotAKey, "ERR_PACK_KEY_INVALID", exitInvalid, "give a NAME.key written by `stella key generate`, a NAME.pub, or vault:NAME for a key kept in the vault"},
	{keys.ErrUnsupportedKey, "ERR_PACK_KEY_UNSUPPORTED", exitInvalid, "stella signs and verifies with ECDSA P-256 and Ed25519 keys only"},
	{keys.ErrUnknownAlgorithm, "ERR_PACK_KEY_ALGORITHM_UNKNOWN", exitInvalid, "use --algorithm ecdsa-p256 (the default) or ed25519"},
	{keys.ErrInvalidName, "ERR_PACK_KEY_NAME_INVALID", exitInvalid, "a key name is a file name: no / or \\, not . or .."},
	{keys.ErrExists, "ERR_PACK_KEY_EXISTS", exitGeneric, "a key file of that name exists and is never overwritten; choose another name or --dir"},
	{keys.ErrMalformedEnvelope, "ERR_PACK_ENVELOPE_MALFORMED", exitInvalid, "the signature file is not a well-formed DSSE envelope; get it again from the signer"},
	{keys.ErrMalformedStatement, "ERR_PACK_STATEMENT_MALFORMED", exitInvalid, "the signed statement is not a well-formed in-toto v1 statement; get it again from the signer"},
	{vault.ErrBadPassphrase, "ERR_PACK_VAULT_BAD_PASSPHRASE", exitTrust, "the passphrase or identity does not open the vault; check STELLA_VAULT_PASSPHRASE_FILE or --identity (one trailing newline is ignored)"},
	{vault.ErrCorrupt, "ERR_PACK_VAULT_CORRUPT", exitInvalid, "the vault file was altered or truncated; nothing was changed: restore it from a backup"},
	{vault.ErrNotAVault, "ERR_PACK_NOT_A_VAULT", exitInvalid, "the file is not a stella vault; check --vault, TASKRUNNER_SEALED_VAULT_URL and the config's vault"},
	{vault.ErrVaultNotFound, "ERR_PACK_VAULT_NOT_FOUND", exitNotFound, "create it with `stella vault init`, or point --vault, TASKRUNNER_SEALED_VAULT_URL or the config's vault at it"},
	{vault.ErrSecretNotFound, "ERR_PACK_SECRET_NOT_FOUND", exitNotFound, "no secret of that name in the vault; see `stella vault list`"},
	{vault.ErrKeyNotFound, "ERR_PACK_VAULT_KEY_NOT_FOUND", exitNotFound, "no signing key of that name in the vault; see `stella vault keys`"},
	{vault.ErrExists, "ERR_PACK_VAULT_EXISTS", exitGeneric, "a vault or a key of that name already exists and is never replaced; choose another path or name"},
	{vault.ErrLocked, "ERR_PACK_VAULT_BUSY", exitTransient, "another stella is changing the vault; run the command again when it has finished"},
	{vault.ErrInvalidUnlocker, "ERR_PACK_VAULT_UNLOCK_INVALID", exitInvalid, "the passphrase is empty or the identity file holds no age identity (AGE-SECRET-KEY-1…)"},
	{vault.ErrInvalidName, "ERR_PACK_VAULT_NAME_INVALID", exitInvalid, "names start with a letter or digit, then letters, digits and . _ / - (at most 128)"},
	{vault.ErrInvalidEntry, "ERR_PACK_VAULT_ENTRY_INVALID", exitInvalid, "values are 1 byte to 1 MiB; scope and metadata values are printable text"},
	{vault.ErrInvalidRef, "ERR_PACK_VAULT_REF_INVALID", exitInvalid, "a vault reference is vault:NAME"},
	{vault.ErrUnsupportedURL, "ERR_PACK_VAULT_URL_UNSUPPORTED", exitInvalid, "TASKRUNNER_SEALED_VAULT_URL must be a local file URL: file:///absolute/path"},
	{vault.ErrClosed, "ERR_PACK_VAULT_CLOSED", exitGeneric, "the vault was used after it was closed; this is a bug in the calling command"},

	// Registries. Sealed-mode refusals first: they may wrap anything.
	{egress.ErrBlocked, "ERR_PACK_NETWORK_BLOCKED", exitSealed, "the destination is not allowed: for a step, name it in the pack's sandbox.network.allowlist (and in sealed mode the host's stepAllowlist; a new plan, approved anew); for stella in sealed mode, add the registry to <home>/config.yaml or carry a bundle file"},
	{mirror.ErrNetworkBlocked, "ERR_PACK_NETWORK_BLOCKED", exitSealed, "the destination is not allowed: for a step, name it in the pack's sandbox.network.allowlist (and in sealed mode the host's stepAllowlist; a new plan, approved anew); for stella in sealed mode, add the registry to <home>/config.yaml or carry a bundle file"},
	{mirror.ErrTransient, "ERR_PACK_REGISTRY_UNAVAILABLE", exitTransient, "the registry kept failing: run the same command again later; blobs already copied are not sent again"},
	{mirror.ErrUnauthorized, "ERR_PACK_REGISTRY_UNAUTHORIZED", exitTrust, "check the credential (`stella registry login`, ~/.docker/config.json or $REGISTRY_AUTH_FILE) and the repository's permissions"},
	{mirror.ErrPlainHTTPRegistry, "ERR_PACK_REGISTRY_PLAIN_HTTP", exitGeneric, "the registry has no TLS: add --plain-http (a loopback registry, or one on a network you trust), or give the registry a certificate"},
	{mirror.ErrUnreachable, "ERR_PACK_REGISTRY_UNREACHABLE", exitTransient, "check the registry's host name and that this machine resolves and routes to it (in a sealed network: the site DNS or /etc/hosts); run the command again once it does"},
	{mirror.ErrTLSRegistry, "ERR_PACK_REGISTRY_TLS", exitGeneric, "the registry talks HTTPS: drop --plain-http (and give --ca-file if its certificate comes from a private CA)"},
	{mirror.ErrUntrustedCertificate, "ERR_PACK_REGISTRY_CERT_UNTRUSTED", exitTrust, "give the registry's CA with --ca-file or the config's caFile"},
	{mirror.ErrTLSConfig, "ERR_PACK_TLS_CONFIG", exitInvalid, "check --ca-file, --cert-file and --key-file: PEM files, and both of cert and key or neither"},
	{mirror.ErrInvalidReference, "ERR_PACK_REFERENCE_INVALID", exitInvalid, "write host[:port]/repository[:tag][@digest], with no scheme and no credentials"},
	{mirror.ErrNotFound, "ERR_PACK_REGISTRY_NOT_FOUND", exitNotFound, "check the repository, tag or digest at the registry"},
	{mirror.ErrUnsupportedArtifact, "ERR_PACK_ARTIFACT_UNSUPPORTED", exitInvalid, "not an artifact stella makes (a pack is a config plus plain file layers; approvals, evidence and signatures are stella's too): rebuild or export it with stella"},
	{mirror.ErrSubjectMissing, "ERR_PACK_SUBJECT_MISSING", exitNotFound, "evidence is pushed beside its pack: push the pack to that repository first (`stella pack mirror push --to PREFIX ID:VERSION`), or give the --to prefix the pack was mirrored under"},
	{mirror.ErrTooManyReferrers, "ERR_PACK_TOO_MANY_REFERRERS", exitInvalid, "the artifact has more referrers than stella follows; clean up the repository"},

	// Content integrity, whatever the source (bundle, registry, cache, pack
	// files). A changed pack file wraps a digest or size mismatch: its row
	// comes first.
	{artifact.ErrFileChanged, "ERR_PACK_DIGEST_MISMATCH", exitInvalid, "content does not match its digest (corrupt, tampered, or a pack file changed while it was read): get a fresh copy from a trusted source (`stella cache verify` for the cache), or build again when nothing edits the pack"},
	{integrity.ErrDigestMismatch, "ERR_PACK_DIGEST_MISMATCH", exitInvalid, "content does not match its digest (corrupt, tampered, or a pack file changed while it was read): get a fresh copy from a trusted source (`stella cache verify` for the cache), or build again when nothing edits the pack"},
	{integrity.ErrSizeMismatch, "ERR_PACK_SIZE_MISMATCH", exitInvalid, "content is shorter or longer than its descriptor says (truncated?): it is corrupt or tampered; get a fresh copy"},
	{integrity.ErrInvalidDigest, "ERR_PACK_INVALID_DIGEST", exitInvalid, "a digest is malformed or uses an unsupported algorithm (stella uses sha256)"},
	{integrity.ErrTooLarge, "ERR_PACK_BUNDLE_TOO_LARGE", exitInvalid, "the bundle is beyond what stella reads (an index or manifest over 4 MiB, or too many entries): it is not one stella wrote, or export fewer artifacts per bundle"},
	{integrity.ErrInvalidManifest, "ERR_PACK_ARTIFACT_INVALID", exitInvalid, "a malformed OCI manifest or <id>:<version> ref: check the ref, or build or export the artifact again with stella"},
	{integrity.ErrUnsupportedMediaType, "ERR_PACK_MEDIA_TYPE_UNSUPPORTED", exitInvalid, "the artifact holds content of an unknown media type; stella accepts only the types in docs/bundle-format.md"},

	// The local cache.
	{cache.ErrLocked, "ERR_PACK_CACHE_LOCKED", exitTransient, "another stella process holds the cache (named in the message); wait for it to finish and retry"},
	{cache.ErrInvalidArtifact, "ERR_PACK_ARTIFACT_INVALID", exitInvalid, "a malformed OCI manifest or <id>:<version> ref: check the ref, or build or export the artifact again with stella"},
	{cache.ErrRefConflict, "ERR_PACK_REF_CONFLICT", exitInvalid, "the <id>:<version> already names different content in the cache: remove it with `stella pack rm` first if the new one is trusted"},
	{cache.ErrIndexCorrupt, "ERR_PACK_CACHE_CORRUPT", exitInvalid, "the cache index is inconsistent: run `stella cache verify`, then `stella cache gc` or re-import"},
	{cache.ErrIndexDamaged, "ERR_PACK_CACHE_INDEX_DAMAGED", exitInvalid, "the index file <home>/packs/index.db cannot be opened: restore it from a backup, or move <home>/packs aside and import the bundles again"},
	{cache.ErrIndexVersion, "ERR_PACK_CACHE_VERSION", exitGeneric, "the cache was written by a newer stella: use that version or a fresh STELLA_HOME"},
	{cache.ErrNotFound, "ERR_PACK_NOT_FOUND", exitNotFound, "check the name: a pack folder must hold pack.yaml, and an <id>:<version> or digest must be in the cache (`stella pack list`; import or pull it first)"},

	// Artifacts and bundle files. Split-set errors first: they name the part.
	{bundle.ErrPartMissing, "ERR_PACK_PART_MISSING", exitInvalid, "copy the named part next to the others (all NAME.NNN files and NAME.parts.json together)"},
	{bundle.ErrPartSize, "ERR_PACK_PART_TRUNCATED", exitInvalid, "the named part has the wrong size: copy it again from the source media"},
	{bundle.ErrPartDigest, "ERR_PACK_PART_STALE", exitInvalid, "the named part is from another export or was damaged: copy the right one again"},
	{bundle.ErrPartOrder, "ERR_PACK_PART_ORDER", exitInvalid, "parts were renamed or swapped: restore their numbering as in NAME.parts.json"},
	{bundle.ErrPartsManifest, "ERR_PACK_PARTS_MANIFEST_INVALID", exitInvalid, "copy NAME.parts.json together with its parts; it is written by `stella pack export --split`"},
	{bundle.ErrInvalidPartSize, "ERR_PACK_PART_SIZE_INVALID", exitGeneric, "use a positive --split size (e.g. 4GiB) that gives at most 999 parts"},
	{bundle.ErrAbsolutePath, "ERR_PACK_BUNDLE_UNSAFE_ENTRY", exitInvalid, "the bundle holds an unsafe entry (an absolute path, '..', a link or a special file): do not extract it; get a bundle written by stella"},
	{bundle.ErrPathTraversal, "ERR_PACK_BUNDLE_UNSAFE_ENTRY", exitInvalid, "the bundle holds an unsafe entry (an absolute path, '..', a link or a special file): do not extract it; get a bundle written by stella"},
	{bundle.ErrSymlink, "ERR_PACK_BUNDLE_UNSAFE_ENTRY", exitInvalid, "the bundle holds an unsafe entry (an absolute path, '..', a link or a special file): do not extract it; get a bundle written by stella"},
	{bundle.ErrHardLink, "ERR_PACK_BUNDLE_UNSAFE_ENTRY", exitInvalid, "the bundle holds an unsafe entry (an absolute path, '..', a link or a special file): do not extract it; get a bundle written by stella"},
	{bundle.ErrUnsupportedEntryType, "ERR_PACK_BUNDLE_UNSAFE_ENTRY", exitInvalid, "the bundle holds an unsafe entry (an absolute path, '..', a link or a special file): do not extract it; get a bundle written by stella"},
	{bundle.ErrDuplicateEntry, "ERR_PACK_BUNDLE_DUPLICATE_ENTRY", exitInvalid, "the bundle names one file twice, so its content is ambiguous: export it again"},
	{bundle.ErrUnexpectedEntry, "ERR_PACK_BUNDLE_UNEXPECTED_ENTRY", exitInvalid, "the file holds entries a stella bundle does not have: it is not a stella bundle, or was altered"},
	{bundle.ErrTruncated, "ERR_PACK_BUNDLE_TRUNCATED", exitInvalid, "the bundle ends early: the copy is incomplete; copy it again and compare its size with the source"},
	{bundle.ErrInvalidTar, "ERR_PACK_BUNDLE_INVALID", exitInvalid, "the file is not a tar archive: check that it is a bundle stella wrote (pack export, an approval request or response, evidence), not compressed or re-packed on the way"},
	{bundle.ErrTooManyEntries, "ERR_PACK_BUNDLE_TOO_LARGE", exitInvalid, "the bundle is beyond what stella reads (an index or manifest over 4 MiB, or too many entries): it is not one stella wrote, or export fewer artifacts per bundle"},
	{bundle.ErrBadLayout, "ERR_PACK_BUNDLE_LAYOUT", exitInvalid, "oci-layout is missing or not version 1.0.0: the file is not an OCI layout bundle"},
	{bundle.ErrInvalidIndex, "ERR_PACK_BUNDLE_INDEX_INVALID", exitInvalid, "index.json is malformed or names unknown kinds: export the bundle again"},
	{bundle.ErrChecksums, "ERR_PACK_CHECKSUMS_MISMATCH", exitInvalid, "SHA256SUMS disagrees with the bundle's files: it was edited or belongs to another bundle"},
	{bundle.ErrBlobMissing, "ERR_PACK_BLOB_MISSING", exitInvalid, "a blob the artifact needs is not in the bundle: export it again with the full artifact"},
	{bundle.ErrExtraBlob, "ERR_PACK_BLOB_EXTRA", exitInvalid, "the bundle holds a blob no artifact references: it was altered after export"},
	{bundle.ErrSelfReference, "ERR_PACK_MANIFEST_SELF_REFERENCE", exitInvalid, "a manifest names itself as its own content: the bundle is malformed"},
	{bundle.ErrCycle, "ERR_PACK_MANIFEST_CYCLE", exitInvalid, "index manifests refer to each other in a cycle: the bundle is malformed"},
	{bundle.ErrDecompressionLimit, "ERR_PACK_DECOMPRESSION_LIMIT", exitInvalid, "a compressed layer inflates beyond its declared size (possible decompression bomb): do not use this bundle"},
	{bundle.ErrDecompressionTotal, "ERR_PACK_DECOMPRESSION_TOTAL_LIMIT", exitInvalid, "the bundle's compressed layers together declare more than stella decompresses for one bundle (64 GiB): it is not one stella wrote, or export fewer artifacts per bundle"},
	{bundle.ErrBadCompression, "ERR_PACK_COMPRESSION_INVALID", exitInvalid, "a compressed layer does not decompress to its declared digest: the bundle is corrupt"},
	{bundle.ErrInvalidEntry, "ERR_PACK_BUNDLE_ENTRY_INVALID", exitGeneric, "every artifact in a bundle needs a known kind and a <id>:<version> ref unless it has a subject"},
	{bundle.ErrNotFound, "ERR_PACK_NOT_FOUND", exitNotFound, "check the name: a pack folder must hold pack.yaml, and an <id>:<version> or digest must be in the cache (`stella pack list`; import or pull it first)"},
	{artifact.ErrNotInArtifact, "ERR_PACK_BLOB_UNKNOWN", exitInvalid, "the artifact does not hold the requested blob; this is a bug if it happens during build"},

	// Last: a referrer left out because its subject failed is a consequence;
	// when the subject's own failure is in the same error, that row wins.
	{admission.ErrSubjectRefused, "ERR_PACK_SUBJECT_FAILED", exitInvalid, "a signature or other referrer was left out because the artifact it belongs to failed; fix that artifact's error first"},
	{run.ErrSecretUndelivered, "ERR_PACK_SECRET_UNDELIVERED", exitGeneric, "a secret could not be written for the step (named): check the run folder's disk space and permissions, then `stella pack runs resume --run RUN`"},
	// After every sharper row: a file or folder the operator named that
	// stella may not read or write.
	{fs.ErrPermission, "ERR_PACK_PERMISSION_DENIED", exitGeneric, "stella may not read or write the path named: check its permissions and owner (and that removable media is not write-protected), or use another path"},
}

// errUsage marks a command line that cannot be run as given.
var errUsage = errors.New("usage")

type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }
func (e *usageErr) Unwrap() error { return errUsage }

func usageError(msg string) error { return &usageErr{msg: msg} }

// lookupError finds the row of err; unknown errors are ERR_PACK_INTERNAL.
func lookupError(err error) errorRow {
	for _, r := range errorTable {
		if errors.Is(err, r.Err) {
			return r
		}
	}
	return errorRow{Code: "ERR_PACK_INTERNAL", Exit: exitGeneric, Hint: "an unexpected failure; run again with the same arguments and report the message if it persists"}
}

// errorReport is the JSON form of a failure (--output json), on stdout.
type errorReport struct {
	Error struct {
		Code     string         `json:"code"`
		Message  string         `json:"message"`
		Hint     string         `json:"hint"`
		ExitCode int            `json:"exitCode"`
		Problems []pack.Problem `json:"problems,omitempty"`
	} `json:"error"`
}

// fail reports err and returns its exit code. A one-line message names the
// object; validation problems follow one per line; then the hint.
func (s *session) fail(err error) int {
	var es *exitStatus
	if errors.As(err, &es) {
		// The command wrote its result; its exit status says the rest.
		return es.code
	}
	row := lookupError(err)
	var ve *pack.ValidationError
	var problems []pack.Problem
	msg := err.Error()
	if errors.As(err, &ve) {
		problems = ve.Problems
		msg = fmt.Sprintf("%v: %d problem(s)", ve.Kind, len(ve.Problems))
		if len(ve.Problems) == 1 {
			msg = ve.Error()
		}
	}
	if sig := s.signal.Load(); sig != 0 {
		// Whatever the failure says, an interrupt ended the command.
		row.Exit = exitSignal + int(sig)
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	if s.redact != nil {
		msg = s.redact.String(msg)
	}
	if s.output == outputJSON && !s.emitted {
		var rep errorReport
		rep.Error.Code, rep.Error.Message, rep.Error.Hint, rep.Error.ExitCode, rep.Error.Problems = row.Code, msg, row.Hint, row.Exit, problems
		_ = s.writeJSON(rep)
	}
	// A message may quote what a pack or bundle holds: on a terminal it
	// is rendered (JSON escapes it by itself).
	fmt.Fprintf(s.stderr, "error: %s: %s\n", row.Code, display.Line(msg))
	if len(problems) > 1 {
		for _, p := range problems {
			fmt.Fprintf(s.stderr, "  %s\n", display.Line(p.String()))
		}
	}
	fmt.Fprintf(s.stderr, "hint: %s\n", row.Hint)
	return row.Exit
}
