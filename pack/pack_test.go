package pack

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected problems of testdata/invalid")

func TestSamplePacksAreValid(t *testing.T) {
	dirs, err := filepath.Glob("../testdata/packs/*")
	if err != nil || len(dirs) < 5 {
		t.Fatalf("want at least 5 sample packs, got %d (%v)", len(dirs), err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			p, err := LoadDir(dir)
			if err != nil {
				t.Fatalf("sample pack does not validate: %v", err)
			}
			if p.Manifest.Metadata.Name != filepath.Base(dir) {
				t.Errorf("name %q, want the folder name %q", p.Manifest.Metadata.Name, filepath.Base(dir))
			}
			raw, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.ResolveInputs("inputs.json", raw); err != nil {
				t.Fatalf("sample inputs do not resolve: %v", err)
			}
		})
	}
}

// TestInvalidManifests loads each testdata/invalid/*.txtar as a pack and
// compares every reported problem with the archive's comment, which lists the
// exact expected problems, one per line.
func TestInvalidManifests(t *testing.T) {
	files, _ := filepath.Glob("../testdata/invalid/*.txtar")
	if len(files) < 30 {
		t.Fatalf("want at least 30 invalid manifests, got %d", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fsys := fstest.MapFS{}
			for _, f := range ar.Files {
				fsys[f.Name] = &fstest.MapFile{Data: f.Data, Mode: 0o644}
			}
			_, err = Load(fsys)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			if !errors.Is(err, ErrManifestInvalid) {
				t.Fatalf("want ErrManifestInvalid, got %v", err)
			}
			var got []string
			for _, p := range ve.Problems {
				if p.File == "" || (p.Line == 0 && !strings.Contains(p.Message, "schema")) {
					t.Errorf("problem without position: %s", p)
				}
				got = append(got, p.String())
			}
			if *update {
				ar.Comment = []byte(strings.Join(got, "\n") + "\n")
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := strings.Split(strings.TrimSpace(string(ar.Comment)), "\n")
			if len(want) == 1 && want[0] == "" {
				t.Fatal("the archive comment lists no expected problem; run with -update and review")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScaffoldValidates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my-pack")
	files, err := Scaffold(dir, "my-pack")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("scaffold wrote %v", files)
	}
	p, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("scaffolded pack does not validate: %v", err)
	}
	if p.ID() != "my-pack:0.1.0" {
		t.Fatalf("id %q", p.ID())
	}
	if _, err := Scaffold(dir, "my-pack"); !errors.Is(err, ErrExists) {
		t.Fatalf("second scaffold: want ErrExists, got %v", err)
	}
	if _, err := Scaffold(filepath.Join(t.TempDir(), "x"), "Bad Name"); !errors.Is(err, ErrManifestInvalid) {
		t.Fatalf("bad name: want ErrManifestInvalid, got %v", err)
	}
	f, ok := p.File("scripts/check.sh")
	if !ok || f.Mode != 0o755 {
		t.Fatalf("scripts keep their executable bit: %+v", f)
	}
}

func TestLoadRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	if _, err := Scaffold(filepath.Join(dir, "p"), "p"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "p", "scripts", "link")); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(filepath.Join(dir, "p"))
	if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "scripts/link") {
		t.Fatalf("want ErrUnsafePath naming scripts/link, got %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
	if _, err := Load(fstest.MapFS{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty folder: want ErrNotFound, got %v", err)
	}
}

func TestResolveInputs(t *testing.T) {
	p, err := LoadDir("../testdata/packs/rotate-registry-credentials")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		raw  string
		want []string // problems; nil means valid
	}{
		{"valid", `{"registry": "r.local:5000"}`, nil},
		{"missing required", `{}`, []string{`inputs.json:1:1: required input "registry" is missing (string)`}},
		{"wrong type", `{"registry": 5}`, []string{`inputs.json:1:2: registry: input "registry": expected a string, got a number`}},
		{"schema violation", `{"registry": "UPPER CASE"}`, []string{`inputs.json:1:2: registry: input "registry" does not match schemas/host.json: at /: 'UPPER CASE' does not match pattern '^[a-z0-9.-]+(:[0-9]{1,5})?$'`}},
		{"unknown input", "{\"registry\": \"r\",\n \"regsitry\": \"r\"}", []string{`inputs.json:2:2: regsitry: unknown input "regsitry" (the pack declares: registry, account, mirrors)`}},
		{"not an object", `[1]`, []string{`inputs.json:1:1: inputs must be a JSON object of input names to values, got an array`}},
		{"syntax", "{\"registry\": }", []string{`inputs.json:1:14: not valid JSON: unexpected '}' where a value should start (a string in quotes, a number, true, false, null, [ or {)`}},
		{"duplicate key", `{"registry": "a", "registry": "b"}`, []string{`inputs.json:1:29: JSON: duplicate key "registry"`}},
		{"ref schema items", `{"registry": "r", "mirrors": ["ok.local", "BAD"]}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := p.ResolveInputs("inputs.json", []byte(c.raw))
			if c.name == "ref schema items" {
				if !errors.Is(err, ErrInputInvalid) || !strings.Contains(err.Error(), "/1") {
					t.Fatalf("want the $ref'd item schema to refuse mirrors[1], got %v", err)
				}
				return
			}
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if in["account"] != "stella-robot" {
					t.Fatalf("default not applied: %v", in)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInputInvalid) {
				t.Fatalf("want ErrInputInvalid, got %v", err)
			}
			var got []string
			for _, pr := range ve.Problems {
				got = append(got, pr.String())
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestCompileExpr(t *testing.T) {
	cases := []struct {
		src, err string
		roots    []string
	}{
		{"inputs.a", "", []string{"inputs"}},
		{"inputs.a == steps.b.outputs.c", "", []string{"inputs", "steps"}},
		{"length(inputs.hosts) > `2`", "", []string{"inputs"}},
		{"inputs.hosts[?starts_with(@, 'web')]", "", []string{"inputs"}},
		{"item.name", "", []string{"item"}},
		{"inputs.a ==", "invalid JMESPath", nil},
		{"foo.bar", `unknown name "foo"`, nil},
		{"nope(inputs.a)", "unknown function nope()", nil},
		{"", "empty expression", nil},
		{strings.Repeat("a", MaxExprLen+1), "longer than", nil},
	}
	for _, c := range cases {
		e, err := CompileExpr(c.src)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error containing %q, got %v", c.src, c.err, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if diff := cmp.Diff(c.roots, e.Roots); diff != "" {
			t.Errorf("%q roots (-want +got)\n%s", c.src, diff)
		}
	}
}

func TestTemplateRender(t *testing.T) {
	tp, err := CompileTemplate("host=${{ inputs.h }} n=${{ inputs.n }} l=${{ inputs.l }}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.Render(map[string]any{"inputs": map[string]any{"h": "a.local", "n": float64(3), "l": []any{"x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `host=a.local n=3 l=["x"]`; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	if _, err := CompileTemplate("x ${{ inputs.a"); err == nil {
		t.Fatal("unterminated placeholder must fail")
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../testdata/packs/*/pack.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	inv, _ := filepath.Glob("../testdata/invalid/*.txtar")
	for _, s := range inv {
		ar, _ := txtar.ParseFile(s)
		if ar != nil && len(ar.Files) > 0 {
			f.Add(ar.Files[0].Data)
		}
	}
	// Deep nesting: at and beyond MaxManifestDepth.
	for _, depth := range []int{MaxManifestDepth - 1, MaxManifestDepth, 5000} {
		f.Add([]byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: " + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{ManifestFile: &fstest.MapFile{Data: data}}
		p, err := Load(fsys)
		if err != nil {
			if !errors.Is(err, ErrManifestInvalid) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if p.Manifest.APIVersion != APIVersion {
			t.Fatal("accepted a manifest with a wrong apiVersion")
		}
	})
}

func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{"inputs.a", "steps.b.outputs.c == `1`", "length(inputs.x[?@ > `1`])", "item", "inputs.a || inputs.b && !(inputs.c)", "let $x = inputs.a in $x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := CompileExpr(src)
		if err != nil {
			return
		}
		// Evaluating a compiled expression must not panic.
		_, _ = e.Eval(map[string]any{"inputs": map[string]any{"a": []any{float64(1), "x"}}, "item": "i", "index": float64(0)})
	})
}

// TestCheckFilePath: the one rule of pack file paths, shared by build and
// import (artifact.CheckTitles).
func TestCheckFilePath(t *testing.T) {
	for p, ok := range map[string]bool{
		"pack.yaml": true, "scripts/run.sh": true, "a/b/c-d_e.txt": true, "schemas/x.json": true,
		"": false, ".": false, "..": false, "../x": false, "a/../b": false, "/etc/passwd": false, "./a": false,
		"a//b": false, "a/": false, `a\b`: false, `..\x`: false, ".hidden": false, ".git/config": false, "a/.ssh/id": false,
	} {
		if err := CheckFilePath(p); ok != (err == nil) {
			t.Errorf("%q: want ok %v, got %v", p, ok, err)
		}
	}
}

// TestValidRef: a pack's ref is a valid name and a strict semantic version.
func TestValidRef(t *testing.T) {
	for ref, ok := range map[string]bool{
		"backup-database:0.4.2": true, "evidence:1.0.0-rc.1": true,
		"approval-request:0123456789abcdef": false, "backup-database:1.0": false, "Backup:1.0.0": false, "nover": false, "a/b:1.0.0": false,
	} {
		if ValidRef(ref) != ok {
			t.Errorf("%q: want %v", ref, ok)
		}
	}
}

// FuzzCheckFilePath: every path the rule accepts stays inside the pack
// folder once joined to it, is already clean, and hides nothing.
func FuzzCheckFilePath(f *testing.F) {
	for _, s := range []string{"pack.yaml", "scripts/run.sh", "../x", "/etc/passwd", `a\b`, ".git/x", "a/./b", "a//b", "ä/ö"} {
		f.Add(s)
	}
	root := filepath.FromSlash("/pack/root")
	f.Fuzz(func(t *testing.T, p string) {
		if CheckFilePath(p) != nil {
			return
		}
		j := filepath.Join(root, filepath.FromSlash(p))
		rel, err := filepath.Rel(root, j)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.ToSlash(rel) != p {
			t.Fatalf("accepted %q escapes or is not clean: %q %v", p, rel, err)
		}
		for _, el := range strings.Split(p, "/") {
			if el == "" || strings.HasPrefix(el, ".") || strings.Contains(el, `\`) {
				t.Fatalf("accepted %q with element %q", p, el)
			}
		}
	})
}

// TestMaxFiles: the limit counts the pack's files besides pack.yaml, so a
// pack of MaxFiles data files loads, and one more is refused with
// ErrTooManyFiles (not a manifest problem: there is no line to point at).
func TestMaxFiles(t *testing.T) {
	manifest := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: many, version: 1.0.0, description: Many files.}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n"
	fsys := fstest.MapFS{ManifestFile: &fstest.MapFile{Data: []byte(manifest), Mode: 0o644}}
	for i := range MaxFiles {
		fsys[fmt.Sprintf("d%03d/f%04d", i/100, i)] = &fstest.MapFile{Data: []byte{byte(i)}, Mode: 0o644}
	}
	p, err := Load(fsys)
	if err != nil {
		t.Fatalf("%d data files: %v", MaxFiles, err)
	}
	if len(p.Files) != MaxFiles+1 {
		t.Fatalf("%d files loaded, want %d and pack.yaml", len(p.Files), MaxFiles)
	}
	fsys["zzz"] = &fstest.MapFile{Data: []byte("one more"), Mode: 0o644}
	_, err = Load(fsys)
	if !errors.Is(err, ErrTooManyFiles) || errors.Is(err, ErrManifestInvalid) {
		t.Fatalf("%d data files: err = %v, want ErrTooManyFiles only", MaxFiles+1, err)
	}
}
