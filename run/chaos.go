package run

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
)

// Chaos faults: failures injected on purpose to rehearse the runbook's
// scenarios (`stella pack run --chaos KIND=ARG`). Each is explicit, stored
// in the run's record (Record.Chaos) and recorded, when it fires, as a
// pack.chaos.injected timeline event, which evidence carries.
const (
	// ChaosPauseAfter pauses the run after the step succeeds (state
	// paused); `runs resume` continues it.
	ChaosPauseAfter = "pause-after"
	// ChaosFail fails the step without running its command.
	ChaosFail = "fail"
	// ChaosDropNetwork runs the step with no network at all (mode none),
	// whatever the pack's allowlist.
	ChaosDropNetwork = "drop-network"
	// ChaosDelayApprovals holds every approval gate waiting for the
	// duration after the run reached it, approved or not.
	ChaosDelayApprovals = "delay-approvals"
	// ChaosKillAfter kills the runner after the step succeeded and was
	// saved: the run is left running with no runner, as after a crash.
	ChaosKillAfter = "kill-after"
)

// EventChaosInjected is the timeline event of a fault that fired.
const EventChaosInjected = "pack.chaos.injected"

// EventRunPaused: the run stopped after a step on purpose (chaos).
const EventRunPaused = "pack.run.paused"

// ErrChaosSpec: a chaos fault is not one stella knows, or misses its
// step or duration.
var ErrChaosSpec = errors.New("invalid chaos fault")

// Fault is one chaos fault of a run. Step faults fire once per run: a
// resumed run does not pause, fail, cut off or kill again at the same step
// (Fired says it did). delay-approvals holds gates every time the run
// reaches them until its delay passed.
type Fault struct {
	Kind string `json:"kind"`
	// Step is the step id the fault applies to (all kinds but
	// delay-approvals).
	Step string `json:"step,omitempty"`
	// Delay is delay-approvals' duration (a Go duration).
	Delay string `json:"delay,omitempty"`
	// Fired counts how many times it was injected.
	Fired int `json:"fired,omitempty"`
}

// String is the fault as given on the command line: KIND=ARG.
func (f Fault) String() string {
	if f.Kind == ChaosDelayApprovals {
		return f.Kind + "=" + f.Delay
	}
	return f.Kind + "=" + f.Step
}

// ParseFault reads KIND=ARG: pause-after=STEP, fail=STEP,
// drop-network=STEP, kill-after=STEP or delay-approvals=DURATION.
func ParseFault(s string) (Fault, error) {
	kind, arg, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok || arg == "" {
		return Fault{}, fmt.Errorf("chaos fault %q: want KIND=STEP or delay-approvals=DURATION: %w", s, ErrChaosSpec)
	}
	switch kind {
	case ChaosPauseAfter, ChaosFail, ChaosDropNetwork, ChaosKillAfter:
		return Fault{Kind: kind, Step: arg}, nil
	case ChaosDelayApprovals:
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return Fault{}, fmt.Errorf("chaos fault %q: %q is not a positive duration: %w", s, arg, ErrChaosSpec)
		}
		return Fault{Kind: kind, Delay: d.String()}, nil
	}
	return Fault{}, fmt.Errorf("chaos fault %q: unknown kind %q (pause-after, fail, drop-network, delay-approvals, kill-after): %w", s, kind, ErrChaosSpec)
}

// CheckFaults refuses faults naming a step the plan does not have: a
// step's id, an iteration's (each[0]::touch) or its template's (touch,
// which fires at the first iteration reaching it).
func CheckFaults(pl *plan.Plan, faults []Fault) error {
	ids := map[string]bool{}
	var walk func(steps []plan.Step)
	walk = func(steps []plan.Step) {
		for i := range steps {
			s := &steps[i]
			ids[s.ID] = true
			if j := strings.LastIndex(s.ID, "::"); j >= 0 {
				ids[s.ID[j+2:]] = true
			}
			walk(s.Children)
			walk(s.Template)
			for _, b := range s.Branches {
				walk(b.Steps)
			}
			walk(s.Else)
		}
	}
	walk(pl.Steps)
	for _, f := range faults {
		if f.Kind == ChaosDelayApprovals {
			continue
		}
		if !ids[f.Step] {
			return fmt.Errorf("chaos fault %s: the plan has no step %q: %w", f, f.Step, ErrChaosSpec)
		}
	}
	return nil
}

