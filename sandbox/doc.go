// Package sandbox runs run steps isolated: each attempt in its own user,
// network and mount namespaces, with only loopback (network mode none) or
// only the destinations of its allowlist (mode allowlist, through package
// egress), private /tmp, /var/tmp, /dev/shm, /run and /var/run, the host's
// private folders (Executor.Hide) hidden except the run's own work,
// outputs and secret folders, the host's file system read-only (see
// below), no capabilities, and the pack's limits enforced by cgroups
// where the runner can create one and by rlimits otherwise. What was
// applied is returned in run.Exit.Isolation; the read-only host file
// system is not a field of it, as every isolated step has it (a helper
// that cannot set it up fails, and so does Probe).
//
// Read-only host: before it mounts anything, the helper makes every mount
// of its mount namespace read-only (mount_setattr with AT_RECURSIVE; on
// kernels without it, each mount of /proc/self/mountinfo remounted
// read-only with the flags it has, which it may not change). Then come the
// private tmpfs, writable, and the bind-backs of the step's own folders
// (work folder, the invocation's Dir, the folder of its $STELLA_OUTPUT
// file, its secret folder, and the gateway socket's folder in mode
// allowlist), each bound back even when not hidden (onto itself) and made
// writable again, that mount alone: mounts under one of them stay
// read-only, and so does one whose folder was read-only on the host. So a step, even of a root runner (uid 0 without capabilities,
// whose permission checks still pass on files root owns), writes nothing
// of the host outside its own folders: it gets EROFS. /dev is read-only
// too, but its devices work (/dev/null, /dev/zero, /dev/tty, ...): opening
// a device for writing does not write the file system that holds its
// node; /dev/shm is a private tmpfs.
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
