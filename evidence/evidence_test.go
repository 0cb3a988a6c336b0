package evidence

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/trust"
)

var t0 = time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC)

const (
	tenant    = "acme"
	canary    = "canary-value-3f9a1c0de2b4-must-never-leave"
	logSecret = "line with a unique marker 7c1e"
)

// fixture is a finished run of a pack with one approval gate, approved
// once, with its plan, log, an output file and ledger, and a trust store
// holding the runner key (Packs.Run), the approver (Packs.Approve), a
// revoked runner key and a key with only Packs.Approve.
type fixture struct {
	runner, approver, revoked, outsider *keys.Pair
	trust                               *trust.Store
	plan                                *plan.Plan
	hash                                digest.Digest
	in                                  Input
}

var update = flag.Bool("update", false, "rewrite the vectors under testdata/evidence")

const vectorDir = "../testdata/evidence"

// fixedKey is the test key name under testdata/evidence/keys (written with
// -update when missing), so evidence built in tests is the same bytes on
// every run: the vectors pin it.
func fixedKey(t testing.TB, name string, alg keys.Algorithm) *keys.Pair {
	t.Helper()
	path := filepath.Join(vectorDir, "keys", name+".pem")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && *update {
		p, err := keys.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = keys.MarshalPrivatePEM(p); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	p, err := keys.ParsePrivatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Algorithm() != alg {
		t.Fatalf("%s is %s, want %s", path, p.Algorithm(), alg)
	}
	return p
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		runner:   fixedKey(t, "runner", keys.AlgECDSAP256),
		approver: fixedKey(t, "alice", keys.AlgEd25519),
		revoked:  fixedKey(t, "old-runner", keys.AlgEd25519),
		outsider: fixedKey(t, "outsider", keys.AlgECDSAP256),
		trust:    &trust.Store{},
	}
	add := func(name string, p *keys.Pair, role string) {
		if err := f.trust.Add(name, p.PublicPEM(), []string{role}, []string{tenant}, t0); err != nil {
			t.Fatal(err)
		}
	}
	add("runner", f.runner, trust.RoleRun)
	add("alice", f.approver, trust.RoleApprove)
	add("old-runner", f.revoked, trust.RoleRun)
	if err := f.trust.Revoke("old-runner", t0); err != nil {
		t.Fatal(err)
	}

	packDigest := digest.FromString("pack manifest")
	f.plan = &plan.Plan{
		APIVersion: plan.APIVersion,
		Pack:       plan.PackRef{Name: "gated", Version: "0.1.0", Digest: packDigest},
		Inputs:     map[string]any{"label": "release"},
		Secrets:    []plan.Secret{{Name: "token", Source: "vault:ops/token", Scope: "step", Required: true, Steps: []string{"before"}}},
		Approvals:  []plan.Approval{{Gate: "approve", Approval: "change", Role: trust.RoleApprove, MinApprovers: 1, ExpiresAfter: "10m"}},
		Steps: []plan.Step{
			{ID: "before", Kind: "run", Status: "pending", Run: &plan.Run{Command: []string{"echo", "before"}}},
			{ID: "approve", Kind: "gate", Status: "pending"},
			{ID: "after", Kind: "run", Status: "pending", Run: &plan.Run{Command: []string{"echo", "after"}}},
		},
	}
	canon, err := f.plan.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if f.hash, err = f.plan.Hash(); err != nil {
		t.Fatal(err)
	}
	env, pred := decision(t, f.approver, f.hash, "approve")
	ledger := chain(
		approve.Entry{Time: t0, Event: approve.EventRequest, Tenant: "other", PlanHash: digest.FromString("other"), Gate: "x", RequestDigest: digest.FromString("r0")},
		approve.Entry{Time: t0, Event: approve.EventRequest, Tenant: tenant, PlanHash: f.hash, Gate: "approve", RequestDigest: pred.RequestDigest},
		approve.Entry{Time: t0, Event: approve.EventDecision, Tenant: tenant, PlanHash: f.hash, Gate: "approve", RequestDigest: pred.RequestDigest,
			ResponseDigest: digest.FromString("response"), KeyID: f.approver.ID(), Decision: "approve"},
		approve.Entry{Time: t0.Add(time.Minute), Event: approve.EventRequest, Tenant: "other", PlanHash: digest.FromString("later"), Gate: "y", RequestDigest: digest.FromString("r9")},
	)
	exit0 := 0
	at := func(m int) *time.Time { x := t0.Add(time.Duration(m) * time.Minute); return &x }
	rec := &run.Record{
		ID: "run:acme:20261127T160000.000000Z", Tenant: tenant, Pack: f.plan.Pack, PlanHash: f.hash, State: run.Succeeded,
		Inputs: map[string]any{"label": "release"}, Created: t0, Updated: *at(5), Ended: at(5),
		Steps: map[string]*run.StepRecord{
			"before": {ID: "before", Kind: "run", State: run.Succeeded, Attempts: 1, Exit: &exit0, Started: at(0), Ended: at(1),
				Outputs:   map[string]any{"version": "1.2.3"},
				Isolation: &run.Isolation{Namespaces: []string{"user", "net", "mount"}, Network: "none"},
				Secrets:   []run.SecretUse{{Name: "token", Scope: "step", Source: "vault:ops/token", Delivery: "file"}}},
			"approve": {ID: "approve", Kind: "gate", State: run.Succeeded, Gate: &run.GateRecord{Approval: "change", State: run.GateApproved, Approved: 1, Required: 1}},
			"after":   {ID: "after", Kind: "run", State: run.Succeeded, Attempts: 1, Exit: &exit0, Started: at(4), Ended: at(5)},
		},
		Timeline: []run.Event{{Time: t0, Type: run.EventRunStarted}, {Time: *at(5), Type: run.EventRunSucceeded}},
	}
	line := func(step, msg string) run.Line {
		return run.Line{Time: t0, RunID: rec.ID, PackID: "gated", Tenant: tenant, StepID: step, Stream: "stdout", Msg: msg}
	}
	f.in = Input{
		Record: rec, Plan: canon,
		Pack:          ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: packDigest, Size: 123},
		Log:           []run.Line{line("before", "before"), line("before", logSecret), line("after", "after")},
		Outputs:       []OutputFile{{Name: "report", Path: "out/report.txt", Data: []byte("all good\n")}, {Name: "absent", Path: "never.txt", Missing: true}},
		Approvals:     []approve.Recorded{{Gate: "approve", Request: pred.RequestDigest, KeyID: f.approver.ID(), Decision: approve.Approve, Imported: t0, Envelope: env}},
		Ledger:        ledger,
		StellaVersion: "test",
		Sealed:        true,
		Signer:        f.runner,
	}
	return f
}