// fault returns the unfired step fault of kind for step s (named by its
// id, or for an iteration by its template's id: the first iteration to get
// there); d.mu must be held.
func (d *driver) fault(kind string, s *plan.Step) *Fault {
	for i := range d.rec.Chaos {
		f := &d.rec.Chaos[i]
		if f.Kind == kind && f.Fired == 0 && (f.Step == s.ID || strings.HasSuffix(s.ID, "::"+f.Step)) {
			return f
		}
	}
	return nil
}

// inject marks f fired and records it in the timeline; d.mu must be held.
func (d *driver) inject(f *Fault, step, msg string) {
	f.Fired++
	d.event(EventChaosInjected, step, 0, f.String()+": "+msg)
}

// chaosBefore applies the faults that act before step s runs: fail.
func (d *driver) chaosBefore(ctx context.Context, s *plan.Step) error {
	d.mu.Lock()
	f := d.fault(ChaosFail, s)
	d.mu.Unlock()
	if f == nil {
		return nil
	}
	err := fmt.Errorf("step %s: failure injected by chaos (%s): %w", s.ID, f, ErrStepFailed)
	uerr := d.update(ctx, func(r *Record) {
		d.inject(f, s.ID, "the step fails without running")
		sr := d.stepRecord(s)
		now := d.now()
		sr.State, sr.Ended, sr.Error = Failed, &now, err.Error()
		d.event(EventStepFailed, s.ID, sr.Attempts, err.Error())
		if r.Failure == nil && !s.ContinueOnError {
			r.Failure = &Failure{StepID: s.ID, Code: "step-failed"}
		}
	})
	return errors.Join(err, uerr)
}

// errPaused: the run paused after a step (chaos pause-after).
var errPaused = errors.New("run paused by chaos")

// chaosAfter applies the faults that act after step s succeeded:
// pause-after (the run stops, paused) and kill-after (the fault is saved
// fired, then Engine.Kill ends the runner).
func (d *driver) chaosAfter(ctx context.Context, s *plan.Step) error {
	d.mu.Lock()
	pause, kill := d.fault(ChaosPauseAfter, s), d.fault(ChaosKillAfter, s)
	d.mu.Unlock()
	if kill != nil {
		if err := d.update(ctx, func(r *Record) { d.inject(kill, s.ID, "the runner is killed") }); err != nil {
			return err
		}
		if d.e.Kill != nil {
			d.e.Kill()
		}
	}
	if pause != nil {
		if err := d.update(ctx, func(r *Record) { d.inject(pause, s.ID, "the run pauses") }); err != nil {
			return err
		}
		return fmt.Errorf("run %s after step %s: %w", d.rec.ID, s.ID, errPaused)
	}
	return nil
}

// chaosNetwork returns the sandbox step s runs under: with drop-network,
// mode none (the fault fires at the step's first attempt).
func (d *driver) chaosNetwork(s *plan.Step, sb pack.Sandbox) pack.Sandbox {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.fault(ChaosDropNetwork, s)
	if f == nil {
		if d.dropped[s.ID] { // retries of the attempt it fired at stay cut off
			sb.Network = pack.Network{Mode: pack.NetworkNone}
		}
		return sb
	}
	d.inject(f, s.ID, "the step runs with no network")
	if d.dropped == nil {
		d.dropped = map[string]bool{}
	}
	d.dropped[s.ID] = true
	sb.Network = pack.Network{Mode: pack.NetworkNone}
	return sb
}

// chaosGate says whether delay-approvals holds a gate the run reached at
// since; the first hold of each gate is recorded.
func (d *driver) chaosGate(s *plan.Step, since time.Time) (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.rec.Chaos {
		f := &d.rec.Chaos[i]
		if f.Kind != ChaosDelayApprovals {
			continue
		}
		delay, err := time.ParseDuration(f.Delay)
		if err != nil {
			continue
		}
		until := since.Add(delay)
		if !d.now().Before(until) {
			continue
		}
		sr := d.rec.Steps[s.ID]
		if sr == nil || sr.Gate == nil || sr.Gate.State != GateWaiting {
			d.inject(f, s.ID, "approvals held until "+until.Format(time.RFC3339))
		}
		return true, "held by chaos " + f.String() + " until " + until.Format(time.RFC3339)
	}
	return false, ""
}
