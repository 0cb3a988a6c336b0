package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sync/singleflight"
)

// The resolver inside a step answers on 127.0.0.1:53 (UDP and TCP). For an
// A query it asks the gateway (LOOKUP) whether the name may be reached and
// exists; when it may, the answer is a synthetic address of 198.18.0.0/15
// allocated for that name, which the forwarder maps back, so the gateway
// decides by name and port and resolves the name itself. AAAA queries get
// the same decision and no address (NOERROR, no answers): a step reaches
// names over IPv4. Other types are answered without a record (or NXDOMAIN
// for names outside the pack's allowlist) and without asking. A refused
// name is NXDOMAIN and the gateway reports it; the resolver remembers a
// refusal for refusalTTL, so the A and AAAA queries of one lookup are
// reported once.

// synthetic is the pool of addresses that stand for allowed names
// (RFC 2544's benchmarking range: never a real destination).
var synthetic = netip.MustParsePrefix("198.18.0.0/15")

const (
	answerTTL  = 60 // seconds, in answers for allowed names
	allowTTL   = 60 * time.Second
	refusalTTL = 2 * time.Second
	maxCached  = 4096
	maxQueries = 64 // UDP queries answered at once; more are dropped
)

// names maps allowed names to synthetic addresses and back. An address,
// once given, stands for its name as long as the step runs.
type names struct {
	mu     sync.Mutex
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
	next   netip.Addr
	avoid  map[netip.Addr]bool // addresses of the allowlist's IP entries
}

func newNames(allowlist []string) *names {
	n := &names{
		byName: make(map[string]netip.Addr),
		byAddr: make(map[netip.Addr]string),
		next:   synthetic.Addr().Next(),
		avoid:  make(map[netip.Addr]bool),
	}
	for _, s := range allowlist {
		if e, ok := parseEntry(s); ok && e.ip.IsValid() {
			n.avoid[e.ip] = true
		}
	}
	return n
}

// addr is the synthetic address of name, allocated on first use; false
// when the pool is spent.
func (n *names) addr(name string) (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.byName[name]; ok {
		return a, true
	}
	for n.avoid[n.next] {
		n.next = n.next.Next()
	}
	if !synthetic.Contains(n.next) {
		return netip.Addr{}, false
	}
	a := n.next
	n.next = n.next.Next()
	n.byName[name] = a
	n.byAddr[a] = name
	return a, true
}

// name is the name a synthetic address stands for.
func (n *names) name(a netip.Addr) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	name, ok := n.byAddr[a]
	return name, ok
}

// verdict is the gateway's answer for a name.
type verdict int

const (
	allowed  verdict = iota // may be reached, and exists
	notFound                // may be reached, does not exist
	refused                 // the rules refuse it (the gateway reported it)
	failed                  // no answer (the gateway or the host's resolver failed)
)

type cached struct {
	v     verdict
	until time.Time
}

// resolver answers DNS queries inside a step.
type resolver struct {
	socket    string
	allowlist Rules // the pack's allowlist, for the query types not asked about
	names     *names
	sf        singleflight.Group
	mu        sync.Mutex
	cache     map[string]cached
}

func newResolver(socket string, allowlist []string, n *names) *resolver {
	return &resolver{
		socket:    socket,
		allowlist: Rules{Allowlist: allowlist},
		names:     n,
		cache:     make(map[string]cached),
	}
}

// decide asks the gateway about name, or remembers its answer.
func (r *resolver) decide(ctx context.Context, name string) verdict {
	r.mu.Lock()
	c, ok := r.cache[name]
	r.mu.Unlock()
	if ok && time.Now().Before(c.until) {
		return c.v
	}
	v, _, _ := r.sf.Do(name, func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout+time.Second)
		defer cancel()
		v, ttl := allowed, allowTTL
		c, err := exchange(ctx, r.socket, request{verb: verbLookup, host: name})
		switch {
		case err == nil:
			c.Close()
		case errors.Is(err, ErrBlocked):
			v, ttl = refused, refusalTTL
		case errors.Is(err, errNotFound):
			v, ttl = notFound, refusalTTL
		default:
			return failed, nil
		}
		r.remember(name, v, ttl)
		return v, nil
	})
	return v.(verdict)
}

