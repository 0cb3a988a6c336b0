// Package redact masks secret values (placeholder until the streaming
// masker lands; same API).
package redact

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

const MinLen = 8
const Mask = "***"

var ErrTooShort = errors.New("secret value too short to mask safely")

type Set struct {
	mu   sync.RWMutex
	vals [][]byte
}

func New() *Set { return &Set{} }

func (s *Set) Add(v []byte) error {
	if len(bytes.TrimSpace(v)) < MinLen {
		return ErrTooShort
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals = append(s.vals, bytes.Clone(v))
	return nil
}

func (s *Set) Len() int { s.mu.RLock(); defer s.mu.RUnlock(); return len(s.vals) }

func (s *Set) Bytes(b []byte) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.vals {
		b = bytes.ReplaceAll(b, v, []byte(Mask))
	}
	return b
}

func (s *Set) String(str string) string { return string(s.Bytes([]byte(str))) }

type Writer struct {
	s *Set
	w io.Writer
}

func (s *Set) Writer(w io.Writer) *Writer { return &Writer{s: s, w: w} }

func (w *Writer) Write(p []byte) (int, error) {
	_, err := w.w.Write(w.s.Bytes(bytes.Clone(p)))
	return len(p), err
}

func (w *Writer) Flush() error { return nil }