// decision signs an approval of gate for planHash, as approve.Sign does.
func decision(t testing.TB, signer *keys.Pair, planHash digest.Digest, gate string) ([]byte, approve.Predicate) {
	t.Helper()
	p := approve.Predicate{RequestDigest: digest.FromString("request " + string(planHash) + gate), PlanHash: planHash, Gate: gate,
		Tenant: tenant, Decision: approve.Approve, Comment: "ok", ApproverKeyID: signer.ID(), SignedAt: t0,
		ExpiresAt: t0.Add(time.Hour), Nonce: strings.Repeat("ab", 32)}
	sub, err := keys.NewSubject("approval-request", p.RequestDigest)
	if err != nil {
		t.Fatal(err)
	}
	st, err := keys.NewStatement(approve.PredicateApprovalDecision, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signer.SignStatement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return env, p
}

// chain numbers and hash-chains ledger entries as the approve ledger does.
func chain(entries ...approve.Entry) []approve.Entry {
	prev := ""
	for i := range entries {
		entries[i].Seq, entries[i].Prev = uint64(i+1), prev
		entries[i].Hash, _ = entries[i].ComputeHash()
		prev = entries[i].Hash
	}
	return entries
}

func build(t testing.TB, in Input) *Evidence {
	t.Helper()
	ev, err := Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func write(t testing.TB, ev *Evidence) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "evidence.stella.tar")
	if _, err := ev.Write(context.Background(), p, 0, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func part(t testing.TB, ev *Evidence, title string) *Part {
	t.Helper()
	for i := range ev.Parts {
		if ev.Parts[i].Title == title {
			return &ev.Parts[i]
		}
	}
	t.Fatalf("no part %s", title)
	return nil
}

func TestExportVerify(t *testing.T) {
	f := newFixture(t)
	ev := build(t, f.in)
	rep, err := Verify(context.Background(), write(t, ev), VerifyOptions{Trust: f.trust})
	if err != nil {
		t.Fatalf("verify: %v\n%+v", err, rep)
	}
	if !rep.Verified || rep.Failure != nil || rep.Run == nil || rep.Run.PlanHash != f.hash || rep.Run.Partial || !rep.Run.Sealed {
		t.Fatalf("report: %+v", rep)
	}
	if rep.Signer.KeyID != f.runner.ID() {
		t.Errorf("signer %s, want %s", rep.Signer.KeyID, f.runner.ID())
	}
	if len(rep.Approvals) != 1 || rep.Approvals[0].KeyID != f.approver.ID() || rep.Approvals[0].LedgerAt != 3 {
		t.Errorf("approvals: %+v", rep.Approvals)
	}
	// The ledger part runs from the first entry about the plan to the last.
	if rep.Ledger == nil || rep.Ledger.Seq != 3 {
		t.Errorf("ledger head %+v, want entry 3", rep.Ledger)
	}
	var titles []string
	for _, p := range rep.Parts {
		titles = append(titles, p.Name)
	}
	want := []string{PartPlan, PartInputs, PartRun, PartLog, "outputs/out/report.txt", "approvals/001.dsse.json", PartLedger, PartStatement}
	if strings.Join(titles, " ") != strings.Join(want, " ") {
		t.Errorf("parts %v, want %v", titles, want)
	}
	if got := digest.FromBytes(part(t, ev, "outputs/out/report.txt").Data); got != digest.FromString("all good\n") {
		t.Errorf("output digest %s", got)
	}
	var doc RunDoc
	if err := json.Unmarshal(part(t, ev, PartRun).Data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Files) != 2 || !doc.Files[1].Missing || doc.Files[0].Digest != digest.FromString("all good\n") {
		t.Errorf("files %+v", doc.Files)
	}
	if s := doc.Steps[2]; s.ID != "before" || s.Isolation == nil || s.Isolation.Network != "none" || s.Outputs["version"] != digest.FromString(`"1.2.3"`) {
		t.Errorf("step before: %+v", s)
	}
	var lock InputsLock
	if err := json.Unmarshal(part(t, ev, PartInputs).Data, &lock); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]SecretRef{{Name: "token", Scope: "step", Source: "vault:ops/token", Required: true, Steps: []string{"before"}}}, lock.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
}

func TestExportDeterministic(t *testing.T) {
	f := newFixture(t)
	a, err := os.ReadFile(write(t, build(t, f.in)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(write(t, build(t, f.in)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two exports of the same run differ")
	}
	// The ledger growing after the run changes nothing.
	f.in.Ledger = chain(append(f.in.Ledger, approve.Entry{Time: t0.Add(time.Hour), Event: approve.EventRequest, Tenant: "late"})...)
	c, err := os.ReadFile(write(t, build(t, f.in)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, c) {
		t.Fatal("an export after unrelated ledger entries differs")
	}
}

func TestExportInProgress(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state string
		live  bool
	}{
		{"awaiting approval", run.AwaitingApproval, false},
		{"running", run.Running, false},
		{"runner alive", run.Succeeded, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.in.Record.State, f.in.Live = tc.state, tc.live
			if _, err := Build(context.Background(), f.in); !errors.Is(err, ErrRunInProgress) {
				t.Fatalf("got %v, want ErrRunInProgress", err)
			}
			f.in.Partial = true
			rep, err := Verify(context.Background(), write(t, build(t, f.in)), VerifyOptions{Trust: f.trust})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Run.Partial || rep.Run.State != tc.state {
				t.Fatalf("partial %v state %s", rep.Run.Partial, rep.Run.State)
			}
		})
	}
}

func TestExportRefusesAlteredPlan(t *testing.T) {
	f := newFixture(t)
	f.in.Record.PlanHash = digest.FromString("another plan")
	if _, err := Build(context.Background(), f.in); !errors.Is(err, plan.ErrHashMismatch) {
		t.Fatalf("got %v", err)
	}
}

// flip changes one byte of a bundle file's bytes, at the first occurrence
// of marker plus off.
func flip(t testing.TB, b []byte, marker string, off int) []byte {
	t.Helper()
	b = bytes.Clone(b)
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		t.Fatalf("%q not in the bundle", marker)
	}
	if b[i+off] == '0' {
		b[i+off] = '1'
	} else {
		b[i+off] = '0'
	}
	return b
}

// reenvelope rewrites the statement envelope's JSON with change.
func reenvelope(t testing.TB, ev *Evidence, change func(env *keys.Envelope)) {
	t.Helper()
	p := part(t, ev, PartStatement)
	var env keys.Envelope
	if err := json.Unmarshal(p.Data, &env); err != nil {
		t.Fatal(err)
	}
	change(&env)
	var err error
	if p.Data, err = json.Marshal(env); err != nil {
		t.Fatal(err)
	}
}

// tamperCase is one way evidence goes wrong: the input changed before
// Build, the built evidence changed before Write (a consistent bundle
// whose part changed after signing), or the written file's bytes.
type tamperCase struct {
	name, about string
	before      func(t testing.TB, f *fixture)
	after       func(t testing.TB, f *fixture, ev *Evidence)
	file        func(t testing.TB, b []byte) []byte
	part        string
	want        error
}

var tamperCases = []tamperCase{
	{name: "log-line", about: "a log line changed, the bundle rewritten consistently", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		p := part(t, ev, PartLog)
		p.Data = bytes.Replace(p.Data, []byte(`"after"`), []byte(`"AFTER"`), 1)
	}, part: PartLog, want: ErrPartAltered},
	{name: "log-bytes", about: "one byte of the log changed in place", file: func(t testing.TB, b []byte) []byte { return flip(t, b, logSecret, 0) },
		part: PartLog, want: integrity.ErrDigestMismatch},
	{name: "output-file", about: "an output file changed, the bundle rewritten consistently", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		part(t, ev, "outputs/out/report.txt").Data = []byte("all bad\n")
	}, part: "outputs/out/report.txt", want: ErrPartAltered},
	{name: "plan", about: "an input value in the plan changed", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		p := part(t, ev, PartPlan)
		p.Data = bytes.Replace(p.Data, []byte(`"release"`), []byte(`"RELEASE"`), 1)
	}, part: PartPlan, want: ErrPartAltered},
	{name: "inputs-lock", about: "a secret's source in the inputs lock changed", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		p := part(t, ev, PartInputs)
		p.Data = bytes.Replace(p.Data, []byte(`vault:ops/token`), []byte(`env:TOKEN`), 1)
	}, part: PartInputs, want: ErrPartAltered},
	{name: "approval-envelope", about: "the approval envelope replaced by another one, validly signed", after: func(t testing.TB, f *fixture, ev *Evidence) {
		env, _ := decision(t, f.approver, digest.FromString("elsewhere"), "approve")
		part(t, ev, "approvals/001.dsse.json").Data = env
	}, part: "approvals/001.dsse.json", want: ErrPartAltered},
	{name: "ledger-entry", about: "a decision in a ledger entry changed", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		p := part(t, ev, PartLedger)
		p.Data = bytes.Replace(p.Data, []byte(`"decision":"approve"`), []byte(`"decision":"reject"`), 1)
	}, part: PartLedger, want: ErrPartAltered},
	{name: "statement", about: "the signed statement's state changed, the signature kept", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		reenvelope(t, ev, func(env *keys.Envelope) {
			payload, _ := base64.StdEncoding.DecodeString(env.Payload)
			payload = bytes.Replace(payload, []byte(`"state":"succeeded"`), []byte(`"state":"failed"`), 1)
			env.Payload = base64.StdEncoding.EncodeToString(payload)
		})
	}, part: PartStatement, want: trust.ErrSignatureInvalid},
	{name: "signature", about: "one bit of the run signature flipped", after: func(t testing.TB, _ *fixture, ev *Evidence) {
		reenvelope(t, ev, func(env *keys.Envelope) {
			sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
			sig[len(sig)-1] ^= 1
			env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		})
	}, part: PartStatement, want: trust.ErrSignatureInvalid},
	{name: "sha256sums", about: "a digest in SHA256SUMS changed", file: func(t testing.TB, b []byte) []byte { return flip(t, b, "  "+bundle.BlobsDir, -64) },
		part: PartBundle, want: bundle.ErrChecksums},
	{name: "approval-other-plan", about: "the runner carried an approval of another plan", before: func(t testing.TB, f *fixture) {
		env, _ := decision(t, f.approver, digest.FromString("another plan"), "approve")
		f.in.Approvals[0].Envelope = env
	}, part: "approvals/001.dsse.json", want: ErrApprovalMismatch},
	{name: "approval-other-gate", about: "the runner carried an approval of a gate the plan does not have", before: func(t testing.TB, f *fixture) {
		env, _ := decision(t, f.approver, f.hash, "deploy")
		f.in.Approvals[0].Envelope = env
	}, part: "approvals/001.dsse.json", want: ErrApprovalMismatch},
	{name: "approval-not-in-ledger", about: "the ledger carried lacks the approval's decision entry", before: func(t testing.TB, f *fixture) { f.in.Ledger = f.in.Ledger[:2] },
		part: "approvals/001.dsse.json", want: ErrApprovalMismatch},
	{name: "gate-without-approval", about: "a gate recorded approved, with no approval carried", before: func(t testing.TB, f *fixture) { f.in.Approvals = nil },
		part: PartRun, want: ErrApprovalMismatch},
	{name: "approval-role-missing", about: "an approval signed by a key without Packs.Approve", before: func(t testing.TB, f *fixture) {
		env, _ := decision(t, f.runner, f.hash, "approve")
		f.in.Approvals[0].Envelope = env
	}, part: "approvals/001.dsse.json", want: trust.ErrRoleMissing},
	{name: "ledger-chain", about: "a ledger entry that does not chain to the one before", before: func(t testing.TB, f *fixture) { f.in.Ledger[2].Prev = f.in.Ledger[0].Hash },
		part: PartLedger, want: ErrLedgerBroken},
	{name: "runner-untrusted", about: "signed by a key the trust store does not hold", before: func(t testing.TB, f *fixture) { f.in.Signer = f.outsider },
		part: PartStatement, want: trust.ErrUnknownKey},
	{name: "runner-revoked", about: "signed by a revoked runner key", before: func(t testing.TB, f *fixture) { f.in.Signer = f.revoked },
		part: PartStatement, want: trust.ErrKeyRevoked},
	{name: "runner-role-missing", about: "signed by a key without Packs.Run", before: func(t testing.TB, f *fixture) { f.in.Signer = f.approver },
		part: PartStatement, want: trust.ErrRoleMissing},
}

