package doctor

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/gofrs/flock"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/traces"
	"stellaops.io/stella/trust"
	"stellaops.io/stella/vault"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// newEnv is an Env over a fresh home whose clock is t0.
func newEnv(t *testing.T) *Env {
	t.Helper()
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "packs"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &Env{
		Home: home,
		Now:  func() time.Time { return t0 },
		OpenCache: func(ctx context.Context) (*cache.Store, error) {
			return cache.Open(ctx, filepath.Join(home, "packs"), cache.Options{LockTimeout: 200 * time.Millisecond, Now: func() time.Time { return t0 }})
		},
		RunsDir:   filepath.Join(home, "runs"),
		TrustPath: filepath.Join(home, "trust.json"),
		VaultPath: filepath.Join(home, "vault.age"),
	}
}

// one runs the check id alone over env.
func one(t *testing.T, env *Env, id string) Result {
	t.Helper()
	cs, err := Select(Checks(), []string{id})
	if err != nil || len(cs) != 1 {
		t.Fatalf("Select(%s): %v %v", id, cs, err)
	}
	return Run(context.Background(), env, cs)[0]
}

// expect checks a result's status and that its message and remediation
// (text and commands) say what they should.
func expect(t *testing.T, r Result, st Status, msg, remedy, command string) {
	t.Helper()
	if r.Status != st {
		t.Fatalf("%s: status %s, want %s: %+v", r.ID, r.Status, st, r)
	}
	if !strings.Contains(r.Message, msg) {
		t.Errorf("%s: message %q does not say %q", r.ID, r.Message, msg)
	}
	if !strings.Contains(r.Remediation, remedy) {
		t.Errorf("%s: remediation %q does not say %q", r.ID, r.Remediation, remedy)
	}
	if command != "" && !slices.ContainsFunc(r.Commands, func(c string) bool { return strings.Contains(c, command) }) {
		t.Errorf("%s: commands %q lack %q", r.ID, r.Commands, command)
	}
	if st != OK && st != Skipped && (r.Remediation == "" || len(r.Commands) == 0) {
		t.Errorf("%s: %s without remediation or commands: %+v", r.ID, st, r)
	}
}

func TestIDsAreTheChecks(t *testing.T) {
	var ids []string
	for _, c := range Checks() {
		ids = append(ids, c.ID)
		if c.Title == "" || c.Run == nil {
			t.Errorf("check %s has no title or no func", c.ID)
		}
		if c.Network != (c.ID == RegistryReachable) {
			t.Errorf("check %s: network %v; only registry.reachable may use the network", c.ID, c.Network)
		}
	}
	if !slices.Equal(ids, IDs) {
		t.Fatalf("Checks() ids %v, want IDs %v", ids, IDs)
	}
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{nil, IDs},
		{[]string{"cache"}, []string{CacheLock, CacheIntegrity, CacheHolds}},
		{[]string{"runs.stuck", "cache.lock"}, []string{CacheLock, RunsStuck}},
		{[]string{"runs", "runs.parked"}, []string{RunsStuck, RunsParked, RunsRetention}},
		{[]string{"vault."}, []string{VaultFile, VaultUnlock}},
	} {
		cs, err := Select(Checks(), tc.names)
		if err != nil {
			t.Fatalf("Select(%q): %v", tc.names, err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Select(%q) = %v, want %v", tc.names, got, tc.want)
		}
	}
	for _, bad := range []string{"cach", "cache.lockx", "nope", "run"} {
		if _, err := Select(Checks(), []string{bad}); !errors.Is(err, ErrUnknownCheck) {
			t.Errorf("Select(%q): %v, want ErrUnknownCheck", bad, err)
		}
	}
}

