package evidence

import (
	"errors"
	"fmt"
)

var (
	// ErrRunInProgress: the run has not finished (it is running, waits for
	// an approval, or its runner is alive) and partial evidence was not
	// asked for.
	ErrRunInProgress = errors.New("run is still in progress")
	// ErrOutputInvalid: a file named by the pack's spec.outputs is not a
	// regular file inside the run's work folder.
	ErrOutputInvalid = errors.New("run output file is not a regular file in the work folder")
	// ErrInvalid: the file is not well-formed evidence (artifact shape,
	// parts missing, doubled or unknown, a part that does not decode).
	ErrInvalid = errors.New("evidence is malformed")
	// ErrPartAltered: a part's digest differs from the one the signed
	// statement names, or the statement names a part that is not there.
	ErrPartAltered = errors.New("evidence part differs from the signed statement")
	// ErrInconsistent: signed parts disagree with each other (plan hash
	// recomputed from the plan, inputs, run facts, output digests).
	ErrInconsistent = errors.New("evidence parts disagree")
	// ErrApprovalMismatch: an approval envelope is bound to another plan,
	// gate or tenant, is not recorded in the ledger part, or a gate the run
	// passed lacks the approvals it needs.
	ErrApprovalMismatch = errors.New("approval does not bind this run's plan and gate")
	// ErrLedgerBroken: the ledger entries are not one hash chain ending at
	// the recorded head.
	ErrLedgerBroken = errors.New("ledger entries are not chained")
)

// PartError names the part of the evidence a check failed on.
type PartError struct {
	Part string // a part's title (plan.json, log.ndjson...), or "bundle"
	Err  error
}

func (e *PartError) Error() string { return fmt.Sprintf("evidence part %s: %v", e.Part, e.Err) }
func (e *PartError) Unwrap() error { return e.Err }

func partErr(part string, err error) error { return &PartError{Part: part, Err: err} }
