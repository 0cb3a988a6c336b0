package approve

import (
	"encoding/binary"
	"fmt"
)

// Steps is what a reviewer sees of a plan's steps, held packed into one
// buffer instead of as a StepSummary each: a request's plan may have
// 100,000 steps, and a reviewer's machine holds them all until the plan
// is checked whole and they are shown (ADR 0031). plan.Scan visits the
// steps in another order than Walk's (a step after its children), so
// they are packed as visited (add, which gives the step's offset) and
// listed in Walk's order as Scan hands them on (list): what Scan holds
// of a step until its top-level step ends is that offset. Each gives them
// one at a time, in Walk's order.
type Steps struct {
	chunks  [][]byte // packed steps; a step is in one chunk
	order   []stepAt // in Walk's order
	scratch []byte   // where add packs a step first
}

// stepAt is where a step is packed: chunk and offset.
type stepAt struct{ chunk, off int32 }

// stepsChunk is the size of a chunk: the packed steps grow without a copy
// (a larger step has a chunk of its own).
const stepsChunk = 256 << 10

// Len is the number of steps listed.
func (s *Steps) Len() int { return len(s.order) }

// Each calls fn with each step listed, in order, stopping at the first
// error fn returns.
func (s *Steps) Each(fn func(StepSummary) error) error {
	for _, at := range s.order {
		d := stepDecoder{buf: s.chunks[at.chunk][at.off:]}
		ss := d.step()
		if d.bad {
			panic(fmt.Sprintf("approve: packed step at %d:%d is not what add wrote", at.chunk, at.off))
		}
		if err := fn(ss); err != nil {
			return err
		}
	}
	return nil
}

// list lists the step add packed at at as the next in order.
func (s *Steps) list(at stepAt) { s.order = append(s.order, at) }

// add packs ss and returns where, for list.
func (s *Steps) add(ss StepSummary) stepAt {
	b := s.scratch[:0]
	for _, v := range []string{ss.ID, ss.Kind, ss.Name, ss.Status, ss.Policy} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(ss.Depth))
	for _, l := range [][]string{ss.Command, ss.Secrets} {
		// 0 is a nil list, n+1 a list of n, so that an empty list comes
		// back empty and not nil (as JSON tells them apart: null, []).
		if l == nil {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(l))+1)
		for _, v := range l {
			b = appendString(b, v)
		}
	}
	switch {
	case ss.Decided == nil:
		b = append(b, 0)
	case *ss.Decided:
		b = append(b, 2)
	default:
		b = append(b, 1)
	}
	n := len(s.chunks) - 1
	if n < 0 || len(s.chunks[n])+len(b) > cap(s.chunks[n]) {
		s.chunks = append(s.chunks, make([]byte, 0, max(stepsChunk, len(b))))
		n++
	}
	at := stepAt{chunk: int32(n), off: int32(len(s.chunks[n]))}
	s.chunks[n] = append(s.chunks[n], b...)
	s.scratch = b
	return at
}

func appendString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// stepDecoder reads back what add wrote; bad is set when it does not
// parse (it cannot, but is not trusted to).
type stepDecoder struct {
	buf []byte
	bad bool
}

func (d *stepDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.bad, d.buf = true, nil
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *stepDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.bad, d.buf = true, nil
		return ""
	}
	v := string(d.buf[:n])
	d.buf = d.buf[n:]
	return v
}

func (d *stepDecoder) list() []string {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	l := make([]string, 0, min(n-1, uint64(len(d.buf))))
	for range n - 1 {
		l = append(l, d.string())
	}
	return l
}

func (d *stepDecoder) step() StepSummary {
	var ss StepSummary
	for _, v := range []*string{&ss.ID, &ss.Kind, &ss.Name, &ss.Status, &ss.Policy} {
		*v = d.string()
	}
	ss.Depth = int(d.uvarint())
	ss.Command, ss.Secrets = d.list(), d.list()
	switch v := d.uvarint(); v {
	case 1, 2:
		decided := v == 2
		ss.Decided = &decided
	}
	return ss
}
