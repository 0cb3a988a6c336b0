package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/metrics"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/serve"
)

// fixture is a home's runs served on a loopback port.
type fixture struct {
	rs  *runs.Store
	srv *httptest.Server
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	rs := runs.Open(cachetest.Open(t), t.TempDir(), nil)
	t.Cleanup(func() { rs.Close() })
	srv := httptest.NewServer(serve.Handler(serve.Options{Runs: rs, Metrics: metrics.NewRegistry(rs, nil), Poll: 10 * time.Millisecond}))
	t.Cleanup(srv.Close)
	return &fixture{rs: rs, srv: srv}
}

// runner drives a fake run the way the runner does: the run lock held,
// log records appended, timeline events saved, the log closed and the
// lock released once the run ended.
type runner struct {
	t    testing.TB
	rs   *runs.Store
	rec  *run.Record
	log  *runs.Log
	lock *runs.Lock
}

func startRun(t testing.TB, rs *runs.Store) *runner {
	t.Helper()
	ctx := context.Background()
	rec := &run.Record{Tenant: "default", Pack: plan.PackRef{Name: "demo", Version: "1.0.0"}, State: run.Running, Steps: map[string]*run.StepRecord{}}
	if err := rs.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	lock, err := rs.Lock(rec.ID, "test runner")
	if err != nil {
		t.Fatal(err)
	}
	log, err := rs.OpenLog(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, rs: rs, rec: rec, log: log, lock: lock}
	r.event(run.EventRunStarted, "")
	return r
}

func (r *runner) event(typ, step string) {
	e := run.Event{Time: time.Now().UTC(), Type: typ, StepID: step}
	r.rec.Timeline = append(r.rec.Timeline, e)
	if err := r.rs.Save(context.Background(), r.rec, run.Delta{Events: []run.Event{e}}); err != nil {
		r.t.Error(err)
	}
}

func (r *runner) line(step, msg string) {
	r.log.Write(run.Line{Time: time.Now().UTC(), RunID: r.rec.ID, PackID: "demo:1.0.0", Tenant: "default", StepID: step, Stream: "stdout", Msg: msg})
}

func (r *runner) end(state string) {
	if err := r.log.Close(); err != nil {
		r.t.Error(err)
	}
	r.rec.State = state
	now := time.Now().UTC()
	r.rec.Ended = &now
	r.event("pack.run."+state, "")
	if err := r.lock.Unlock(); err != nil {
		r.t.Error(err)
	}
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPI: health, metrics, the run list and one run, a run not found
// and an id of another form (never a file path), and the NDJSON log.
func TestAPI(t *testing.T) {
	f := newFixture(t)
	r := startRun(t, f.rs)
	r.line("a", "hello")
	r.line("a", strings.Repeat("long ", 400)) // kept in log.data
	r.end(run.Succeeded)
	id := r.rec.ID

	for _, c := range []struct {
		path   string
		status int
		has    string
	}{
		{"/healthz", 200, `"status": "ok"`},
		{"/metrics", 200, `pack_runs_total{pack="demo",result="succeeded",tenant="default"} 1`},
		{"/api/runs", 200, `"id": "` + id + `"`},
		{"/api/runs?state=failed", 200, "[]"},
		{"/api/runs/" + id, 200, `"runnerState": "none"`},
		{"/api/runs/run:default:20990101T000000.000000Z", 404, "run not found"},
		{"/api/runs/run:..:x", 404, "run not found"},
		{"/api/runs/" + id + "/logs", 200, `"msg":"hello"`},
		{"/task-runner/runs/" + id + "/logs", 200, `"msg":"long long`},
		{"/api/runs/" + id + "/logs?step=b", 200, ""},
	} {
		status, body := get(t, f.srv.URL+c.path)
		if status != c.status || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %d %q, want %d with %q", c.path, status, body, c.status, c.has)
		}
	}
	_, body := get(t, f.srv.URL+"/api/runs/"+id+"/logs")
	if n := strings.Count(body, "\n"); n != 2 {
		t.Errorf("NDJSON log has %d lines, want 2:\n%s", n, body)
	}
	if _, body := get(t, f.srv.URL+"/api/runs/"+id+"/logs?step=b"); body != "" {
		t.Errorf("log of a step that wrote nothing: %q", body)
	}
	if status, body := get(t, f.srv.URL+"/api/runs/"+id+"/logs", "Last-Event-ID", "3-0", "Accept", "text/event-stream"); status != 400 || !strings.Contains(body, "not the start of a record") {
		t.Errorf("Last-Event-ID inside a record: %d %q", status, body)
	}
}