// tampered builds the bytes of a tamper case's evidence file.
func tampered(t testing.TB, tc tamperCase) ([]byte, *fixture) {
	t.Helper()
	f := newFixture(t)
	if tc.before != nil {
		tc.before(t, f)
	}
	ev := build(t, f.in)
	if tc.after != nil {
		tc.after(t, f, ev)
	}
	b, err := os.ReadFile(write(t, ev))
	if err != nil {
		t.Fatal(err)
	}
	if tc.file != nil {
		b = tc.file(t, b)
	}
	return b, f
}

// checkRefused verifies path and checks it fails with want, naming part.
func checkRefused(t testing.TB, path string, ts *trust.Store, want error, wantPart string) {
	t.Helper()
	rep, err := Verify(context.Background(), path, VerifyOptions{Trust: ts})
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	var pe *PartError
	if !errors.As(err, &pe) || pe.Part != wantPart {
		t.Fatalf("failing part %+v, want %s (%v)", pe, wantPart, err)
	}
	if rep.Verified || rep.Failure == nil || rep.Failure.Part != wantPart {
		t.Fatalf("report %+v", rep)
	}
}

func TestVerifyTampered(t *testing.T) {
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			b, f := tampered(t, tc)
			path := filepath.Join(t.TempDir(), "evidence.stella.tar")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			checkRefused(t, path, f.trust, tc.want, tc.part)
		})
	}
}

