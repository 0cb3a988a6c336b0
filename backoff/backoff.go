// Package backoff computes the waits between retries: exponential growth
// from an initial delay, capped, with symmetric jitter so that retries of
// many clients do not fall into step. The registry transport (mirror) and
// the runner's step retry policy (the pack's failure.backoff: initial,
// multiplier, max) share it.
package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// DefaultMultiplier is the growth of a Policy whose Multiplier is zero.
const DefaultMultiplier = 2

// Policy is how the wait grows from one retry to the next. The zero value
// never waits.
type Policy struct {
	// Initial is the wait before the first retry.
	Initial time.Duration
	// Multiplier is the growth from one wait to the next: zero means
	// DefaultMultiplier, values below 1 mean 1 (constant waits).
	Multiplier float64
	// Max caps every wait (before jitter); zero means no cap.
	Max time.Duration
	// Jitter spreads each wait uniformly over ±Jitter of itself (0.1 is
	// ±10%); zero means none, and it is bounded to [0, 1].
	Jitter float64
	// Rand returns a number in [0, n) for the jitter; nil means
	// math/rand/v2's Int64N. Tests pass a fixed function for
	// deterministic waits.
	Rand func(n int64) int64
}

// Delay returns the wait before retry number attempt (1 for the first
// retry): Initial × Multiplier^(attempt-1), capped by Max, then jittered.
// An attempt below 1 counts as 1.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Initial
	if d <= 0 {
		return 0
	}
	m := p.Multiplier
	switch {
	case m == 0:
		m = DefaultMultiplier
	case m < 1:
		m = 1
	}
	limit := p.Max
	if limit <= 0 {
		limit = math.MaxInt64
	}
	for i := 1; i < attempt && d < limit && m > 1; i++ {
		next := float64(d) * m
		if next >= float64(limit) {
			d = limit
			break
		}
		d = time.Duration(next)
	}
	d = min(d, limit)
	j := min(max(p.Jitter, 0), 1)
	if j == 0 {
		return d
	}
	spread := int64(float64(d) * j) // each side
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Int64N
	}
	return d - time.Duration(spread) + time.Duration(rnd(2*spread+1))
}
