package run

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"stellaops.io/stella/pack"
)

// netScript records the network each attempt ran under.
type netScript struct {
	*script
	modes map[string]string
}

func (n *netScript) Execute(ctx context.Context, inv Invocation) Exit {
	n.modes[inv.StepID] = inv.Sandbox.Network.Mode
	return n.script.Execute(ctx, inv)
}

const chaosSpec = `  sandbox:
    network: {mode: allowlist, allowlist: ["registry.example:443"]}
  approvals:
    - id: board
      role: Packs.Approve
      expiresAfter: 1h
  steps:
    - id: a
      run: {command: [ok]}
    - id: b
      run: {command: [ok]}
    - id: gate
      gate: {approval: board}
    - id: c
      run: {command: [ok]}
`

func chaosEvents(r *Record) []string {
	var out []string
	for _, e := range r.Timeline {
		if e.Type == EventChaosInjected {
			out = append(out, e.StepID+" "+strings.SplitN(e.Message, ":", 2)[0])
		}
	}
	return out
}

func TestChaosPauseAfterResumes(t *testing.T) {
	f := newFixture(t, chaosSpec, nil)
	f.gates.state["gate"] = GateApproved
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: []Fault{{Kind: ChaosPauseAfter, Step: "a"}}}
	r, err := f.drive(rec)
	if err != nil || r.State != Paused {
		t.Fatalf("state %s, err %v; want paused", r.State, err)
	}
	wantStates(t, r, map[string]string{"a": Succeeded})
	if _, ok := r.Steps["b"]; ok {
		t.Errorf("step b was reached in a run paused after a")
	}
	if got := strings.Join(chaosEvents(r), ","); got != "a pause-after=a" {
		t.Errorf("chaos events %q", got)
	}
	// Resumed, it goes on and does not pause again.
	r2, err := f.drive(r)
	if err != nil || r2.State != Succeeded {
		t.Fatalf("resumed: state %s, err %v", r2.State, err)
	}
	if strings.Join(f.exec.ran, ",") != "a,b,c" || r2.Chaos[0].Fired != 1 {
		t.Errorf("ran %v, fired %d", f.exec.ran, r2.Chaos[0].Fired)
	}
}

func TestChaosFailOnce(t *testing.T) {
	f := newFixture(t, chaosSpec, nil)
	f.gates.state["gate"] = GateApproved
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: []Fault{{Kind: ChaosFail, Step: "b"}}}
	r, err := f.drive(rec)
	if !errors.Is(err, ErrStepFailed) || r.State != Failed || r.Failure == nil || r.Failure.StepID != "b" {
		t.Fatalf("state %s, failure %+v, err %v", r.State, r.Failure, err)
	}
	if strings.Join(f.exec.ran, ",") != "a" {
		t.Errorf("ran %v: b's command must not run", f.exec.ran)
	}
	if got := strings.Join(chaosEvents(r), ","); got != "b fail=b" {
		t.Errorf("chaos events %q", got)
	}
	r2, err := f.drive(r)
	if err != nil || r2.State != Succeeded {
		t.Fatalf("resumed: state %s, err %v", r2.State, err)
	}
}

func TestChaosKillAfterIsSavedFirst(t *testing.T) {
	f := newFixture(t, chaosSpec, nil)
	f.gates.state["gate"] = GateApproved
	var atKill *Record
	f.eng.Kill = func() { atKill = f.store.load(t); panic("killed") }
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: []Fault{{Kind: ChaosKillAfter, Step: "a"}}}
	func() {
		defer func() { _ = recover() }()
		_ = f.eng.Drive(context.Background(), f.pl, rec)
	}()
	if atKill == nil || atKill.State != Running || atKill.Chaos[0].Fired != 1 || atKill.Steps["a"].State != Succeeded {
		t.Fatalf("saved at kill: %+v", atKill)
	}
	// The resumed run does not kill again.
	f.eng.Kill = func() { t.Fatal("killed again after resume") }
	r, err := f.drive(atKill)
	if err != nil || r.State != Succeeded || strings.Join(f.exec.ran, ",") != "a,b,c" {
		t.Fatalf("state %s, err %v, ran %v", r.State, err, f.exec.ran)
	}
}

