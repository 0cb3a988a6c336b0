package regtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	c, err := cachedTool(root, name)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	return cachedBuild(t, c)
}

// CachedTool is a binary the tests build on first use and keep in the per-machine
// cache: one tool declared in tools/go.mod.
type CachedTool struct {
	Name    string // as [Tool] takes it: the last element of Package
	Package string // its main package, declared with `tool` in tools/go.mod
	Path    string // where [Tool] (and [Binary], for the registry) find it

	root string // of the repository whose tools/go.mod declares it
	dir  string // for a program of its own module, tools/<name>: built there
}

// CachedTools lists every tool declared in tools/go.mod, at the paths [Tool] and
// [Binary] use, so that `make tools` can build them all before any test starts
// (cosign alone takes minutes).
func CachedTools() ([]CachedTool, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	names, err := toolNames(filepath.Join(root, "tools", "go.mod"))
	if err != nil {
		return nil, err
	}
	local, err := localToolNames(root)
	if err != nil {
		return nil, err
	}
	names = append(names, local...)
	var tools []CachedTool
	for _, name := range names {
		c, err := cachedTool(root, name)
		if err != nil {
			return nil, err
		}
		tools = append(tools, c)
	}
	return tools, nil
}

// Build builds the tool into its Path unless it is there already, as [Tool] would, and
// reports whether it did. It waits for another process building the same tool.
func (c CachedTool) Build(ctx context.Context) (built bool, err error) {
	if checkExecutable(c.Path) == nil {
		return false, nil
	}
	return buildLocked(ctx, c)
}

// cachedTool says where the tool name declared in <root>/tools/go.mod is cached:
// os.UserCacheDir()/stella-test/<name>-<version>/<name>, <version> being that of the
// module providing it. The distribution registry's folder is named
// distribution-<version>, as it was before tools/go.mod declared other tools.
func cachedTool(root, name string) (CachedTool, error) {
	if dir := filepath.Join(root, "tools", name); fileExists(filepath.Join(dir, "go.mod")) {
		return localTool(root, dir, name)
	}
	pkg, module, err := toolPackage(filepath.Join(root, "tools", "go.mod"), name)
	if err != nil {
		return CachedTool{}, err
	}
	version, err := requiredVersion(root, module)
	if err != nil {
		return CachedTool{}, err
	}
	dirName := name + "-" + version
	if pkg == distributionCmd {
		dirName = "distribution-" + version
	}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		return CachedTool{}, fmt.Errorf("user cache dir: %w", err)
	}
	return CachedTool{Name: name, Package: pkg, Path: filepath.Join(cacheDir, "stella-test", dirName, name), root: root}, nil
}

// toolNames returns the names of the tools declared in the go.mod file at gomod, in
// their order there.
func toolNames(gomod string) ([]string, error) {
	tools, _, err := parseToolsMod(gomod)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range tools {
		names = append(names, path.Base(p))
	}
	return names, nil
}

// toolPackage finds in the go.mod file at gomod the tool package whose last element is
// name, and the required module that provides it (the longest module path prefix).
func toolPackage(gomod, name string) (pkg, module string, err error) {
	tools, modules, err := parseToolsMod(gomod)
	if err != nil {
		return "", "", err
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

// parseToolsMod returns the tool packages and the required modules of the go.mod
// file at gomod.
func parseToolsMod(gomod string) (tools, modules []string, err error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return nil, nil, fmt.Errorf("tools module: %w", err)
	}
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
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", gomod, err)
	}
	return tools, modules, nil
}

// localToolNames lists the programs under tools/ that are modules of their
// own (tools/<name>/go.mod with package main at its root), such as the
// OTLP receiver the trace tests send spans to: small programs written for
// the tests on top of libraries from the module proxy.
func localToolNames(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "tools"))
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && fileExists(filepath.Join(root, "tools", e.Name(), "go.mod")) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// localTool is the program of the module in dir, cached under a version
// that is the hash of its go.mod, go.sum and Go files: a change to any of
// them builds it again.
func localTool(root, dir, name string) (CachedTool, error) {
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return CachedTool{}, fmt.Errorf("tool %s: %w", name, err)
	}
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && (n == "go.mod" || n == "go.sum" || strings.HasSuffix(n, ".go")) {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return CachedTool{}, fmt.Errorf("tool %s: %w", name, err)
			}
			fmt.Fprintf(h, "%s %d\n", n, len(b))
			h.Write(b)
		}
	}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		return CachedTool{}, fmt.Errorf("user cache dir: %w", err)
	}
	version := "src-" + hex.EncodeToString(h.Sum(nil))[:16]
	return CachedTool{Name: name, Package: moduleName(filepath.Join(dir, "go.mod")),
		Path: filepath.Join(cacheDir, "stella-test", name+"-"+version, name), root: root, dir: dir}, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
