package sandbox

import (
	"sync"
	"time"
)

// ForceUnavailableEnv, set to 1, makes Probe (and so Execute) fail as if
// isolation were not available here: a way to test that stella fails
// closed. It can only make stella stricter.
const ForceUnavailableEnv = "STELLA_SANDBOX_FORCE_UNAVAILABLE"

// DefaultGrace is how long a stopped step has between SIGTERM and SIGKILL.
const DefaultGrace = 5 * time.Second

// Executor runs steps isolated (run.Executor, run.Reaper). Its fields are
// set once; it may run several steps at a time.
type Executor struct {
	// Env is the base environment of every step ("KEY=value"); the step's
	// own env is added to it. Nothing else of the runner's environment
	// reaches a step.
	Env []string
	// Grace is the time between SIGTERM and SIGKILL (default DefaultGrace).
	Grace time.Duration
	// Hide are host folders a step must not see (the stella home, for
	// one): each is covered by an empty read-only tmpfs, into which only
	// the step's own folders are bound back at their paths: Work (or the
	// invocation's Dir), the folder of its $STELLA_OUTPUT file and its
	// SecretDir. A folder that does not exist is nothing to hide.
	Hide []string
	// Work is the run's work folder (run.Engine.Work), bound back as a
	// whole (writable, the host being read-only for steps, and visible
	// when it is under a hidden folder); when empty, only each
	// invocation's Dir is.
	Work string
	// Sealed and HostAllowlist are the host's part of the network rules of
	// mode allowlist (egress.Rules.Sealed and Host): in sealed mode a
	// destination must be allowed by both the pack and the host.
	Sealed        bool
	HostAllowlist []string
	// Exe is the executable started as the sandbox helper; it must call
	// Init first thing. Default /proc/self/exe.
	Exe string
	// SocketDir is where the runner makes a private folder for an
	// allowlist step's gateway socket (default os.TempDir()); its path
	// must leave room for a Unix socket name (108 bytes in all).
	SocketDir string

	// remount forces the helper's fallback for kernels without
	// mount_setattr (tests).
	remount bool
	// perStep: every attempt in a helper process of its own, none through
	// the sandbox server (Probe checks both ways; tests).
	perStep bool

	mu  sync.Mutex
	srv *server // started at the first attempt that goes through one
}
