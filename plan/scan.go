package plan

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Scan reads the JSON of a plan from r without holding its steps: a plan
// of MaxExpandedSteps steps is tens of MiB of JSON and ten times that
// decoded. It returns the plan without its steps (Steps is nil) and the
// hash of the canonical JSON of the plan it read, which it writes as it
// reads, member by member, with the writers WriteCanonical uses. When that
// hash is the hash of the bytes r gave (the caller checks: the bytes are
// the plan it expects), the bytes are exactly the canonical JSON of the
// plan they decode to, as ParseCanonical requires of saved plans.
//
// An error of r is returned as it is. Members are refused (ErrInvalid) as
// Decode refuses them — unknown
// names, values of the wrong type, another apiVersion — and so are
// members out of RFC 8785 order and repeated ones, which no canonical
// form has. Scan stops after the plan's object and reads nothing more.
//
// visit is called for every step of the expanded graph when its object
// ends, with its own members (Children, Branches, Else and Template are
// nil) and its depth as Walk gives it, and returns what emit is later
// given for it: emit is called in Walk's order (a step, then its
// children, the steps of its branches and its else steps, depth first).
// Since a step's children come before its id in canonical order, what
// visit returns for the steps under a step of the plan's list is held
// until that step ends (in chunks, and nothing else of them); steps of templates (unexpanded bodies, which Walk does not visit)
// are read and checked, and neither visited nor emitted.
func Scan[T any](r io.Reader, visit func(s *Step, depth int) T, emit func(T)) (*Plan, digest.Digest, error) {
	h := sha256.New()
	er := &errReader{r: r}
	sc := &scanner[T]{dec: json.NewDecoder(er), w: bufio.NewWriterSize(h, 16<<10), visit: visit, emit: emit}
	sc.dec.DisallowUnknownFields()
	pl, err := sc.plan()
	if er.err != nil && !errors.Is(er.err, io.EOF) {
		return nil, "", er.err // the bytes could not be read: no verdict on them
	}
	if err != nil {
		return nil, "", fmt.Errorf("plan: %w: %v", ErrInvalid, err)
	}
	if err := sc.w.Flush(); err != nil {
		return nil, "", err
	}
	return pl, digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), nil
}

// errReader keeps the first error of its reader.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

type scanner[T any] struct {
	dec   *json.Decoder
	w     *bufio.Writer
	visit func(*Step, int) T
	emit  func(T)
	buf   walkBuffer[T]
	depth int // objects and lists open
}

var errNotCanonical = errors.New("members out of canonical order, repeated or unknown")

// names reads the members of an object, whose '{' is next, in the order
// of order (canonical), calling fn with the index in order of each
// member present; each call reads the member's value.
func (sc *scanner[T]) names(order []string, fn func(i int) error) error {
	if err := sc.delim('{'); err != nil {
		return err
	}
	next := 0
	for sc.dec.More() {
		t, err := sc.dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		i := next
		for i < len(order) && order[i] != name {
			i++
		}
		if i == len(order) {
			return fmt.Errorf("member %q: %w", name, errNotCanonical)
		}
		next = i + 1
		if err := fn(i); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return sc.delim('}')
}

// members reads an object whose members are those of order, as names
// does, and writes every member of order in turn: one in the bytes by
// present, which reads its value, one not in them by absent, as the
// object without it is written (a member written always, or nothing).
func (sc *scanner[T]) members(order []string, absent, present func(i int) error) error {
	written := 0
	upTo := func(i int) error {
		for ; written < i; written++ {
			if err := absent(written); err != nil {
				return err
			}
		}
		return nil
	}
	err := sc.names(order, func(i int) error {
		if err := upTo(i); err != nil {
			return err
		}
		written = i + 1
		return present(i)
	})
	if err != nil {
		return err
	}
	return upTo(len(order))
}

func (sc *scanner[T]) delim(want json.Delim) error {
	t, err := sc.dec.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("%v where %v belongs", t, want)
	}
	sc.open(want)
	return nil
}

// open counts the objects and lists open around the next token.
func (sc *scanner[T]) open(d json.Delim) {
	switch d {
	case '{', '[':
		sc.depth++
	default:
		sc.depth--
	}
}

