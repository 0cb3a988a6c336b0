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
// (Executor.Exe, /proc/self/exe), in a user namespace that maps uid and gid
// 0 to the runner's own (also when the runner is root, so a run behaves
// the same either way), in one of two roles:
//
//   - the sandbox server (server_linux.go), started once per Executor and
//     let go after 5 s without a step: each attempt is a request over a
//     socket pair, served on a thread of the server's own that unshares a
//     network and mount namespace for it, sets them up, and forks the step
//     from that thread, as the step's own process group. A re-executed
//     stella pays its Go start and package initialisation (15–19 ms)
//     before it can do anything; the server pays it once, not per step.
//   - the sandbox helper, one process per attempt in new user, network and
//     mount namespaces, for what a shared server cannot do: an allowlist
//     step, whose forwarder and resolver must be a process in the step's
//     network namespace, and a pids limit enforced as RLIMIT_NPROC, which
//     counts every task of the user namespace.
//
// Either way the same code (helper.setUp) sets the namespaces up and
// forks the step from a thread whose bounding set is empty, with
// SECBIT_NOROOT and no_new_privs, so the step has no capability at all.
// When the step has limits, it is held at its exec (ptrace) until the
// runner has placed it in its cgroup and its rlimits are set, so it runs
// no instruction outside them. The step's parent (server thread or
// helper) waits for it and reports its own wait status to the runner, so
// run.Exit.Code and Signal are the step's; a setup failure is reported
// with the setup step that failed. A helper forwards SIGTERM and SIGINT to
// its step; a server's step is signalled by the runner directly.
//
// A helper process is started and stopped by run/process.Run (process
// group, SIGTERM then SIGKILL after a grace, nothing left behind); a
// server's step gets the same from the runner. Steps (and helpers) carry
// the attempt's token, so Reap finds them after a runner crash; a server
// whose runner is gone ends once its steps have.
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
