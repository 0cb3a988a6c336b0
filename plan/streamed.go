package plan

import (
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
type Streamed struct {
	pl *Plan
}

// BuildStreamed plans pack p as Build does, without holding the steps of
// its iterations.
func BuildStreamed(p *pack.Pack, packDigest digest.Digest, inputs map[string]any) (*Streamed, error) {
	pl, err := build(p, packDigest, inputs, true)
	if err != nil {
		return nil, err
	}
	return &Streamed{pl: pl}, nil
}

// Pack names the planned pack.
func (s *Streamed) Pack() PackRef { return s.pl.Pack }

// Approvals are the plan's approval gates, as Plan.Approvals.
func (s *Streamed) Approvals() []Approval { return s.pl.Approvals }

// Secrets are the plan's secret references, as Plan.Secrets.
func (s *Streamed) Secrets() []Secret { return s.pl.Secrets }

// WriteCanonical writes the RFC 8785 canonical JSON of the plan to w,
// expanding its iterations as it goes.
func (s *Streamed) WriteCanonical(w io.Writer) error { return s.pl.WriteCanonical(w) }

// Canonical returns the RFC 8785 canonical JSON of the plan.
func (s *Streamed) Canonical() ([]byte, error) { return s.pl.Canonical() }

// Hash returns the plan hash, as Plan.Hash.
func (s *Streamed) Hash() (digest.Digest, error) { return s.pl.Hash() }

// Walk calls fn for every step of the expanded graph in order, depth
// first, as Plan.Walk; the step is valid only during the call. Its error
// is one of expanding iterations again (none that Build did not return).
func (s *Streamed) Walk(fn func(s *Step, depth int)) error { return walk(s.pl.Steps, 0, fn) }
