package sandbox

// The runner and its helper talk over two inherited pipes: the runner
// writes the helper's spec as one JSON line on helperSpecFD, later "go" or
// "abort" lines when the helper waits to be placed in a cgroup; the helper
// writes reports as JSON lines on helperReportFD.

// HelperEnv marks a process started as the sandbox helper or as the check
// Probe runs; its value is the role. Init acts on it, and it never reaches
// a step's environment otherwise.
const HelperEnv = "STELLA_SANDBOX_HELPER"

// Roles (values of HelperEnv).
const (
	roleHelper = "helper"
	roleServer = "server"
	roleCheck  = "check"
	roleNoop   = "noop"
)

// Inherited descriptors.
const (
	helperSpecFD   = 3
	helperReportFD = 4
)

// helperSpec is everything the helper needs to set up one attempt.
type helperSpec struct {
	// Binds are folders the helper opens before it changes any mount, to
	// bind back the ones mountOps name.
	Binds  []string  `json:"binds,omitempty"`
	Mounts []mountOp `json:"mounts,omitempty"`
	// Network is the mode; Socket and Allowlist are for mode allowlist.
	Network   string   `json:"network"`
	Socket    string   `json:"socket,omitempty"`
	Allowlist []string `json:"allowlist,omitempty"`
	// Place: report the step's pid (Ready) and wait for "go" before it
	// runs, so the runner can put it in its cgroup first.
	Place bool `json:"place,omitempty"`
	// Nproc, when set, is the step's RLIMIT_NPROC before the helper's own
	// threads (which count too) are added.
	Nproc int `json:"nproc,omitempty"`
	// Remount: make the host read-only by remounting each mount rather
	// than with mount_setattr (the fallback for kernels without it;
	// tests force it).
	Remount bool     `json:"remount,omitempty"`
	Step    stepSpec `json:"step"`
}

// stepSpec is the step's command.
type stepSpec struct {
	Path    string   `json:"path"`
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	Rlimits []rlimit `json:"rlimits,omitempty"`
}

type rlimit struct {
	Resource int    `json:"resource"`
	Name     string `json:"name"`
	Value    uint64 `json:"value"`
}

// report is one message of the helper to the runner.
type report struct {
	// ID is the server request the report is about (0 from a helper
	// process).
	ID uint64 `json:"id,omitempty"`
	// Started is the step's pid once it runs (and leads its process
	// group, for a server request).
	Started int `json:"started,omitempty"`
	// Stage and Err: the setup step that failed, and how.
	Stage string `json:"stage,omitempty"`
	Err   string `json:"err,omitempty"`
	// Ready is the step's pid, waiting to be placed in its cgroup.
	Ready int `json:"ready,omitempty"`
	// Status is the step's wait status once it ended.
	Status *uint32 `json:"status,omitempty"`
}

// setupError is the helper failing to set the sandbox up.
type setupError struct {
	Stage string
	Msg   string
}

func (e *setupError) Error() string { return "sandbox setup: " + e.Stage + ": " + e.Msg }
