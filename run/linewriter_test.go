package run

import (
	"strings"
	"testing"

	"stellaops.io/stella/plan"
)

// TestLineFramingAcrossWrites: however a stream is cut into writes, the
// records joined back give the same lines, in order, and the step's last
// line is the tail's last; a line arriving in pieces is held up to
// maxLine and cut there, so a line never grows the held buffer beyond it.
func TestLineFramingAcrossWrites(t *testing.T) {
	full := []byte("first\nsecond line\n\n" + strings.Repeat("a longer line of text ", 400) + "\nafter it\nlast, unterminated")
	want := frame(t, [][]byte{full})
	if n := strings.Count(want, "\n"); n != 5 {
		t.Fatalf("framing of the whole stream: %d lines", n+1)
	}
	for _, cut := range []int{1, 3, 7, 4096, 5000} {
		if got := frame(t, split(full, cut)); got != want {
			t.Errorf("writes of %d bytes: %q…, want %q…", cut, got[:40], want[:40])
		}
	}
	long := []byte(strings.Repeat("y", 2*maxLine+3) + "\nlast, unterminated")
	got := strings.Split(frame(t, split(long, 1000)), "\n")
	if len(got) != 4 || len(got[0]) != maxLine || len(got[1]) != maxLine || got[2] != "yyy" {
		t.Errorf("a %d-byte line in pieces: records of %d, %d, %q", 2*maxLine+3, len(got[0]), len(got[1]), got[2])
	}
}

func split(b []byte, size int) [][]byte {
	var writes [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		writes = append(writes, b[:n])
		b = b[n:]
	}
	return writes
}

// frame writes each slice to a lineWriter and returns its records joined
// by '\n'.
func frame(t *testing.T, writes [][]byte) string {
	t.Helper()
	var records []string
	e := &Engine{Log: func(l Line) { records = append(records, strings.Clone(l.Msg)) }}
	d := &driver{e: e, pl: &plan.Plan{}, rec: &Record{}, tails: map[string]*tail{}}
	w := d.lineWriter("s", "stdout")
	for _, p := range writes {
		if n, err := w.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	w.flush()
	if tl := d.tails["s"].lines(); tl[len(tl)-1] != "last, unterminated" {
		t.Errorf("tail ends %q", tl[len(tl)-1])
	}
	return strings.Join(records, "\n")
}
