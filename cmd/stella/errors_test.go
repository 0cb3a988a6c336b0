package main

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/approve"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
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

// domainErrors lists every exported sentinel error of the domain packages.
// TestEveryDomainErrorIsListed keeps it complete; TestEveryDomainErrorHasARow
// checks each has a row in errorTable.
var domainErrors = map[string]error{
	"doctor.ErrUnknownCheck":            doctor.ErrUnknownCheck,
	"evidence.ErrRunInProgress":         evidence.ErrRunInProgress,
	"evidence.ErrOutputInvalid":         evidence.ErrOutputInvalid,
	"evidence.ErrInvalid":               evidence.ErrInvalid,
	"evidence.ErrPartAltered":           evidence.ErrPartAltered,
	"evidence.ErrInconsistent":          evidence.ErrInconsistent,
	"evidence.ErrApprovalMismatch":      evidence.ErrApprovalMismatch,
	"evidence.ErrLedgerBroken":          evidence.ErrLedgerBroken,
	"redact.ErrTooShort":                redact.ErrTooShort,
	"run.ErrSecretUndelivered":          run.ErrSecretUndelivered,
	"run.ErrLimit":                      run.ErrLimit,
	"run.ErrIsolationRequired":          run.ErrIsolationRequired,
	"run.ErrChaosSpec":                  run.ErrChaosSpec,
	"notify.ErrHook":                    notify.ErrHook,
	"notify.ErrHostRefused":             notify.ErrHostRefused,
	"notify.ErrDelivery":                notify.ErrDelivery,
	"otlp.ErrHostRefused":               otlp.ErrHostRefused,
	"otlp.ErrUndelivered":               otlp.ErrUndelivered,
	"egress.ErrBlocked":                 egress.ErrBlocked,
	"serve.ErrPlainRemote":              serve.ErrPlainRemote,
	"admission.ErrConflictingFlags":     admission.ErrConflictingFlags,
	"admission.ErrSealedRelaxation":     admission.ErrSealedRelaxation,
	"admission.ErrConfiguredRelaxation": admission.ErrConfiguredRelaxation,
	"admission.ErrRefMismatch":          admission.ErrRefMismatch,
	"admission.ErrPackLayout":           admission.ErrPackLayout,
	"admission.ErrSubjectRefused":       admission.ErrSubjectRefused,
	"admission.ErrRefNamespace":         admission.ErrRefNamespace,
	"admission.ErrNotVisible":           admission.ErrNotVisible,
	"plan.ErrHashMismatch":              plan.ErrHashMismatch,
	"run.ErrSandboxUnavailable":         run.ErrSandboxUnavailable,
	"run.ErrStepFailed":                 run.ErrStepFailed,
	"run.ErrStepErrored":                run.ErrStepErrored,
	"run.ErrExpression":                 run.ErrExpression,
	"run.ErrPolicyDenied":               run.ErrPolicyDenied,
	"run.ErrGateRejected":               run.ErrGateRejected,
	"run.ErrApprovalTimeout":            run.ErrApprovalTimeout,
	"run.ErrRunTimeout":                 run.ErrRunTimeout,
	"run.ErrCancelled":                  run.ErrCancelled,
	"runs.ErrNotFound":                  runs.ErrNotFound,
	"runs.ErrLocked":                    runs.ErrLocked,
	"runs.ErrCorrupt":                   runs.ErrCorrupt,
	"runs.ErrState":                     runs.ErrState,
	"runs.ErrRetention":                 runs.ErrRetention,
	"integrity.ErrDigestMismatch":       integrity.ErrDigestMismatch,
	"integrity.ErrSizeMismatch":         integrity.ErrSizeMismatch,
	"integrity.ErrTooLarge":             integrity.ErrTooLarge,
	"integrity.ErrInvalidManifest":      integrity.ErrInvalidManifest,
	"integrity.ErrUnsupportedMediaType": integrity.ErrUnsupportedMediaType,
	"pack.ErrManifestInvalid":           pack.ErrManifestInvalid,
	"pack.ErrInputInvalid":              pack.ErrInputInvalid,
	"pack.ErrInputLimit":                pack.ErrInputLimit,
	"pack.ErrNotFound":                  pack.ErrNotFound,
	"pack.ErrUnsafePath":                pack.ErrUnsafePath,
	"pack.ErrTooManyFiles":              pack.ErrTooManyFiles,
	"pack.ErrFileChanged":               pack.ErrFileChanged,
	"pack.ErrExists":                    pack.ErrExists,
	"plan.ErrExpansion":                 plan.ErrExpansion,
	"plan.ErrInvalid":                   plan.ErrInvalid,
	"plans.ErrNotFound":                 plans.ErrNotFound,
	"plans.ErrAmbiguous":                plans.ErrAmbiguous,
	"plans.ErrInvalidMeta":              plans.ErrInvalidMeta,
	"plans.ErrCorrupt":                  plans.ErrCorrupt,
	"secret.ErrMissing":                 secret.ErrMissing,
	"secret.ErrSealedSource":            secret.ErrSealedSource,
	"bundle.ErrIsFolder":                bundle.ErrIsFolder,
	"bundle.ErrPartMissing":             bundle.ErrPartMissing,
	"bundle.ErrPartSize":                bundle.ErrPartSize,
	"bundle.ErrPartDigest":              bundle.ErrPartDigest,
	"bundle.ErrPartOrder":               bundle.ErrPartOrder,
	"bundle.ErrPartsManifest":           bundle.ErrPartsManifest,
	"bundle.ErrInvalidPartSize":         bundle.ErrInvalidPartSize,
	"bundle.ErrAbsolutePath":            bundle.ErrAbsolutePath,
	"bundle.ErrPathTraversal":           bundle.ErrPathTraversal,
	"bundle.ErrSymlink":                 bundle.ErrSymlink,
	"bundle.ErrHardLink":                bundle.ErrHardLink,
	"bundle.ErrUnsupportedEntryType":    bundle.ErrUnsupportedEntryType,
	"bundle.ErrDuplicateEntry":          bundle.ErrDuplicateEntry,
	"bundle.ErrUnexpectedEntry":         bundle.ErrUnexpectedEntry,
	"bundle.ErrTruncated":               bundle.ErrTruncated,
	"bundle.ErrInvalidTar":              bundle.ErrInvalidTar,
	"bundle.ErrTooManyEntries":          bundle.ErrTooManyEntries,
	"bundle.ErrBadLayout":               bundle.ErrBadLayout,
	"bundle.ErrInvalidIndex":            bundle.ErrInvalidIndex,
	"bundle.ErrChecksums":               bundle.ErrChecksums,
	"bundle.ErrBlobMissing":             bundle.ErrBlobMissing,
	"bundle.ErrExtraBlob":               bundle.ErrExtraBlob,
	"bundle.ErrSelfReference":           bundle.ErrSelfReference,
	"bundle.ErrCycle":                   bundle.ErrCycle,
	"bundle.ErrDecompressionLimit":      bundle.ErrDecompressionLimit,
	"bundle.ErrDecompressionTotal":      bundle.ErrDecompressionTotal,
	"bundle.ErrBadCompression":          bundle.ErrBadCompression,
	"bundle.ErrInvalidEntry":            bundle.ErrInvalidEntry,
	"bundle.ErrNotFound":                bundle.ErrNotFound,
	"cache.ErrLocked":                   cache.ErrLocked,
	"integrity.ErrInvalidDigest":        integrity.ErrInvalidDigest,
	"cache.ErrInvalidArtifact":          cache.ErrInvalidArtifact,
	"cache.ErrRefConflict":              cache.ErrRefConflict,
	"cache.ErrIndexCorrupt":             cache.ErrIndexCorrupt,
	"cache.ErrIndexDamaged":             cache.ErrIndexDamaged,
	"cache.ErrIndexVersion":             cache.ErrIndexVersion,
	"cache.ErrNotFound":                 cache.ErrNotFound,
	"approve.ErrRecordCorrupt":          approve.ErrRecordCorrupt,
	"approve.ErrPlanAltered":            approve.ErrPlanAltered,
	"approve.ErrGateNotFound":           approve.ErrGateNotFound,
	"approve.ErrPackNotFound":           approve.ErrPackNotFound,
	"approve.ErrInvalidInput":           approve.ErrInvalidInput,
	"approve.ErrInvalidRequest":         approve.ErrInvalidRequest,
	"approve.ErrInvalidResponse":        approve.ErrInvalidResponse,
	"approve.ErrMismatch":               approve.ErrMismatch,
	"approve.ErrUnknownRequest":         approve.ErrUnknownRequest,
	"approve.ErrNotPending":             approve.ErrNotPending,
	"approve.ErrExpired":                approve.ErrExpired,
	"approve.ErrLifetimeTooLong":        approve.ErrLifetimeTooLong,
	"approve.ErrSigningTime":            approve.ErrSigningTime,
	"approve.ErrAlreadyDecided":         approve.ErrAlreadyDecided,
	"approve.ErrGateRejected":           approve.ErrGateRejected,
	"approve.ErrSelfApproval":           approve.ErrSelfApproval,
	"mirror.ErrNetworkBlocked":          mirror.ErrNetworkBlocked,
	"mirror.ErrTransient":               mirror.ErrTransient,
	"mirror.ErrUnauthorized":            mirror.ErrUnauthorized,
	"mirror.ErrUntrustedCertificate":    mirror.ErrUntrustedCertificate,
	"mirror.ErrTLSConfig":               mirror.ErrTLSConfig,
	"mirror.ErrInvalidReference":        mirror.ErrInvalidReference,
	"mirror.ErrNotFound":                mirror.ErrNotFound,
	"mirror.ErrPlainHTTPRegistry":       mirror.ErrPlainHTTPRegistry,
	"mirror.ErrTLSRegistry":             mirror.ErrTLSRegistry,
	"mirror.ErrUnreachable":             mirror.ErrUnreachable,
	"mirror.ErrUnsupportedArtifact":     mirror.ErrUnsupportedArtifact,
	"mirror.ErrTooManyReferrers":        mirror.ErrTooManyReferrers,
	"mirror.ErrSubjectMissing":          mirror.ErrSubjectMissing,
	"signature.ErrRejected":             signature.ErrRejected,
	"signature.ErrNotSignature":         signature.ErrNotSignature,
	"artifact.ErrFileChanged":           artifact.ErrFileChanged,
	"artifact.ErrNotInArtifact":         artifact.ErrNotInArtifact,
	"artifact.ErrUnsafeTitle":           artifact.ErrUnsafeTitle,

	// Keys, trust and vault.
	"keys.ErrUnknownAlgorithm":    keys.ErrUnknownAlgorithm,
	"keys.ErrUnsupportedKey":      keys.ErrUnsupportedKey,
	"keys.ErrEmptyPassphrase":     keys.ErrEmptyPassphrase,
	"keys.ErrBadPassphrase":       keys.ErrBadPassphrase,
	"keys.ErrNotAKey":             keys.ErrNotAKey,
	"keys.ErrKeyFileCorrupt":      keys.ErrKeyFileCorrupt,
	"keys.ErrNotAPublicKey":       keys.ErrNotAPublicKey,
	"keys.ErrInvalidName":         keys.ErrInvalidName,
	"keys.ErrExists":              keys.ErrExists,
	"keys.ErrMalformedEnvelope":   keys.ErrMalformedEnvelope,
	"keys.ErrMalformedStatement":  keys.ErrMalformedStatement,
	"trust.ErrSignatureInvalid":   trust.ErrSignatureInvalid,
	"trust.ErrUnknownKey":         trust.ErrUnknownKey,
	"trust.ErrKeyRevoked":         trust.ErrKeyRevoked,
	"trust.ErrRoleMissing":        trust.ErrRoleMissing,
	"trust.ErrTenantNotAllowed":   trust.ErrTenantNotAllowed,
	"trust.ErrSubjectMismatch":    trust.ErrSubjectMismatch,
	"trust.ErrPayloadType":        trust.ErrPayloadType,
	"trust.ErrPredicateType":      trust.ErrPredicateType,
	"trust.ErrUnknownRole":        trust.ErrUnknownRole,
	"trust.ErrNotApproverRole":    trust.ErrNotApproverRole,
	"trust.ErrRoleInUse":          trust.ErrRoleInUse,
	"trust.ErrExists":             trust.ErrExists,
	"trust.ErrKeyNotFound":        trust.ErrKeyNotFound,
	"trust.ErrInvalidEntry":       trust.ErrInvalidEntry,
	"trust.ErrInvalidStore":       trust.ErrInvalidStore,
	"trust.ErrInvalidRequirement": trust.ErrInvalidRequirement,
	"vault.ErrVaultNotFound":      vault.ErrVaultNotFound,
	"vault.ErrExists":             vault.ErrExists,
	"vault.ErrNotAVault":          vault.ErrNotAVault,
	"vault.ErrBadPassphrase":      vault.ErrBadPassphrase,
	"vault.ErrCorrupt":            vault.ErrCorrupt,
	"vault.ErrInvalidUnlocker":    vault.ErrInvalidUnlocker,
	"vault.ErrInvalidName":        vault.ErrInvalidName,
	"vault.ErrInvalidEntry":       vault.ErrInvalidEntry,
	"vault.ErrSecretNotFound":     vault.ErrSecretNotFound,
	"vault.ErrKeyNotFound":        vault.ErrKeyNotFound,
	"vault.ErrInvalidRef":         vault.ErrInvalidRef,
	"vault.ErrLocked":             vault.ErrLocked,
	"vault.ErrUnsupportedURL":     vault.ErrUnsupportedURL,
	"vault.ErrClosed":             vault.ErrClosed,
}

