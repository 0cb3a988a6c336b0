package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/traces"
	"stellaops.io/stella/trust"
	"stellaops.io/stella/vault"
)

var errNoCache = errors.New("no cache to look at")

// Checks returns every check, in the order of IDs.
func Checks() []Check {
	return []Check{
		{ID: CacheLock, Title: "the cache's gc and index locks can be had (no process holds them for long)", Run: checkCacheLock},
		{ID: CacheIntegrity, Title: "every cached blob hashes to its digest and the index is consistent (cache verify)", Run: checkCacheIntegrity},
		{ID: CacheHolds, Title: "no hold file or temp file left in the cache by a process that is gone", Run: checkCacheHolds},
		{ID: TrustStore, Title: "the trust store is readable and holds keys", Run: checkTrustStore},
		{ID: TrustKeys, Title: "no trusted key is revoked; some key can approve and some can run", Run: checkTrustKeys},
		{ID: VaultFile, Title: "the vault file is present and readable by its owner only", Run: checkVaultFile},
		{ID: VaultUnlock, Title: "the vault unlocks (only when asked, with --unlock)", Run: checkVaultUnlock},
		{ID: RegistryReachable, Title: "the configured registries answer (the only check that uses the network)", Network: true, Run: checkRegistries},
		{ID: SealedConsistency, Title: "the --sealed flag, STELLA_SEALED and the config's sealed agree", Run: checkSealed},
		{ID: ClockSanity, Title: "the clock is not behind the newest approval ledger entry or run time", Run: checkClock},
		{ID: IsolationAvailable, Title: "steps can run isolated here (the probe pack run uses)", Run: checkIsolation},
		{ID: RunsStuck, Title: "no run is running without a live runner", Run: checkRunsStuck},
		{ID: RunsParked, Title: "no run waits at a gate past the gate's window", Run: checkRunsParked},
		{ID: RunsRetention, Title: "no finished run is kept past the retention period", Run: checkRunsRetention},
		{ID: HomeSpace, Title: "the home's file system has free space", Run: checkHomeSpace},
		{ID: NotifyDeadLetter, Title: "no notification is in the dead-letter file", Run: checkDeadLetter},
		{ID: TracesPending, Title: "the traces collector took every ended span of every run (when traces.endpoint is set)", Run: checkTracesPending},
	}
}

func ok(format string, args ...any) Result {
	return Result{Status: OK, Message: fmt.Sprintf(format, args...)}
}

func skipped(format string, args ...any) Result {
	return Result{Status: Skipped, Message: fmt.Sprintf(format, args...)}
}

func bad(s Status, msg, remedy string, cmds ...string) Result {
	return Result{Status: s, Message: msg, Remediation: remedy, Commands: cmds}
}

// cacheResult turns a failure to open the cache into a result.
func cacheResult(env *Env, err error) Result {
	var le *cache.LockError
	switch {
	case errors.Is(err, errNoCache):
		return skipped("no cache to look at")
	case errors.As(err, &le):
		return lockResult(le)
	default:
		return bad(Fail, fmt.Sprintf("cache %s cannot be opened: %v", filepath.Join(env.Home, "packs"), err),
			"check the folder's permissions and that the cache index is not damaged", "stella cache verify")
	}
}

func lockResult(le *cache.LockError) Result {
	remedy := "wait for the holder to finish; if it hangs, stop it (stella releases the lock when its process ends)"
	var cmds []string
	if le.Holder != nil {
		cmds = append(cmds, fmt.Sprintf("ps -p %d -o pid,etime,args", le.Holder.PID), fmt.Sprintf("kill %d", le.Holder.PID))
	} else {
		cmds = append(cmds, "fuser -v "+le.Path)
	}
	return bad(Warn, le.Error(), remedy, cmds...)
}

func checkCacheLock(ctx context.Context, env *Env) Result {
	st, err := env.cache(ctx)
	if err != nil {
		return cacheResult(env, err)
	}
	if err := st.CheckLocks(ctx); err != nil {
		var le *cache.LockError
		if errors.As(err, &le) {
			return lockResult(le)
		}
		return bad(Fail, fmt.Sprintf("cache %s locks: %v", st.Root(), err),
			"check the permissions of the cache folder and its lock files", "ls -l "+st.Root())
	}
	return ok("cache %s: gc and index locks free", st.Root())
}

