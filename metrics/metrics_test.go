package metrics_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"stellaops.io/stella/metrics"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// fakeRuns is a Source of records held in memory; gets counts Get calls.
type fakeRuns struct {
	recs []*run.Record
	gets int
}

func (f *fakeRuns) List(_ context.Context, _ runs.Filter) ([]*run.Record, error) {
	var out []*run.Record
	for _, r := range f.recs {
		h := *r
		h.Steps, h.Timeline = nil, nil
		out = append(out, &h)
	}
	return out, nil
}

func (f *fakeRuns) Get(_ context.Context, id string) (*run.Record, error) {
	f.gets++
	for _, r := range f.recs {
		if r.ID == id {
			return r, nil
		}
	}
	return nil, runs.ErrNotFound
}

var t0 = time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)

func at(s int) *time.Time { t := t0.Add(time.Duration(s) * time.Second); return &t }

func ev(typ string) run.Event { return run.Event{Time: t0, Type: typ} }

func fixture() *fakeRuns {
	pk := plan.PackRef{Name: "rotate-creds", Version: "0.1.0"}
	return &fakeRuns{recs: []*run.Record{
		{ID: "run:default:1", Tenant: "default", Pack: pk, State: run.Succeeded, Updated: t0,
			Steps: map[string]*run.StepRecord{
				"a": {ID: "a", Kind: "run", State: run.Succeeded, Started: at(0), Ended: at(2)},
				"b": {ID: "b", Kind: "run", State: run.StepSkipped, Started: at(0), Ended: at(0)},
				"approve": {ID: "approve", Kind: "gate.approval", State: run.Succeeded, Started: at(2), Ended: at(602),
					Gate: &run.GateRecord{Approval: "board", State: run.GateApproved, Since: at(2)}},
			},
			// Failed once, resumed, then succeeded: two end events.
			Timeline: []run.Event{ev(run.EventRunStarted), ev(run.EventRunFailed), ev(run.EventRunResumed), ev(run.EventNetworkBlocked), ev(run.EventRunSucceeded)}},
		{ID: "run:default:2", Tenant: "default", Pack: pk, State: run.Failed, Updated: t0,
			Steps:    map[string]*run.StepRecord{"a": {ID: "a", Kind: "run", State: run.Failed, Started: at(0), Ended: at(40)}},
			Timeline: []run.Event{ev(run.EventNetworkBlocked), ev(run.EventNetworkBlocked), ev(run.EventRunFailed)}},
		{ID: "run:default:3", Tenant: "default", Pack: pk, State: run.Running, Updated: t0,
			Steps: map[string]*run.StepRecord{"a": {ID: "a", Kind: "run", State: run.Running, Started: at(0)}}},
		{ID: "run:blue:4", Tenant: "blue", Pack: pk, State: run.AwaitingApproval, Updated: t0,
			Steps: map[string]*run.StepRecord{"approve": {ID: "approve", Kind: "gate.approval", State: run.AwaitingApproval, Started: at(10),
				Gate: &run.GateRecord{Approval: "board", State: run.GateWaiting, Since: at(10)}}}},
	}}
}