func TestVerifySplit(t *testing.T) {
	f := newFixture(t)
	ev := build(t, f.in)
	p := filepath.Join(t.TempDir(), "evidence.stella.tar")
	sum, err := ev.Write(context.Background(), p, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Parts) < 2 {
		t.Fatalf("%d volumes, want several", len(sum.Parts))
	}
	rep, err := Verify(context.Background(), p+bundle.PartsSuffix, VerifyOptions{Trust: f.trust})
	if err != nil || !rep.Verified {
		t.Fatalf("verify split: %v", err)
	}
}

func TestReadOutputs(t *testing.T) {
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "out", "report.txt"), []byte("ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(canary), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(work, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := ReadOutputs(work, []pack.Output{{Name: "report", Path: "out/report.txt"}, {Name: "gone", Path: "gone.txt"}, {Name: "value", From: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Data) != "ok\n" || !got[1].Missing {
		t.Fatalf("outputs %+v", got)
	}
	for _, p := range []string{"link", "../secret", "out"} {
		if _, err := ReadOutputs(work, []pack.Output{{Name: "x", Path: p}}); !errors.Is(err, ErrOutputInvalid) {
			t.Errorf("path %s: got %v, want ErrOutputInvalid", p, err)
		}
	}
}

// TestExportDeferredGate: a gate of a map expanded at run time is carried
// and verified like the plan's own; without the expansion recorded, its
// approval binds no gate of the run.
func TestExportDeferredGate(t *testing.T) {
	f := newFixture(t)
	const gate = "patch[0]::approve"
	env, pred := decision(t, f.approver, f.hash, gate)
	last := f.in.Ledger[len(f.in.Ledger)-1]
	f.in.Ledger = chain(append(f.in.Ledger[:len(f.in.Ledger):len(f.in.Ledger)],
		approve.Entry{Time: last.Time, Event: approve.EventDecision, Tenant: tenant, PlanHash: f.hash, Gate: gate,
			RequestDigest: pred.RequestDigest, KeyID: f.approver.ID(), Decision: "approve"})...)
	f.in.Approvals = append(f.in.Approvals, approve.Recorded{Gate: gate, Request: pred.RequestDigest, KeyID: f.approver.ID(),
		Decision: approve.Approve, Imported: t0, Envelope: env})
	f.in.Record.Steps[gate] = &run.StepRecord{ID: gate, Kind: "gate", State: run.Succeeded,
		Gate: &run.GateRecord{Approval: "change", State: run.GateApproved, Approved: 1, Required: 1}}
	f.in.Record.Expansions = map[string]plan.Expansion{"patch": {Approvals: []plan.Approval{
		{Gate: gate, Approval: "change", Role: trust.RoleApprove, MinApprovers: 1, ExpiresAfter: "10m"}}}}
	rep, err := Verify(context.Background(), write(t, build(t, f.in)), VerifyOptions{Trust: f.trust})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Approvals) != 2 || rep.Approvals[1].Gate != gate || rep.Approvals[1].LedgerAt != 5 {
		t.Fatalf("approvals %+v", rep.Approvals)
	}
	f.in.Record.Expansions = nil
	_, err = Verify(context.Background(), write(t, build(t, f.in)), VerifyOptions{Trust: f.trust})
	var pe *PartError
	if !errors.Is(err, ErrApprovalMismatch) || !errors.As(err, &pe) || pe.Part != "approvals/002.dsse.json" {
		t.Fatalf("without the expansion: %v", err)
	}
}

