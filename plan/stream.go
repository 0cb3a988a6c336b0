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
	"strconv"
	"strings"
	"unicode/utf8"

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
	return pl.writeCanonical(w, nil)
}

// writeCanonical writes the canonical JSON of the plan, whose map and
// loop steps in lazy expand their iterations as they are written.
func (pl *Plan) writeCanonical(w io.Writer, lazy lazyChildren) error {
	bw := bufio.NewWriterSize(w, 16<<10)
	small := *pl
	small.Steps, small.Inputs = nil, nil
	b, err := canonical.Marshal(&small)
	if err != nil {
		return err
	}
	if err := writeObject(bw, b, []member{
		// The inputs may hold lists as long as the steps a map makes of them.
		{"inputs", func(w *bufio.Writer) error { return writeValue(w, pl.Inputs) }},
		{"steps", func(w *bufio.Writer) error { return writeSteps(w, pl.Steps, lazy) }},
	}); err != nil {
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

// writeValue writes the canonical JSON of v, a value as JSON decodes
// (inputs): lists and objects member by member, strings as writeString,
// other values by canonical.Marshal.
func writeValue(w *bufio.Writer, v any) error {
	switch x := v.(type) {
	case string:
		writeString(w, x)
		return nil
	case []any:
		if x == nil {
			break
		}
		w.WriteByte('[')
		for i := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeValue(w, x[i]); err != nil {
				return err
			}
		}
		return w.WriteByte(']')
	case map[string]any:
		if x == nil {
			break
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			if !utf8.ValidString(k) {
				// Such names become U+FFFD and may collide:
				// canonical.Marshal refuses those.
				return writeMarshal(w, x)
			}
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		o := object{w: w}
		for _, k := range keys {
			o.member(k)
			if err := writeValue(w, x[k]); err != nil {
				return err
			}
		}
		return o.end()
	}
	return writeMarshal(w, v)
}

func writeMarshal(w *bufio.Writer, v any) error {
	b, err := canonical.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// writeSteps writes a list of steps (null for a nil one, as encoding/json).
func writeSteps(w *bufio.Writer, steps []Step, lazy lazyChildren) error {
	if steps == nil {
		_, err := w.WriteString("null")
		return err
	}
	w.WriteByte('[')
	for i := range steps {
		if i > 0 {
			w.WriteByte(',')
		}
		if err := steps[i].writeCanonical(w, lazy); err != nil {
			return err
		}
	}
	return w.WriteByte(']')
}

// writeCanonical writes the canonical JSON of one step, member by member
// in their RFC 8785 order (the names are ASCII: byte order), each value
// as canonical.Marshal writes it; canonical.Marshal of a step took most
// of the time of hashing a plan, in parsing its own output again.
func (s *Step) writeCanonical(w *bufio.Writer, lazy lazyChildren) error {
	o := object{w: w}
	for _, name := range stepOrder {
		if err := s.writeMember(&o, name, lazy); err != nil {
			return err
		}
	}
	return o.end()
}

// writeMember writes the step's member name, when the step has it (Scan
// writes a step member by member as it reads it).
func (s *Step) writeMember(o *object, name string, lazy lazyChildren) error {
	w := o.w
	switch name {
	case "branches":
		if len(s.Branches) > 0 {
			o.member("branches")
			w.WriteByte('[')
			for i := range s.Branches {
				if i > 0 {
					w.WriteByte(',')
				}
				if err := s.Branches[i].writeCanonical(w, lazy); err != nil {
					return err
				}
			}
			w.WriteByte(']')
		}
	case "children":
		if lazy.hasChildren(s) {
			o.member("children")
			w.WriteByte('[')
			first := true
			err := lazy.eachChild(s, func(c *Step) error {
				if !first {
					w.WriteByte(',')
				}
				first = false
				return c.writeCanonical(w, lazy)
			})
			if err != nil {
				return err
			}
			w.WriteByte(']')
		}
	case "continueOnError":
		if s.ContinueOnError {
			o.member("continueOnError")
			w.WriteString("true")
		}
	case "deferred":
		if s.Deferred {
			o.member("deferred")
			w.WriteString("true")
		}
	case "else":
		if len(s.Else) > 0 {
			o.member("else")
			return writeSteps(w, s.Else, lazy)
		}
	case "gate":
		if g := s.Gate; g != nil {
			o.member("gate")
			g.writeCanonical(w)
		}
	case "id":
		o.string("id", s.ID)
	case "index":
		if s.Index != nil {
			o.member("index")
			return writeInt(w, *s.Index)
		}
	case "items":
		o.stringOmitEmpty("items", s.Items)
	case "kind":
		o.string("kind", s.Kind)
	case "maxParallel":
		if s.MaxParallel != 0 {
			o.member("maxParallel")
			return writeInt(w, s.MaxParallel)
		}
	case "name":
		o.stringOmitEmpty("name", s.Name)
	case "run":
		if s.Run != nil {
			o.member("run")
			return s.Run.writeCanonical(w)
		}
	case "status":
		o.string("status", s.Status)
	case "template":
		if len(s.Template) > 0 {
			o.member("template")
			return writeSteps(w, s.Template, lazy)
		}
	case "timeout":
		o.stringOmitEmpty("timeout", s.Timeout)
	case "vars":
		if len(s.Vars) > 0 {
			b, err := canonical.Marshal(s.Vars)
			if err != nil {
				return err
			}
			o.member("vars")
			w.Write(b)
		}
	case "when":
		o.stringOmitEmpty("when", s.When)
	case "whenResult":
		o.bool("whenResult", s.WhenResult)
	default:
		return fmt.Errorf("step member %q", name)
	}
	return nil
}

// field is where Scan decodes the step's member name (not a list of
// steps).
func (s *Step) field(name string) any {
	switch name {
	case "continueOnError":
		return &s.ContinueOnError
	case "deferred":
		return &s.Deferred
	case "gate":
		return &s.Gate
	case "id":
		return &s.ID
	case "index":
		return &s.Index
	case "items":
		return &s.Items
	case "kind":
		return &s.Kind
	case "maxParallel":
		return &s.MaxParallel
	case "name":
		return &s.Name
	case "run":
		return &s.Run
	case "status":
		return &s.Status
	case "timeout":
		return &s.Timeout
	case "vars":
		return &s.Vars
	case "when":
		return &s.When
	case "whenResult":
		return &s.WhenResult
	}
	panic("plan: no step field " + name)
}

func (r *Run) writeCanonical(w *bufio.Writer) error {
	o := object{w: w}
	o.member("command")
	writeStrings(w, r.Command)
	if len(r.Env) > 0 {
		keys := make([]string, 0, len(r.Env))
		valid := true
		for k := range r.Env {
			keys = append(keys, k)
			valid = valid && utf8.ValidString(k)
		}
		if !valid {
			// Names that are not UTF-8 become U+FFFD and may collide:
			// canonical.Marshal refuses those.
			b, err := canonical.Marshal(r.Env)
			if err != nil {
				return err
			}
			o.member("env")
			w.Write(b)
		} else {
			o.member("env")
			slices.SortFunc(keys, compareUTF16)
			e := object{w: w}
			for _, k := range keys {
				e.string(k, r.Env[k])
			}
			e.end()
		}
	}
	if len(r.Outputs) > 0 {
		o.member("outputs")
		writeStrings(w, r.Outputs)
	}
	if len(r.Secrets) > 0 {
		o.member("secrets")
		writeStrings(w, r.Secrets)
	}
	o.stringOmitEmpty("workdir", r.Workdir)
	return o.end()
}

func (g *Gate) writeCanonical(w *bufio.Writer) {
	o := object{w: w}
	o.stringOmitEmpty("approval", g.Approval)
	o.stringOmitEmpty("message", g.Message)
	o.stringOmitEmpty("policy", g.Policy)
	o.bool("policyResult", g.PolicyResult)
	o.end()
}

func (br *Branch) writeCanonical(w *bufio.Writer, lazy lazyChildren) error {
	o := object{w: w}
	for _, name := range branchOrder {
		if name == "steps" {
			o.member("steps")
			if err := writeSteps(w, br.Steps, lazy); err != nil {
				return err
			}
			continue
		}
		br.writeMember(&o, name)
	}
	return o.end()
}

// writeMember writes the branch's member name, but steps.
func (br *Branch) writeMember(o *object, name string) {
	switch name {
	case "selected":
		o.bool("selected", br.Selected)
	case "steps":
		o.member("steps")
		writeSteps(o.w, nil, nil)
	case "when":
		o.string("when", br.When)
	}
}

// object writes the members of a JSON object, which the caller writes in
// canonical order, then end.
type object struct {
	w *bufio.Writer
	n int
}

// member writes the '{' or ',' before a member and its name.
func (o *object) member(name string) {
	if o.n == 0 {
		o.w.WriteByte('{')
	} else {
		o.w.WriteByte(',')
	}
	o.n++
	writeString(o.w, name)
	o.w.WriteByte(':')
}

// end ends the object ("{}" when it has no member).
func (o *object) end() error {
	if o.n == 0 {
		o.w.WriteByte('{')
	}
	return o.w.WriteByte('}')
}

func (o *object) string(name, v string) {
	o.member(name)
	writeString(o.w, v)
}

// stringOmitEmpty writes a member tagged omitempty.
func (o *object) stringOmitEmpty(name, v string) {
	if v != "" {
		o.string(name, v)
	}
}

// bool writes a *bool member tagged omitempty.
func (o *object) bool(name string, v *bool) {
	if v != nil {
		o.member(name)
		o.w.WriteString(strconv.FormatBool(*v))
	}
}

func writeStrings(w *bufio.Writer, l []string) {
	if l == nil {
		w.WriteString("null")
		return
	}
	w.WriteByte('[')
	for i, v := range l {
		if i > 0 {
			w.WriteByte(',')
		}
		writeString(w, v)
	}
	w.WriteByte(']')
}

// writeString writes s as canonical.Marshal does: encoding/json replaces
// each byte that is not UTF-8 with U+FFFD, and RFC 8785 escapes only '"',
// '\\' and the control characters below U+0020 — those with a short escape
// by it, the others as \u00xx — and writes every other character as it is.
func writeString(w *bufio.Writer, s string) {
	w.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		w.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			w.WriteByte('\\')
			w.WriteByte(c)
		case '\b':
			w.WriteString(`\b`)
		case '\f':
			w.WriteString(`\f`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		case '\t':
			w.WriteString(`\t`)
		default:
			if c < 0x20 {
				w.WriteString(`\u00`)
				w.WriteByte(hexDigits[c>>4])
				w.WriteByte(hexDigits[c&0xf])
			} else {
				w.WriteString("\uFFFD") // a byte that is not UTF-8
			}
		}
		i++
		start = i
	}
	w.WriteString(s[start:])
	w.WriteByte('"')
}

const hexDigits = "0123456789abcdef"

// writeInt writes n as RFC 8785 writes the number: exactly its digits up
// to 2^53, beyond which a JSON number is a float64 that may not hold it.
func writeInt(w *bufio.Writer, n int) error {
	if n <= 1<<53 && n >= -(1<<53) {
		_, err := w.WriteString(strconv.Itoa(n))
		return err
	}
	b, err := canonical.Marshal(n)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// hashCanonical is the plan hash, of the canonical JSON as it is written.
func hashCanonical(pl *Plan) (digest.Digest, error) {
	h := sha256.New()
	if err := pl.WriteCanonical(h); err != nil {
		return "", err
	}
	return digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), nil
}