func (r *resolver) remember(name string, v verdict, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if len(r.cache) >= maxCached {
		for k, c := range r.cache {
			if now.After(c.until) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
	}
	r.cache[name] = cached{v: v, until: now.Add(ttl)}
}

// answer builds the response to the query msg; nil means no response.
func (r *resolver) answer(ctx context.Context, msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	qs, err := p.AllQuestions()
	var q *dnsmessage.Question
	var a []netip.Addr
	switch {
	case err != nil || len(qs) != 1:
		rh.RCode = dnsmessage.RCodeFormatError
	case h.OpCode != 0 || qs[0].Class != dnsmessage.ClassINET:
		q = &qs[0]
		rh.RCode = dnsmessage.RCodeNotImplemented
	default:
		q = &qs[0]
		rh.RCode, a = r.resolve(ctx, q.Name.String(), q.Type)
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if q != nil {
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	for _, ip := range a {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: answerTTL}
		if ip.Is4() {
			err = b.AResource(rr, dnsmessage.AResource{A: ip.As4()})
		} else {
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
		if err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// resolve answers a question of type t about fqdn.
func (r *resolver) resolve(ctx context.Context, fqdn string, t dnsmessage.Type) (dnsmessage.RCode, []netip.Addr) {
	name := strings.ToLower(strings.TrimSuffix(fqdn, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") { // RFC 6761
		switch t {
		case dnsmessage.TypeA:
			return dnsmessage.RCodeSuccess, []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		case dnsmessage.TypeAAAA:
			return dnsmessage.RCodeSuccess, []netip.Addr{netip.IPv6Loopback()}
		}
		return dnsmessage.RCodeSuccess, nil
	}
	if !validName(name) {
		return dnsmessage.RCodeNameError, nil
	}
	switch t {
	case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeALL:
	default:
		if ok, _ := r.allowlist.AllowsName(name); ok {
			return dnsmessage.RCodeSuccess, nil
		}
		return dnsmessage.RCodeNameError, nil
	}
	switch r.decide(ctx, name) {
	case allowed:
		if t == dnsmessage.TypeAAAA {
			return dnsmessage.RCodeSuccess, nil
		}
		a, ok := r.names.addr(name)
		if !ok {
			return dnsmessage.RCodeServerFailure, nil
		}
		return dnsmessage.RCodeSuccess, []netip.Addr{a}
	case notFound, refused:
		return dnsmessage.RCodeNameError, nil
	}
	return dnsmessage.RCodeServerFailure, nil
}

// serveUDP answers queries on pc until it is closed.
func (r *resolver) serveUDP(ctx context.Context, pc net.PacketConn, t *tracker) {
	busy := make(chan struct{}, maxQueries)
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case busy <- struct{}{}:
		default:
			continue // the client asks again
		}
		msg := append([]byte(nil), buf[:n]...)
		if !t.goFunc(func() {
			defer func() { <-busy }()
			if out := r.answer(ctx, msg); out != nil && len(out) <= 512 {
				_, _ = pc.WriteTo(out, from)
			}
		}) {
			return
		}
	}
}

// serveConn answers queries on a TCP connection until the client is done
// or idle for 10 s.
func (r *resolver) serveConn(ctx context.Context, c net.Conn) {
	for {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		out := r.answer(ctx, msg)
		if out == nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
			return
		}
	}
}

// acceptLoop serves each connection of ln with serve in its own goroutine
// until ln is closed; t closes them all.
func acceptLoop(ctx context.Context, ln net.Listener, t *tracker, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			select { // out of descriptors: wait instead of spinning
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !t.add(c) {
			return
		}
		if !t.goFunc(func() {
			defer t.done(c)
			serve(c)
		}) {
			t.done(c)
			return
		}
	}
}
