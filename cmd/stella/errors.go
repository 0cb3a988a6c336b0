package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"stellaops.io/stella/bundle"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
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
	{ErrConfigInvalid, "ERR_PACK_CONFIG_INVALID", exitInvalid, "fix or remove the named key in <home>/config.yaml; unknown keys are refused so a typo never weakens a policy"},
	{errFileNotFound, "ERR_PACK_FILE_NOT_FOUND", exitNotFound, "check the path; on removable media, check that the volume is mounted"},
	{errFileTooLarge, "ERR_PACK_FILE_TOO_LARGE", exitInvalid, "the file is larger than stella reads for this purpose; check that it is the right file"},
	{context.Canceled, "ERR_PACK_INTERRUPTED", exitGeneric, "the command was interrupted; run it again — nothing partial was kept"},

	// Pack model and plans.
	{pack.ErrManifestInvalid, "ERR_PACK_MANIFEST_INVALID", exitInvalid, "fix every problem listed (file:line:column) and run `stella pack validate` again"},
	{pack.ErrInputInvalid, "ERR_PACK_INPUT_INVALID", exitInvalid, "fix the inputs file; `stella pack show` or pack.yaml lists each input's type and schema"},
	{pack.ErrUnsafePath, "ERR_PACK_UNSAFE_PATH", exitInvalid, "packs hold regular files only: replace symlinks and special files with real files"},
	{pack.ErrNotFound, "ERR_PACK_NOT_FOUND", exitNotFound, "check the pack folder (it must hold pack.yaml) or the <id>:<version> (see `stella pack list`)"},
	{pack.ErrExists, "ERR_PACK_EXISTS", exitGeneric, "choose another folder or remove the existing one"},
	{plan.ErrExpansion, "ERR_PACK_PLAN_EXPANSION", exitInvalid, "a map or loop could not be expanded from the inputs: check that its items expression gives a list"},
	{plan.ErrInvalid, "ERR_PACK_PLAN_INVALID", exitInvalid, "the plan file is not a stella plan; produce it again with `stella pack plan --out`"},

	// Artifacts.
	{bundle.ErrFileChanged, "ERR_PACK_DIGEST_MISMATCH", exitInvalid, "a pack file changed while it was being read; build again when nothing is editing the pack"},
	{bundle.ErrNotInArtifact, "ERR_PACK_BLOB_UNKNOWN", exitInvalid, "the artifact does not hold the requested blob; this is a bug if it happens during build"},
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
	msg = strings.ReplaceAll(msg, "\n", " ")
	if s.output == outputJSON {
		var rep errorReport
		rep.Error.Code, rep.Error.Message, rep.Error.Hint, rep.Error.ExitCode, rep.Error.Problems = row.Code, msg, row.Hint, row.Exit, problems
		enc := json.NewEncoder(s.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	}
	fmt.Fprintf(s.stderr, "error: %s: %s\n", row.Code, msg)
	if len(problems) > 1 {
		for _, p := range problems {
			fmt.Fprintf(s.stderr, "  %s\n", p)
		}
	}
	fmt.Fprintf(s.stderr, "hint: %s\n", row.Hint)
	return row.Exit
}
