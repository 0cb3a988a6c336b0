// Package egress is the network of a step in mode allowlist: the step's
// network namespace has only loopback, every TCP connection it makes is
// routed to a forwarder inside the namespace, and the forwarder relays it
// over a Unix socket to the runner's Gateway, which dials the destination
// only when Rules allow it. Names resolve through a resolver inside the
// namespace that answers only allowed names. The decision is the runner's:
// a step that subverts the forwarder reaches nothing more.
//
// # Two halves
//
// The runner calls Listen (or ListenConfig.Listen) with the step's Rules
// and a blocked callback; the sandbox helper, inside the step's fresh user
// and network namespaces and before the step starts, calls Inside with the
// gateway's socket path and the pack's allowlist. Inside:
//
//   - installs routes "local default dev lo" (IPv4 and IPv6), so a connect
//     to any address is attempted, and an nftables nat chain on the output
//     hook that redirects TCP for anywhere but loopback (and TCP for the
//     loopback addresses the allowlist names, e.g. "127.0.0.1:5432": the
//     host's services) to the forwarder;
//   - runs the forwarder, which reads each connection's original
//     destination (SO_ORIGINAL_DST), asks the gateway to CONNECT to it and
//     splices the bytes; when the gateway refuses, the step's connection
//     is reset (its connect succeeded: the first read or write fails);
//   - runs a resolver on 127.0.0.1:53 (UDP and TCP; UDP port 53 elsewhere
//     is redirected to it) that answers an A query for a name the gateway
//     allows with a synthetic address of 198.18.0.0/15 standing for that
//     name, so the gateway decides by name and port and resolves the name
//     on the host, as the runner resolves names. AAAA queries get no
//     address; a refused name is NXDOMAIN.
//
// # Invariants
//
//   - Every destination is decided by the Gateway, by Rules.Allows(host,
//     port) for a connection and Rules.AllowsName for a lookup; nothing
//     inside the namespace grants anything. Names never match IP entries
//     and IPs never match names: nothing is resolved to decide.
//   - Each refused request calls blocked once, with "host:port" (IPv6 in
//     brackets) or the name looked up. The resolver inside remembers a
//     refused name for 2 s, so the A and AAAA queries of one lookup are
//     one report.
//   - Requests are bounded: one line of at most 512 bytes within the
//     request timeout, MaxConns at once; a malformed request is answered
//     BAD and is not a destination (blocked is not called).
//   - The socket is created 0600 (no window where it is wider); Close ends
//     every relayed connection and removes it.
//
// # Limits
//
// Only TCP reaches anything. UDP other than DNS, and other protocols,
// reach only the namespace itself (every address is local there, so a ping
// of any address is answered by the namespace) and are not reported. IPv6
// destinations are forwarded when the namespace has IPv6, but names
// resolve to IPv4 only. A loopback address the allowlist does not name
// stays inside the namespace; one it names without a port sends every
// port of it to the host, except 127.0.0.1:53 (the resolver).
//
// # Wire protocol
//
// Between the forwarder (or anything else that connects to the gateway's
// socket) and the Gateway: one request per Unix stream connection, a line
// of at most 512 bytes ending in "\n":
//
//	CONNECT <host>:<port>   host a name or an IP (IPv6 in brackets)
//	LOOKUP <name>           may this name be reached, and does it exist?
//	PING                    is the gateway there?
//
// answered by one line:
//
//	OK                      after CONNECT the connection then carries the
//	                        destination's bytes both ways, half-close aware
//	BLOCKED <reason>        the rules refuse it (blocked was called)
//	NOTFOUND                LOOKUP: allowed, but the name does not exist
//	FAILED <reason>         allowed, but the dial or lookup failed, or the
//	                        gateway is busy
//	BAD <reason>            a malformed request
//
// after which the gateway closes the connection unless it answered OK to
// CONNECT.
package egress
