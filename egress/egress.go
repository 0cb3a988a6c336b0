package egress

import "errors"

// ErrBlocked: a destination the rules do not allow.
var ErrBlocked = errors.New("network destination not allowed")

// ResolvConf is the /etc/resolv.conf a step of mode allowlist sees: the
// resolver Inside serves. A lookup may wait for the host's resolver
// through the gateway, hence the generous timeout.
func ResolvConf() []byte {
	return []byte("nameserver 127.0.0.1\noptions ndots:0 attempts:2 timeout:5\n")
}

// Hosts is the /etc/hosts every isolated step sees.
func Hosts() []byte {
	return []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
}
