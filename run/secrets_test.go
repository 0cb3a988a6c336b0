package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/secret"
)

const canary = "s3cr3t-CANARY-value-0042"

// secretExec is an executor that leaks every secret it receives: it
// prints each file's content and env value, puts it in an output, and
// records what it saw of the files.
type secretExec struct {
	files map[string]os.FileMode // path → mode, as the step saw them
	dir   string
	env   map[string]string
}

func (x *secretExec) Execute(_ context.Context, inv Invocation) Exit {
	x.files, x.dir, x.env = map[string]os.FileMode{}, inv.SecretDir, inv.Env
	if fi, err := os.Stat(inv.SecretDir); err == nil {
		x.files[inv.SecretDir] = fi.Mode()
	}
	keys := make([]string, 0, len(inv.Env))
	for k := range inv.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out, _ := os.OpenFile(inv.Env[OutputEnv], os.O_WRONLY|os.O_APPEND, 0)
	defer out.Close()
	for _, k := range keys {
		v := inv.Env[k]
		if strings.HasPrefix(k, "STELLA_SECRET_") {
			b, err := os.ReadFile(v)
			if err != nil {
				return Exit{Code: -1, Err: err}
			}
			fi, _ := os.Stat(v)
			x.files[v] = fi.Mode()
			v = string(b)
		}
		if k == "DB_PASSWORD" || strings.HasPrefix(k, "STELLA_SECRET_") {
			// split across writes, inside JSON, in an output
			fmt.Fprintf(inv.Stdout, "%s=%s", k, v[:5])
			fmt.Fprintf(inv.Stdout, "%s\n", v[5:])
			b, _ := json.Marshal(map[string]string{"k": v})
			fmt.Fprintf(inv.Stderr, "%s\n", b)
			fmt.Fprintf(out, "leak=%s\n", v)
		}
	}
	if inv.Command[0] == "fail" {
		return Exit{Code: 3}
	}
	return Exit{}
}

func secretFixture(t *testing.T, spec string, values map[string]string) (*fixture, *secretExec) {
	f := newFixture(t, spec, nil)
	x := &secretExec{}
	f.eng.Executor = x
	f.eng.SecretsDir = filepath.Join(t.TempDir(), "secrets")
	f.eng.Redact = redact.New()
	f.eng.Secrets = func(_ context.Context, sec plan.Secret) ([]byte, error) {
		v, ok := values[sec.Name]
		if !ok {
			return nil, fmt.Errorf("secret %s: %w", sec.Name, secret.ErrMissing)
		}
		return []byte(v), nil
	}
	return f, x
}

