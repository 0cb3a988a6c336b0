package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
)

// TestWriteBundle: the bundle holds what the escalation matrix asks for
// (run id, tenant, pack version, plan hash, timestamps, doctor results)
// and the log, and a secret the mask knows appears nowhere in it, not
// even where the caller's record or log carried it.
func TestWriteBundle(t *testing.T) {
	const secret = "s3cr3t-planted-value-0042"
	ended := t0.Add(time.Minute)
	exit := 3
	rec := &run.Record{ID: "run:acme:20261127T120000.000000Z", Tenant: "acme", State: run.Failed,
		Pack:     plan.PackRef{Name: "backup", Version: "1.2.0", Digest: digest.Digest("sha256:" + strings.Repeat("a", 64))},
		PlanHash: digest.Digest("sha256:" + strings.Repeat("b", 64)), Created: t0, Updated: ended, Ended: &ended,
		Inputs:  map[string]any{"password": secret},
		Failure: &run.Failure{Code: "step-failed", StepID: "dump", Message: "exit 3 after printing " + secret, Exit: &exit},
		Steps: map[string]*run.StepRecord{"dump": {ID: "dump", Kind: "run", State: run.Failed, Exit: &exit, Started: &t0, Ended: &ended,
			Command: []string{"sh", "-c", "echo " + secret}, Secrets: []run.SecretUse{{Name: "db-password", Source: "vault:db/pw"}}}},
	}
	mask := redact.New()
	if err := mask.Add([]byte(secret)); err != nil {
		t.Fatal(err)
	}
	e := Escalation{Version: 1, Created: t0, Stella: "test", Tenant: "acme", Run: EscalateRun(rec),
		Doctor: NewReport([]Result{{ID: RunsStuck, Status: Warn, Message: "1 run(s) stuck", Commands: []string{"stella pack runs resume --run " + rec.ID}}})}
	log := func(fn func(run.Line) error) error {
		return fn(run.Line{Time: t0, RunID: rec.ID, Tenant: "acme", StepID: "dump", Stream: "stdout", Msg: "password is " + secret})
	}
	path := filepath.Join(t.TempDir(), "esc.tar.gz")
	if err := WriteBundle(context.Background(), path, e, log, mask); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle mode %04o, want 0600", fi.Mode().Perm())
	}
	files, err := ReadBundle(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[BundleEscalation] == nil || files[BundleLog] == nil {
		t.Fatalf("bundle files %v", keys(files))
	}
	for name, b := range files {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s carries the secret:\n%s", name, b)
		}
	}
	var got struct {
		Run struct {
			ID       string
			Tenant   string
			Pack     plan.PackRef
			PlanHash string
			Created  time.Time
			Ended    *time.Time
			Inputs   any
			Steps    []map[string]any
		}
		Doctor Report
	}
	if err := json.Unmarshal(files[BundleEscalation], &got); err != nil {
		t.Fatal(err)
	}
	r := got.Run
	if r.ID != rec.ID || r.Tenant != "acme" || r.Pack.Version != "1.2.0" || r.PlanHash != string(rec.PlanHash) || !r.Created.Equal(t0) || r.Ended == nil || !r.Ended.Equal(ended) {
		t.Errorf("run in bundle %+v", r)
	}
	if r.Inputs != nil || bytes.Contains(files[BundleEscalation], []byte(`"command"`)) {
		t.Errorf("bundle carries inputs or commands:\n%s", files[BundleEscalation])
	}
	if len(r.Steps) != 1 || r.Steps[0]["secrets"].([]any)[0] != "db-password" {
		t.Errorf("steps %v, want dump naming its secret db-password", r.Steps)
	}
	if len(got.Doctor.Checks) != 1 || got.Doctor.Checks[0].ID != RunsStuck || got.Doctor.Summary.Warn != 1 {
		t.Errorf("doctor in bundle %+v", got.Doctor)
	}
	if !strings.Contains(string(files[BundleLog]), `"msg":"password is ***"`) {
		t.Errorf("log %s, want the line masked", files[BundleLog])
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
