package plan

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
)

// Streamed is a plan that does not hold the steps of its map and loop
// iterations: a map over 100,000 items is about 1 KiB of memory a step
// when it is held, and its canonical JSON a quarter of that. They are
// expanded once when it is built — for the approvals and secret uses the
// plan records of them, the MaxExpandedSteps limit and any error — and
// again, one iteration at a time, each time it is written or walked: the
// bytes and the steps are those of the Plan of Build. It is what
// `stella pack plan` hashes and shows; running takes the Plan of Build.
// Its methods expand with one builder: they are not safe for concurrent
// use.
type Streamed struct {
	pl   *Plan
	lazy lazyChildren
}

// BuildStreamed plans pack p as Build does, without holding the steps of
// its iterations.
func BuildStreamed(p *pack.Pack, packDigest digest.Digest, inputs map[string]any) (*Streamed, error) {
	lazy := lazyChildren{}
	pl, err := build(p, packDigest, inputs, lazy)
	if errors.Is(err, errSameID) {
		// Not from a pack that loaded: held, it is still right.
		lazy = nil
		pl, err = build(p, packDigest, inputs, nil)
	}
	if err != nil {
		return nil, err
	}
	return &Streamed{pl: pl, lazy: lazy}, nil
}

// Pack names the planned pack.
func (s *Streamed) Pack() PackRef { return s.pl.Pack }

// Approvals are the plan's approval gates, as Plan.Approvals.
func (s *Streamed) Approvals() []Approval { return s.pl.Approvals }

// Secrets are the plan's secret references, as Plan.Secrets.
func (s *Streamed) Secrets() []Secret { return s.pl.Secrets }

// WriteCanonical writes the RFC 8785 canonical JSON of the plan to w,
// expanding its iterations as it goes.
func (s *Streamed) WriteCanonical(w io.Writer) error { return s.pl.writeCanonical(w, s.lazy) }

// Canonical returns the RFC 8785 canonical JSON of the plan.
func (s *Streamed) Canonical() ([]byte, error) {
	var b bytes.Buffer
	if err := s.WriteCanonical(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Hash returns the plan hash, as Plan.Hash.
func (s *Streamed) Hash() (digest.Digest, error) {
	h := sha256.New()
	if err := s.WriteCanonical(h); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// Walk calls fn for every step of the expanded graph in order, depth
// first, as Plan.Walk; the step is valid only during the call. Its error
// is one of expanding iterations again (none that Build did not return).
func (s *Streamed) Walk(fn func(s *Step, depth int)) error { return s.lazy.walk(s.pl.Steps, 0, fn) }

// lazyChildren are the iterations of the map and loop steps of a
// streamed plan, by step id, in place of their Children.
type lazyChildren map[string]*iterations

// eachChild calls fn for each child of s: its iterations' steps, each
// built again and dropped after fn, or its Children.
func (lazy lazyChildren) eachChild(s *Step, fn func(c *Step) error) error {
	if it := lazy[s.ID]; it != nil {
		return it.each(it.b, fn)
	}
	for i := range s.Children {
		if err := fn(&s.Children[i]); err != nil {
			return err
		}
	}
	return nil
}

// hasChildren reports whether s has children (Children is omitted from
// its JSON when it has none).
func (lazy lazyChildren) hasChildren(s *Step) bool {
	if it := lazy[s.ID]; it != nil {
		return it.count() > 0
	}
	return len(s.Children) > 0
}

// walk is Plan.Walk over steps whose iterations are in lazy.
func (lazy lazyChildren) walk(steps []Step, depth int, fn func(s *Step, depth int)) error {
	for i := range steps {
		if err := lazy.walkStep(&steps[i], depth, fn); err != nil {
			return err
		}
	}
	return nil
}

func (lazy lazyChildren) walkStep(s *Step, depth int, fn func(s *Step, depth int)) error {
	fn(s, depth)
	if err := lazy.eachChild(s, func(c *Step) error { return lazy.walkStep(c, depth+1, fn) }); err != nil {
		return err
	}
	for bi := range s.Branches {
		if err := lazy.walk(s.Branches[bi].Steps, depth+1, fn); err != nil {
			return err
		}
	}
	return lazy.walk(s.Else, depth+1, fn)
}
