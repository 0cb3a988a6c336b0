package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestProgressLine: on a terminal the line shows label, percentage, bytes,
// rate and ETA; when not a terminal (or --quiet) nothing is written.
func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, enabled: true}
	p.relabel("backup-database:0.4.2", 4<<20)
	p.set(1<<20, 4<<20)
	p.set(4<<20, 4<<20)
	p.finish()
	out := b.String()
	for _, want := range []string{"backup-database:0.4.2", "100.0%", "4.0 MiB / 4.0 MiB", "/s", "ETA"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress line %q lacks %q", out, want)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("finish must end the line: %q", out)
	}

	var quiet bytes.Buffer
	s := &session{stderr: &quiet, quiet: true}
	q := s.newProgress("x")
	q.set(1, 2)
	q.finish()
	if quiet.Len() != 0 {
		t.Errorf("progress wrote %q when not on a terminal", quiet.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "700MB": 700e6, "512m": 512 << 20, "1048576": 1 << 20, "3KiB": 3 << 10} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1G", "4XB", "GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
