package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/metrics"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/sandbox"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/traces"
)

func (s *session) runCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "run",
			Usage: "run a pack: plan, approval gates, steps; logs stream on stderr",
			Description: `Loads the pack from the cache (a folder is built into the cache first, so every run is
of a digest), verifies it, plans it with the same code as ` + "`stella pack plan`" + ` and runs the
plan over a private work folder. Each step runs isolated: its own network namespace (loopback
only, or exactly the pack's allowlist), no capabilities, a read-only host file system, the
pack's limits, its secrets as 0600 files, and every secret value masked in all stella writes
(docs/isolation.md). Where the host cannot isolate steps, the run is refused (exit 5). The run
stops at an approval gate that is not satisfied (state awaiting-approval) and says how to
approve it and resume.

Examples:
   stella pack run --pack rotate-registry-credentials:1.3.0 --inputs inputs.json
   stella pack run --pack rotate-registry-credentials:1.3.0 --inputs inputs.json --plan-hash 3f9a1c0de2b4
   stella pack run --pack ./backup-database --inputs inputs.json --secrets run.secrets
   stella --output json pack run --pack ./backup-database --inputs inputs.json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "pack", Usage: "ID:VERSION of a pack in the cache, or a pack folder (required)"},
				&cli.StringFlag{Name: "inputs", Usage: "JSON file of input values (- for stdin)"},
				&cli.StringFlag{Name: "plan-hash", Usage: "refuse to run unless the plan hashes to this (full hash, a prefix of 12+ hex digits, or a saved plan's)"},
				insecureIsolationFlag(),
				secretsFlag(),
				&cli.StringSliceFlag{Name: "chaos", Usage: "inject a fault to rehearse a failure (repeatable): pause-after=STEP, fail=STEP, drop-network=STEP, kill-after=STEP, delay-approvals=DURATION; recorded in the run and its evidence (docs/operations/chaos.md)"},
				&cli.StringFlag{Name: "chaos-file", Usage: "file of chaos faults, one KIND=ARG a line (# comments), added to --chaos"},
			},
			Action: action(s.packRun),
		},
		{
			Name:  "runs",
			Usage: "list, show, follow, cancel and resume runs",
			Subcommands: []*cli.Command{
				{
					Name:  "list",
					Usage: "list runs, newest first",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "state", Usage: "only runs in this state (running, awaiting-approval, succeeded, failed, cancelled, expired)"},
						&cli.StringFlag{Name: "pack", Usage: "only runs of this pack (NAME or NAME:VERSION)"},
						&cli.BoolFlag{Name: "all-tenants", Usage: "runs of every tenant, not only --tenant's"},
					},
					Action: action(s.runsList),
				},
				{
					Name:      "show",
					Usage:     "show a run: steps, attempts, exit codes, outputs, gates, timeline",
					ArgsUsage: "RUN-ID",
					Action:    action(s.runsShow),
				},
				{
					Name:      "trace",
					Usage:     "show a run's trace: the taskrunner.run span and a span per step attempt and gate wait, and whether a collector took each; --export sends those it did not",
					ArgsUsage: "RUN-ID",
					Flags: []cli.Flag{
						&cli.BoolFlag{Name: "export", Usage: "send the spans no collector took yet to traces.endpoint of <home>/config.yaml (exit 10 when some were not taken)"},
					},
					Action: action(s.runsTrace),
				},
				{
					Name:      "logs",
					Usage:     "print a run's log (with --output json: a JSON array of lines; NDJSON lines with --follow)",
					ArgsUsage: "RUN-ID",
					Flags: []cli.Flag{
						&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the run stops"},
						&cli.StringFlag{Name: "step", Usage: "only this step's lines"},
					},
					Action: action(s.runsLogs),
				},
				{
					Name:   "cancel",
					Usage:  "cancel a run: its live runner stops its steps; a run without one is recorded cancelled",
					Flags:  []cli.Flag{&cli.StringFlag{Name: "run", Usage: "run id (required)"}},
					Action: action(s.runsCancel),
				},
				{
					Name:  "resume",
					Usage: "continue a run after an approval, a lost runner or a failure",
					Description: `The plan is computed again and must hash to the run's plan hash. Succeeded steps never
run again; a step that was running when its runner died is errored and runs again only if
its retry policy allows; approval gates are checked again.

