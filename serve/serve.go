// Package serve is the HTTP side of `stella serve`: health, the pack_*
// metrics, and a read-only API over the runs of one home, with run logs
// streamed as NDJSON or Server-Sent Events, and the run console: pages
// built into the binary that follow a run through that same stream.
//
// # Model
//
// The server holds no state of its own about runs: every answer is read
// from the home (package runs), so it reports the runs that other
// processes (`stella pack run`, `stella pack runs resume`) drive. A
// followed log is the run's log.ndjson read as it grows, with the run's
// timeline (its journal) read again whenever the journal changes, until
// no runner holds the run and its state is no longer running — the rule
// of `stella pack runs logs --follow`.
//
// Logs are stored masked (the runner masks secrets before a line is
// written); the server adds nothing to them and reads no secret.
//
// # Event ids
//
// Every SSE event carries the id "<L>-<T>": L is the byte offset in
// log.ndjson just past the last log record sent, T the number of
// timeline events sent. A client that reconnects with Last-Event-ID
// resumes exactly after that event: no record is lost or sent twice.
package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// ErrPlainRemote: an address other than loopback was asked for without
// TLS.
var ErrPlainRemote = errors.New("serving beyond loopback needs TLS")

// CheckListen refuses to serve plain HTTP on an address other than
// loopback: the API and logs would cross the network in clear.
func CheckListen(addr string, withTLS bool) error {
	if withTLS {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %s: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen address %s: %w (give --cert-file and --key-file, or listen on 127.0.0.1)", addr, ErrPlainRemote)
}

// Options configure a Handler.
type Options struct {
	// Runs are the home's runs (required).
	Runs *runs.Store
	// Metrics is what /metrics serves (required).
	Metrics prometheus.Gatherer
	// Poll is how often a followed run's log and journal are read again
	// (0: 100ms).
	Poll time.Duration
	// Heartbeat is how often an idle SSE stream gets a comment line, so
	// proxies keep it open (0: 15s).
	Heartbeat time.Duration
}

// Handler returns the server's routes:
//
//	GET /healthz                      200 {"status":"ok"} when the runs can be listed, else 503
//	GET /metrics                      the pack_* metrics (Prometheus text format)
//	GET /api/runs                     run summaries, newest first (?state= &pack= &tenant=)
//	GET /api/runs/{id}                one run's record
//	GET /api/runs/{id}/logs           its log: SSE when Accept asks for text/event-stream, else NDJSON (?follow=true follows)
//	GET /task-runner/runs/{id}/logs   the same, at the runbook's path
//	GET /console/packs/runs           the run console: the run list
//	GET /console/packs/runs/{id}      the run console: one run, live
//	GET /console/static/{file}        the console's script and style
//
// Every answer carries Content-Security-Policy (only this origin: no
// inline script, no other host) and X-Content-Type-Options: nosniff.
func Handler(o Options) http.Handler {
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	mux.HandleFunc("GET /api/runs", h.list)
	mux.HandleFunc("GET /api/runs/{id}", h.show)
	mux.HandleFunc("GET /api/runs/{id}/logs", h.logs)
	mux.HandleFunc("GET /task-runner/runs/{id}/logs", h.logs)
	consoleRoutes(mux)
	return secure(mux)
}

// contentSecurityPolicy lets a page load only this origin's own files:
// no inline script or style, no other host, no frames, no forms.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"

// secure sets the security headers of every answer.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

type handler struct{ o Options }

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	if _, err := h.o.Runs.List(r.Context(), runs.Filter{State: run.Running}); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Summary is one run in /api/runs: its summary and whether a runner
// holds it (live, gone, none), as `stella pack runs list` says. In
// /api/runs/{id} it also has the run's steps in the order they started
// and the commands to run next (for a run at a gate: the gate and its
// approve commands), as `stella pack run` prints them.
type Summary struct {
	*run.Record
	RunnerState string   `json:"runnerState"`
	StepOrder   []string `json:"stepOrder,omitempty"`
	Gate        string   `json:"gate,omitempty"`
	Next        []string `json:"next,omitempty"`
}

// summary is a run's Summary as /api/runs/{id} gives it.
func (h *handler) summary(rec *run.Record) Summary {
	gate, next := runs.Next(rec)
	return Summary{Record: rec, RunnerState: h.runnerState(rec), StepOrder: runs.StepOrder(rec), Gate: gate, Next: next}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rs, err := h.o.Runs.List(r.Context(), runs.Filter{State: q.Get("state"), Pack: q.Get("pack"), Tenant: q.Get("tenant")})
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]Summary, 0, len(rs))
	for _, rec := range rs {
		out = append(out, Summary{Record: rec, RunnerState: h.runnerState(rec)})
	}
	writeJSON(w, http.StatusOK, out)
}

// RunnerState says whether a process drives the run: live, gone (the
// record says running and nobody holds its lock) or none.
func (h *handler) runnerState(rec *run.Record) string {
	switch {
	case h.o.Runs.Live(rec.ID):
		return "live"
	case rec.State == run.Running:
		return "gone"
	}
	return "none"
}

func (h *handler) show(w http.ResponseWriter, r *http.Request) {
	rec, err := h.get(r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h.summary(rec))
}

// get reads the record of the run the path names; an id of another form
// is not found (it never reaches a file path).
func (h *handler) get(r *http.Request) (*run.Record, error) {
	id := r.PathValue("id")
	if !runs.ValidID(id) {
		return nil, fmt.Errorf("run %q: %w", id, runs.ErrNotFound)
	}
	return h.o.Runs.Get(r.Context(), id)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers err: 404 for a run not found, 500 otherwise.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, runs.ErrNotFound) {
		status = http.StatusNotFound
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// wantsSSE reports whether the request asks for Server-Sent Events.
func wantsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// flusher writes buffered output to the client.
type flusher struct {
	bw *bufio.Writer
	rc *http.ResponseController
}

func newFlusher(w http.ResponseWriter) *flusher {
	return &flusher{bw: bufio.NewWriterSize(w, 64<<10), rc: http.NewResponseController(w)}
}

func (f *flusher) flush() error {
	if err := f.bw.Flush(); err != nil {
		return err
	}
	return f.rc.Flush()
}

// wait waits d or until ctx is done (false).
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
