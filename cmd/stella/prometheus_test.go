package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireTool returns the path of a tool .ci/run installs: its absence
// fails under CI (or STELLA_REQUIRE_TOOLS) and skips, saying so, elsewhere.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed: apt-get install -y %s (.ci/run installs it)", name, pkg)
		if requireTools() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// freePort returns a loopback address free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s (last error %v)", url, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery returns the value of the one sample a PromQL query gives, or
// false when it gives none.
func promQuery(t *testing.T, prom, q string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s", q, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	if len(r.Data.Result) > 1 {
		t.Fatalf("query %s: %d series, want one", q, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %v", q, r.Data.Result[0].Value)
	}
	return v, true
}

// eventually waits until the query's value satisfies ok (Prometheus
// scrapes every second).
func eventually(t *testing.T, prom, q, want string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		v, found := promQuery(t, prom, q)
		if found && ok(v) {
			return
		}
		last = "no sample"
		if found {
			last = strconv.FormatFloat(v, 'g', -1, 64)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("Prometheus: %s = %s, want %s", q, last, want)
}

func is(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// TestPrometheusScrapesServe starts the real Prometheus (Debian's
// package) on loopback, lets it scrape `stella serve` every second while
// runs start, park at a gate, are approved and end, and asserts what its
// queries answer for each metric; promtool accepts /metrics.
func TestPrometheusScrapesServe(t *testing.T) {
	promBin := requireTool(t, "prometheus", "prometheus")
	promtool := requireTool(t, "promtool", "prometheus")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	stella := func(args ...string) string {
		t.Helper()
		cmd := stellaProcess(t, home, args...)
		cmd.Env = append(cmd.Env, "STELLA_KEY_PASSPHRASE_FILE="+filepath.Join(dir, "pass"))
		out, err := cmd.CombinedOutput()
		if err != nil && !strings.Contains(strings.Join(args, " "), "failing") {
			t.Fatalf("stella %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	writeFile(t, filepath.Join(dir, "pass"), "throwaway passphrase\n")
	writeFile(t, filepath.Join(dir, "quick", "pack.yaml"), promPack("quick", `    - id: hello
      run:
        command: ["sh", "-c", "echo hello"]
`))
	writeFile(t, filepath.Join(dir, "failing", "pack.yaml"), promPack("failing", `    - id: boom
      run:
        command: ["sh", "-c", "exit 3"]
`))
	writeFile(t, filepath.Join(dir, "waiting", "pack.yaml"), promPack("waiting", `    - id: wait
      run:
        command: ["sh", "-c", "i=0; until [ -f `+filepath.Join(dir, "go")+` ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done"]
`))
	writeFile(t, filepath.Join(dir, "gated", "pack.yaml"), strings.Replace(promPack("gated", `    - id: approve
      gate: {approval: change}
`), "  steps:\n", "  approvals:\n    - id: change\n      role: Packs.Approve\n  steps:\n", 1))
	stella("key", "generate", "--dir", filepath.Join(dir, "pub"), "alice")
	stella("trust", "add", "--key", filepath.Join(dir, "pub", "alice.pub"), "--role", "Packs.Approve", "alice")

	serveAddr := freePort(t)
	srv := startStella(t, home, "serve", "--listen", serveAddr)
	waitHTTP(t, "http://"+serveAddr+"/healthz", 20*time.Second)

	promAddr := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: stella
    static_configs:
      - targets: ["%s"]
`, serveAddr))
	prom := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promLog strings.Builder
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = prom.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = prom.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = prom.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	}()
	promURL := "http://" + promAddr
	waitHTTP(t, promURL+"/-/ready", 30*time.Second)
	eventually(t, promURL, `up{job="stella"}`, "1", is(1))

	// A run in flight is active.
	runner := startStella(t, home, "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "waiting"))
	eventually(t, promURL, `pack_run_active{pack="waiting",tenant="default"}`, "1", is(1))
	writeFile(t, filepath.Join(dir, "go"), "")
	select {
	case <-runner.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting run did not end")
	}
	eventually(t, promURL, `pack_run_active{pack="waiting",tenant="default"}`, "0", is(0))
	eventually(t, promURL, `pack_runs_total{pack="waiting",tenant="default",result="succeeded"}`, "1", is(1))

	stella("pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "quick"))
	stella("pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "failing"))
	eventually(t, promURL, `pack_runs_total{pack="quick",tenant="default",result="succeeded"}`, "1", is(1))
	eventually(t, promURL, `pack_runs_total{pack="failing",tenant="default",result="failed"}`, "1", is(1))
	eventually(t, promURL, `pack_run_success_ratio{pack="quick"}`, "1", is(1))
	eventually(t, promURL, `pack_run_success_ratio{pack="failing"}`, "0", is(0))
	eventually(t, promURL, `pack_step_duration_seconds_count{pack="failing",kind="run"}`, "1", is(1))
	eventually(t, promURL, `pack_step_duration_seconds_bucket{pack="waiting",kind="run",le="+Inf"}`, "1", is(1))
	eventually(t, promURL, `histogram_quantile(0.5, pack_step_duration_seconds_bucket{pack="quick",kind="run"})`, "under 0.5s", func(v float64) bool { return v > 0 && v <= 0.5 })
	eventually(t, promURL, `pack_egress_denied_total{pack="quick"}`, "0", is(0))

	// A run parked at a gate: the wait shows, then the decision's.
	out := stella("--output", "json", "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "gated"))
	var res struct {
		RunID string `json:"runId"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &res); err != nil || res.State != "awaiting-approval" {
		t.Fatalf("gated run: %v %q\n%s", err, res.State, out)
	}
	eventually(t, promURL, `pack_gate_waiting_seconds{pack="gated"}`, "> 0", func(v float64) bool { return v > 0 })
	eventually(t, promURL, `pack_run_active{pack="gated"}`, "0 (parked)", is(0))
	time.Sleep(1100 * time.Millisecond) // a wait of at least a second
	stella("pack", "approve", "--run", res.RunID, "--gate", "approve", "--key", filepath.Join(dir, "pub", "alice.key"), "--comment", "ok")
	stella("pack", "runs", "resume", "--insecure-skip-isolation", "--run", res.RunID)
	eventually(t, promURL, `pack_gate_wait_seconds_count{pack="gated"}`, "1", is(1))
	eventually(t, promURL, `pack_gate_wait_seconds_sum{pack="gated"}`, ">= 1", func(v float64) bool { return v >= 1 })
	eventually(t, promURL, `pack_gate_waiting_seconds{pack="gated"}`, "0", is(0))
	eventually(t, promURL, `sum(pack_runs_total{result="succeeded"})`, "3", is(3))
	eventually(t, promURL, `count(pack_run_active)`, "4 packs", is(4))

	// What Prometheus scraped passes promtool, and names no run.
	resp, err := http.Get("http://" + serveAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(string(body))
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
	if strings.Contains(string(body), "run:default") {
		t.Fatal("/metrics names a run id")
	}
	if srv.exited() {
		t.Fatalf("stella serve exited: %v\n%s", srv.err, srv.errb.String())
	}
}

func promPack(name, steps string) string {
	return `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: ` + name + `
  version: 0.1.0
  description: A pack for the Prometheus test.
spec:
  steps:
` + steps
}
