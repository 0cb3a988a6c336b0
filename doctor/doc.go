// Package doctor runs offline diagnostics of a stella home: each check has
// a stable dotted ID (cache.lock, trust.keys, runs.stuck...), looks at one
// subject and returns a Result with a status (ok, warn, fail, skipped), a
// message naming the object it looked at, and a remediation: a sentence
// and the commands to type.
//
// The package never prints and never reaches the network: what it looks
// at (the home, the configuration, the clock, the isolation probe, the one
// network check's reachability function) comes in an Env the caller fills.
// A check that panics gives a fail result naming the panic; it never stops
// the others. Checks run one after the other, in the order of IDs.
package doctor