// TestCrashIsAResult: a check that panics is a fail naming the panic; the
// checks after it still run.
func TestCrashIsAResult(t *testing.T) {
	checks := []Check{
		{ID: "a.crash", Run: func(context.Context, *Env) Result { panic("boom at the disk") }},
		{ID: "b.fine", Run: func(context.Context, *Env) Result { return ok("fine") }},
	}
	rs := Run(context.Background(), newEnv(t), checks)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	expect(t, rs[0], Fail, "check a.crash crashed: boom at the disk at ", "defect of stella", "stella doctor --check a.crash")
	if !strings.Contains(rs[0].Message, "doctor_test.go:") {
		t.Errorf("crash message %q does not name where it panicked", rs[0].Message)
	}
	var m map[string]int
	nilMap := Run(context.Background(), newEnv(t), []Check{{ID: "c.nil", Run: func(context.Context, *Env) Result { m["x"]++; return Result{} }}})
	if !strings.Contains(nilMap[0].Message, "assignment to entry in nil map at ") || !strings.Contains(nilMap[0].Message, "doctor_test.go:") {
		t.Errorf("runtime panic: %q, want its error and the test's line", nilMap[0].Message)
	}
	expect(t, rs[1], OK, "fine", "", "")
	if s := Summarize(rs); s != (Summary{OK: 1, Fail: 1}) {
		t.Errorf("summary %+v", s)
	}
}

// TestCacheLock: the gc lock held exclusive by another holder (a gc) is a
// warning naming the holder's pid, with the commands to look at it.
func TestCacheLock(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, CacheLock), OK, "locks free", "", "")

	env = newEnv(t)
	st, err := env.OpenCache(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(st.Root(), "gc.lock")
	fl := flock.New(lock)
	if err := fl.Lock(); err != nil {
		t.Fatal(err)
	}
	defer fl.Unlock()
	holder, _ := json.Marshal(cache.Holder{PID: os.Getpid(), Command: "stella cache gc", Since: t0})
	if err := os.WriteFile(lock+".holder", holder, 0o644); err != nil {
		t.Fatal(err)
	}
	r := one(t, env, CacheLock)
	expect(t, r, Warn, fmt.Sprintf("cache gc lock %s held by pid %d (stella cache gc)", lock, os.Getpid()), "wait for the holder", fmt.Sprintf("kill %d", os.Getpid()))
}

