package redact

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// benchBytes is the size of the log text the benchmarks stream.
const benchBytes = 64 << 20

// benchSecrets returns n random values of 16 to 40 bytes: random bytes,
// or with printable set, drawn from an alphabet with characters that URL
// and JSON escape, as tokens and passwords have.
func benchSecrets(r *rand.Rand, n int, printable bool) [][]byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=&<>%!@#\"\\"
	out := make([][]byte, n)
	for i := range out {
		v := make([]byte, 16+r.IntN(25))
		for j := range v {
			if printable {
				v[j] = alphabet[r.IntN(len(alphabet))]
			} else {
				v[j] = byte(r.Uint32())
			}
		}
		out[i] = v
	}
	return out
}

// logText returns about n bytes of log-like lines: timestamps, levels,
// key=value pairs, paths, durations and messages from a small vocabulary.
func logText(r *rand.Rand, n int) []byte {
	words := []string{"compiling", "package", "downloading", "layer", "verifying", "digest",
		"cache", "hit", "miss", "step", "started", "finished", "retrying", "connection",
		"warning:", "deprecated", "option", "the", "of", "and", "to", "in", "build", "test",
		"ok", "PASS", "FAIL", "error:", "file", "not", "found", "writing", "artifact"}
	levels := []string{"DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"}
	var b bytes.Buffer
	b.Grow(n + 256)
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-11-27T18:%02d:%02d.%03dZ %-5s step=%s attempt=%d msg=\"",
			r.IntN(60), r.IntN(60), r.IntN(1000), levels[r.IntN(len(levels))],
			words[r.IntN(len(words))], r.IntN(4))
		for k := 3 + r.IntN(10); k > 0; k-- {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "/work/src/stellaops.io/stella/%s/%s.go:%d\" duration=%d.%dms bytes=%d\n",
			words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(2000),
			r.IntN(1000), r.IntN(10), r.IntN(1<<20))
	}
	return b.Bytes()[:n]
}

// benchText is the log text the benchmarks stream.
var benchText = sync.OnceValue(func() []byte {
	return logText(rand.New(rand.NewPCG(1, 2)), benchBytes)
})

// benchSet returns a set of 100 random values (benchSecrets).
func benchSet(printable bool) *Set {
	r := rand.New(rand.NewPCG(3, 4))
	s := New()
	for _, v := range benchSecrets(r, 100, printable) {
		if err := s.Add(v); err != nil {
			panic(err)
		}
	}
	return s
}

// benchData returns the text and the set of 100 random byte values.
func benchData() ([]byte, *Set) { return benchText(), benchSet(false) }

// onlyReader hides the WriterTo of the reader it wraps, so that io.Copy
// reads from it as from a pipe.
type onlyReader struct{ io.Reader }

// onlyWriter hides the ReaderFrom of the writer it wraps, so that io.Copy
// moves data in its own 32 KiB writes.
type onlyWriter struct{ io.Writer }

// nsPerByte reports the time per byte of text.
func nsPerByte(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/byte")
}

// BenchmarkWriter100Secrets streams 64 MiB of log text through a Writer of
// a set of 100 random 16–40 byte values (about 1,600 patterns) into
// io.Discard, in io.Copy's 32 KiB writes. Compare its MB/s with
// BenchmarkCopyBaseline's.
func BenchmarkWriter100Secrets(b *testing.B) {
	text, s := benchData()
	benchWriter(b, text, s, func(w *Writer, r io.Reader) (int64, error) { return io.Copy(onlyWriter{w}, r) })
}

// BenchmarkWriter100Tokens is BenchmarkWriter100Secrets with printable
// values (tokens and passwords with characters URL and JSON escape).
func BenchmarkWriter100Tokens(b *testing.B) {
	benchWriter(b, benchText(), benchSet(true), func(w *Writer, r io.Reader) (int64, error) { return io.Copy(onlyWriter{w}, r) })
}

// BenchmarkWriterReadFrom100Secrets is BenchmarkWriter100Secrets through
// ReadFrom, as os/exec copies a command's output into a Writer.
func BenchmarkWriterReadFrom100Secrets(b *testing.B) {
	text, s := benchData()
	benchWriter(b, text, s, func(w *Writer, r io.Reader) (int64, error) { return io.Copy(w, r) })
}

func benchWriter(b *testing.B, text []byte, s *Set, copy func(*Writer, io.Reader) (int64, error)) {
	s.matcher() // compiled outside the timing
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		w := s.Writer(io.Discard)
		if _, err := copy(w, onlyReader{bytes.NewReader(text)}); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	nsPerByte(b, len(text))
	b.ReportMetric(float64(len(s.matcher().pats)), "patterns")
}

// BenchmarkCopyBaseline moves the same bytes with io.Copy into io.Discard,
// in the same 32 KiB writes.
func BenchmarkCopyBaseline(b *testing.B) {
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := io.Copy(onlyWriter{io.Discard}, onlyReader{bytes.NewReader(text)}); err != nil {
			b.Fatal(err)
		}
	}
	nsPerByte(b, len(text))
}

// BenchmarkWriterToFile is BenchmarkWriterReadFrom100Secrets into a file,
// as the benchmark writes a step's output; compare with
// BenchmarkCopyToFile, the same bytes copied into a file as cat would, in
// reads and writes of the same size.
func BenchmarkWriterToFile(b *testing.B) {
	text, s := benchData()
	s.matcher()
	f := benchFile(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		w := s.Writer(f)
		if _, err := io.Copy(w, onlyReader{bytes.NewReader(text)}); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	nsPerByte(b, len(text))
}

// BenchmarkCopyToFile copies the same bytes into a file in pieces of the
// Writer's chunk.
func BenchmarkCopyToFile(b *testing.B) {
	text := benchText()
	f := benchFile(b)
	buf := make([]byte, chunk)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(onlyWriter{f}, onlyReader{bytes.NewReader(text)}, buf); err != nil {
			b.Fatal(err)
		}
	}
	nsPerByte(b, len(text))
}

// benchFile returns a new file in a temporary folder, closed after b.
func benchFile(b *testing.B) *os.File {
	f, err := os.Create(filepath.Join(b.TempDir(), "out"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// BenchmarkBytes100Secrets masks the same text in one call.
func BenchmarkBytes100Secrets(b *testing.B) {
	text, s := benchData()
	s.matcher()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if out := s.Bytes(text); len(out) != len(text) {
			b.Fatal("the log text was masked")
		}
	}
	nsPerByte(b, len(text))
}
