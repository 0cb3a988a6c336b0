package traces_test

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/traces"
)

var t0 = time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func record(events ...run.Event) *run.Record {
	return &run.Record{ID: "run:default:01", Tenant: "default", Pack: plan.PackRef{Name: "demo", Version: "1.0.0"},
		PlanHash: "sha256:0000000000000000000000000000000000000000000000000000000000000000", Created: t0,
		Steps: map[string]*run.StepRecord{
			"build":   {ID: "build", Kind: "run"},
			"approve": {ID: "approve", Kind: "gate.approval"},
			"deploy":  {ID: "deploy", Kind: "run"},
		},
		Timeline: events}
}

// short is what a test compares: name, parent (run or ""), times, the
// step attributes and the status.
type short struct {
	Name, Parent, Step, Attempt, State, Error string
	Start, End                                int
}

func shorten(rec *run.Record, spans []traces.Span) []short {
	var out []short
	runSpan := ""
	for _, s := range spans {
		if s.Name == traces.RunSpan {
			runSpan = s.SpanID
		}
	}
	for _, s := range spans {
		v := short{Name: s.Name, Error: s.Error, Start: int(s.Start.Sub(t0) / time.Second), End: int(s.End.Sub(t0) / time.Second)}
		if s.ParentID != "" {
			v.Parent = "run"
			if runSpan != "" && s.ParentID != runSpan {
				v.Parent = "other " + s.ParentID
			}
		}
		if s.TraceID != traces.TraceID(rec.ID) {
			v.Parent += " (other trace)"
		}
		for _, a := range s.Attrs {
			switch a.Key {
			case traces.AttrStepID:
				v.Step = a.Value
			case traces.AttrAttempt:
				v.Attempt = a.Value
			case traces.AttrState:
				v.State = a.Value
			}
		}
		out = append(out, v)
	}
	return out
}

func TestSpansOfATimeline(t *testing.T) {
	rec := record(
		run.Event{Time: at(0), Type: run.EventRunStarted},
		run.Event{Time: at(1), Type: run.EventStepStarted, StepID: "build", Attempt: 1},
		run.Event{Time: at(2), Type: run.EventStepFailed, StepID: "build", Attempt: 1},
		run.Event{Time: at(2), Type: run.EventStepRetrying, StepID: "build", Attempt: 1},
		run.Event{Time: at(3), Type: run.EventStepStarted, StepID: "build", Attempt: 2},
		run.Event{Time: at(5), Type: run.EventStepSucceeded, StepID: "build", Attempt: 2},
		run.Event{Time: at(6), Type: run.EventGateWaiting, StepID: "approve"},
		run.Event{Time: at(6), Type: run.EventRunParked},
		// Another process resumes the run once approved.
		run.Event{Time: at(100), Type: run.EventRunResumed},
		run.Event{Time: at(100), Type: run.EventGateApproved, StepID: "approve"},
		run.Event{Time: at(101), Type: run.EventStepStarted, StepID: "deploy", Attempt: 1},
		run.Event{Time: at(104), Type: run.EventStepSucceeded, StepID: "deploy", Attempt: 1},
		run.Event{Time: at(104), Type: run.EventRunSucceeded},
	)
	got := shorten(rec, traces.Of(rec))
	want := []short{
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "1", State: "failed", Error: "failed", Start: 1, End: 2},
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "2", State: "succeeded", Start: 3, End: 5},
		{Name: traces.GateSpan, Parent: "run", Step: "approve", State: "approved", Start: 6, End: 100},
		{Name: traces.StepSpan, Parent: "run", Step: "deploy", Attempt: "1", State: "succeeded", Start: 101, End: 104},
		{Name: traces.RunSpan, State: "succeeded", Start: 0, End: 104},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("spans (-want +got):\n%s", d)
	}

	// Same timeline, same spans: ids included, whoever computes them.
	again := traces.Of(record(rec.Timeline...))
	if d := cmp.Diff(traces.Of(rec), again); d != "" {
		t.Fatalf("not deterministic:\n%s", d)
	}
	// Fed event by event (a live run) gives the same spans as the whole
	// timeline (a later command).
	tr := traces.NewTracker(rec)
	var live []traces.Span
	for _, e := range rec.Timeline {
		kind := ""
		if sr := rec.Steps[e.StepID]; sr != nil {
			kind = sr.Kind
		}
		live = append(live, tr.Add(e, kind, rec.PlanHash.String())...)
	}
	if d := cmp.Diff(again, live); d != "" {
		t.Fatalf("live spans differ:\n%s", d)
	}
	// Every id is distinct, and the trace is the run's.
	seen := map[string]bool{}
	for _, s := range again {
		if seen[s.SpanID] || len(s.SpanID) != 16 || len(s.TraceID) != 32 {
			t.Fatalf("span id %q repeated or malformed", s.SpanID)
		}
		seen[s.SpanID] = true
	}
	if traces.TraceID(rec.ID) == traces.TraceID("run:default:02") {
		t.Fatal("two runs share a trace id")
	}
}

