package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"
)

// splitValues are the values of the split tests: a token, one with
// characters URL and JSON escape, a binary one and a multi-line one.
var splitValues = []string{"tok-3f9a1c77e2", `p@ss w0rd/+<x>&"q"`, "\x00\xffbin\x10ary\x01", pem}

// splitText returns a text with each value of splitValues raw and in its
// encodings, between ordinary words.
func splitText() []byte {
	var b bytes.Buffer
	for i, v := range splitValues {
		j, _ := json.Marshal(map[string]string{"v": v})
		blob := append([]byte{byte(i), 'x'}, v...) // at alignment 2
		b.WriteString("raw: " + v + " b64: " + base64.StdEncoding.EncodeToString([]byte(v)) +
			" in blob: " + base64.RawURLEncoding.EncodeToString(blob) + "\njson: " + string(j) +
			" url: ?q=" + url.QueryEscape(v) + "&p=" + lowerHex(url.PathEscape(v)) + " end\n")
	}
	return b.Bytes()
}

// stream writes text to a new Writer of s in the pieces sizes gives (the
// last piece repeated), flushes, and returns what came out.
func stream(t testing.TB, s *Set, text []byte, sizes ...int) []byte {
	t.Helper()
	var out bytes.Buffer
	w := s.Writer(&out)
	for i, k := 0, 0; i < len(text); k++ {
		n := min(len(text)-i, sizes[min(k, len(sizes)-1)])
		if got, err := w.Write(text[i : i+n]); got != n || err != nil {
			t.Fatalf("Write of %d bytes = %d, %v", n, got, err)
		}
		i += n
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// assertNoSecret fails when out contains a registered value or encoding.
func assertNoSecret(t testing.TB, s *Set, out []byte, how string) {
	t.Helper()
	for _, p := range s.matcher().pats {
		if bytes.Contains(out, []byte(p)) {
			t.Fatalf("%s: output contains %q:\n%q", how, p, out)
		}
	}
}

// TestEverySplitPoint writes the text split at every byte boundary, and
// byte by byte: the output is what Bytes makes of the whole, and holds no
// value nor encoding.
func TestEverySplitPoint(t *testing.T) {
	s := newSet(t, splitValues...)
	text := splitText()
	want := s.Bytes(text)
	if bytes.Equal(want, text) || bytes.Count(want, []byte(Mask)) < 5*len(splitValues) {
		t.Fatalf("the text is not masked as expected:\n%s", want)
	}
	assertNoSecret(t, s, want, "Bytes")
	for k := range len(text) + 1 {
		if got := stream(t, s, text, k, len(text)); !bytes.Equal(got, want) {
			t.Fatalf("split at %d:\n got %q\nwant %q", k, got, want)
		}
	}
	if got := stream(t, s, text, 1); !bytes.Equal(got, want) {
		t.Fatalf("byte by byte:\n got %q\nwant %q", got, want)
	}
	for _, n := range []int{2, 3, 7, 13, 64} {
		if got := stream(t, s, text, n); !bytes.Equal(got, want) {
			t.Fatalf("in pieces of %d:\n got %q\nwant %q", n, got, want)
		}
	}
}

// TestLargeWrite: one write larger than the Writer's chunk, with values
// across the chunk boundaries.
func TestLargeWrite(t *testing.T) {
	s := newSet(t, splitValues...)
	var b bytes.Buffer
	for b.Len() < 3*chunk {
		b.WriteString("filler line of ordinary text\n")
	}
	text := b.Bytes()
	for _, at := range []int{chunk - 5, 2*chunk - 1, 3*chunk - 7} {
		text = append(text[:at:at], append([]byte(splitValues[0]), text[at:]...)...)
	}
	want := s.Bytes(text)
	if bytes.Count(want, []byte(Mask)) != 3 {
		t.Fatalf("%d masks, want 3", bytes.Count(want, []byte(Mask)))
	}
	if got := stream(t, s, text, len(text)); !bytes.Equal(got, want) {
		t.Error("one large write differs from Bytes")
	}
}

// TestHoldbackMinimal: the Writer holds back exactly the longest suffix
// that may begin a value, and passes everything else on at once.
func TestHoldbackMinimal(t *testing.T) {
	s := newSet(t, "SECRETvalue123")
	var out bytes.Buffer
	w := s.Writer(&out)
	for _, c := range []struct{ write, out string }{
		{"hello ", "hello "},
		{"SEC", "hello "},
		{"RE", "hello "},
		{"X and SE", "hello SECREX and "},
		{"CRETvalue12", "hello SECREX and "},
		{"3 done", "hello SECREX and *** done"},
		{"\n", "hello SECREX and *** done\n"},
	} {
		if _, err := w.Write([]byte(c.write)); err != nil {
			t.Fatal(err)
		}
		if out.String() != c.out {
			t.Fatalf("after %q: %q, want %q", c.write, out.String(), c.out)
		}
	}
}

// TestFlushEmitsHeldOnce: bytes held as the start of a value that never
// came are written by Flush, as they are, once; the Writer then goes on
// with a new stream.
func TestFlushEmitsHeldOnce(t *testing.T) {
	s := newSet(t, "SECRETvalue123")
	var out bytes.Buffer
	w := s.Writer(&out)
	if _, err := w.Write([]byte("log SECRETval")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "log " {
		t.Fatalf("before Flush: %q", out.String())
	}
	for range 2 {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != "log SECRETval" {
			t.Fatalf("after Flush: %q", out.String())
		}
	}
	if _, err := w.Write([]byte("ue123 SECRETvalue123")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "log SECRETvalue123 ***"; out.String() != want {
		t.Errorf("after a second stream: %q, want %q", out.String(), want)
	}
}

// TestFlushMasksHeld: held bytes that end a value are masked by Flush.
func TestFlushMasksHeld(t *testing.T) {
	s := newSet(t, "abcdefgh", "abcdefghijkl")
	var out bytes.Buffer
	w := s.Writer(&out)
	if _, err := w.Write([]byte("x abcdefgh")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "x " {
		t.Fatalf("before Flush: %q", out.String())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "x ***" {
		t.Errorf("after Flush: %q", out.String())
	}
}

// TestWriterAddLater: a value added while a Writer is in use is masked
// from the next Write on, not in what was written before.
func TestWriterAddLater(t *testing.T) {
	s := newSet(t, "firstvalue1")
	var out bytes.Buffer
	w := s.Writer(&out)
	if _, err := w.Write([]byte("a latervalue2 firstvalue1\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add([]byte("latervalue2")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("b latervalue2 firstvalue1\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "a latervalue2 ***\nb *** ***\n"; out.String() != want {
		t.Errorf("%q, want %q", out.String(), want)
	}
}

// TestConcurrentAdd: writers write while values are added. A line that is
// written after its value was added is masked, on every writer; run with
// -race.
func TestConcurrentAdd(t *testing.T) {
	const writers, values = 4, 40
	s := newSet(t, "initialvalue0")
	var mu sync.Mutex
	added := 0 // values[:added] have been added
	value := func(i int) string {
		return "addedvalue-" + strings.Repeat("x", i%7) + string(rune('A'+i%26)) + "-" + string(rune('a'+i/26))
	}
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, writers)
	for k := range writers {
		wg.Go(func() {
			w := s.Writer(&outs[k])
			for round := 0; ; round++ {
				mu.Lock()
				n := added
				mu.Unlock()
				if n == values {
					break
				}
				line := "initialvalue0 line " + value(max(0, n-1)) + "\n"
				if n == 0 {
					line = "initialvalue0 line\n"
				}
				for i := 0; i < len(line); i += 5 { // in pieces
					if _, err := w.Write([]byte(line[i:min(len(line), i+5)])); err != nil {
						t.Error(err)
						return
					}
				}
			}
			if err := w.Flush(); err != nil {
				t.Error(err)
			}
		})
	}
	for i := range values {
		if err := s.Add([]byte(value(i))); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		added = i + 1
		mu.Unlock()
	}
	wg.Wait()
	for k := range outs {
		out := outs[k].String()
		for line := range strings.Lines(out) {
			if line != "*** line ***\n" && line != "*** line\n" {
				t.Fatalf("writer %d wrote %q", k, line)
			}
		}
		if s.String(out) != out {
			t.Errorf("writer %d let a value through", k)
		}
	}
	if s.Len() != values+1 {
		t.Errorf("Len = %d, want %d", s.Len(), values+1)
	}
}

// errWriter fails every write after the first n bytes.
type errWriter struct {
	n   int
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if len(p) > e.n {
		k := e.n
		e.n = 0
		return k, e.err
	}
	e.n -= len(p)
	return len(p), nil
}

// shortWriter takes at most one byte, without an error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return min(len(p), 1), nil }

// TestWriterErrors: an error of the underlying writer is returned, and by
// every later Write and Flush; a short write is io.ErrShortWrite.
func TestWriterErrors(t *testing.T) {
	boom := errors.New("disk full")
	s := newSet(t, "tokenvalue123")
	w := s.Writer(&errWriter{n: 4, err: boom})
	if n, err := w.Write([]byte("some text tokenvalue1")); !errors.Is(err, boom) || n != 0 {
		t.Errorf("Write = %d, %v; want 0, %v", n, err, boom)
	}
	if n, err := w.Write([]byte("more")); !errors.Is(err, boom) || n != 0 {
		t.Errorf("later Write = %d, %v", n, err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush = %v", err)
	}
	w = s.Writer(shortWriter{})
	if _, err := w.Write([]byte("some text")); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("short write: %v", err)
	}
	w = New().Writer(&errWriter{err: boom})
	if n, err := w.Write([]byte("no values")); !errors.Is(err, boom) || n != 0 {
		t.Errorf("Write with an empty set = %d, %v", n, err)
	}
}

// TestWriterNoAllocs: a steady stream of writes allocates nothing.
func TestWriterNoAllocs(t *testing.T) {
	text, s := logText(rand.New(rand.NewPCG(5, 5)), 1<<20), benchSet(false)
	w := s.Writer(io.Discard)
	pieces := [][]byte{text[:32<<10], text[32<<10 : 64<<10], text[100:180], text[1000 : 1000+chunk+100]}
	for _, p := range pieces { // warm up the buffers
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		for _, p := range pieces {
			if _, err := w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round of writes", allocs)
	}
	r := bytes.NewReader(text)
	allocs = testing.AllocsPerRun(20, func() {
		r.Reset(text)
		if _, err := w.ReadFrom(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per ReadFrom", allocs)
	}
}

// TestReadFrom: io.Copy into a Writer reads through ReadFrom, in reads of
// any size, and the output is what Bytes makes of the whole.
func TestReadFrom(t *testing.T) {
	s := newSet(t, splitValues...)
	text := splitText()
	want := s.Bytes(text)
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(text) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(text)) },
		"halves":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(text)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(text)) },
		"pieces":   func() io.Reader { return &pieceReader{text, []int{7, 0, 1, 300, 2}} },
	} {
		var out bytes.Buffer
		w := s.Writer(&out)
		n, err := io.Copy(w, onlyReader{r()})
		if err != nil || n != int64(len(text)) {
			t.Fatalf("%s: io.Copy = %d, %v", name, n, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s:\n got %q\nwant %q", name, out.Bytes(), want)
		}
	}
}

// TestReadFromErrors: ReadFrom returns the reader's error after writing
// out what it read, and the underlying writer's error.
func TestReadFromErrors(t *testing.T) {
	boom := errors.New("pipe broke")
	s := newSet(t, "tokenvalue123")
	var out bytes.Buffer
	w := s.Writer(&out)
	r := io.MultiReader(strings.NewReader("a tokenvalue123 b tokenval"), iotest.ErrReader(boom))
	if n, err := w.ReadFrom(r); !errors.Is(err, boom) || n != 26 {
		t.Errorf("ReadFrom = %d, %v; want 26, %v", n, err, boom)
	}
	if out.String() != "a *** b " {
		t.Errorf("written: %q", out.String())
	}
	w = s.Writer(&errWriter{err: boom})
	if _, err := w.ReadFrom(strings.NewReader("some text")); !errors.Is(err, boom) {
		t.Errorf("ReadFrom into a failing writer: %v", err)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, boom) {
		t.Errorf("Write after: %v", err)
	}
}

// pieceReader returns its text in reads of the sizes given in turn.
type pieceReader struct {
	text  []byte
	sizes []int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if len(p.text) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), len(p.text), p.sizes[0])
	p.sizes = append(p.sizes[1:], p.sizes[0])
	copy(b, p.text[:n])
	p.text = p.text[n:]
	return n, nil
}

// TestEmptySetWriter: with no values the Writer passes writes through.
func TestEmptySetWriter(t *testing.T) {
	var out bytes.Buffer
	w := New().Writer(&out)
	for _, p := range []string{"a", "", "bc\n"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := w.Flush(); err != nil || out.String() != "abc\n" {
		t.Errorf("got %q, %v", out.String(), err)
	}
}

// TestWriterAgainstBruteForce streams random texts through a Writer in
// random pieces and checks the output against bruteMask of the whole, and
// that what the Writer holds is never more than bruteHold.
func TestWriterAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, alphabet := range []string{"ab", "abc", "abcdefgh"} {
		for round := range 60 {
			s := New()
			var values []string
			for _, p := range randomPatterns(r, 1+r.IntN(6), r.IntN(24), alphabet) {
				if err := s.Add([]byte(p)); err != nil {
					t.Fatal(err)
				}
				values = append(values, p)
			}
			pats := s.matcher().pats
			text := randomText(r, r.IntN(600), alphabet, values)
			var out bytes.Buffer
			w := s.Writer(&out)
			for i := 0; i < len(text); {
				n := min(len(text)-i, r.IntN(40))
				if k, err := w.Write(text[i : i+n]); k != n || err != nil {
					t.Fatalf("Write = %d, %v, want %d, nil", k, err, n)
				}
				i += n
				if got, want := len(w.held), bruteHold(text[:i], pats); got != want {
					t.Fatalf("after %q the writer holds %d bytes, want %d", text[:i], got, want)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if want := bruteMask(text, pats); !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("alphabet %q round %d: values %q\ntext %q\n got %q\nwant %q", alphabet, round, values, text, out.Bytes(), want)
			}
		}
	}
}

// alignedReader reads like pieceReader and fails the test when it is asked
// to read into an address that is not a multiple of align (the kernel's
// copy into such an address is much slower).
type alignedReader struct {
	t testing.TB
	pieceReader
}

func (a *alignedReader) Read(b []byte) (int, error) {
	if len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%align != 0 {
		a.t.Fatalf("read into %p, not aligned to %d", &b[0], align)
	}
	return a.pieceReader.Read(b)
}

// TestReadFromAgainstBruteForce streams random texts through a Writer,
// alternating Write and ReadFrom of pieces of random sizes, and flushing
// between streams: the output is bruteMask of each stream, what is held is
// never more than bruteHold, and every read is to an aligned address.
func TestReadFromAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, alphabet := range []string{"ab", "abcdefgh"} {
		for round := range 40 {
			s := New()
			var values []string
			for _, p := range randomPatterns(r, r.IntN(6), r.IntN(100), alphabet) { // no value at all in some rounds
				if err := s.Add([]byte(p)); err != nil {
					t.Fatal(err)
				}
				values = append(values, p)
			}
			pats := s.matcher().pats
			inText := values
			if len(inText) == 0 {
				inText = []string{alphabet} // in the text, not registered
			}
			var out bytes.Buffer
			w := s.Writer(&out)
			for stream := range 3 {
				out.Reset()
				text := randomText(r, r.IntN(1500), alphabet, inText)
				for i := 0; i < len(text); {
					n := min(len(text)-i, r.IntN(300))
					if r.IntN(2) == 0 {
						if k, err := w.Write(text[i : i+n]); k != n || err != nil {
							t.Fatalf("Write = %d, %v, want %d, nil", k, err, n)
						}
					} else {
						sizes := []int{1 + r.IntN(50), 1 + r.IntN(5), 1 + r.IntN(200)}
						if k, err := w.ReadFrom(&alignedReader{t, pieceReader{text[i : i+n], sizes}}); k != int64(n) || err != nil {
							t.Fatalf("ReadFrom = %d, %v, want %d, nil", k, err, n)
						}
					}
					i += n
					if got, want := len(w.held), bruteHold(text[:i], pats); got != want {
						t.Fatalf("after %q the writer holds %d bytes, want %d", text[:i], got, want)
					}
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if want := bruteMask(text, pats); !bytes.Equal(out.Bytes(), want) {
					t.Fatalf("alphabet %q round %d stream %d: values %q\ntext %q\n got %q\nwant %q", alphabet, round, stream, values, text, out.Bytes(), want)
				}
			}
		}
	}
}

// TestReadFromLongerValueAdded: a value longer than any before, added
// between reads, is masked when the next reads bring it a byte at a time
// (what ReadFrom holds back outgrows the room it had kept for it).
func TestReadFromLongerValueAdded(t *testing.T) {
	s := newSet(t, "short-value-1")
	var out bytes.Buffer
	w := s.Writer(&out)
	if _, err := w.ReadFrom(strings.NewReader("a short-value-1 b ")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("long-value-", 20)
	if err := s.Add([]byte(long)); err != nil {
		t.Fatal(err)
	}
	r := &alignedReader{t, pieceReader{[]byte("c " + long + " d short-value-1\n"), []int{1}}}
	if _, err := w.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "a *** b c *** d ***\n"; out.String() != want {
		t.Errorf("%q, want %q", out.String(), want)
	}
}

// connReader reads text in chunks of the size asked for, as a file or a
// pipe that has that much does; it is a syscall.Conn, as they are. Each
// Read reports its number on reads (when not nil) and then waits for gate
// (when not nil); after an error it is still an error.
type connReader struct {
	text  []byte
	n     int
	err   error // what it returns at the end of text (io.EOF when nil)
	reads chan int
	gate  chan struct{}
}

func (c *connReader) SyscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }

func (c *connReader) Read(b []byte) (int, error) {
	c.n++
	if c.reads != nil {
		c.reads <- c.n
	}
	if c.gate != nil {
		<-c.gate
	}
	if len(c.text) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		return 0, io.EOF
	}
	k := copy(b, c.text)
	c.text = c.text[k:]
	return k, nil
}

// waitWriter passes writes to w, but from the second on only once the
// reader has been asked for the chunk after the one being written: it
// fails the test when ReadFrom does not read the next chunk while it masks
// one (the first chunk is read before ReadFrom knows the stream is fast).
type waitWriter struct {
	t      testing.TB
	w      io.Writer
	reads  chan int
	asked  int
	writes int
}

func (w *waitWriter) Write(p []byte) (int, error) {
	w.writes++
	for w.writes > 1 && w.asked < w.writes+1 {
		select {
		case w.asked = <-w.reads:
		case <-time.After(10 * time.Second):
			w.t.Fatalf("write %d: the next chunk was not read meanwhile (%d reads)", w.writes, w.asked)
		}
	}
	return w.w.Write(p)
}

// TestReadFromReadsAhead: from a pipe or a file (a syscall.Conn) whose
// reads fill the buffer, ReadFrom reads the next chunk while it masks and
// writes out the one before, and the output is what Bytes makes of the
// whole stream, for values split across chunks, with a reader that ends
// in an error as well.
func TestReadFromReadsAhead(t *testing.T) {
	s := newSet(t, splitValues...)
	text := bytes.Repeat(splitText(), 4*readChunk/len(splitText()))
	text = append(text, splitText()...) // not a multiple of readChunk
	boom := errors.New("pipe broke")
	for _, end := range []error{nil, boom} {
		var out bytes.Buffer
		reads := make(chan int, 100)
		w := s.Writer(&waitWriter{t: t, w: &out, reads: reads})
		n, err := w.ReadFrom(&connReader{text: text, reads: reads, err: end})
		if n != int64(len(text)) || err != end {
			t.Fatalf("ReadFrom = %d, %v; want %d, %v", n, err, len(text), end)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if want := s.Bytes(text); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("ending with %v: the output differs from Bytes of the stream (%d bytes, want %d)", end, out.Len(), len(want))
		}
	}
}

// behindWriter passes writes to w, from the second on only once the
// reader has been asked for the chunk after the one being written (as
// waitWriter), and fails the test when the reader has been asked for more
// than behindSlots chunks beyond the writes that returned: a Serial
// Writer's ReadFrom writes each chunk out while it reads the next, and
// holds at most behindSlots chunks read and not yet written.
type behindWriter struct {
	waitWriter
	returned atomic.Int64 // writes that returned
	after    *atomic.Bool // set when ReadFrom has returned
}

func (w *behindWriter) Write(p []byte) (int, error) {
	if w.after != nil && w.after.Load() {
		w.t.Errorf("a write after ReadFrom returned")
	}
	for len(w.reads) > 0 {
		w.asked = <-w.reads
	}
	if ahead := w.asked - int(w.returned.Load()); ahead > behindSlots+1 {
		w.t.Errorf("write %d: %d reads asked, %d writes returned: more than %d chunks held", w.writes+1, w.asked, w.returned.Load(), behindSlots)
	}
	defer w.returned.Add(1)
	time.Sleep(time.Millisecond) // the disk is slower than the pipe
	return w.waitWriter.Write(p)
}

// TestReadFromWritesBehind: a Serial Writer reading from a pipe or a file
// (a syscall.Conn) whose reads fill the buffer reads and masks each chunk
// on the calling goroutine while the chunk before is written out, holds
// at most behindSlots chunks, has made every write when ReadFrom returns,
// and its output is what Bytes makes of the whole stream, values split
// across chunks included, with a reader that ends in an error as well.
func TestReadFromWritesBehind(t *testing.T) {
	s := newSet(t, splitValues...)
	text := bytes.Repeat(splitText(), 8*behindChunk/len(splitText()))
	text = append(text, splitText()...) // not a multiple of the chunks
	boom := errors.New("pipe broke")
	for _, end := range []error{nil, boom} {
		var out bytes.Buffer
		reads := make(chan int, 100)
		var after atomic.Bool
		bw := &behindWriter{waitWriter: waitWriter{t: t, w: &out, reads: reads}, after: &after}
		w := s.Writer(bw)
		w.Serial = true
		n, err := w.ReadFrom(&connReader{text: text, reads: reads, err: end})
		after.Store(true)
		if n != int64(len(text)) || err != end {
			t.Fatalf("ReadFrom = %d, %v; want %d, %v", n, err, len(text), end)
		}
		if bw.writes < 9 {
			t.Fatalf("%d writes for %d bytes", bw.writes, len(text))
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if want := s.Bytes(text); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("ending with %v: the output differs from Bytes of the stream (%d bytes, want %d)", end, out.Len(), len(want))
		}
	}
}

// TestReadFromBehindWriterError: when the underlying writer of a Serial
// Writer fails while it writes behind, ReadFrom stops reading within the
// chunks it holds, returns the error once every write has returned, and
// later writes return it too.
func TestReadFromBehindWriterError(t *testing.T) {
	boom := errors.New("disk full")
	s := newSet(t, "tokenvalue123")
	text := bytes.Repeat([]byte("some text\n"), 4*behindChunk)
	r := &connReader{text: text}
	var after atomic.Bool
	var writes atomic.Int64
	w := s.Writer(writerFunc(func(p []byte) (int, error) {
		if after.Load() {
			t.Errorf("a write after ReadFrom returned")
		}
		if writes.Add(1) > 2 {
			return 0, boom
		}
		return len(p), nil
	}))
	w.Serial = true
	n, err := w.ReadFrom(r)
	after.Store(true)
	if !errors.Is(err, boom) {
		t.Fatalf("ReadFrom = %v, want %v", err, boom)
	}
	if max := int64(readChunk + (2+behindSlots+1)*behindChunk); n > max {
		t.Errorf("read %d bytes of %d after the writer failed at its third write; want at most %d", n, len(text), max)
	}
	if got := writes.Load(); got != 3 {
		t.Errorf("%d writes, want 3: none after the failed one", got)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, boom) {
		t.Errorf("Write after: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	if got := writes.Load(); got != 3 {
		t.Errorf("%d writes after ReadFrom returned, want 3", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestReadFromAheadWriterError: when the underlying writer fails while a
// read is in progress, ReadFrom returns its error without waiting for the
// read.
func TestReadFromAheadWriterError(t *testing.T) {
	boom := errors.New("disk full")
	s := newSet(t, "tokenvalue123")
	gate := make(chan struct{}, 2)
	gate <- struct{}{} // the first read, ReadFrom's own
	gate <- struct{}{} // the second, by the goroutine; the third waits
	r := &connReader{text: bytes.Repeat([]byte("some text\n"), readChunk), gate: gate}
	w := s.Writer(&errWriter{err: boom})
	done := make(chan error)
	go func() {
		_, err := w.ReadFrom(r)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("ReadFrom = %v, want %v", err, boom)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrom waits for a read after its writer failed")
	}
	close(gate) // the read in progress ends
	if _, err := w.Write([]byte("more")); !errors.Is(err, boom) {
		t.Errorf("Write after: %v", err)
	}
}