// exportedErrors returns the exported Err* variables declared by the
// non-test files of every package of the module but cmd/stella (which owns
// the table) and the test harness internal/regtest.
func exportedErrors(t *testing.T) []string {
	t.Helper()
	pkgs, err := listModule()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		rel, _ := moduleRelative(p.ImportPath)
		if rel == "cmd/stella" || rel == "internal/regtest" || strings.HasPrefix(rel, "internal/regtest/") {
			continue
		}
		files, err := filepath.Glob(filepath.Join(p.Dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					for _, n := range spec.(*ast.ValueSpec).Names {
						if strings.HasPrefix(n.Name, "Err") && n.IsExported() {
							names = append(names, af.Name.Name+"."+n.Name)
						}
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

func TestEveryDomainErrorIsListed(t *testing.T) {
	var listed []string
	for n := range domainErrors {
		listed = append(listed, n)
	}
	sort.Strings(listed)
	if diff := cmp.Diff(exportedErrors(t), listed); diff != "" {
		t.Errorf("domainErrors is out of date with the exported Err* variables (-exported +listed):\n%s\nadd each new error to domainErrors and give it a row in errorTable", diff)
	}
}

func TestEveryDomainErrorHasARow(t *testing.T) {
	for name, e := range domainErrors {
		found := false
		for _, r := range errorTable {
			if r.Err == e {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s has no row in errorTable", name)
		}
	}
}

func TestErrorTableRows(t *testing.T) {
	for _, r := range errorTable {
		if !strings.HasPrefix(r.Code, "ERR_PACK_") || strings.ToUpper(r.Code) != r.Code {
			t.Errorf("code %q: want ERR_PACK_ and upper case", r.Code)
		}
		switch r.Exit {
		case exitGeneric, exitInvalid, exitTrust, exitNotFound, exitSealed, exitTransient, exitSignal + int(syscall.SIGINT):
		default:
			t.Errorf("%s: exit code %d is not a documented one", r.Code, r.Exit)
		}
		if r.Hint == "" || r.Err == nil {
			t.Errorf("%s: needs an error and a hint", r.Code)
		}
	}
	// A wrapped error is found through its sentinel.
	if got := lookupError(errors.Join(errors.New("context"), pack.ErrNotFound)); got.Code != "ERR_PACK_NOT_FOUND" || got.Exit != exitNotFound {
		t.Errorf("lookup through wrapping: %+v", got)
	}
	if got := lookupError(errors.New("mystery")); got.Code != "ERR_PACK_INTERNAL" {
		t.Errorf("unknown error: %+v", got)
	}
}

// TestGeneratedDocsUpToDate fails when docs/errors.md, docs/cli/stella.md or
// the package table of docs/architecture.md differ from what `make docs`
// would write.
func TestGeneratedDocsUpToDate(t *testing.T) {
	s := &session{stdin: strings.NewReader(""), stdout: os.Stdout, stderr: os.Stderr, getenv: func(string) string { return "" }}
	files, err := generatedDocs(s.newApp(), "../../docs")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("../../docs", name))
		if err != nil {
			t.Errorf("docs/%s: %v (run `make docs`)", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("docs/%s is stale: run `make docs` and commit the result", name)
		}
	}
}

// TestOneHintPerCode: a code means one thing to an operator: every row of
// the error table with that code has the same exit code and the same hint,
// so docs/errors.md gives one of each.
func TestOneHintPerCode(t *testing.T) {
	first := map[string]errorRow{}
	for _, r := range errorTable {
		f, ok := first[r.Code]
		if !ok {
			first[r.Code] = r
			continue
		}
		if f.Exit != r.Exit || f.Hint != r.Hint {
			t.Errorf("%s: exit %d, hint %q for %v; exit %d, hint %q for %v", r.Code, f.Exit, f.Hint, f.Err, r.Exit, r.Hint, r.Err)
		}
	}
}

// TestOperatorSituationsAreNotInternal: the failures an operator causes
// map to their own codes, never ERR_PACK_INTERNAL.
func TestOperatorSituationsAreNotInternal(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{&fs.PathError{Op: "open", Path: "/media/usb0/packs.tar", Err: syscall.EACCES}, "ERR_PACK_PERMISSION_DENIED"},
		{&fs.PathError{Op: "mkdir", Path: "/mnt/ro/x", Err: syscall.EPERM}, "ERR_PACK_PERMISSION_DENIED"},
		{&fileError{path: "adir", err: errOutputIsFolder}, "ERR_PACK_OUTPUT_IS_FOLDER"},
		{&fileError{path: "/mnt/ro", err: errFolderNotWritable}, "ERR_PACK_FOLDER_NOT_WRITABLE"},
		{&fileError{path: "afile", err: errHomeInvalid}, "ERR_PACK_HOME_INVALID"},
		{&fileError{path: "nohome", err: errHomeMissing}, "ERR_PACK_HOME_MISSING"},
		{&fileError{path: "adir", err: errInputIsFolder}, "ERR_PACK_FILE_IS_FOLDER"},
		{&fileError{path: "/dev/sdb", err: errOutputNotFile}, "ERR_PACK_OUTPUT_NOT_FILE"},
		{&fs.PathError{Op: "read", Path: "adir", Err: syscall.EISDIR}, "ERR_PACK_FILE_IS_FOLDER"},
		{context.Canceled, "ERR_PACK_INTERRUPTED"},
	} {
		if got := lookupError(c.err).Code; got != c.code {
			t.Errorf("%v: %s, want %s", c.err, got, c.code)
		}
	}
}
