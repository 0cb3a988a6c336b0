package plan

import (
	"fmt"
	"strings"

	"stellaops.io/stella/pack"
)

// Scope is what a run-time expression sees besides the plan's inputs.
type Scope struct {
	// Steps holds the outputs of finished steps by step id, as
	// expressions read them: steps.<id>.outputs.<name>.
	Steps map[string]any
	// Item and Index are the current element of the enclosing map or loop
	// of the step, when it has one (Index nil otherwise).
	Item  any
	Index *int
}

func (sc Scope) data(inputs map[string]any) map[string]any {
	d := map[string]any{"inputs": inputs, "steps": sc.Steps}
	if sc.Index != nil {
		d["index"] = float64(*sc.Index)
		d["item"] = sc.Item
	}
	return d
}

// Items evaluates the items expression of a deferred map or loop step s of
// pl at run time, against the inputs and sc. Items that are not a list
// wrap ErrExpansion; null is an empty list.
func (pl *Plan) Items(s *Step, sc Scope) ([]any, error) {
	if !s.Deferred {
		return nil, fmt.Errorf("step %s is not a deferred map or loop: %w", s.ID, ErrExpansion)
	}
	x, err := pack.CompileExpr(s.Items)
	if err != nil {
		return nil, fmt.Errorf("step %s: items: %w", s.ID, err)
	}
	v, err := x.Eval(sc.data(pl.Inputs))
	if err != nil {
		return nil, fmt.Errorf("step %s: items: %w", s.ID, err)
	}
	return itemList(s.ID, s.Items, v)
}

// Expansion is a deferred map or loop expanded at run time.
type Expansion struct {
	// Steps are the step's children, exactly as Build makes them for
	// items known when planning: ids "<step id>[<i>]::<body step id>",
	// placeholders that read inputs, item and index rendered, those that
	// read steps kept for the runner, nested maps over step outputs
	// deferred again.
	Steps []Step `json:"steps"`
	// Approvals are the gates among Steps that need approvers, in order.
	Approvals []Approval `json:"approvals"`
}

// Expand expands the deferred map or loop step s of pl over items (see
// Items), with the code Build uses: m is the manifest of the planned pack,
// whose step s comes from (the runner has it, verified against the plan's
// pack digest). A step that is not a deferred map or loop of m, or more
// than MaxExpandedSteps steps, wrap ErrExpansion.
func (pl *Plan) Expand(m *pack.Manifest, s *Step, items []any) (*Expansion, error) {
	if m.Metadata.Name != pl.Pack.Name || m.Metadata.Version != pl.Pack.Version {
		return nil, fmt.Errorf("step %s: manifest of %s:%s, plan of %s:%s: %w", s.ID, m.Metadata.Name, m.Metadata.Version,
			pl.Pack.Name, pl.Pack.Version, ErrExpansion)
	}
	if !s.Deferred {
		return nil, fmt.Errorf("step %s is not a deferred map or loop: %w", s.ID, ErrExpansion)
	}
	id := s.ID
	if i := strings.LastIndex(id, "::"); i >= 0 {
		id = id[i+2:]
	}
	ps := findStep(m.Spec.Steps, id)
	var body []pack.Step
	switch {
	case ps == nil:
	case ps.Map != nil && ps.Map.Items == s.Items:
		body = ps.Map.Steps
	case ps.Loop != nil && ps.Loop.Count == 0 && ps.Loop.Items == s.Items:
		body = ps.Loop.Steps
	default:
		ps = nil
	}
	if ps == nil {
		return nil, fmt.Errorf("step %s: no map or loop %q over %q in the pack: %w", s.ID, id, s.Items, ErrExpansion)
	}
	b := newBuilder(m, pl.Inputs)
	// Build expands a body with only item and index bound (they shadow
	// those of an enclosing iteration), so no outer scope is needed here.
	out := Step{ID: s.ID}
	if err := b.expand(&out, items, body, nil, s.Status == StatusSkipped); err != nil {
		return nil, err
	}
	exp := &Expansion{Steps: out.Children, Approvals: b.gates}
	if exp.Steps == nil {
		exp.Steps = []Step{}
	}
	if exp.Approvals == nil {
		exp.Approvals = []Approval{}
	}
	return exp, nil
}

// findStep finds the manifest step with id anywhere in steps (step ids are
// unique within a pack).
func findStep(steps []pack.Step, id string) *pack.Step {
	for i := range steps {
		s := &steps[i]
		if s.ID == id {
			return s
		}
		var inner [][]pack.Step
		switch {
		case s.Parallel != nil:
			inner = append(inner, s.Parallel.Steps)
		case s.Map != nil:
			inner = append(inner, s.Map.Steps)
		case s.Loop != nil:
			inner = append(inner, s.Loop.Steps)
		case s.Conditional != nil:
			for _, br := range s.Conditional.Branches {
				inner = append(inner, br.Steps)
			}
			inner = append(inner, s.Conditional.Else)
		}
		for _, in := range inner {
			if f := findStep(in, id); f != nil {
				return f
			}
		}
	}
	return nil
}
