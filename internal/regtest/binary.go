package regtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
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

	// buildTimeout bounds the wait for the lock plus the build itself.
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
	version, err := toolVersion(root)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	return cachedBuild(t, root, "distribution-"+version, "registry", distributionCmd)
}

// cachedBuild returns os.UserCacheDir()/stella-test/<dirName>/<binName>, building pkg
// from tools/go.mod into it first unless it is already there.
func cachedBuild(t testing.TB, root, dirName, binName, pkg string) string {
	t.Helper()
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("regtest: user cache dir: %v", err)
	}
	dir := filepath.Join(cacheDir, "stella-test", dirName)
	bin := filepath.Join(dir, binName)
	if checkExecutable(bin) == nil {
		return bin
	}
	start := time.Now()
	built, err := buildLocked(root, dir, bin, pkg)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	if built {
		t.Logf("regtest: built %s (%s) in %s: %s", pkg, dirName, time.Since(start).Round(time.Second), bin)
	}
	return bin
}

// buildLocked builds pkg as bin under a file lock in dir unless another process built
// it while this one waited. It reports whether this process did the build.
func buildLocked(root, dir, bin, pkg string) (bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("tool cache dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	lock := flock.New(filepath.Join(dir, "build.lock"))
	locked, err := lock.TryLockContext(ctx, 250*time.Millisecond)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", lock.Path(), err)
	}
	if !locked {
		return false, fmt.Errorf("lock %s: not acquired within %s", lock.Path(), buildTimeout)
	}
	defer func() { _ = lock.Unlock() }()

	if checkExecutable(bin) == nil {
		return false, nil // built by another process while we waited
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer func() { _ = os.Remove(tmp) }()

	toolsDir := filepath.Join(root, "tools")
	cmd := exec.CommandContext(ctx, "go", "build",
		"-modfile="+filepath.Join(toolsDir, "go.mod"),
		"-o", tmp, pkg)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("build %s: %w\n%s", pkg, err, out.String())
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
