package redact

import (
	"io"
	"syscall"
)

// chunk bounds the bytes one pass of Write scans and one read of ReadFrom
// asks for, so that the Writer's buffers stay small whatever the size of a
// write.
const chunk = 64 << 10

// readChunk is what one read of ReadFrom asks for at first.
const readChunk = 256 << 10

// behindChunk is what one read of a Serial Writer's ReadFrom asks for once
// it writes behind: a pipe's worth (see run/process.PipeSize) at a time
// keeps system calls few.
const behindChunk = 1 << 20

// behindSlots is how many chunks a Serial Writer's ReadFrom has read,
// masked or being written out at once: one being read and masked, one
// being written out, and one ready between them.
const behindSlots = 3

// Writer masks the stream written to it and writes the result to another
// writer. What it writes out is exactly what the set's Bytes makes of the
// whole stream, however the stream is split into writes, as long as no
// value is added meanwhile.
//
// To mask a value split across writes, it holds back the longest suffix of
// what it has been given that is a proper prefix of a pattern (a value or
// one of its encodings): no more, so output is not delayed beyond what
// masking needs. Flush ends the stream and writes what was held back.
//
// A value added to the set is masked from the Writer's next Write (or next
// read of ReadFrom) on; the Writer cannot take back what it has already
// written, so an occurrence that began in bytes already written stays
// visible.
//
// A Writer is not safe for concurrent use. After an error from the
// underlying writer, every Write, ReadFrom and Flush returns that error.
type Writer struct {
	// Serial keeps ReadFrom's reading and masking on the calling
	// goroutine: it never reads the next chunk while it masks the last.
	// Set it when the stream comes from another process (a step's output
	// pipe): that process already keeps a core busy producing the stream,
	// and on a host with few cores a second reading goroutine costs more
	// than it overlaps (on 2 cores, with cat printing 1 GiB into the pipe,
	// it took about 0.3 s of CPU more than reading and masking in turn,
	// and no less wall time). Once the stream comes faster than it is
	// written out, a Serial Writer hands each masked chunk to a second
	// goroutine that writes it out from the buffer it was read into,
	// while the next chunk is read and masked: writing into the page
	// cache is the larger part of the work, and the chunks are not copied
	// to be handed over. The underlying writer is then called from that
	// goroutine, one write at a time and in order; a write's bytes are
	// valid until it returns, as always.
	Serial bool

	set *Set
	w   io.Writer

	held []byte // the suffix held back: bytes given but not yet written out
	cov  int    // held[:cov] is covered by occurrences that began before held
	run  bool   // the last byte written out was masked
	err  error

	// Reused between writes, so that a steady stream allocates nothing.
	buf   []byte   // held followed by the chunk being scanned
	rbufs [][]byte // ReadFrom's: room for held, then a chunk read at [head:]
	head  int      // a multiple of align
	out   []byte   // the masked output of a chunk
	iv    []span   // the occurrences found in a chunk
}

// Write masks p, with what was held back before it, and writes the result
// to the underlying writer, holding back again what may begin a value. It
// returns len(p) when the underlying writer took everything, and
// otherwise the error (io.ErrShortWrite for a short write without one).
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	m := w.set.matcher()
	if len(m.pats) == 0 && len(w.held) == 0 {
		if len(p) > 0 {
			w.run = false
		}
		return w.emit(p, len(p))
	}
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), chunk)]
		b := c
		if len(w.held) > 0 {
			w.buf = append(append(w.buf[:0], w.held...), c...)
			b = w.buf
		}
		if _, err := w.scan(m, b, false); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// ReadFrom reads r to its end and masks what it reads as Write would,
