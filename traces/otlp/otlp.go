// Package otlp sends the spans of package traces to an OpenTelemetry
// collector over OTLP/HTTP, with the OpenTelemetry Go SDK. It is the only
// part of tracing that reaches the network, and only the one endpoint it
// is given, after asking Options.Allow; it reads no OTEL_* variable (every
// setting the SDK would take from the environment is set explicitly) and
// prints nothing (errors are returned by Close). Spans keep the ids
// package traces derived for them, so sending a span twice (after a crash
// between sending and recording) gives the collector the same span again,
// not a second one.
package otlp

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"stellaops.io/stella/traces"
)

var (
	// errEndpoint: the configured collector endpoint is not an http or
	// https URL with a host.
	errEndpoint = errors.New("traces endpoint is invalid")
	// ErrHostRefused: in sealed mode the collector's host is not on the
	// sealed allowlist; nothing was sent.
	ErrHostRefused = errors.New("traces collector host is not allowed in sealed mode")
	// ErrUndelivered: the collector did not take every span; the ones it
	// did not take are sent again by the next export.
	ErrUndelivered = errors.New("spans not delivered to the traces collector")
)

// Options is where spans go.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP base URL, such as
	// http://127.0.0.1:4318; spans are posted to its /v1/traces.
	Endpoint string
	// TLS is the client configuration for an https endpoint (nil: the
	// system's roots).
	TLS *tls.Config
	// Headers are sent with every request (e.g. an Authorization header).
	Headers map[string]string
	// Timeout bounds each export request (default 10s).
	Timeout time.Duration
	// Allow, when set, is asked about the endpoint's host (host or
	// host:port, as in the URL) before any connection; an error refuses it.
	Allow func(host string) error
	// Service is the resource's service.name and Version its
	// service.version.
	Service, Version string
}

// CheckEndpoint says whether endpoint is an OTLP/HTTP base URL stella
// can post to, and returns its host (host or host:port).
func CheckEndpoint(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q: expected an http or https URL such as http://127.0.0.1:4318 (no user, query or fragment)", errEndpoint, endpoint)
	}
	return u.Host, nil
}

// Exporter sends spans to a collector over OTLP/HTTP in the background,
// in batches, as the OpenTelemetry SDK does; Close sends what is left and
// says which spans the collector took.
type Exporter struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	q      *queue
	host   string
}

// New prepares an exporter; it connects to nothing until spans are sent.
func New(ctx context.Context, opts Options) (*Exporter, error) {
	host, err := CheckEndpoint(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	if opts.Allow != nil {
		if err := opts.Allow(host); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrHostRefused, host, err)
		}
	}
	u, _ := url.Parse(opts.Endpoint)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	path := u.Path
	if len(path) == 0 || path[len(path)-1] != '/' {
		path += "/"
	}
	eopts := []otlptracehttp.Option{
		otlptracehttp.WithEndpoint(u.Host),
		otlptracehttp.WithURLPath(path + "v1/traces"),
		otlptracehttp.WithTimeout(timeout),
		// stella retries itself, span by span, on the next export: a
		// collector that is down never holds a command up for long.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		// Never from the environment: stella reads no OTEL_* variable.
		otlptracehttp.WithHeaders(opts.Headers),
	}
	if u.Scheme == "http" {
		eopts = append(eopts, otlptracehttp.WithInsecure())
	} else {
		tc := opts.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		eopts = append(eopts, otlptracehttp.WithTLSClientConfig(tc))
	}
	eopts = append(eopts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
	client, err := otlptracehttp.New(ctx, eopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errEndpoint, opts.Endpoint, err)
	}
	service := opts.Service
	if service == "" {
		service = "stella"
	}
	q := &queue{next: client, sent: map[string]bool{}, timeout: timeout, stop: make(chan struct{}), done: make(chan struct{})}
	go q.loop()
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.version", opts.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(givenIDs{}),
		// Explicit, so that no OTEL_* variable changes them.
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{AttributeValueLengthLimit: -1, AttributeCountLimit: 128,
			EventCountLimit: 128, LinkCountLimit: 128, AttributePerEventCountLimit: 128, AttributePerLinkCountLimit: 128}),
		sdktrace.WithSpanProcessor(q),
	)
	return &Exporter{tp: tp, tracer: tp.Tracer("stellaops.io/stella/traces"), q: q, host: host}, nil
}

