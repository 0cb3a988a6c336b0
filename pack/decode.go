package pack

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits of pack.yaml: decoding it does work proportional to its size
// within these caps, and no recursion over it goes deeper than
// MaxManifestDepth (yaml.v3 itself stops at 10,000 levels, and aliases are
// refused, never expanded). docs/adr/0014-bounded-work-for-untrusted-input.md
// lists them.
const (
	// MaxManifestSize bounds pack.yaml, in bytes (ErrManifestInvalid).
	MaxManifestSize = 1 << 20
	// MaxManifestDepth bounds the nesting of mappings and sequences in
	// pack.yaml (ErrManifestInvalid).
	MaxManifestDepth = 64
)

// Parse decodes pack.yaml bytes strictly: unknown fields, duplicate keys,
// anchors, aliases, merge keys, tags and type mismatches are all reported,
// each with its line and column. file names the document in problems.
func Parse(file string, data []byte) (*Manifest, error) {
	m, ps, err := parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := ps.err(ErrManifestInvalid); err != nil {
		return nil, err
	}
	return m, nil
}

// parse decodes as much of the document as it can. A syntax error is
// returned as err; decoding problems are collected in the returned problems,
// which also index the position of every document path.
func parse(file string, data []byte) (*Manifest, *problems, error) {
	ps := &problems{file: file, index: map[string]pos{}}
	if len(data) > MaxManifestSize {
		ps.at("", "file is %d bytes, larger than the %d allowed", len(data), MaxManifestSize)
		return nil, nil, ps.err(ErrManifestInvalid)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.at("", "empty document: expected a TaskPack manifest")
		} else {
			ps.list = append(ps.list, yamlSyntaxProblem(file, err))
		}
		return nil, nil, ps.err(ErrManifestInvalid)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.list = append(ps.list, Problem{File: file, Line: extra.Line, Column: extra.Column, Message: "more than one YAML document: expected exactly one"})
	} else if !errors.Is(err, io.EOF) {
		ps.list = append(ps.list, yamlSyntaxProblem(file, err))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if n := deeperThan(root, MaxManifestDepth); n != nil {
		ps.list = append(ps.list, Problem{File: file, Line: n.Line, Column: n.Column,
			Message: fmt.Sprintf("mappings and sequences nested deeper than %d levels, the limit (MaxManifestDepth)", MaxManifestDepth)})
		return nil, nil, ps.err(ErrManifestInvalid)
	}
	indexPositions(root, "", ps.index)
	var m Manifest
	d := &decoder{ps: ps}
	d.decode(root, reflect.ValueOf(&m).Elem(), "")
	return &m, ps, nil
}

