package regtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

const (
	// BinaryEnv names an environment variable holding the path of a registry binary to
	// use instead of building one.
	BinaryEnv = "STELLA_TEST_REGISTRY_BIN"

	mainModule         = "stellaops.io/stella"
	distributionModule = "github.com/distribution/distribution/v3"
	distributionCmd    = distributionModule + "/cmd/registry"

	// buildTimeout bounds, in a test, the wait for the lock plus the build itself.
	buildTimeout = 10 * time.Minute
)

// Binary returns the path of the distribution v3 registry executable: the value of
// STELLA_TEST_REGISTRY_BIN when set, otherwise a binary built once per machine from
// tools/go.mod and cached under os.UserCacheDir(). See the package documentation.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			t.Fatalf("regtest: %s: %v", BinaryEnv, err)
		}
		return p
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	c, err := cachedTool(root, path.Base(distributionCmd))
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	return cachedBuild(t, c)
}

// cachedBuild returns c.Path, building c first unless it is already there.
func cachedBuild(t testing.TB, c CachedTool) string {
	t.Helper()
	if checkExecutable(c.Path) == nil {
		return c.Path
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	built, err := buildLocked(ctx, c)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	if built {
		t.Logf("regtest: built %s in %s: %s (run `make tools` to build every tool before the tests)", c.Package, time.Since(start).Round(time.Second), c.Path)
	}
	return c.Path
}

// buildLocked builds c.Package from tools/go.mod as c.Path, under a file lock in
// its folder, unless another process built it while this one waited; ctx bounds the wait
// and the build. It reports whether this process did the build.
func buildLocked(ctx context.Context, c CachedTool) (bool, error) {
	dir, bin := filepath.Dir(c.Path), c.Path
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("tool cache dir: %w", err)
	}
	lock := flock.New(filepath.Join(dir, "build.lock"))
	locked, err := lock.TryLockContext(ctx, 250*time.Millisecond)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", lock.Path(), err)
	}
	if !locked {
		return false, fmt.Errorf("lock %s: not acquired", lock.Path())
	}
	defer func() { _ = lock.Unlock() }()

	if checkExecutable(bin) == nil {
		return false, nil // built by another process while we waited
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer func() { _ = os.Remove(tmp) }()

	toolsDir := filepath.Join(c.root, "tools")
	cmd := exec.CommandContext(ctx, "go", "build",
		"-modfile="+filepath.Join(toolsDir, "go.mod"),
		"-o", tmp, c.Package)
	cmd.Dir = toolsDir
	if c.dir != "" { // a program of its own module under tools/
		cmd = exec.CommandContext(ctx, "go", "build", "-o", tmp, ".")
		cmd.Dir = c.dir
	}
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("build %s: %w\n%s", c.Package, err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return false, fmt.Errorf("install %s: %w", bin, err)
	}
	return true, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

// repoRoot walks up from the working directory to the directory whose go.mod declares
// the module stellaops.io/stella.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working dir: %w", err)
	}
	for dir := wd; ; {
		if moduleName(filepath.Join(dir, "go.mod")) == mainModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above %s", mainModule, wd)
		}
		dir = parent
	}
}

// moduleName returns the module path declared by the go.mod file at path, or "".
func moduleName(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`)
		}
	}
	return ""
}

// toolVersion returns the version of the distribution module required by
// <root>/tools/go.mod, which names the cache directory of the built binary.
func toolVersion(root string) (string, error) {
	return requiredVersion(root, distributionModule)
}

// requiredVersion returns the version of module required by <root>/tools/go.mod.
func requiredVersion(root, module string) (string, error) {
	path := filepath.Join(root, "tools", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("tools module: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] == "require" {
			fields = fields[1:] // single-line form: require mod version
		}
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s: no requirement of %s", path, module)
}
