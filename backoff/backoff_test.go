package backoff_test

import (
	"math"
	"testing"
	"time"

	"stellaops.io/stella/backoff"
)

func TestDelay(t *testing.T) {
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	mid := func(n int64) int64 { return n / 2 }
	ms := time.Millisecond
	tests := []struct {
		name    string
		p       backoff.Policy
		attempt int
		want    time.Duration
	}{
		{"zero policy", backoff.Policy{}, 3, 0},
		{"first", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 1, 250 * ms},
		{"attempt 0 is the first", backoff.Policy{Initial: 250 * ms}, 0, 250 * ms},
		{"doubles by default", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 3, time.Second},
		{"capped", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 10, 5 * time.Second},
		{"no cap", backoff.Policy{Initial: time.Second}, 11, 1024 * time.Second},
		{"huge attempt saturates", backoff.Policy{Initial: time.Second}, 1000, math.MaxInt64},
		{"multiplier", backoff.Policy{Initial: 30 * time.Second, Multiplier: 3, Max: 5 * time.Minute}, 3, 270 * time.Second},
		{"multiplier hits max", backoff.Policy{Initial: 30 * time.Second, Multiplier: 3, Max: 5 * time.Minute}, 4, 5 * time.Minute},
		{"fractional multiplier", backoff.Policy{Initial: time.Second, Multiplier: 1.5}, 3, 2250 * ms},
		{"multiplier below 1 is constant", backoff.Policy{Initial: time.Second, Multiplier: 0.5}, 5, time.Second},
		{"initial above max", backoff.Policy{Initial: 10 * time.Second, Max: time.Second}, 1, time.Second},
		{"jitter low", backoff.Policy{Initial: time.Second, Jitter: 0.1, Rand: low}, 1, 900 * ms},
		{"jitter high", backoff.Policy{Initial: time.Second, Jitter: 0.1, Rand: high}, 1, 1100 * ms},
		{"jitter middle", backoff.Policy{Initial: time.Second, Jitter: 0.1, Rand: mid}, 1, time.Second},
		{"jitter after cap", backoff.Policy{Initial: time.Second, Max: 2 * time.Second, Jitter: 0.5, Rand: high}, 5, 3 * time.Second},
		{"jitter bounded to 1", backoff.Policy{Initial: time.Second, Jitter: 7, Rand: low}, 1, 0},
	}
	for _, tc := range tests {
		if got := tc.p.Delay(tc.attempt); got != tc.want {
			t.Errorf("%s: Delay(%d) = %v, want %v", tc.name, tc.attempt, got, tc.want)
		}
	}
}

// TestJitterRange: with the default source every wait stays within ±Jitter.
func TestJitterRange(t *testing.T) {
	p := backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.1}
	for attempt := 1; attempt <= 8; attempt++ {
		base := backoff.Policy{Initial: p.Initial, Max: p.Max}.Delay(attempt)
		for range 200 {
			d := p.Delay(attempt)
			if d < base-base/10 || d > base+base/10 {
				t.Fatalf("attempt %d: %v outside %v ±10%%", attempt, d, base)
			}
		}
	}
}