// Emit queues finished spans for the collector.
func (e *Exporter) Emit(spans ...traces.Span) {
	for _, s := range spans {
		tid, err1 := trace.TraceIDFromHex(s.TraceID)
		sid, err2 := trace.SpanIDFromHex(s.SpanID)
		if err1 != nil || err2 != nil {
			continue // not a span of this package
		}
		ctx := context.WithValue(context.Background(), idsKey{}, ids{tid, sid})
		if s.ParentID != "" {
			pid, err := trace.SpanIDFromHex(s.ParentID)
			if err != nil {
				continue
			}
			ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: pid, TraceFlags: trace.FlagsSampled, Remote: true}))
		}
		attrs := make([]attribute.KeyValue, 0, len(s.Attrs))
		for _, a := range s.Attrs {
			attrs = append(attrs, attribute.String(a.Key, a.Value))
		}
		_, sp := e.tracer.Start(ctx, s.Name, trace.WithTimestamp(s.Start), trace.WithAttributes(attrs...),
			trace.WithSpanKind(trace.SpanKindInternal))
		if s.Error != "" {
			sp.SetStatus(codes.Error, s.Error)
		} else {
			sp.SetStatus(codes.Ok, "")
		}
		sp.End(trace.WithTimestamp(s.End))
	}
}

// Close sends what is queued (bounded by ctx) and returns the ids of the
// spans the collector took, over the exporter's whole life; the error
// says why some were not (ErrUndelivered).
func (e *Exporter) Close(ctx context.Context) (sent map[string]bool, err error) {
	close(e.q.stop)
	<-e.q.done
	e.q.flush(ctx)
	_ = e.tp.Shutdown(ctx)
	_ = e.q.next.Shutdown(ctx)
	e.q.mu.Lock()
	defer e.q.mu.Unlock()
	if e.q.err != nil {
		return e.q.sent, fmt.Errorf("%w: %d span(s) to %s: %w", ErrUndelivered, len(e.q.spans), e.host, e.q.err)
	}
	return e.q.sent, nil
}

// Export sends spans and waits (bounded by ctx) for the collector to take
// them; it returns the ids it took.
func Export(ctx context.Context, opts Options, spans []traces.Span) (map[string]bool, error) {
	e, err := New(ctx, opts)
	if err != nil {
		return nil, err
	}
	e.Emit(spans...)
	return e.Close(ctx)
}

// queue is the exporter's span processor: it keeps finished spans and
// sends them once a second, and what is left when the exporter closes. It
// reports nothing itself (the SDK's own processors print export errors
// through the global error handler): Close returns what went wrong.
type queue struct {
	next    sdktrace.SpanExporter
	timeout time.Duration
	stop    chan struct{}
	done    chan struct{}

	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan // ended, not taken yet
	sent  map[string]bool
	err   error // of the last attempt that failed
	busy  sync.Mutex
}

func (q *queue) loop() {
	defer close(q.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
			q.flush(ctx)
			cancel()
		}
	}
}

// flush sends the queued spans, batchSize at a time; the ones the
// collector does not take stay queued, and flush stops at the first
// failure.
func (q *queue) flush(ctx context.Context) {
	q.busy.Lock()
	defer q.busy.Unlock()
	for {
		q.mu.Lock()
		n := min(len(q.spans), batchSize)
		batch := q.spans[:n:n]
		q.mu.Unlock()
		if n == 0 {
			return
		}
		err := q.next.ExportSpans(ctx, batch)
		q.mu.Lock()
		if err != nil {
			q.err = err
			q.mu.Unlock()
			return
		}
		q.err = nil
		q.spans = q.spans[n:]
		for _, s := range batch {
			id := s.SpanContext().SpanID()
			q.sent[hex.EncodeToString(id[:])] = true
		}
		q.mu.Unlock()
	}
}

// batchSize bounds the spans of one request (a collector's default request
// limit is megabytes; a span here is a few hundred bytes).
const batchSize = 512

func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	q.mu.Lock()
	q.spans = append(q.spans, s)
	q.mu.Unlock()
}

func (q *queue) Shutdown(context.Context) error   { return nil }
func (q *queue) ForceFlush(context.Context) error { return nil }

// givenIDs is the SDK's ID generator for spans whose ids Emit chose: it
// hands back the ids the context carries.
type givenIDs struct{}

type idsKey struct{}

type ids struct {
	trace trace.TraceID
	span  trace.SpanID
}

func (givenIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	v, _ := ctx.Value(idsKey{}).(ids)
	return v.trace, v.span
}

func (givenIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	v, _ := ctx.Value(idsKey{}).(ids)
	return v.span
}
