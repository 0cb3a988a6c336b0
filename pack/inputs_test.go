package pack

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// nested is depth levels of key "a" around a value, under the input
// "registry" (which then is not a string): {"registry": {"a": {"a": ... 1}}}.
func nested(depth int, open, close string) string {
	return `{"registry": ` + strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth) + "}"
}

// TestResolveInputsLimits: nesting and value counts beyond the limits are
// refused with ErrInputLimit, located, before the value is built or
// checked; just under them the usual checks run.
func TestResolveInputsLimits(t *testing.T) {
	p, err := LoadDir("../testdata/packs/rotate-registry-credentials")
	if err != nil {
		t.Fatal(err)
	}
	manyValues := `{"registry": [` + strings.Repeat("0,", MaxInputsValues) + "0]}"
	cases := []struct {
		name string
		raw  string
		kind error
		want string
	}{
		// The top-level object is level 1.
		{"arrays at the limit", nested(MaxInputsDepth-1, "[", "]"), ErrInputInvalid, `inputs.json:1:2: registry: input "registry": expected a string, got an array`},
		{"arrays one deeper", nested(MaxInputsDepth, "[", "]"), ErrInputLimit, `inputs.json:1:77: inputs file holds arrays and objects nested deeper than 64 levels, the limit (MaxInputsDepth)`},
		{"objects one deeper", nested(MaxInputsDepth, `{"a":`, "}"), ErrInputLimit, `inputs.json:1:329: inputs file holds arrays and objects nested deeper than 64 levels, the limit (MaxInputsDepth)`},
		// 4 MiB of '[': a recursive decoder without a bound overflows its stack.
		{"a file of brackets", strings.Repeat("[", MaxInputsSize-1), ErrInputLimit, `inputs.json:1:65: inputs file holds arrays and objects nested deeper than 64 levels, the limit (MaxInputsDepth)`},
		{"too many values", manyValues, ErrInputLimit, `inputs.json:1:400012: inputs file holds more than 200000 values, the limit (MaxInputsValues)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.ResolveInputs("inputs.json", []byte(c.raw))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, c.kind) {
				t.Fatalf("want %v, got %v", c.kind, err)
			}
			if len(ve.Problems) != 1 {
				t.Fatalf("want one problem, got %v", ve.Problems)
			}
			if diff := cmp.Diff(c.want, ve.Problems[0].String()); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// FuzzInputs: the inputs decoder never panics, never recurses beyond its
// depth limit (a deep input would overflow the stack), and what it accepts
// is an object within the limits.
func FuzzInputs(f *testing.F) {
	p, err := LoadDir("../testdata/packs/rotate-registry-credentials")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"registry": "r.local:5000"}`,
		`{"registry": "r", "mirrors": ["a.local", "b.local"]}`,
		`{"registry": {"a": [1, 2.5, -3e10, true, null, "x"]}}`,
		`{"registry": "a", "registry": "b"}`,
		`{"registry": 1e400}`,
		nested(MaxInputsDepth, "[", "]"),
		strings.Repeat("[", 10_000),
		strings.Repeat(`{"a":`, 10_000),
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, _, err := decodeJSON(raw)
		if err == nil {
			if d, n := depthAndCount(v); d > MaxInputsDepth || n > MaxInputsValues {
				t.Fatalf("decoded depth %d, %d values: beyond the limits", d, n)
			}
		}
		in, err := p.ResolveInputs("inputs.json", raw)
		var ve *ValidationError
		switch {
		case err == nil:
			if in == nil {
				t.Fatal("no error and no inputs")
			}
		case !errors.As(err, &ve) || len(ve.Problems) == 0:
			t.Fatalf("error without problems: %v", err)
		case !errors.Is(err, ErrInputInvalid) && !errors.Is(err, ErrInputLimit):
			t.Fatalf("error of another kind: %v", err)
		}
	})
}

// depthAndCount measures a decoded value without recursion.
func depthAndCount(v any) (depth, count int) {
	type item struct {
		v any
		d int
	}
	stack := []item{{v, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		count++
		switch t := it.v.(type) {
		case map[string]any:
			depth = max(depth, it.d+1)
			for _, c := range t {
				stack = append(stack, item{c, it.d + 1})
			}
		case []any:
			depth = max(depth, it.d+1)
			for _, c := range t {
				stack = append(stack, item{c, it.d + 1})
			}
		}
	}
	return depth, count
}

func TestParseDepthLimit(t *testing.T) {
	doc := func(depth int) string {
		return "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: " + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "\n"
	}
	// At the limit the document decodes (and fails for another reason).
	if _, err := Parse("pack.yaml", []byte(doc(MaxManifestDepth))); err == nil || strings.Contains(err.Error(), "MaxManifestDepth") {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := Parse("pack.yaml", []byte(doc(MaxManifestDepth+1)))
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrManifestInvalid) || len(ve.Problems) != 1 {
		t.Fatalf("one deeper: %v", err)
	}
	want := "pack.yaml:3:74: mappings and sequences nested deeper than 64 levels, the limit (MaxManifestDepth)"
	if diff := cmp.Diff(want, ve.Problems[0].String()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
