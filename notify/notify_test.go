package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/backoff"
)

var t0 = time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)

func events(n int) []Event {
	var out []Event
	for i := 0; i < n; i++ {
		out = append(out, Event{ID: fmt.Sprintf("run:default:x#%d", i), Type: "pack.run.step.succeeded", Time: t0.Add(time.Duration(i) * time.Second),
			RunID: "run:default:x", PackID: "demo:1.0.0", Tenant: "default", StepID: fmt.Sprintf("s%d", i)})
	}
	return out
}

// testSpool has no real waits; it records them.
func testSpool(t *testing.T, dir string, hooks ...Hook) (*Spool, *[]time.Duration) {
	t.Helper()
	var waits []time.Duration
	s := Open(dir, Options{Hooks: hooks, MaxAttempts: 3, Backoff: backoff.Policy{Initial: time.Second, Max: 4 * time.Second},
		Env: []string{"PATH=/usr/bin:/bin"}, Now: func() time.Time { return t0 },
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }})
	return s, &waits
}

// flakyHook is a command that fails its first `fails` calls, then appends
// each event it reads to out.
func flakyHook(t *testing.T, fails int) (Hook, string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "received")
	script := fmt.Sprintf(`n=$(cat %[1]s/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/count
if [ $n -le %[2]d ]; then echo "relay down ($n)" >&2; exit 1; fi
cat >> %[3]s; echo >> %[3]s`, dir, fails, out)
	return Hook{Name: "relay", Command: []string{"sh", "-c", script}}, out
}

