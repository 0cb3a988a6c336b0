package pack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// TestPublishedSchemaAcceptsSamples keeps docs/schemas/pack.v1.json in step
// with the parser: every sample pack and the scaffold validate against it,
// and a few structural mistakes the parser refuses are refused by it too.
func TestPublishedSchemaAcceptsSamples(t *testing.T) {
	c := jsonschema.NewCompiler()
	sch, err := c.Compile("../docs/schemas/pack.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, data []byte, wantValid bool) {
		t.Helper()
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v = jsonify(v)
		err := sch.Validate(v)
		if wantValid && err != nil {
			t.Errorf("%s: the published schema refuses a valid pack: %v", name, err)
		}
		if !wantValid && err == nil {
			t.Errorf("%s: the published schema accepts an invalid pack", name)
		}
	}
	files, _ := filepath.Glob("../testdata/packs/*/pack.yaml")
	files = append(files, "scaffold/pack.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(f, []byte(strings.ReplaceAll(string(b), "{{NAME}}", "scaffolded")), true)
	}
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: a, version: 1.0.0, description: d, owner: x}\nspec: {steps: [{id: a, run: {command: [x]}}]}\n",
		"two bodies":    "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: a, version: 1.0.0, description: d}\nspec: {steps: [{id: a, run: {command: [x]}, gate: {approval: b}}]}\n",
		"bad semver":    "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: a, version: \"1.0\", description: d}\nspec: {steps: [{id: a, run: {command: [x]}}]}\n",
	} {
		check(name, []byte(doc), false)
	}
}

// jsonify turns YAML-decoded values into JSON-like ones (map keys as strings, ints as float64).
func jsonify(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonify(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = jsonify(e)
		}
		return x
	case int:
		return float64(x)
	}
	return v
}