func checkCacheIntegrity(ctx context.Context, env *Env) Result {
	st, err := env.cache(ctx)
	if err != nil {
		return cacheResult(env, err)
	}
	rep, err := st.Verify(ctx, cache.VerifyOptions{Hooks: env.CacheHooks})
	if err != nil {
		var le *cache.LockError
		if errors.As(err, &le) {
			return lockResult(le)
		}
		return bad(Fail, fmt.Sprintf("cache %s cannot be verified: %v", st.Root(), err),
			"see the error; a damaged index is rebuilt by importing the bundles again into a fresh home", "stella cache verify")
	}
	var probs []string
	for _, p := range rep.Problems {
		if p.Severity == cache.SeverityError {
			probs = append(probs, p.Object+": "+p.Problem)
		}
	}
	if len(probs) > 0 {
		more := ""
		if len(probs) > 3 {
			more = fmt.Sprintf(" and %d more", len(probs)-3)
			probs = probs[:3]
		}
		return bad(Fail, fmt.Sprintf("cache %s: %d problem(s): %s%s", st.Root(), len(rep.Problems), strings.Join(probs, "; "), more),
			"a damaged blob is never served; remove the artifacts that use it and import them again from their bundle or registry",
			"stella cache verify", "stella pack rm REF", "stella pack import BUNDLE")
	}
	return ok("cache %s: %d artifacts, %d blobs consistent", st.Root(), rep.Artifacts, rep.Blobs)
}

func checkCacheHolds(ctx context.Context, env *Env) Result {
	st, err := env.cache(ctx)
	if err != nil {
		return cacheResult(env, err)
	}
	live, stale, err := st.HoldFiles()
	if err != nil {
		return bad(Fail, err.Error(), "check the permissions of the holds folder", "ls -l "+filepath.Join(st.Root(), "holds"))
	}
	var temps []string
	for _, dir := range []string{st.Root(), filepath.Join(st.Root(), "ingest")} {
		// Files it could not check are not listed: only what it is sure of.
		ls, _ := safefile.Stale(dir)
		for _, l := range ls {
			temps = append(temps, l.Path)
		}
	}
	if len(stale) > 0 || len(temps) > 0 {
		var what []string
		if len(stale) > 0 {
			what = append(what, fmt.Sprintf("%d hold file(s) of processes that are gone (%s)", len(stale), stale[0]))
		}
		if len(temps) > 0 {
			what = append(what, fmt.Sprintf("%d stale temp file(s) (%s)", len(temps), temps[0]))
		}
		return bad(Warn, "cache "+st.Root()+": "+strings.Join(what, ", "),
			"left by killed processes; cache gc removes them (it never touches those of running processes)", "stella cache gc")
	}
	return ok("cache %s: %d live hold(s), nothing left behind", st.Root(), len(live))
}

func loadTrust(env *Env) (*trust.Store, Result, bool) {
	if env.TrustPath == "" {
		return nil, skipped("no trust store path"), false
	}
	if _, err := os.Stat(env.TrustPath); errors.Is(err, fs.ErrNotExist) {
		return nil, bad(Warn, fmt.Sprintf("trust store %s does not exist: no signature can be verified, and sealed mode refuses every pack", env.TrustPath),
			"add the public keys of your publishers, approvers and runners", "stella trust add NAME --key FILE.pem --role publisher"), false
	}
	ts, err := trust.Load(env.TrustPath)
	if err != nil {
		return nil, bad(Fail, fmt.Sprintf("trust store %s cannot be read: %v", env.TrustPath, err),
			"restore the file from a backup, or fix its permissions", "ls -l "+env.TrustPath, "stella trust list"), false
	}
	return ts, Result{}, true
}

func checkTrustStore(_ context.Context, env *Env) Result {
	ts, r, found := loadTrust(env)
	if !found {
		return r
	}
	n := len(ts.List())
	if n == 0 {
		return bad(Warn, fmt.Sprintf("trust store %s holds no key", env.TrustPath),
			"add the public keys of your publishers, approvers and runners", "stella trust add NAME --key FILE.pem --role publisher")
	}
	return ok("trust store %s: %d key(s)", env.TrustPath, n)
}

