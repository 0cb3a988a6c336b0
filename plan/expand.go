package plan

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"stellaops.io/stella/pack"
)

type secretUse struct{ secret, step string }

type builder struct {
	m          *pack.Manifest
	inputs     map[string]any
	approvals  map[string]pack.Approval
	runScope   map[string]bool
	gates      []Approval
	secretUses []secretUse
	count      int
	// Expanded steps share their template's expressions: compile each once.
	exprs     map[string]*pack.Expr
	templates map[string]*pack.Template
	// lazy, when set: a map's or loop's iterations are expanded (for
	// what the plan records of them: approvals, secret uses, the limit,
	// errors) but not kept; lazy gets how to expand them again instead,
	// under the step's id. registered lists the ids set in it, so that
	// those set within an iteration go when it has been used.
	lazy       lazyChildren
	registered []string
	// replay: expanding again what was planned already. Nothing is
	// recorded or counted, and iterations are expanded when walked.
	replay bool
	again  *builder
}

func newBuilder(m *pack.Manifest, inputs map[string]any) *builder {
	b := &builder{m: m, inputs: inputs, approvals: map[string]pack.Approval{}, runScope: map[string]bool{},
		exprs: map[string]*pack.Expr{}, templates: map[string]*pack.Template{}}
	for _, a := range m.Spec.Approvals {
		b.approvals[a.ID] = a
	}
	for _, s := range m.Spec.Secrets {
		if s.Scope == pack.ScopeRun {
			b.runScope[s.Name] = true
		}
	}
	return b
}

func (b *builder) expr(src string) (*pack.Expr, error) {
	if x, ok := b.exprs[src]; ok {
		return x, nil
	}
	x, err := pack.CompileExpr(src)
	if err != nil {
		return nil, err
	}
	b.exprs[src] = x
	return x, nil
}

func (b *builder) template(src string) (*pack.Template, error) {
	if t, ok := b.templates[src]; ok {
		return t, nil
	}
	t, err := pack.CompileTemplate(src)
	if err != nil {
		return nil, err
	}
	b.templates[src] = t
	return t, nil
}

// env is what expressions see at one place of the graph.
type env struct {
	vars map[string]any // item, index
	// template: inside the body of a deferred map or loop, where item and
	// index are bound only when the runner expands it.
	template bool
	data     map[string]any // what expressions read here, made once (builder.data)
}

// runTime reports whether something that reads the given roots can only
// be decided or rendered by the runner: it reads step outputs, or item or
// index inside a template.
func (e *env) runTime(reads func(root string) bool) bool {
	return reads("steps") || e != nil && e.template && (reads("item") || reads("index"))
}

// data is what expressions read at e: the inputs, and item and index.
// It is made once for each e (an iteration renders and decides several
// times with the same), and read only.
func (b *builder) data(e *env) map[string]any {
	if e != nil && e.data != nil {
		return e.data
	}
	d := map[string]any{"inputs": b.inputs}
	if e != nil {
		for k, v := range e.vars {
			d[k] = v
		}
		e.data = d
	}
	return d
}

// decide evaluates an expression that reads only inputs/item/index. It returns
// nil when the expression needs run-time values (steps.*, or item/index in
// a template).
func (b *builder) decide(src string, e *env) (*bool, error) {
	x, err := b.expr(src)
	if err != nil {
		return nil, err
	}
	if e.runTime(x.Reads) {
		return nil, nil
	}
	v, err := x.Eval(b.data(e))
	if err != nil {
		return nil, err
	}
	t := pack.Truthy(v)
	return &t, nil
}

