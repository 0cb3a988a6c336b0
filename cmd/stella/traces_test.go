package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/traces"
)

// otlpSink is the tests' OTLP receiver (tools/otlpsink: the OpenTelemetry
// Collector's own OTLP receiver), with the spans it accepted.
type otlpSink struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu    sync.Mutex
	spans []sinkSpan
}

// sinkSpan is a span as the collector decoded it (OTLP/JSON).
type sinkSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Start        string `json:"startTimeUnixNano"`
	End          string `json:"endTimeUnixNano"`
	Attributes   []struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	} `json:"attributes"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Service string `json:"-"`
}

func (s sinkSpan) attr(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.StringValue
		}
	}
	return ""
}

func startSink(t *testing.T, addr string, args ...string) *otlpSink {
	t.Helper()
	bin := regtest.Tool(t, "otlpsink")
	s := &otlpSink{cmd: exec.Command(bin, append([]string{"-listen", addr}, args...)...), done: make(chan struct{})}
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, _ := s.cmd.StdoutPipe()
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.HasPrefix(sc.Text(), "listening on ") {
				said = true
				ready <- nil
			}
			t.Logf("otlpsink: %s", sc.Text())
		}
		if !said {
			ready <- errors.New("otlpsink exited before listening")
		}
	}()
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var batch struct {
				ResourceSpans []struct {
					Resource struct {
						Attributes []struct {
							Key   string `json:"key"`
							Value struct {
								StringValue string `json:"stringValue"`
							} `json:"value"`
						} `json:"attributes"`
					} `json:"resource"`
					ScopeSpans []struct {
						Spans []sinkSpan `json:"spans"`
					} `json:"scopeSpans"`
				} `json:"resourceSpans"`
			}
			if err := json.Unmarshal(sc.Bytes(), &batch); err != nil {
				t.Errorf("otlpsink wrote %q: %v", sc.Text(), err)
				continue
			}
			s.mu.Lock()
			for _, rs := range batch.ResourceSpans {
				service := ""
				for _, a := range rs.Resource.Attributes {
					if a.Key == "service.name" {
						service = a.Value.StringValue
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						sp.Service = service
						s.spans = append(s.spans, sp)
					}
				}
			}
			s.mu.Unlock()
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("otlpsink did not start listening")
	}
	t.Cleanup(s.stop)
	return s
}

// stop closes the sink's stdin (it shuts down) and waits for it.
func (s *otlpSink) stop() {
	_ = s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.cmd.Wait()
}

func (s *otlpSink) received() []sinkSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkSpan(nil), s.spans...)
}

// TestTracesReachCollector runs packs with traces.endpoint set to a real
// OTLP receiver and checks what it received: one taskrunner.run span per
// run, a child per step attempt and per gate wait, with the attributes
// the runbook queries, each span exactly once across the processes that
// drove the run; a collector that is down loses nothing (`runs trace
// --export` sends it later); sealed mode sends only to an allowed host;
// no OTEL_* variable redirects anything.
func TestTracesReachCollector(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := freePort(t)
	writeFile(t, filepath.Join(home, "config.yaml"), "traces:\n  endpoint: http://"+addr+"\n  timeout: 5s\n")
	stella := func(wantExit int, args ...string) string {
		t.Helper()
		cmd := stellaProcess(t, home, args...)
		cmd.Env = append(cmd.Env, "STELLA_KEY_PASSPHRASE_FILE="+filepath.Join(dir, "pass"),
			// The SDK would read these; stella must not.
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:1",
			"OTEL_SDK_DISABLED=true", "OTEL_TRACES_SAMPLER=always_off")
		return wantExitOutput(t, cmd, wantExit, nil)
	}
	runID := func(out string) string {
		t.Helper()
		var res struct {
			RunID string `json:"runId"`
		}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &res); err != nil || res.RunID == "" {
			t.Fatalf("no run id: %v\n%s", err, out)
		}
		return res.RunID
	}
	writeFile(t, filepath.Join(dir, "pass"), "throwaway passphrase\n")
	writeFile(t, filepath.Join(dir, "gated", "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: gated
  version: 0.1.0
  description: A pack for the traces test.
spec:
  inputs:
    - name: canary
      type: string
      required: true
  approvals:
    - id: change
      role: Packs.Approve
  steps:
    - id: build
      run:
        command: ["sh", "-c", "echo building ${{ inputs.canary }}"]
    - id: approve
      gate: {approval: change}
    - id: deploy
      run:
        command: ["sh", "-c", "echo deployed"]
`)
	writeFile(t, filepath.Join(dir, "inputs.json"), `{"canary": "canary-value-5e1f"}`)
	writeFile(t, filepath.Join(dir, "quick", "pack.yaml"), promPack("quick", `    - id: hello
      run:
        command: ["sh", "-c", "echo hello"]
`))
	stella(0, "key", "generate", "--dir", filepath.Join(dir, "pub"), "alice")
	stella(0, "trust", "add", "--key", filepath.Join(dir, "pub", "alice.pub"), "--role", "Packs.Approve", "alice")
	sink := startSink(t, addr)

	// One process parks the run at its gate; another resumes it.
	out := stella(0, "--output", "json", "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "gated"),
		"--inputs", filepath.Join(dir, "inputs.json"))
	id := runID(out)
	if got := sink.received(); len(got) != 1 || got[0].Name != traces.StepSpan || got[0].attr("stepId") != "build" {
		t.Fatalf("after the run parked the collector has %+v, want the build step's span", got)
	}
	time.Sleep(1100 * time.Millisecond) // a gate wait of a second at least
	stella(0, "pack", "approve", "--run", id, "--gate", "approve", "--key", filepath.Join(dir, "pub", "alice.key"), "--comment", "ok")
	stella(0, "pack", "runs", "resume", "--insecure-skip-isolation", "--run", id)

	got := sink.received()
	sort.SliceStable(got, func(i, j int) bool { return got[i].Start < got[j].Start })
	var names []string
	byName := map[string]sinkSpan{}
	ids := map[string]bool{}
	for _, s := range got {
		names = append(names, s.Name+":"+s.attr("stepId"))
		byName[s.Name+":"+s.attr("stepId")] = s
		if ids[s.SpanID] {
			t.Errorf("span %s received twice", s.SpanID)
		}
		ids[s.SpanID] = true
	}
	want := []string{"taskrunner.run:", "taskrunner.step:build", "taskrunner.gate.wait:approve", "taskrunner.step:deploy"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("spans received %v, want %v", names, want)
	}
	root := byName["taskrunner.run:"]
	if root.TraceID != traces.TraceID(id) || root.ParentSpanID != "" || root.Service != "stella" {
		t.Fatalf("run span %+v: trace %s, want %s, no parent, service stella", root, root.TraceID, traces.TraceID(id))
	}
	for _, s := range got {
		if s.TraceID != root.TraceID || (s.Name != traces.RunSpan && s.ParentSpanID != root.SpanID) {
			t.Errorf("span %s %s: trace %s parent %s, want trace %s parent %s", s.Name, s.attr("stepId"), s.TraceID, s.ParentSpanID, root.TraceID, root.SpanID)
		}
		if s.attr("runId") != id || s.attr("packId") != "gated:0.1.0" || s.attr("tenant") != "default" {
			t.Errorf("span %s: runId %q packId %q tenant %q", s.Name, s.attr("runId"), s.attr("packId"), s.attr("tenant"))
		}
		if s.Status.Code != 1 { // STATUS_CODE_OK
			t.Errorf("span %s %s: status %+v, want ok", s.Name, s.attr("stepId"), s.Status)
		}
		b, _ := json.Marshal(s)
		if strings.Contains(string(b), "canary-value-5e1f") {
			t.Errorf("span %s carries the input value: %s", s.Name, b)
		}
	}
	gate := byName["taskrunner.gate.wait:approve"]
	if gate.attr("state") != "approved" || nanos(t, gate.End)-nanos(t, gate.Start) < int64(time.Second) {
		t.Fatalf("gate span %+v: want approved, a wait of 1s or more", gate)
	}
	if !strings.Contains(stella(0, "pack", "runs", "show", id), "trace:     "+root.TraceID) {
		t.Fatal("runs show does not name the trace")
	}
	var shown struct {
		TraceID string `json:"traceId"`
		Spans   []struct {
			SpanID string `json:"spanId"`
			Sent   bool   `json:"sent"`
		} `json:"spans"`
	}
	if err := json.Unmarshal([]byte(stella(0, "--output", "json", "pack", "runs", "trace", id)), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.TraceID != root.TraceID || len(shown.Spans) != 4 {
		t.Fatalf("runs trace: %+v", shown)
	}
	for _, s := range shown.Spans {
		if !s.Sent || !ids[s.SpanID] {
			t.Errorf("runs trace: span %s sent=%v, received=%v", s.SpanID, s.Sent, ids[s.SpanID])
		}
	}

	// The collector is down: the run succeeds all the same, with a
	// warning; `runs trace --export` fails until it is back, then sends
	// exactly the spans it missed.
	sink.stop()
	out = stella(0, "--output", "json", "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "quick"))
	quick := runID(out)
	if !strings.Contains(out, "ERR_PACK_TRACES_UNDELIVERED: spans not delivered to the traces collector") || !strings.Contains(out, "stella pack runs trace "+quick+" --export") {
		t.Fatalf("no warning of the spans not sent:\n%s", out)
	}
	out = stella(10, "pack", "runs", "trace", quick, "--export")
	if !strings.Contains(out, "ERR_PACK_TRACES_UNDELIVERED") || !strings.Contains(out, "(not sent)") {
		t.Fatalf("export to a collector that is down:\n%s", out)
	}
	sink = startSink(t, addr)
	out = stella(0, "pack", "runs", "trace", quick, "--export")
	if strings.Contains(out, "not sent") {
		t.Fatalf("after export:\n%s", out)
	}
	stella(0, "pack", "runs", "trace", quick, "--export") // nothing pending: sends nothing
	got = sink.received()
	if len(got) != 2 || got[0].attr("runId") != quick || got[1].attr("runId") != quick {
		t.Fatalf("the collector got %d spans after the export, want the quick run's 2: %+v", len(got), got)
	}

	// Sealed mode: only an allowlisted collector host.
	out = stella(5, "--sealed", "pack", "runs", "trace", id, "--export")
	if !strings.Contains(out, "ERR_PACK_TRACES_HOST_REFUSED") || !strings.Contains(out, addr) {
		t.Fatalf("sealed export to a host not allowed:\n%s", out)
	}
	if n := len(sink.received()); n != 2 {
		t.Fatalf("sealed mode sent %d spans to a host not allowed", n-2)
	}
}

func nanos(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number of nanoseconds: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// TestTracesHeadersFile: a collector that takes only requests with an
// Authorization header gets no span from stella until traces.headersFile
// names a file with that header, then every span, the ones it missed
// through `runs trace --export`; a malformed headers file is refused
// naming its line, and the header's value is never printed or stored.
func TestTracesHeadersFile(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := freePort(t)
	const token = "Bearer tr4ce-t0ken-9a8b7c6d"
	headers := filepath.Join(dir, "collector-headers")
	config := func(withHeaders bool) {
		c := "traces:\n  endpoint: http://" + addr + "\n  timeout: 5s\n"
		if withHeaders {
			c += "  headersFile: " + headers + "\n"
		}
		writeFile(t, filepath.Join(home, "config.yaml"), c)
	}
	var printed strings.Builder
	stella := func(wantExit int, args ...string) string {
		t.Helper()
		return wantExitOutput(t, stellaProcess(t, home, args...), wantExit, &printed)
	}
	writeFile(t, filepath.Join(dir, "quick", "pack.yaml"), promPack("quick", `    - id: hello
      run:
        command: ["sh", "-c", "echo hello"]
`))
	sink := startSink(t, addr, "-require-header", "Authorization: "+token)

	config(false)
	out := stella(0, "--output", "json", "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "quick"))
	if !strings.Contains(out, "ERR_PACK_TRACES_UNDELIVERED") {
		t.Fatalf("a collector that refuses the spans, no warning:\n%s", out)
	}
	if got := sink.received(); len(got) != 0 {
		t.Fatalf("the collector took %d spans without the header", len(got))
	}
	var res struct {
		RunID string `json:"runId"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &res); err != nil || res.RunID == "" {
		t.Fatalf("no run id: %v\n%s", err, out)
	}

	config(true)
	for _, bad := range []struct{ text, line, want string }{
		{"# the collector's token\nAuthorization " + token + "\n", ":2:", `expected "Name: value"`},
		{"Authorization: " + token + "\nauthorization: " + token + "\n", ":2:", "header Authorization given twice"},
		{"Content-Type: text/plain\n", ":1:", "header Content-Type is set by stella"},
		{"Bad Name: x\n", ":1:", `"Bad Name" is not a header name`},
	} {
		writeFile(t, headers, bad.text)
		out := stella(2, "pack", "runs", "trace", res.RunID, "--export")
		if !strings.Contains(out, "ERR_PACK_CONFIG_INVALID") || !strings.Contains(out, "traces.headersFile "+headers+bad.line) || !strings.Contains(out, bad.want) {
			t.Errorf("headers file %q: want ERR_PACK_CONFIG_INVALID naming %s%s and saying %s:\n%s", bad.text, headers, bad.line, bad.want, out)
		}
	}
	if got := sink.received(); len(got) != 0 {
		t.Fatalf("the collector took %d spans from a malformed headers file", len(got))
	}

	writeFile(t, headers, "# the collector's token\nAuthorization: "+token+"\r\n\nX-Scope-OrgID: sealed-site-1\n")
	stella(0, "pack", "runs", "trace", res.RunID, "--export")
	stella(0, "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "quick"))
	if got := sink.received(); len(got) != 4 || got[0].attr("runId") != res.RunID {
		t.Fatalf("with the header the collector has %d spans, want the missed run's 2 and the next run's 2: %+v", len(got), got)
	}
	if strings.Contains(printed.String(), "tr4ce-t0ken") {
		t.Errorf("stella printed the header's value:\n%s", printed.String())
	}
	_ = filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "tr4ce-t0ken") {
				t.Errorf("%s holds the header's value", p)
			}
		}
		return nil
	})
}

// wantExitOutput runs a stella process, fails the test unless it exits
// with want, and returns what it printed (stdout and stderr), which it
// also adds to printed if set.
func wantExitOutput(t *testing.T, cmd *exec.Cmd, want int, printed *strings.Builder) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if printed != nil {
		printed.Write(out)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("stella %s: exit %d, want %d\n%s", strings.Join(cmd.Args[1:], " "), code, want, out)
	}
	return string(out)
}
