package traces

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"time"

	"stellaops.io/stella/run"
)

// Span names, as the operations runbook queries them.
const (
	RunSpan  = "taskrunner.run"
	StepSpan = "taskrunner.step"
	GateSpan = "taskrunner.gate.wait"
)

// Span is one finished span of a run's trace. Its IDs are derived from the
// run id and the span's place in the run (step, attempt, gate wait), so
// that any process computing the spans of a run's timeline gets the same
// ones, and a collector is never sent two spans for one thing.
type Span struct {
	Name     string    `json:"name"`
	TraceID  string    `json:"traceId"`  // 32 hex digits
	SpanID   string    `json:"spanId"`   // 16 hex digits
	ParentID string    `json:"parentId"` // "" for the run span
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Attrs    []Attr    `json:"attributes"`
	// Error is the span's error status: a state or a failure code, never
	// free text (free text may quote a command's output); "" is ok.
	Error string `json:"error,omitempty"`
}

// Attr is one attribute of a span. Values are run metadata only: ids,
// kinds, states and counts, never an input, an output or a message.
type Attr struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Attribute keys.
const (
	AttrRunID    = "runId"
	AttrPackID   = "packId"
	AttrTenant   = "tenant"
	AttrStepID   = "stepId"
	AttrPlanHash = "planHash"
	AttrKind     = "stepKind"
	AttrAttempt  = "attempt"
	AttrState    = "state"
	AttrGate     = "approvals"
)

// TraceID is the trace of run id: the first 16 bytes of
// sha256("stella.trace/" + id), in hex.
func TraceID(runID string) string {
	sum := sha256.Sum256([]byte("stella.trace/" + runID))
	return hex.EncodeToString(sum[:16])
}

// spanID is the span of what (e.g. "run", "step/ID/2") in run id's trace.
func spanID(runID, what string) string {
	sum := sha256.Sum256([]byte("stella.span/" + runID + "/" + what))
	return hex.EncodeToString(sum[:8])
}

// Tracker turns a run's timeline into spans, event by event: Add returns
// the spans an event ends. Events must come in timeline order; a tracker
// fed a whole timeline, in one go or as it grows, gives the same spans.
type Tracker struct {
	traceID, runSpan string
	base             []Attr
	created          time.Time
	steps            map[string]opened // step id + "/" + attempt
	gates            map[string]opened // gate step id
	gateWaits        map[string]int    // gate step id → waits opened so far
	runEnded         bool
}

type opened struct {
	id    string
	start time.Time
	attrs []Attr
}

// NewTracker starts the spans of rec (its id, pack, tenant and creation
// time; its timeline is not read: feed it with Add).
func NewTracker(rec *run.Record) *Tracker {
	return &Tracker{
		traceID: TraceID(rec.ID),
		runSpan: spanID(rec.ID, "run"),
		base: []Attr{{AttrRunID, rec.ID}, {AttrPackID, rec.Pack.Name + ":" + rec.Pack.Version},
			{AttrTenant, rec.Tenant}},
		created:   rec.Created,
		steps:     map[string]opened{},
		gates:     map[string]opened{},
		gateWaits: map[string]int{},
	}
}

// Of returns every finished span of rec's timeline, in the order they
// ended; kinds come from rec.Steps.
func Of(rec *run.Record) []Span {
	t := NewTracker(rec)
	var out []Span
	for _, e := range rec.Timeline {
		kind := ""
		if sr := rec.Steps[e.StepID]; sr != nil {
			kind = sr.Kind
		}
		out = append(out, t.Add(e, kind, rec.PlanHash.String())...)
	}
	return out
}

