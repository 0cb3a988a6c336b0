package pack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// Limits of an inputs file (--inputs): the work of decoding one is
// proportional to its size within these caps, and no recursion over it
// goes deeper than MaxInputsDepth. docs/adr/0014-bounded-work-for-untrusted-input.md
// lists them with their error codes.
const (
	// MaxInputsSize bounds an inputs file, in bytes (ErrInputInvalid).
	MaxInputsSize = 4 << 20
	// MaxInputsDepth bounds the nesting of arrays and objects in an inputs
	// file; the top-level object is depth 1 (ErrInputLimit).
	MaxInputsDepth = 64
	// MaxInputsValues bounds the values (scalars, arrays, objects) of an
	// inputs file (ErrInputLimit).
	MaxInputsValues = 200_000
)

// ResolveInputs checks raw (a JSON object of input values; nil or empty means
// none) against the pack's declared inputs and returns the resolved values:
// defaults applied, types and schemas checked. Every problem is reported at
// once in a *ValidationError wrapping ErrInputInvalid, located in file.
// Numbers are float64; integers beyond ±2^53 are refused.
func (p *Pack) ResolveInputs(file string, raw []byte) (map[string]any, error) {
	ps := &problems{file: file, index: map[string]pos{"": {1, 1}}}
	given := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if len(raw) > MaxInputsSize {
			ps.at("", "inputs file is larger than %d bytes", MaxInputsSize)
			return nil, ps.err(ErrInputInvalid)
		}
		v, index, err := decodeJSON(raw)
		if err != nil {
			ps.list = append(ps.list, jsonSyntaxProblem(file, raw, err))
			var je *jsonError
			if errors.As(err, &je) && je.limit {
				return nil, ps.err(ErrInputLimit)
			}
			return nil, ps.err(ErrInputInvalid)
		}
		ps.index = index
		obj, ok := v.(map[string]any)
		if !ok {
			ps.at("", "inputs must be a JSON object of input names to values, got %s", jsonTypeName(v))
			return nil, ps.err(ErrInputInvalid)
		}
		given = obj
	}
	declared := map[string]bool{}
	out := map[string]any{}
	for _, in := range p.Manifest.Spec.Inputs {
		declared[in.Name] = true
		v, ok := given[in.Name]
		if !ok {
			switch {
			case in.Default != nil:
				out[in.Name] = in.Default
			case in.Required:
				ps.at("", "required input %q is missing (%s)", in.Name, in.Type)
			}
			continue
		}
		if msg := CheckType(in.Type, v); msg != "" {
			ps.at(in.Name, "input %q: %s", in.Name, msg)
			continue
		}
		if sch := p.schemas[in.Name]; sch != nil {
			if err := sch.Validate(v); err != nil {
				ps.at(in.Name, "input %q does not match %s: %s", in.Name, in.Schema, schemaErrorText(err))
				continue
			}
		}
		out[in.Name] = v
	}
	var unknown []string
	for k := range given {
		if !declared[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		ps.at(k, "unknown input %q (the pack declares: %s)", k, strings.Join(p.inputNames(), ", "))
	}
	if err := ps.err(ErrInputInvalid); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *Pack) inputNames() []string {
	var names []string
	for _, in := range p.Manifest.Spec.Inputs {
		names = append(names, in.Name)
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// decodeJSON decodes one JSON value, refusing duplicate keys and trailing data,
// and converts numbers to float64.
// It refuses, as soon as it meets them, nesting deeper than MaxInputsDepth
// and more than MaxInputsValues values (a *jsonError with limit set), so
// its recursion is bounded whatever the input. It also returns the
// positions of the value ("") and of the keys of a top-level object, found
// in the same single pass.
func decodeJSON(raw []byte) (any, map[string]pos, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	d := &valueDecoder{raw: raw, dec: dec, maxDepth: MaxInputsDepth, maxValues: MaxInputsValues}
	d.offsets = append(d.offsets, keyOffset{"", d.nextToken(0)})
	v, err := d.value(0)
	if err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &jsonError{off: dec.InputOffset(), msg: "unexpected data after the JSON value"}
	}
	return v, positions(raw, d.offsets), nil
}

// keyOffset is where a top-level key ("" for the whole value) starts.
type keyOffset struct {
	key string
	off int64
}

// positions turns offsets, in increasing order, into lines and columns in
// one pass over raw.
func positions(raw []byte, offsets []keyOffset) map[string]pos {
	idx := make(map[string]pos, len(offsets))
	line, col := 1, 1
	var at int64
	for _, k := range offsets {
		for ; at < k.off && at < int64(len(raw)); at++ {
			if raw[at] == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		if _, dup := idx[k.key]; !dup {
			idx[k.key] = pos{line, col}
		}
	}
	return idx
}

type jsonError struct {
	off   int64
	msg   string
	limit bool // a limit of the decoder, not a syntax error
}

// valueDecoder decodes one JSON value within limits.
type valueDecoder struct {
	raw                 []byte
	dec                 *json.Decoder
	maxDepth, maxValues int
	values              int
	offsets             []keyOffset // of the top-level keys, in order
}

// nextToken is the offset of the token that follows off: past blanks and
// the separators the decoder consumes with the token.
func (d *valueDecoder) nextToken(off int64) int64 {
	for off < int64(len(d.raw)) {
		switch d.raw[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

func (e *jsonError) Error() string { return e.msg }

// value decodes the value starting at the next token, depth arrays and
// objects deep.
func (d *valueDecoder) value(depth int) (any, error) {
	dec := d.dec
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d.values++; d.values > d.maxValues {
		return nil, &jsonError{off: dec.InputOffset(), limit: true,
			msg: fmt.Sprintf("more than %d values, the limit (MaxInputsValues)", d.maxValues)}
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth+1 > d.maxDepth {
			return nil, &jsonError{off: dec.InputOffset() - 1, limit: true, // at the bracket
				msg: fmt.Sprintf("arrays and objects nested deeper than %d levels, the limit (MaxInputsDepth)", d.maxDepth)}
		}
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				start := dec.InputOffset()
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				if depth == 0 {
					d.offsets = append(d.offsets, keyOffset{k, d.nextToken(start)})
				}
				if _, dup := m[k]; dup {
					return nil, &jsonError{off: dec.InputOffset(), msg: fmt.Sprintf("duplicate key %q", k)}
				}
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			_, err := dec.Token()
			return m, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
	case json.Number:
		f, err := t.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, &jsonError{off: dec.InputOffset(), msg: fmt.Sprintf("number %s out of range", t)}
		}
		if f == math.Trunc(f) && math.Abs(f) > 1<<53 {
			return nil, &jsonError{off: dec.InputOffset(), msg: fmt.Sprintf("integer %s is beyond ±2^53 and cannot be kept exactly", t)}
		}
		return f, nil
	default:
		return t, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func jsonSyntaxProblem(file string, raw []byte, err error) Problem {
	off := int64(-1)
	var se *json.SyntaxError
	var je *jsonError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &je):
		off = je.off
	}
	msg := "JSON: " + err.Error()
	if je != nil && je.limit {
		msg = "inputs file holds " + je.msg
	}
	if se != nil {
		msg = jsonSyntaxMessage(se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "not valid JSON: it ends early (a closing quote, ] or } is missing?)"
		off = int64(len(raw))
	}
	line, col := 0, 0
	if off >= 0 {
		line, col = lineCol(raw, off)
	}
	return Problem{File: file, Line: line, Column: col, Message: msg}
}

// jsonSyntaxMessage says what encoding/json's syntax error says in an
// operator's words: what was found and what was expected there.
func jsonSyntaxMessage(msg string) string {
	found := ""
	if i := strings.Index(msg, "invalid character "); i >= 0 {
		rest := msg[i+len("invalid character "):]
		if j := strings.Index(rest[1:], "'"); strings.HasPrefix(rest, "'") && j >= 0 {
			found = rest[:j+2]
		}
	}
	if found == "" {
		return "not valid JSON"
	}
	for _, w := range []struct{ in, says string }{
		{"looking for beginning of value", "where a value should start (a string in quotes, a number, true, false, null, [ or {)"},
		{"looking for beginning of object key string", "where a key in double quotes should start"},
		{"in literal true", "inside the word true"},
		{"in literal false", "inside the word false"},
		{"in literal null", "inside the word null"},
		{"after object key:value pair", "after a member (a ',' or '}' is missing?)"},
		{"after object key", "after a key (a ':' is missing?)"},
		{"after array element", "after an element (a ',' or ']' is missing?)"},
		{"in string literal", "inside a string (control characters must be escaped)"},
		{"in string escape code", "in a string escape (\\n, \\t, \\\", \\uXXXX...)"},
		{"in numeric literal", "inside a number"},
		{"after top-level value", "after the whole value (only one value may be given)"},
	} {
		if strings.Contains(msg, w.in) {
			return "not valid JSON: unexpected " + found + " " + w.says
		}
	}
	return "not valid JSON: unexpected " + found
}

func lineCol(b []byte, off int64) (int, int) {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	line, col := 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}
