package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Canary values: each holds characters every encoding treats specially.
var canaries = map[string]string{
	"CANARY_TOKEN":    `Tr0ub4dor&3/xyz+q=w x"y\z<CANARY>7f3a`,
	"CANARY_PEM":      "-----BEGIN CANARY KEY-----\nMIIEcanaryLineOne0123456789abcdef\nMIIEcanaryLineTwo0123456789abcdef\n-----END CANARY KEY-----",
	"CANARY_ENVTOKEN": "env-delivered-CANARY-9a8b7c",
}

// needles are a value and every encoding of it the masker must hide,
// worked out here independently of package redact, so a gap in either is
// caught.
func needles(v string) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 8 {
			out = append(out, s)
		}
	}
	add(v)
	for _, l := range strings.Split(v, "\n") {
		add(l)
	}
	for _, part := range append([]string{v}, strings.Split(v, "\n")...) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString([]byte(part)))
			// The characters of part's encoding after pad bytes that only
			// part's bytes decide.
			for pad := 0; pad < 3; pad++ {
				s := enc.EncodeToString(append(bytes.Repeat([]byte{0}, pad), part...))
				first := (pad*8 + 5) / 6
				last := (pad + len(part)) * 8 / 6
				if last > first && last <= len(s) {
					add(s[first:last])
				}
			}
		}
		add(url.QueryEscape(part))
		add(url.PathEscape(part))
		j, _ := json.Marshal(part)
		add(string(j[1 : len(j)-1]))
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		_ = e.Encode(part)
		plain := bytes.TrimSpace(b.Bytes()) // "…" without HTML escapes
		add(string(plain[1 : len(plain)-1]))
	}
	return out
}

// TestSecretCanary plants secrets in a pack whose steps leak them every
// way they can (testdata/canary), runs it through the real binary, and
// scans every byte stella printed or left in its home and temp space:
// not one value or encoding may be found, and there must be something to
// scan.
func TestSecretCanary(t *testing.T) {
	t.Run("isolated", func(t *testing.T) { secretCanary(t, nil) })
	t.Run("unisolated", func(t *testing.T) { secretCanary(t, []string{"--insecure-skip-isolation"}) })
}

func secretCanary(t *testing.T, isolation []string) {
	dir := t.TempDir()
	home, tmp, packDir := filepath.Join(dir, "home"), filepath.Join(dir, "tmp"), filepath.Join(dir, "canary")
	for _, d := range []string{tmp, packDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(packDir, "canary"), "../../testdata/canary")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the canary step: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(packDir, "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: canary, version: 1.0.0, description: Steps that leak their secrets every way they can.}
spec:
  secrets:
    - {name: token, source: "env:CANARY_TOKEN", required: true}
    - {name: pem, source: "env:CANARY_PEM", required: true}
    - {name: envtoken, source: "env:CANARY_ENVTOKEN", required: true, env: CANARY_ENV}
  outputs:
    - {name: report, path: out/report.txt}
  steps:
    - id: leak
      run: {command: ["./canary"], secrets: [token, pem, envtoken], outputs: [leaked]}
    - id: leak-and-fail
      run: {command: ["./canary", "fail"], secrets: [token, pem, envtoken]}
`)
	var printed bytes.Buffer
	keyEnv := ""
	stella := func(wantExit int, args ...string) string {
		t.Helper()
		cmd := stellaProcess(t, home, args...)
		cmd.Env = append(cmd.Env, "TMPDIR="+tmp, keyEnv)
		for k, v := range canaries {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		printed.Write(stdout.Bytes())
		printed.Write(stderr.Bytes())
		if code := cmd.ProcessState.ExitCode(); code != wantExit {
			t.Fatalf("stella %s: exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, err, wantExit, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	out := stella(1, append([]string{"--output", "json", "pack", "run", "--pack", packDir}, isolation...)...)
	var res struct {
		RunID string `json:"runId"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != "failed" {
		t.Fatalf("run result %q: %v", out, err)
	}
	stella(0, "pack", "runs", "show", res.RunID)
	stella(0, "--output", "json", "pack", "runs", "show", res.RunID)
	logs := stella(0, "pack", "runs", "logs", res.RunID)
	stella(0, "--output", "json", "pack", "runs", "logs", res.RunID)

	// The steps did leak: their lines are there, masked.
	if n := strings.Count(logs, "***"); n < 40 {
		t.Fatalf("only %d masked spans in the log: the canary did not leak what it should\n%s", n, logs)
	}
	// The run's evidence, exported into the scanned temp folder, carries
	// the masked log, step outputs and output file: no value either.
	pass := filepath.Join(dir, "keys", "pass")
	writeFile(t, pass, "canary runner key passphrase\n")
	keyEnv = "STELLA_KEY_PASSPHRASE_FILE=" + pass
	stella(0, "key", "generate", "--dir", filepath.Join(dir, "keys"), "runner")
	evidenceFile := filepath.Join(tmp, "evidence.stella.tar")
	stella(0, "pack", "runs", "export", "--run", res.RunID, "-o", evidenceFile, "--key", filepath.Join(dir, "keys", "runner.key"))
	if ev, err := os.ReadFile(evidenceFile); err != nil || !bytes.Contains(ev, []byte("out/report.txt")) || !bytes.Contains(ev, []byte("***")) {
		t.Fatalf("evidence %s lacks the masked output file (%v)", evidenceFile, err)
	}

	var all []string
	for _, v := range canaries {
		all = append(all, needles(v)...)
	}
	scanned, files := int64(printed.Len()), 0
	check := func(where string, b []byte) {
		for _, n := range all {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s holds %q", where, n)
			}
		}
	}
	check("stella's output", printed.Bytes())
	for _, root := range []string{home, tmp} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			scanned += int64(len(b))
			check(p, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 8 || scanned < 64<<10 {
		t.Fatalf("scanned only %d files, %d bytes: nothing to scan", files, scanned)
	}
	t.Logf("scanned %d files and %d bytes for %d needles", files, scanned, len(all))
}
