package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
)

// script is a fake executor: argv[0] says what the "command" does.
//
//	ok                      exit 0
//	fail N                  exit N
//	flaky K                 exit 1 for the first K attempts, then 0
//	out name=value...       write outputs, exit 0
//	sleep D                 wait D (or until cancelled: then killed)
//	nostart                 cannot start
type script struct {
	store    *memStore // if set, what was durable when each command started is noted in seen
	seen     []string
	mu       sync.Mutex
	ran      []string // step ids in start order
	active   atomic.Int32
	peak     atomic.Int32
	attempts map[string]int
}

func (x *script) Execute(ctx context.Context, inv Invocation) Exit {
	x.mu.Lock()
	x.ran = append(x.ran, inv.StepID)
	if x.attempts == nil {
		x.attempts = map[string]int{}
	}
	x.attempts[inv.StepID]++
	n := x.attempts[inv.StepID]
	if x.store != nil {
		x.store.mu.Lock()
		var saved Record
		_ = json.Unmarshal(x.store.saved, &saved)
		x.store.mu.Unlock()
		x.seen = append(x.seen, inv.StepID+":"+saved.Steps[inv.StepID].State)
		if inv.StepID == "b" {
			x.seen = append(x.seen, "a:"+saved.Steps["a"].State)
		}
	}
	x.mu.Unlock()
	cur := x.active.Add(1)
	defer x.active.Add(-1)
	for {
		p := x.peak.Load()
		if cur <= p || x.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	fmt.Fprintf(inv.Stdout, "%s running %s\n", inv.StepID, strings.Join(inv.Command, " "))
	args := inv.Command[1:]
	switch inv.Command[0] {
	case "ok":
		return Exit{}
	case "fail":
		code, _ := strconv.Atoi(args[0])
		fmt.Fprintf(inv.Stderr, "boom %d\n", code)
		return Exit{Code: code}
	case "flaky":
		k, _ := strconv.Atoi(args[0])
		if n <= k {
			return Exit{Code: 1}
		}
		return Exit{}
	case "out":
		f, err := os.OpenFile(inv.Env[OutputEnv], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return Exit{Code: -1, Err: err}
		}
		defer f.Close()
		for _, a := range args {
			fmt.Fprintln(f, a)
		}
		return Exit{}
	case "sleep":
		d, _ := time.ParseDuration(args[0])
		select {
		case <-time.After(d):
			return Exit{}
		case <-ctx.Done():
			return Exit{Code: -1, Signal: "terminated"}
		}
	case "nostart":
		return Exit{Code: -1, Err: errors.New("no such file")}
	}
	return Exit{Code: -1, Err: fmt.Errorf("unknown script %q", inv.Command[0])}
}

// memStore keeps the last saved record, as JSON, like a durable store would.
type memStore struct {
	mu    sync.Mutex
	saved []byte
	saves int
}

func (m *memStore) Save(_ context.Context, rec *Record, _ Delta) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved, m.saves = b, m.saves+1
	return nil
}

