package redact

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// MinLen is the length of the shortest value that can be masked safely:
// shorter ones would mask ordinary words and numbers all over a log, and
// their masks would tell where the value is.
const MinLen = 8

// Mask is what replaces each run of masked bytes.
const Mask = "***"

// ErrTooShort: a value is shorter than MinLen once trimmed of surrounding
// whitespace, so it cannot be masked safely. The message never contains
// the value nor its length; the caller names the secret.
var ErrTooShort = errors.New("secret value too short to mask safely")

// Set is the secret values whose occurrences to mask, with their
// encodings. It is safe for concurrent use, and the zero Set is empty and
// ready to use.
type Set struct {
	mu     sync.Mutex
	values map[string]struct{} // the values added, as given
	seen   map[string]struct{} // the patterns, for de-duplication
	pats   []string            // the patterns, in the order added

	// cur is the compiled matcher of pats, or nil when a value was added
	// since it was compiled; the next use compiles it (under mu).
	cur atomic.Pointer[matcher]
}

// New returns an empty set.
func New() *Set { return &Set{} }

// Add registers the value v: from now on Bytes, String and every Writer
// of the set (from its next Write) mask v and its encodings (see the
// package documentation). v is copied. Surrounding whitespace is not part
// of what is masked in plain text: the value masked is v trimmed. Adding a
// value again does nothing.
//
// Add returns ErrTooShort, and registers nothing, when v trimmed is
// shorter than MinLen.
func (s *Set) Add(v []byte) error {
	if len(bytes.TrimSpace(v)) < MinLen {
		return ErrTooShort
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.values[string(v)]; ok {
		return nil
	}
	if s.values == nil {
		s.values = map[string]struct{}{}
		s.seen = map[string]struct{}{}
	}
	s.values[string(v)] = struct{}{}
	for _, f := range forms(v) {
		if _, ok := s.seen[f]; !ok {
			s.seen[f] = struct{}{}
			s.pats = append(s.pats, f)
		}
	}
	s.cur.Store(nil)
	return nil
}

// Len returns the number of distinct values added.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// matcher returns the compiled matcher of the set's patterns, compiling
// it first when a value was added since.
func (s *Set) matcher() *matcher {
	if m := s.cur.Load(); m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.cur.Load()
	if m == nil {
		m = compile(s.pats)
		s.cur.Store(m)
	}
	return m
}

// Bytes returns b with each run of bytes covered by occurrences of
// registered values or their encodings replaced by one Mask. It returns b
// itself, not a copy, when nothing matched.
func (s *Set) Bytes(b []byte) []byte {
	m := s.matcher()
	iv := m.find(b, nil)
	if len(iv) == 0 {
		return b
	}
	sortSpans(iv)
	out, _, _ := render(make([]byte, 0, len(b)), b, len(b), iv, 0, false)
	return out
}

// String is Bytes for a string: it returns str itself when nothing
// matched.
func (s *Set) String(str string) string {
	b := []byte(str)
	out := s.Bytes(b)
	if len(out) == len(b) && (len(b) == 0 || &out[0] == &b[0]) {
		return str
	}
	return string(out)
}

// Writer returns a Writer that masks what is written to it with the set
// and writes the result to w.
func (s *Set) Writer(w io.Writer) *Writer {
	return &Writer{set: s, w: w}
}
