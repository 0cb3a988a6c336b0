package main

import (
	"testing"
	"time"
)

// TestRateETA: the time left is what remains at the mean rate so far (it
// read 0s for a whole transfer when seconds were taken for nanoseconds).
func TestRateETA(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		elapsed     time.Duration
		rate        float64
		eta         string
	}{
		{100 << 20, 1 << 30, 10 * time.Second, 10 << 20, "1m32s"},
		{1 << 30, 4 << 30, time.Minute, float64(1<<30) / 60, "3m0s"},
		{512, 1024, time.Second, 512, "1s"},
		{0, 1024, time.Second, 0, "--"},
		{1024, 1024, time.Second, 1024, "--"},
		{10, 20, 0, 0, "--"},
	} {
		rate, eta := rateETA(c.done, c.total, c.elapsed)
		if rate != c.rate || eta != c.eta {
			t.Errorf("%d of %d in %v: %.0f B/s, ETA %s; want %.0f, %s", c.done, c.total, c.elapsed, rate, eta, c.rate, c.eta)
		}
	}
}
