package pack

import (
	"strings"
	"time"
)

// APIVersion and Kind identify a task pack manifest.
const (
	APIVersion   = "stellaops.io/pack.v1"
	Kind         = "TaskPack"
	ManifestFile = "pack.yaml"
	SchemasDir   = "schemas"
)

// Manifest is the parsed pack.yaml.
type Manifest struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`
}

// Metadata describes the pack.
type Metadata struct {
	Name             string       `yaml:"name" json:"name"`
	Version          string       `yaml:"version" json:"version"`
	Description      string       `yaml:"description" json:"description"`
	Tags             []string     `yaml:"tags" json:"tags,omitempty"`
	TenantVisibility []string     `yaml:"tenantVisibility" json:"tenantVisibility,omitempty"`
	Maintainers      []Maintainer `yaml:"maintainers" json:"maintainers,omitempty"`
	License          string       `yaml:"license" json:"license,omitempty"`
	// Created, when set (RFC 3339), is stamped on the built artifact.
	Created string `yaml:"created" json:"created,omitempty"`
}

// Maintainer is a person or team responsible for the pack.
type Maintainer struct {
	Name  string `yaml:"name" json:"name"`
	Email string `yaml:"email" json:"email,omitempty"`
}

// Spec is what the pack does.
type Spec struct {
	Inputs    []Input    `yaml:"inputs" json:"inputs,omitempty"`
	Secrets   []Secret   `yaml:"secrets" json:"secrets,omitempty"`
	Approvals []Approval `yaml:"approvals" json:"approvals,omitempty"`
	Sandbox   Sandbox    `yaml:"sandbox" json:"sandbox"`
	Failure   Failure    `yaml:"failure" json:"failure"`
	Outputs   []Output   `yaml:"outputs" json:"outputs,omitempty"`
	Steps     []Step     `yaml:"steps" json:"steps"`
}

// Input types.
const (
	TypeString  = "string"
	TypeInteger = "integer"
	TypeNumber  = "number"
	TypeBoolean = "boolean"
	TypeArray   = "array"
	TypeObject  = "object"
)

// Input is one declared input.
type Input struct {
	Name        string `yaml:"name" json:"name"`
	Type        string `yaml:"type" json:"type"`
	Description string `yaml:"description" json:"description,omitempty"`
	Required    bool   `yaml:"required" json:"required,omitempty"`
	Default     any    `yaml:"default" json:"default,omitempty"`
	// Schema is a JSON Schema (2020-12) file under the pack's schemas/ folder.
	Schema string `yaml:"schema" json:"schema,omitempty"`
}

// Secret scopes.
const (
	ScopeStep = "step" // only steps that list the secret receive it
	ScopeRun  = "run"  // every run step receives it
)

// Secret is a reference to a secret the pack needs; never its value.
type Secret struct {
	Name        string `yaml:"name" json:"name"`
	Source      string `yaml:"source" json:"source"`
	Description string `yaml:"description" json:"description,omitempty"`
	Required    bool   `yaml:"required" json:"required,omitempty"`
	Scope       string `yaml:"scope" json:"scope,omitempty"`
	// Env delivers the secret to the steps that receive it in this
	// environment variable instead of a file named by
	// STELLA_SECRET_<NAME>_FILE (which is the default, and safer: the
	// environment of a process is readable by its user's other processes).
	Env string `yaml:"env" json:"env,omitempty"`
}

// SecretEnvName is a secret's name as it appears in the variable naming
// its file, STELLA_SECRET_<NAME>_FILE: upper case, '-' as '_'.
func SecretEnvName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Approval declares an approval a gate can require.
type Approval struct {
	ID           string   `yaml:"id" json:"id"`
	Role         string   `yaml:"role" json:"role"`
	MinApprovers int      `yaml:"minApprovers" json:"minApprovers,omitempty"`
	ExpiresAfter Duration `yaml:"expiresAfter" json:"expiresAfter,omitempty"`
	Reason       string   `yaml:"reason" json:"reason,omitempty"`
}

// Network modes of the sandbox.
const (
	NetworkNone      = "none"
	NetworkAllowlist = "allowlist"
)

// Sandbox is the isolation policy of the pack's steps.
type Sandbox struct {
	SealedInstall bool    `yaml:"sealedInstall" json:"sealedInstall,omitempty"`
	Network       Network `yaml:"network" json:"network"`
	Limits        Limits  `yaml:"limits" json:"limits"`
}

// Network is the network policy of steps.
type Network struct {
	Mode      string   `yaml:"mode" json:"mode,omitempty"`
	Allowlist []string `yaml:"allowlist" json:"allowlist,omitempty"`
}

// Limits bound the resources of each step.
type Limits struct {
	CPU       float64  `yaml:"cpu" json:"cpu,omitempty"`
	MemoryMiB int      `yaml:"memoryMiB" json:"memoryMiB,omitempty"`
	Pids      int      `yaml:"pids" json:"pids,omitempty"`
	Timeout   Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Failure is the retry policy of failed steps.
type Failure struct {
	Retries int     `yaml:"retries" json:"retries,omitempty"`
	Backoff Backoff `yaml:"backoff" json:"backoff"`
}

// Backoff is the delay between retries.
type Backoff struct {
	Initial    Duration `yaml:"initial" json:"initial,omitempty"`
	Max        Duration `yaml:"max" json:"max,omitempty"`
	Multiplier float64  `yaml:"multiplier" json:"multiplier,omitempty"`
}

// Output is a value the pack produces.
type Output struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description,omitempty"`
	// From is an expression, usually over steps.<id>.outputs.
	From string `yaml:"from" json:"from,omitempty"`
	// Path is a file the run produces, relative to its work folder.
	Path string `yaml:"path" json:"path,omitempty"`
}

