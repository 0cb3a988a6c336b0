package egress

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// resolverAddr is where the resolver inside a step listens (UDP and TCP);
// ResolvConf names it.
const resolverAddr = "127.0.0.1:53"

// Inside runs in the sandbox helper, inside the step's fresh network
// namespace (loopback up, the helper still privileged in its user
// namespace), before the step starts: it routes every TCP destination to
// a forwarder that relays through the gateway at socket, and serves DNS on
// 127.0.0.1:53 for the names of allowlist. Close stops both.
//
// In detail, Inside:
//
//   - brings loopback up if it is not;
//   - checks that the gateway at socket answers (a PING), so a step never
//     starts with a network that cannot work;
//   - listens with the forwarder on 127.0.0.1 and [::1] (ephemeral ports),
//     with the resolver on 127.0.0.1:53 (UDP and TCP);
//   - adds nftables tables "ip stella_egress" and "ip6 stella_egress": TCP
//     to any address outside 127.0.0.0/8 and ::1, and TCP to the loopback
//     addresses the allowlist names as IP entries (all ports, or the
//     entry's port), goes to the forwarder, except 127.0.0.1:53 and the
//     forwarder's own ports; UDP to port 53 outside loopback goes to the
//     resolver;
//   - adds the routes "local default dev lo" for IPv4 and IPv6.
//
// IPv6 is best effort: when its forwarder, table or route cannot be set
// up, IPv6 destinations stay unreachable (and unreported).
//
// The caller must:
//
//   - be a process started in the step's network namespace (clone flags
//     of a re-exec, not unshare or setns on one thread of a running
//     process): sockets and netlink requests are made from whichever
//     thread runs a goroutine, so Inside refuses when /proc/self/task shows
//     threads in different network namespaces;
//   - call it with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE in the user
//     namespace that owns the network namespace (uid 0 there), so before
//     it drops capabilities or changes uid; loopback may be down or up;
//   - keep socket reachable at that path, in the caller's mount namespace
//     and for the caller's uid, while the step runs: every forwarded
//     connection and lookup dials it anew (so not under /run or /var/run
//     when those are hidden);
//   - outlive the step: the forwarder and resolver are goroutines of the
//     calling process (start the step as its child, do not exec it), and
//     Close them once the step is done;
//   - give the step ResolvConf as /etc/resolv.conf and Hosts as
//     /etc/hosts;
//   - leave 127.0.0.1:53 (UDP, TCP) and the forwarder's two ephemeral
//     loopback ports to Inside.
func Inside(socket string, allowlist []string) (io.Closer, error) {
	if err := oneNetNS(); err != nil {
		return nil, err
	}
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c, err := exchange(ctx, socket, request{verb: verbPing})
	cancel()
	if err != nil {
		return nil, err
	}
	c.Close()

	s := &step{socket: socket, names: newNames(allowlist)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.setUp(allowlist); err != nil {
		s.Close()
		return nil, err
	}
	res := newResolver(socket, allowlist, s.names)
	s.t.goFunc(func() { res.serveUDP(s.ctx, s.dnsUDP, &s.t) })
	s.t.goFunc(func() { acceptLoop(s.ctx, s.dnsTCP, &s.t, func(c net.Conn) { res.serveConn(s.ctx, c) }) })
	for _, ln := range []net.Listener{s.fwd4, s.fwd6} {
		if ln != nil {
			s.t.goFunc(func() { acceptLoop(s.ctx, ln, &s.t, s.forward) })
		}
	}
	return s, nil
}

// step is the allowlist network inside one step's namespace.
type step struct {
	socket string
	names  *names
	ctx    context.Context
	cancel context.CancelFunc
	fwd4   net.Listener
	fwd6   net.Listener // nil without IPv6
	dnsUDP net.PacketConn
	dnsTCP net.Listener
	t      tracker
}

func (s *step) setUp(allowlist []string) error {
	var err error
	if s.fwd4, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("egress: forwarder: %w", err)
	}
	if s.dnsUDP, err = net.ListenPacket("udp4", resolverAddr); err != nil {
		return fmt.Errorf("egress: resolver: %w", err)
	}
	if s.dnsTCP, err = net.Listen("tcp4", resolverAddr); err != nil {
		return fmt.Errorf("egress: resolver: %w", err)
	}
	lo4, lo6 := loopbackEntries(allowlist)
	p4 := uint16(s.fwd4.Addr().(*net.TCPAddr).Port)
	if err := natRules(false, p4, []uint16{53, p4}, lo4); err != nil {
		return err
	}
	if err := addLocalDefault(unix.AF_INET); err != nil {
		return err
	}
	// IPv6, best effort: without it an IPv6 destination is unreachable.
	if s.fwd6, err = net.Listen("tcp6", "[::1]:0"); err != nil {
		s.fwd6 = nil
		return nil
	}
	p6 := uint16(s.fwd6.Addr().(*net.TCPAddr).Port)
	if natRules(true, p6, []uint16{p6}, lo6) != nil || addLocalDefault(unix.AF_INET6) != nil {
		s.fwd6.Close()
		s.fwd6 = nil
	}
	return nil
}

// Close stops the forwarder and the resolver and ends every relayed
// connection. The namespace's routes and tables stay: connections then
// fail.
func (s *step) Close() error {
	s.cancel()
	for _, c := range []io.Closer{s.fwd4, s.fwd6, s.dnsUDP, s.dnsTCP} {
		if c != nil {
			c.Close()
		}
	}
	s.t.close()
	return nil
}

// oneNetNS fails when the threads of this process are not all in one
// network namespace. Without /proc there is nothing to compare.
func oneNetNS() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	first := ""
	for _, t := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + t.Name() + "/ns/net")
		if err != nil {
			continue // the thread has ended
		}
		if first == "" {
			first = ns
		} else if ns != first {
			return fmt.Errorf("egress: the threads of this process are in different network namespaces (%s, %s): start the process in the step's namespace", first, ns)
		}
	}
	return nil
}

// forward relays one redirected connection through the gateway; when the
// gateway refuses or fails, the step sees the connection reset.
func (s *step) forward(c net.Conn) {
	tc := c.(*net.TCPConn)
	dst, err := originalDst(tc)
	if err != nil {
		_ = tc.SetLinger(0)
		return
	}
	host := dst.Addr().String()
	if name, ok := s.names.name(dst.Addr()); ok {
		host = name
	}
	ctx, cancel := context.WithTimeout(s.ctx, DefaultDialTimeout+DefaultRequestTimeout)
	g, err := exchange(ctx, s.socket, request{verb: verbConnect, host: host, port: int(dst.Port())})
	cancel()
	if err != nil {
		_ = tc.SetLinger(0)
		return
	}
	if !s.t.add(g) {
		return
	}
	defer s.t.done(g)
	relay(tc, tc, g, g.r)
}
