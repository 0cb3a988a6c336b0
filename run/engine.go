package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
)

var (
	// ErrStepFailed: a step's command exited non-zero (and its retries, if
	// any, did too).
	ErrStepFailed = errors.New("step failed")
	// ErrStepErrored: a step could not start, timed out, or lost its runner
	// (and its retries, if any, did too).
	ErrStepErrored = errors.New("step errored")
	// ErrPolicyDenied: a gate.policy expression was false.
	ErrPolicyDenied = errors.New("policy gate denied the run")
	// ErrGateRejected: an approver rejected an approval gate.
	ErrGateRejected = errors.New("approval gate rejected")
	// ErrApprovalTimeout: an approval gate's window passed while the run
	// waited.
	ErrApprovalTimeout = errors.New("approval gate expired")
	// ErrCancelled: the run was cancelled.
	ErrCancelled = errors.New("run cancelled")
	// ErrRunTimeout: the run exceeded sandbox.limits.timeout.
	ErrRunTimeout = errors.New("run timed out")
	// ErrSandboxUnavailable: steps cannot be isolated on this host (network
	// namespace, limits), and nothing allowed running them without.
	ErrSandboxUnavailable = errors.New("step isolation is not available")
	// ErrIsolationRequired: running steps unisolated was asked for where
	// the policy forbids it (sealed mode).
	ErrIsolationRequired = errors.New("sealed mode runs steps only isolated")
	// ErrExpression: a when, items, policy or placeholder expression could
	// not be evaluated at run time.
	ErrExpression = errors.New("expression failed at run time")
	// ErrSecretUndelivered: a secret a step receives could not be
	// resolved or delivered when the step was about to start (it wraps
	// the cause: a missing secret, a refused source, a value too short to
	// mask). The step does not start and is not retried.
	ErrSecretUndelivered = errors.New("secret not delivered")
	// ErrLimit: a sandbox limit stopped a step (it also wraps
	// ErrStepFailed).
	ErrLimit = errors.New("step stopped by a sandbox limit")
)

// errParked: the run reached an approval gate that is not satisfied yet.
var errParked = errors.New("run parked at an approval gate")

// Executor runs one command and waits for it.
type Executor interface {
	// Execute starts inv.Command (argv as given, no shell) in inv.Dir with
	// exactly inv.Env added to the executor's base environment, streams its
	// output to inv.Stdout and inv.Stderr, and waits. When ctx ends, the
	// command's whole process group is stopped (TERM, then KILL after a
	// grace period). It returns how the command ended; Exit.Err is set when
	// it could not be started at all.
	Execute(ctx context.Context, inv Invocation) Exit
}

// Invocation is one attempt of one run step.
type Invocation struct {
	RunID   string
	StepID  string
	Attempt int
	Command []string
	Env     map[string]string
	Dir     string
	Secrets []string // names the step receives (delivered as files in SecretDir or in Env)
	// SecretDir is this attempt's private folder of secret files (0700,
	// files 0600), or "" when the step receives none. An isolating
	// executor makes it the only folder of secrets the step can see.
	SecretDir string
	// Sandbox is the pack's isolation policy (network, limits).
	Sandbox pack.Sandbox
	// Blocked is called for each network destination the step tried and
	// the isolation refused (host:port or name), from any goroutine.
	Blocked func(dest, reason string)
	Stdout  io.Writer
	Stderr  io.Writer
	// Token marks every process of this attempt (the executor puts it in
	// their environment as TokenEnv), so a later Reap finds them even when
	// the runner died before it learned their process ids.
	Token string
}

// TokenEnv is the environment variable that carries Invocation.Token.
const TokenEnv = "STELLA_PROCESS_TOKEN"

// Reaper is implemented by executors that can stop what a dead runner left
// running: a resumed run reaps every step found running before anything
// else happens.
type Reaper interface {
	// Reap stops every process that carries token; it is not an error
	// when there is none.
	Reap(token string) error
}

// Exit is how a command ended.
type Exit struct {
	Code   int    // exit status; -1 when killed by a signal or never started
	Signal string // the signal that ended it, if any
	Err    error  // could not start (or wait): the step errored
	// Limit names the sandbox limit that stopped the command ("memoryMiB",
	// "pids", "cpu"), when the executor knows one did.
	Limit string
	// Isolation is what the executor applied to the command (nil: none).
	Isolation *Isolation
}