func TestChaosDropNetwork(t *testing.T) {
	f := newFixture(t, chaosSpec, nil)
	f.gates.state["gate"] = GateApproved
	ns := &netScript{script: f.exec, modes: map[string]string{}}
	f.eng.Executor = ns
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: []Fault{{Kind: ChaosDropNetwork, Step: "b"}}}
	r, err := f.drive(rec)
	if err != nil || r.State != Succeeded {
		t.Fatalf("state %s, err %v", r.State, err)
	}
	if ns.modes["a"] != pack.NetworkAllowlist || ns.modes["b"] != pack.NetworkNone || ns.modes["c"] != pack.NetworkAllowlist {
		t.Errorf("network modes %v", ns.modes)
	}
	if got := strings.Join(chaosEvents(r), ","); got != "b drop-network=b" {
		t.Errorf("chaos events %q", got)
	}
}

func TestChaosDelayApprovals(t *testing.T) {
	f := newFixture(t, chaosSpec, nil)
	f.gates.state["gate"] = GateApproved
	now := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	f.eng.Now = func() time.Time { return now }
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: []Fault{{Kind: ChaosDelayApprovals, Delay: "10m0s"}}}
	r, err := f.drive(rec)
	if err != nil || r.State != AwaitingApproval {
		t.Fatalf("state %s, err %v; want awaiting-approval though approved", r.State, err)
	}
	now = now.Add(5 * time.Minute)
	if r, err = f.drive(r); err != nil || r.State != AwaitingApproval {
		t.Fatalf("after 5m: state %s, err %v", r.State, err)
	}
	if got := strings.Join(chaosEvents(r), ","); got != "gate delay-approvals=10m0s" {
		t.Errorf("chaos events %q (one per gate)", got)
	}
	now = now.Add(6 * time.Minute)
	if r, err = f.drive(r); err != nil || r.State != Succeeded {
		t.Fatalf("after 11m: state %s, err %v", r.State, err)
	}
}

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "pause-after=a", want: "pause-after=a"},
		{in: "delay-approvals=90s", want: "delay-approvals=1m30s"},
		{in: "kill-after=each[0]::touch", want: "kill-after=each[0]::touch"},
		{in: "explode=a", bad: true},
		{in: "fail", bad: true},
		{in: "delay-approvals=soon", bad: true},
		{in: "delay-approvals=-1s", bad: true},
	} {
		f, err := ParseFault(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrChaosSpec) {
				t.Errorf("%q: err %v, want ErrChaosSpec", tc.in, err)
			}
			continue
		}
		if err != nil || f.String() != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.in, f, err, tc.want)
		}
	}
}

// A fault naming a deferred map's template step fires at the first
// iteration reaching it, once.
func TestChaosTemplateStep(t *testing.T) {
	f := newFixture(t, `  steps:
    - id: discover
      run: {command: [out, 'hosts=["h1","h2"]'], outputs: [hosts]}
    - id: each
      map:
        items: steps.discover.outputs.hosts
        steps:
          - id: touch
            run: {command: [ok]}
`, nil)
	faults := []Fault{{Kind: ChaosPauseAfter, Step: "touch"}}
	if err := CheckFaults(f.pl, faults); err != nil {
		t.Fatal(err)
	}
	if err := CheckFaults(f.pl, []Fault{{Kind: ChaosFail, Step: "nothere"}}); !errors.Is(err, ErrChaosSpec) {
		t.Fatalf("unknown step: %v", err)
	}
	rec := &Record{ID: "run:default:test", Tenant: "default", Pack: f.pl.Pack, Chaos: faults}
	r, err := f.drive(rec)
	if err != nil || r.State != Paused {
		t.Fatalf("state %s, err %v", r.State, err)
	}
	ev := chaosEvents(r)
	if len(ev) != 1 || !strings.HasSuffix(strings.Fields(ev[0])[0], "::touch") {
		t.Errorf("chaos events %q", ev)
	}
	if r, err = f.drive(r); err != nil || r.State != Succeeded {
		t.Fatalf("resumed: state %s, err %v", r.State, err)
	}
}