func (b *builder) steps(steps []pack.Step, prefix string, e *env, skipped bool) ([]Step, error) {
	out := make([]Step, 0, len(steps))
	for i := range steps {
		s, err := b.step(&steps[i], prefix, e, skipped)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// replayer is the builder that expands again what b planned.
func (b *builder) replayer() *builder {
	if b.replay {
		return b
	}
	if b.again == nil {
		r := *b
		r.replay, r.gates, r.secretUses, r.registered = true, nil, nil, nil
		b.again = &r
	}
	return b.again
}

func (b *builder) step(ps *pack.Step, prefix string, e *env, skipped bool) (Step, error) {
	b.count++
	if b.count > MaxExpandedSteps && !b.replay {
		return Step{}, fmt.Errorf("more than %d steps after expansion: %w", MaxExpandedSteps, ErrExpansion)
	}
	s := Step{
		ID:              prefix + ps.ID,
		Kind:            ps.Kind(),
		Name:            ps.Name,
		When:            ps.When,
		ContinueOnError: ps.ContinueOnError,
		Timeout:         ps.Timeout.String(),
	}
	if e != nil && len(e.vars) > 0 {
		if idx, ok := e.vars["index"].(int); ok {
			s.Index = &idx
		}
	}
	if ps.When != "" && !skipped {
		r, err := b.decide(ps.When, e)
		if err != nil {
			return Step{}, fmt.Errorf("step %s: when: %w", s.ID, err)
		}
		s.WhenResult = r
		if r != nil && !*r {
			skipped = true
		}
	}
	s.Status = StatusPending
	if skipped {
		s.Status = StatusSkipped
	}
	var err error
	switch {
	case ps.Run != nil:
		s.Run, err = b.run(ps.Run, s.ID, e, skipped)
	case ps.Parallel != nil:
		s.MaxParallel = ps.Parallel.MaxParallel
		s.Children, err = b.steps(ps.Parallel.Steps, prefix, e, skipped)
	case ps.Map != nil:
		s.MaxParallel = ps.Map.MaxParallel
		s.Items = ps.Map.Items
		err = b.iterate(&s, ps.Map.Items, 0, ps.Map.Steps, e, skipped)
	case ps.Loop != nil:
		s.Items = ps.Loop.Items
		err = b.iterate(&s, ps.Loop.Items, ps.Loop.Count, ps.Loop.Steps, e, skipped)
	case ps.Conditional != nil:
		err = b.conditional(&s, ps.Conditional, prefix, e, skipped)
	case ps.Gate != nil:
		err = b.gate(&s, ps.Gate, e, skipped)
	}
	if err != nil {
		return Step{}, err
	}
	return s, nil
}

func (b *builder) run(r *pack.Run, id string, e *env, skipped bool) (*Run, error) {
	out := &Run{Workdir: r.Workdir, Outputs: r.Outputs}
	if len(r.Command) > 0 {
		out.Command = make([]string, 0, len(r.Command))
	}
	for _, a := range r.Command {
		v, err := b.render(a, e)
		if err != nil {
			return nil, fmt.Errorf("step %s: command: %w", id, err)
		}
		out.Command = append(out.Command, v)
	}
	if len(r.Env) > 0 {
		out.Env = map[string]string{}
		for k, val := range r.Env {
			v, err := b.render(val, e)
			if err != nil {
				return nil, fmt.Errorf("step %s: env %s: %w", id, k, err)
			}
			out.Env[k] = v
		}
	}
	secrets := map[string]bool{}
	for _, s := range r.Secrets {
		secrets[s] = true
	}
	for s := range b.runScope {
		secrets[s] = true
	}
	for s := range secrets {
		out.Secrets = append(out.Secrets, s)
	}
	sort.Strings(out.Secrets)
	if !skipped && !b.replay {
		for _, s := range out.Secrets {
			b.secretUses = append(b.secretUses, secretUse{secret: s, step: id})
		}
	}
	return out, nil
}

// render resolves ${{ }} placeholders that read only inputs/item/index and
// keeps the others for the runner: those that read steps, and in a
// template those that read item or index.
func (b *builder) render(src string, e *env) (string, error) {
	t, err := b.template(src)
	if err != nil {
		return "", err
	}
	if !t.HasPlaceholders() || e.runTime(t.Reads) {
		return src, nil
	}
	return t.Render(b.data(e))
}

func (b *builder) iterate(s *Step, items string, count int, body []pack.Step, e *env, skipped bool) error {
	var list []any
	switch {
	case count > 0:
		list = make([]any, count)
		for i := range list {
			list[i] = float64(i)
		}
	default:
		x, err := b.expr(items)
		if err != nil {
			return fmt.Errorf("step %s: items: %w", s.ID, err)
		}
		if e.runTime(x.Reads) || skipped {
			// Known only at run time (or never): keep the body as a
			// template. Its steps have the statuses each iteration will
			// have (skipped all through when the map or loop is), and
			// item and index — its own, which shadow any outer ones —
			// stay placeholders for the runner.
			s.Deferred = true
			t, err := b.steps(body, s.ID+"[*]::", &env{template: true}, skipped)
			if err != nil {
				return err
			}
			s.Template = t
			return nil
		}
		v, err := x.Eval(b.data(e))
		if err != nil {
			return fmt.Errorf("step %s: items: %w", s.ID, err)
		}
		if list, err = itemList(s.ID, items, v); err != nil {
			return err
		}
	}
	return b.expand(s, list, body, e, skipped)
}

// itemList is the list an items expression gave: a list, or nothing for null.
func itemList(id, items string, v any) ([]any, error) {
	l, ok := v.([]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("step %s: items %q gave %T, not a list: %w", id, items, v, ErrExpansion)
	}
	return l, nil
}

// expand expands the body once per item into s.Children, with ids
// "<s.ID>[<i>]::<body step id>" and item and index bound; a lazy builder
// expands them once and keeps only how to expand them again.
func (b *builder) expand(s *Step, list []any, body []pack.Step, e *env, skipped bool) error {
	it := &iterations{id: s.ID, list: list, body: body, e: e, skipped: skipped}
	switch {
	case b.lazy == nil:
		// Sized once: growing a list of 100,000 steps by appends copies it
		// again and again, each copy garbage the size of the list.
		if n := it.count(); n > 0 && n <= MaxExpandedSteps {
			s.Children = slices.Grow(s.Children, n)
		}
		return it.each(b, func(c *Step) error {
			s.Children = append(s.Children, *c)
			return nil
		})
	case b.replay:
		// Planned already: expanded when walked.
	default:
		if err := it.each(b, func(*Step) error { return nil }); err != nil {
			return err
		}
	}
	if _, ok := b.lazy[s.ID]; ok {
		return fmt.Errorf("step %s: %w", s.ID, errSameID)
	}
	it.b = b.replayer()
	b.lazy[s.ID] = it
	b.registered = append(b.registered, s.ID)
	return nil
}

// errSameID: two steps of one plan have the same id, which a lazy plan
// cannot tell apart (a pack's step ids are unique, and so the ids of its
// expanded steps).
var errSameID = errors.New("two steps with the same id")

// iterations are the steps of a map or loop over a list of items: its
// body once per item.
type iterations struct {
	id      string // of the map or loop step
	list    []any
	body    []pack.Step
	e       *env
	skipped bool
	b       *builder // expands them again, in a plan of BuildStreamed
}

// count is the number of steps the iterations expand to.
func (it *iterations) count() int { return len(it.list) * len(it.body) }

// each expands the iterations with b, one at a time, and calls fn with
// each of their steps in order. What an iteration set in b.lazy goes
// with it.
func (it *iterations) each(b *builder, fn func(c *Step) error) error {
	for i, item := range it.list {
		vars := map[string]any{"index": i, "item": item}
		if it.e != nil {
			for k, v := range it.e.vars {
				if _, ok := vars[k]; !ok {
					vars[k] = v
				}
			}
		}
		mark := len(b.registered)
		children, err := b.steps(it.body, fmt.Sprintf("%s[%d]::", it.id, i), &env{vars: jsonVars(vars)}, it.skipped)
		if err != nil {
			return err
		}
		for ci := range children {
			idx := i
			children[ci].Index = &idx
			if err := fn(&children[ci]); err != nil {
				return err
			}
		}
		for _, id := range b.registered[mark:] {
			delete(b.lazy, id)
		}
		b.registered = b.registered[:mark]
	}
	return nil
}

// jsonVars converts int index values to float64, as JSON would.
func jsonVars(vars map[string]any) map[string]any {
	out := make(map[string]any, len(vars))
	for k, v := range vars {
		if i, ok := v.(int); ok {
			out[k] = float64(i)
			continue
		}
		out[k] = v
	}
	return out
}

func (b *builder) conditional(s *Step, c *pack.Conditional, prefix string, e *env, skipped bool) error {
	decided := skipped // once a branch is chosen (or all are skipped), the rest are skipped
	for _, br := range c.Branches {
		out := Branch{When: br.When}
		branchSkipped := decided
		if !decided {
			r, err := b.decide(br.When, e)
			if err != nil {
				return fmt.Errorf("step %s: branch when: %w", s.ID, err)
			}
			out.Selected = r
			if r != nil {
				if *r {
					decided = true
				} else {
					branchSkipped = true
				}
			}
		}
		steps, err := b.steps(br.Steps, prefix, e, branchSkipped)
		if err != nil {
			return err
		}
		out.Steps = steps
		s.Branches = append(s.Branches, out)
	}
	if c.Else != nil {
		steps, err := b.steps(c.Else, prefix, e, decided)
		if err != nil {
			return err
		}
		s.Else = steps
	}
	return nil
}

func (b *builder) gate(s *Step, g *pack.Gate, e *env, skipped bool) error {
	s.Gate = &Gate{Approval: g.Approval}
	if g.Policy != nil {
		s.Gate.Policy = g.Policy.Expr
		s.Gate.Message = g.Policy.Message
		if !skipped {
			r, err := b.decide(g.Policy.Expr, e)
			if err != nil {
				return fmt.Errorf("step %s: policy: %w", s.ID, err)
			}
			s.Gate.PolicyResult = r
			s.Status = StatusRequiresPolicy
		}
		return nil
	}
	if skipped {
		return nil
	}
	s.Status = StatusRequiresApproval
	if b.replay {
		return nil // recorded when it was planned
	}
	if e != nil && e.template {
		// The gate's ids are known only when the runner expands the
		// template: the expansion lists its approvals (Expansion.Approvals).
		return nil
	}
	a := b.approvals[g.Approval]
	minA := a.MinApprovers
	if minA == 0 {
		minA = DefaultMinApprovers
	}
	exp := time.Duration(a.ExpiresAfter)
	if exp == 0 {
		exp = DefaultExpiry
	}
	b.gates = append(b.gates, Approval{Gate: s.ID, Approval: a.ID, Role: a.Role, MinApprovers: minA, ExpiresAfter: exp.String(), Reason: a.Reason})
	return nil
}
