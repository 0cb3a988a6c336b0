package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rules decide what a step may reach.
type Rules struct {
	// Allowlist is the pack's sandbox.network.allowlist: host, host:port,
	// *.domain, IP or IP:port entries. An entry without a port allows
	// every port.
	Allowlist []string
	// Host is the host's own allowlist (configuration); in sealed mode a
	// destination must match an entry of both. Nil outside sealed mode.
	Host []string
	// Sealed requires Host to allow a destination too.
	Sealed bool
}

// Allows reports whether host (a name or an IP) and port may be reached,
// and when not, why.
//
// An entry "host" allows that name at every port, "host:port" at that port
// only; "*.domain" allows every name under domain at any depth (not domain
// itself), "*.domain:port" at that port; an IP or IP:port entry (IPv6 in
// brackets when it has a port) allows that address. Names compare without
// regard to case or a trailing dot. Nothing is resolved: a name never
// matches an IP entry, nor an IP a name entry. Entries that parse as none
// of these forms match nothing.
func (r Rules) Allows(host string, port int) (bool, string) {
	if port < 1 || port > 65535 {
		return false, fmt.Sprintf("port %d is not 1-65535", port)
	}
	d, ok := parseHost(host)
	if !ok {
		return false, "not a host name or IP address"
	}
	return r.decide(func(e entry) bool { return e.matches(d, port) })
}

// AllowsName reports whether some port of the name may be reached: the
// question the resolver inside a step asks before it answers for a name.
func (r Rules) AllowsName(name string) (bool, string) {
	d, ok := parseHost(name)
	if !ok || d.ip.IsValid() {
		return false, "not a host name"
	}
	return r.decide(func(e entry) bool { return e.matches(d, 0) })
}

func (r Rules) decide(match func(entry) bool) (bool, string) {
	if !anyEntry(r.Allowlist, match) {
		return false, "not in the step's allowlist"
	}
	if r.Sealed && !anyEntry(r.Host, match) {
		return false, "sealed mode: not in the host's allowlist"
	}
	return true, ""
}

func anyEntry(list []string, match func(entry) bool) bool {
	for _, s := range list {
		if e, ok := parseEntry(s); ok && match(e) {
			return true
		}
	}
	return false
}

// dest is a destination host: a name (lowercase, no trailing dot) or an
// IP address (IPv4 unmapped).
type dest struct {
	name string
	ip   netip.Addr
}

// entry is one parsed allowlist entry: exactly one of name, domain, ip is
// set; port 0 means every port.
type entry struct {
	name   string
	domain string
	ip     netip.Addr
	port   int
}

// matches reports whether e allows d at port; port 0 asks about any port.
func (e entry) matches(d dest, port int) bool {
	if e.port != 0 && port != 0 && e.port != port {
		return false
	}
	switch {
	case e.ip.IsValid():
		return d.ip == e.ip
	case e.domain != "":
		return d.name != "" && strings.HasSuffix(d.name, "."+e.domain)
	default:
		return d.name != "" && d.name == e.name
	}
}

func parseEntry(s string) (entry, bool) {
	s = strings.TrimSpace(s)
	host, port := s, 0
	if _, err := netip.ParseAddr(s); err != nil { // a bare IPv6 address has colons but no port
		if h, p, err := net.SplitHostPort(s); err == nil {
			n, ok := parsePort(p)
			if !ok {
				return entry{}, false
			}
			host, port = h, n
		}
	}
	if strings.HasPrefix(host, "*.") {
		d, ok := parseHost(host[2:])
		if !ok || d.ip.IsValid() {
			return entry{}, false
		}
		return entry{domain: d.name, port: port}, true
	}
	d, ok := parseHost(host)
	if !ok {
		return entry{}, false
	}
	return entry{name: d.name, ip: d.ip, port: port}, true
}

// parseHost reads a name or an IP address (IPv6 optionally in brackets).
func parseHost(s string) (dest, bool) {
	a := s
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		a = a[1 : len(a)-1]
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		if ip.Zone() != "" {
			return dest{}, false
		}
		return dest{ip: ip.Unmap()}, true
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if !validName(name) {
		return dest{}, false
	}
	return dest{name: name}, true
}

// validName accepts DNS host names: labels of letters, digits, '-' and '_'
// of 1-63 bytes, 253 bytes in all, the last not all digits (RFC 1123), so
// that no name reads as an IP address to a resolver ("1.2.3.4.",
// "2130706433").
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	last := s[strings.LastIndexByte(s, '.')+1:]
	if strings.TrimLeft(last, "0123456789") == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// parsePort reads a decimal port 1-65535 (digits only).
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}
