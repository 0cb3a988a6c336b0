package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// documentedKeys reads docs/output.md's tables: for each command of a row
// ("pack build", "runs list" and "evidence verify" taken under "pack"), the
// names of the keys the row mentions (the first word of each `code` span
// in the keys cell).
func documentedKeys(t *testing.T) map[string]map[string]bool {
	all, _ := documentedRows(t)
	return all
}

// documentedRows reads docs/output.md's command tables like documentedKeys,
// and also gives each command's top-level keys: the code spans of its keys
// cell that are outside parentheses (remarks) and name a key (not an array
// such as `[{runId, ...}]`).
func documentedRows(t *testing.T) (all, top map[string]map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../../docs/output.md")
	if err != nil {
		t.Fatal(err)
	}
	span := regexp.MustCompile("`([^`]+)`")
	word := regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*`)
	out, tops := map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 2 {
			continue
		}
		keys, topKeys := map[string]bool{}, map[string]bool{}
		cell := strings.Join(cells[1:], " | ")
		for _, m := range span.FindAllStringSubmatch(cell, -1) {
			if w := word.FindString(m[1]); w != "" {
				keys[w] = true
			}
			if strings.HasPrefix(m[1], "[{") { // an array of objects: the element's keys
				for _, f := range strings.Split(strings.Trim(m[1], "[{}]"), ",") {
					if w := word.FindString(strings.TrimSpace(f)); w != "" {
						keys[w] = true
					}
				}
			}
		}
		spans := topLevelSpans(cell)
		for _, w := range spans {
			if k := word.FindString(w); k != "" {
				topKeys[k] = true
			}
		}
		if len(spans) > 0 && strings.HasPrefix(spans[0], "[{") {
			// An array of objects: its top-level keys are the element's.
			inner := strings.TrimSuffix(strings.TrimPrefix(spans[0], "[{"), "}]")
			for _, f := range strings.Split(inner, ",") {
				if k := word.FindString(strings.TrimSpace(f)); k != "" {
					topKeys[k] = true
				}
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
				out[name], tops[name] = map[string]bool{}, map[string]bool{}
			}
			for k := range keys {
				out[name][k] = true
			}
			for k := range topKeys {
				tops[name][k] = true
			}
		}
	}
	return out, tops
}

// topLevelSpans gives the code spans of a keys cell that are not inside a
// parenthesised remark.
func topLevelSpans(cell string) []string {
	var spans []string
	depth := 0
	for i := 0; i < len(cell); i++ {
		switch cell[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '`':
			end := strings.IndexByte(cell[i+1:], '`')
			if end < 0 {
				return spans
			}
			if depth == 0 {
				spans = append(spans, cell[i+1:i+1+end])
			}
			i += end + 1
		}
	}
	return spans
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
// and checks them against docs/output.md's row for the command, both ways:
// each key they print is documented (a key added without its documentation
// fails), and each top-level key documented is printed (a key renamed or
// dropped fails), except those the call names as absent in the situation
// it runs (a failure of a run that succeeded).
func TestOutputKeysAreDocumented(t *testing.T) {
	docs, tops := documentedRows(t)
	dir := t.TempDir()
	home, other := filepath.Join(dir, "home"), filepath.Join(dir, "other")
	for _, h := range []string{home, other} {
		if err := os.MkdirAll(h, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"STELLA_KEY_PASSPHRASE_FILE": filepath.Join(dir, "pass"), "STELLA_VAULT_PASSPHRASE_FILE": filepath.Join(dir, "pass")}
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
	// runList runs a command printing an array and gives its first element.
	runList := func(h string, args ...string) map[string]any {
		t.Helper()
		r := stella(t, h, env, append([]string{"--output", "json"}, args...)...)
		var v []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || len(v) == 0 {
			t.Fatalf("%v: exit %d, want a non-empty array: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
		}
		return v[0]
	}
	docs["pack evidence verify"] = keyTable(t, "The verify report")
	tops["pack evidence verify"] = docs["pack evidence verify"]
	runShow := keyTable(t, "The run record")
	runShow["runnerState"] = true
	runShow["traceId"] = true
	docs["pack runs show"], tops["pack runs show"] = runShow, runShow
	check := func(cmd string, doc map[string]any, absent ...string) {
		t.Helper()
		want, ok := docs[cmd]
		if !ok {
			t.Errorf("docs/output.md has no row for %q", cmd)
			return
		}
		var undocumented, unprinted []string
		for k := range doc {
			if !want[k] {
				undocumented = append(undocumented, k)
			}
		}
		for k := range tops[cmd] {
			if _, ok := doc[k]; !ok && !slices.Contains(absent, k) {
				unprinted = append(unprinted, k)
			}
		}
		for _, k := range absent {
			if _, ok := doc[k]; ok {
				t.Errorf("%s: %q is printed here; the test should not list it as absent", cmd, k)
			}
		}
		sort.Strings(undocumented)
		sort.Strings(unprinted)
		if len(undocumented) > 0 {
			t.Errorf("%s prints keys docs/output.md does not list: %v", cmd, undocumented)
		}
		if len(unprinted) > 0 {
			t.Errorf("%s does not print keys docs/output.md lists: %v", cmd, unprinted)
		}
	}

	check("pack validate", run(home, "pack", "validate", p), "bundle", "packs") // --bundle only
	check("pack plan", run(home, "pack", "plan", "--pack", p), "out")           // --out only
	bundle := filepath.Join(dir, "p.tar")
	check("pack build", run(home, "pack", "build", p, "-o", bundle), "signature") // --sign only
	check("pack verify", run(other, "pack", "verify", bundle))
	check("pack import", run(other, "pack", "import", bundle))
	check("pack show", run(home, "pack", "show", "doc-keys:1.0.0"))
	check("pack export", run(home, "pack", "export", "-o", filepath.Join(dir, "again.tar"), "doc-keys:1.0.0"), "parts") // --split only
	check("cache verify", run(home, "cache", "verify"))
	check("cache du", run(home, "cache", "du"))
	check("cache gc", run(home, "cache", "gc", "--dry-run"))
	// The report and the list share the doctor row; each lacks the other's keys.
	check("doctor", run(home, "doctor", "--check", "cache", "--check", "runs"), "id", "title", "network")
	check("doctor", runList(home, "doctor", "--list"), "checks", "summary")
	res := run(home, "pack", "run", "--insecure-skip-isolation", "--pack", "doc-keys:1.0.0")
	check("pack run", res, "failure", "gate", "outputs") // it succeeded, at no gate, and the pack declares no outputs
	id, _ := res["runId"].(string)
	check("pack runs show", run(home, "pack", "runs", "show", id), "expansions", "failure", "outputs", "runner", "chaos") // nothing expanded, succeeded, no outputs, runner gone, no chaos
	check("pack runs trace", run(home, "pack", "runs", "trace", id))
	check("pack runs gc", run(home, "pack", "runs", "gc", "--dry-run"))
	check("key generate", run(home, "key", "generate", "--dir", filepath.Join(dir, "keys"), "runner"), "vault", "source", "publicPem") // a key file: no vault; source and PEM are key show's
	check("key show", run(home, "key", "show", filepath.Join(dir, "keys", "runner.pub")), "name", "vault", "privateKey")               // a public key file
	ev := filepath.Join(dir, "run.evidence.tar")
	check("pack runs export", run(home, "pack", "runs", "export", "--run", id, "-o", ev, "--key", filepath.Join(dir, "keys", "runner.key")), "parts", "pushed") // no --split, no --to
	check("trust add", run(other, "trust", "add", "--key", filepath.Join(dir, "keys", "runner.pub"), "--role", "Packs.Run", "runner"), "revokedAt")             // not revoked
	check("trust list", run(other, "trust", "list"))
	check("pack evidence verify", run(other, "pack", "evidence", "verify", ev), "failure", "ledgerHead") // verified, no approvals
	check("pack runs list", runList(home, "pack", "runs", "list"))
	check("pack plans list", runList(home, "pack", "plans", "list"))
	check("trust revoke", run(other, "trust", "revoke", "runner"))
	check("trust rm", run(other, "trust", "rm", "runner"))
	check("vault init", run(other, "vault", "init"))
	check("vault list", run(other, "vault", "list"))
	check("vault keys", run(other, "vault", "keys"))
	check("pack rm", run(other, "pack", "rm", "doc-keys:1.0.0"))
	check("version", run(home, "version"), "commit", "commitTime") // a test binary carries no VCS stamp
}
