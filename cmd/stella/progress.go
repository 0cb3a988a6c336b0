package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"stellaops.io/stella/display"
)

// progress draws one progress line on a terminal: bytes, rate and ETA. It is
// silent when stderr is not a terminal or with --quiet. Safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	total   int64
	done    int64
	start   time.Time
	last    time.Time
	enabled bool
	drawn   bool
}

func (s *session) newProgress(label string) *progress {
	return &progress{w: s.stderr, label: display.Line(label), start: time.Now(), enabled: s.interactive()}
}

// relabel starts a new line for another object (e.g. the next artifact).
func (p *progress) relabel(label string, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		p.draw(true)
		fmt.Fprintln(p.w)
	}
	p.label, p.total, p.done, p.start, p.drawn = display.Line(label), total, 0, time.Now(), false
}

// setter is p.set, or nil when p draws nothing: a loader told of no
// progress skips what only a bar needs (a pack's listing then takes no
// size, so no stat, a file).
func (p *progress) setter() func(done, total int64) {
	if p == nil || !p.enabled {
		return nil
	}
	return p.set
}

func (p *progress) set(done, total int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.draw(false)
}

func (p *progress) draw(final bool) {
	if !p.enabled {
		return
	}
	p.last = time.Now()
	rate, eta := rateETA(p.done, p.total, time.Since(p.start))
	if final {
		eta = "--"
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "\r%-40.40s %5.1f%% %10s / %-10s %10s/s  ETA %-6s", p.label, pct, display.Bytes(p.done), display.Bytes(p.total), display.Bytes(int64(rate)), eta)
	p.drawn = true
}

// rateETA is the mean rate since the start, in bytes per second, and the
// time left at that rate ("--" when it cannot be told).
func rateETA(done, total int64, elapsed time.Duration) (rate float64, eta string) {
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	if rate <= 0 || total <= done {
		return rate, "--"
	}
	left := time.Duration(float64(total-done) / rate * float64(time.Second))
	return rate, left.Round(time.Second).String()
}

// finish ends the line.
func (p *progress) finish() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		p.draw(true)
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// parseSize reads sizes such as 4GiB, 700MB, 512m, 1048576, 1.5GiB: a
// decimal number (digits, at most one point) and an optional unit in any
// case, the whole string, of at least one byte and at most what an int64
// holds. Anything else (NaN, Inf, exponents, hex, trailing words, 0.1
// bytes) is refused rather than read as something else.
func parseSize(s string) (int64, error) {
	bad := func() (int64, error) {
		return 0, usageError(fmt.Sprintf("size %q: expected a positive number of bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s))
	}
	i, dot := 0, false
	for ; i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' && !dot); i++ {
		dot = dot || s[i] == '.'
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	if num == "" || num == "." {
		return bad()
	}
	n, err := strconv.ParseFloat(num, 64)
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	// 2^63 is a float64 exactly; anything from it up overflows an int64.
	if err != nil || !ok || n*mult < 1 || n*mult >= 1<<63 {
		return bad()
	}
	return int64(n * mult), nil
}