// TestCacheHolds: a hold file whose process is gone is a warning that
// cache gc removes it; a stale temp file too.
func TestCacheHolds(t *testing.T) {
	env := newEnv(t)
	st, err := env.OpenCache(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, CacheHolds), OK, "nothing left behind", "", "")
	holds := filepath.Join(st.Root(), "holds")
	if err := os.MkdirAll(holds, 0o755); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(holds, "999999-dead.hold")
	if err := os.WriteFile(dead, []byte(`{"pid":999999,"command":"stella pack export","digests":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, CacheHolds), Warn, "1 hold file(s) of processes that are gone ("+dead+")", "cache gc removes them", "stella cache gc")
}

// TestCacheOpenFails: a cache that cannot be opened (its index damaged)
// fails the cache checks and skips those that read runs, naming why.
func TestCacheOpenFails(t *testing.T) {
	env := newEnv(t)
	if err := os.MkdirAll(filepath.Join(env.Home, "packs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(env.Home, "packs", "index.db"), []byte("not a bbolt file, not at all, really not one"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, CacheIntegrity), Fail, "cannot be opened", "cache index", "stella cache verify")
	expect(t, one(t, env, RunsStuck), Skipped, "see cache.lock", "", "")
}

func publicPEM(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestTrust: a missing store warns; an unreadable one fails; a revoked key
// warns naming it.
func TestTrust(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, TrustStore), Warn, "does not exist", "add the public keys", "stella trust add")
	expect(t, one(t, env, TrustKeys), Skipped, "no readable trust store", "", "")

	ts, err := trust.Load(env.TrustPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Add("ops-approver", publicPEM(t), []string{"Packs.Approve"}, []string{"*"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := ts.Add("ci-publisher", publicPEM(t), []string{"publisher"}, []string{"*"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := ts.Save(env.TrustPath); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, TrustStore), OK, "2 key(s)", "", "")
	expect(t, one(t, env, TrustKeys), OK, "2 active key(s), none revoked", "", "")

	if err := ts.Revoke("ops-approver", t0); err != nil {
		t.Fatal(err)
	}
	if err := ts.Save(env.TrustPath); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, TrustKeys), Warn, "1 revoked key(s): ops-approver (sha256:", "signed again with a trusted key", "stella trust list")

	if err := os.WriteFile(env.TrustPath, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, TrustStore), Fail, "cannot be read", "restore the file", "stella trust list")
}

func newVault(t *testing.T, env *Env) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Init(context.Background(), env.VaultPath, vault.IdentityFile([]byte(id.String()))); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestVaultFile: absent and not configured is skipped, absent but
// configured fails, readable by others warns, unreadable (or, as root,
// damaged) fails.
func TestVaultFile(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, VaultFile), Skipped, "none configured", "", "")
	env.VaultNamed = true
	expect(t, one(t, env, VaultFile), Fail, "vault "+env.VaultPath+" does not exist", "restore the vault", "ls -l")

	newVault(t, env)
	expect(t, one(t, env, VaultFile), OK, "mode 0600", "", "")
	if err := os.Chmod(env.VaultPath, 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, VaultFile), Warn, "readable by others (mode 0644)", "only its owner", "chmod 600 "+env.VaultPath)

	if os.Geteuid() != 0 {
		if err := os.Chmod(env.VaultPath, 0o000); err != nil {
			t.Fatal(err)
		}
		expect(t, one(t, env, VaultFile), Fail, "cannot be read", "read and write access", "chmod 600 "+env.VaultPath)
		return
	}
	// Root reads any file: damage it instead.
	if err := os.WriteFile(env.VaultPath, []byte("garbage, not an age file"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, VaultFile), Fail, "is not a stella vault", "restore the vault from its backup", "ls -l")
}

// TestVaultUnlock: not asked is skipped; the right identity unlocks; the
// wrong one fails saying so.
func TestVaultUnlock(t *testing.T) {
	env := newEnv(t)
	id := newVault(t, env)
	expect(t, one(t, env, VaultUnlock), Skipped, "not asked", "", "")
	env.Unlocker = func() (vault.Unlocker, error) { return vault.IdentityFile([]byte(id.String())), nil }
	expect(t, one(t, env, VaultUnlock), OK, "unlocks: 0 secret(s)", "", "")
	other, _ := age.GenerateX25519Identity()
	env.Unlocker = func() (vault.Unlocker, error) { return vault.IdentityFile([]byte(other.String())), nil }
	expect(t, one(t, env, VaultUnlock), Fail, "does not unlock", "the identity or passphrase the vault was sealed with", "stella vault list")
}

func TestRegistries(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, RegistryReachable), Skipped, "no registry configured", "", "")
	env.Registries = []string{"reg.internal:5000", "down.internal"}
	var asked []string
	env.Reach = func(_ context.Context, host string) error {
		asked = append(asked, host)
		if host == "down.internal" {
			return errors.New("connection refused")
		}
		return nil
	}
	expect(t, one(t, env, RegistryReachable), Warn, "1 of 2 configured registries do not answer: down.internal: connection refused", "check the network path", "stella registry login")
	if !slices.Equal(asked, env.Registries) {
		t.Errorf("asked %v, want only the configured %v", asked, env.Registries)
	}
}

func TestSealed(t *testing.T) {
	for _, tc := range []struct {
		s    Sealed
		want Status
		msg  string
	}{
		{Sealed{}, OK, "sealed mode off"},
		{Sealed{Config: true, Effective: true}, OK, "sealed mode on"},
		{Sealed{Config: true, Env: "1", Effective: true}, OK, "sealed mode on"},
		{Sealed{Config: true, Env: "0", Effective: true}, Warn, "STELLA_SEALED=0 says off but the config's sealed: true turns sealed mode on"},
		{Sealed{Flag: true, Env: "false", Effective: true}, Warn, "STELLA_SEALED=false says off but --sealed"},
		{Sealed{Env: "1", Effective: true}, Warn, "sealed mode is set by STELLA_SEALED but"},
		{Sealed{Env: "ture"}, Warn, `STELLA_SEALED="ture" is neither true nor false`},
	} {
		env := newEnv(t)
		env.Sealed = tc.s
		r := one(t, env, SealedConsistency)
		if r.Status != tc.want || !strings.Contains(r.Message, tc.msg) || (tc.want == Warn && len(r.Commands) == 0) {
			t.Errorf("%+v: %+v, want %s %q", tc.s, r, tc.want, tc.msg)
		}
	}
}

// newRun stores a run record in env's home.
func newRun(t *testing.T, env *Env, at time.Time, state string, steps map[string]*run.StepRecord) (*runs.Store, *run.Record) {
	t.Helper()
	st, err := env.cache(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs := runs.Open(st, env.RunsDir, func() time.Time { return at })
	rec := &run.Record{Tenant: "acme", State: state, Pack: plan.PackRef{Name: "backup", Version: "1.2.0"},
		Inputs: map[string]any{}, Steps: steps, Runner: &run.Runner{PID: 999999, Host: "h", Started: at}}
	if err := rs.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rs, rec
}

// TestClock: a clock behind the newest run time fails; ahead is ok.
func TestClock(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, ClockSanity), OK, "no ledger entry or run", "", "")
	_, rec := newRun(t, env, t0.Add(3*time.Hour), run.Succeeded, map[string]*run.StepRecord{})
	r := one(t, env, ClockSanity)
	expect(t, r, Fail, "clock 2026-11-27T12:00:00Z is behind run "+rec.ID+" at 2026-11-27T15:00:00Z (by 3h0m0s)", "set the clock right", "date -u")
	env.Now = func() time.Time { return t0.Add(4 * time.Hour) }
	expect(t, one(t, env, ClockSanity), OK, "is not behind run "+rec.ID, "", "")
}

// TestIsolation: a probe that fails warns outside sealed mode and fails in
// it, naming the probe's error.
func TestIsolation(t *testing.T) {
	env := newEnv(t)
	env.Probe = func(context.Context) error { return nil }
	expect(t, one(t, env, IsolationAvailable), OK, "isolated", "", "")
	env.Probe = func(context.Context) error { return errors.New("creating a user namespace: operation not permitted") }
	expect(t, one(t, env, IsolationAvailable), Warn, "steps cannot run isolated: creating a user namespace: operation not permitted", "--insecure-skip-isolation", "sysctl")
	env.Sealed.Effective = true
	expect(t, one(t, env, IsolationAvailable), Fail, "steps cannot run isolated", "sealed mode runs steps only isolated", "sysctl")
}

// TestRunsStuck: a running run whose runner is dead (nobody holds its
// lock) is stuck; one whose runner holds the lock is not.
func TestRunsStuck(t *testing.T) {
	env := newEnv(t)
	rs, rec := newRun(t, env, t0, run.Running, map[string]*run.StepRecord{})
	expect(t, one(t, env, RunsStuck), Warn, "1 run(s) running with no live runner: "+rec.ID, "resume each", "stella pack runs resume --run "+rec.ID)
	lock, err := rs.Lock(rec.ID, "stella pack run")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	expect(t, one(t, env, RunsStuck), OK, "1 running run(s), each with a live runner", "", "")
}

// TestRunsParked: a run waiting at a gate past its deadline is parked.
func TestRunsParked(t *testing.T) {
	env := newEnv(t)
	since := t0.Add(-48 * time.Hour)
	deadline := t0.Add(-24 * time.Hour)
	_, rec := newRun(t, env, since, run.AwaitingApproval, map[string]*run.StepRecord{
		"approve-change": {ID: "approve-change", Kind: "gate", State: run.AwaitingApproval, Gate: &run.GateRecord{State: "waiting", Since: &since, Deadline: &deadline}},
	})
	expect(t, one(t, env, RunsParked), Warn, rec.ID+" at gate approve-change (window ended 2026-11-26T12:00:00Z)", "resume each", "stella pack runs resume --run "+rec.ID)
	env.Now = func() time.Time { return since.Add(time.Hour) }
	expect(t, one(t, env, RunsParked), OK, "within their gate's window", "", "")
}

// TestRunsRetention: a run that ended before the retention period and is
// still kept is a backlog.
func TestRunsRetention(t *testing.T) {
	env := newEnv(t)
	old := t0.Add(-40 * 24 * time.Hour)
	rs, rec := newRun(t, env, old, run.Running, map[string]*run.StepRecord{})
	rec.State, rec.Ended = run.Succeeded, &old
	if err := rs.Save(context.Background(), rec, run.Delta{}); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, RunsRetention), Warn, "1 run(s) ended before 2026-10-28T12:00:00Z and are still kept (1 of them not exported)", "collect them", "stella pack runs gc")
	env.Retention = 60 * 24 * time.Hour
	expect(t, one(t, env, RunsRetention), OK, "no run kept past the retention period", "", "")
}

func TestHomeSpace(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, HomeSpace), Skipped, "not checked", "", "")
	for _, tc := range []struct {
		free uint64
		want Status
		msg  string
	}{
		{10 << 30, OK, "10.0 GiB free"},
		{1 << 30, Warn, "1.0 GiB free (below 2.0 GiB)"},
		{100 << 20, Fail, "100.0 MiB free (below 256.0 MiB)"},
	} {
		env.Free = func(string) (uint64, error) { return tc.free, nil }
		r := one(t, env, HomeSpace)
		if r.Status != tc.want || !strings.Contains(r.Message, tc.msg) || (tc.want != OK && !slices.Contains(r.Commands, "stella cache gc")) {
			t.Errorf("free %d: %+v, want %s %q", tc.free, r, tc.want, tc.msg)
		}
	}
}

func TestDeadLetter(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, NotifyDeadLetter), OK, "no dead letter", "", "")
	path := DeadLetterPath(env.Home)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"event":{"type":"pack.run.failed"},"hook":"ops","attempts":5,"error":"timeout","time":"2026-11-27T12:00:00Z"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, NotifyDeadLetter), Warn, "1 notification(s) in the dead-letter file "+path, "fix the hook", "tail -n 5 "+path)
}

// TestTracesPending: with a collector configured, a run whose ended spans
// it did not take is reported with the command that sends them; once
// recorded as sent, the check is clean. With none configured, it is ok.
func TestTracesPending(t *testing.T) {
	env := newEnv(t)
	expect(t, one(t, env, TracesPending), OK, "no traces collector is configured", "", "")
	env.TracesEndpoint = "http://127.0.0.1:4318"
	rs, rec := newRun(t, env, t0, run.Running, map[string]*run.StepRecord{})
	rec.State, rec.Ended = run.Succeeded, &t0
	ev := run.Event{Time: t0, Type: run.EventRunSucceeded}
	rec.Timeline = append(rec.Timeline, ev)
	if err := rs.Save(context.Background(), rec, run.Delta{Events: []run.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, TracesPending), Warn, "1 span(s) of 1 run(s) not taken by the collector at http://127.0.0.1:4318: "+rec.ID,
		"export them again", "stella pack runs trace "+rec.ID+" --export")
	got, err := rs.Get(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	for _, s := range traces.Of(got) {
		sent[s.SpanID] = true
	}
	if err := traces.RecordSent(rs.Folder(rec.ID), sent); err != nil {
		t.Fatal(err)
	}
	expect(t, one(t, env, TracesPending), OK, "took all 1 ended span(s) of 1 run(s)", "", "")
}

// TestDoctorCreatesNothing: on a home with no cache yet, the cache and
// runs checks say there is nothing to look at, and the home is left as it
// was (doctor never creates <home>/packs).
func TestDoctorCreatesNothing(t *testing.T) {
	env := newEnv(t)
	if err := os.Remove(filepath.Join(env.Home, "packs")); err != nil {
		t.Fatal(err)
	}
	env.TracesEndpoint = "http://127.0.0.1:4318"
	for _, id := range []string{CacheLock, CacheIntegrity, RunsStuck, RunsParked, TracesPending} {
		expect(t, one(t, env, id), Skipped, "no cache to look at", "", "")
	}
	entries, err := os.ReadDir(env.Home)
	if err != nil || len(entries) != 0 {
		t.Fatalf("doctor left %v in the home (%v)", entries, err)
	}
}
