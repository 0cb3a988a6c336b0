package egress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer listens on 127.0.0.1 and, for each connection, writes banner
// and then echoes what it reads until the client half-closes. It stops
// when the test ends.
func echoServer(t testing.TB, banner string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.WriteString(c, banner); err != nil {
					return
				}
				if _, err := io.Copy(c, c); err == nil {
					_ = c.(*net.TCPConn).CloseWrite()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// closedPort is a 127.0.0.1 address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blockLog records the gateway's blocked calls.
type blockLog struct {
	mu    sync.Mutex
	dests []string
}

func (b *blockLog) record(dest, reason string) {
	if reason == "" {
		dest += " (no reason)"
	}
	b.mu.Lock()
	b.dests = append(b.dests, dest)
	b.mu.Unlock()
}

func (b *blockLog) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dests...)
}

func startGateway(t testing.TB, lc ListenConfig, rules Rules) (*Gateway, string, *blockLog) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "gw.sock")
	log := &blockLog{}
	g, err := lc.Listen(sock, rules, log.record)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gateway close: %v", err)
		}
	})
	return g, sock, log
}

// roundTrip dials through the gateway, sends msg, half-closes and reads
// everything back.
func roundTrip(t testing.TB, sock, addr, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return string(got)
}

func TestGatewayRelaysAllowed(t *testing.T) {
	echo := echoServer(t, "220 ready\n") // a server that speaks first, as SMTP and MySQL do
	_, sock, log := startGateway(t, ListenConfig{}, Rules{Allowlist: []string{echo}})

	if got, want := roundTrip(t, sock, echo, "hello\n"), "220 ready\nhello\n"; got != want {
		t.Errorf("relayed %q, want %q", got, want)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB each way
	if got := roundTrip(t, sock, echo, big); got != "220 ready\n"+big {
		t.Errorf("relayed %d bytes, want %d", len(got), len(big)+10)
	}
	if l := log.list(); len(l) != 0 {
		t.Errorf("allowed destinations reported blocked: %q", l)
	}

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
}

func TestGatewayRefusesDisallowed(t *testing.T) {
	echo := echoServer(t, "")
	_, port, _ := net.SplitHostPort(echo)
	other := closedPort(t)
	_, sock, log := startGateway(t, ListenConfig{}, Rules{Allowlist: []string{other, "example.com"}})

	for _, dest := range []string{echo, "localhost:" + port, "[::1]:" + port, "www.example.com:443"} {
		t.Run(dest, func(t *testing.T) {
			before := len(log.list())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, sock, dest)
			if err == nil {
				c.Close()
				t.Fatal("a disallowed destination was relayed")
			}
			if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), dest) {
				t.Errorf("error %q: want ErrBlocked naming %s", err, dest)
			}
			if got := log.list()[before:]; len(got) != 1 || got[0] != dest {
				t.Errorf("blocked calls %q, want exactly [%s]", got, dest)
			}
		})
	}
}

func TestGatewaySealed(t *testing.T) {
	echo := echoServer(t, "")
	_, sock, log := startGateway(t, ListenConfig{}, Rules{Allowlist: []string{echo}, Host: []string{"127.0.0.2"}, Sealed: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, sock, echo)
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "host's allowlist") {
		t.Errorf("sealed mode without the host's consent: %v, want ErrBlocked by the host's allowlist", err)
	}
	if got := log.list(); len(got) != 1 || got[0] != echo {
		t.Errorf("blocked calls %q, want [%s]", got, echo)
	}
}

func TestGatewayDialFailure(t *testing.T) {
	dead := closedPort(t)
	_, sock, log := startGateway(t, ListenConfig{}, Rules{Allowlist: []string{dead}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, sock, dead)
	if err == nil || errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), dead) {
		t.Errorf("dial to a closed port: %v, want a failure naming %s that is not ErrBlocked", err, dead)
	}
	if got := log.list(); len(got) != 0 {
		t.Errorf("an allowed destination that failed was reported blocked: %q", got)
	}
}