func TestSpansOfRunsThatStopShort(t *testing.T) {
	// A runner killed in a step: the resumed run records it lost, then runs
	// it again. A run cancelled while parked ends its gate wait.
	rec := record(
		run.Event{Time: at(0), Type: run.EventRunStarted},
		run.Event{Time: at(1), Type: run.EventStepStarted, StepID: "build", Attempt: 1},
		run.Event{Time: at(50), Type: run.EventRunnerLost, StepID: "build", Attempt: 1},
		run.Event{Time: at(50), Type: run.EventRunResumed},
		run.Event{Time: at(51), Type: run.EventStepStarted, StepID: "build", Attempt: 2},
		run.Event{Time: at(52), Type: run.EventStepSucceeded, StepID: "build", Attempt: 2},
		run.Event{Time: at(53), Type: run.EventGateWaiting, StepID: "approve"},
		run.Event{Time: at(53), Type: run.EventRunParked},
		run.Event{Time: at(90), Type: run.EventRunCancelled, Message: "cancelled with no live runner"},
	)
	got := shorten(rec, traces.Of(rec))
	want := []short{
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "1", State: "runner-lost", Error: "runner-lost", Start: 1, End: 50},
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "2", State: "succeeded", Start: 51, End: 52},
		{Name: traces.GateSpan, Parent: "run", Step: "approve", State: "ended with the run", Error: "ended with the run", Start: 53, End: 90},
		{Name: traces.RunSpan, State: "cancelled", Error: "cancelled", Start: 0, End: 90},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("spans (-want +got):\n%s", d)
	}

	// A failed run resumed to success: one run span (the first end), and
	// the new attempt joins the same trace under it.
	rec = record(
		run.Event{Time: at(0), Type: run.EventRunStarted},
		run.Event{Time: at(1), Type: run.EventStepStarted, StepID: "build", Attempt: 1},
		run.Event{Time: at(2), Type: run.EventStepFailed, StepID: "build", Attempt: 1},
		run.Event{Time: at(2), Type: run.EventRunFailed},
		run.Event{Time: at(10), Type: run.EventRunResumed},
		run.Event{Time: at(11), Type: run.EventStepStarted, StepID: "build", Attempt: 2},
		run.Event{Time: at(12), Type: run.EventStepSucceeded, StepID: "build", Attempt: 2},
		run.Event{Time: at(12), Type: run.EventRunSucceeded},
	)
	got = shorten(rec, traces.Of(rec))
	want = []short{
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "1", State: "failed", Error: "failed", Start: 1, End: 2},
		{Name: traces.RunSpan, State: "failed", Error: "failed", Start: 0, End: 2},
		{Name: traces.StepSpan, Parent: "run", Step: "build", Attempt: "2", State: "succeeded", Start: 11, End: 12},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("spans (-want +got):\n%s", d)
	}
}

func TestSpansCarryNoFreeText(t *testing.T) {
	rec := record(
		run.Event{Time: at(0), Type: run.EventRunStarted},
		run.Event{Time: at(1), Type: run.EventStepStarted, StepID: "build", Attempt: 1},
		run.Event{Time: at(2), Type: run.EventStepFailed, StepID: "build", Attempt: 1, Message: "exit 1: canary-s3cr3t"},
		run.Event{Time: at(2), Type: run.EventRunFailed, Message: "step build: canary-s3cr3t"},
	)
	rec.Inputs = map[string]any{"token": "canary-s3cr3t"}
	rec.Failure = &run.Failure{Code: "step-failed", Message: "canary-s3cr3t"}
	for _, s := range traces.Of(rec) {
		for _, a := range s.Attrs {
			switch a.Key {
			case traces.AttrRunID, traces.AttrPackID, traces.AttrTenant, traces.AttrStepID, traces.AttrPlanHash,
				traces.AttrKind, traces.AttrAttempt, traces.AttrState:
			default:
				t.Errorf("span %s: attribute %s is not one of the documented keys", s.Name, a.Key)
			}
			if a.Value == "canary-s3cr3t" || len(a.Value) > 100 {
				t.Errorf("span %s: attribute %s=%q", s.Name, a.Key, a.Value)
			}
		}
		if s.Error != "" && s.Error != "failed" {
			t.Errorf("span %s: error %q is not a state", s.Name, s.Error)
		}
	}
}

func TestSentFile(t *testing.T) {
	dir := t.TempDir()
	sent, err := traces.ReadSent(dir)
	if err != nil || len(sent) != 0 {
		t.Fatalf("empty folder: %v %v", sent, err)
	}
	if err := traces.RecordSent(dir, map[string]bool{"bb": true, "aa": true, "cc": false}); err != nil {
		t.Fatal(err)
	}
	if err := traces.RecordSent(dir, map[string]bool{"aa": true, "dd": true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/" + traces.SentFile)
	if err != nil || string(b) != "aa\nbb\ndd\n" {
		t.Fatalf("sent file %q %v", b, err)
	}
	spans := []traces.Span{{SpanID: "aa"}, {SpanID: "cc"}, {SpanID: "dd"}, {SpanID: "ee"}}
	sent, _ = traces.ReadSent(dir)
	if d := cmp.Diff([]traces.Span{{SpanID: "cc"}, {SpanID: "ee"}}, traces.Pending(spans, sent)); d != "" {
		t.Fatal(d)
	}
}
