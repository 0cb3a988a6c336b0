package bundle

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/integrity"
)

// partsRead counts the bytes read from the parts of split sets by this
// process, so that tests can hold a command to one read of its parts.
var partsRead atomic.Int64

// PartBytesRead is the number of bytes read so far in this process from
// the parts of split sets (however they were opened).
func PartBytesRead() int64 { return partsRead.Load() }

const (
	// checkChunk is the size of the chunks handed to the part hashes.
	checkChunk = 512 << 10
	// checkBuffers bounds the memory of a part check: chunks in flight.
	checkBuffers = 16
	// maxCheckGap is the most a read may jump ahead of the bytes hashed
	// so far and still be hashed at once: the check reads the bytes in
	// between itself (tar headers, padding, the small files of the
	// layout). A read further ahead is left to sweep.
	maxCheckGap = 64 << 20
)

// partCheck checks the parts of a split set, whose presence and sizes are
// already checked, from the bytes read through the set: every read that
// continues the bytes hashed so far (pos) is handed, in file order, to two
// goroutines, one hashing each part and one the whole set, so the blob
// pass of a command is also the part check and the three hashes run side
// by side. sweep reads, in order, whatever the reads did not cover (bytes
// read out of order, or never read); then result compares the sums with
// the parts manifest. Nothing is reported before result.
type partCheck struct {
	m        *partsManifest
	mr       *multiReaderAt
	base     string // base name of the bundle, for part names
	manifest string // file name of the parts manifest, for errors

	mu      sync.Mutex
	pos     int64  // bytes of the set handed to the hashes, from offset 0
	cur     *chunk // chunk being filled
	closed  bool   // no more chunks: the hashes are finishing or done
	readErr error  // a read of the check's own failed (a part shrank)
	free    chan *chunk
	toParts chan *chunk
	toWhole chan *chunk
	hashed  sync.WaitGroup
	sums    [][]byte // sha256 of each part, as hashed
	whole   hash.Hash

	once sync.Once
	err  error
}

// chunk is a buffer handed to both hashes; the last to finish frees it.
type chunk struct {
	b    []byte
	refs atomic.Int32
}

func newPartCheck(m *partsManifest, mr *multiReaderAt, base, manifest string) *partCheck {
	c := &partCheck{
		m: m, mr: mr, base: base, manifest: manifest,
		free:    make(chan *chunk, checkBuffers),
		toParts: make(chan *chunk, checkBuffers),
		toWhole: make(chan *chunk, checkBuffers),
		sums:    make([][]byte, len(m.Parts)),
		whole:   integrity.NewHash(digest.SHA256),
	}
	for range checkBuffers {
		c.free <- &chunk{b: make([]byte, 0, checkChunk)}
	}
	c.hashed.Add(2)
	go func() {
		defer c.hashed.Done()
		h := integrity.NewHash(digest.SHA256)
		i, in := 0, int64(0) // current part, bytes of it hashed
		for ch := range c.toParts {
			b := ch.b
			for len(b) > 0 && i < len(m.Parts) {
				k := int(min(int64(len(b)), m.Parts[i].Size-in))
				h.Write(b[:k]) // hashes never fail
				in += int64(k)
				b = b[k:]
				if in == m.Parts[i].Size {
					c.sums[i] = h.Sum(nil)
					h.Reset()
					i, in = i+1, 0
				}
			}
			c.release(ch)
		}
	}()
	go func() {
		defer c.hashed.Done()
		for ch := range c.toWhole {
			c.whole.Write(ch.b) // hashes never fail
			c.release(ch)
		}
	}()
	return c
}

func (c *partCheck) release(ch *chunk) {
	if ch.refs.Add(-1) == 0 {
		ch.b = ch.b[:0]
		c.free <- ch
	}
}

// feed hands p, read at off, to the hashes if it continues what they have
// hashed, reading a short gap before it first. It never waits for another
// feeder: a read it skips is left to sweep.
func (c *partCheck) feed(p []byte, off int64) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	end := off + int64(len(p))
	if c.closed || c.readErr != nil || end <= c.pos || off-c.pos > maxCheckGap {
		return
	}
	if off > c.pos && !c.fillLocked(off) {
		return
	}
	c.writeLocked(p[c.pos-off:])
}