Examples:
   stella pack runs resume --run run:default:20261127T163555.123456Z`,
					Flags:  []cli.Flag{&cli.StringFlag{Name: "run", Usage: "run id (required)"}, insecureIsolationFlag(), secretsFlag()},
					Action: action(s.runsResume),
				},
				s.runsExportCommand(),
				{
					Name:  "gc",
					Usage: "remove finished runs older than the retention period whose evidence was exported",
					Description: `Removes the runs of every tenant that ended longer ago than the retention period (--older-than,
else the config's runRetention, else 30 days): their index records, then their folders (journal,
lock, log, work, outputs, secrets). A run whose evidence was not exported whole (runs export,
not --partial) since it last ended is kept unless --force. A run that has not ended, or whose
runner holds its lock, is never removed. Prints what was removed and what was kept and why.
Saved plans and packs are shared by runs and approvals and stay (stella cache gc, stella cache rm).

Examples:
   stella pack runs gc --dry-run
   stella pack runs gc --older-than 30d
   stella pack runs gc --older-than 720h --force`,
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "older-than", Usage: "retention period: a Go duration or whole days (720h, 30d; default: the config's runRetention, else 30d)"},
						&cli.BoolFlag{Name: "force", Usage: "remove old runs whose evidence was not exported too"},
						&cli.BoolFlag{Name: "dry-run", Usage: "only say what would be removed"},
					},
					Action: action(s.runsGC),
				},
			},
		},
	}
}

// insecureIsolationFlag runs steps without isolation; never in sealed mode.
// (A new flag per command: urfave/cli writes into its flags as it parses.)
func insecureIsolationFlag() cli.Flag {
	return &cli.BoolFlag{Name: relaxIsolation, Usage: "run this run's steps WITHOUT isolation (no network namespace, no limits but timeouts), also where the host could isolate them; refused in sealed mode; printed and recorded in the run"}
}

const relaxIsolation = "insecure-skip-isolation"

// isolation decides how steps run: isolated when the sandbox probe passes;
// unisolated only when the operator says so outside sealed mode (recorded
// as a relaxation); otherwise refused, naming the check that failed.
func (s *session) isolation(ctx context.Context, c *cli.Context) ([]string, error) {
	if c.Bool(relaxIsolation) {
		if s.sealed {
			return nil, fmt.Errorf("--%s: %w", relaxIsolation, run.ErrIsolationRequired)
		}
		s.unisolated = true
		s.warnf("--%s: steps run WITHOUT network isolation or limits; this is recorded in the run", relaxIsolation)
		return []string{relaxIsolation}, nil
	}
	if err := sandbox.Probe(ctx); err != nil {
		if s.sealed {
			return nil, fmt.Errorf("sealed mode runs steps only isolated: %w", err)
		}
		return nil, fmt.Errorf("%w (outside sealed mode, --%s runs the steps unisolated)", err, relaxIsolation)
	}
	return nil, nil
}

// unisolated runs steps as plain processes, and reaps like the sandbox
// (processes by token and the attempt's cgroups), so a run started
// isolated and resumed unisolated leaves nothing behind.
type unisolated struct{ *process.Executor }

func (u unisolated) Reap(token string) error { return (&sandbox.Executor{}).Reap(token) }

// executor is what runs the steps of a run in folder: the sandbox, or the
// plain process executor when the operator chose to skip isolation.
func (s *session) executor(folder string) run.Executor {
	if s.unisolated {
		return unisolated{&process.Executor{Env: stepEnv(folder)}}
	}
	return &sandbox.Executor{Env: stepEnv(folder), Hide: s.hidden(), Work: filepath.Join(folder, "work"),
		Sealed: s.sealed, HostAllowlist: s.config.StepAllowlist}
}

// hidden are the folders a sandboxed step must not see: the home (cache,
// keys, trust, other runs), and the folders of the vault and of the files
// that unlock it or the signing keys, wherever they are configured — a
// step that could read both the vault and its identity could read every
// secret. A file directly in a system folder (/, /etc, /usr...) cannot
// have its folder hidden; docs/isolation.md asks for folders of their own.
func (s *session) hidden() []string {
	hide := []string{s.home}
	files := []string{s.getenv(envVaultIdentityFile), s.getenv(envVaultPassphraseFile), s.getenv(envKeyPassphraseFile)}
	if v, err := s.vaultPath(""); err == nil {
		files = append(files, v)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		dir := filepath.Dir(abs)
		switch dir {
		case "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var", "/opt", "/tmp", "/home", "/dev", "/proc", "/sys", "/run", "/mnt", "/media", "/srv":
			continue
		}
		if !slices.Contains(hide, dir) {
			hide = append(hide, dir)
		}
	}
	return hide
}

// runResult is the JSON shape of `pack run` and `runs resume`.
type runResult struct {
	RunID    string         `json:"runId"`
	State    string         `json:"state"`
	PlanHash digest.Digest  `json:"planHash"`
	Pack     plan.PackRef   `json:"pack"`
	Outputs  map[string]any `json:"outputs,omitempty"`
	Failure  *run.Failure   `json:"failure,omitempty"`
	Gate     string         `json:"gate,omitempty"`
	Next     []string       `json:"next"`
}

// hostPolicy is the admission policy of packs loaded to run: signatures
// required in sealed mode or by the configuration, else checked.
func (s *session) hostPolicy() (admission.Policy, error) {
	ts, err := s.trustStore()
	if err != nil {
		return admission.Policy{}, err
	}
	return admission.New(admission.Settings{Sealed: s.sealed, ConfigRequire: s.config.RequireSignature}, ts, s.tenant)
}

func (s *session) openRuns(ctx context.Context) (*cache.Store, *runs.Store, error) {
	st, err := s.openCache(ctx)
	if err != nil {
		return nil, nil, err
	}
	return st, runs.Open(st, filepath.Join(s.home, "runs"), s.now), nil
}

// runner is what driving a run needs: the isolation decision (and the
// relaxations it records), the admission policy of packs loaded to run,
// the cache and its runs.
func (s *session) runner(ctx context.Context, c *cli.Context) ([]string, admission.Policy, *cache.Store, *runs.Store, error) {
	if f := c.String("secrets"); f != "" && s.sealed {
		return nil, admission.Policy{}, nil, nil, fmt.Errorf("--secrets %s: sealed mode takes secrets only from the sealed vault: %w", f, secret.ErrSealedSource)
	}
	relax, err := s.isolation(ctx, c)
	if err != nil {
		return nil, admission.Policy{}, nil, nil, err
	}
	pol, err := s.hostPolicy()
	if err != nil {
		return nil, pol, nil, nil, err
	}
	st, rs, err := s.openRuns(ctx)
	if err != nil {
		return relax, pol, st, rs, err
	}
	// Secret files a killed runner left behind go at the next start.
	if err := rs.DestroyStaleSecrets(); err != nil {
		return relax, pol, st, rs, fmt.Errorf("destroy secrets left by stopped runners: %w", err)
	}
	return relax, pol, st, rs, nil
}

func (s *session) packRun(ctx context.Context, c *cli.Context) error {
	ref := c.String("pack")
	if ref == "" {
		return usageError("pack run: --pack is required")
	}
	relax, pol, st, rs, err := s.runner(ctx, c)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(ref); err == nil && fi.IsDir() {
		p, a, err := s.loadPack(ref)
		if err != nil {
			return err
		}
		if err := admission.Visible(p, s.tenant); err != nil { // before it enters the cache
			return err
		}
		if _, err := st.Import(ctx, a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}},
			cache.ImportRecord{From: "build of folder " + filepath.Base(filepath.Clean(ref)) + " for a run", Verified: []string{"pack validated", "sha256 and size of every file"}},
			cache.ImportOptions{}); err != nil {
			return err
		}
		ref = a.Ref
	}
	lp, err := pol.LoadPack(ctx, st, ref)
	if err != nil {
		return err
	}
	var raw []byte
	inputsFile := "inputs"
	if f := c.String("inputs"); f != "" {
		inputsFile = f
		if raw, err = s.readFileArg(f, pack.MaxInputsSize); err != nil {
			return err
		}
	}
	inputs, err := lp.Pack.ResolveInputs(inputsFile, raw)
	if err != nil {
		return err
	}
	pl, hash, err := planOf(lp, inputs)
	if err != nil {
		return err
	}
	if pin := c.String("plan-hash"); pin != "" {
		if err := s.checkPin(ctx, st, pin, hash); err != nil {
			return err
		}
	}
	secrets, err := s.runSecrets(ctx, c.String("secrets"), pl.Secrets)
	if err != nil {
		return err
	}
	defer secrets.done()
	// The run's plan is saved, so its gates can be approved by run id.
	if _, err := plans.SavePlan(ctx, st, pl, plans.Meta{PackRef: lp.Ref, Tenant: s.tenant, SavedAt: s.now(), PackSize: lp.Verdict.Artifact.Descriptor.Size}); err != nil {
		return err
	}
	faults, err := s.chaosFaults(c, pl)
	if err != nil {
		return err
	}
	rec := &run.Record{Tenant: s.tenant, Pack: pl.Pack, PlanHash: hash, State: run.Running, Inputs: pl.Inputs, Relaxations: relax, Chaos: faults}
	if err := rs.Create(ctx, rec); err != nil {
		return err
	}
	defer rs.Close()
	lock, err := rs.Lock(rec.ID, s.holder)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := writePackFiles(ctx, st, lp.Verdict.Artifact.Descriptor, filepath.Join(rs.Folder(rec.ID), "work")); err != nil {
		return err
	}
	s.notef("run %s: %s:%s, plan %s", rec.ID, display.Line(pl.Pack.Name), display.Line(pl.Pack.Version), hash)
	runErr := s.drive(ctx, st, rs, rec, pl, lp.Pack, secrets)
	err = s.renderRun(rec, runErr)
	// Told once the operator has the result: a slow hook delays only the
	// exit (within notify.deliverWithin).
	s.notifyEvents(ctx, append(s.runEvents(rec), s.ledgerEvents(ctx, st)...))
	return err
}

// planOf plans a loaded pack with the code `stella pack plan` uses.
func planOf(lp *admission.Loaded, inputs map[string]any) (*plan.Plan, digest.Digest, error) {
	pl, err := plan.Build(lp.Pack, lp.Artifact.Digest(), inputs)
	if err != nil {
		return nil, "", err
	}
	h, err := pl.Hash()
	return pl, h, err
}

// checkPin compares the plan hash with a pinned one: a full hash, a saved
// plan's (by a unique prefix), or a prefix of the hash itself.
func (s *session) checkPin(ctx context.Context, st *cache.Store, pin string, hash digest.Digest) error {
	want := pin
	if !strings.HasPrefix(pin, "sha256:") || len(pin) != len("sha256:")+64 {
		sp, err := plans.Find(ctx, st, pin)
		switch {
		case err == nil:
			want = sp.Hash.String()
		case errors.Is(err, plans.ErrNotFound) && len(strings.TrimPrefix(pin, "sha256:")) >= plans.MinHashPrefix:
			if strings.HasPrefix(hash.Encoded(), strings.TrimPrefix(pin, "sha256:")) {
				return nil
			}
		case !errors.Is(err, plans.ErrNotFound):
			return err
		default:
			return usageError(fmt.Sprintf("--plan-hash %s: give the full hash or at least %d hex digits", pin, plans.MinHashPrefix))
		}
	}
	if want != hash.String() {
		return fmt.Errorf("the plan of this run hashes to %s, not the pinned %s (the pack or its inputs changed since it was planned): %w", hash, want, plan.ErrHashMismatch)
	}
	return nil
}

// writePackFiles copies the pack's files from the cache into dir, with
// their modes: the run's private work folder.
func writePackFiles(ctx context.Context, st *cache.Store, desc ocispec.Descriptor, dir string) error {
	if desc.Size > integrity.MaxManifestSize {
		return fmt.Errorf("manifest %s: %w", desc.Digest, integrity.ErrTooLarge)
	}
	mb, err := content.FetchAll(ctx, st, desc)
	if err != nil {
		return err
	}
	fsys, err := artifact.PackFS(ctx, st, mb)
	if err != nil {
		return err
	}
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		src, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm()&0o755|0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, src); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

// drive runs the engine over rec, streaming the log to stderr and to the
// run's NDJSON file, and stopping when a cancel is asked for.
func (s *session) drive(ctx context.Context, st *cache.Store, rs *runs.Store, rec *run.Record, pl *plan.Plan, p *pack.Pack, secrets *stepSecrets) error {
	folder := rs.Folder(rec.ID)
	_ = os.Remove(rs.CancelPath(rec.ID))
	if s.redact == nil {
		s.redact = redact.New()
	}
	// Gates count approvals against the trust store as it is now.
	ts, err := s.trustStore()
	if err != nil {
		return err
	}
	log, err := rs.OpenLog(rec.ID)
	if err != nil {
		return err
	}
	defer log.Close()
	host, _ := os.Hostname()
	rec.Runner = &run.Runner{PID: os.Getpid(), Host: host, Started: s.now().UTC()}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if rs.CancelRequested(rec.ID) {
					cancel()
					return
				}
			}
		}
	}()
	var store run.Store = rs
	if t := s.tracer(ctx, rs, rec); t != nil {
		store = t
		defer t.close(ctx, s, rec.ID)
	}
	eng := &run.Engine{
		Executor:   s.executor(folder),
		Store:      store,
		Gates:      runs.Gates{Cache: st, Trust: ts, Now: s.now},
		Expand:     func(step *plan.Step, items []any) (*plan.Expansion, error) { return pl.Expand(p.Manifest, step, items) },
		Work:       filepath.Join(folder, "work"),
		Outputs:    filepath.Join(folder, "outputs"),
		Secrets:    secrets.resolve,
		SecretsDir: rs.SecretsPath(rec.ID),
		Redact:     s.redact,
		Now:        s.now,
		Kill:       killRunner,
		Log: func(l run.Line) {
			log.Write(l)
			if !s.quiet {
				// Step output is rendered as runs logs renders it: tabs
				// kept, every other control escaped (notef renders).
				prefix := "[" + orDash(l.StepID) + "] "
				s.notef("%s%s", prefix, strings.ReplaceAll(l.Msg, "\n", "\n"+prefix))
			}
		},
	}
	runErr := eng.Drive(ctx, pl, rec)
	cancel()
	wg.Wait()
	if err := log.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("run %s: log: %w", rec.ID, err))
	}
	rec.Runner = nil
	if err := rs.Save(context.WithoutCancel(ctx), rec, run.Delta{}); err != nil {
		return errors.Join(runErr, err)
	}
	s.writeMetricsTextfile(rs)
	return runErr
}

// writeMetricsTextfile writes the pack_* metrics to the configured
// textfile for node_exporter, after a run stopped. The run's outcome is
// what the command reports: a textfile that cannot be written is a
// warning, never a change of exit code.
func (s *session) writeMetricsTextfile(rs *runs.Store) {
	path := s.config.MetricsTextfile
	if path == "" {
		return
	}
	if err := metrics.WriteTextfile(metrics.NewRegistry(rs, s.now), path); err != nil {
		s.warnf("%v", err)
	}
}

// stepEnv is the base environment of every step: nothing of the runner's
// own environment leaks in.
func stepEnv(folder string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(folder, "work"),
		"TMPDIR=" + filepath.Join(folder, "outputs"),
		"LANG=C.UTF-8",
	}
}

// renderRun prints a run's end state and the next command, then returns
// the run's failure for the exit code.
func (s *session) renderRun(rec *run.Record, runErr error) error {
	res := runResult{RunID: rec.ID, State: rec.State, PlanHash: rec.PlanHash, Pack: rec.Pack, Outputs: rec.Outputs, Failure: rec.Failure}
	res.Gate, res.Next = runs.Next(rec)
	if err := s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "run %s: %s\n", res.RunID, res.State)
		fmt.Fprintf(w, "pack:      %s:%s (%s)\nplan hash: %s\n", display.Line(res.Pack.Name), display.Line(res.Pack.Version), res.Pack.Digest, res.PlanHash)
		if f := res.Failure; f != nil {
			fmt.Fprintf(w, "failure:   %s\n", display.Line(f.Message))
			if f.Exit != nil {
				fmt.Fprintf(w, "exit:      %d\n", *f.Exit)
			}
			for _, l := range f.LogTail {
				fmt.Fprintf(w, "  | %s\n", display.Text(l))
			}
		}
		if res.Gate != "" {
			fmt.Fprintf(w, "waiting:   approval gate %s\n", display.Line(res.Gate))
		}
		for _, n := range res.Next {
			fmt.Fprintf(w, "next: %s\n", display.Line(n))
		}
	}); err != nil {
		return err
	}
	return runErr
}

func sortedStepIDs(rec *run.Record) []string { return runs.StepOrder(rec) }

func (s *session) runsResume(ctx context.Context, c *cli.Context) error {
	id := c.String("run")
	if id == "" {
		return usageError("pack runs resume: --run RUN-ID is required")
	}
	relax, pol, st, rs, err := s.runner(ctx, c)
	if err != nil {
		return err
	}
	lock, err := rs.Lock(id, s.holder)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	rec, err := rs.Get(ctx, id)
	if err != nil {
		return err
	}
	if rec.State == run.Succeeded {
		return fmt.Errorf("run %s already succeeded: %w", id, runs.ErrState)
	}
	// A run resumes for its own tenant: its pack must be visible to it,
	// and signed for it, as when it started.
	pol.Tenant = rec.Tenant
	ref := rec.Pack.Name + ":" + rec.Pack.Version
	lp, err := pol.LoadPack(ctx, st, ref)
	if err != nil {
		return err
	}
	if d := lp.Artifact.Digest(); d != rec.Pack.Digest {
		return fmt.Errorf("run %s is of %s %s, but the cache now holds %s under that name: %w", id, ref, rec.Pack.Digest, d, plan.ErrHashMismatch)
	}
	pl, hash, err := planOf(lp, rec.Inputs)
	if err != nil {
		return err
	}
	if hash != rec.PlanHash {
		return fmt.Errorf("run %s was planned as %s, its pack and inputs now plan to %s: %w", id, rec.PlanHash, hash, plan.ErrHashMismatch)
	}
	secrets, err := s.runSecrets(ctx, c.String("secrets"), pl.Secrets)
	if err != nil {
		return err
	}
	defer secrets.done()
	work := filepath.Join(rs.Folder(id), "work")
	if _, err := os.Stat(work); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Join(rs.Folder(id), "outputs"), 0o700); err != nil {
			return err
		}
		if err := writePackFiles(ctx, st, lp.Verdict.Artifact.Descriptor, work); err != nil {
			return err
		}
	}
	for _, r := range relax {
		if !slices.Contains(rec.Relaxations, r) {
			rec.Relaxations = append(rec.Relaxations, r)
		}
	}
	if err := rs.Compact(ctx, rec); err != nil {
		return err
	}
	defer rs.Close()
	s.notef("resuming run %s", id)
	runErr := s.drive(ctx, st, rs, rec, pl, lp.Pack, secrets)
	err = s.renderRun(rec, runErr)
	// Told once the operator has the result: a slow hook delays only the
	// exit (within notify.deliverWithin).
	s.notifyEvents(ctx, append(s.runEvents(rec), s.ledgerEvents(ctx, st)...))
	return err
}

// runSummary is one line of `runs list`.
type runSummary struct {
	RunID    string        `json:"runId"`
	State    string        `json:"state"`
	Pack     string        `json:"pack"`
	Tenant   string        `json:"tenant"`
	PlanHash digest.Digest `json:"planHash"`
	Created  time.Time     `json:"created"`
	Updated  time.Time     `json:"updated"`
	Runner   string        `json:"runner"` // live, gone, or none
}

func (s *session) runsList(ctx context.Context, c *cli.Context) error {
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	f := runs.Filter{State: c.String("state"), Pack: c.String("pack"), Tenant: s.tenant}
	if c.Bool("all-tenants") {
		f.Tenant = ""
	}
	list, err := rs.List(ctx, f)
	if err != nil {
		return err
	}
	out := make([]runSummary, 0, len(list))
	for _, r := range list {
		out = append(out, runSummary{RunID: r.ID, State: r.State, Pack: r.Pack.Name + ":" + r.Pack.Version, Tenant: r.Tenant,
			PlanHash: r.PlanHash, Created: r.Created, Updated: r.Updated, Runner: runnerState(rs, r)})
	}
	return s.emit(out, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTATE\tPACK\tUPDATED\tRUNNER")
		for _, r := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", display.Line(r.RunID), r.State, display.Line(r.Pack), r.Updated.UTC().Format(time.RFC3339), r.Runner)
		}
		tw.Flush()
	})
}

// runnerState says whether a run's runner is alive: "live" (it holds the
// lock), "gone" (the record says running but nobody drives it), or "none".
func runnerState(rs *runs.Store, r *run.Record) string {
	switch {
	case rs.Live(r.ID):
		return "live"
	case r.State == run.Running:
		return "gone"
	}
	return "none"
}

func (s *session) runsShow(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one RUN-ID"); err != nil {
		return err
	}
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	rec, err := rs.Get(ctx, c.Args().First())
	if err != nil {
		return err
	}
	out := struct {
		*run.Record
		RunnerState string `json:"runnerState"`
		TraceID     string `json:"traceId"`
	}{rec, runnerState(rs, rec), traces.TraceID(rec.ID)}
	return s.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "run:       %s\nstate:     %s (runner %s)\ntenant:    %s\n", display.Line(rec.ID), rec.State, out.RunnerState, display.Line(rec.Tenant))
		fmt.Fprintf(w, "pack:      %s:%s (%s)\nplan hash: %s\n", display.Line(rec.Pack.Name), display.Line(rec.Pack.Version), rec.Pack.Digest, rec.PlanHash)
		fmt.Fprintf(w, "created:   %s\ntrace:     %s\n", rec.Created.UTC().Format(time.RFC3339), out.TraceID)
		if rec.Failure != nil {
			fmt.Fprintf(w, "failure:   %s\n", display.Line(rec.Failure.Message))
		}
		if len(rec.Relaxations) > 0 {
			fmt.Fprintf(w, "relaxed:   %s\n", display.Line(strings.Join(rec.Relaxations, ", ")))
		}
		for _, f := range rec.Chaos {
			fmt.Fprintf(w, "chaos:     %s (fired %d)\n", display.Line(f.String()), f.Fired)
		}
		fmt.Fprintln(w, "steps:")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tKIND\tSTATE\tATTEMPTS\tEXIT\tDURATION\tDETAIL")
		for _, id := range sortedStepIDs(rec) {
			sr := rec.Steps[id]
			exit, dur, detail := "-", "-", ""
			if sr.Exit != nil {
				exit = fmt.Sprint(*sr.Exit)
			}
			if sr.Started != nil && sr.Ended != nil {
				dur = sr.Ended.Sub(*sr.Started).Round(time.Millisecond).String()
			}
			switch {
			case sr.Gate != nil:
				detail = "gate " + sr.Gate.State
				if sr.Gate.Required > 0 {
					detail += fmt.Sprintf(" %d/%d", sr.Gate.Approved, sr.Gate.Required)
				}
				if sr.Gate.State == run.GateWaiting && sr.Gate.Message != "" {
					detail += " (" + sr.Gate.Message + ")"
				}
			case len(sr.Outputs) > 0:
				b, _ := json.Marshal(sr.Outputs)
				detail = "outputs " + string(b)
			case sr.Error != "":
				detail = sr.Error
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", display.Line(id), display.Line(string(sr.Kind)), sr.State, sr.Attempts, exit, dur, display.Line(detail))
		}
		tw.Flush()
		printIsolation(w, rec)
		if len(rec.Outputs) > 0 {
			b, _ := json.Marshal(rec.Outputs)
			fmt.Fprintf(w, "outputs:   %s\n", display.Line(string(b)))
		}
		fmt.Fprintln(w, "timeline:")
		for _, e := range rec.Timeline {
			fmt.Fprintf(w, "  %s  %-28s %s %s\n", e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Type, orDash(e.StepID), display.Line(e.Message))
		}
	})
}

func (s *session) runsLogs(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one RUN-ID"); err != nil {
		return err
	}
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	id := c.Args().First()
	if _, err := rs.Get(ctx, id); err != nil {
		return err
	}
	f, err := os.Open(rs.LogPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("run %s has no log yet: %w", id, runs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	step := c.String("step")
	var collected []run.Line
	s.emitted = true
	print1 := func(l run.Line) {
		if s.output == outputJSON {
			if c.Bool("follow") {
				b, _ := json.Marshal(l)
				fmt.Fprintf(s.stdout, "%s\n", display.JSON(b))
				return
			}
			collected = append(collected, l)
			return
		}
		// One line of step output: tabs kept, every other control and
		// invisible character escaped (docs/output.md).
		fmt.Fprintf(s.stdout, "%s [%s] %s: %s\n", l.Time.UTC().Format("15:04:05.000"), orDash(l.StepID), display.Line(l.Stream), display.Text(l.Msg))
	}
	data := rs.LogData(id)
	defer data.Close()
	var fillErr error
	print := func(l run.Line) {
		if step != "" && l.StepID != step {
			return
		}
		if err := data.Fill(&l); err != nil {
			if fillErr == nil {
				fillErr = err
			}
			return
		}
		// A stored record may hold several lines of one stream; each is
		// shown as its own entry.
		for _, m := range strings.Split(l.Msg, "\n") {
			one := l
			one.Msg = strings.TrimSuffix(m, "\r")
			print1(one)
		}
	}
	r := bufio.NewReader(f)
	var partial string
	for {
		line, err := r.ReadString('\n')
		if err == nil {
			var l run.Line
			if json.Unmarshal([]byte(partial+line), &l) == nil {
				print(l)
			}
			partial = ""
			continue
		}
		partial += line
		if !c.Bool("follow") {
			break
		}
		rec, gerr := rs.Get(ctx, id)
		if gerr != nil {
			return gerr
		}
		if !rs.Live(id) && rec.State != run.Running {
			// Drain what the runner wrote last, then stop.
			if rest, _ := io.ReadAll(r); len(rest) > 0 {
				for _, ln := range strings.Split(partial+string(rest), "\n") {
					var l run.Line
					if json.Unmarshal([]byte(ln), &l) == nil {
						print(l)
					}
				}
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	if fillErr != nil {
		return fillErr
	}
	if s.output == outputJSON && !c.Bool("follow") {
		if collected == nil {
			collected = []run.Line{}
		}
		return s.writeJSON(collected)
	}
	return nil
}

func (s *session) runsCancel(ctx context.Context, c *cli.Context) error {
	id := c.String("run")
	if id == "" {
		return usageError("pack runs cancel: --run RUN-ID is required")
	}
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	rec, err := rs.Get(ctx, id)
	if err != nil {
		return err
	}
	if run.Terminal(rec.State) {
		return fmt.Errorf("run %s is already %s: %w", id, rec.State, runs.ErrState)
	}
	how := "its runner stopped its steps"
	if rs.Live(id) {
		if err := rs.RequestCancel(id); err != nil {
			return err
		}
		deadline := time.Now().Add(process.DefaultGrace + 10*time.Second)
		for rs.Live(id) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		if rec, err = rs.Get(ctx, id); err != nil {
			return err
		}
	} else {
		// Nobody drives it: stop what a dead runner left and record it.
		lock, err := rs.Lock(id, s.holder)
		if err != nil {
			return err
		}
		defer lock.Unlock()
		if rec, err = rs.Get(ctx, id); err != nil {
			return err
		}
		now := s.now().UTC()
		reaper := &sandbox.Executor{} // processes by token, and the attempt's cgroups
		for _, sid := range sortedStepIDs(rec) {
			sr := rec.Steps[sid]
			if sr.Process != "" {
				_ = reaper.Reap(sr.Process)
				sr.Process = ""
			}
			if sr.State == run.Running || sr.State == run.AwaitingApproval || sr.State == run.StepRetrying {
				sr.State, sr.Ended = run.Cancelled, &now
			}
		}
		rec.State, rec.Ended, rec.Runner = run.Cancelled, &now, nil
		rec.Failure = &run.Failure{Code: "cancelled", Message: "cancelled by " + s.holder}
		rec.Timeline = append(rec.Timeline, run.Event{Time: now, Type: run.EventRunCancelled, Message: "cancelled with no live runner"})
		if err := rs.Compact(ctx, rec); err != nil {
			return err
		}
		how = "it had no live runner"
		s.exportRunTraces(ctx, rs, rec)
	}
	out := struct {
		RunID string `json:"runId"`
		State string `json:"state"`
	}{rec.ID, rec.State}
	return s.emit(out, func(w io.Writer) { fmt.Fprintf(w, "run %s: %s (%s)\n", rec.ID, rec.State, how) })
}

// printIsolation lists, for each step that ran, the isolation it ran under
// (namespaces, network, each limit and what enforced it) and the secrets
// it received (names and sources only).
func printIsolation(w io.Writer, rec *run.Record) {
	var lines []string
	for _, id := range sortedStepIDs(rec) {
		sr := rec.Steps[id]
		if sr.Isolation == nil && len(sr.Secrets) == 0 {
			continue
		}
		var parts []string
		if iso := sr.Isolation; iso != nil {
			ns := "none (unisolated)"
			if len(iso.Namespaces) > 0 {
				ns = strings.Join(iso.Namespaces, ",")
			}
			net := "network " + iso.Network
			if len(iso.Allowlist) > 0 {
				net += " " + strings.Join(iso.Allowlist, " ")
			}
			if iso.Blocked > 0 {
				net += fmt.Sprintf(" (%d blocked)", iso.Blocked)
			}
			parts = append(parts, "namespaces "+ns, net)
			for _, l := range iso.Limits {
				lim := fmt.Sprintf("%s %s by %s", l.Name, l.Value, l.Enforced)
				if l.Note != "" {
					lim += " (" + l.Note + ")"
				}
				parts = append(parts, lim)
			}
		}
		for _, u := range sr.Secrets {
			parts = append(parts, fmt.Sprintf("secret %s (%s, %s)", u.Name, u.Source, u.Delivery))
		}
		lines = append(lines, fmt.Sprintf("  %s: %s", id, strings.Join(parts, "; ")))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "isolation:")
	for _, l := range lines {
		fmt.Fprintln(w, display.Line(l))
	}
}

// runsGCResult is the JSON shape of `runs gc`.
type runsGCResult struct {
	OlderThan string `json:"olderThan"`
	Force     bool   `json:"force"`
	runs.GCResult
}

func (s *session) runsGC(ctx context.Context, c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("pack runs gc takes no arguments")
	}
	period := firstNonEmpty(c.String("older-than"), s.config.RunRetention, "30d")
	older, err := runs.ParseRetention(period)
	if err != nil {
		return fmt.Errorf("--older-than %w", err)
	}
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	defer rs.Close()
	res, err := rs.GC(ctx, runs.GCOptions{OlderThan: older, Force: c.Bool("force"), DryRun: c.Bool("dry-run")})
	if err != nil {
		return err
	}
	out := runsGCResult{OlderThan: period, Force: c.Bool("force"), GCResult: res}
	return s.emit(out, func(w io.Writer) {
		verb := "removed"
		if res.DryRun {
			verb = "would remove"
		}
		for _, e := range res.Removed {
			fmt.Fprintf(w, "%s %s (%s, %s)\n", verb, display.Line(e.RunID), orDash(e.State), e.Reason)
		}
		for _, e := range res.Kept {
			fmt.Fprintf(w, "kept %s (%s, %s)\n", display.Line(e.RunID), e.State, e.Reason)
		}
		fmt.Fprintf(w, "%s %d runs, kept %d (retention %s: ended before %s)\n", verb, len(res.Removed), len(res.Kept), period, res.Cutoff.Format(time.RFC3339))
	})
}