func checkTrustKeys(_ context.Context, env *Env) Result {
	ts, _, found := loadTrust(env)
	if !found {
		return skipped("no readable trust store (see %s)", TrustStore)
	}
	var revoked []string
	active := 0
	for _, k := range ts.List() {
		if k.Revoked {
			revoked = append(revoked, fmt.Sprintf("%s (%s, revoked %s)", k.Name, k.KeyID, k.RevokedAt.UTC().Format(time.RFC3339)))
			continue
		}
		active++
	}
	if len(revoked) > 0 {
		return bad(Warn, fmt.Sprintf("trust store %s: %d revoked key(s): %s; what only they signed is refused", env.TrustPath, len(revoked), strings.Join(revoked, ", ")),
			"have the artifacts and approvals they signed signed again with a trusted key; add its replacement if there is none",
			"stella trust list", "stella trust add NAME --key FILE.pem --role ROLE")
	}
	return ok("trust store %s: %d active key(s), none revoked", env.TrustPath, active)
}

func checkVaultFile(_ context.Context, env *Env) Result {
	if env.VaultPath == "" {
		return skipped("no vault path")
	}
	fi, err := os.Stat(env.VaultPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !env.VaultNamed:
		return skipped("no vault at %s (none configured)", env.VaultPath)
	case errors.Is(err, fs.ErrNotExist):
		return bad(Fail, fmt.Sprintf("vault %s does not exist", env.VaultPath),
			"restore the vault from its backup, or point the configuration at the right file", "ls -l "+filepath.Dir(env.VaultPath))
	case err != nil:
		return bad(Fail, fmt.Sprintf("vault %s: %v", env.VaultPath, err), "check the permissions of its folder", "ls -ld "+filepath.Dir(env.VaultPath))
	case !fi.Mode().IsRegular():
		return bad(Fail, fmt.Sprintf("vault %s is not a regular file", env.VaultPath), "point the configuration at the vault file", "ls -l "+env.VaultPath)
	}
	f, err := os.Open(env.VaultPath)
	if err != nil {
		return bad(Fail, fmt.Sprintf("vault %s cannot be read: %v", env.VaultPath, err),
			"give the vault's owner read and write access, and nobody else", "chmod 600 "+env.VaultPath)
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := f.Read(head)
	if !strings.HasPrefix(string(head[:n]), "age-encryption.org/") && !strings.HasPrefix(string(head[:n]), "-----BEGIN AGE") {
		return bad(Fail, fmt.Sprintf("vault %s is not a stella vault (not an age file)", env.VaultPath),
			"restore the vault from its backup", "ls -l "+env.VaultPath)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return bad(Warn, fmt.Sprintf("vault %s is readable by others (mode %04o)", env.VaultPath, fi.Mode().Perm()),
			"the vault is sealed, but only its owner should read it", "chmod 600 "+env.VaultPath)
	}
	return ok("vault %s present, mode %04o", env.VaultPath, fi.Mode().Perm())
}

func checkVaultUnlock(ctx context.Context, env *Env) Result {
	if env.Unlocker == nil {
		return skipped("not asked (stella doctor --unlock checks that the vault unlocks)")
	}
	if env.VaultPath == "" {
		return skipped("no vault path")
	}
	if _, err := os.Stat(env.VaultPath); err != nil {
		return skipped("no vault at %s (see %s)", env.VaultPath, VaultFile)
	}
	u, err := env.Unlocker()
	if err != nil {
		return bad(Fail, fmt.Sprintf("vault %s: no way to unlock it: %v", env.VaultPath, err),
			"give the identity file or the passphrase file", "export STELLA_VAULT_IDENTITY_FILE=FILE")
	}
	v, err := vault.Open(ctx, env.VaultPath, u, vault.Options{})
	if err != nil {
		remedy := "see the error; restore the vault from its backup if it is damaged"
		if errors.Is(err, vault.ErrBadPassphrase) {
			remedy = "use the identity or passphrase the vault was sealed with"
		}
		return bad(Fail, fmt.Sprintf("vault %s does not unlock: %v", env.VaultPath, err), remedy, "stella vault list")
	}
	n := len(v.List())
	_ = v.Close()
	return ok("vault %s unlocks: %d secret(s)", env.VaultPath, n)
}

func checkRegistries(ctx context.Context, env *Env) Result {
	if len(env.Registries) == 0 {
		return skipped("no registry configured")
	}
	if env.Reach == nil {
		return skipped("not checked")
	}
	var down []string
	for _, h := range env.Registries {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := env.Reach(c, h)
		cancel()
		if err != nil {
			down = append(down, fmt.Sprintf("%s: %v", h, err))
		}
	}
	if len(down) > 0 {
		return bad(Warn, fmt.Sprintf("%d of %d configured registries do not answer: %s", len(down), len(env.Registries), strings.Join(down, "; ")),
			"check the network path, the host's certificate (caFile) and the credentials; offline work goes on from the cache and bundles",
			"stella registry login HOST")
	}
	return ok("%d configured registries answer: %s", len(env.Registries), strings.Join(env.Registries, ", "))
}

// falseWords are the values of STELLA_SEALED that read as "off".
func envFalse(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "false", "no", "off":
		return true
	}
	return false
}

func envTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func checkSealed(_ context.Context, env *Env) Result {
	s := env.Sealed
	e := strings.TrimSpace(s.Env)
	switch {
	case e != "" && !envTrue(e) && !envFalse(e):
		return bad(Warn, fmt.Sprintf("STELLA_SEALED=%q is neither true nor false: it does not turn sealed mode on", e),
			"set it to 1 or 0", "export STELLA_SEALED=1")
	case envFalse(e) && (s.Config || s.Flag):
		where := "the config's sealed: true"
		if s.Flag {
			where = "--sealed"
		}
		return bad(Warn, fmt.Sprintf("STELLA_SEALED=%s says off but %s turns sealed mode on: sealed mode is on", e, where),
			"sealed mode cannot be turned off by the environment; make them agree", "unset STELLA_SEALED")
	case envTrue(e) && !s.Config:
		return bad(Warn, fmt.Sprintf("sealed mode is set by STELLA_SEALED but %s does not say sealed: true, so a shell without it runs unsealed", filepath.Join(env.Home, "config.yaml")),
			"make sealed mode part of the home's configuration", "echo 'sealed: true' >> "+filepath.Join(env.Home, "config.yaml"))
	}
	if s.Effective {
		return ok("sealed mode on, and the flag, environment and configuration agree")
	}
	return ok("sealed mode off, and the flag, environment and configuration agree")
}

func checkClock(ctx context.Context, env *Env) Result {
	now := env.now()
	var newest time.Time
	var what string
	st, err := env.cache(ctx)
	if err != nil {
		if errors.Is(err, errNoCache) {
			return skipped("no cache to look at")
		}
		return skipped("cache cannot be opened (see %s)", CacheLock)
	}
	if entries, err := approve.Ledger(ctx, st); err == nil {
		for _, e := range entries {
			if e.Time.After(newest) {
				newest, what = e.Time, fmt.Sprintf("approval ledger entry %d (%s)", e.Seq, e.Event)
			}
		}
	}
	if list, err := runs.Open(st, env.RunsDir, env.now).List(ctx, runs.Filter{}); err == nil {
		for _, r := range list {
			for _, t := range []time.Time{r.Created, r.Updated} {
				if t.After(newest) {
					newest, what = t, "run "+r.ID
				}
			}
		}
	}
	// Records store whole seconds or finer; a minute of slack keeps two
	// hosts' small skews from failing.
	if !newest.IsZero() && now.Add(time.Minute).Before(newest) {
		return bad(Fail, fmt.Sprintf("clock %s is behind %s at %s (by %s)", now.Format(time.RFC3339), what, newest.UTC().Format(time.RFC3339), newest.Sub(now).Round(time.Second)),
			"set the clock right (approval windows and retention depend on it); in a sealed network use its time source",
			"timedatectl status", "date -u")
	}
	if newest.IsZero() {
		return ok("clock %s (no ledger entry or run to compare)", now.Format(time.RFC3339))
	}
	return ok("clock %s is not behind %s", now.Format(time.RFC3339), what)
}

func checkIsolation(ctx context.Context, env *Env) Result {
	if env.Probe == nil {
		return skipped("not checked")
	}
	if err := env.Probe(ctx); err != nil {
		st := Warn
		remedy := "runs are refused unless --insecure-skip-isolation (outside sealed mode); allow unprivileged user namespaces (docs/isolation.md)"
		if env.Sealed.Effective {
			st = Fail
			remedy = "sealed mode runs steps only isolated: no run can start; allow unprivileged user namespaces (docs/isolation.md)"
		}
		return bad(st, fmt.Sprintf("steps cannot run isolated: %v", err), remedy,
			"sysctl kernel.unprivileged_userns_clone", "sysctl user.max_user_namespaces", "sysctl kernel.apparmor_restrict_unprivileged_userns")
	}
	return ok("steps run isolated (user, network and mount namespaces)")
}

