package serve_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/metrics"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/serve"
)

// BenchmarkFollowers: `stella serve` streaming (SSE) the log of a run
// that writes STELLA_BENCH_SERVE_MIB (default 10) MiB of log lines, to 50
// concurrent followers and to one; each follower connects before the
// first line and reads to the end event. Reported: the time per follower
// with 50, over the time of the one (target: ≤ 1, the per-follower cost
// stays flat), and the time of the 50 over the one.
func BenchmarkFollowers(b *testing.B) {
	mib := 10
	if v := os.Getenv("STELLA_BENCH_SERVE_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("STELLA_BENCH_SERVE_MIB=%q", v)
		}
		mib = n
	}
	var t1, t50 time.Duration
	for i := 0; i < b.N; i++ {
		t1 += followRun(b, 1, mib)
		t50 += followRun(b, 50, mib)
	}
	b.ReportMetric(float64(t1.Milliseconds())/float64(b.N), "ms/1-follower")
	b.ReportMetric(float64(t50.Milliseconds())/float64(b.N), "ms/50-followers")
	b.ReportMetric(float64(t50)/50/float64(t1), "per-follower/one")
	b.ReportMetric(float64(t50)/float64(t1), "50/one")
}

// followRun starts a run, n SSE followers of its log, writes mib MiB of
// lines and ends the run; it returns the time from the first line to the
// last follower's end event, checking every follower got every line.
func followRun(b *testing.B, n, mib int) time.Duration {
	b.Helper()
	rs := runs.Open(cachetest.Open(b), b.TempDir(), nil)
	defer rs.Close()
	// The default poll, as `stella serve` runs.
	srv := httptest.NewServer(serve.Handler(serve.Options{Runs: rs, Metrics: metrics.NewRegistry(rs, nil)}))
	defer srv.Close()
	r := startRun(b, rs)
	url := srv.URL + "/api/runs/" + r.rec.ID + "/logs"
	line := strings.Repeat("x", 90)
	lines := mib << 20 / (len(line) + 10)

	var wg sync.WaitGroup
	ready := make(chan struct{}, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- countLines(url, lines, ready)
		}()
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	start := time.Now()
	for i := 0; i < lines; i++ {
		r.line("big", line+fmt.Sprintf("%09d", i))
	}
	r.end(run.Succeeded)
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return d
}

// countLines follows url and checks it gets want log events, then end.
func countLines(url string, want int, ready chan<- struct{}) error {
	req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ready <- struct{}{}
		return err
	}
	defer resp.Body.Close()
	ready <- struct{}{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	got := 0
	for sc.Scan() {
		switch sc.Text() {
		case "event: log":
			got++
		case "event: end":
			if got != want {
				return fmt.Errorf("follower got %d lines, want %d", got, want)
			}
			return nil
		}
	}
	return fmt.Errorf("stream ended without an end event after %d lines: %v", got, sc.Err())
}
