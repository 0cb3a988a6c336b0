package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestConsoleShowsLiveRun opens the run console of `stella serve` in a
// real headless Chromium (Debian's package) while a real `stella pack
// run` goes through a step, a gate and a step: the page shows the first
// step running then succeeded, the gate waiting with the exact approve
// command, and, once the gate is approved (the CLI) and the run resumed,
// the last step and the run succeeded. A log line with markup and an
// escape sequence shows as text, escaped. The run list links to the
// run. Every request the browser makes goes to 127.0.0.1, and the page
// reports no error (a script error, or anything the
// Content-Security-Policy blocked, such as a file from another host or
// an inline script). A screenshot is kept in
// $STELLA_TEST_ARTIFACTS (else the test's temporary folder; the log says
// where).
func TestConsoleShowsLiveRun(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	stella := func(args ...string) string {
		t.Helper()
		cmd := stellaProcess(t, home, args...)
		cmd.Env = append(cmd.Env, "STELLA_KEY_PASSPHRASE_FILE="+filepath.Join(dir, "pass"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("stella %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	writeFile(t, filepath.Join(dir, "pass"), "throwaway passphrase\n")
	goFile := filepath.Join(dir, "go")
	writeFile(t, filepath.Join(dir, "console", "pack.yaml"), strings.Replace(promPack("console", `    - id: first
      run:
        command: ["sh", "-c", "printf 'hello <b>bold</b> \\033[31mred\\n'; i=0; until [ -f `+goFile+` ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done"]
    - id: approve
      gate: {approval: change}
    - id: last
      run:
        command: ["sh", "-c", "echo done"]
`), "  steps:\n", "  approvals:\n    - id: change\n      role: Packs.Approve\n  steps:\n", 1))
	stella("key", "generate", "--dir", filepath.Join(dir, "pub"), "alice")
	stella("trust", "add", "--key", filepath.Join(dir, "pub", "alice.pub"), "--role", "Packs.Approve", "alice")

	addr := freePort(t)
	srv := startStella(t, home, "serve", "--listen", addr)
	base := "http://" + addr
	waitHTTP(t, base+"/healthz", 20*time.Second)
	runner := startStella(t, home, "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "console"))
	id := waitRunID(t, base)

	// The browser: Debian's chromium, headless, with a fresh profile and
	// none of its own background traffic.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1100, 1000),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()

	// Every request the page makes, and every error it reports (a
	// script error, a blocked resource, a Content-Security-Policy
	// violation).
	var mu sync.Mutex
	var requests, pageErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError && !strings.HasSuffix(e.Entry.URL, "/favicon.ico") {
				pageErrors = append(pageErrors, e.Entry.Text+" "+e.Entry.URL)
			}
		case *runtime.EventExceptionThrown:
			pageErrors = append(pageErrors, e.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	page := base + "/console/packs/runs/" + url.PathEscape(id)
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	text := func(js string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	state := func(sel string) string {
		return text(`(document.querySelector(` + jsString(sel) + `) || {textContent: ''}).textContent`)
	}
	waitPage := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s; it shows:\n%s", what, text(`document.body.innerText`))
			}
		}
	}
	nextCmds := func() []string {
		var out []string
		_ = json.Unmarshal([]byte(text(`JSON.stringify(Array.from(document.querySelectorAll('#next .cmd')).map(e => e.textContent))`)), &out)
		return out
	}

	waitPage("the first step running", func() bool { return state("#step-first .state") == "running" })
	waitPage("the first log line", func() bool { return strings.Contains(state("#log"), "hello") })
	if l := state("#log"); !strings.Contains(l, `[first] hello <b>bold</b> \x1b[31mred`) {
		t.Errorf("log shows %q, want the markup as text and ESC escaped", l)
	}
	if n := text(`String(document.querySelectorAll('#log b').length)`); n != "0" {
		t.Errorf("the log made %s <b> elements", n)
	}
	writeFile(t, goFile, "")
	waitPage("the first step succeeded and the gate waiting", func() bool {
		return state("#step-first .state") == "succeeded" && state("#gate-state") == "waiting" && state("#run-state") == "awaiting-approval"
	})
	approve := "stella pack approve --run " + id + " --gate approve --key KEY --comment '...'"
	waitPage("the approve command", func() bool {
		c := nextCmds()
		return len(c) == 3 && c[0] == approve
	})
	if c := nextCmds(); c[1] != "stella pack approve --offline-request --run "+id+" --gate approve -o request.stella.tar" || c[2] != "stella pack runs resume --run "+id {
		t.Errorf("next commands %q", c)
	}
	if a := state("#gate-approvals"); a != "0/1" {
		t.Errorf("approvals %q, want 0/1", a)
	}
	// The page shows what `stella pack run` printed.
	if out := runner.wait(t); !strings.Contains(out, "next: "+approve) {
		t.Errorf("stella pack run printed:\n%s\nwant next: %s", out, approve)
	}
	shot(t, ctx, "console-gate.png")

	stella("pack", "approve", "--run", id, "--gate", "approve", "--key", filepath.Join(dir, "pub", "alice.key"), "--comment", "ok")
	stella("pack", "runs", "resume", "--insecure-skip-isolation", "--run", id)
	waitPage("the last step and the run succeeded", func() bool {
		return state("#step-last .state") == "succeeded" && state("#run-state") == "succeeded" && state("#gate-state") == "approved"
	})
	waitPage("the last step's log line", func() bool { return strings.Contains(state("#log"), "[last] done") })
	if a := state("#gate-approvals"); a != "1/1" {
		t.Errorf("approvals %q, want 1/1", a)
	}
	shot(t, ctx, "console-succeeded.png")

	// The run list links to the run, with its end state.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/packs/runs")); err != nil {
		t.Fatal(err)
	}
	waitPage("the run in the run list", func() bool {
		return strings.Contains(text(`document.querySelector('#runs tbody').innerText`), id)
	})
	if href := text(`document.querySelector('#runs tbody a').getAttribute('href')`); href != "/console/packs/runs/"+url.PathEscape(id) {
		t.Errorf("the run list links to %q", href)
	}
	if row := text(`document.querySelector('#runs tbody tr').innerText`); !strings.Contains(row, "console:0.1.0") || !strings.Contains(row, "succeeded") {
		t.Errorf("the run list shows %q", row)
	}

	mu.Lock()
	defer mu.Unlock()
	var logs bool
	for _, u := range requests {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() != "127.0.0.1" {
			t.Errorf("the browser asked for %s, not on 127.0.0.1", u)
		}
		logs = logs || strings.HasPrefix(pu.Path, "/api/runs/") && strings.HasSuffix(pu.Path, "/logs")
	}
	if !logs {
		t.Errorf("the browser never opened the log stream: %q", requests)
	}
	t.Logf("%d browser requests, all to 127.0.0.1", len(requests))
	if len(pageErrors) > 0 {
		t.Errorf("the page reported errors: %q", pageErrors)
	}
	if srv.exited() {
		t.Fatalf("stella serve exited: %v\n%s", srv.err, srv.errb.String())
	}
}

// waitRunID waits until /api/runs lists one run and returns its id.
func waitRunID(t *testing.T, base string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/api/runs")
		if err != nil {
			t.Fatal(err)
		}
		var list []struct {
			ID string `json:"id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if len(list) == 1 {
			return list[0].ID
		}
	}
	t.Fatal("the run never appeared in /api/runs")
	return ""
}

// shot saves a PNG of the page in $STELLA_TEST_ARTIFACTS, else in the
// test's temporary folder, and logs where.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := os.Getenv("STELLA_TEST_ARTIFACTS")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