// reading straight into the Writer's buffer, after what it holds back:
// io.Copy into a Writer (os/exec's copying of a command's output does
// that) then copies each byte once less than through Write. It does not
// Flush. It returns the number of bytes read and the first error, of r
// (io.EOF excepted) or of the underlying writer.
//
// When r is read by system calls (a pipe or a file: r is a syscall.Conn)
// and a read fills the whole buffer (a stream arriving faster than it is
// masked), the rest of the call overlaps two parts of the work. If the
// Writer is not Serial, a goroutine reads the next part of the stream
// while the last one is masked and written out; after an error of the
// underlying writer, ReadFrom then returns without waiting for a read in
// progress, and what that read brings is dropped; r may not be read by
// anyone else until the read returns (closing r ends it). If it is
// Serial, a goroutine writes out each masked part while the next one is
// read and masked (see writeBehind); every write has returned when
// ReadFrom does.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		if w.err != nil {
			return n, w.err
		}
		m := w.set.matcher()
		w.room(m, 1)
		b := w.rbufs[0][w.head-len(w.held):]
		copy(b, w.held)
		k, err := r.Read(b[len(w.held):])
		if k > 0 {
			n += int64(k)
			if _, werr := w.scan(m, b[:len(w.held)+k], false); werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if _, ok := r.(syscall.Conn); ok && k == readChunk {
			if w.Serial {
				return w.writeBehind(r, n)
			}
			return w.readAhead(r, n)
		}
	}
}

// room makes sure the Writer has bufs read buffers, each with room for
// what is held, and more, before the chunk at head.
func (w *Writer) room(m *matcher, bufs int) {
	if len(w.held) > w.head || m.prefix.span > w.head {
		// Each read lands at the same aligned offset of its buffer, with
		// what is held copied just before it: the kernel copies into an
		// unaligned address at a fraction of its speed (a read from a
		// pipe to the odd address just after the held bytes cost 44%
		// more CPU than reading and writing the same bytes aligned).
		w.head = alignUp(max(len(w.held), m.prefix.span))
		w.rbufs = w.rbufs[:0]
	}
	for len(w.rbufs) < bufs {
		w.rbufs = append(w.rbufs, make([]byte, w.head+readChunk))
	}
}

// readAhead is ReadFrom once the stream comes faster than it is masked:
// a goroutine reads each chunk into one buffer while the chunk before is
// masked from the other. n is what was read before.
func (w *Writer) readAhead(r io.Reader, n int64) (int64, error) {
	type chunk struct {
		buf []byte
		k   int
		err error
	}
	w.room(w.set.matcher(), 2)
	head := w.head
	free := make(chan []byte, len(w.rbufs))
	full := make(chan chunk, len(w.rbufs)) // never full: a chunk a buffer
	for _, b := range w.rbufs {
		free <- b
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			k, err := r.Read(b[head : head+readChunk])
			full <- chunk{b, k, err}
			if err != nil {
				return
			}
		}
	}()
	for c := range full {
		if c.k > 0 {
			n += int64(c.k)
			if w.err != nil {
				return n, w.err
			}
			m := w.set.matcher()
			var b []byte
			if len(w.held) <= head {
				b = c.buf[head-len(w.held) : head+c.k]
				copy(b, w.held)
			} else {
				// A value longer than the room kept was added meanwhile.
				w.buf = append(append(w.buf[:0], w.held...), c.buf[head:head+c.k]...)
				b = w.buf
			}
			if _, werr := w.scan(m, b, false); werr != nil {
				return n, werr
			}
		}
		free <- c.buf
		if c.err == io.EOF {
			return n, nil
		}
		if c.err != nil {
			return n, c.err
		}
	}
	return n, nil
}