func (m *memStore) load(t *testing.T) *Record {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var r Record
	if err := json.Unmarshal(m.saved, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// gates answers approval checks from a map gate id → state.
type gates struct {
	mu    sync.Mutex
	state map[string]string
}

func (g *gates) Check(_ context.Context, _ *Record, a plan.Approval, _ time.Time) (GateStatus, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.state[a.Gate]
	if st == "" {
		st = GateWaiting
	}
	approved := 0
	if st == GateApproved {
		approved = a.MinApprovers
	}
	return GateStatus{State: st, Approved: approved, Required: a.MinApprovers}, nil
}

// fixture plans a pack whose spec is the YAML given (after "spec:").
type fixture struct {
	t     *testing.T
	pl    *plan.Plan
	m     *pack.Manifest
	exec  *script
	store *memStore
	gates *gates
	lines []Line
	waits []time.Duration
	eng   *Engine
}

func newFixture(t *testing.T, spec string, inputs map[string]any) *fixture {
	t.Helper()
	y := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: demo\n  version: 1.0.0\n  description: engine test\nspec:\n" + spec
	p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(y)}})
	if err != nil {
		t.Fatalf("pack: %v\n%s", err, y)
	}
	pl, err := plan.Build(p, digest.Digest("sha256:"+strings.Repeat("0", 64)), inputs)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, pl: pl, m: p.Manifest, exec: &script{}, store: &memStore{}, gates: &gates{state: map[string]string{}}}
	f.eng = &Engine{
		Executor: f.exec, Store: f.store, Gates: f.gates,
		Expand:  func(s *plan.Step, items []any) (*plan.Expansion, error) { return pl.Expand(f.m, s, items) },
		Log:     func(l Line) { l.Msg = strings.Clone(l.Msg); f.lines = append(f.lines, l) },
		Work:    t.TempDir(),
		Outputs: t.TempDir(),
		Sleep: func(_ context.Context, d time.Duration) error {
			f.waits = append(f.waits, d)
			return nil
		},
	}
	return f
}

func (f *fixture) drive(rec *Record) (*Record, error) {
	f.t.Helper()
	if rec == nil {
		rec = &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack}
	}
	err := f.eng.Drive(context.Background(), f.pl, rec)
	return f.store.load(f.t), err
}

func states(r *Record) map[string]string {
	out := map[string]string{}
	for id, s := range r.Steps {
		out[id] = s.State
	}
	return out
}

func wantStates(t *testing.T, r *Record, want map[string]string) {
	t.Helper()
	got := states(r)
	for id, st := range want {
		if got[id] != st {
			t.Errorf("step %s: state %q, want %q (all: %v)", id, got[id], st, got)
		}
	}
}

