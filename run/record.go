package run

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
)

// Run states.
const (
	Running          = "running"
	AwaitingApproval = "awaiting-approval"
	Paused           = "paused"
	Succeeded        = "succeeded"
	Failed           = "failed"
	Cancelled        = "cancelled"
	Expired          = "expired"
)

// Step states (Running, AwaitingApproval, Succeeded, Failed and Cancelled
// are shared with runs).
const (
	StepPending  = "pending"
	StepRetrying = "retrying"
	StepErrored  = "errored"
	StepSkipped  = "skipped"
)

// Terminal reports whether a run state is final.
func Terminal(state string) bool {
	switch state {
	case Succeeded, Failed, Cancelled, Expired:
		return true
	}
	return false
}

// Record is the durable state of one run. Field names are part of the
// stored format and of `stella pack runs show --output json`.
type Record struct {
	ID       string        `json:"id"`
	Tenant   string        `json:"tenant"`
	Pack     plan.PackRef  `json:"pack"`
	PlanHash digest.Digest `json:"planHash"`
	State    string        `json:"state"`
	// Inputs are the run's resolved inputs (never secrets), so a resume
	// can plan again and check the plan hash.
	Inputs  map[string]any `json:"inputs"`
	Created time.Time      `json:"created"`
	Updated time.Time      `json:"updated"`
	Ended   *time.Time     `json:"ended,omitempty"`
	// Steps are the expanded steps the run has reached, by id.
	Steps map[string]*StepRecord `json:"steps"`
	// Expansions hold the iterations a deferred map or loop was expanded
	// into at run time, by the deferred step's id, so a resumed run walks
	// exactly the same steps.
	Expansions map[string]plan.Expansion `json:"expansions,omitempty"`
	// Outputs are the run's outputs (spec.outputs with from), once it succeeded.
	Outputs  map[string]any `json:"outputs,omitempty"`
	Timeline []Event        `json:"timeline"`
	// Failure says why a run ended other than succeeded.
	Failure *Failure `json:"failure,omitempty"`
	// Runner is the process driving the run, while one does.
	Runner *Runner `json:"runner,omitempty"`
	// Relaxations are explicit weakenings in force for this run (printed
	// and recorded, e.g. an isolation override).
	Relaxations []string `json:"relaxations,omitempty"`
	// Chaos are the faults injected on purpose in this run, each with
	// whether it fired (chaos.go).
	Chaos []Fault `json:"chaos,omitempty"`
}

// StepRecord is the state of one expanded step.
type StepRecord struct {
	ID       string         `json:"id"`
	Kind     string         `json:"kind"`
	State    string         `json:"state"`
	Attempts int            `json:"attempts,omitempty"`
	Exit     *int           `json:"exit,omitempty"`
	Signal   string         `json:"signal,omitempty"`
	Started  *time.Time     `json:"started,omitempty"`
	Ended    *time.Time     `json:"ended,omitempty"`
	Outputs  map[string]any `json:"outputs,omitempty"`
	Error    string         `json:"error,omitempty"`
	// Process is the token of the attempt in flight (Invocation.Token),
	// recorded before it starts and cleared when it ends.
	Process string `json:"process,omitempty"`
	// Command is the argv as run (placeholders rendered).
	Command []string `json:"command,omitempty"`
	// Gate is set for gate steps: what was decided and when.
	Gate *GateRecord `json:"gate,omitempty"`
	// Isolation is what the last attempt ran under.
	Isolation *Isolation `json:"isolation,omitempty"`
	// Secrets are the secrets the last attempt received: metadata only.
	Secrets []SecretUse `json:"secrets,omitempty"`
}

// Isolation is what an executor applied to one attempt of a step.
type Isolation struct {
	// Namespaces the step ran in ("user", "net", "mount"); empty when it
	// ran unisolated.
	Namespaces []string `json:"namespaces"`
	// Network is the network the step had: "none", "allowlist", or "host"
	// when it was not isolated.
	Network string `json:"network"`
	// Allowlist is the destinations it could reach (mode allowlist).
	Allowlist []string `json:"allowlist,omitempty"`
	// Limits are the pack's limits and how each was enforced.
	Limits []LimitRecord `json:"limits,omitempty"`
	// Blocked counts the destinations refused to the step.
	Blocked int `json:"blocked,omitempty"`
}