func runStore(ctx context.Context, env *Env) (*runs.Store, Result, bool) {
	st, err := env.cache(ctx)
	if err != nil {
		if errors.Is(err, errNoCache) {
			return nil, skipped("no cache to look at"), false
		}
		return nil, skipped("cache cannot be opened (see %s)", CacheLock), false
	}
	return runs.Open(st, env.RunsDir, env.now), Result{}, true
}

func checkRunsStuck(ctx context.Context, env *Env) Result {
	rs, r, found := runStore(ctx, env)
	if !found {
		return r
	}
	list, err := rs.List(ctx, runs.Filter{State: run.Running})
	if err != nil {
		return bad(Fail, fmt.Sprintf("runs cannot be listed: %v", err), "verify the cache", "stella cache verify")
	}
	var stuck []string
	for _, rec := range list {
		if !rs.Live(rec.ID) {
			stuck = append(stuck, rec.ID)
		}
	}
	if len(stuck) > 0 {
		cmds := []string{}
		for _, id := range stuck {
			cmds = append(cmds, "stella pack runs resume --run "+id)
		}
		return bad(Warn, fmt.Sprintf("%d run(s) running with no live runner: %s", len(stuck), strings.Join(stuck, ", ")),
			"their runner died (killed, host restarted); resume each, or cancel it", append(cmds, "stella pack runs cancel --run "+stuck[0])...)
	}
	return ok("%d running run(s), each with a live runner", len(list))
}

func checkRunsParked(ctx context.Context, env *Env) Result {
	rs, r, found := runStore(ctx, env)
	if !found {
		return r
	}
	list, err := rs.List(ctx, runs.Filter{State: run.AwaitingApproval})
	if err != nil {
		return bad(Fail, fmt.Sprintf("runs cannot be listed: %v", err), "verify the cache", "stella cache verify")
	}
	now := env.now()
	var parked []string
	var cmds []string
	for _, sum := range list {
		rec, err := rs.Get(ctx, sum.ID)
		if err != nil {
			continue
		}
		for id, s := range rec.Steps {
			if s.Gate == nil || s.State != run.AwaitingApproval {
				continue
			}
			deadline := s.Gate.Deadline
			if deadline == nil && s.Gate.Since != nil {
				d := s.Gate.Since.Add(plan.DefaultExpiry)
				deadline = &d
			}
			if deadline != nil && now.After(*deadline) {
				parked = append(parked, fmt.Sprintf("%s at gate %s (window ended %s)", rec.ID, id, deadline.UTC().Format(time.RFC3339)))
				cmds = append(cmds, "stella pack runs resume --run "+rec.ID)
			}
		}
	}
	if len(parked) > 0 {
		return bad(Warn, fmt.Sprintf("%d run(s) parked past their gate's window: %s", len(parked), strings.Join(parked, "; ")),
			"resume each: it ends as expired, or goes on if an approval came; or cancel it", append(cmds, "stella pack approvals list")...)
	}
	return ok("%d run(s) awaiting approval, all within their gate's window", len(list))
}

func checkRunsRetention(ctx context.Context, env *Env) Result {
	rs, r, found := runStore(ctx, env)
	if !found {
		return r
	}
	res, err := rs.GC(ctx, runs.GCOptions{OlderThan: env.Retention, DryRun: true})
	if err != nil {
		return bad(Fail, fmt.Sprintf("run retention cannot be assessed: %v", err), "verify the cache", "stella cache verify")
	}
	unexported := 0
	for _, k := range res.Kept {
		if k.Reason == runs.KeptNotExported {
			unexported++
		}
	}
	if len(res.Removed) > 0 || unexported > 0 {
		cmds := []string{"stella pack runs gc --dry-run", "stella pack runs gc"}
		if unexported > 0 {
			cmds = append(cmds, "stella pack runs export --run RUN", "stella pack runs gc --force")
		}
		return bad(Warn, fmt.Sprintf("%d run(s) ended before %s and are still kept (%d of them not exported)", len(res.Removed)+unexported, res.Cutoff.UTC().Format(time.RFC3339), unexported),
			"collect them; export the evidence of those not exported first, or remove them anyway with --force", cmds...)
	}
	return ok("no run kept past the retention period (cutoff %s)", res.Cutoff.UTC().Format(time.RFC3339))
}

