package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/doctor"
	"stellaops.io/stella/mirror"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/sandbox"
	"stellaops.io/stella/vault"
)

// Exit codes of `stella doctor` when it ran its checks: 0 when every check
// is ok or skipped, exitDoctorWarn when some warn and none fails,
// exitDoctorFail when one fails. A doctor that could not run its checks
// (usage, an unknown --check) exits like any command (docs/errors.md).
const (
	exitDoctorWarn = 20
	exitDoctorFail = 21
)

// doctorLockTimeout bounds each wait of doctor for a cache lock: a lock
// held that long is what cache.lock reports.
const doctorLockTimeout = 2 * time.Second

// doctorCrash names a check that panics instead of running (a test hook:
// only the test binary sets it, from STELLA_TEST_DOCTOR_CRASH).
var doctorCrash string

// exitStatus ends a command that already wrote its result with an exit
// code, and nothing on stderr.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (s *session) doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "diagnose this home offline: cache, trust, vault, clock, isolation, runs, space",
		Description: `Runs offline checks, each with a stable dotted id, and prints for each its status
(ok, warn, fail, skipped), what it found (naming the file, run, key or host) and the
remediation: what to do and the commands to type. Only registry.reachable uses the
network, and only to the registries of the configuration. A check that crashes is
reported as failed; the others still run.

Exit status: 0 when every check is ok or skipped, 20 when some warn and none fails,
21 when one fails. docs/operations/doctor.md describes every check.

--bundle FILE writes an escalation bundle (a .tar.gz: escalation.json with the run id,
tenant, pack version, plan hash, timestamps and the doctor's results, and the run's log,
masked): what the runbook's escalation matrix asks for, never a secret.`,
		UsageText: "stella doctor [--check ID...] [--list] [--unlock] [--bundle FILE [--run RUN]]",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "check", Usage: "run only this check: an id (cache.lock) or a prefix (cache); repeatable"},
			&cli.BoolFlag{Name: "list", Usage: "list the checks (id and what it checks) and run none"},
			&cli.BoolFlag{Name: "unlock", Usage: "check that the vault unlocks (vault.unlock; asks for the passphrase unless STELLA_VAULT_IDENTITY_FILE or STELLA_VAULT_PASSPHRASE_FILE is set)"},
			&cli.StringFlag{Name: "bundle", Usage: "write an escalation bundle (.tar.gz) to FILE", TakesFile: true},
			&cli.StringFlag{Name: "run", Usage: "the run the escalation bundle is about (with --bundle)"},
		},
		Action: action(s.doctor),
	}
}

// doctorList is one row of --list.
type doctorList struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Network bool   `json:"network"`
}

func (s *session) doctor(ctx context.Context, c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(fmt.Sprintf("doctor: unexpected argument %q (checks are named with --check)", c.Args().First()))
	}
	if c.String("run") != "" && c.String("bundle") == "" {
		return usageError("doctor: --run names the run of an escalation bundle: give --bundle FILE too")
	}
	all := doctor.Checks()
	if doctorCrash != "" {
		for i := range all {
			if all[i].ID == doctorCrash {
				all[i].Run = func(context.Context, *doctor.Env) doctor.Result { panic("test hook: " + doctorCrash + " crashes") }
			}
		}
	}
	var names []string
	for _, n := range c.StringSlice("check") {
		names = append(names, strings.Split(n, ",")...)
	}
	checks, err := doctor.Select(all, names)
	if err != nil {
		return err
	}
	if c.Bool("list") {
		rows := make([]doctorList, 0, len(checks))
		for _, ch := range checks {
			rows = append(rows, doctorList{ID: ch.ID, Title: ch.Title, Network: ch.Network})
		}
		return s.emit(rows, func(w io.Writer) {
			for _, r := range rows {
				fmt.Fprintf(w, "%-20s %s\n", r.ID, r.Title)
			}
		})
	}
	if s.homeMissing {
		return &fileError{path: s.home, err: errHomeMissing}
	}
	bundle := c.String("bundle")
	if bundle != "" {
		if err := s.prepareOutput(bundle); err != nil {
			return err
		}
	}
	env, err := s.doctorEnv(c)
	if err != nil {
		return err
	}
	rep := doctor.NewReport(doctor.Run(ctx, env, checks))
	if bundle != "" {
		if err := s.writeEscalation(ctx, c, env, bundle, rep); err != nil {
			return err
		}
	}
	if err := s.emit(rep, func(w io.Writer) { renderDoctor(w, rep) }); err != nil {
		return err
	}
	if bundle != "" {
		s.notef("wrote escalation bundle %s", bundle)
	}
	switch {
	case rep.Summary.Fail > 0:
		return &exitStatus{code: exitDoctorFail}
	case rep.Summary.Warn > 0:
		return &exitStatus{code: exitDoctorWarn}
	}
	return nil
}