func indexPositions(n *yaml.Node, path string, idx map[string]pos) {
	idx[path] = pos{n.Line, n.Column}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := joinPath(path, k.Value)
			indexPositions(n.Content[i+1], p, idx)
			idx[p] = pos{k.Line, k.Column}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexPositions(c, fmt.Sprintf("%s[%d]", path, i), idx)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var lineRe = strings.NewReplacer("yaml: ", "")

func yamlSyntaxProblem(file string, err error) Problem {
	msg := lineRe.Replace(err.Error())
	line := 0
	// yaml.v3 syntax errors read "yaml: line N: ...".
	if strings.HasPrefix(msg, "line ") {
		rest := strings.TrimPrefix(msg, "line ")
		if i := strings.Index(rest, ":"); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Problem{File: file, Line: line, Column: 1, Message: "YAML syntax: " + msg}
}

type decoder struct {
	ps *problems
}

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	d.ps.list = append(d.ps.list, Problem{File: d.ps.file, Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

var (
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	anyType         = reflect.TypeOf((*any)(nil)).Elem()
)

// decode fills v from n, reporting every problem rather than stopping.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.plain(n, path) {
		return
	}
	if v.Type() == anyType {
		val, ok := d.toValue(n, path)
		if ok {
			v.Set(reflect.ValueOf(&val).Elem())
		}
		return
	}
	if n.Tag == "!!null" {
		return // absent value: keep the zero value
	}
	if reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.add(n, path, "expected a duration such as \"30s\", \"15m\" or \"24h\"")
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.add(n, path, "invalid duration %q: expected a form such as \"30s\", \"15m\" or \"24h\"", n.Value)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.key(k, path, seen) {
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, joinPath(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.add(n, path, "expected a string, got %s (quote the value)", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.add(n, path, "expected an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil {
			d.add(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.add(n, path, "expected a number, got %s", describe(n))
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.add(n, path, "invalid number %s", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.add(n, path, "unsupported field type %s", v.Type())
	}
}

// plain rejects YAML features that make a manifest hard to review.
func (d *decoder) plain(n *yaml.Node, path string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		d.add(n, path, "YAML aliases (*%s) are not allowed: write the value out", n.Value)
		return false
	case n.Anchor != "":
		d.add(n, path, "YAML anchors (&%s) are not allowed: write values out", n.Anchor)
		return false
	case n.Style&yaml.TaggedStyle != 0:
		d.add(n, path, "explicit YAML tags (%s) are not allowed", n.Tag)
		return false
	}
	return true
}

func (d *decoder) key(k *yaml.Node, path string, seen map[string]*yaml.Node) bool {
	if !d.plain(k, path) {
		return false
	}
	if k.Kind != yaml.ScalarNode {
		d.add(k, path, "expected a plain key, got %s", describe(k))
		return false
	}
	if k.Tag == "!!merge" || k.Value == "<<" {
		d.add(k, path, "YAML merge keys (<<) are not allowed: write the fields out")
		return false
	}
	if prev, dup := seen[k.Value]; dup {
		d.add(k, joinPath(path, k.Value), "duplicate key %q (first at line %d)", k.Value, prev.Line)
		return false
	}
	seen[k.Value] = k
	return true
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	sort.Strings(names)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.key(k, path, seen) {
			continue
		}
		fi, ok := fields[k.Value]
		if !ok {
			d.add(k, joinPath(path, k.Value), "unknown field %q (expected one of: %s)", k.Value, strings.Join(names, ", "))
			continue
		}
		d.decode(val, v.Field(fi), joinPath(path, k.Value))
	}
}

// toValue converts a node to a JSON-like value (for input defaults).
func (d *decoder) toValue(n *yaml.Node, path string) (any, bool) {
	if !d.plain(n, path) {
		return nil, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, true
		case "!!bool":
			return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
		case "!!int":
			i, err := strconv.ParseInt(n.Value, 0, 64)
			if err != nil {
				d.add(n, path, "integer %s out of range", n.Value)
				return nil, false
			}
			return float64(i), true
		case "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				d.add(n, path, "invalid number %s", n.Value)
				return nil, false
			}
			return f, true
		case "!!str":
			return n.Value, true
		}
		d.add(n, path, "unsupported scalar %s", describe(n))
		return nil, false
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, good := d.toValue(c, fmt.Sprintf("%s[%d]", path, i))
			ok = ok && good
			out = append(out, v)
		}
		return out, ok
	case yaml.MappingNode:
		out := map[string]any{}
		seen := map[string]*yaml.Node{}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !d.key(k, path, seen) {
				ok = false
				continue
			}
			v, good := d.toValue(n.Content[i+1], joinPath(path, k.Value))
			ok = ok && good
			out[k.Value] = v
		}
		return out, ok
	}
	d.add(n, path, "unsupported value %s", describe(n))
	return nil, false
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "boolean " + n.Value
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Tag + " " + n.Value
	}
	return "an unexpected node"
}

// deeperThan returns the first mapping or sequence nested more than limit
// levels deep under root (root's own level is 1), or nil. It walks the tree
// without recursion, so that a deep document cannot exhaust the stack.
func deeperThan(root *yaml.Node, limit int) *yaml.Node {
	type item struct {
		n     *yaml.Node
		depth int
	}
	stack := []item{{root, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		d := it.depth
		if it.n.Kind == yaml.MappingNode || it.n.Kind == yaml.SequenceNode {
			if d++; d > limit {
				return it.n
			}
		}
		for i := len(it.n.Content) - 1; i >= 0; i-- {
			stack = append(stack, item{it.n.Content[i], d})
		}
	}
	return nil
}
