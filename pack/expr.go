package pack

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jmespath-community/go-jmespath/pkg/functions"
	"github.com/jmespath-community/go-jmespath/pkg/interpreter"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
)

// Roots are the top-level names an expression may read. inputs: the resolved
// inputs; steps: outputs of earlier steps (steps.<id>.outputs.<name>), known
// only at run time; item and index: the current element of a map or loop.
var Roots = []string{"inputs", "steps", "item", "index"}

// MaxExprLen bounds the length of one expression.
const MaxExprLen = 4096

var (
	defaultFunctions = functions.GetDefaultFunctions()
	knownFunctions   = func() map[string]bool {
		m := map[string]bool{}
		for _, f := range defaultFunctions {
			m[f.Name] = true
		}
		return m
	}()
	// caller is shared by every expression: it only reads its table.
	caller = interpreter.NewFunctionCaller(defaultFunctions...)
)

// Expr is a compiled JMESPath expression with what it reads.
type Expr struct {
	Source string
	// Roots lists the root names the expression reads (sorted, unique).
	Roots []string
	ast   parsing.ASTNode
}

// CompileExpr parses a JMESPath expression and checks that it reads only
// known roots and calls only known functions.
func CompileExpr(src string) (*Expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	if len(src) > MaxExprLen {
		return nil, fmt.Errorf("expression longer than %d characters", MaxExprLen)
	}
	ast, err := parsing.NewParser().Parse(src)
	if err != nil {
		var se parsing.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JMESPath at offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "SyntaxError: "))
		}
		return nil, fmt.Errorf("invalid JMESPath: %v", err)
	}
	roots := map[string]bool{}
	var problems []string
	collectRoots(ast, roots)
	walkFunctions(ast, func(name string) {
		if !knownFunctions[name] {
			problems = append(problems, fmt.Sprintf("unknown function %s()", name))
		}
	})
	var rs []string
	for r := range roots {
		if !isRoot(r) {
			problems = append(problems, fmt.Sprintf("unknown name %q (expressions read %s)", r, strings.Join(Roots, ", ")))
		}
		rs = append(rs, r)
	}
	sort.Strings(rs)
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &Expr{Source: src, Roots: rs, ast: ast}, nil
}

func isRoot(name string) bool {
	for _, r := range Roots {
		if r == name {
			return true
		}
	}
	return false
}

// Reads reports whether the expression reads the root name.
func (e *Expr) Reads(root string) bool {
	for _, r := range e.Roots {
		if r == root {
			return true
		}
	}
	return false
}

// Eval evaluates the expression against data (a JSON-like value).
func (e *Expr) Eval(data any) (any, error) {
	v, err := interpreter.NewInterpreter(data, caller, nil).Execute(e.ast, data)
	if err != nil {
		return nil, fmt.Errorf("evaluate %q: %v", e.Source, err)
	}
	return v, nil
}

// collectRoots records the field names read from the root document: the
// left-most field of every chain evaluated against the current (root) value.
func collectRoots(n parsing.ASTNode, out map[string]bool) {
	switch n.NodeType {
	case parsing.ASTField:
		if s, ok := n.Value.(string); ok {
			out[s] = true
		}
	case parsing.ASTSubexpression, parsing.ASTIndexExpression, parsing.ASTPipe,
		parsing.ASTProjection, parsing.ASTValueProjection, parsing.ASTFilterProjection,
		parsing.ASTFlatten:
		// Only the left side is evaluated against the current value; the
		// rest applies to its result or its elements.
		if len(n.Children) > 0 {
			collectRoots(n.Children[0], out)
		}
	case parsing.ASTExpRef, parsing.ASTLiteral, parsing.ASTIndex, parsing.ASTSlice,
		parsing.ASTIdentity, parsing.ASTCurrentNode, parsing.ASTRootNode, parsing.ASTVariable:
		// Expression references are evaluated against elements given by
		// the function; the rest read nothing by name.
	default:
		for _, c := range n.Children {
			collectRoots(c, out)
		}
	}
}

func walkFunctions(n parsing.ASTNode, fn func(string)) {
	if n.NodeType == parsing.ASTFunctionExpression {
		if s, ok := n.Value.(string); ok {
			fn(s)
		}
	}
	for _, c := range n.Children {
		walkFunctions(c, fn)
	}
}

var templateRe = regexp.MustCompile(`\$\{\{(.*?)\}\}`)

// Template is a string with ${{ expr }} placeholders.
type Template struct {
	Source string
	parts  []templatePart
}

type templatePart struct {
	lit  string
	expr *Expr
}

// CompileTemplate compiles every ${{ expr }} placeholder of s.
func CompileTemplate(s string) (*Template, error) {
	t := &Template{Source: s}
	last := 0
	var errs []string
	for _, m := range templateRe.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			t.parts = append(t.parts, templatePart{lit: s[last:m[0]]})
		}
		e, err := CompileExpr(strings.TrimSpace(s[m[2]:m[3]]))
		if err != nil {
			errs = append(errs, fmt.Sprintf("${{%s}}: %v", s[m[2]:m[3]], err))
		} else {
			t.parts = append(t.parts, templatePart{expr: e})
		}
		last = m[1]
	}
	if last < len(s) {
		rest := s[last:]
		if strings.Contains(rest, "${{") {
			errs = append(errs, "unterminated ${{ placeholder")
		}
		t.parts = append(t.parts, templatePart{lit: rest})
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return t, nil
}

// Reads reports whether any placeholder reads the root name.
func (t *Template) Reads(root string) bool {
	for _, p := range t.parts {
		if p.expr != nil && p.expr.Reads(root) {
			return true
		}
	}
	return false
}

// HasPlaceholders reports whether the template has any ${{ }} placeholder.
func (t *Template) HasPlaceholders() bool {
	for _, p := range t.parts {
		if p.expr != nil {
			return true
		}
	}
	return false
}

// Render substitutes every placeholder with its value in data. Strings are
// inserted as is; other values as compact JSON.
func (t *Template) Render(data any) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.expr.Eval(data)
		if err != nil {
			return "", err
		}
		b.WriteString(scalarString(v))
	}
	return b.String(), nil
}

// Truthy applies JMESPath truthiness: false, null, "", [], {} are false.
func Truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func scalarString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