// Store makes a run record durable.
type Store interface {
	// Save records rec, of which only what d names changed since the last
	// Save (besides the record's own fields other than Steps, Timeline and
	// Expansions, which are always current); it returns once rec as a
	// whole is durable. The cost of a Save is that of d, not of rec.
	Save(ctx context.Context, rec *Record, d Delta) error
}

// Delta is what changed in a record since its last Save.
type Delta struct {
	Steps      []*StepRecord             // changed or new steps, whole
	Events     []Event                   // timeline events appended
	Expansions map[string]plan.Expansion // deferred steps expanded
}

// Gate states reported by Gates.
const (
	GateWaiting  = "waiting"
	GateApproved = "approved"
	GateRejected = "rejected"
	GateExpired  = "expired"
)

// GateStatus is an approval gate's state at one moment.
type GateStatus struct {
	State    string
	Approved int
	Required int
	Deadline *time.Time
	Message  string
}

// Gates answers whether an approval gate of a run is satisfied.
type Gates interface {
	// Check returns the gate's state for the run's tenant and plan hash;
	// since is when the run started waiting at it.
	Check(ctx context.Context, rec *Record, gate plan.Approval, since time.Time) (GateStatus, error)
}

// Line is one line of a run's log.
type Line struct {
	Time   time.Time `json:"time"`
	RunID  string    `json:"runId"`
	PackID string    `json:"packId"`
	Tenant string    `json:"tenant"`
	StepID string    `json:"stepId,omitempty"`
	Stream string    `json:"stream"` // stdout, stderr, or stella (the runner's own lines)
	Msg    string    `json:"msg"`
	// Data is set, and Msg empty, in a stored log whose text is kept
	// apart (runs.Log keeps a long record's bytes raw in the run's data
	// file): where to read it.
	Data *DataRef `json:"data,omitempty"`
}

// DataRef is where a stored log record's text is: Length bytes at Offset
// of the run's log data file.
type DataRef struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// Engine drives runs. Its fields are set once; one Engine may drive one run
// at a time.
type Engine struct {
	Executor Executor
	Store    Store
	Gates    Gates
	// Expand expands a deferred map or loop over its items with the plan's
	// own code (plan.Plan.Expand with the pack's manifest).
	Expand func(s *plan.Step, items []any) (*plan.Expansion, error)
	// Log receives every log record (already framed and masked), never
	// concurrently. A record's Msg may share memory the engine reuses: it
	// is valid during the call only (strings.Clone it to keep it).
	Log func(Line)
	// Work is the run's private work folder holding the pack's files; steps
	// run in it (or in their workdir inside it).
	Work string
	// Outputs is a private folder for the steps' $STELLA_OUTPUT files.
	Outputs string
	Now     func() time.Time
	// Sleep waits between retries (default: a timer that ctx cancels).
	Sleep func(ctx context.Context, d time.Duration) error
	// Backoff gives the wait before retry attempt (1-based) of the pack's
	// failure policy.
	Backoff func(b pack.Backoff, attempt int) time.Duration
	// LogTail is how many lines of a failed step's log its failure keeps
	// (default 20).
	LogTail int
	// Secrets resolves one secret's value when a step that receives it is
	// about to start; the error wraps secret.ErrMissing when the source
	// does not hold it (an optional secret is then left out). Nil: no
	// secret can be delivered.
	Secrets func(ctx context.Context, sec plan.Secret) ([]byte, error)
	// SecretsDir is the run's private folder under which each attempt gets
	// its own folder of secret files, destroyed when the attempt ends.
	SecretsDir string
	// Redact masks every value the run resolved in all the run writes and
	// shows; each value is added as it is resolved. Nil: the engine keeps
	// a set of its own.
	Redact *redact.Set
	// Kill ends the runner at once, as a crash would (chaos kill-after);
	// it does not return. Nil: kill-after is recorded but nothing is
	// killed.
	Kill func()
}

// driver carries one Drive.
type driver struct {
	e   *Engine
	pl  *plan.Plan
	rec *Record

	// retryFailed: the run was resumed after it ended failed, errored or
	// cancelled — the operator's decision to try again, so a step that used
	// its attempts gets a new budget. A runner-lost step of a live run does
	// not: it runs again only if its retry policy allows.
	retryFailed bool

	mu       sync.Mutex      // guards rec, the delta and Save
	dirty    map[string]bool // steps changed since the last save
	expDirty map[string]bool // expansions made since the last save
	saved    int             // timeline events already saved
	// pending: changes made by updateSoon not saved yet; flush saves them
	// within lazyWindow, and every update saves them first.
	pending bool
	flushAt *time.Timer
	done    bool // Drive returned: no more saves
	logMu   sync.Mutex
	tails   map[string]*tail
	outputs map[string]map[string]any // step id → outputs (succeeded steps)
	redact  *redact.Set
	secrets map[string]plan.Secret // by name
	dropped map[string]bool        // steps cut off the network by chaos (under mu)
}

