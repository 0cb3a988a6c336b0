package redact

import (
	"bytes"
	"testing"
)

// FuzzWriter streams a random text, with registered values and encodings
// planted in it, through a Writer in random pieces, by Write and by
// ReadFrom: the output must be what Bytes makes of the whole text, and
// hold no registered value nor encoding.
//
// plant is read in pairs of bytes (where in the text, which pattern), at
// most 64 of them;
// sizes gives the sizes of the writes in turn (0 makes an empty write).
func FuzzWriter(f *testing.F) {
	f.Add([]byte("plain log line\n"), []byte{}, []byte{1})
	f.Add([]byte("a token: here\nand json: {} and more text"), []byte{0, 0, 128, 5, 200, 9}, []byte{3, 0, 7, 1})
	f.Add(splitText(), []byte{10, 1, 11, 2, 12, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("SECRETval SECRETvalue123SECRETvalue123 abcdefghij"), []byte{255, 0}, []byte{13, 1, 1, 40})
	s := newSet(f, append(splitValues[:len(splitValues):len(splitValues)], "SECRETvalue123", "abcdefgh", "abcdefghijkl", "  spaced-value\n")...)
	pats := s.matcher().pats
	f.Fuzz(func(t *testing.T, text, plant, sizes []byte) {
		if len(text) > 1<<13 || len(plant) > 128 {
			return
		}
		for i := 0; i+1 < len(plant); i += 2 {
			at := int(plant[i]) * len(text) / 256
			p := pats[int(plant[i+1])%len(pats)]
			text = append(text[:at:at], append([]byte(p), text[at:]...)...)
		}
		if len(sizes) == 0 {
			sizes = []byte{byte(len(text))}
		}
		var out bytes.Buffer
		w := s.Writer(&out)
		for i, k := 0, 0; i < len(text); k++ {
			n := min(len(text)-i, int(sizes[k%len(sizes)]))
			if k > 10*len(text)+10 { // only empty writes
				n = len(text) - i
			}
			if got, err := w.Write(text[i : i+n]); got != n || err != nil {
				t.Fatalf("Write of %d bytes = %d, %v", n, got, err)
			}
			i += n
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		want := s.Bytes(text)
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("Writer output differs from Bytes:\nwriter %q\n bytes %q", out.Bytes(), want)
		}
		// The same through ReadFrom, in reads of the same sizes.
		out.Reset()
		w = s.Writer(&out)
		reads := make([]int, len(sizes))
		for i, n := range sizes {
			reads[i] = max(1, int(n))
		}
		if n, err := w.ReadFrom(&pieceReader{text, reads}); n != int64(len(text)) || err != nil {
			t.Fatalf("ReadFrom = %d, %v", n, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("ReadFrom output differs from Bytes:\nwriter %q\n bytes %q", out.Bytes(), want)
		}
		for _, p := range pats {
			if bytes.Contains(want, []byte(p)) {
				t.Fatalf("output contains the registered %q: %q", p, want)
			}
		}
	})
}
