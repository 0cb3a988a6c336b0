package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// result is what one in-process stella run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// stella runs the CLI in this process with home as STELLA_HOME and env as
// the rest of the environment.
func stella(t *testing.T, home string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	s := &session{
		stdin:  strings.NewReader(""),
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string {
			if k == "STELLA_HOME" {
				return home
			}
			return env[k]
		},
	}
	code := s.run(context.Background(), append([]string{"stella"}, args...))
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// assertEmptyCache checks that a cache holds no artifact, no blob and no
// leftover, and that it verifies.
func assertEmptyCache(t *testing.T, home string) {
	t.Helper()
	if r := stella(t, home, nil, "--output", "json", "pack", "list"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("cache lists artifacts after a refused import: %d %s %s", r.code, r.stdout, r.stderr)
	}
	blobs, _ := filepath.Glob(filepath.Join(home, "packs", "blobs", "*", "*"))
	segments, _ := filepath.Glob(filepath.Join(home, "packs", "segments", "*"))
	ingest, _ := filepath.Glob(filepath.Join(home, "packs", "ingest", "*"))
	if len(blobs)+len(segments)+len(ingest) > 0 {
		t.Fatalf("a refused import left files behind: %v %v %v", blobs, segments, ingest)
	}
	if r := stella(t, home, nil, "cache", "verify"); r.code != 0 {
		t.Fatalf("cache verify after a refused import: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