// writeBehind is ReadFrom of a Serial Writer once the stream comes faster
// than it is written out: the calling goroutine reads each chunk into a
// buffer of its own and masks it, and a second goroutine writes the
// masked chunk out, from that buffer or from the buffer it was masked
// into, while the next chunk is read. A buffer is read into again only
// once its chunk's write has returned; every write has returned when
// writeBehind does. n is what was read before.
func (w *Writer) writeBehind(r io.Reader, n int64) (int64, error) {
	type slot struct {
		rbuf, out []byte // read into rbuf[head-len(held):]; masked into out
		pending   []byte // the masked chunk to write out
		sent      bool   // the writing goroutine has it
		err       error  // of the underlying writer, this write or one before
	}
	free := make(chan *slot, behindSlots)
	jobs := make(chan *slot, behindSlots)
	go func() {
		var err error
		for s := range jobs {
			if err == nil && len(s.pending) > 0 {
				var k int
				k, err = w.w.Write(s.pending)
				if err == nil && k < len(s.pending) {
					err = io.ErrShortWrite
				}
			}
			s.err, s.pending = err, nil
			free <- s
		}
	}()
	defer close(jobs)
	inflight := 0
	get := func() *slot {
		s := <-free
		if s.sent {
			s.sent = false
			inflight--
			if s.err != nil && w.err == nil {
				w.err = s.err
			}
		}
		return s
	}
	drain := func() {
		for inflight > 0 {
			get()
		}
	}
	defer drain()
	head := -1
	for {
		m := w.set.matcher()
		if need := alignUp(max(len(w.held), m.prefix.span)); need > head {
			// First, or a value longer than the room kept was added:
			// new buffers, once no write uses the old ones.
			drain()
			for len(free) > 0 {
				<-free
			}
			head = max(need, w.head)
			for range behindSlots {
				free <- &slot{rbuf: make([]byte, head+behindChunk)}
			}
		}
		s := get()
		if w.err != nil {
			return n, w.err
		}
		b := s.rbuf[head-len(w.held):]
		copy(b, w.held)
		k, err := r.Read(b[len(w.held) : len(w.held)+behindChunk])
		if k > 0 {
			n += int64(k)
			w.out = s.out
			s.pending = w.mask(m, b[:len(w.held)+k], false)
			s.out = w.out
			s.sent = true
			inflight++
			jobs <- s
		} else {
			free <- s
		}
		if err != nil {
			drain()
			if w.err != nil {
				return n, w.err
			}
			if err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
}

// align is what ReadFrom aligns its reads to: a cache line.
const align = 64

// alignUp rounds n up to a multiple of align.
func alignUp(n int) int { return (n + align - 1) &^ (align - 1) }

// Flush ends the stream: it writes out, masked, what was held back. A
// match that the held bytes began but the stream never completed was no
// match, and they are written as they are. The Writer may be used for a
// new stream afterwards.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.held) == 0 {
		w.cov, w.run = 0, false
		return nil
	}
	w.buf = append(w.buf[:0], w.held...)
	_, err := w.scan(w.set.matcher(), w.buf, true)
	w.cov, w.run = 0, false
	return err
}

// scan masks b (held followed by new bytes), writes out all but the
// suffix to hold back (none when final) and keeps that suffix as held.
func (w *Writer) scan(m *matcher, b []byte, final bool) (int, error) {
	out := w.mask(m, b, final)
	return w.emit(out, len(out))
}

// mask masks b (held followed by new bytes) and returns what is to be
// written out: all but the suffix to hold back (none when final), which
// it keeps as held. The result is b's own bytes or w.out's.
func (w *Writer) mask(m *matcher, b []byte, final bool) []byte {
	h := len(b)
	if !final {
		h -= m.holdback(b)
	}
	w.iv = m.find(b, w.iv[:0])
	out := b[:h]
	if len(w.iv) > 0 || w.cov > 0 {
		sortSpans(w.iv)
		out, w.cov, w.run = render(w.out[:0], b, h, w.iv, w.cov, w.run)
		w.out = out
	} else if h > 0 {
		w.run = false
	}
	w.held = append(w.held[:0], b[h:]...)
	return out
}

// emit writes out to the underlying writer and returns n on success.
func (w *Writer) emit(out []byte, n int) (int, error) {
	if len(out) == 0 {
		return n, nil
	}
	k, err := w.w.Write(out)
	if err == nil && k < len(out) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
		return 0, err
	}
	return n, nil
}