// How a limit was enforced (LimitRecord.Enforced).
const (
	EnforcedCgroupV2 = "cgroup-v2"
	EnforcedCgroupV1 = "cgroup-v1"
	EnforcedRlimit   = "rlimit"
	EnforcedRunner   = "runner" // the runner stops the step (timeouts)
	EnforcedNone     = "none"   // this host could not enforce it
)

// LimitRecord is one limit of sandbox.limits and how it was enforced.
type LimitRecord struct {
	Name     string `json:"name"` // cpu, memoryMiB, pids, timeout
	Value    string `json:"value"`
	Enforced string `json:"enforced"`
	Note     string `json:"note,omitempty"`
}

// SecretUse is what is recorded of a secret a step received: never its
// value nor any part of it.
type SecretUse struct {
	Name     string `json:"name"`
	Scope    string `json:"scope"`
	Source   string `json:"source"`
	Delivery string `json:"delivery"` // file or env
}

// GateRecord is what an approval or policy gate decided.
type GateRecord struct {
	Approval string     `json:"approval,omitempty"`
	State    string     `json:"state"` // waiting, approved, rejected, expired, passed, denied
	Approved int        `json:"approved,omitempty"`
	Required int        `json:"required,omitempty"`
	Since    *time.Time `json:"since,omitempty"` // when the run started waiting
	Deadline *time.Time `json:"deadline,omitempty"`
	Message  string     `json:"message,omitempty"`
}

// Event is one entry of a run's timeline.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	StepID  string    `json:"stepId,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Message string    `json:"message,omitempty"`
}

// Timeline event types.
const (
	EventRunStarted      = "pack.run.started"
	EventRunResumed      = "pack.run.resumed"
	EventRunSucceeded    = "pack.run.succeeded"
	EventRunFailed       = "pack.run.failed"
	EventRunCancelled    = "pack.run.cancelled"
	EventRunExpired      = "pack.run.expired"
	EventRunParked       = "pack.run.awaiting-approval"
	EventStepStarted     = "pack.run.step.started"
	EventStepRetrying    = "pack.run.step.retrying"
	EventStepSucceeded   = "pack.run.step.succeeded"
	EventStepFailed      = "pack.run.step.failed"
	EventStepErrored     = "pack.run.step.errored"
	EventStepSkipped     = "pack.run.step.skipped"
	EventStepCancelled   = "pack.run.step.cancelled"
	EventGateWaiting     = "pack.run.gate.waiting"
	EventGateApproved    = "pack.run.gate.approved"
	EventGateRejected    = "pack.run.gate.rejected"
	EventGateExpired     = "pack.run.gate.expired"
	EventGatePolicyPass  = "pack.run.gate.passed"
	EventGatePolicyDeny  = "pack.run.gate.denied"
	EventRunnerLost      = "pack.run.step.runner-lost"
	EventRunExpandedStep = "pack.run.step.expanded"
	EventNetworkBlocked  = "pack.run.step.network-blocked"
)

// Failure is why a run stopped short of success.
type Failure struct {
	Code    string   `json:"code"` // the sentinel's name: step-failed, step-errored, gate-rejected...
	StepID  string   `json:"stepId,omitempty"`
	Message string   `json:"message"`
	Exit    *int     `json:"exit,omitempty"`
	LogTail []string `json:"logTail,omitempty"`
}

// Runner identifies the process that drives a run.
type Runner struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// Unisolated is the Isolation of a step run without any (the operator's
// explicit --insecure-skip-isolation): the host's network, and of the
// pack's limits only the timeout, which the runner enforces.
func Unisolated(sb pack.Sandbox) *Isolation {
	iso := &Isolation{Namespaces: []string{}, Network: "host"}
	l := sb.Limits
	add := func(name, value, how, note string) {
		iso.Limits = append(iso.Limits, LimitRecord{Name: name, Value: value, Enforced: how, Note: note})
	}
	const note = "not enforced: steps run without isolation"
	if l.CPU > 0 {
		add("cpu", fmt.Sprint(l.CPU), EnforcedNone, note)
	}
	if l.MemoryMiB > 0 {
		add("memoryMiB", fmt.Sprint(l.MemoryMiB), EnforcedNone, note)
	}
	if l.Pids > 0 {
		add("pids", fmt.Sprint(l.Pids), EnforcedNone, note)
	}
	if l.Timeout > 0 {
		add("timeout", l.Timeout.String(), EnforcedRunner, "")
	}
	return iso
}
