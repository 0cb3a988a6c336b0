// Package sandbox runs run steps isolated: each attempt in its own user,
// network and mount namespaces, with only loopback (network mode none) or
// only the destinations of its allowlist (mode allowlist, through package
// egress), private /tmp, /var/tmp, /dev/shm, /run and /var/run, the host's
// private folders (Executor.Hide) hidden except the run's own work,
// outputs and secret folders, no capabilities, and the pack's limits
// enforced by cgroups where the runner can create one and by rlimits
// otherwise. What was applied is returned in run.Exit.Isolation.
//
// No external binary is needed. The runner re-executes its own executable
// (Executor.Exe, /proc/self/exe) as the sandbox helper, in new namespaces
// whose user namespace maps uid and gid 0 to the runner's own (also when
// the runner is root, so a run behaves the same either way). The helper
// reads its spec from an inherited pipe, sets the namespaces up, and
// forks the step from a thread of its own whose bounding set is empty,
// with SECBIT_NOROOT and no_new_privs, so the step has no capability at
// all. When the step has limits, it is held at its exec (ptrace) until the
// runner has placed it in its cgroup and its rlimits are set, so it runs
// no instruction outside them. The helper stays as the step's parent: it
// forwards SIGTERM and SIGINT, waits, and reports the step's own wait
// status to the runner over a second pipe, so run.Exit.Code and Signal
// are the step's; a setup failure is reported with the setup step that
// failed.
//
// Every process is started and stopped by run/process.Run (process group,
// SIGTERM then SIGKILL after a grace, nothing left behind), and carries the
// attempt's token, so Reap finds them after a runner crash.
//
// Programs that use the sandbox call Init first thing in main (and in
// TestMain of a package whose tests run it): it runs the helper when the
// process was started as one. Probe tells whether isolation
// works on this host, by running a check through the whole path once per
// process; Execute fails closed (run.ErrSandboxUnavailable) when it does
// not.
//
// Linux only; elsewhere every call reports run.ErrSandboxUnavailable.
package sandbox
