package regtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// Tool returns the path of a command-line tool declared with `tool` in tools/go.mod
// (e.g. "oras", "crane": the last element of its package path), built once per machine
// into os.UserCacheDir()/stella-test/<name>-<version>/ exactly as [Binary] builds the
// registry, where <version> is that of the tool's module in tools/go.mod. It fails the
// test when the tool is not declared or does not build.
func Tool(t testing.TB, name string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	pkg, module, err := toolPackage(filepath.Join(root, "tools", "go.mod"), name)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	version, err := requiredVersion(root, module)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	return cachedBuild(t, root, name+"-"+version, name, pkg)
}

// toolPackage finds in the go.mod file at gomod the tool package whose last element is
// name, and the required module that provides it (the longest module path prefix).
func toolPackage(gomod, name string) (pkg, module string, err error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", "", fmt.Errorf("tools module: %w", err)
	}
	var tools, modules []string
	block := "" // directive of the enclosing ( ) block
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fields := strings.Fields(line)
		directive := block
		switch {
		case len(fields) == 0:
			continue
		case fields[0] == ")":
			block = ""
			continue
		case len(fields) == 2 && fields[1] == "(":
			block = fields[0]
			continue
		case block == "":
			directive, fields = fields[0], fields[1:] // single-line form
		}
		if len(fields) == 0 {
			continue
		}
		switch directive {
		case "tool":
			tools = append(tools, fields[0])
		case "require":
			modules = append(modules, fields[0])
		}
	}
	for _, p := range tools {
		if path.Base(p) == name {
			pkg = p
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("%s: no tool named %q", gomod, name)
	}
	for _, m := range modules {
		if (pkg == m || strings.HasPrefix(pkg, m+"/")) && len(m) > len(module) {
			module = m
		}
	}
	if module == "" {
		return "", "", fmt.Errorf("%s: no requirement provides tool %s", gomod, pkg)
	}
	return pkg, module, nil
}
