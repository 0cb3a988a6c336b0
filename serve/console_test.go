package serve_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"stellaops.io/stella/run"
)

// TestConsoleRoutes: the console's pages and files are served with the
// security headers (CSP only this origin, nosniff), the pages load no
// other host and run no inline script, and a path outside them is 404.
func TestConsoleRoutes(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		path, ctype, has string
	}{
		{"/console/packs/runs", "text/html; charset=utf-8", `data-page="runs"`},
		{"/console/packs/runs/run:default:20990101T000000.000000Z", "text/html; charset=utf-8", `data-page="run"`},
		{"/console/static/console.js", "text/javascript; charset=utf-8", "new EventSource("},
		{"/console/static/console.css", "text/css; charset=utf-8", "#log"},
	} {
		resp, err := http.Get(f.srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %s %q, want 200 %s with %q", c.path, resp.Status, resp.Header.Get("Content-Type"), c.ctype, c.has)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", c.path)
		}
		for _, bad := range []string{"http://", "https://", "//", "<script>", "innerHTML", "style="} {
			if strings.Contains(body, bad) && !(bad == "//" && strings.HasSuffix(c.path, ".js")) {
				t.Errorf("GET %s holds %q", c.path, bad)
			}
		}
	}
	if status, _ := get(t, f.srv.URL+"/console/static/nothing.js"); status != 404 {
		t.Errorf("a file the console does not have: %d", status)
	}
	resp, err := http.Get(f.srv.URL + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/packs/runs" {
		t.Errorf("/console/ leads to %s", resp.Request.URL.Path)
	}
}

// TestConsoleAPI: the run API gives what the console shows: the steps in
// the order they started, the gate a run waits at and the commands to
// run next, and, with ?display=text, log lines escaped as the CLI shows
// them (an escape sequence arrives as \x1b, never as ESC).
func TestConsoleAPI(t *testing.T) {
	f := newFixture(t)
	r := startRun(t, f.rs)
	now := time.Now().UTC()
	r.rec.Steps["b"] = &run.StepRecord{ID: "b", Kind: "run", State: run.Succeeded, Started: &now}
	later := now.Add(time.Second)
	r.rec.Steps["a"] = &run.StepRecord{ID: "a", Kind: "gate", State: run.AwaitingApproval, Started: &later, Gate: &run.GateRecord{State: run.GateWaiting, Required: 2}}
	if err := f.rs.Save(context.Background(), r.rec, run.Delta{Steps: []*run.StepRecord{r.rec.Steps["a"], r.rec.Steps["b"]}}); err != nil {
		t.Fatal(err)
	}
	r.line("b", "red \x1b[31m<b>x</b>")
	r.end(run.AwaitingApproval)
	id := r.rec.ID

	_, body := get(t, f.srv.URL+"/api/runs/"+id)
	var s struct {
		StepOrder []string `json:"stepOrder"`
		Gate      string   `json:"gate"`
		Next      []string `json:"next"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.StepOrder, ",") != "b,a" || s.Gate != "a" || len(s.Next) != 3 ||
		s.Next[0] != "stella pack approve --run "+id+" --gate a --key KEY --comment '...'" {
		t.Errorf("run %s: order %q gate %q next %q", id, s.StepOrder, s.Gate, s.Next)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct{ query, want string }{
		{"?display=text", `"msg":"red \\x1b[31m<b>x</b>"`},
		{"", `"msg":"red \u001b[31m<b>x</b>"`},
	} {
		ch, resp := follow(t, ctx, f.srv.URL+"/api/runs/"+id+"/logs"+c.query, "")
		var logs []string
		for e := range ch {
			if e.typ == "log" {
				logs = append(logs, e.data)
			}
		}
		resp.Body.Close()
		if len(logs) != 1 || !strings.Contains(logs[0], c.want) {
			t.Errorf("logs%s: %q, want %s", c.query, logs, c.want)
		}
	}
}
