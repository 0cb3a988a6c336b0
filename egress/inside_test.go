package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is also the step: TestInside runs it again in a fresh
// user, network and mount namespace (mapping uid 0 there to the caller),
// where stepMain calls Inside and then acts as a step's client against the
// parent's gateway and a TCP echo server on the host's loopback. To run
// the step as an unprivileged user too, the parent starts the binary as
// uid 65534 through setpriv, and that process makes the namespaces.
const (
	roleEnv   = "STELLA_EGRESS_TEST_ROLE" // "step", or "spawn" to make the namespaces first
	socketEnv = "STELLA_EGRESS_TEST_SOCKET"
	allowEnv  = "STELLA_EGRESS_TEST_ALLOW" // the allowlist, comma-separated
	echoEnv   = "STELLA_EGRESS_TEST_ECHO"  // the echo server's 127.0.0.1:port
)

// echoName is the name the gateway of TestInside resolves to the echo
// server, through its injected LookupHost and Dial.
const echoName = "echo.stella.test"

const echoBanner = "host echo\n"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "step":
		os.Exit(stepMain())
	case "spawn":
		os.Exit(spawnMain())
	}
	os.Exit(m.Run())
}

// namespaced is cmd of this binary, as role step, in a new user, network
// and mount namespace whose uid and gid 0 are the caller's.
func namespaced(ctx context.Context, exe string, env []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	// Names the step dials resolve through the C library when the binary
	// has cgo (as for most clients a step runs); the checks that build a
	// net.Resolver use Go's.
	cmd.Env = append(env, roleEnv+"=step", "GODEBUG=netdns=cgo")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	return cmd
}

// spawnMain runs as the unprivileged user: it makes the namespaces itself.
func spawnMain() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Println("FAIL spawn:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := namespaced(ctx, exe, os.Environ())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Printf("FAIL spawn as uid %d: %v\n", os.Getuid(), err)
		return 1
	}
	return 0
}

func TestInside(t *testing.T) {
	t.Run("as the caller", func(t *testing.T) { testInside(t, false) })
	t.Run("as uid 65534", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("switching to uid 65534 needs root; the caller's run above is already unprivileged")
		}
		testInside(t, true)
	})
}

