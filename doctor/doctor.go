package doctor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
)

// Status is the outcome of one check.
type Status string

// The statuses, from best to worst (skipped: the check did not apply or
// was not asked, such as vault.unlock without an unlocker).
const (
	OK      Status = "ok"
	Skipped Status = "skipped"
	Warn    Status = "warn"
	Fail    Status = "fail"
)

// The IDs of the checks. They are stable: scripts and runbooks name them.
const (
	CacheLock          = "cache.lock"
	CacheIntegrity     = "cache.integrity"
	CacheHolds         = "cache.holds"
	TrustStore         = "trust.store"
	TrustKeys          = "trust.keys"
	VaultFile          = "vault.file"
	VaultUnlock        = "vault.unlock"
	RegistryReachable  = "registry.reachable"
	SealedConsistency  = "sealed.consistency"
	ClockSanity        = "clock.sanity"
	IsolationAvailable = "isolation.available"
	RunsStuck          = "runs.stuck"
	RunsParked         = "runs.parked"
	RunsRetention      = "runs.retention"
	HomeSpace          = "home.space"
	NotifyDeadLetter   = "notify.deadletter"
	TracesPending      = "traces.pending"
)

// IDs lists every check ID, in the order checks run.
var IDs = []string{
	CacheLock, CacheIntegrity, CacheHolds,
	TrustStore, TrustKeys,
	VaultFile, VaultUnlock,
	RegistryReachable, SealedConsistency, ClockSanity, IsolationAvailable,
	RunsStuck, RunsParked, RunsRetention,
	HomeSpace, NotifyDeadLetter, TracesPending,
}

// Result is what one check found.
type Result struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Message says what was found, naming the object (file, run, key, host).
	Message string `json:"message"`
	// Remediation says what to do; empty when the status is ok or skipped.
	Remediation string `json:"remediation"`
	// Commands are the commands to type, in order.
	Commands []string `json:"commands"`
}

// Check is one diagnostic.
type Check struct {
	ID    string
	Title string // what it checks, one line
	// Network: the check may reach the network (registry.reachable only,
	// and only through Env.Reach).
	Network bool
	Run     func(ctx context.Context, env *Env) Result
}

// ErrUnknownCheck: --check named no check (neither an ID nor a prefix of
// IDs such as "cache").
var ErrUnknownCheck = errors.New("unknown doctor check")

// Select returns the checks of all whose ID is one of names or starts with
// one of them followed by a dot ("cache" selects cache.lock, cache.integrity
// and cache.holds); every check when names is empty. A name that selects
// nothing fails with ErrUnknownCheck.
func Select(all []Check, names []string) ([]Check, error) {
	if len(names) == 0 {
		return all, nil
	}
	var out []Check
	for _, n := range names {
		n = strings.TrimSuffix(strings.TrimSpace(n), ".")
		found := false
		for _, c := range all {
			if c.ID == n || strings.HasPrefix(c.ID, n+".") {
				found = true
				if !slices.ContainsFunc(out, func(o Check) bool { return o.ID == c.ID }) {
					out = append(out, c)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: %q (stella doctor --list names them)", ErrUnknownCheck, n)
		}
	}
	slices.SortStableFunc(out, func(a, b Check) int { return slices.Index(IDs, a.ID) - slices.Index(IDs, b.ID) })
	return out, nil
}

// Run runs checks one after the other and returns their results in the
// same order. A check that panics gives a fail result naming the panic.
func Run(ctx context.Context, env *Env, checks []Check) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		out = append(out, runOne(ctx, env, c))
	}
	return out
}

func runOne(ctx context.Context, env *Env, c Check) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			where := ""
			if at := panicSite(string(debug.Stack())); at != "" {
				where = " at " + at
			}
			r = Result{ID: c.ID, Status: Fail,
				Message:     fmt.Sprintf("check %s crashed: %v%s", c.ID, p, where),
				Remediation: "this is a defect of stella: report it with this message; the other checks ran",
				Commands:    []string{"stella doctor --check " + c.ID + " --output json"}}
			return
		}
	}()
	if err := ctx.Err(); err != nil {
		return Result{ID: c.ID, Status: Skipped, Message: "not run: " + err.Error(), Commands: []string{}}
	}
	r = c.Run(ctx, env)
	r.ID = c.ID
	if r.Commands == nil {
		r.Commands = []string{}
	}
	return r
}

// Summary counts results by status.
type Summary struct {
	OK      int `json:"ok"`
	Warn    int `json:"warn"`
	Fail    int `json:"fail"`
	Skipped int `json:"skipped"`
}

// Summarize counts results by status.
func Summarize(rs []Result) Summary {
	var s Summary
	for _, r := range rs {
		switch r.Status {
		case OK:
			s.OK++
		case Warn:
			s.Warn++
		case Fail:
			s.Fail++
		default:
			s.Skipped++
		}
	}
	return s
}

// panicSite is the file:line that panicked in a goroutine stack: the first
// frame after panic( that is not the runtime's.
func panicSite(stack string) string {
	lines := strings.Split(stack, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "panic(") {
			continue
		}
		for j := i + 2; j+1 < len(lines); j += 2 {
			if !strings.HasPrefix(lines[j], "runtime.") {
				site, _, _ := strings.Cut(strings.TrimSpace(lines[j+1]), " +0x")
				return site
			}
		}
	}
	return ""
}
