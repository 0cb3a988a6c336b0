package regtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestToolPackage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "go.mod")
	gomod := `module example.com/tools

go 1.26

tool (
	github.com/distribution/distribution/v3/cmd/registry
	oras.land/oras/cmd/oras // the CLI
)

tool github.com/google/go-containerregistry/cmd/crane

require github.com/google/go-containerregistry v0.21.9

require (
	github.com/distribution/distribution/v3 v3.1.2 // indirect
	oras.land/oras v1.3.6 // indirect
	oras.land/oras-go/v2 v2.7.0 // indirect
)
`
	if err := os.WriteFile(path, []byte(gomod), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, pkg, module string }{
		{"oras", "oras.land/oras/cmd/oras", "oras.land/oras"},
		{"crane", "github.com/google/go-containerregistry/cmd/crane", "github.com/google/go-containerregistry"},
		{"registry", "github.com/distribution/distribution/v3/cmd/registry", "github.com/distribution/distribution/v3"},
	} {
		pkg, module, err := toolPackage(path, tc.name)
		if err != nil || pkg != tc.pkg || module != tc.module {
			t.Errorf("toolPackage(%q) = %q, %q, %v; want %q, %q", tc.name, pkg, module, err, tc.pkg, tc.module)
		}
	}
	if _, _, err := toolPackage(path, "cosign"); err == nil {
		t.Error("toolPackage(cosign) succeeded for an undeclared tool")
	}
}

// CachedTools lists every tool of tools/go.mod at the very path Tool and Binary use, so
// that `make tools` builds what the tests then find.
func TestCachedToolsArePathsTheTestsUse(t *testing.T) {
	t.Setenv(BinaryEnv, "")
	tools, err := CachedTools()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range tools {
		names = append(names, c.Name)
		want := Tool(t, c.Name)
		if c.Name == "registry" {
			want = Binary(t)
			if dir := filepath.Base(filepath.Dir(c.Path)); dir != "distribution-v3.1.2" {
				t.Errorf("registry cached in %s, want distribution-v3.1.2 as before", dir)
			}
		}
		if c.Path != want {
			t.Errorf("CachedTools: %s at %s, but the tests use %s", c.Name, c.Path, want)
		}
		if err := checkExecutable(c.Path); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	if diff := cmp.Diff([]string{"registry", "crane", "olareg", "cosign", "oras", "otlpsink"}, names); diff != "" {
		t.Errorf("CachedTools names (-want +got):\n%s", diff)
	}
}