// Step kinds.
const (
	KindRun          = "run"
	KindParallel     = "parallel"
	KindMap          = "map"
	KindLoop         = "loop"
	KindConditional  = "conditional"
	KindGateApproval = "gate.approval"
	KindGatePolicy   = "gate.policy"
)

// Step is one node of the step graph. Exactly one of Run, Parallel, Map,
// Loop, Conditional and Gate is set.
type Step struct {
	ID              string       `yaml:"id" json:"id"`
	Name            string       `yaml:"name" json:"name,omitempty"`
	When            string       `yaml:"when" json:"when,omitempty"`
	ContinueOnError bool         `yaml:"continueOnError" json:"continueOnError,omitempty"`
	Timeout         Duration     `yaml:"timeout" json:"timeout,omitempty"`
	Run             *Run         `yaml:"run" json:"run,omitempty"`
	Parallel        *Parallel    `yaml:"parallel" json:"parallel,omitempty"`
	Map             *Map         `yaml:"map" json:"map,omitempty"`
	Loop            *Loop        `yaml:"loop" json:"loop,omitempty"`
	Conditional     *Conditional `yaml:"conditional" json:"conditional,omitempty"`
	Gate            *Gate        `yaml:"gate" json:"gate,omitempty"`
}

// Kind returns the step's kind, or "" when none or several bodies are set.
func (s *Step) Kind() string {
	var kinds []string
	if s.Run != nil {
		kinds = append(kinds, KindRun)
	}
	if s.Parallel != nil {
		kinds = append(kinds, KindParallel)
	}
	if s.Map != nil {
		kinds = append(kinds, KindMap)
	}
	if s.Loop != nil {
		kinds = append(kinds, KindLoop)
	}
	if s.Conditional != nil {
		kinds = append(kinds, KindConditional)
	}
	if s.Gate != nil {
		switch {
		case s.Gate.Approval != "" && s.Gate.Policy == nil:
			kinds = append(kinds, KindGateApproval)
		case s.Gate.Approval == "" && s.Gate.Policy != nil:
			kinds = append(kinds, KindGatePolicy)
		default: // neither or both: not a valid gate
			return ""
		}
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// Run executes a command. Arguments and env values may hold ${{ expr }}.
type Run struct {
	Command []string          `yaml:"command" json:"command"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
	Secrets []string          `yaml:"secrets" json:"secrets,omitempty"`
	Workdir string            `yaml:"workdir" json:"workdir,omitempty"`
	Outputs []string          `yaml:"outputs" json:"outputs,omitempty"`
}

// Parallel runs its steps at once, at most MaxParallel at a time (0: all).
type Parallel struct {
	MaxParallel int    `yaml:"maxParallel" json:"maxParallel,omitempty"`
	Steps       []Step `yaml:"steps" json:"steps"`
}

// Map runs its steps once per element of Items, in parallel.
type Map struct {
	Items       string `yaml:"items" json:"items"`
	MaxParallel int    `yaml:"maxParallel" json:"maxParallel,omitempty"`
	Steps       []Step `yaml:"steps" json:"steps"`
}

// Loop runs its steps once per element of Items, or Count times, in order.
type Loop struct {
	Items string `yaml:"items" json:"items,omitempty"`
	Count int    `yaml:"count" json:"count,omitempty"`
	Steps []Step `yaml:"steps" json:"steps"`
}

// Conditional runs the steps of the first branch whose condition holds, or Else.
type Conditional struct {
	Branches []Branch `yaml:"branches" json:"branches"`
	Else     []Step   `yaml:"else" json:"else,omitempty"`
}

// Branch is one arm of a conditional.
type Branch struct {
	When  string `yaml:"when" json:"when"`
	Steps []Step `yaml:"steps" json:"steps"`
}

// Gate stops the run until an approval (by id of spec.approvals) is granted
// or a policy expression holds.
type Gate struct {
	Approval string  `yaml:"approval" json:"approval,omitempty"`
	Policy   *Policy `yaml:"policy" json:"policy,omitempty"`
}

// Policy is an expression that must hold for the run to continue.
type Policy struct {
	Expr    string `yaml:"expr" json:"expr"`
	Message string `yaml:"message" json:"message,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "24h").
type Duration time.Duration

// String returns the canonical Go form ("1h30m0s"); zero is "".
func (d Duration) String() string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

// MarshalText writes the canonical Go form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