func received(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("hook got %q: %v", l, err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

func TestFlakyHookGetsEveryEventOnce(t *testing.T) {
	dir := t.TempDir()
	h, out := flakyHook(t, 2)
	s, waits := testSpool(t, dir, h)
	ctx := context.Background()
	evs := events(3)
	if err := s.Append(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	// The same events seen again (another command reading the same
	// timeline) are not spooled twice.
	if err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (Report{Delivered: 3, Failed: 2}) {
		t.Errorf("report %+v", rep)
	}
	if !cmp.Equal(*waits, []time.Duration{time.Second, 2 * time.Second}) {
		t.Errorf("waits %v, want the backoff 1s, 2s", *waits)
	}
	// Delivering again, from another Spool (another process), sends nothing.
	s2, _ := testSpool(t, dir, h)
	if rep, err := s2.Deliver(ctx); err != nil || rep != (Report{}) {
		t.Errorf("second deliver: %+v %v", rep, err)
	}
	want := []string{"run:default:x#0", "run:default:x#1", "run:default:x#2"}
	if diff := cmp.Diff(want, received(t, out)); diff != "" {
		t.Errorf("hook received (-want +got):\n%s", diff)
	}
	if dl, err := DeadLetters(dir); err != nil || len(dl) != 0 {
		t.Errorf("dead letters %v %v", dl, err)
	}
}

func TestFailingHookEndsInDeadLetters(t *testing.T) {
	dir := t.TempDir()
	h, _ := flakyHook(t, 1000)
	good, out := flakyHook(t, 0)
	good.Name = "archive"
	good.Events = []string{"pack.run.*"}
	s, _ := testSpool(t, dir, h, good)
	ctx := context.Background()
	evs := events(2)
	if err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (Report{Delivered: 2, Failed: 6, Dead: 2}) {
		t.Errorf("report %+v", rep)
	}
	// The dead-letter file, line by line, in the agreed format.
	b, err := os.ReadFile(filepath.Join(dir, "dead-letter.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("dead letters:\n%s", b)
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		ev := m["event"].(map[string]any)
		if m["hook"] != "relay" || m["attempts"] != 3.0 || m["time"] != "2026-11-28T01:00:00Z" || ev["id"] != evs[i].ID || ev["type"] != evs[i].Type || ev["runId"] != "run:default:x" {
			t.Errorf("line %d: %s", i, l)
		}
		if e, _ := m["error"].(string); !strings.Contains(e, "hook relay: command sh: exit status 1 (relay down (") {
			t.Errorf("line %d error %q", i, e)
		}
		for _, k := range []string{"id", "type", "time", "runId", "packId", "tenant", "stepId", "gate", "message"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("line %d: event has no %q", i, k)
			}
		}
	}
	// The other hook was not held back.
	if got := received(t, out); len(got) != 2 {
		t.Errorf("archive hook received %v", got)
	}
	// Nothing is tried again.
	if rep, err := s.Deliver(ctx); err != nil || rep != (Report{}) {
		t.Errorf("second deliver: %+v %v", rep, err)
	}
}

func TestDeliverStopsWithContextAndGoesOn(t *testing.T) {
	dir := t.TempDir()
	h, out := flakyHook(t, 1)
	s, _ := testSpool(t, dir, h)
	ctx, cancel := context.WithCancel(context.Background())
	s.opts.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	if err := s.Append(context.Background(), events(2)); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Deliver(ctx)
	if err != nil || rep != (Report{Failed: 1, Pending: 2}) {
		t.Fatalf("report %+v, %v", rep, err)
	}
	s2, _ := testSpool(t, dir, h)
	rep, err = s2.Deliver(context.Background())
	if err != nil || rep != (Report{Delivered: 2}) {
		t.Fatalf("resumed report %+v, %v", rep, err)
	}
	if got := received(t, out); len(got) != 2 || got[0] != "run:default:x#0" {
		t.Errorf("received %v", got)
	}
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e Event
		if err := json.Unmarshal(b, &e); err != nil || r.Method != http.MethodPost || r.Header.Get("X-Stella-Event") != e.Type {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	hook := Hook{Name: "chat", URL: srv.URL + "/hook", Events: []string{"pack.run.step.*"}}
	if err := hook.Check(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	s, _ := testSpool(t, dir, hook)
	s.opts.Allow = func(host string) error {
		if host != u.Host {
			return fmt.Errorf("host %s not allowed", host)
		}
		return nil
	}
	evs := append(events(2), Event{ID: "other", Type: "pack.approval.approved"})
	if err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Deliver(context.Background())
	if err != nil || rep != (Report{Delivered: 2}) {
		t.Fatalf("report %+v %v", rep, err)
	}
	if len(got) != 2 || got[0].ID != evs[0].ID || got[1].StepID != "s1" || !got[1].Time.Equal(evs[1].Time) {
		t.Errorf("server got %+v", got)
	}

	// Sealed: a host the allowlist does not permit is never contacted;
	// the event is dead-lettered at once with the reason.
	dir2 := t.TempDir()
	s2, _ := testSpool(t, dir2, hook)
	s2.opts.Allow = func(host string) error { return fmt.Errorf("host %s is not in notify.sealedAllowlist", host) }
	got = nil
	if err := s2.Append(context.Background(), events(1)); err != nil {
		t.Fatal(err)
	}
	rep, err = s2.Deliver(context.Background())
	if err != nil || rep != (Report{Failed: 1, Dead: 1}) {
		t.Fatalf("sealed report %+v %v", rep, err)
	}
	dl, err := DeadLetters(dir2)
	if err != nil || len(dl) != 1 || dl[0].Attempts != 1 || !strings.Contains(dl[0].Error, "webhook host not allowed: host "+u.Host+" is not in notify.sealedAllowlist") {
		t.Fatalf("dead letters %+v %v", dl, err)
	}
	if len(got) != 0 {
		t.Errorf("refused host was contacted: %v", got)
	}
}

func TestHookCheck(t *testing.T) {
	for _, h := range []Hook{
		{Name: "", Command: []string{"x"}},
		{Name: "a"},
		{Name: "a", Command: []string{"x"}, URL: "https://h/"},
		{Name: "a", URL: "ftp://h/"},
		{Name: "a", Command: []string{"x"}, Events: []string{"["}},
		{Name: "../x", Command: []string{"x"}},
	} {
		if err := h.Check(); !errors.Is(err, ErrHook) {
			t.Errorf("%+v: %v, want ErrHook", h, err)
		}
	}
}

// Two deliverers at once (two commands ending together) and an appender:
// the hook still receives every event once, in order.
func TestConcurrentDeliverers(t *testing.T) {
	dir := t.TempDir()
	h, out := flakyHook(t, 1)
	evs := events(6)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, _ := testSpool(t, dir, h)
			if err := s.Append(context.Background(), evs[:2*(i+1)]); err != nil {
				t.Error(err)
			}
			if _, err := s.Deliver(context.Background()); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	s, _ := testSpool(t, dir, h)
	if _, err := s.Deliver(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range evs {
		want = append(want, e.ID)
	}
	if diff := cmp.Diff(want, received(t, out)); diff != "" {
		t.Errorf("hook received (-want +got):\n%s", diff)
	}
}