// Add takes the next event of the timeline, of a step of the given kind
// ("" for run events), and returns the spans it ends.
func (t *Tracker) Add(e run.Event, kind, planHash string) []Span {
	switch e.Type {
	case run.EventStepStarted:
		key := e.StepID + "/" + strconv.Itoa(e.Attempt)
		t.steps[key] = opened{id: spanID(t.runSpan, "step/"+key), start: e.Time,
			attrs: []Attr{{AttrStepID, e.StepID}, {AttrKind, kind}, {AttrAttempt, strconv.Itoa(e.Attempt)}}}
	case run.EventStepSucceeded, run.EventStepFailed, run.EventStepErrored, run.EventStepCancelled, run.EventRunnerLost:
		key := e.StepID + "/" + strconv.Itoa(e.Attempt)
		o, ok := t.steps[key]
		if !ok {
			return nil
		}
		delete(t.steps, key)
		state := stepState(e.Type)
		s := t.span(StepSpan, o, e.Time, Attr{AttrState, state})
		if state != run.Succeeded {
			s.Error = state
		}
		return []Span{s}
	case run.EventGateWaiting:
		if _, ok := t.gates[e.StepID]; ok {
			return nil
		}
		n := t.gateWaits[e.StepID] + 1
		t.gateWaits[e.StepID] = n
		t.gates[e.StepID] = opened{id: spanID(t.runSpan, "gate/"+e.StepID+"/"+strconv.Itoa(n)), start: e.Time,
			attrs: []Attr{{AttrStepID, e.StepID}, {AttrKind, kind}}}
	case run.EventGateApproved, run.EventGateRejected, run.EventGateExpired:
		o, ok := t.gates[e.StepID]
		if !ok {
			return nil
		}
		delete(t.gates, e.StepID)
		state := map[string]string{run.EventGateApproved: run.GateApproved, run.EventGateRejected: run.GateRejected,
			run.EventGateExpired: run.GateExpired}[e.Type]
		s := t.span(GateSpan, o, e.Time, Attr{AttrState, state})
		if state != run.GateApproved {
			s.Error = state
		}
		return []Span{s}
	case run.EventRunSucceeded, run.EventRunFailed, run.EventRunCancelled, run.EventRunExpired:
		// A run that ends while parked ends its gate waits; a failed run
		// resumed later adds its new steps to the same trace, under the
		// run span already sent.
		var out []Span
		for _, id := range sortedKeys(t.gates) {
			o := t.gates[id]
			s := t.span(GateSpan, o, e.Time, Attr{AttrState, "ended with the run"})
			s.Error = "ended with the run"
			out = append(out, s)
			delete(t.gates, id)
		}
		if t.runEnded {
			return out
		}
		t.runEnded = true
		state := runState(e.Type)
		s := Span{Name: RunSpan, TraceID: t.traceID, SpanID: t.runSpan, Start: t.created, End: e.Time,
			Attrs: append(append([]Attr{}, t.base...), Attr{AttrPlanHash, planHash}, Attr{AttrState, state})}
		if state != run.Succeeded {
			s.Error = state
		}
		return append(out, s)
	}
	return nil
}

func (t *Tracker) span(name string, o opened, end time.Time, extra ...Attr) Span {
	attrs := append(append(append([]Attr{}, t.base...), o.attrs...), extra...)
	return Span{Name: name, TraceID: t.traceID, SpanID: o.id, ParentID: t.runSpan, Start: o.start, End: end, Attrs: attrs}
}

func stepState(typ string) string {
	switch typ {
	case run.EventStepSucceeded:
		return run.Succeeded
	case run.EventStepFailed:
		return run.Failed
	case run.EventStepCancelled:
		return run.Cancelled
	case run.EventRunnerLost:
		return "runner-lost"
	}
	return run.StepErrored
}

func runState(typ string) string {
	switch typ {
	case run.EventRunSucceeded:
		return run.Succeeded
	case run.EventRunCancelled:
		return run.Cancelled
	case run.EventRunExpired:
		return run.Expired
	}
	return run.Failed
}

func sortedKeys(m map[string]opened) []string { return slices.Sorted(maps.Keys(m)) }
