// Package plan derives the deterministic plan of a task pack run: the pack
// digest, the resolved inputs, secret references (never values), the expanded
// step graph with each step's simulated status, the gates, and the failure and
// sandbox policy. Its hash — sha256 of its RFC 8785 canonical JSON — is what
// approvals and evidence are bound to, so the plan holds no times, host paths
// or run ids: the same pack and inputs give the same hash on every machine.
package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/pack"
)

// APIVersion identifies the plan format.
const APIVersion = "stellaops.io/plan.v1"

// Step statuses a plan simulates.
const (
	StatusPending          = "pending"
	StatusSkipped          = "skipped"
	StatusRequiresApproval = "requires-approval"
	StatusRequiresPolicy   = "requires-policy"
)

// Defaults applied to approvals that leave them out.
const (
	DefaultMinApprovers = 1
	DefaultExpiry       = 24 * time.Hour
)

// MaxExpandedSteps bounds the expanded graph (map and loop expansion).
const MaxExpandedSteps = 100000

// MaxStepDepth bounds how deep steps nest in a plan (children, branches,
// else and template steps each one level under their step). A pack's
// manifest nests at most pack.MaxManifestDepth levels, so no plan of a
// pack comes near it; a plan read from elsewhere (an approval request's)
// deeper than that is refused, by Scan before it goes deeper and by
// CheckDepth, so that reading one cannot exhaust the stack.
const MaxStepDepth = 1000

// maxJSONDepth is how deep encoding/json nests objects and arrays before
// it refuses a document.
const maxJSONDepth = 10000

// CheckDepth refuses (ErrInvalid) a plan whose steps nest MaxStepDepth
// levels or more.
func CheckDepth(pl *Plan) error {
	var deepest func(steps []Step, depth int) bool
	deepest = func(steps []Step, depth int) bool {
		if len(steps) > 0 && depth >= MaxStepDepth {
			return true
		}
		for i := range steps {
			s := &steps[i]
			if deepest(s.Children, depth+1) || deepest(s.Else, depth+1) || deepest(s.Template, depth+1) {
				return true
			}
			for _, br := range s.Branches {
				if deepest(br.Steps, depth+1) {
					return true
				}
			}
		}
		return false
	}
	if deepest(pl.Steps, 0) {
		return fmt.Errorf("plan: %w: steps nested %d levels deep or more (MaxStepDepth)", ErrInvalid, MaxStepDepth)
	}
	return nil
}

// ErrExpansion: a map or loop could not be expanded (items not a list, too many steps).
var ErrExpansion = errors.New("cannot expand step")

// Plan is what a run will do. Field names are part of the hashed format.
type Plan struct {
	APIVersion string         `json:"apiVersion"`
	Pack       PackRef        `json:"pack"`
	Inputs     map[string]any `json:"inputs"`
	Secrets    []Secret       `json:"secrets"`
	Approvals  []Approval     `json:"approvals"`
	Steps      []Step         `json:"steps"`
	Failure    pack.Failure   `json:"failure"`
	Sandbox    pack.Sandbox   `json:"sandbox"`
	Outputs    []pack.Output  `json:"outputs,omitempty"`
}

// PackRef names the planned pack; Digest is its artifact manifest digest.
type PackRef struct {
	Name    string        `json:"name"`
	Version string        `json:"version"`
	Digest  digest.Digest `json:"digest"`
}

// Secret is a secret reference and the expanded steps that receive it.
type Secret struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	Required bool   `json:"required"`
	Scope    string `json:"scope"`
	// Env is the environment variable the secret is delivered in, when
	// the pack asks for one instead of a file.
	Env   string   `json:"env,omitempty"`
	Steps []string `json:"steps"`
}

// Approval is one gate that needs approvers.
type Approval struct {
	Gate         string `json:"gate"` // expanded step id of the gate
	Approval     string `json:"approval"`
	Role         string `json:"role"`
	MinApprovers int    `json:"minApprovers"`
	ExpiresAfter string `json:"expiresAfter"`
	Reason       string `json:"reason,omitempty"`
}

// Step is one node of the expanded graph.
type Step struct {
	ID              string         `json:"id"`
	Kind            string         `json:"kind"`
	Name            string         `json:"name,omitempty"`
	Status          string         `json:"status"`
	When            string         `json:"when,omitempty"`
	WhenResult      *bool          `json:"whenResult,omitempty"` // set when decided from inputs
	ContinueOnError bool           `json:"continueOnError,omitempty"`
	Timeout         string         `json:"timeout,omitempty"`
	Index           *int           `json:"index,omitempty"` // iteration of the enclosing map/loop
	Run             *Run           `json:"run,omitempty"`
	Gate            *Gate          `json:"gate,omitempty"`
	MaxParallel     int            `json:"maxParallel,omitempty"`
	Items           string         `json:"items,omitempty"`    // map/loop items expression
	Deferred        bool           `json:"deferred,omitempty"` // children expand at run time
	Template        []Step         `json:"template,omitempty"` // unexpanded body of a deferred map/loop
	Branches        []Branch       `json:"branches,omitempty"`
	Else            []Step         `json:"else,omitempty"`
	Children        []Step         `json:"children,omitempty"`
	Vars            map[string]any `json:"vars,omitempty"` // item/index bound for this step
}

