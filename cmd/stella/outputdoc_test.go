package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// documentedKeys reads docs/output.md's tables: for each command of a row
// ("pack build", "runs list" and "evidence verify" taken under "pack"), the
// names of the keys the row mentions (the first word of each `code` span
// in the keys cell).
func documentedKeys(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/output.md")
	if err != nil {
		t.Fatal(err)
	}
	span := regexp.MustCompile("`([^`]+)`")
	word := regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*`)
	out := map[string]map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 2 {
			continue
		}
		keys := map[string]bool{}
		for _, m := range span.FindAllStringSubmatch(strings.Join(cells[1:], " | "), -1) {
			if w := word.FindString(m[1]); w != "" {
				keys[w] = true
			}
		}
		for _, m := range span.FindAllStringSubmatch(cells[0], -1) {
			cmd := strings.Fields(m[1])
			for len(cmd) > 0 && (strings.HasPrefix(cmd[len(cmd)-1], "-") || strings.ToUpper(cmd[len(cmd)-1]) == cmd[len(cmd)-1]) {
				cmd = cmd[:len(cmd)-1] // flags and arguments: `pack validate DIR`, `pack validate --bundle`
			}
			if len(cmd) == 0 {
				continue
			}
			name := strings.Join(cmd, " ")
			switch cmd[0] {
			case "runs", "evidence":
				name = "pack " + name
			}
			if out[name] == nil {
				out[name] = map[string]bool{}
			}
			for k := range keys {
				out[name][k] = true
			}
		}
	}
	return out
}

// keyTable is the keys of the "| key | ... |" table of docs/output.md that
// follows the first line holding marker: the first word of each `code`
// span of its first column.
func keyTable(t *testing.T, marker string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/output.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	i := 0
	for i < len(lines) && !strings.Contains(lines[i], marker) {
		i++
	}
	for i < len(lines) && !strings.HasPrefix(lines[i], "| key |") {
		i++
	}
	span := regexp.MustCompile("`([a-zA-Z][a-zA-Z0-9]*)")
	keys := map[string]bool{}
	for i += 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		first := strings.Split(lines[i], " | ")[0]
		for _, m := range span.FindAllStringSubmatch(first, -1) {
			keys[m[1]] = true
		}
	}
	if len(keys) == 0 {
		t.Fatalf("docs/output.md: no key table after %q", marker)
	}
	return keys
}

// TestOutputKeysAreDocumented runs commands of every area in JSON mode
// and checks that each key they print is in docs/output.md's row for the
// command: a key added without its documentation fails here.
func TestOutputKeysAreDocumented(t *testing.T) {
	docs := documentedKeys(t)
	dir := t.TempDir()
	home, other := filepath.Join(dir, "home"), filepath.Join(dir, "other")
	env := map[string]string{"STELLA_KEY_PASSPHRASE_FILE": filepath.Join(dir, "pass")}
	writeFile(t, env["STELLA_KEY_PASSPHRASE_FILE"], "a throwaway test passphrase\n")
	p := filepath.Join(dir, "p")
	writeFile(t, filepath.Join(p, "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: doc-keys
  version: 1.0.0
  description: prints its output
spec:
  steps:
    - id: hello
      run:
        command: ["sh", "-c", "echo hello"]
`)
	run := func(h string, args ...string) map[string]any {
		t.Helper()
		r := stella(t, h, env, append([]string{"--output", "json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, r.stdout)
		}
		m, _ := v.(map[string]any)
		return m
	}
	docs["pack evidence verify"] = keyTable(t, "The verify report")
	runShow := keyTable(t, "The run record")
	runShow["runnerState"] = true
	docs["pack runs show"] = runShow
	check := func(cmd string, doc map[string]any) {
		t.Helper()
		want, ok := docs[cmd]
		if !ok {
			t.Errorf("docs/output.md has no row for %q", cmd)
			return
		}
		var missing []string
		for k := range doc {
			if !want[k] {
				missing = append(missing, k)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s prints keys docs/output.md does not list: %v", cmd, missing)
		}
	}

	check("pack validate", run(home, "pack", "validate", p))
	check("pack plan", run(home, "pack", "plan", "--pack", p))
	bundle := filepath.Join(dir, "p.tar")
	check("pack build", run(home, "pack", "build", p, "-o", bundle))
	check("pack verify", run(other, "pack", "verify", bundle))
	check("pack import", run(other, "pack", "import", bundle))
	check("pack show", run(home, "pack", "show", "doc-keys:1.0.0"))
	check("pack export", run(home, "pack", "export", "-o", filepath.Join(dir, "again.tar"), "doc-keys:1.0.0"))
	check("cache verify", run(home, "cache", "verify"))
	check("cache du", run(home, "cache", "du"))
	check("cache gc", run(home, "cache", "gc", "--dry-run"))
	res := run(home, "pack", "run", "--insecure-skip-isolation", "--pack", "doc-keys:1.0.0")
	check("pack run", res)
	id, _ := res["runId"].(string)
	check("pack runs show", run(home, "pack", "runs", "show", id))
	check("pack runs gc", run(home, "pack", "runs", "gc", "--dry-run"))
	check("key generate", run(home, "key", "generate", "--dir", filepath.Join(dir, "keys"), "runner"))
	ev := filepath.Join(dir, "run.evidence.tar")
	check("pack runs export", run(home, "pack", "runs", "export", "--run", id, "-o", ev, "--key", filepath.Join(dir, "keys", "runner.key")))
	check("trust add", run(other, "trust", "add", "--key", filepath.Join(dir, "keys", "runner.pub"), "--role", "Packs.Run", "runner"))
	check("trust list", run(other, "trust", "list"))
	check("pack evidence verify", run(other, "pack", "evidence", "verify", ev))
	check("version", run(home, "version"))
}