// Drive runs pl under rec until the run ends or parks at an approval gate.
// A new record (no steps yet) starts the run; a record with steps resumes
// it: steps found running were in flight when their runner died and are
// recorded errored (runner lost), succeeded and skipped steps are passed
// over with their outputs reused, and approval gates are checked again.
// The returned error is the run's failure (ErrStepFailed, ErrGateRejected,
// ErrApprovalTimeout, ErrCancelled, ...), nil when it succeeded or parked;
// rec.State says which.
func (e *Engine) Drive(ctx context.Context, pl *plan.Plan, rec *Record) error {
	d := &driver{e: e, pl: pl, rec: rec, tails: map[string]*tail{}, outputs: map[string]map[string]any{},
		dirty: map[string]bool{}, expDirty: map[string]bool{}, saved: len(rec.Timeline), redact: e.Redact,
		secrets: map[string]plan.Secret{}}
	if d.redact == nil {
		d.redact = redact.New()
	}
	for _, sec := range pl.Secrets {
		d.secrets[sec.Name] = sec
	}
	// Secret files a killed runner left behind go before anything runs.
	if err := DestroySecrets(e.SecretsDir); err != nil {
		return fmt.Errorf("run %s: %w", rec.ID, err)
	}
	if rec.Steps == nil {
		rec.Steps = map[string]*StepRecord{}
	}
	resumed := len(rec.Timeline) > 0
	d.retryFailed = Terminal(rec.State) && rec.State != Succeeded
	d.mu.Lock()
	for _, id := range sortedIDs(rec.Steps) {
		s := rec.Steps[id]
		switch s.State {
		case Succeeded:
			d.outputs[id] = s.Outputs
		case Running, StepRetrying:
			if r, ok := e.Executor.(Reaper); ok && s.Process != "" {
				if err := r.Reap(s.Process); err != nil {
					d.mu.Unlock()
					return fmt.Errorf("step %s of run %s: stop what its lost runner left running (%s): %w", id, rec.ID, s.Process, err)
				}
			}
			s.State, s.Error, s.Process = StepErrored, "runner lost: the step was in flight when its runner stopped", ""
			d.dirty[id] = true
			now := d.now()
			s.Ended = &now
			d.event(EventRunnerLost, id, s.Attempts, s.Error)
		}
	}
	rec.State, rec.Failure, rec.Ended = Running, nil, nil
	if resumed {
		d.event(EventRunResumed, "", 0, "")
	} else {
		d.event(EventRunStarted, "", 0, "")
	}
	err := d.saveLocked(ctx)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if t, perr := parseDuration(pl.Sandbox.Limits.Timeout.String()); perr == nil && t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, t, ErrRunTimeout)
		defer cancel()
	}
	runErr := d.steps(ctx, pl.Steps, nil)
	return d.finish(ctx, runErr)
}

func (d *driver) now() time.Time {
	if d.e.Now != nil {
		return d.e.Now().UTC()
	}
	return time.Now().UTC()
}

// event appends to the timeline; d.mu must be held.
func (d *driver) event(typ, step string, attempt int, msg string) {
	d.rec.Timeline = append(d.rec.Timeline, Event{Time: d.now(), Type: typ, StepID: step, Attempt: attempt, Message: d.mask(msg)})
}

// saveLocked saves what changed in the record; d.mu must be held.
func (d *driver) saveLocked(ctx context.Context) error {
	d.rec.Updated = d.now()
	var delta Delta
	for id := range d.dirty {
		if sr := d.rec.Steps[id]; sr != nil {
			delta.Steps = append(delta.Steps, sr)
		}
	}
	sort.Slice(delta.Steps, func(i, j int) bool { return delta.Steps[i].ID < delta.Steps[j].ID })
	delta.Events = d.rec.Timeline[d.saved:]
	for id := range d.expDirty {
		if delta.Expansions == nil {
			delta.Expansions = map[string]plan.Expansion{}
		}
		delta.Expansions[id] = d.rec.Expansions[id]
	}
	// A save must happen even when ctx is cancelled: the cancellation
	// itself is a transition to record.
	if err := d.e.Store.Save(context.WithoutCancel(ctx), d.rec, delta); err != nil {
		return err
	}
	clear(d.dirty)
	clear(d.expDirty)
	d.saved = len(d.rec.Timeline)
	return nil
}