// event is one SSE event as a client reads it.
type event struct{ id, typ, data string }

// readEvents reads SSE events from body into ch until it ends.
func readEvents(body io.Reader, ch chan<- event) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 4<<20)
	var e event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e.typ != "" {
				ch <- e
			}
			e = event{}
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		}
	}
}

func follow(t testing.TB, ctx context.Context, url, last string) (<-chan event, *http.Response) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan event, 64)
	go readEvents(resp.Body, ch)
	return ch, resp
}

// TestSSEFollowsAndResumes: a client follows a live run's log from its
// first line to its end state, dropping the connection twice and
// reconnecting with Last-Event-ID: every line arrives once and in order,
// with the step and gate events, and the stream ends with the end state.
func TestSSEFollowsAndResumes(t *testing.T) {
	f := newFixture(t)
	r := startRun(t, f.rs)
	const lines = 300
	go func() {
		r.event(run.EventStepStarted, "a")
		for i := 0; i < lines; i++ {
			r.line("a", fmt.Sprintf("line %d", i))
			if i%50 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			if i == 150 {
				r.event(run.EventGateWaiting, "approve")
			}
		}
		r.event(run.EventStepSucceeded, "a")
		r.end(run.Succeeded)
	}()
	url := f.srv.URL + "/task-runner/runs/" + r.rec.ID + "/logs"
	var got []string
	types := map[string]int{}
	last, end := "", ""
	conns := 0
	for conn := 0; end == "" && conn < 10; conn++ {
		ctx, cancel := context.WithCancel(context.Background())
		ch, resp := follow(t, ctx, url, last)
		n := 0
		for e := range ch {
			types[e.typ]++
			last = e.id
			switch e.typ {
			case serve.EventLog:
				var l run.Line
				if err := json.Unmarshal([]byte(e.data), &l); err != nil {
					t.Fatalf("log event %q: %v", e.data, err)
				}
				got = append(got, l.Msg)
			case serve.EventEnd:
				end = e.data
			}
			// The first two connections drop after some lines.
			if n++; conn < 2 && n == 60 {
				break
			}
		}
		cancel()
		resp.Body.Close()
		for range ch { // the reader stops with the connection
		}
		conns++
	}
	if conns < 3 {
		t.Fatalf("%d connections, want the two dropped ones and a last", conns)
	}
	for i := 0; i < lines; i++ {
		if i >= len(got) || got[i] != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d: got %d lines, want line %d in order, once (first lines %q)", i, len(got), i, got[:min(len(got), 5)])
		}
	}
	if len(got) != lines {
		t.Fatalf("%d lines, want %d", len(got), lines)
	}
	if !strings.Contains(end, `"state":"succeeded"`) {
		t.Fatalf("end event %q", end)
	}
	if types[serve.EventStep] != 2 || types[serve.EventGate] != 1 || types[serve.EventRun] != 2 || types[serve.EventEnd] != 1 {
		t.Fatalf("event types %v, want 2 step, 1 gate, 2 run (started, succeeded), 1 end", types)
	}
	// A reconnect after the end replays nothing and ends again.
	ch, resp := follow(t, context.Background(), url, last)
	defer resp.Body.Close()
	var after []event
	for e := range ch {
		after = append(after, e)
	}
	if len(after) != 1 || after[0].typ != serve.EventEnd {
		t.Fatalf("after the end: %v, want only the end event", after)
	}
}

// TestCheckListen: plain HTTP only on loopback.
func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr string
		tls  bool
		ok   bool
	}{
		{"127.0.0.1:9464", false, true},
		{"[::1]:9464", false, true},
		{"localhost:9464", false, true},
		{"0.0.0.0:9464", false, false},
		{":9464", false, false},
		{"10.0.0.5:9464", false, false},
		{"10.0.0.5:9464", true, true},
		{"nohost", false, false},
	} {
		err := serve.CheckListen(c.addr, c.tls)
		if (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, tls %v) = %v", c.addr, c.tls, err)
		}
	}
}
