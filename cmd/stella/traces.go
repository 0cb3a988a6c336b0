package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/net/http/httpguts"

	"stellaops.io/stella/display"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/traces"
	"stellaops.io/stella/traces/otlp"
)

// defaultTracesTimeout bounds each request to the collector and the wait
// at the end of a command for spans still queued.
const defaultTracesTimeout = 10 * time.Second

// traceOptions says where spans go; ok is false when no collector is
// configured (then nothing is sent, and nothing is tried).
func (s *session) traceOptions() (opts otlp.Options, ok bool, err error) {
	tc := s.config.Traces
	if tc.Endpoint == "" {
		return opts, false, nil
	}
	opts = otlp.Options{Endpoint: tc.Endpoint, Timeout: tc.Timeout, Version: version}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTracesTimeout
	}
	if strings.HasPrefix(tc.Endpoint, "https:") {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tc.CAFile != "" {
			pem, err := os.ReadFile(tc.CAFile)
			if err != nil {
				return opts, false, fmt.Errorf("traces.caFile: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return opts, false, fmt.Errorf("traces.caFile %s: no PEM certificate in it: %w", tc.CAFile, ErrConfigInvalid)
			}
		}
		if tc.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
			if err != nil {
				return opts, false, fmt.Errorf("traces.certFile %s: %w", tc.CertFile, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts.TLS = cfg
	}
	if tc.HeadersFile != "" {
		if opts.Headers, err = readTraceHeaders(tc.HeadersFile); err != nil {
			return opts, false, err
		}
	}
	if s.sealed {
		opts.Allow = sealedAllow("traces.sealedAllowlist", tc.SealedAllowlist)
	}
	return opts, true, nil
}

// maxTraceHeaders bounds traces.headersFile.
const maxTraceHeaders = 64 << 10

// reservedTraceHeaders are set by the exporter itself.
var reservedTraceHeaders = []string{"Host", "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection", "User-Agent"}

// readTraceHeaders reads traces.headersFile: "Name: value" lines, blank
// lines and lines starting with # skipped. An error names the file and the
// line, never a value.
func readTraceHeaders(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("traces.headersFile: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTraceHeaders+1))
	if err != nil {
		return nil, fmt.Errorf("traces.headersFile %s: %w", path, err)
	}
	if len(b) > maxTraceHeaders {
		return nil, fmt.Errorf("traces.headersFile %s: %w: more than %d bytes", path, ErrConfigInvalid, maxTraceHeaders)
	}
	headers := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
			continue
		}
		bad := func(what string) error {
			return fmt.Errorf("traces.headersFile %s:%d: %w: %s", path, i+1, ErrConfigInvalid, what)
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		canonical := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !ok:
			return nil, bad(`expected "Name: value"`)
		case !httpguts.ValidHeaderFieldName(name):
			return nil, bad(fmt.Sprintf("%q is not a header name", display.Line(name)))
		case slices.Contains(reservedTraceHeaders, canonical):
			return nil, bad(fmt.Sprintf("header %s is set by stella", canonical))
		case headers[canonical] != "":
			return nil, bad(fmt.Sprintf("header %s given twice", canonical))
		case value == "" || !httpguts.ValidHeaderFieldValue(value):
			return nil, bad(fmt.Sprintf("header %s: an empty value, or one with control characters", canonical))
		}
		headers[canonical] = value
	}
	return headers, nil
}

// runTracer sends a run's spans while a command drives it: those its
// timeline already ended and no collector took yet (a run resumed after a
// crash, a gate wait ended by the approval that resumes it), then each
// span as the event that ends it is saved. It stands between the engine
// and the run store, so a span is sent only once what it reports is
// durable. A collector that is down never changes a run's outcome: what it
// did not take is sent again by the next command that drives or cancels
// the run, or by `stella pack runs trace --export`.
type runTracer struct {
	run.Store
	exp     *otlp.Exporter
	folder  string
	timeout time.Duration

	mu      sync.Mutex
	tracker *traces.Tracker
	sent    map[string]bool
}

// tracer starts tracing rec; nil when no collector is configured or it is
// refused (a warning says why: tracing never fails a run).
func (s *session) tracer(ctx context.Context, rs *runs.Store, rec *run.Record) *runTracer {
	opts, ok, err := s.traceOptions()
	if !ok && err == nil {
		return nil
	}
	var exp *otlp.Exporter
	if err == nil {
		exp, err = otlp.New(ctx, opts)
	}
	if err != nil {
		s.warnf("traces: run %s: %s: %v (no span is sent)", rec.ID, lookupError(err).Code, err)
		return nil
	}
	folder := rs.Folder(rec.ID)
	sent, err := traces.ReadSent(folder)
	if err != nil {
		s.warnf("traces: run %s: %v", rec.ID, err)
		sent = map[string]bool{}
	}
	t := &runTracer{Store: rs, exp: exp, folder: folder, timeout: opts.Timeout, tracker: traces.NewTracker(rec), sent: sent}
	for _, e := range rec.Timeline {
		exp.Emit(traces.Pending(t.tracker.Add(e, stepKind(rec, e.StepID), rec.PlanHash.String()), sent)...)
	}
	return t
}

func stepKind(rec *run.Record, id string) string {
	if sr := rec.Steps[id]; sr != nil {
		return sr.Kind
	}
	return ""
}

// Save saves, then queues the spans the saved events end. The engine
// calls Save holding its own lock, so rec is read as saved.
func (t *runTracer) Save(ctx context.Context, rec *run.Record, d run.Delta) error {
	if err := t.Store.Save(ctx, rec, d); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range d.Events {
		t.exp.Emit(traces.Pending(t.tracker.Add(e, stepKind(rec, e.StepID), rec.PlanHash.String()), t.sent)...)
	}
	return nil
}

// close sends what is queued (within the traces timeout) and records what
// the collector took in the run's folder.
func (t *runTracer) close(ctx context.Context, s *session, runID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
	defer cancel()
	took, err := t.exp.Close(ctx)
	if rerr := traces.RecordSent(t.folder, took); rerr != nil {
		s.warnf("traces: run %s: %v", runID, rerr)
	}
	if err != nil {
		s.warnf("traces: run %s: %s: %v; `stella pack runs trace %s --export` sends them again", runID, lookupError(err).Code, err, runID)
	}
}

// exportRunTraces sends the spans of rec no collector took yet, for a
// command that changed a run without driving it (runs cancel).
func (s *session) exportRunTraces(ctx context.Context, rs *runs.Store, rec *run.Record) {
	if t := s.tracer(ctx, rs, rec); t != nil {
		t.close(ctx, s, rec.ID)
	}
}

// runsTrace is `stella pack runs trace`: the run's spans, offline; with
// --export, those no collector took yet are sent.
func (s *session) runsTrace(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one RUN-ID"); err != nil {
		return err
	}
	id := c.Args().First()
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	rec, err := rs.Get(ctx, id)
	if err != nil {
		return err
	}
	spans := traces.Of(rec)
	sent, err := traces.ReadSent(rs.Folder(id))
	if err != nil {
		return err
	}
	var exportErr error
	exported := 0
	if c.Bool("export") {
		opts, ok, err := s.traceOptions()
		if err != nil {
			return err
		}
		if !ok {
			return usageError("pack runs trace --export: no collector is configured (traces.endpoint in <home>/config.yaml; docs/operations/traces.md)")
		}
		pending := traces.Pending(spans, sent)
		ectx, cancel := context.WithTimeout(ctx, opts.Timeout*time.Duration(1+len(pending)/512))
		defer cancel()
		took, err := otlp.Export(ectx, opts, pending)
		if rerr := traces.RecordSent(rs.Folder(id), took); rerr != nil {
			return rerr
		}
		for id := range took {
			sent[id] = true
		}
		exported, exportErr = len(took), err
	}
	out := struct {
		RunID    string      `json:"runId"`
		TraceID  string      `json:"traceId"`
		Spans    []traceSpan `json:"spans"`
		Exported int         `json:"exported"`
	}{RunID: rec.ID, TraceID: traces.TraceID(rec.ID), Spans: []traceSpan{}, Exported: exported}
	for _, sp := range spans {
		out.Spans = append(out.Spans, traceSpan{sp, sent[sp.SpanID]})
	}
	if err := s.emit(out, func(w io.Writer) { printTrace(w, out.TraceID, out.Spans) }); err != nil {
		return err
	}
	if exportErr != nil {
		return fmt.Errorf("run %s: %w", id, exportErr)
	}
	return nil
}

// traceSpan is a span as `runs trace` shows it.
type traceSpan struct {
	traces.Span
	Sent bool `json:"sent"` // a collector took it
}

// printTrace prints a run's spans in the order they ended, children
// indented under the run span.
func printTrace(w io.Writer, traceID string, spans []traceSpan) {
	fmt.Fprintf(w, "trace %s\n", traceID)
	if len(spans) == 0 {
		fmt.Fprintln(w, "no span has ended yet")
		return
	}
	for _, s := range spans {
		indent := "  "
		if s.ParentID == "" {
			indent = ""
		}
		attrs := []string{}
		for _, a := range s.Attrs {
			switch a.Key {
			case traces.AttrStepID, traces.AttrAttempt, traces.AttrState:
				attrs = append(attrs, a.Key+"="+display.Line(a.Value))
			}
		}
		mark := "not sent"
		if s.Sent {
			mark = "sent"
		}
		fmt.Fprintf(w, "%s%s %s %s %s (%s)\n", indent, s.Name, s.SpanID, s.End.Sub(s.Start).Round(time.Millisecond), strings.Join(attrs, " "), mark)
	}
}