// update changes the record under the lock and saves it, with whatever
// updateSoon left pending: durable when it returns.
func (d *driver) update(ctx context.Context, change func(r *Record)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	change(d.rec)
	d.pending = false
	return d.saveLocked(ctx)
}

// lazyWindow bounds how long a change made by updateSoon may stay unsaved.
const lazyWindow = 20 * time.Millisecond

// updateSoon changes the record and saves it within lazyWindow, or sooner
// with the next update: for the end of a step's attempt, which needs to be
// durable before the next action (the next update, which precedes every
// command the engine starts), not before the engine can go on. So a
// sequence of steps costs one synced save per step, not two. A crash
// inside the window leaves the attempt recorded in flight: it is then
// treated as an attempt whose runner was lost (at-least-once, as for any
// attempt in flight), never as a finished step run twice.
func (d *driver) updateSoon(ctx context.Context, change func(r *Record)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	change(d.rec)
	d.pending = true
	if d.flushAt == nil {
		d.flushAt = time.AfterFunc(lazyWindow, func() { d.flush(ctx) })
	} else {
		d.flushAt.Reset(lazyWindow)
	}
}

// flush saves what updateSoon left pending. A failure is kept for the next
// update, which saves the same changes again and reports it.
func (d *driver) flush(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.pending || d.done {
		return
	}
	if d.saveLocked(ctx) == nil {
		d.pending = false
	}
}

// stepRecord returns the record of step s, creating it pending, and counts
// it changed; d.mu must be held.
func (d *driver) stepRecord(s *plan.Step) *StepRecord {
	d.dirty[s.ID] = true
	r, ok := d.rec.Steps[s.ID]
	if !ok {
		r = &StepRecord{ID: s.ID, Kind: s.Kind, State: StepPending}
		d.rec.Steps[s.ID] = r
	}
	return r
}

func (d *driver) finish(ctx context.Context, runErr error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Every save below includes what updateSoon left pending; after them,
	// nothing is saved any more.
	defer func() {
		d.done = true
		if d.flushAt != nil {
			d.flushAt.Stop()
		}
	}()
	now := d.now()
	// A file the pack names as an output is masked like everything else
	// the run wrote, whatever state the run ends in.
	if err := d.maskOutputFiles(); err != nil && (runErr == nil || errors.Is(runErr, errParked) || errors.Is(runErr, errPaused)) {
		runErr = err
	}
	switch {
	case runErr == nil:
		outs, err := d.runOutputs()
		if err != nil {
			runErr = err
			break
		}
		d.rec.Outputs = d.maskValue(outs).(map[string]any)
		d.rec.State = Succeeded
		d.rec.Ended = &now
		d.event(EventRunSucceeded, "", 0, "")
		return d.saveLocked(ctx)
	case errors.Is(runErr, errParked):
		d.rec.State = AwaitingApproval
		d.event(EventRunParked, "", 0, runErr.Error())
		return d.saveLocked(ctx)
	case errors.Is(runErr, errPaused):
		d.rec.State = Paused
		d.event(EventRunPaused, "", 0, runErr.Error())
		return d.saveLocked(ctx)
	}
	if ctx.Err() != nil && !errors.Is(runErr, ErrRunTimeout) && errors.Is(context.Cause(ctx), ErrRunTimeout) {
		runErr = fmt.Errorf("run %s: %w", d.rec.ID, ErrRunTimeout)
	}
	f := d.rec.Failure
	if f == nil {
		f = &Failure{}
		d.rec.Failure = f
	}
	f.Message = d.mask(runErr.Error())
	switch {
	case errors.Is(runErr, ErrCancelled):
		d.rec.State, f.Code = Cancelled, "cancelled"
		d.event(EventRunCancelled, f.StepID, 0, f.Message)
	case errors.Is(runErr, ErrApprovalTimeout):
		d.rec.State, f.Code = Expired, "approval-timeout"
		d.event(EventRunExpired, f.StepID, 0, f.Message)
	default:
		d.rec.State = Failed
		if f.Code == "" {
			f.Code = failureCode(runErr)
		}
		d.event(EventRunFailed, f.StepID, 0, f.Message)
	}
	d.rec.Ended = &now
	if err := d.saveLocked(ctx); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

func failureCode(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{{ErrSecretUndelivered, "secret"}, {ErrLimit, "limit"}, {ErrStepFailed, "step-failed"}, {ErrStepErrored, "step-errored"}, {ErrPolicyDenied, "policy-denied"},
		{ErrGateRejected, "gate-rejected"}, {ErrRunTimeout, "run-timeout"}, {ErrExpression, "expression"}} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "error"
}

// cancelled turns a cancelled context into the run's cancellation.
func (d *driver) cancelled(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrRunTimeout) {
		return fmt.Errorf("run %s exceeded its timeout %s: %w", d.rec.ID, d.pl.Sandbox.Limits.Timeout.String(), ErrRunTimeout)
	}
	return fmt.Errorf("run %s: %w", d.rec.ID, ErrCancelled)
}

