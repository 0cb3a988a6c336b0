package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of a ListenConfig.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxConns       = 1024
)

// ListenConfig holds a gateway's options; the zero value is what Listen
// uses.
type ListenConfig struct {
	// Dial connects to an allowed destination ("tcp", "host:port"); nil
	// means a net.Dialer, so names resolve as the runner resolves them.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// LookupHost answers the resolver inside a step for an allowed name;
	// nil means net.DefaultResolver.LookupHost.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// DialTimeout bounds one dial or lookup; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds the time a client takes to send its request
	// and to read the reply; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxConns bounds the requests served at once, relayed connections
	// included; 0 means DefaultMaxConns. Beyond it a request is answered
	// FAILED. (A connection that has not sent its request yet takes no
	// slot: RequestTimeout bounds it.)
	MaxConns int
}

// Gateway is the runner's side of a step's allowlist network: it serves
// the wire protocol on a Unix socket, and dials only what its Rules allow.
type Gateway struct {
	cfg     ListenConfig
	rules   Rules
	blocked func(dest, reason string)
	ln      *net.UnixListener
	ctx     context.Context
	cancel  context.CancelFunc
	slots   chan struct{}
	t       tracker
}

// Listen serves the gateway on a Unix socket at path. blocked is called
// (from any goroutine) for each destination refused, with the destination
// ("host:port" or a name) and why.
func Listen(path string, rules Rules, blocked func(dest, reason string)) (*Gateway, error) {
	var lc ListenConfig
	return lc.Listen(path, rules, blocked)
}

// Listen serves a gateway with lc's options on a Unix socket at path,
// created with mode 0600 (owned by the caller; chown it when the step runs
// as another user). path must not exist. blocked is called (from any
// goroutine, once per refused request) with the destination ("host:port",
// or a name for a lookup) and why; it may be nil.
func (lc *ListenConfig) Listen(path string, rules Rules, blocked func(dest, reason string)) (*Gateway, error) {
	cfg := *lc
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout}
		cfg.Dial = d.DialContext
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = net.DefaultResolver.LookupHost
	}
	if blocked == nil {
		blocked = func(string, string) {}
	}
	// The socket file takes its mode from the socket's inode at bind
	// time, so it is never reachable by others, not even for a moment.
	nlc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), 0o600) }); cerr != nil {
			return cerr
		}
		return err
	}}
	l, err := nlc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress: gateway socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("egress: gateway socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:     cfg,
		rules:   Rules{Allowlist: slices.Clone(rules.Allowlist), Host: slices.Clone(rules.Host), Sealed: rules.Sealed},
		blocked: blocked,
		ln:      l.(*net.UnixListener),
		ctx:     ctx,
		cancel:  cancel,
		slots:   make(chan struct{}, cfg.MaxConns),
	}
	g.t.goFunc(func() { acceptLoop(ctx, g.ln, &g.t, g.handle) })
	return g, nil
}

// Close stops the gateway and every relayed connection, waits for them to
// end and removes the socket file.
func (g *Gateway) Close() error {
	g.cancel()
	err := g.ln.Close() // removes the socket file, which Listen created
	g.t.close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// handle serves one request on c.
func (g *Gateway) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(g.cfg.RequestTimeout))
	br := bufio.NewReaderSize(c, maxLine)
	line, err := readLine(br)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			g.answer(c, replyBad, err.Error())
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	req, err := parseRequest(line)
	if err != nil {
		g.answer(c, replyBad, err.Error())
		return
	}
	// The reply follows the request, even this one.
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		g.answer(c, replyFailed, "gateway busy")
		return
	}
	switch req.verb {
	case verbPing:
		g.answer(c, replyOK, "")
	case verbLookup:
		g.lookup(c, req)
	case verbConnect:
		g.connect(c, br, req)
	}
}

func (g *Gateway) refuse(c net.Conn, req request, why string) {
	g.blocked(req.dest(), why)
	g.answer(c, replyBlocked, why)
}

func (g *Gateway) lookup(c net.Conn, req request) {
	if ok, why := g.rules.AllowsName(req.host); !ok {
		g.refuse(c, req, why)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	defer cancel()
	addrs, err := g.cfg.LookupHost(ctx, req.host)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound, err == nil && len(addrs) == 0:
		g.answer(c, replyNotFound, "")
	case err != nil:
		g.answer(c, replyFailed, err.Error())
	default:
		g.answer(c, replyOK, "")
	}
}

func (g *Gateway) connect(c net.Conn, br *bufio.Reader, req request) {
	if ok, why := g.rules.Allows(req.host, req.port); !ok {
		g.refuse(c, req, why)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	defer cancel()
	d, err := g.cfg.Dial(ctx, "tcp", net.JoinHostPort(req.host, strconv.Itoa(req.port)))
	if err != nil {
		g.answer(c, replyFailed, err.Error())
		return
	}
	if !g.t.add(d) {
		return
	}
	defer g.t.done(d)
	if !g.answer(c, replyOK, "") {
		return
	}
	relay(c, br, d, d)
}

// answer writes one reply line within the request timeout.
func (g *Gateway) answer(c net.Conn, kind, reason string) bool {
	line := kind
	if reason != "" {
		line += " " + oneLine(reason)
	}
	_ = c.SetWriteDeadline(time.Now().Add(g.cfg.RequestTimeout))
	_, err := io.WriteString(c, line+"\n")
	_ = c.SetWriteDeadline(time.Time{})
	return err == nil
}