// Run is a command with placeholders resolved where inputs decide them.
type Run struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
	Outputs []string          `json:"outputs,omitempty"`
}

// Gate is an approval or policy gate.
type Gate struct {
	Approval     string `json:"approval,omitempty"`
	Policy       string `json:"policy,omitempty"`
	Message      string `json:"message,omitempty"`
	PolicyResult *bool  `json:"policyResult,omitempty"` // set when decided from inputs
}

// Build plans pack p (whose artifact digest is packDigest) with resolved inputs.
func Build(p *pack.Pack, packDigest digest.Digest, inputs map[string]any) (*Plan, error) {
	return build(p, packDigest, inputs, nil)
}

// build plans p. With lazy, the plan does not hold the steps of its
// iterations: lazy gets, for each map or loop step, how to expand them
// again (BuildStreamed).
func build(p *pack.Pack, packDigest digest.Digest, inputs map[string]any, lazy lazyChildren) (*Plan, error) {
	m := p.Manifest
	pl := &Plan{
		APIVersion: APIVersion,
		Pack:       PackRef{Name: m.Metadata.Name, Version: m.Metadata.Version, Digest: packDigest},
		Inputs:     inputs,
		Secrets:    []Secret{},
		Approvals:  []Approval{},
		Failure:    m.Spec.Failure,
		Sandbox:    m.Spec.Sandbox,
		Outputs:    m.Spec.Outputs,
	}
	if pl.Inputs == nil {
		pl.Inputs = map[string]any{}
	}
	if pl.Sandbox.Network.Mode == "" {
		pl.Sandbox.Network.Mode = pack.NetworkNone
	}
	b := newBuilder(m, pl.Inputs)
	b.lazy = lazy
	steps, err := b.steps(m.Spec.Steps, "", nil, false)
	if err != nil {
		return nil, err
	}
	pl.Steps = steps
	if b.gates != nil {
		pl.Approvals = b.gates
	}
	uses := map[string][]string{}
	for _, u := range b.secretUses {
		uses[u.secret] = append(uses[u.secret], u.step)
	}
	for _, s := range m.Spec.Secrets {
		scope := s.Scope
		if scope == "" {
			scope = pack.ScopeStep
		}
		st := uses[s.Name]
		if st == nil {
			st = []string{}
		}
		pl.Secrets = append(pl.Secrets, Secret{Name: s.Name, Source: s.Source, Required: s.Required, Scope: scope, Env: s.Env, Steps: st})
	}
	sort.Slice(pl.Secrets, func(i, j int) bool { return pl.Secrets[i].Name < pl.Secrets[j].Name })
	return pl, nil
}

// Canonical returns the RFC 8785 canonical JSON of the plan.
func (pl *Plan) Canonical() ([]byte, error) {
	var b bytes.Buffer
	if err := pl.WriteCanonical(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Hash returns the plan hash: "sha256:" + hex SHA-256 of the canonical JSON.
func (pl *Plan) Hash() (digest.Digest, error) {
	return hashCanonical(pl)
}

// HashBytes hashes canonical plan bytes.
func HashBytes(canonical []byte) digest.Digest {
	sum := sha256.Sum256(canonical)
	return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Parse reads a plan from JSON and returns it with the hash of its canonical
// form, so a plan carried on media can be checked against the hash it claims.
func Parse(b []byte) (*Plan, digest.Digest, error) {
	pl, err := Decode(bytes.NewReader(b))
	if err != nil {
		return nil, "", err
	}
	c, err := canonical.Transform(b)
	if err != nil {
		return nil, "", fmt.Errorf("plan: %w: %v", ErrInvalid, err)
	}
	return pl, HashBytes(c), nil
}

// Decode reads a plan from JSON, refusing unknown members and another
// apiVersion (ErrInvalid), and does not hash it.
func Decode(r io.Reader) (*Plan, error) {
	var pl Plan
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pl); err != nil {
		return nil, fmt.Errorf("plan: %w: %v", ErrInvalid, err)
	}
	if pl.APIVersion != APIVersion {
		return nil, fmt.Errorf("plan apiVersion %q: %w", pl.APIVersion, ErrInvalid)
	}
	return &pl, nil
}

// ErrInvalid: bytes that claim to be a plan are not one.
var ErrInvalid = errors.New("invalid plan")

// ErrHashMismatch: a plan's hash is not the one it was pinned to (a pack or
// its inputs changed after the plan was approved).
var ErrHashMismatch = errors.New("plan hash differs from the pinned one")

// Walk calls fn for every step of the expanded graph in order, depth first.
func (pl *Plan) Walk(fn func(s *Step, depth int)) {
	var walk func(steps []Step, depth int)
	walk = func(steps []Step, depth int) {
		for i := range steps {
			s := &steps[i]
			fn(s, depth)
			walk(s.Children, depth+1)
			for bi := range s.Branches {
				walk(s.Branches[bi].Steps, depth+1)
			}
			walk(s.Else, depth+1)
		}
	}
	walk(pl.Steps, 0)
}

// Branch is one arm of a conditional step.
type Branch struct {
	When     string `json:"when"`
	Selected *bool  `json:"selected,omitempty"` // set when decided from inputs
	Steps    []Step `json:"steps"`
}