// steps runs steps in order; a failing step without continueOnError stops
// the list. A parked step stops it too (later steps wait for the gate).
func (d *driver) steps(ctx context.Context, steps []plan.Step, vars map[string]any) error {
	for i := range steps {
		if ctx.Err() != nil {
			return d.cancelled(ctx)
		}
		if err := d.step(ctx, &steps[i], vars); err != nil {
			return err
		}
	}
	return nil
}

// step runs one step of any kind.
func (d *driver) step(ctx context.Context, s *plan.Step, vars map[string]any) error {
	if s.Vars != nil {
		vars = mergeVars(vars, s.Vars)
	}
	if s.Index != nil {
		vars = mergeVars(vars, map[string]any{"index": float64(*s.Index)})
	}
	d.mu.Lock()
	r := d.stepRecord(s)
	state := r.State
	d.mu.Unlock()
	if state == Succeeded || state == StepSkipped {
		return nil
	}
	skip := s.Status == plan.StatusSkipped
	if !skip && s.When != "" && s.WhenResult == nil {
		ok, err := d.decide(s.When, vars, s.ID)
		if err != nil {
			return d.stepError(ctx, s, err)
		}
		skip = !ok
	} else if s.WhenResult != nil && !*s.WhenResult {
		skip = true
	}
	if skip {
		return d.skip(ctx, s)
	}
	err := d.chaosBefore(ctx, s)
	switch {
	case err != nil:
	case s.Kind == pack.KindRun:
		err = d.runStep(ctx, s, vars)
	default:
		err = d.kind(ctx, s, vars)
	}
	if err == nil {
		err = d.chaosAfter(ctx, s)
	}
	if err != nil && s.ContinueOnError && !errors.Is(err, errParked) && !errors.Is(err, errPaused) && ctx.Err() == nil &&
		(errors.Is(err, ErrStepFailed) || errors.Is(err, ErrStepErrored)) {
		d.mu.Lock()
		d.event(EventStepFailed, s.ID, 0, "continueOnError: the run goes on")
		d.mu.Unlock()
		return nil
	}
	return err
}

// kind runs a step of any kind but run.
func (d *driver) kind(ctx context.Context, s *plan.Step, vars map[string]any) error {
	var err error
	switch s.Kind {
	case pack.KindParallel:
		err = d.container(ctx, s, func(ctx context.Context) error { return d.parallel(ctx, s.Children, s.MaxParallel, vars) })
	case pack.KindMap, pack.KindLoop:
		err = d.container(ctx, s, func(ctx context.Context) error { return d.iterate(ctx, s, vars) })
	case pack.KindConditional:
		err = d.container(ctx, s, func(ctx context.Context) error { return d.conditional(ctx, s, vars) })
	case pack.KindGatePolicy:
		err = d.policyGate(ctx, s, vars)
	case pack.KindGateApproval:
		err = d.approvalGate(ctx, s)
	default:
		err = fmt.Errorf("step %s: unknown kind %q: %w", s.ID, s.Kind, ErrStepErrored)
	}
	return err
}

// container records a step that holds others: running while they run,
// then the outcome of its children.
func (d *driver) container(ctx context.Context, s *plan.Step, body func(context.Context) error) error {
	if err := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		if sr.Started == nil {
			now := d.now()
			sr.Started = &now
		}
		sr.State = Running
	}); err != nil {
		return err
	}
	err := body(ctx)
	uerr := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		switch {
		case err == nil:
			sr.State, sr.Ended = Succeeded, &now
		case errors.Is(err, errParked):
			sr.State = AwaitingApproval
		case errors.Is(err, errPaused):
			sr.State = StepPending
		case ctx.Err() != nil || errors.Is(err, ErrCancelled):
			sr.State, sr.Ended = Cancelled, &now
		case errors.Is(err, ErrStepErrored) || errors.Is(err, ErrExpression):
			sr.State, sr.Ended, sr.Error = StepErrored, &now, d.mask(err.Error())
		default:
			sr.State, sr.Ended, sr.Error = Failed, &now, d.mask(err.Error())
		}
	})
	return errors.Join(err, uerr)
}

