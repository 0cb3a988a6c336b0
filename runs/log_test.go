package runs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/run"
)

// TestLogKeepsLongTextApart: short records stay inline; a long step output
// record's text goes raw to the data file, and Fill gives it back; a
// reopened log appends after what is there; a data file cut short is
// ErrCorrupt.
func TestLogKeepsLongTextApart(t *testing.T) {
	rs := Open(cachetest.Open(t), t.TempDir(), nil)
	defer rs.Close()
	const id = "run:acme:20261127T120000.000000Z"
	if err := os.MkdirAll(rs.Folder(id), 0o700); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("line of output \"quoted\" \\ \n", 200)
	want := []run.Line{
		{StepID: "a", Stream: "stdout", Msg: "short"},
		{StepID: "a", Stream: "stdout", Msg: long},
		{StepID: "a", Stream: "stella", Msg: strings.Repeat("runner ", 400)},
		{StepID: "b", Stream: "stderr", Msg: long + "tail"},
	}
	for round := 0; round < 2; round++ {
		l, err := rs.OpenLog(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range want {
			line.Time = time.Unix(1, 0).UTC()
			l.Write(line)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(rs.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := rs.LogData(id)
	defer data.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n, refs := 0, 0
	for sc.Scan() {
		var l run.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Data != nil {
			refs++
		}
		if err := data.Fill(&l); err != nil {
			t.Fatal(err)
		}
		if w := want[n%len(want)]; l.Msg != w.Msg || l.Stream != w.Stream || l.Data != nil {
			t.Errorf("record %d: %q (%s), want %q", n, l.Msg, l.Stream, w.Msg)
		}
		n++
	}
	if n != 2*len(want) || refs != 4 {
		t.Fatalf("%d records, %d kept apart; want %d and 4", n, refs, 2*len(want))
	}
	if err := os.Truncate(rs.DataPath(id), 100); err != nil {
		t.Fatal(err)
	}
	cut := rs.LogData(id)
	defer cut.Close()
	l := run.Line{Data: &run.DataRef{Offset: 50, Length: 200}}
	if err := cut.Fill(&l); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a cut data file: %v, want ErrCorrupt", err)
	}
}

// TestLogBatchesInOrder: records written while batches are handed to the
// writer (full batches, timed flushes and explicit ones racing), their
// texts gathered or written at once, come back in order with their text;
// a record written after Close is dropped.
func TestLogBatchesInOrder(t *testing.T) {
	rs := Open(cachetest.Open(t), t.TempDir(), nil)
	defer rs.Close()
	const id = "run:acme:20261127T120001.000000Z"
	if err := os.MkdirAll(rs.Folder(id), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := rs.OpenLog(id)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			if err := l.Flush(); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	const n = 3000
	text := func(i int) string {
		switch {
		case i%3 == 0:
			return fmt.Sprintf("short %d", i)
		case i%10 == 1:
			return fmt.Sprintf("%d:", i) + strings.Repeat("very long record text ", directText/20+i%100) // written at once
		}
		return fmt.Sprintf("%d:", i) + strings.Repeat("long record text ", 100+i%500) // beyond inlineMax, many batches in all
	}
	for i := 0; i < n; i++ {
		l.Write(run.Line{StepID: "s", Stream: "stdout", Msg: text(i)})
	}
	<-done
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Write(run.Line{StepID: "s", Stream: "stdout", Msg: "after close"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(rs.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := rs.LogData(id)
	defer data.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for ; sc.Scan(); i++ {
		var line run.Line
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if err := data.Fill(&line); err != nil {
			t.Fatal(err)
		}
		if i >= n || line.Msg != text(i) {
			t.Fatalf("record %d: %.30q…", i, line.Msg)
		}
	}
	if i != n {
		t.Fatalf("%d records, want %d", i, n)
	}
}

// TestLogTextBeforeRecord: a reader of the log while it is written (as
// `runs logs --follow` is) finds the text of every record it reads, for
// texts gathered and texts written at once alike.
func TestLogTextBeforeRecord(t *testing.T) {
	rs := Open(cachetest.Open(t), t.TempDir(), nil)
	defer rs.Close()
	const id = "run:acme:20261127T120002.000000Z"
	if err := os.MkdirAll(rs.Folder(id), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := rs.OpenLog(id)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		reads := 0
		defer func() { done <- reads }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := 0
			if err := rs.ReadLog(id, func(line run.Line) error {
				if !strings.HasPrefix(line.Msg, fmt.Sprintf("%d:", n)) {
					return fmt.Errorf("record %d: %.20q", n, line.Msg)
				}
				n++
				return nil
			}); err != nil {
				t.Error(err)
				return
			}
			reads++
		}
	}()
	for i := 0; i < 400; i++ {
		size := 2 << 10
		if i%2 == 0 {
			size = directText + i
		}
		l.Write(run.Line{StepID: "s", Stream: "stdout", Msg: fmt.Sprintf("%d:", i) + strings.Repeat("t", size)})
		if i%50 == 0 {
			time.Sleep(FlushEvery / 10)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if reads := <-done; reads == 0 {
		t.Fatal("the log was never read while written")
	}
}

// TestLogAlignsLongText: a text written at once lands at an offset of the
// data file congruent to its address modulo align (the kernel copies it
// at half speed otherwise), whatever came before it; every text reads
// back.
func TestLogAlignsLongText(t *testing.T) {
	rs := Open(cachetest.Open(t), t.TempDir(), nil)
	defer rs.Close()
	const id = "run:acme:20261127T120003.000000Z"
	if err := os.MkdirAll(rs.Folder(id), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := rs.OpenLog(id)
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte(strings.Repeat("0123456789abcdef", (directText+4*align)/16))
	var want []string
	var addrs []uintptr
	for i := 0; i < 12; i++ {
		if i%3 == 0 { // a gathered text before, of an odd length
			msg := strings.Repeat("g", inlineMax+1+i)
			l.Write(run.Line{StepID: "s", Stream: "stdout", Msg: msg})
			want, addrs = append(want, msg), append(addrs, 0)
		}
		b := buf[i*5%align:][:directText+i]
		msg := unsafe.String(&b[0], len(b))
		l.Write(run.Line{StepID: "s", Stream: "stdout", Msg: msg})
		want, addrs = append(want, msg), append(addrs, uintptr(unsafe.Pointer(&b[0])))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rs.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	data := rs.LogData(id)
	defer data.Close()
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d records, want %d", len(lines), len(want))
	}
	for i, s := range lines {
		var line run.Line
		if err := json.Unmarshal([]byte(s), &line); err != nil {
			t.Fatal(err)
		}
		if line.Data == nil {
			t.Fatalf("record %d has its text inline", i)
		}
		if addrs[i] != 0 && uintptr(line.Data.Offset)%align != addrs[i]%align {
			t.Errorf("record %d: text at offset %d, address %#x: not aligned alike", i, line.Data.Offset, addrs[i])
		}
		if err := data.Fill(&line); err != nil {
			t.Fatal(err)
		}
		if line.Msg != want[i] {
			t.Errorf("record %d: %.20q… (%d bytes), want %.20q… (%d bytes)", i, line.Msg, len(line.Msg), want[i], len(want[i]))
		}
	}
}

// TestReadLog: records come back in order with long records' text filled
// in from the data file; a last record cut short is left out; a run
// without a log has none; an undecodable record before the end is
// ErrCorrupt.
func TestReadLog(t *testing.T) {
	rs := Open(cachetest.Open(t), t.TempDir(), nil)
	defer rs.Close()
	const id = "run:acme:20261127T120000.000000Z"
	if err := os.MkdirAll(rs.Folder(id), 0o700); err != nil {
		t.Fatal(err)
	}
	read := func() ([]string, error) {
		var got []string
		err := rs.ReadLog(id, func(l run.Line) error {
			if l.Data != nil {
				t.Errorf("record with data ref %+v", l.Data)
			}
			got = append(got, l.Msg)
			return nil
		})
		return got, err
	}
	if got, err := read(); err != nil || len(got) != 0 {
		t.Fatalf("no log: %q, %v", got, err)
	}
	long := strings.Repeat("x", 5000)
	l, err := rs.OpenLog(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"first", long, "last"} {
		l.Write(run.Line{Time: time.Unix(1, 0).UTC(), RunID: id, StepID: "a", Stream: "stdout", Msg: m})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(rs.LogPath(id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, `{"time":"1970-01-01T00:00:01Z","runId":"`+id+`","msg":"torn`)
	f.Close()
	got, err := read()
	if err != nil || len(got) != 3 || got[0] != "first" || got[1] != long || got[2] != "last" {
		t.Fatalf("got %d records (%v), want first, the long one, last", len(got), err)
	}
	b, err := os.ReadFile(rs.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rs.LogPath(id), append([]byte("not json\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad first record: %v, want ErrCorrupt", err)
	}
}