func renderDoctor(w io.Writer, rep doctor.Report) {
	for _, r := range rep.Checks {
		fmt.Fprintf(w, "%-7s %-20s %s\n", strings.ToUpper(string(r.Status)), r.ID, display.Line(r.Message))
		if r.Remediation != "" {
			fmt.Fprintf(w, "        fix: %s\n", display.Line(r.Remediation))
		}
		for _, cmd := range r.Commands {
			fmt.Fprintf(w, "          $ %s\n", display.Line(cmd))
		}
	}
	fmt.Fprintf(w, "%d ok, %d warn, %d fail, %d skipped\n", rep.Summary.OK, rep.Summary.Warn, rep.Summary.Fail, rep.Summary.Skipped)
}

// doctorEnv is what the checks look at, from this session.
func (s *session) doctorEnv(c *cli.Context) (*doctor.Env, error) {
	vp, err := s.vaultPath("")
	if err != nil {
		return nil, err
	}
	env := &doctor.Env{
		Home: s.home,
		Now:  s.now,
		OpenCache: func(ctx context.Context) (*cache.Store, error) {
			return cache.Open(ctx, filepath.Join(s.home, "packs"), cache.Options{LockTimeout: doctorLockTimeout, Holder: s.holder, Now: s.now})
		},
		CacheHooks:     s.cacheHooks(),
		RunsDir:        filepath.Join(s.home, "runs"),
		TrustPath:      s.trustPath(),
		VaultPath:      vp,
		VaultNamed:     s.getenv(envVaultURL) != "" || s.config.Vault != "",
		Sealed:         doctor.Sealed{Flag: c.Bool("sealed"), Env: s.getenv("STELLA_SEALED"), Config: s.config.Sealed, Effective: s.sealed},
		Probe:          sandbox.Probe,
		TracesEndpoint: s.config.Traces.Endpoint,
		Free: func(path string) (uint64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs(path, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
	}
	if s.config.RunRetention != "" {
		env.Retention, _ = runs.ParseRetention(s.config.RunRetention) // checked when the config was loaded
	}
	if c.Bool("unlock") {
		// Asked once: the escalation bundle's mask uses it too.
		var u vault.Unlocker
		env.Unlocker = func() (vault.Unlocker, error) {
			if u != nil {
				return u, nil
			}
			var err error
			u, err = s.vaultUnlocker("", "Vault passphrase: ", false)
			return u, err
		}
	}
	for _, rc := range s.config.Registries {
		env.Registries = append(env.Registries, rc.Host)
	}
	env.Reach = func(ctx context.Context, host string) error {
		opts, err := s.mirrorOptions(c, host)
		if err != nil {
			return err
		}
		opts.Progress = nil
		cred, err := opts.Credential(ctx, host)
		if err != nil {
			return err
		}
		return mirror.CheckLogin(ctx, host, cred, opts)
	}
	return env, nil
}

// writeEscalation writes the escalation bundle: the doctor's report, and
// the run named by --run with its log. Every value of the vault is masked
// in it when the vault unlocks without asking (an identity or passphrase
// file, or --unlock).
func (s *session) writeEscalation(ctx context.Context, c *cli.Context, env *doctor.Env, path string, rep doctor.Report) error {
	e := doctor.Escalation{Version: 1, Created: s.now().UTC().Truncate(time.Second), Stella: currentBuild().Version,
		Tenant: s.tenant, Sealed: s.sealed, Doctor: rep}
	mask, err := s.escalationMask(ctx, env)
	if err != nil {
		return err
	}
	var log func(fn func(run.Line) error) error
	if id := c.String("run"); id != "" {
		_, rs, err := s.openRuns(ctx)
		if err != nil {
			return err
		}
		rec, err := rs.Get(ctx, id)
		if err != nil {
			return err
		}
		e.Run = doctor.EscalateRun(rec)
		e.Tenant = rec.Tenant
		log = func(fn func(run.Line) error) error { return rs.ReadLog(id, fn) }
	}
	return doctor.WriteBundle(ctx, path, e, log, mask)
}

func (s *session) escalationMask(ctx context.Context, env *doctor.Env) (*redact.Set, error) {
	mask := redact.New()
	if s.redact != nil {
		mask = s.redact
	}
	if _, err := os.Stat(env.VaultPath); err != nil {
		return mask, nil
	}
	unlocker := env.Unlocker
	if unlocker == nil {
		if s.getenv(envVaultIdentityFile) == "" && s.getenv(envVaultPassphraseFile) == "" {
			s.warnf("the vault %s was not unlocked: the bundle's log is masked as the run stored it, not again with the vault's values (give STELLA_VAULT_IDENTITY_FILE, STELLA_VAULT_PASSPHRASE_FILE or --unlock)", env.VaultPath)
			return mask, nil
		}
		unlocker = func() (vault.Unlocker, error) { return s.vaultUnlocker("", "Vault passphrase: ", false) }
	}
	u, err := unlocker()
	if err != nil {
		return nil, err
	}
	v, err := vault.Open(ctx, env.VaultPath, u, vault.Options{})
	if err != nil {
		return nil, err
	}
	defer v.Close()
	for _, info := range v.List() {
		sec, err := v.Get(info.Name)
		if err != nil {
			return nil, err
		}
		err = mask.Add(sec.Value.Reveal())
		sec.Value.Wipe()
		if err != nil && !errors.Is(err, redact.ErrTooShort) {
			return nil, err
		}
	}
	return mask, nil
}