// decode reads the next value into v, refusing, as decoding the whole
// document would, one that nests objects and lists deeper than
// encoding/json allows counting those it is in (its own decoder counts
// from the value).
func (sc *scanner[T]) decode(v any) error {
	if err := sc.dec.Decode(v); err != nil {
		return err
	}
	// Only the values decoded into an any nest as deep as they like
	// (inputs, a step's vars).
	if m, ok := v.(*map[string]any); ok && sc.depth+jsonDepth(*m) > maxJSONDepth {
		return fmt.Errorf("objects and lists nested deeper than %d levels", maxJSONDepth)
	}
	return nil
}

// jsonDepth is how deep v's objects and lists nest: the nesting of values
// JSON decodes into an any; the plan's other values nest at most four
// levels, which the bound on steps keeps far from the limit.
func jsonDepth(v any) int {
	switch x := v.(type) {
	case []any:
		d := 0
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	case map[string]any:
		if x == nil {
			return 0
		}
		d := 0
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	}
	return 0
}

// list reads the start of a list, whose value is next: false for null.
func (sc *scanner[T]) list() (bool, error) {
	t, err := sc.dec.Token()
	if err != nil || t == nil {
		return false, err
	}
	if t != json.Delim('[') {
		return false, fmt.Errorf("%v where a list belongs", t)
	}
	sc.open('[')
	return true, nil
}

// planOrder is the canonical order of a plan's members.
var planOrder = []string{"apiVersion", "approvals", "failure", "inputs", "outputs", "pack", "sandbox", "secrets", "steps"}

func (sc *scanner[T]) plan() (*Plan, error) {
	pl := &Plan{}
	o := object{w: sc.w}
	fields := []any{&pl.APIVersion, &pl.Approvals, &pl.Failure, &pl.Inputs, &pl.Outputs, &pl.Pack, &pl.Sandbox, &pl.Secrets}
	// A member not in the bytes is written as the plan without it has it
	// (WriteCanonical writes every member but outputs).
	absent := func(i int) error { return sc.planMember(&o, pl, i) }
	err := sc.members(planOrder, absent, func(i int) error {
		if planOrder[i] == "steps" {
			o.member("steps")
			return sc.steps(0, nil, "", false)
		}
		if err := sc.decode(fields[i]); err != nil {
			return err
		}
		return sc.planMember(&o, pl, i)
	})
	if err != nil {
		return nil, err
	}
	if err := o.end(); err != nil {
		return nil, err
	}
	if pl.APIVersion != APIVersion {
		return nil, fmt.Errorf("apiVersion %q", pl.APIVersion)
	}
	return pl, nil
}

// planMember writes member i of the plan as WriteCanonical does.
func (sc *scanner[T]) planMember(o *object, pl *Plan, i int) error {
	var v any
	switch planOrder[i] {
	case "apiVersion":
		v = pl.APIVersion
	case "approvals":
		v = pl.Approvals
	case "failure":
		v = pl.Failure
	case "inputs":
		o.member("inputs")
		return writeValue(sc.w, pl.Inputs)
	case "outputs":
		if len(pl.Outputs) == 0 {
			return nil
		}
		v = pl.Outputs
	case "pack":
		v = pl.Pack
	case "sandbox":
		v = pl.Sandbox
	case "secrets":
		v = pl.Secrets
	case "steps":
		o.member("steps")
		_, err := sc.w.WriteString("null")
		return err
	}
	o.member(planOrder[i])
	return writeMarshal(sc.w, v)
}

// steps reads a list of steps at depth, each visited and kept in the
// walk buffer unless skip (a template's). With o, the list is member
// name of o, which is left out when the list is null or empty, as
// writeCanonical leaves out a step's empty lists; without, the caller
// wrote the name, and the list is written as writeSteps writes it.
func (sc *scanner[T]) steps(depth int, o *object, name string, skip bool) error {
	ok, err := sc.list()
	if err != nil {
		return err
	}
	if !ok {
		if o == nil {
			_, err = sc.w.WriteString("null")
		}
		return err
	}
	n := 0
	for sc.dec.More() {
		switch {
		case n > 0:
			sc.w.WriteByte(',')
		case o != nil:
			o.member(name)
			fallthrough
		default:
			sc.w.WriteByte('[')
		}
		n++
		if err := sc.step(depth, skip); err != nil {
			return err
		}
	}
	switch {
	case n > 0:
		sc.w.WriteByte(']')
	case o == nil:
		sc.w.WriteString("[]")
	}
	return sc.delim(']')
}

// stepOrder is the canonical order of a step's members.
var stepOrder = []string{"branches", "children", "continueOnError", "deferred", "else", "gate", "id", "index",
	"items", "kind", "maxParallel", "name", "run", "status", "template", "timeout", "vars", "when", "whenResult"}