func TestSequentialRunSucceeds(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: a
      run: {command: [ok]}
    - id: b
      run: {command: [ok]}
`, nil)
	f.exec.store = f.store
	r, err := f.drive(nil)
	if err != nil || r.State != Succeeded {
		t.Fatalf("state %s, err %v", r.State, err)
	}
	wantStates(t, r, map[string]string{"a": Succeeded, "b": Succeeded})
	if strings.Join(f.exec.ran, ",") != "a,b" {
		t.Errorf("ran %v", f.exec.ran)
	}
	var types []string
	for _, e := range r.Timeline {
		types = append(types, e.Type)
	}
	want := []string{EventRunStarted, EventStepStarted, EventStepSucceeded, EventStepStarted, EventStepSucceeded, EventRunSucceeded}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("timeline %v, want %v", types, want)
	}
	if len(f.lines) != 2 || f.lines[0].StepID != "a" || f.lines[0].Stream != "stdout" || f.lines[0].PackID != "demo:1.0.0" || f.lines[0].Msg != "a running ok" {
		t.Errorf("log lines: %+v", f.lines)
	}
	// Durable before every action: when each command started, the saved
	// record said it was running and the step before it had succeeded.
	if fmt.Sprint(f.exec.seen) != "[a:running b:running a:succeeded]" {
		t.Errorf("saved states seen by the commands: %v", f.exec.seen)
	}
}

func TestFailurePolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spec      string
		wantState string
		wantErr   error
		steps     map[string]string
		ran       string
		waits     int
	}{
		{"failed step stops the run", `  steps:
    - id: a
      run: {command: [fail, "3"]}
    - id: b
      run: {command: [ok]}
`, Failed, ErrStepFailed, map[string]string{"a": Failed, "b": ""}, "a", 0},
		{"continueOnError goes on", `  steps:
    - id: a
      continueOnError: true
      run: {command: [fail, "3"]}
    - id: b
      run: {command: [ok]}
`, Succeeded, nil, map[string]string{"a": Failed, "b": Succeeded}, "a,b", 0},
		{"retries until it succeeds", `  failure: {retries: 2, backoff: {initial: 1s, multiplier: 3}}
  steps:
    - id: a
      run: {command: [flaky, "2"]}
`, Succeeded, nil, map[string]string{"a": Succeeded}, "a,a,a", 2},
		{"retries run out", `  failure: {retries: 1}
  steps:
    - id: a
      run: {command: [fail, "2"]}
`, Failed, ErrStepFailed, map[string]string{"a": Failed}, "a,a", 1},
		{"could not start is errored", `  steps:
    - id: a
      run: {command: [nostart]}
`, Failed, ErrStepErrored, map[string]string{"a": StepErrored}, "a", 0},
		{"timeout is errored", `  steps:
    - id: a
      timeout: 50ms
      run: {command: [sleep, 10s]}
`, Failed, ErrStepErrored, map[string]string{"a": StepErrored}, "a", 0},
		{"undeclared output is errored", `  steps:
    - id: a
      run: {command: [out, "x=1"], outputs: [y]}
`, Failed, ErrStepErrored, map[string]string{"a": StepErrored}, "a", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.spec, nil)
			r, err := f.drive(nil)
			if r.State != tc.wantState || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("state %s err %v, want %s %v", r.State, err, tc.wantState, tc.wantErr)
			}
			got := states(r)
			for id, st := range tc.steps {
				if got[id] != st {
					t.Errorf("step %s: %q, want %q", id, got[id], st)
				}
			}
			if strings.Join(f.exec.ran, ",") != tc.ran {
				t.Errorf("ran %v, want %s", f.exec.ran, tc.ran)
			}
			if len(f.waits) != tc.waits {
				t.Errorf("waited %v, want %d waits", f.waits, tc.waits)
			}
			if tc.wantState == Failed {
				if r.Failure == nil || r.Failure.StepID != "a" {
					t.Fatalf("failure must name the step: %+v", r.Failure)
				}
				if tc.wantErr == ErrStepFailed && (r.Failure.Exit == nil || *r.Failure.Exit == 0 || len(r.Failure.LogTail) == 0) {
					t.Errorf("a failed step's failure keeps its exit status and last lines: %+v", r.Failure)
				}
			}
		})
	}
}

func TestRetryBackoffFollowsThePack(t *testing.T) {
	f := newFixture(t, `  failure: {retries: 3, backoff: {initial: 2s, multiplier: 3, max: 10s}}
  steps:
    - id: a
      run: {command: [flaky, "3"]}
`, nil)
	f.eng.Backoff = func(b pack.Backoff, attempt int) time.Duration {
		p := PolicyOf(b)
		p.Jitter = 0
		return p.Delay(attempt)
	}
	if r, err := f.drive(nil); err != nil || r.Steps["a"].Attempts != 4 {
		t.Fatalf("%v %+v", err, r.Steps["a"])
	}
	want := []time.Duration{2 * time.Second, 6 * time.Second, 10 * time.Second}
	if fmt.Sprint(f.waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", f.waits, want)
	}
}

func TestParallelHonoursMaxParallel(t *testing.T) {
	var steps strings.Builder
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&steps, "          - id: s%d\n            run: {command: [sleep, 30ms]}\n", i)
	}
	f := newFixture(t, "  steps:\n    - id: p\n      parallel:\n        maxParallel: 3\n        steps:\n"+steps.String(), nil)
	r, err := f.drive(nil)
	if err != nil || r.State != Succeeded {
		t.Fatal(r.State, err)
	}
	if p := f.exec.peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
	wantStates(t, r, map[string]string{"p": Succeeded, "s0": Succeeded, "s7": Succeeded})
}

func TestOutputsFlowIntoLaterSteps(t *testing.T) {
	f := newFixture(t, `  outputs:
    - name: count
      from: steps.list.outputs.count
  steps:
    - id: list
      run:
        command: [out, 'hosts=["h1","h2","h3"]', "count=3", "note<<EOF", "two", "lines", "EOF"]
        outputs: [hosts, count, note]
    - id: use
      when: steps.list.outputs.count > `+"`2`"+`
      run: {command: [ok, "${{ steps.list.outputs.note }}"]}
    - id: each
      map:
        items: steps.list.outputs.hosts
        maxParallel: 2
        steps:
          - id: patch
            run: {command: [ok, "${{ item }}", "${{ index }}"]}
    - id: skipped
      when: steps.list.outputs.count > `+"`5`"+`
      run: {command: [ok]}
`, nil)
	r, err := f.drive(nil)
	if err != nil || r.State != Succeeded {
		t.Fatal(r.State, err)
	}
	if got := r.Steps["list"].Outputs; fmt.Sprint(got["hosts"]) != "[h1 h2 h3]" || got["count"] != float64(3) || got["note"] != "two\nlines" {
		t.Errorf("outputs: %#v", got)
	}
	if got := strings.Join(r.Steps["use"].Command, " "); got != "ok two\nlines" {
		t.Errorf("use ran %q", got)
	}
	for i, h := range []string{"h1", "h2", "h3"} {
		id := fmt.Sprintf("each[%d]::patch", i)
		sr := r.Steps[id]
		if sr == nil || sr.State != Succeeded || strings.Join(sr.Command, " ") != fmt.Sprintf("ok %s %d", h, i) {
			t.Errorf("%s: %+v", id, sr)
		}
	}
	if len(r.Expansions["each"].Steps) != 3 {
		t.Errorf("the expansion is recorded: %+v", r.Expansions)
	}
	wantStates(t, r, map[string]string{"skipped": StepSkipped})
	if r.Outputs["count"] != float64(3) {
		t.Errorf("run outputs: %v", r.Outputs)
	}
}

func TestGates(t *testing.T) {
	spec := `  approvals:
    - id: board
      role: Packs.Approve
  steps:
    - id: before
      run: {command: [ok]}
    - id: check
      gate:
        policy:
          expr: inputs.ok
          message: inputs say no
    - id: approve
      gate: {approval: board}
    - id: after
      run: {command: [ok]}
`
	t.Run("policy false stops the run", func(t *testing.T) {
		f := newFixture(t, spec, map[string]any{"ok": false})
		r, err := f.drive(nil)
		if !errors.Is(err, ErrPolicyDenied) || r.State != Failed || !strings.Contains(err.Error(), "inputs say no") || r.Failure.StepID != "check" {
			t.Fatalf("%s %v %+v", r.State, err, r.Failure)
		}
	})
	t.Run("waiting parks, approved resumes without rerunning", func(t *testing.T) {
		f := newFixture(t, spec, map[string]any{"ok": true})
		r, err := f.drive(nil)
		if err != nil || r.State != AwaitingApproval {
			t.Fatalf("%s %v", r.State, err)
		}
		wantStates(t, r, map[string]string{"before": Succeeded, "check": Succeeded, "approve": AwaitingApproval})
		if r.Steps["after"] != nil {
			t.Fatalf("after must not have started: %+v", r.Steps["after"])
		}
		// Still waiting: parks again, nothing reruns.
		r, err = f.drive(r)
		if err != nil || r.State != AwaitingApproval || strings.Join(f.exec.ran, ",") != "before" {
			t.Fatalf("%s %v %v", r.State, err, f.exec.ran)
		}
		f.gates.state["approve"] = GateApproved
		r, err = f.drive(r)
		if err != nil || r.State != Succeeded {
			t.Fatalf("%s %v", r.State, err)
		}
		if strings.Join(f.exec.ran, ",") != "before,after" {
			t.Errorf("ran %v: a succeeded step ran again", f.exec.ran)
		}
		var waiting int
		for _, e := range r.Timeline {
			if e.Type == EventGateWaiting {
				waiting++
			}
		}
		if waiting != 1 {
			t.Errorf("gate waiting events: %d", waiting)
		}
	})
	for state, want := range map[string]struct {
		run string
		err error
	}{GateRejected: {Failed, ErrGateRejected}, GateExpired: {Expired, ErrApprovalTimeout}} {
		t.Run(state, func(t *testing.T) {
			f := newFixture(t, spec, map[string]any{"ok": true})
			f.gates.state["approve"] = state
			r, err := f.drive(nil)
			if !errors.Is(err, want.err) || r.State != want.run || r.Steps["after"] != nil {
				t.Fatalf("%s %v", r.State, err)
			}
		})
	}
}

func TestConditional(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: probe
      run: {command: [out, "mode=b"], outputs: [mode]}
    - id: choose
      conditional:
        branches:
          - when: steps.probe.outputs.mode == 'a'
            steps:
              - id: on-a
                run: {command: [ok]}
          - when: steps.probe.outputs.mode == 'b'
            steps:
              - id: on-b
                run: {command: [ok]}
        else:
          - id: otherwise
            run: {command: [ok]}
`, nil)
	r, err := f.drive(nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, r, map[string]string{"on-a": StepSkipped, "on-b": Succeeded, "otherwise": StepSkipped, "choose": Succeeded})
}

