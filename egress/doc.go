// Package egress is the network of a step in mode allowlist: the step's
// network namespace has only loopback, every TCP connection it makes is
// routed to a forwarder inside the namespace, and the forwarder relays it
// over a Unix socket to the runner's Gateway, which dials the destination
// only when Rules allow it. Names resolve through a resolver inside the
// namespace that answers only allowed names. The decision is the runner's:
// a step that subverts the forwarder reaches nothing more.
package egress