// skip records s and everything under it as skipped.
func (d *driver) skip(ctx context.Context, s *plan.Step) error {
	return d.update(ctx, func(r *Record) {
		var mark func(s *plan.Step)
		mark = func(s *plan.Step) {
			sr := d.stepRecord(s)
			if sr.State == Succeeded {
				return
			}
			sr.State = StepSkipped
			d.event(EventStepSkipped, s.ID, 0, "")
			for i := range s.Children {
				mark(&s.Children[i])
			}
			for bi := range s.Branches {
				for i := range s.Branches[bi].Steps {
					mark(&s.Branches[bi].Steps[i])
				}
			}
			for i := range s.Else {
				mark(&s.Else[i])
			}
		}
		mark(s)
	})
}

// stepError records a step that could not be judged: an expression failed
// on the run's values.
func (d *driver) stepError(ctx context.Context, s *plan.Step, err error) error {
	return d.stepErrored(ctx, s, ErrExpression, err)
}

// stepErrored records a step that errored before any command ran, with
// the sentinel that classes it (ErrExpression, ErrStepErrored).
func (d *driver) stepErrored(ctx context.Context, s *plan.Step, class, err error) error {
	err = fmt.Errorf("step %s: %w: %w", s.ID, class, err)
	uerr := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		sr.State, sr.Ended, sr.Error = StepErrored, &now, d.mask(err.Error())
		d.event(EventStepErrored, s.ID, sr.Attempts, err.Error())
		if r.Failure == nil && !s.ContinueOnError {
			r.Failure = &Failure{StepID: s.ID}
		}
	})
	return errors.Join(err, uerr)
}

// parallel runs steps at most max at a time (0: all at once). After a
// failure no new step starts; steps already running finish. The first
// failure is returned; a park is returned when no step failed.
func (d *driver) parallel(ctx context.Context, steps []plan.Step, max int, vars map[string]any) error {
	groups := make([][]plan.Step, len(steps))
	for i := range steps {
		groups[i] = steps[i : i+1]
	}
	return d.concurrently(ctx, groups, max, vars)
}

// concurrently runs each group's steps in order, groups side by side.
func (d *driver) concurrently(ctx context.Context, groups [][]plan.Step, max int, vars map[string]any) error {
	if max <= 0 || max > len(groups) {
		max = len(groups)
	}
	if max == 0 {
		return nil
	}
	sem := make(chan struct{}, max)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failure  error
		parked   error
		stopping bool
	)
	for _, g := range groups {
		sem <- struct{}{}
		mu.Lock()
		stop := stopping
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func(g []plan.Step) {
			defer wg.Done()
			defer func() { <-sem }()
			err := d.steps(ctx, g, vars)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
			case errors.Is(err, errParked) || errors.Is(err, errPaused):
				if parked == nil {
					parked = err
				}
			default:
				if failure == nil {
					failure = err
				}
				stopping = true
			}
		}(g)
	}
	wg.Wait()
	switch {
	case failure != nil:
		return failure
	case ctx.Err() != nil:
		return d.cancelled(ctx)
	}
	return parked
}

// iterate runs a map (iterations side by side, up to maxParallel) or a loop
// (one iteration after another). A deferred one is expanded first, with its
// items evaluated now; the expansion is recorded, so a resumed run walks
// the same iterations.
func (d *driver) iterate(ctx context.Context, s *plan.Step, vars map[string]any) error {
	children := s.Children
	if s.Deferred {
		d.mu.Lock()
		exp, ok := d.rec.Expansions[s.ID]
		d.mu.Unlock()
		if !ok {
			sc := plan.Scope{Steps: d.stepsData(s.ID), Item: vars["item"]}
			if idx, ok := vars["index"].(float64); ok {
				i := int(idx)
				sc.Index = &i
			}
			items, err := d.pl.Items(s, sc)
			if err != nil {
				return d.stepError(ctx, s, err)
			}
			if d.e.Expand == nil {
				return d.stepErrored(ctx, s, ErrStepErrored, errors.New("no expander for deferred steps"))
			}
			x, err := d.e.Expand(s, items)
			if err != nil {
				return d.stepError(ctx, s, err)
			}
			exp = *x
			if err := d.update(ctx, func(r *Record) {
				if r.Expansions == nil {
					r.Expansions = map[string]plan.Expansion{}
				}
				r.Expansions[s.ID] = exp
				d.expDirty[s.ID] = true
				d.event(EventRunExpandedStep, s.ID, 0, fmt.Sprintf("%d items", len(items)))
			}); err != nil {
				return err
			}
		}
		children = exp.Steps
	}
	// Group the flattened children by iteration.
	var groups [][]plan.Step
	last := -1
	for _, c := range children {
		idx := -1
		if c.Index != nil {
			idx = *c.Index
		}
		if len(groups) == 0 || idx != last {
			groups = append(groups, nil)
			last = idx
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], c)
	}
	if s.Kind == pack.KindLoop {
		for _, g := range groups {
			if err := d.steps(ctx, g, vars); err != nil {
				return err
			}
		}
		return nil
	}
	return d.concurrently(ctx, groups, s.MaxParallel, vars)
}

