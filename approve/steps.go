package approve

import (
	"encoding/binary"
	"fmt"
)

// Steps is what a reviewer sees of a plan's steps, packed into a few
// large buffers instead of held as a StepSummary each: a request's plan may have
// 100,000 steps, and a reviewer's machine holds them all until the plan
// is checked whole and they are shown (ADR 0031). plan.Scan visits the
// steps in another order than Walk's (a step after its children), so
// they are packed as visited (add, which gives where) and
// listed in Walk's order as Scan hands them on (list): what Scan holds
// of a step until its top-level step ends is that place. Each gives them
// one at a time, in Walk's order.
type Steps struct {
	chunks [][]byte // packed steps; a step is in one chunk
	small  int      // 1 + the chunk small steps go into; 0 before the first
	order  []stepAt // in Walk's order
}

// stepAt is where a step is packed: chunk and offset.
type stepAt struct{ chunk, off int32 }

// Steps are packed into chunks of stepsChunk bytes, so that they grow
// without a copy; a step of more than stepsLarge bytes has a chunk of its
// own, of its size, so that at most stepsLarge bytes of a chunk are left
// unused (a plan of large steps is packed in about its own size).
const (
	stepsChunk = 256 << 10
	stepsLarge = stepsChunk / 8
)

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
	n := packedSize(ss)
	var c int
	switch {
	case n > stepsLarge:
		s.chunks = append(s.chunks, make([]byte, 0, n))
		c = len(s.chunks) - 1
	case s.small == 0 || len(s.chunks[s.small-1])+n > stepsChunk:
		s.chunks = append(s.chunks, make([]byte, 0, stepsChunk))
		c = len(s.chunks) - 1
		s.small = c + 1
	default:
		c = s.small - 1
	}
	at := stepAt{chunk: int32(c), off: int32(len(s.chunks[c]))}
	s.chunks[c] = appendStep(s.chunks[c], ss)
	return at
}

// appendStep appends ss packed to b: its strings length-prefixed, its
// depth, its two lists (0 for a nil list, n+1 then the strings for a list
// of n, so that an empty list comes back empty and not nil), and its
// policy's outcome (0 not decided, 1 fails, 2 passes).
func appendStep(b []byte, ss StepSummary) []byte {
	for _, v := range []string{ss.ID, ss.Kind, ss.Name, ss.Status, ss.Policy} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(ss.Depth))
	for _, l := range [][]string{ss.Command, ss.Secrets} {
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
		return append(b, 0)
	case *ss.Decided:
		return append(b, 2)
	default:
		return append(b, 1)
	}
}

// packedSize is the length appendStep appends.
func packedSize(ss StepSummary) int {
	n := 0
	for _, v := range []string{ss.ID, ss.Kind, ss.Name, ss.Status, ss.Policy} {
		n += uvarintLen(uint64(len(v))) + len(v)
	}
	n += uvarintLen(uint64(ss.Depth))
	for _, l := range [][]string{ss.Command, ss.Secrets} {
		if l == nil {
			n++
			continue
		}
		n += uvarintLen(uint64(len(l)) + 1)
		for _, v := range l {
			n += uvarintLen(uint64(len(v))) + len(v)
		}
	}
	return n + 1
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
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
