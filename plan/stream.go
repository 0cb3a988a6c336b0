package plan

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/canonical"
)

// The canonical JSON of a plan is written one step at a time: a plan of
// MaxExpandedSteps steps is tens of MiB of canonical JSON, and
// canonicalising it whole (encoding/json, then RFC 8785 over a parsed
// tree of the document) took several times that. RFC 8785 is
// compositional — an object is its members sorted by name, each value in
// its own canonical form; an array is its elements in order — so each
// step is canonicalised alone, without the steps it holds, and those are
// written in the places their member names sort to. The bytes are the
// ones canonical.Marshal gives for the whole plan (a test holds them
// equal over every plan of the test data).

// WriteCanonical writes the RFC 8785 canonical JSON of the plan to w: the
// bytes of Canonical, without holding them all.
func (pl *Plan) WriteCanonical(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 16<<10)
	small := *pl
	small.Steps = nil
	b, err := canonical.Marshal(&small)
	if err != nil {
		return err
	}
	if err := writeObject(bw, b, []member{{"steps", func(w *bufio.Writer) error {
		return writeSteps(w, pl.Steps)
	}}}); err != nil {
		return err
	}
	return bw.Flush()
}

// member is an object member written by its function, in place of (or
// besides) the members of an object's canonical form.
type member struct {
	name  string
	write func(w *bufio.Writer) error
}

// writeObject writes the object whose members are those of the canonical
// object small with the members of big added, each in its place by
// name; a member of big replaces one of small of the same name. Names of
// big are Go field tags: ASCII, needing no escape, so their order is
// RFC 8785's (UTF-16 code units).
func writeObject(w *bufio.Writer, small []byte, big []member) error {
	type part struct {
		name  string
		raw   []byte // the member "name":value of small, as it is there
		write func(w *bufio.Writer) error
	}
	var parts []part
	dec := json.NewDecoder(bytes.NewReader(small))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("canonical plan: not an object: %v", err)
	}
	for dec.More() {
		start := dec.InputOffset()
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("canonical plan: %w", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("canonical plan: %w", err)
		}
		raw := bytes.TrimPrefix(small[start:dec.InputOffset()], []byte(","))
		parts = append(parts, part{name: t.(string), raw: raw})
	}
	for _, m := range big {
		if strings.ContainsAny(m.name, "\"\\") {
			return fmt.Errorf("canonical plan: member name %q", m.name)
		}
		i := slices.IndexFunc(parts, func(p part) bool { return p.name == m.name })
		if i >= 0 {
			parts[i] = part{name: m.name, write: m.write}
			continue
		}
		parts = append(parts, part{name: m.name, write: m.write})
	}
	// Names of small are in canonical order already, and those of big
	// are ASCII: a stable sort by UTF-16 code units keeps both right.
	slices.SortStableFunc(parts, func(a, b part) int { return compareUTF16(a.name, b.name) })
	w.WriteByte('{')
	for i, p := range parts {
		if i > 0 {
			w.WriteByte(',')
		}
		if p.write == nil {
			w.Write(p.raw)
			continue
		}
		w.WriteString(`"` + p.name + `":`)
		if err := p.write(w); err != nil {
			return err
		}
	}
	w.WriteByte('}')
	return nil
}

// compareUTF16 orders two strings by their UTF-16 code units, as RFC 8785
// sorts member names.
func compareUTF16(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if ra[i] == rb[i] {
			continue
		}
		ua, ub := utf16Units(ra[i]), utf16Units(rb[i])
		return slices.Compare(ua, ub)
	}
	return len(ra) - len(rb)
}

func utf16Units(r rune) []uint16 {
	if r < 0x10000 {
		return []uint16{uint16(r)}
	}
	r -= 0x10000
	return []uint16{uint16(0xd800 + r>>10), uint16(0xdc00 + r&0x3ff)}
}

// writeSteps writes a list of steps (null for a nil one, as encoding/json).
func writeSteps(w *bufio.Writer, steps []Step) error {
	if steps == nil {
		_, err := w.WriteString("null")
		return err
	}
	w.WriteByte('[')
	for i := range steps {
		if i > 0 {
			w.WriteByte(',')
		}
		if err := steps[i].writeCanonical(w); err != nil {
			return err
		}
	}
	return w.WriteByte(']')
}

// writeCanonical writes the canonical JSON of one step: the step without
// the steps it holds, and those one by one in their places.
func (s *Step) writeCanonical(w *bufio.Writer) error {
	small := *s
	small.Template, small.Branches, small.Else, small.Children = nil, nil, nil, nil
	b, err := canonical.Marshal(&small)
	if err != nil {
		return err
	}
	// The four lists are omitempty: present exactly when not empty.
	var big []member
	if len(s.Branches) > 0 {
		big = append(big, member{"branches", func(w *bufio.Writer) error {
			w.WriteByte('[')
			for i := range s.Branches {
				if i > 0 {
					w.WriteByte(',')
				}
				if err := s.Branches[i].writeCanonical(w); err != nil {
					return err
				}
			}
			return w.WriteByte(']')
		}})
	}
	if s.hasChildren() {
		big = append(big, member{"children", func(w *bufio.Writer) error {
			w.WriteByte('[')
			first := true
			err := s.eachChild(func(c *Step) error {
				if !first {
					w.WriteByte(',')
				}
				first = false
				return c.writeCanonical(w)
			})
			if err != nil {
				return err
			}
			return w.WriteByte(']')
		}})
	}
	for _, l := range []struct {
		name  string
		steps []Step
	}{{"else", s.Else}, {"template", s.Template}} {
		if len(l.steps) > 0 {
			big = append(big, member{l.name, func(w *bufio.Writer) error { return writeSteps(w, l.steps) }})
		}
	}
	if len(big) == 0 {
		_, err := w.Write(b)
		return err
	}
	return writeObject(w, b, big)
}

func (br *Branch) writeCanonical(w *bufio.Writer) error {
	small := *br
	small.Steps = nil
	b, err := canonical.Marshal(&small)
	if err != nil {
		return err
	}
	return writeObject(w, b, []member{{"steps", func(w *bufio.Writer) error { return writeSteps(w, br.Steps) }}})
}

// hashCanonical is the plan hash, of the canonical JSON as it is written.
func hashCanonical(pl *Plan) (digest.Digest, error) {
	h := sha256.New()
	if err := pl.WriteCanonical(h); err != nil {
		return "", err
	}
	return digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), nil
}