// TestVectors builds the vectors under testdata/evidence: the fixture's
// evidence and every tamper case's file, the trust store that checks them
// and a README table. With -update it writes them; without, it checks the
// committed files are exactly what the current code writes (pinning the
// export's determinism across runs and versions) and that each verifies or
// is refused as the table says.
func TestVectors(t *testing.T) {
	files := map[string][]byte{}
	f := newFixture(t)
	valid, err := os.ReadFile(write(t, build(t, f.in)))
	if err != nil {
		t.Fatal(err)
	}
	files["valid.stella.tar"] = valid
	ts, err := f.trust.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files["trust.json"] = ts
	var readme strings.Builder
	readme.WriteString("# Evidence vectors\n\nGenerated by `go test ./evidence -run TestVectors -update`; checked by `TestVectors`.\n" +
		"Do not edit by hand. The keys under `keys/` are test keys, unencrypted on purpose.\n\n" +
		"- `valid.stella.tar`: evidence of a finished run of pack `gated:0.1.0` (tenant `acme`) with one\n" +
		"  gate approved by `alice`, signed by `runner`; `stella pack evidence verify` accepts it with\n" +
		"  `trust.json` as the home's trust store (`runner`: Packs.Run, `alice`: Packs.Approve,\n" +
		"  `old-runner`: revoked).\n\n" +
		"| vector | refused with | part | what is wrong |\n|---|---|---|---|\n")
	for _, tc := range tamperCases {
		b, _ := tampered(t, tc)
		files["corrupt/"+tc.name+".tar"] = b
		fmt.Fprintf(&readme, "| `corrupt/%s.tar` | `%s` | `%s` | %s |\n", tc.name, sentinelName(tc.want), tc.part, tc.about)
	}
	files["README.md"] = []byte(readme.String())
	if *update {
		if err := os.RemoveAll(filepath.Join(vectorDir, "corrupt")); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			p := filepath.Join(vectorDir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range files {
		got, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s differs from what the code writes now (%v); run with -update if the change is intended", name, err)
		}
	}
	store, err := trust.Load(filepath.Join(vectorDir, "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), filepath.Join(vectorDir, "valid.stella.tar"), VerifyOptions{Trust: store}); err != nil || !rep.Verified {
		t.Fatalf("valid vector: %v", err)
	}
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			checkRefused(t, filepath.Join(vectorDir, "corrupt", tc.name+".tar"), store, tc.want, tc.part)
		})
	}
}

// sentinelName names an error by its package-qualified variable.
func sentinelName(err error) string {
	for name, e := range map[string]error{
		"ErrPartAltered": ErrPartAltered, "ErrApprovalMismatch": ErrApprovalMismatch, "ErrLedgerBroken": ErrLedgerBroken,
		"integrity.ErrDigestMismatch": integrity.ErrDigestMismatch, "bundle.ErrChecksums": bundle.ErrChecksums,
		"trust.ErrSignatureInvalid": trust.ErrSignatureInvalid, "trust.ErrRoleMissing": trust.ErrRoleMissing,
		"trust.ErrUnknownKey": trust.ErrUnknownKey, "trust.ErrKeyRevoked": trust.ErrKeyRevoked,
	} {
		if e == err {
			return name
		}
	}
	return err.Error()
}