func TestGatewayLookup(t *testing.T) {
	lc := ListenConfig{LookupHost: func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "echo.stella.test":
			return []string{"127.0.0.1"}, nil
		case "down.stella.test":
			return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}}
	_, sock, log := startGateway(t, lc, Rules{Allowlist: []string{"echo.stella.test", "*.stella.test:443"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lookup := func(name string) error {
		c, err := exchange(ctx, sock, request{verb: verbLookup, host: name})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := lookup("echo.stella.test"); err != nil {
		t.Errorf("allowed name: %v", err)
	}
	if err := lookup("missing.stella.test"); !errors.Is(err, errNotFound) {
		t.Errorf("allowed name that does not exist: %v, want not found", err)
	}
	if err := lookup("down.stella.test"); err == nil || errors.Is(err, errNotFound) || errors.Is(err, ErrBlocked) {
		t.Errorf("allowed name whose lookup fails: %v, want a failure", err)
	}
	if got := log.list(); len(got) != 0 {
		t.Errorf("allowed names reported blocked: %q", got)
	}
	err := lookup("evil.example.com")
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "evil.example.com") {
		t.Errorf("disallowed name: %v, want ErrBlocked naming it", err)
	}
	if got := log.list(); len(got) != 1 || got[0] != "evil.example.com" {
		t.Errorf("blocked calls %q, want [evil.example.com]", got)
	}
}

func TestGatewayMalformedRequests(t *testing.T) {
	echo := echoServer(t, "")
	_, sock, log := startGateway(t, ListenConfig{RequestTimeout: 300 * time.Millisecond}, Rules{Allowlist: []string{echo}})
	tests := []struct {
		name string
		send string
		want string // reply line prefix; "" means closed without one
	}{
		{"unknown verb", "HELLO " + echo + "\n", "BAD "},
		{"lowercase verb", "connect " + echo + "\n", "BAD "},
		{"no port", "CONNECT 127.0.0.1\n", "BAD "},
		{"port zero", "CONNECT 127.0.0.1:0\n", "BAD "},
		{"port too big", "CONNECT 127.0.0.1:65536\n", "BAD "},
		{"signed port", "CONNECT 127.0.0.1:+80\n", "BAD "},
		{"unbracketed IPv6", "CONNECT ::1:80\n", "BAD "},
		{"space in host", "CONNECT a b:80\n", "BAD "},
		{"wildcard host", "CONNECT *.example.com:80\n", "BAD "},
		{"zone", "CONNECT [fe80::1%lo]:80\n", "BAD "},
		{"carriage return", "CONNECT " + echo + "\r\n", "BAD "},
		{"lookup of an IP", "LOOKUP 10.0.0.1\n", "BAD "},
		{"ping with argument", "PING x\n", "BAD "},
		{"empty line", "\n", "BAD "},
		{"oversized", strings.Repeat("A", 1<<20), "BAD "},
		{"oversized name", "LOOKUP " + strings.Repeat("a.", 200) + "com\n", "BAD "},
		{"silent client", "", ""},
		{"no newline", "CONNECT " + echo, ""},
		{"ping", "PING\n", "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() { _, _ = io.WriteString(c, tt.send) }() // the gateway may stop reading early
			line, err := bufio.NewReader(c).ReadString('\n')
			if tt.want == "" {
				if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("got %q, %v; want the connection closed without a reply", line, err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(line, tt.want) {
				t.Errorf("got %q, %v; want a reply starting %q", line, err, tt.want)
			}
		})
	}
	if got := log.list(); len(got) != 0 {
		t.Errorf("malformed requests reported as blocked destinations: %q", got)
	}
}

func TestGatewayCloseStopsRelays(t *testing.T) {
	echo := echoServer(t, "")
	g, sock, _ := startGateway(t, ListenConfig{}, Rules{Allowlist: []string{echo}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a connection was relayed")
	}
	if n, err := c.Read(buf); err == nil {
		t.Errorf("read %d bytes from a relay after Close", n)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v, want it removed", err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("the gateway still accepts after Close")
	}
}

func TestGatewayBusy(t *testing.T) {
	echo := echoServer(t, "")
	_, sock, _ := startGateway(t, ListenConfig{MaxConns: 1}, Rules{Allowlist: []string{echo}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, echo)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(ctx, sock, echo)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("a request beyond MaxConns: %v, want busy", err)
	}
	c.Close()
	// The slot frees once the relay ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := Dial(ctx, sock, echo)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot never freed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGatewayListenRefusesExistingPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taken")
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if g, err := Listen(path, Rules{}, nil); err == nil {
		g.Close()
		t.Fatal("Listen took over an existing file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Errorf("existing file after Listen: %q, %v", b, err)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT example.com:443\n", "CONNECT [2001:db8::1]:80\n", "CONNECT 10.0.0.1:5432\n",
		"LOOKUP example.com\n", "PING\n", "CONNECT ::1:80\n", "LOOKUP \n", "CONNECT a:99999\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		req, err := parseRequest(line)
		if err != nil {
			return
		}
		// What parses is a destination Rules can judge, and reads back the same.
		again, err := parseRequest(req.String() + "\n")
		if err != nil || again != req {
			t.Fatalf("%q parsed as %+v, which reads back as %+v, %v", line, req, again, err)
		}
		if req.verb == verbConnect {
			if _, ok := parseHost(req.host); !ok || req.port < 1 || req.port > 65535 {
				t.Fatalf("%q: accepted %+v", line, req)
			}
		}
	})
}
