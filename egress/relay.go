package egress

import (
	"io"
	"net"
	"sync"
)

// relay copies a's bytes (read through ar) to b and b's (through br) to a
// until both directions end, then closes both. The end of one direction
// half-closes the other side's writing, so a peer that shuts down its
// writing still receives the answer; an error in either direction closes
// both connections.
func relay(a net.Conn, ar io.Reader, b net.Conn, br io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst net.Conn, src io.Reader, other net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			other.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
			dst.Close()
			other.Close()
		}
	}
	go half(b, ar, a)
	go half(a, br, b)
	wg.Wait()
	a.Close()
	b.Close()
}

// tracker holds a server's open connections and goroutines, so that Close
// stops every one of them and waits for them.
type tracker struct {
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	closed bool
	wg     sync.WaitGroup
}

// add tracks c; when the server is closed it closes c and reports false.
func (t *tracker) add(c io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	if t.conns == nil {
		t.conns = make(map[io.Closer]struct{})
	}
	t.conns[c] = struct{}{}
	return true
}

// done forgets c and closes it.
func (t *tracker) done(c io.Closer) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

// goFunc runs f in a goroutine that close waits for, unless the server is
// closed already.
func (t *tracker) goFunc(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// close closes every tracked connection, refuses new ones and waits for
// the goroutines.
func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}
