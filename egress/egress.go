// Package egress is the network of a step in mode allowlist: the step's
// network namespace has only loopback, every TCP connection it makes is
// routed to a forwarder inside the namespace, and the forwarder relays it
// over a Unix socket to the runner's Gateway, which dials the destination
// only when Rules allow it. Names resolve through a resolver inside the
// namespace that answers only allowed names. The decision is the runner's:
// a step that subverts the forwarder reaches nothing more.
//
// This file is the agreed interface; the implementation lands with it.
package egress

import (
	"errors"
	"io"
)

// ErrBlocked: a destination the rules do not allow.
var ErrBlocked = errors.New("network destination not allowed")

// Inside runs in the sandbox helper, inside the step's fresh network
// namespace (loopback up, the helper still privileged in its user
// namespace), before the step starts: it routes every TCP destination to
// a forwarder that relays through the gateway at socket, and serves DNS on
// 127.0.0.1:53 for the names of allowlist. Close stops both.
func Inside(socket string, allowlist []string) (io.Closer, error) {
	return nil, errors.New("egress: not implemented")
}

// ResolvConf is the /etc/resolv.conf a step of mode allowlist sees.
func ResolvConf() []byte {
	return []byte("nameserver 127.0.0.1\noptions ndots:0 attempts:1 timeout:2\n")
}

// Hosts is the /etc/hosts every isolated step sees.
func Hosts() []byte {
	return []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
}