// conditional runs the first selected branch, else the else steps; the
// others are skipped.
func (d *driver) conditional(ctx context.Context, s *plan.Step, vars map[string]any) error {
	chosen := -1
	for i, b := range s.Branches {
		sel := b.Selected
		if sel == nil {
			ok, err := d.decide(b.When, vars, s.ID)
			if err != nil {
				return d.stepError(ctx, s, err)
			}
			sel = &ok
		}
		if *sel {
			chosen = i
			break
		}
	}
	for i := range s.Branches {
		if i == chosen {
			continue
		}
		for j := range s.Branches[i].Steps {
			if err := d.skip(ctx, &s.Branches[i].Steps[j]); err != nil {
				return err
			}
		}
	}
	if chosen >= 0 {
		for j := range s.Else {
			if err := d.skip(ctx, &s.Else[j]); err != nil {
				return err
			}
		}
		return d.steps(ctx, s.Branches[chosen].Steps, vars)
	}
	return d.steps(ctx, s.Else, vars)
}

// policyGate evaluates a gate.policy expression: false stops the run.
func (d *driver) policyGate(ctx context.Context, s *plan.Step, vars map[string]any) error {
	ok := false
	if s.Gate.PolicyResult != nil {
		ok = *s.Gate.PolicyResult
	} else {
		v, err := d.decide(s.Gate.Policy, vars, s.ID)
		if err != nil {
			return d.stepError(ctx, s, err)
		}
		ok = v
	}
	var err error
	if !ok {
		msg := s.Gate.Message
		if msg == "" {
			msg = s.Gate.Policy
		}
		err = fmt.Errorf("gate %s: %s: %w", s.ID, msg, ErrPolicyDenied)
	}
	uerr := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		sr.Started, sr.Ended = &now, &now
		if ok {
			sr.State, sr.Gate = Succeeded, &GateRecord{State: "passed"}
			d.event(EventGatePolicyPass, s.ID, 0, "")
			return
		}
		sr.State, sr.Error, sr.Gate = Failed, d.mask(err.Error()), &GateRecord{State: "denied", Message: s.Gate.Message}
		d.event(EventGatePolicyDeny, s.ID, 0, err.Error())
		r.Failure = &Failure{StepID: s.ID, Code: "policy-denied"}
	})
	return errors.Join(err, uerr)
}

