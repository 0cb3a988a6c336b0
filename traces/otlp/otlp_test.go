package otlp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.io/stella/traces"
	"stellaops.io/stella/traces/otlp"
)

func spans(n int) []traces.Span {
	t0 := time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)
	var out []traces.Span
	for i := 0; i < n; i++ {
		out = append(out, traces.Span{Name: traces.StepSpan, TraceID: traces.TraceID("r"), SpanID: fmt.Sprintf("%016x", i+1),
			ParentID: "0102030405060708", Start: t0, End: t0.Add(time.Second)})
	}
	return out
}

// A collector that answers 503 takes nothing: every span stays unsent and
// the error says so; one that answers 200 takes them all, in requests of
// at most 512 spans. The unit test beside TestTracesReachCollector (which
// uses the Collector's own receiver) for the failure answers.
func TestExportRecordsOnlyWhatWasTaken(t *testing.T) {
	var status atomic.Int32
	var requests atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path != "/base/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("request %s %q", r.URL.Path, r.Header.Get("Content-Type"))
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	opts := otlp.Options{Endpoint: srv.URL + "/base", Timeout: 2 * time.Second}
	ctx := context.Background()

	sent, err := otlp.Export(ctx, opts, spans(3))
	if !errors.Is(err, otlp.ErrUndelivered) || len(sent) != 0 {
		t.Fatalf("503: sent %v, err %v", sent, err)
	}
	status.Store(http.StatusOK)
	requests.Store(0)
	sent, err = otlp.Export(ctx, opts, spans(600))
	if err != nil || len(sent) != 600 || requests.Load() != 2 {
		t.Fatalf("200: %d sent in %d requests, err %v", len(sent), requests.Load(), err)
	}
}

// In sealed mode a host not allowed is never contacted.
func TestExportAsksBeforeConnecting(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	defer srv.Close()
	opts := otlp.Options{Endpoint: srv.URL, Allow: func(host string) error { return errors.New("not listed") }}
	sent, err := otlp.Export(context.Background(), opts, spans(1))
	if !errors.Is(err, otlp.ErrHostRefused) || len(sent) != 0 || requests.Load() != 0 {
		t.Fatalf("refused host: sent %v, err %v, %d requests", sent, err, requests.Load())
	}
	for _, bad := range []string{"127.0.0.1:4318", "ftp://h/", "http://u:p@h:1", "http://h:1/?q=1", "http://"} {
		if _, err := otlp.CheckEndpoint(bad); err == nil {
			t.Errorf("CheckEndpoint(%q) accepted it", bad)
		}
	}
}
