package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// What Inside changes in the step's network namespace, all of it through
// netlink and ioctl (no external commands):
//
//   - loopback is up;
//   - routes "local 0.0.0.0/0 dev lo" and "local ::/0 dev lo", so that a
//     connect to any address reaches the output hook instead of failing
//     with ENETUNREACH;
//   - tables "ip stella_egress" and "ip6 stella_egress" with a nat chain on
//     the output hook that redirects TCP to the forwarder (see natRules).

// tableName is the nftables table Inside adds in each family.
const tableName = "stella_egress"

// loopbackUp brings the loopback interface up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("egress: loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("egress: loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("egress: loopback flags: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("egress: loopback up: %w", err)
	}
	return nil
}

// addLocalDefault adds the route "local default dev lo" of the family
// (AF_INET or AF_INET6) through rtnetlink; one that exists already is
// fine.
func addLocalDefault(family int) error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("egress: local route: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("egress: local route: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		return fmt.Errorf("egress: local route: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("egress: local route: %w", err)
	}

	const size = unix.SizeofNlMsghdr + unix.SizeofRtMsg + unix.SizeofRtAttr + 4
	b := make([]byte, 0, size)
	ne := binary.NativeEndian
	// struct nlmsghdr
	b = ne.AppendUint32(b, size)
	b = ne.AppendUint16(b, unix.RTM_NEWROUTE)
	b = ne.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	b = ne.AppendUint32(b, 1) // sequence
	b = ne.AppendUint32(b, 0) // port id: the kernel's
	// struct rtmsg: every destination (dst_len 0), type local, scope host
	b = append(b, byte(family), 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_HOST, unix.RTN_LOCAL)
	b = ne.AppendUint32(b, 0)
	// RTA_OIF: dev lo
	b = ne.AppendUint16(b, unix.SizeofRtAttr+4)
	b = ne.AppendUint16(b, unix.RTA_OIF)
	b = ne.AppendUint32(b, uint32(lo.Index))

	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("egress: local route: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("egress: local route: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("egress: local route: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != 1 || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			errno := -int32(ne.Uint32(m.Data[:4]))
			if errno == 0 || syscall.Errno(errno) == unix.EEXIST {
				return nil
			}
			return fmt.Errorf("egress: local route: %w", syscall.Errno(errno))
		}
	}
}

// natRules installs, in family ip or ip6, the output-hook nat chain that
// sends TCP leaving for anywhere but loopback to the forwarder at port, and
// TCP to the loopback destinations of the allowlist (the host's loopback
// services a step may reach: addr, with port when the entry has one). keep
// are loopback ports that stay inside whatever the allowlist says (the
// forwarder's own, the resolver's). In family ip, UDP to port 53 anywhere
// but loopback goes to the resolver, so a client with its own idea of the
// name server still gets the step's answers.
func natRules(v6 bool, port uint16, keep []uint16, loopback []entry) error {
	fam, loop, daddr := nftables.TableFamilyIPv4, netip.MustParseAddr("127.0.0.1"), uint32(16)
	if v6 {
		fam, loop, daddr = nftables.TableFamilyIPv6, netip.IPv6Loopback(), 24
	}
	n := uint32(loop.BitLen() / 8)
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("egress: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: fam, Name: tableName})
	ch := c.AddChain(&nftables.Chain{
		Name:     "output",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityNATDest,
	})
	proto := func(p byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		}
	}
	dstIs := func(op expr.CmpOp, a netip.Addr) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()},
		}
	}
	dport := func(p uint16) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
		}
	}
	redirect := func(p uint16) []expr.Any {
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
			&expr.Redir{RegisterProtoMin: 1},
		}
	}
	rule := func(parts ...[]expr.Any) {
		var e []expr.Any
		for _, p := range parts {
			e = append(e, p...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
	}
	tcp := proto(unix.IPPROTO_TCP)
	for _, p := range keep {
		rule(tcp, dstIs(expr.CmpOpEq, loop), dport(p), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})
	}
	for _, e := range loopback {
		if e.port != 0 {
			rule(tcp, dstIs(expr.CmpOpEq, e.ip), dport(uint16(e.port)), redirect(port))
		} else {
			rule(tcp, dstIs(expr.CmpOpEq, e.ip), redirect(port))
		}
	}
	if v6 {
		rule(tcp, dstIs(expr.CmpOpNeq, loop), redirect(port))
	} else {
		// Anywhere but 127.0.0.0/8.
		notLoopback := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		}
		rule(tcp, notLoopback, redirect(port))
		rule(proto(unix.IPPROTO_UDP), notLoopback, dport(53), redirect(53))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("egress: nftables %s: %w", familyName(v6), err)
	}
	return nil
}

func familyName(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}

// loopbackEntries are the allowlist's IP entries on loopback, by family.
func loopbackEntries(allowlist []string) (v4, v6 []entry) {
	for _, s := range allowlist {
		e, ok := parseEntry(s)
		if !ok || !e.ip.IsLoopback() {
			continue
		}
		if e.ip.Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
	}
	return v4, v6
}

// originalDst is where a redirected TCP connection was going: the
// SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST) of conntrack.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if local.IP.To4() != nil {
			var sa unix.RawSockaddrInet4
			if serr = getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); serr == nil {
				ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
			}
			return
		}
		var sa unix.RawSockaddrInet6
		if serr = getsockopt(fd, unix.SOL_IPV6, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); serr == nil {
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	return ap, nil
}

func getsockopt(fd uintptr, level, name int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ntohs reads a port as the kernel stores it in a sockaddr.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