// approvalGate consumes the decisions recorded for the gate: satisfied
// passes (checked every time the run reaches it, resumes included, since
// approvals expire), waiting parks the run, rejected fails it, and a window
// that passed expires it.
func (d *driver) approvalGate(ctx context.Context, s *plan.Step) error {
	var gate plan.Approval
	for _, a := range d.pl.Approvals {
		if a.Gate == s.ID {
			gate = a
		}
	}
	d.mu.Lock()
	for _, x := range d.rec.Expansions {
		for _, a := range x.Approvals {
			if a.Gate == s.ID {
				gate = a
			}
		}
	}
	d.mu.Unlock()
	if gate.Gate == "" {
		return d.stepErrored(ctx, s, ErrStepErrored, fmt.Errorf("gate %s is not among the plan's approvals", s.ID))
	}
	d.mu.Lock()
	sr := d.stepRecord(s)
	since := d.now()
	if sr.Gate != nil && sr.Gate.Since != nil {
		since = *sr.Gate.Since
	}
	d.mu.Unlock()
	if d.e.Gates == nil {
		return d.stepErrored(ctx, s, ErrStepErrored, errors.New("no approval source"))
	}
	st, err := d.e.Gates.Check(ctx, d.rec, gate, since)
	if err != nil {
		return err
	}
	if held, msg := d.chaosGate(s, since); held && st.State == GateApproved {
		st.State, st.Message = GateWaiting, msg
	}
	var out error
	uerr := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		g := &GateRecord{Approval: gate.Approval, State: st.State, Approved: st.Approved, Required: st.Required, Since: &since, Deadline: st.Deadline, Message: st.Message}
		prev := sr.Gate
		sr.Gate = g
		if sr.Started == nil {
			sr.Started = &since
		}
		switch st.State {
		case GateApproved:
			sr.State, sr.Ended = Succeeded, &now
			d.event(EventGateApproved, s.ID, 0, fmt.Sprintf("approved %d/%d", st.Approved, st.Required))
		case GateRejected:
			sr.State, sr.Ended, sr.Error = Failed, &now, "rejected"
			out = fmt.Errorf("gate %s of run %s: %w", s.ID, r.ID, ErrGateRejected)
			d.event(EventGateRejected, s.ID, 0, st.Message)
			r.Failure = &Failure{StepID: s.ID, Code: "gate-rejected"}
		case GateExpired:
			sr.State, sr.Ended, sr.Error = Cancelled, &now, "approval window passed"
			out = fmt.Errorf("gate %s of run %s: the approval window passed: %w", s.ID, r.ID, ErrApprovalTimeout)
			d.event(EventGateExpired, s.ID, 0, "")
			r.Failure = &Failure{StepID: s.ID, Code: "approval-timeout"}
		default:
			sr.State = AwaitingApproval
			if prev == nil || prev.State != GateWaiting {
				d.event(EventGateWaiting, s.ID, 0, fmt.Sprintf("approved %d/%d", st.Approved, st.Required))
			}
			out = fmt.Errorf("gate %s: %w", s.ID, errParked)
		}
	})
	return errors.Join(out, uerr)
}

// data is what expressions see: inputs, the outputs of succeeded steps
// (steps.<id>.outputs.<name>; inside an iteration, sibling steps also by
// their template id), item and index.
func (d *driver) data(vars map[string]any, at string) map[string]any {
	out := map[string]any{"inputs": d.pl.Inputs, "steps": d.stepsData(at)}
	for k, v := range vars {
		out[k] = v
	}
	return out
}

// stepsData is the steps root of expressions evaluated at step id at.
func (d *driver) stepsData(at string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	steps := map[string]any{}
	for id, o := range d.outputs {
		steps[id] = map[string]any{"outputs": orEmpty(o)}
	}
	if i := strings.LastIndex(at, "::"); i >= 0 {
		prefix := at[:i+2]
		for id, o := range d.outputs {
			if strings.HasPrefix(id, prefix) && !strings.Contains(id[len(prefix):], "::") {
				steps[id[len(prefix):]] = map[string]any{"outputs": orEmpty(o)}
			}
		}
	}
	return steps
}

func (d *driver) eval(src string, vars map[string]any, at string) (any, error) {
	x, err := pack.CompileExpr(src)
	if err != nil {
		return nil, err
	}
	return x.Eval(d.data(vars, at))
}

func (d *driver) decide(src string, vars map[string]any, at string) (bool, error) {
	v, err := d.eval(src, vars, at)
	if err != nil {
		return false, fmt.Errorf("%q: %w", src, err)
	}
	return pack.Truthy(v), nil
}

func (d *driver) render(src string, vars map[string]any, at string) (string, error) {
	t, err := pack.CompileTemplate(src)
	if err != nil {
		return "", err
	}
	if !t.HasPlaceholders() {
		return src, nil
	}
	return t.Render(d.data(vars, at))
}

// runOutputs evaluates spec.outputs' from expressions; d.mu is held.
func (d *driver) runOutputs() (map[string]any, error) {
	if len(d.pl.Outputs) == 0 {
		return nil, nil
	}
	steps := map[string]any{}
	for id, o := range d.outputs {
		steps[id] = map[string]any{"outputs": orEmpty(o)}
	}
	data := map[string]any{"inputs": d.pl.Inputs, "steps": steps}
	out := map[string]any{}
	for _, o := range d.pl.Outputs {
		switch {
		case o.From != "":
			x, err := pack.CompileExpr(o.From)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w: %w", o.Name, ErrExpression, err)
			}
			v, err := x.Eval(data)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w: %w", o.Name, ErrExpression, err)
			}
			out[o.Name] = v
		case o.Path != "":
			out[o.Name] = map[string]any{"path": filepath.ToSlash(o.Path)}
		}
	}
	return out, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func mergeVars(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func sortedIDs(m map[string]*StepRecord) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}