func TestSecretsDeliveredAsPrivateFilesAndMasked(t *testing.T) {
	f, x := secretFixture(t, `  secrets:
    - {name: api-token, source: "env:API_TOKEN", required: true}
    - {name: db, source: "env:DB", env: DB_PASSWORD}
    - {name: optional-one, source: "env:NOPE"}
  steps:
    - id: a
      run: {command: [ok], secrets: [api-token, db, optional-one], outputs: [leak]}
`, map[string]string{"api-token": canary, "db": "db-" + canary})
	r, err := f.drive(nil)
	if err != nil || r.State != Succeeded {
		t.Fatalf("state %s, err %v", r.State, err)
	}
	file := x.env[SecretFileEnv("api-token")]
	if file == "" || x.files[file] != 0o600 || x.files[x.dir]&0o777 != 0o700 {
		t.Fatalf("secret file %q modes %v (folder %s)", file, x.files, x.dir)
	}
	if x.env["DB_PASSWORD"] != "db-"+canary {
		t.Errorf("env delivery: DB_PASSWORD=%q", x.env["DB_PASSWORD"])
	}
	if _, ok := x.env[SecretFileEnv("optional-one")]; ok {
		t.Errorf("an optional secret that does not resolve was delivered")
	}
	if _, err := os.Stat(x.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("secret folder %s left after the step: %v", x.dir, err)
	}
	if ents, _ := os.ReadDir(f.eng.SecretsDir); len(ents) != 0 {
		t.Errorf("secrets folder not empty: %v", ents)
	}
	b, _ := json.Marshal(r)
	var logs strings.Builder
	for _, l := range f.lines {
		logs.WriteString(l.Msg + "\n")
	}
	for what, s := range map[string]string{"record": string(b), "log": logs.String()} {
		if strings.Contains(s, canary) {
			t.Errorf("%s shows the secret: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "STELLA_SECRET_API_TOKEN_FILE="+redact.Mask) || r.Steps["a"].Outputs["leak"] != redact.Mask {
		t.Errorf("nothing masked where the secret was: log %q outputs %v", logs.String(), r.Steps["a"].Outputs)
	}
	want := []SecretUse{{Name: "api-token", Scope: "step", Source: "env:API_TOKEN", Delivery: DeliveryFile}, {Name: "db", Scope: "step", Source: "env:DB", Delivery: DeliveryEnv}}
	if got := r.Steps["a"].Secrets; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded secrets %v, want %v", got, want)
	}
}

func TestMissingSecretStopsTheRunBeforeTheStep(t *testing.T) {
	f, x := secretFixture(t, `  secrets:
    - {name: api-token, source: "vault:api", required: true}
  steps:
    - id: deploy
      run: {command: [ok], secrets: [api-token]}
`, nil)
	r, err := f.drive(nil)
	if !errors.Is(err, ErrSecretUndelivered) || !errors.Is(err, secret.ErrMissing) {
		t.Fatalf("err %v, want ErrSecretUndelivered wrapping secret.ErrMissing", err)
	}
	if x.files != nil {
		t.Errorf("the step started")
	}
	if r.State != Failed || r.Failure == nil || r.Failure.Code != "secret" || r.Failure.StepID != "deploy" ||
		!strings.Contains(r.Failure.Message, "api-token") || !strings.Contains(r.Failure.Message, "deploy") {
		t.Errorf("record: state %s failure %+v", r.State, r.Failure)
	}
	if r.Steps["deploy"].Attempts != 0 {
		t.Errorf("attempts %d: a missing secret is not retried", r.Steps["deploy"].Attempts)
	}
}

func TestShortSecretRefused(t *testing.T) {
	f, _ := secretFixture(t, `  secrets:
    - {name: pin, source: "env:PIN", required: true}
  steps:
    - id: a
      run: {command: [ok], secrets: [pin]}
`, map[string]string{"pin": "1234"})
	r, err := f.drive(nil)
	if !errors.Is(err, redact.ErrTooShort) || !errors.Is(err, ErrSecretUndelivered) {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "1234") || strings.Contains(r.Failure.Message, "1234") {
		t.Errorf("the short value shows in the error: %v", err)
	}
}

func TestLeftoverSecretsDestroyedAtStart(t *testing.T) {
	f, _ := secretFixture(t, `  steps:
    - id: a
      run: {command: [ok]}
`, nil)
	left := filepath.Join(f.eng.SecretsDir, "old.1")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "tok"), []byte(canary), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(left, 0o500); err != nil {
		t.Fatal(err)
	}
	if _, err := f.drive(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s survived the next start: %v", left, err)
	}
}

func TestFailingStepErrorAndOutputFileMasked(t *testing.T) {
	f, _ := secretFixture(t, `  secrets:
    - {name: tok, source: "env:TOK", scope: run}
  steps:
    - id: a
      run: {command: [fail], outputs: [leak]}
  outputs:
    - {name: report, path: report.txt}
`, map[string]string{"tok": canary})
	report := filepath.Join(f.eng.Work, "report.txt")
	if err := os.WriteFile(report, []byte("before\n"+canary+"\nafter\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	r, err := f.drive(nil)
	if !errors.Is(err, ErrStepFailed) {
		t.Fatalf("err %v", err)
	}
	b, _ := os.ReadFile(report)
	if string(b) != "before\n"+redact.Mask+"\nafter\n" {
		t.Errorf("output file: %q", b)
	}
	for _, l := range r.Failure.LogTail {
		if strings.Contains(l, canary) {
			t.Errorf("log tail shows the secret: %q", l)
		}
	}
	if len(r.Failure.LogTail) == 0 {
		t.Errorf("no log tail to check")
	}
}
