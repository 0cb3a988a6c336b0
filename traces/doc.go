// Package traces derives a run's OpenTelemetry spans from its timeline:
// one taskrunner.run span per run, and under it a taskrunner.step span per
// attempt of a step and a taskrunner.gate.wait span per wait at an
// approval gate. The timeline is the durable truth of a run, so the spans
// are computed from it rather than kept by the process that ran the step:
// a run driven by several processes (parked at a gate, killed and resumed)
// is still one trace, and a span is the same whichever process computes
// it. Trace and span ids are hashes of the run id and the span's place in
// the run (TraceID, the run span, step/ID/attempt, gate/ID/n), so that
// `stella pack runs show` can name the trace before any span is sent.
//
// Attributes are run metadata only (runId, packId, tenant, stepId, the
// step's kind, attempt and state, the plan hash); never an input, an
// output, a command line or a message, which may carry secrets or
// untrusted text.
//
// The package is offline: Sent records in the run's folder which spans a
// collector took; package traces/otlp sends them.
package traces