func TestResumeAfterRunnerLost(t *testing.T) {
	spec := `  failure: {retries: 1}
  steps:
    - id: a
      run: {command: [ok]}
    - id: b
      run: {command: [ok]}
    - id: c
      run: {command: [ok]}
`
	f := newFixture(t, spec, nil)
	r, err := f.drive(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Make the record look like the runner died while b ran its first attempt.
	r.State = Running
	r.Steps["b"].State, r.Steps["b"].Attempts = Running, 1
	r.Steps["c"].State, r.Steps["c"].Attempts = StepPending, 0
	f.exec.ran = nil
	r, err = f.drive(r)
	if err != nil || r.State != Succeeded {
		t.Fatalf("%s %v", r.State, err)
	}
	if strings.Join(f.exec.ran, ",") != "b,c" || r.Steps["b"].Attempts != 2 {
		t.Errorf("ran %v, b attempts %d", f.exec.ran, r.Steps["b"].Attempts)
	}
	lost := false
	for _, e := range r.Timeline {
		lost = lost || (e.Type == EventRunnerLost && e.StepID == "b")
	}
	if !lost {
		t.Error("the lost runner is in the timeline")
	}

	// Without retries left, a runner-lost step fails the run …
	f = newFixture(t, strings.Replace(spec, "retries: 1", "retries: 0", 1), nil)
	r, _ = f.drive(nil)
	r.State = Running
	r.Steps["b"].State, r.Steps["b"].Attempts = Running, 1
	r.Steps["c"].State, r.Steps["c"].Attempts = StepPending, 0
	f.exec.ran = nil
	r, err = f.drive(r)
	if !errors.Is(err, ErrStepErrored) || r.State != Failed || len(f.exec.ran) != 0 || !strings.Contains(err.Error(), "runner lost") {
		t.Fatalf("%s %v %v", r.State, err, f.exec.ran)
	}
	// … and resuming the failed run is the operator's decision to try again.
	r, err = f.drive(r)
	if err != nil || r.State != Succeeded || strings.Join(f.exec.ran, ",") != "b,c" {
		t.Fatalf("%s %v %v", r.State, err, f.exec.ran)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: long
      run: {command: [sleep, 10s]}
    - id: next
      run: {command: [ok]}
`, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for f.exec.active.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	rec := &Record{ID: "run:default:c", Tenant: "default"}
	err := f.eng.Drive(ctx, f.pl, rec)
	r := f.store.load(t)
	if !errors.Is(err, ErrCancelled) || r.State != Cancelled || r.Steps["long"].State != Cancelled || r.Steps["next"] != nil {
		t.Fatalf("%s %v %+v", r.State, err, states(r))
	}
}

func TestParseOutputs(t *testing.T) {
	got, err := ParseOutputs([]byte("a=1\nb=text with = sign\nc<<X\nl1\nl2\nX\nd={\"k\":[1,2]}\na=2\n"), []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[a:2 b:text with = sign c:l1\nl2 d:map[k:[1 2]]]" {
		t.Errorf("%#v", got)
	}
	for _, bad := range []string{"nope", "x=1", "c<<X\nunclosed", "=1", "c<<\n"} {
		if _, err := ParseOutputs([]byte(bad), []string{"a", "c"}); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// TestContinueOnErrorOwnsNoFailure: a step allowed to fail leaves no failure
// on a run that succeeds, and does not take the failure of a run that a
// later step fails.
func TestContinueOnErrorOwnsNoFailure(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: soft
      continueOnError: true
      run: {command: [fail, "4"]}
    - id: ok
      run: {command: [ok]}
`, nil)
	r, err := f.drive(nil)
	if err != nil || r.State != Succeeded || r.Failure != nil {
		t.Fatalf("%s %v %+v", r.State, err, r.Failure)
	}
	f = newFixture(t, `  steps:
    - id: soft
      continueOnError: true
      run: {command: [fail, "4"]}
    - id: hard
      timeout: 20ms
      run: {command: [sleep, 5s]}
`, nil)
	r, err = f.drive(nil)
	if !errors.Is(err, ErrStepErrored) || r.Failure == nil || r.Failure.StepID != "hard" || r.Failure.Code != "step-errored" || (r.Failure.Exit != nil && *r.Failure.Exit == 4) {
		t.Fatalf("%v %+v", err, r.Failure)
	}
}

// TestLazyEndIsSavedWithinTheWindow: the end of an attempt that no other
// save follows (a sibling still runs) is durable within lazyWindow.
func TestLazyEndIsSavedWithinTheWindow(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: p
      parallel:
        steps:
          - id: quick
            run: {command: [ok]}
          - id: slow
            run: {command: [sleep, 400ms]}
`, nil)
	go func() {
		time.Sleep(200 * time.Millisecond)
		r := f.store.load(t)
		if r.Steps["quick"] == nil || r.Steps["quick"].State != Succeeded || r.Steps["slow"].State != Running {
			t.Errorf("while slow runs, quick's end must be durable: %v", states(r))
		}
	}()
	if r, err := f.drive(nil); err != nil || r.State != Succeeded {
		t.Fatal(r.State, err)
	}
}

// serialCheck passes each invocation to a script after noting whether the
// step's output writers are maskers that read serially.
type serialCheck struct {
	*script
	serial []bool
}

func (c *serialCheck) Execute(ctx context.Context, inv Invocation) Exit {
	for _, w := range []io.Writer{inv.Stdout, inv.Stderr} {
		m, ok := w.(*redact.Writer)
		c.serial = append(c.serial, ok && m.Serial)
	}
	return c.script.Execute(ctx, inv)
}

// TestStepOutputMaskedSerially: a step's stdout and stderr reach the
// executor as maskers that read in turn with masking (the step holds a
// core already; a read-ahead goroutine cost CPU it needs), and what they
// mask still reaches the log.
func TestStepOutputMaskedSerially(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: a
      run: {command: [fail, "3"]}
`, nil)
	check := &serialCheck{script: f.exec}
	f.eng.Executor = check
	r, _ := f.drive(nil)
	wantStates(t, r, map[string]string{"a": Failed})
	if fmt.Sprint(check.serial) != "[true true]" {
		t.Errorf("stdout, stderr serial maskers: %v, want [true true]", check.serial)
	}
	var got []string
	for _, l := range f.lines {
		if l.StepID == "a" {
			got = append(got, l.Stream+":"+l.Msg)
		}
	}
	if want := "[stdout:a running fail 3 stderr:boom 3]"; fmt.Sprint(got) != want {
		t.Errorf("log lines %v, want %v", got, want)
	}
}