// writeLocked copies b, the bytes at pos, into chunks for the hashes.
func (c *partCheck) writeLocked(b []byte) {
	for len(b) > 0 {
		if c.cur == nil {
			c.cur = <-c.free
		}
		k := min(len(b), cap(c.cur.b)-len(c.cur.b))
		c.cur.b = append(c.cur.b, b[:k]...)
		c.pos += int64(k)
		b = b[k:]
		if len(c.cur.b) == cap(c.cur.b) {
			c.sendLocked()
		}
	}
}

// fillLocked reads the bytes from pos up to end from the parts into
// chunks for the hashes. It reports false, keeping the error, if a read
// fails.
func (c *partCheck) fillLocked(end int64) bool {
	for c.pos < end {
		if c.cur == nil {
			c.cur = <-c.free
		}
		n := len(c.cur.b)
		k := int(min(int64(cap(c.cur.b)-n), end-c.pos))
		got, err := c.mr.readAt(c.cur.b[n:n+k], c.pos)
		c.cur.b = c.cur.b[:n+got]
		c.pos += int64(got)
		if err != nil {
			c.readErr = c.partErr(c.pos, err)
			return false
		}
		if len(c.cur.b) == cap(c.cur.b) {
			c.sendLocked()
		}
	}
	return true
}

func (c *partCheck) sendLocked() {
	ch := c.cur
	c.cur = nil
	if len(ch.b) == 0 {
		c.free <- ch
		return
	}
	ch.refs.Store(2)
	c.toParts <- ch
	c.toWhole <- ch
}

// partErr names the part holding off in a failed read.
func (c *partCheck) partErr(off int64, err error) error {
	for i, p := range c.mr.parts {
		if off < p.off+p.size {
			return fmt.Errorf("read %s: %w", partName(c.base, i+1), err)
		}
	}
	return err
}

// closeLocked sends the last chunk and stops the hashes; idempotent.
func (c *partCheck) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	if c.cur != nil {
		c.sendLocked()
	}
	close(c.toParts)
	close(c.toWhole)
}

// stop ends the hashes without a result (the reader is closing).
func (c *partCheck) stop() {
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
	c.hashed.Wait()
}

// check sweeps what the reads did not cover and returns the first problem,
// in part order, naming the part; it runs once, and later calls return
// the same result.
func (c *partCheck) check(ctx context.Context) error {
	c.once.Do(func() { c.err = c.sweep(ctx) })
	return c.err
}

func (c *partCheck) sweep(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			c.stop()
			return err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			c.hashed.Wait()
			return errors.New("the bundle was closed while its parts were checked")
		}
		if c.pos >= c.m.Size || c.readErr != nil {
			c.closeLocked()
			c.mu.Unlock()
			break
		}
		c.fillLocked(min(c.pos+checkChunk, c.m.Size))
		c.mu.Unlock()
	}
	c.hashed.Wait()
	if c.readErr != nil {
		return c.readErr
	}
	return c.result()
}

// result compares the sums with the parts manifest: the first part that
// disagrees, in order, then the whole-file sha256.
func (c *partCheck) result() error {
	m := c.m
	for i, p := range m.Parts {
		got := hex.EncodeToString(c.sums[i])
		if got == p.SHA256 {
			continue
		}
		pname := partName(c.base, p.Index)
		for j, q := range m.Parts {
			if j != i && q.SHA256 == got && q.Size == p.Size {
				return &PartError{Index: p.Index, Name: pname, Err: fmt.Errorf("%w: part %03d holds the content of part %03d", ErrPartOrder, p.Index, q.Index)}
			}
		}
		return &PartError{Index: p.Index, Name: pname, Err: fmt.Errorf("%w: sha256 %s, the parts manifest says %s", ErrPartDigest, got, p.SHA256)}
	}
	if got := hex.EncodeToString(c.whole.Sum(nil)); got != m.SHA256 {
		return &EntryError{Path: c.manifest, Err: fmt.Errorf("%w: the parts hash to %s, the whole-file sha256 says %s", ErrPartsManifest, got, m.SHA256)}
	}
	return nil
}