func testInside(t *testing.T, nobody bool) {
	echo := echoServer(t, echoBanner)
	_, echoPort, _ := net.SplitHostPort(echo)
	lc := ListenConfig{
		LookupHost: func(ctx context.Context, host string) ([]string, error) {
			if host == echoName {
				return []string{"127.0.0.1"}, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			// The echo server listens on 127.0.0.1 only; it stands for the
			// host's [::1] service too.
			if host, port, _ := net.SplitHostPort(address); host == echoName || host == "::1" {
				address = net.JoinHostPort("127.0.0.1", port)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		},
	}
	allow := []string{echo, "[::1]:" + echoPort, echoName + ":" + echoPort, "*.missing.stella.test"}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if nobody {
		// uid 65534 needs to reach the binary and the socket.
		dir, err = os.MkdirTemp("", "egress-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		exe = copyExecutable(t, exe, filepath.Join(dir, "egress.test"))
	}
	sock := filepath.Join(dir, "gw.sock")
	log := &blockLog{}
	g, err := lc.Listen(sock, Rules{Allowlist: allow}, log.record)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if nobody {
		if err := os.Chown(sock, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env := append(os.Environ(), socketEnv+"="+sock, allowEnv+"="+strings.Join(allow, ","), echoEnv+"="+echo)
	var cmd *exec.Cmd
	if nobody {
		cmd = exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe, "-test.run=^$")
		cmd.Env = append(env, roleEnv+"=spawn")
	} else {
		cmd = namespaced(ctx, exe, env)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("step output:\n%s", out.String())
	if err != nil {
		t.Fatalf("step: %v", err)
	}
	checks := map[string]bool{}
	for line := range strings.Lines(out.String()) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "ok "); ok {
			checks[name] = true
		}
	}
	want := []string{
		"uid 0 inside", "inside", "loopback stays inside", "allowed loopback service", "disallowed IP",
		"lookup over UDP", "lookup over TCP", "lookup through a foreign name server",
		"connect by name", "disallowed port of an allowed name", "disallowed name", "allowed name that does not exist",
		"resolv.conf", "close", "threads in two namespaces refused",
	}
	hostUID := os.Getuid()
	if nobody {
		hostUID = 65534
	}
	want = append(want, "host uid "+strconv.Itoa(hostUID))
	v6 := checks["ipv6"]
	if v6 {
		want = append(want, "disallowed IPv6", "allowed IPv6 loopback service")
	}
	for _, c := range want {
		if !checks[c] {
			t.Errorf("check %q did not pass", c)
		}
	}

	// Each refused attempt is reported once, by destination.
	counts := map[string]int{}
	for _, d := range log.list() {
		counts[d]++
	}
	wantBlocked := map[string]int{
		"192.0.2.1:80":        1,
		echoName + ":1":       1,
		"blocked.example.com": 1,
	}
	if v6 {
		wantBlocked["[2001:db8::1]:80"] = 1
	}
	for d, n := range wantBlocked {
		if counts[d] != n {
			t.Errorf("blocked(%q) called %d times, want %d", d, counts[d], n)
		}
	}
	for d := range counts {
		if _, ok := wantBlocked[d]; !ok {
			t.Errorf("blocked(%q) reported, not expected", d)
		}
	}
}

func copyExecutable(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return to
}

// stepMain is the step: it reports each check as "ok NAME" or "FAIL NAME:
// why" and fails when one fails.
func stepMain() int {
	failed := false
	check := func(name string, err error) {
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", name, err)
			return
		}
		fmt.Printf("ok %s\n", name)
	}
	sock, echo := os.Getenv(socketEnv), os.Getenv(echoEnv)
	allow := strings.Split(os.Getenv(allowEnv), ",")
	_, echoPort, _ := net.SplitHostPort(echo)

	if os.Getuid() != 0 {
		check("uid 0 inside", fmt.Errorf("uid %d", os.Getuid()))
		return 1
	}
	check("uid 0 inside", nil)
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		if f := strings.Fields(string(m)); len(f) == 3 && f[0] == "0" && f[2] == "1" {
			fmt.Printf("ok host uid %s\n", f[1])
		}
	}
	if err := loopbackUp(); err != nil {
		check("loopback up", err)
		return 1
	}
	closer, err := Inside(sock, allow)
	check("inside", err)
	if err != nil {
		return 1
	}
	if closer.(*step).fwd6 != nil {
		check("ipv6", nil)
	}

	// A server of the step's own on loopback is the step's.
	check("loopback stays inside", func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = io.WriteString(c, "inside\n")
				c.Close()
			}
		}()
		return expect(ln.Addr().String(), "", "inside\n")
	}())

	// The host's loopback service the allowlist names as 127.0.0.1:port.
	check("allowed loopback service", expect(echo, "hello\n", echoBanner+"hello\n"))

	check("disallowed IP", expectRefused("192.0.2.1:80"))
	if closer.(*step).fwd6 != nil {
		check("disallowed IPv6", expectRefused("[2001:db8::1]:80"))
		check("allowed IPv6 loopback service", expect("[::1]:"+echoPort, "six\n", echoBanner+"six\n"))
	}

	// Names, through the resolver as Go's own resolver asks it.
	resolver := func(network, server string) *net.Resolver {
		return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var synth string
	check("lookup over UDP", func() error {
		addrs, err := resolver("udp", "127.0.0.1:53").LookupHost(ctx, echoName)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || !synthetic.Contains(netip.MustParseAddr(addrs[0])) {
			return fmt.Errorf("%s is %q, want one address of %s", echoName, addrs, synthetic)
		}
		synth = addrs[0]
		return nil
	}())
	check("lookup over TCP", func() error {
		addrs, err := resolver("tcp", "127.0.0.1:53").LookupHost(ctx, strings.ToUpper(echoName)+".")
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0] != synth {
			return fmt.Errorf("%s is %q over TCP, %q over UDP", echoName, addrs, synth)
		}
		return nil
	}())
	check("lookup through a foreign name server", func() error {
		addrs, err := resolver("udp", "192.0.2.53:53").LookupHost(ctx, echoName)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0] != synth {
			return fmt.Errorf("%s is %q through 192.0.2.53, want %q", echoName, addrs, synth)
		}
		return nil
	}())
	check("connect by name", expect(net.JoinHostPort(synth, echoPort), "by name\n", echoBanner+"by name\n"))
	check("disallowed port of an allowed name", expectRefused(net.JoinHostPort(synth, "1")))
	check("disallowed name", func() error {
		_, err := resolver("udp", "127.0.0.1:53").LookupHost(ctx, "blocked.example.com")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			return fmt.Errorf("lookup of a disallowed name: %v, want not found", err)
		}
		return nil
	}())
	check("allowed name that does not exist", func() error {
		_, err := resolver("udp", "127.0.0.1:53").LookupHost(ctx, "x.missing.stella.test")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			return fmt.Errorf("lookup: %v, want not found", err)
		}
		return nil
	}())

	// What a step sees: ResolvConf as /etc/resolv.conf, and a client that
	// resolves the way it always does (the C library's getaddrinfo, or Go's
	// resolver in a binary without cgo).
	check("resolv.conf", func() error {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("private mounts: %w", err)
		}
		f, err := os.CreateTemp("", "resolv.conf")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := f.Write(ResolvConf()); err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind resolv.conf: %w", err)
		}
		return expect(net.JoinHostPort(echoName, echoPort), "resolved\n", echoBanner+"resolved\n")
	}())

	check("close", func() error {
		if err := closer.Close(); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", "192.0.2.1:80", 2*time.Second)
		if err == nil {
			c.Close()
			return errors.New("a connection succeeded after Close")
		}
		return nil
	}())
	// A process whose threads straddle two network namespaces would make
	// the forwarder's sockets in either: Inside refuses it.
	check("threads in two namespaces refused", func() error {
		ready, release := make(chan error), make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			ready <- unix.Unshare(unix.CLONE_NEWNET)
			<-release
		}()
		defer close(release)
		if err := <-ready; err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		c, err := Inside(sock, allow)
		if err == nil {
			c.Close()
			return errors.New("Inside accepted a process in two network namespaces")
		}
		return nil
	}())
	if failed {
		return 1
	}
	return 0
}

// expect connects to addr, sends send, half-closes and wants want back.
func expect(addr, send, want string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, send); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if string(got) != want {
		return fmt.Errorf("%s answered %q, want %q", addr, got, want)
	}
	return nil
}

// expectRefused wants a connection to addr to fail within 3 s: the connect
// itself, or the first read (the forwarder accepted it, then the gateway
// refused).
func expectRefused(addr string) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	n, err := c.Read(make([]byte, 64))
	switch {
	case err == nil:
		return fmt.Errorf("%s answered %d bytes", addr, n)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: no failure within 3 s", addr)
	}
	if d := time.Since(start); d > 3*time.Second {
		return fmt.Errorf("%s failed after %v", addr, d)
	}
	return nil
}