const want = `# HELP pack_egress_denied_total Network destinations refused to steps.
# TYPE pack_egress_denied_total counter
pack_egress_denied_total{pack="rotate-creds",tenant="blue"} 0
pack_egress_denied_total{pack="rotate-creds",tenant="default"} 3
# HELP pack_gate_wait_seconds Time approval gates waited, from when the run reached the gate to its decision.
# TYPE pack_gate_wait_seconds histogram
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="60"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="300"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="900"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="1800"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="3600"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="14400"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="43200"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="86400"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="blue",le="+Inf"} 0
pack_gate_wait_seconds_sum{pack="rotate-creds",tenant="blue"} 0
pack_gate_wait_seconds_count{pack="rotate-creds",tenant="blue"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="60"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="300"} 0
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="900"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="1800"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="3600"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="14400"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="43200"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="86400"} 1
pack_gate_wait_seconds_bucket{pack="rotate-creds",tenant="default",le="+Inf"} 1
pack_gate_wait_seconds_sum{pack="rotate-creds",tenant="default"} 600
pack_gate_wait_seconds_count{pack="rotate-creds",tenant="default"} 1
# HELP pack_gate_waiting_seconds How long the oldest approval gate still waiting has waited so far.
# TYPE pack_gate_waiting_seconds gauge
pack_gate_waiting_seconds{pack="rotate-creds",tenant="blue"} 2390
pack_gate_waiting_seconds{pack="rotate-creds",tenant="default"} 0
# HELP pack_run_active Runs in state running or paused.
# TYPE pack_run_active gauge
pack_run_active{pack="rotate-creds",tenant="blue"} 0
pack_run_active{pack="rotate-creds",tenant="default"} 1
# HELP pack_run_success_ratio Runs that ended succeeded, over runs that ended (0 to 1), by each run's current state.
# TYPE pack_run_success_ratio gauge
pack_run_success_ratio{pack="rotate-creds",tenant="default"} 0.5
# HELP pack_runs_total Run end events in the timelines of the runs kept on this host, by result.
# TYPE pack_runs_total counter
pack_runs_total{pack="rotate-creds",result="cancelled",tenant="blue"} 0
pack_runs_total{pack="rotate-creds",result="expired",tenant="blue"} 0
pack_runs_total{pack="rotate-creds",result="failed",tenant="blue"} 0
pack_runs_total{pack="rotate-creds",result="succeeded",tenant="blue"} 0
pack_runs_total{pack="rotate-creds",result="cancelled",tenant="default"} 0
pack_runs_total{pack="rotate-creds",result="expired",tenant="default"} 0
pack_runs_total{pack="rotate-creds",result="failed",tenant="default"} 2
pack_runs_total{pack="rotate-creds",result="succeeded",tenant="default"} 1
# HELP pack_step_duration_seconds Duration of steps that ended, from their first start to their end, by step kind.
# TYPE pack_step_duration_seconds histogram
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="0.1"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="0.5"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="1"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="5"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="10"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="30"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="60"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="300"} 0
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="900"} 1
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="1800"} 1
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="3600"} 1
pack_step_duration_seconds_bucket{kind="gate.approval",pack="rotate-creds",tenant="default",le="+Inf"} 1
pack_step_duration_seconds_sum{kind="gate.approval",pack="rotate-creds",tenant="default"} 600
pack_step_duration_seconds_count{kind="gate.approval",pack="rotate-creds",tenant="default"} 1
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="0.1"} 0
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="0.5"} 0
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="1"} 0
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="5"} 1
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="10"} 1
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="30"} 1
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="60"} 2
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="300"} 2
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="900"} 2
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="1800"} 2
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="3600"} 2
pack_step_duration_seconds_bucket{kind="run",pack="rotate-creds",tenant="default",le="+Inf"} 2
pack_step_duration_seconds_sum{kind="run",pack="rotate-creds",tenant="default"} 42
pack_step_duration_seconds_count{kind="run",pack="rotate-creds",tenant="default"} 2
`

// TestCollect: the metrics a fixture of runs gives, as Prometheus reads
// them (skipped steps not timed, waiting gates not in the histogram,
// every end event counted, the ratio by current state).
func TestCollect(t *testing.T) {
	src := fixture()
	reg := metrics.NewRegistry(src, func() time.Time { return t0.Add(2400 * time.Second) })
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// Ended runs are read once while their summary does not change; the
	// running and parked ones at every gathering.
	if src.gets != 4 {
		t.Fatalf("first gathering read %d records, want 4", src.gets)
	}
	if _, err := metrics.Text(reg); err != nil {
		t.Fatal(err)
	}
	if src.gets != 6 {
		t.Fatalf("after a second gathering %d records were read, want 6", src.gets)
	}
}

// TestTextfile: the textfile holds the metrics, is replaced whole,
// leaves no temp file, and must end in .prom; promtool accepts it.
func TestTextfile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stella.prom")
	reg := metrics.NewRegistry(fixture(), func() time.Time { return t0.Add(2400 * time.Second) })
	if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := metrics.WriteTextfile(reg, p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	text, err := metrics.Text(reg)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(text), string(b)); d != "" {
		t.Fatalf("textfile (-want +got):\n%s", d)
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("textfile lacks %q", line)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("folder holds %d files, want only stella.prom", len(ents))
	}
	if err := metrics.WriteTextfile(reg, filepath.Join(dir, "stella.txt")); err == nil || !strings.Contains(err.Error(), ".prom") {
		t.Fatalf("a name without .prom: err = %v", err)
	}
	promtool := RequireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(b))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestListFails: runs that cannot be listed make gathering fail with the
// cause, rather than report zeros.
func TestListFails(t *testing.T) {
	reg := metrics.NewRegistry(failing{}, nil)
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "index gone") {
		t.Fatalf("err = %v, want the listing's error", err)
	}
}

type failing struct{}

func (failing) List(context.Context, runs.Filter) ([]*run.Record, error) {
	return nil, errors.New("index gone")
}
func (failing) Get(context.Context, string) (*run.Record, error) {
	return nil, errors.New("index gone")
}

// RequireTool returns the path of a tool the tests need: installed by
// .ci/run, so its absence fails under CI and skips, saying so, elsewhere.
func RequireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("STELLA_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is not installed (.ci/run installs Debian's prometheus package)", name)
		}
		t.Skipf("%s is not installed: apt-get install prometheus (CI installs it and fails without it)", name)
	}
	return p
}