func checkHomeSpace(_ context.Context, env *Env) Result {
	if env.Free == nil {
		return skipped("not checked")
	}
	min, warn := env.MinFree, env.WarnFree
	if min == 0 {
		min = 256 << 20
	}
	if warn == 0 {
		warn = 2 << 30
	}
	free, err := env.Free(env.Home)
	if err != nil {
		return bad(Fail, fmt.Sprintf("free space of %s: %v", env.Home, err), "check that the home exists and is readable", "df -h "+env.Home)
	}
	msg := fmt.Sprintf("home %s: %s free", env.Home, display.Bytes(int64(free)))
	switch {
	case free < min:
		return bad(Fail, msg+" (below "+display.Bytes(int64(min))+"): imports and runs will fail",
			"free space: collect unreferenced blobs and old runs, or move the home to a larger file system",
			"stella cache du", "stella cache gc", "stella pack runs gc", "df -h "+env.Home)
	case free < warn:
		return bad(Warn, msg+" (below "+display.Bytes(int64(warn))+")",
			"free space before it runs out: collect unreferenced blobs and old runs",
			"stella cache du", "stella cache gc", "stella pack runs gc")
	}
	return ok("%s", msg)
}

// DeadLetterPath is the notifications' dead-letter file of a home.
func DeadLetterPath(home string) string { return filepath.Join(home, "notify", "dead-letter.ndjson") }

func checkDeadLetter(_ context.Context, env *Env) Result {
	path := DeadLetterPath(env.Home)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ok("no dead letter (%s absent)", path)
	}
	if err != nil {
		return bad(Fail, fmt.Sprintf("dead-letter file %s: %v", path, err), "check its permissions", "ls -l "+path)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	if n > 0 {
		return bad(Warn, fmt.Sprintf("%d notification(s) in the dead-letter file %s: their hooks failed every attempt", n, path),
			"read the errors, fix the hook (its URL, its receiver), then move the file aside once handled",
			"tail -n 5 "+path, "mv "+path+" "+path+".handled")
	}
	return ok("dead-letter file %s is empty", path)
}

func checkTracesPending(ctx context.Context, env *Env) Result {
	if env.TracesEndpoint == "" {
		return ok("no traces collector is configured (traces.endpoint): no span is sent")
	}
	rs, r, found := runStore(ctx, env)
	if !found {
		return r
	}
	list, err := rs.List(ctx, runs.Filter{})
	if err != nil {
		return bad(Fail, fmt.Sprintf("runs cannot be listed: %v", err), "verify the cache", "stella cache verify")
	}
	spans, pending := 0, 0
	var behind []string
	for _, sum := range list {
		rec, err := rs.Get(ctx, sum.ID)
		if err != nil {
			return bad(Fail, fmt.Sprintf("run %s cannot be read: %v", sum.ID, err), "verify the cache", "stella cache verify")
		}
		sent, err := traces.ReadSent(rs.Folder(rec.ID))
		if err != nil {
			return bad(Fail, fmt.Sprintf("run %s: %v", rec.ID, err), "check the run folder's permissions", "ls -l "+rs.Folder(rec.ID))
		}
		all := traces.Of(rec)
		spans += len(all)
		if n := len(traces.Pending(all, sent)); n > 0 {
			pending += n
			behind = append(behind, rec.ID)
		}
	}
	if pending > 0 {
		cmds := []string{}
		for _, id := range behind {
			cmds = append(cmds, "stella pack runs trace "+id+" --export")
		}
		return bad(Warn, fmt.Sprintf("%d span(s) of %d run(s) not taken by the collector at %s: %s", pending, len(behind), env.TracesEndpoint, strings.Join(behind, ", ")),
			"the collector was down or refused them when the runs ended; once it answers, export them again", cmds...)
	}
	return ok("the collector at %s took all %d ended span(s) of %d run(s)", env.TracesEndpoint, spans, len(list))
}