// step reads one step at depth. Unless skip, what visit makes of it goes
// into the walk buffer at the place the step starts, before what is under
// it; a step at depth 0 ends a walk, and the buffer is emitted.
func (sc *scanner[T]) step(depth int, skip bool) error {
	if depth >= MaxStepDepth {
		return fmt.Errorf("steps nested %d levels deep or more (MaxStepDepth)", MaxStepDepth)
	}
	var s Step
	slot := -1
	if !skip {
		var zero T
		slot = sc.buf.push(zero)
	}
	// Canonical order puts a step's branches before its children, Walk
	// the children first.
	branchesFrom, childrenFrom := -1, -1
	o := object{w: sc.w}
	absent := func(i int) error { return s.writeMember(&o, stepOrder[i], nil) }
	err := sc.members(stepOrder, absent, func(i int) error {
		name := stepOrder[i]
		switch name {
		case "branches":
			branchesFrom = sc.buf.n
			return sc.branches(&o, depth+1, skip)
		case "children":
			childrenFrom = sc.buf.n
			if err := sc.steps(depth+1, &o, name, skip); err != nil {
				return err
			}
			if branchesFrom >= 0 {
				sc.buf.rotate(branchesFrom, childrenFrom, sc.buf.n)
			}
			return nil
		case "else", "template":
			return sc.steps(depth+1, &o, name, skip || name == "template")
		}
		if err := sc.decode(s.field(name)); err != nil {
			return err
		}
		return s.writeMember(&o, name, nil)
	})
	if err != nil {
		return err
	}
	if err := o.end(); err != nil {
		return err
	}
	if skip {
		return nil
	}
	*sc.buf.at(slot) = sc.visit(&s, depth)
	if depth == 0 {
		sc.buf.each(sc.emit)
		sc.buf = walkBuffer[T]{}
	}
	return nil
}

// walkBuffer holds what visit made of the steps under a step that has not
// ended, in Walk's order, in chunks: no copy as it grows.
type walkBuffer[T any] struct {
	chunks [][]T
	n      int
}

const walkChunk = 1024

// push appends t and returns its index.
func (b *walkBuffer[T]) push(t T) int {
	if b.n%walkChunk == 0 {
		b.chunks = append(b.chunks, make([]T, 0, walkChunk))
	}
	last := &b.chunks[len(b.chunks)-1]
	*last = append(*last, t)
	b.n++
	return b.n - 1
}

func (b *walkBuffer[T]) at(i int) *T { return &b.chunks[i/walkChunk][i%walkChunk] }

func (b *walkBuffer[T]) each(fn func(T)) {
	for _, c := range b.chunks {
		for _, t := range c {
			fn(t)
		}
	}
}

// rotate moves the items [mid, end) before [from, mid).
func (b *walkBuffer[T]) rotate(from, mid, end int) {
	b.reverse(from, mid)
	b.reverse(mid, end)
	b.reverse(from, end)
}

func (b *walkBuffer[T]) reverse(i, j int) {
	for j--; i < j; i, j = i+1, j-1 {
		x, y := b.at(i), b.at(j)
		*x, *y = *y, *x
	}
}

// branchOrder is the canonical order of a branch's members.
var branchOrder = []string{"selected", "steps", "when"}

// branches reads a step's branches: each one's steps are under the step.
func (sc *scanner[T]) branches(o *object, depth int, skip bool) error {
	ok, err := sc.list()
	if err != nil || !ok {
		return err
	}
	n := 0
	for sc.dec.More() {
		if n == 0 {
			o.member("branches")
			sc.w.WriteByte('[')
		} else {
			sc.w.WriteByte(',')
		}
		n++
		var br Branch
		bo := object{w: sc.w}
		absent := func(i int) error { br.writeMember(&bo, branchOrder[i]); return nil }
		err := sc.members(branchOrder, absent, func(i int) error {
			switch branchOrder[i] {
			case "selected":
				if err := sc.decode(&br.Selected); err != nil {
					return err
				}
			case "steps":
				bo.member("steps")
				return sc.steps(depth, nil, "", skip)
			case "when":
				if err := sc.decode(&br.When); err != nil {
					return err
				}
			}
			br.writeMember(&bo, branchOrder[i])
			return nil
		})
		if err != nil {
			return err
		}
		if err := bo.end(); err != nil {
			return err
		}
	}
	if n > 0 {
		sc.w.WriteByte(']')
	}
	return sc.delim(']')
}
