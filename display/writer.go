package display

import (
	"io"
	"unicode/utf8"
)

// Writer writes what it is given to an underlying writer rendered as Text:
// newlines and tabs pass, every other character a terminal would obey or
// not show arrives escaped. A rune split across two writes is rendered
// whole; Flush renders what an unfinished one left. Not safe for concurrent
// use.
type Writer struct {
	w    io.Writer
	part []byte // the start of a rune the last write ended in
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write renders p to the underlying writer. It reports len(p) written when
// the whole rendering was written.
func (w *Writer) Write(p []byte) (int, error) {
	buf := p
	if len(w.part) > 0 {
		buf = append(w.part, p...)
		w.part = nil
	}
	// Keep back the start of a rune cut by the end of p.
	cut := len(buf)
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(buf[i]) {
			if !utf8.FullRune(buf[i:]) {
				cut = i
			}
			break
		}
	}
	if cut < len(buf) {
		w.part = append([]byte(nil), buf[cut:]...)
	}
	if _, err := io.WriteString(w.w, Text(string(buf[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush renders the bytes of an unfinished rune, if the last write ended
// in one, as the invalid UTF-8 they are.
func (w *Writer) Flush() error {
	if len(w.part) == 0 {
		return nil
	}
	s := Text(string(w.part))
	w.part = nil
	_, err := io.WriteString(w.w, s)
	return err
}
