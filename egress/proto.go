package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// maxLine bounds a request or reply line of the wire protocol (see the
// package documentation), its "\n" included.
const maxLine = 512

const (
	verbConnect = "CONNECT"
	verbLookup  = "LOOKUP"
	verbPing    = "PING"

	replyOK       = "OK"
	replyBlocked  = "BLOCKED"
	replyNotFound = "NOTFOUND"
	replyFailed   = "FAILED"
	replyBad      = "BAD"
)

// request is a parsed request line.
type request struct {
	verb string
	host string // CONNECT: name or IP as sent (IPv6 without brackets); LOOKUP: the name
	port int    // CONNECT only
}

// dest is the destination as the gateway reports it: "host:port" for
// CONNECT, the name for LOOKUP.
func (r request) dest() string {
	if r.verb == verbConnect {
		return net.JoinHostPort(r.host, strconv.Itoa(r.port))
	}
	return r.host
}

func (r request) String() string {
	if r.verb == verbPing {
		return verbPing
	}
	return r.verb + " " + r.dest()
}

// parseRequest reads one request line (with its "\n").
func parseRequest(line string) (request, error) {
	body, ok := strings.CutSuffix(line, "\n")
	if !ok || len(line) > maxLine {
		return request{}, errors.New("request is not one line of at most 512 bytes")
	}
	verb, arg, _ := strings.Cut(body, " ")
	switch verb {
	case verbPing:
		if body != verbPing {
			return request{}, errors.New("PING takes no argument")
		}
		return request{verb: verbPing}, nil
	case verbLookup:
		d, ok := parseHost(arg)
		if !ok || d.ip.IsValid() {
			return request{}, fmt.Errorf("LOOKUP %q: not a host name", arg)
		}
		return request{verb: verbLookup, host: arg}, nil
	case verbConnect:
		h, p, err := net.SplitHostPort(arg)
		if err != nil {
			return request{}, fmt.Errorf("CONNECT %q: expected host:port", arg)
		}
		port, ok := parsePort(p)
		if !ok {
			return request{}, fmt.Errorf("CONNECT %q: port must be 1-65535", arg)
		}
		if _, ok := parseHost(h); !ok || strings.HasPrefix(h, "[") {
			return request{}, fmt.Errorf("CONNECT %q: not a host name or IP address", arg)
		}
		if strings.Contains(h, ":") && !strings.HasPrefix(arg, "[") {
			return request{}, fmt.Errorf("CONNECT %q: an IPv6 address needs brackets", arg)
		}
		return request{verb: verbConnect, host: h, port: port}, nil
	}
	return request{}, fmt.Errorf("unknown request %.16q", verb)
}

// readLine reads one line of at most maxLine bytes from r.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("line longer than 512 bytes")
	}
	if err != nil {
		return "", err
	}
	return string(line), nil
}

// reply is a parsed answer line.
type reply struct {
	kind   string
	reason string
}

func parseReply(line string) (reply, error) {
	body, ok := strings.CutSuffix(line, "\n")
	if !ok {
		return reply{}, errors.New("malformed reply")
	}
	kind, reason, _ := strings.Cut(body, " ")
	switch kind {
	case replyOK, replyBlocked, replyNotFound, replyFailed, replyBad:
		return reply{kind: kind, reason: reason}, nil
	}
	return reply{}, fmt.Errorf("malformed reply %.16q", kind)
}

// oneLine makes s fit a reply line: no line breaks, at most 200 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(s, "")
}

// errNotFound: the gateway answered NOTFOUND to a LOOKUP.
var errNotFound = errors.New("no such host")

// exchange sends one request to the gateway at socket and reads its reply:
// the connection and its reader when the reply is OK, otherwise an error
// naming the destination (wrapping ErrBlocked when the rules refused it).
func exchange(ctx context.Context, socket string, req request) (*gatewayConn, error) {
	what := req.dest()
	if req.verb == verbPing {
		what = "gateway at " + socket
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("egress: %s: %w", what, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(c, maxLine)
	rp, err := func() (reply, error) {
		_, werr := io.WriteString(c, req.String()+"\n")
		line, err := readLine(br) // the gateway may have answered before it read
		if err != nil {
			if werr != nil {
				err = werr
			}
			return reply{}, err
		}
		return parseReply(line)
	}()
	if !stop() || err != nil {
		c.Close()
		if err == nil || ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("egress: %s: %w", what, err)
	}
	switch rp.kind {
	case replyOK:
		_ = c.SetDeadline(time.Time{})
		return &gatewayConn{UnixConn: c.(*net.UnixConn), r: br}, nil
	case replyBlocked:
		err = fmt.Errorf("egress: %s: %w: %s", what, ErrBlocked, rp.reason)
	case replyNotFound:
		err = fmt.Errorf("egress: %s: %w", what, errNotFound)
	default:
		err = fmt.Errorf("egress: %s: %s", what, strings.TrimSpace(strings.ToLower(rp.kind)+" "+rp.reason))
	}
	c.Close()
	return nil, err
}

// gatewayConn is a relayed connection to a destination: reads start with
// what the reader holds after the gateway's reply.
type gatewayConn struct {
	*net.UnixConn
	r *bufio.Reader
}

func (c *gatewayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Dial connects to address ("host:port") through the gateway listening at
// socket, the way the forwarder inside a step does. The error names the
// destination and wraps ErrBlocked when the gateway's rules refuse it. The
// connection has CloseWrite, which half-closes the relayed connection.
func Dial(ctx context.Context, socket, address string) (net.Conn, error) {
	h, p, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("egress: %s: %w", address, err)
	}
	port, ok := parsePort(p)
	if !ok {
		return nil, fmt.Errorf("egress: %s: port must be 1-65535", address)
	}
	c, err := exchange(ctx, socket, request{verb: verbConnect, host: h, port: port})
	if err != nil {
		return nil, err
	}
	return c, nil
}
