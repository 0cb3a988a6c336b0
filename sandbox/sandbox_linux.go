package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"stellaops.io/stella/egress"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
)

var _ run.Executor = (*Executor)(nil)
var _ run.Reaper = (*Executor)(nil)

// namespaces every step runs in.
var namespaces = []string{"user", "net", "mount"}

const cloneFlags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS

// errStartHelper: the helper could not be started in its namespaces.
var errStartHelper = errors.New("sandbox: starting the helper in new user, net and mount namespaces")

// Execute runs inv isolated and waits for it (run.Executor). It fails
// closed: when Probe says isolation does not work here, nothing runs and
// Exit.Err wraps run.ErrSandboxUnavailable. Exit.Code and Signal are the
// step's own; Exit.Isolation says what was applied; Exit.Limit names the
// limit (memoryMiB, pids) whose cgroup counters say it stopped the step.
func (x *Executor) Execute(ctx context.Context, inv run.Invocation) run.Exit {
	if len(inv.Command) == 0 {
		return run.Exit{Code: -1, Err: errors.New("empty command")}
	}
	if err := Probe(ctx); err != nil {
		return run.Exit{Code: -1, Err: err}
	}
	return x.execute(ctx, inv, false)
}

// Reap stops every process carrying token, with its process group, and
// removes the attempt's cgroups with whatever is left in them (run.Reaper).
func (x *Executor) Reap(token string) error {
	if token == "" {
		return nil
	}
	return errors.Join((&process.Executor{}).Reap(token), reapCgroups(token))
}

// execute runs inv in the sandbox; check lets HelperEnv through to the
// step (Probe's own check).
func (x *Executor) execute(ctx context.Context, inv run.Invocation, check bool) run.Exit {
	mode := inv.Sandbox.Network.Mode
	if mode == "" {
		mode = pack.NetworkNone
	}
	iso := &run.Isolation{Namespaces: append([]string(nil), namespaces...), Network: mode}
	fail := func(err error) run.Exit { return run.Exit{Code: -1, Err: err, Isolation: iso} }
	switch mode {
	case pack.NetworkNone:
	case pack.NetworkAllowlist:
		iso.Allowlist = append([]string{}, inv.Sandbox.Network.Allowlist...)
	default:
		return fail(fmt.Errorf("network mode %q is not one the sandbox knows", mode))
	}

	// The command as exec.Command finds it (the runner's PATH for a bare
	// name), so a step runs the same program isolated or not.
	path := inv.Command[0]
	if !strings.Contains(path, "/") {
		lp, err := exec.LookPath(path)
		if err != nil {
			return fail(err)
		}
		path = lp
	}
	env := map[string]string{}
	for k, v := range inv.Env {
		env[k] = v
	}
	if inv.Token != "" {
		env[run.TokenEnv] = inv.Token
	}
	stepEnv := process.Environ(x.Env, env)
	if !check {
		stepEnv = withoutVar(stepEnv, HelperEnv)
	}
	dir := inv.Dir
	if dir == "" {
		dir = "/"
	}
	spec := helperSpec{Network: mode, Remount: x.remount, Step: stepSpec{Path: path, Argv: inv.Command, Env: stepEnv, Dir: dir}}

	own := []string{x.Work, inv.Dir, inv.SecretDir}
	if out := inv.Env[run.OutputEnv]; out != "" {
		own = append(own, filepath.Dir(out))
	}

	// Limits: cgroups where this runner can make one, rlimits otherwise.
	recs, cg, err := x.limits(inv.Sandbox.Limits, inv.Token, &spec)
	iso.Limits = recs
	defer cg.remove()
	if err != nil {
		return fail(err)
	}
	spec.Place = cg != nil

	var blocked atomic.Int64
	if mode == pack.NetworkAllowlist {
		base := x.SocketDir
		if base == "" {
			base = os.TempDir()
		}
		sdir, err := os.MkdirTemp(base, "stella-net-")
		if err != nil {
			return fail(fmt.Errorf("network allowlist: a folder for the gateway socket: %w", err))
		}
		defer os.RemoveAll(sdir)
		spec.Socket = filepath.Join(sdir, "gateway.sock")
		if len(spec.Socket) >= len(unix.RawSockaddrUnix{}.Path) {
			return fail(fmt.Errorf("network allowlist: gateway socket path %s is too long for a Unix socket", spec.Socket))
		}
		spec.Allowlist = iso.Allowlist
		rules := egress.Rules{Allowlist: iso.Allowlist, Host: x.HostAllowlist, Sealed: x.Sealed}
		gw, err := egress.Listen(spec.Socket, rules, func(dest, reason string) {
			blocked.Add(1)
			if inv.Blocked != nil {
				inv.Blocked(dest, reason)
			}
		})
		if err != nil {
			return fail(fmt.Errorf("network allowlist: starting the gateway on %s: %w", spec.Socket, err))
		}
		defer gw.Close()
		own = append(own, sdir)
	}
	if spec.Binds, spec.Mounts, err = x.mounts(own); err != nil {
		return fail(err)
	}
	grace := x.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	var ex run.Exit
	if mode == pack.NetworkNone && spec.Nproc == 0 && !x.perStep {
		ex = x.viaServer(ctx, inv, spec, cg, grace)
	} else {
		ex = x.viaHelper(ctx, inv, spec, cg, grace)
	}
	if ex.Err == nil && (ex.Code != 0 || ex.Signal != "") {
		ex.Limit = cg.hit()
	}
	iso.Blocked = int(blocked.Load())
	ex.Isolation = iso
	return ex
}

// viaHelper runs the attempt in a helper process of its own, started in
// new user, network and mount namespaces.
func (x *Executor) viaHelper(ctx context.Context, inv run.Invocation, spec helperSpec, cg *cgroup, grace time.Duration) run.Exit {
	helperFail := func(err error) run.Exit { return run.Exit{Code: -1, Err: err} }
	line, err := json.Marshal(spec)
	if err != nil {
		return helperFail(err)
	}

	specR, specW, err := os.Pipe()
	if err != nil {
		return helperFail(err)
	}
	defer specW.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return helperFail(err)
	}
	defer repR.Close()
	exe := x.exe()
	helperEnv := []string{HelperEnv + "=" + roleHelper}
	if inv.Token != "" {
		helperEnv = append(helperEnv, run.TokenEnv+"="+inv.Token)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"stella-sandbox"}, Env: helperEnv, Dir: "/",
		Stdout: inv.Stdout, Stderr: inv.Stderr, ExtraFiles: []*os.File{specR, repW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  cloneFlags,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}}
	var res talk
	done := make(chan struct{})
	started := false
	runErr := process.Run(ctx, cmd, grace, func(pgid int) error {
		started = true
		specR.Close()
		repW.Close()
		go func() {
			defer close(done)
			res.run(append(line, '\n'), specW, repR, cg, pgid)
		}()
		return nil
	})
	if !started {
		specR.Close()
		repW.Close()
		return helperFail(fmt.Errorf("%w: %w", errStartHelper, runErr))
	}
	<-done

	var ex run.Exit
	switch {
	case res.status != nil:
		ex = process.ExitOf(syscall.WaitStatus(*res.status))
	case res.setup != nil:
		ex = run.Exit{Code: -1, Err: res.setup}
	case cmd.ProcessState != nil:
		// The helper ended without a word: stopped (cancelled past its
		// grace) or broken.
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		ex = process.ExitOf(ws)
		if !ws.Signaled() {
			ex.Code, ex.Err = -1, fmt.Errorf("sandbox: the helper exited with status %d without reporting the step's", ws.ExitStatus())
		}
	default:
		ex = run.Exit{Code: -1, Err: fmt.Errorf("sandbox: waiting for the helper: %w", runErr)}
	}
	return ex
}

// talk is the runner's side of the helper's pipes.
type talk struct {
	status *uint32
	setup  error
}

// run sends the spec, places the step in its cgroup when the helper says
// it is ready, and collects the helper's reports until it exits. Once the
// step has ended, what it left in its process group is killed at once
// (the helper has nothing more to do either), so nothing it started keeps
// the step's output open.
func (t *talk) run(spec []byte, w *os.File, r *os.File, cg *cgroup, pgid int) {
	if _, err := w.Write(spec); err != nil {
		t.setup = &setupError{Stage: "sending the spec", Msg: err.Error()}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rep report
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			continue
		}
		switch {
		case rep.Status != nil:
			t.status = rep.Status
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case rep.Err != "":
			if t.setup == nil {
				t.setup = &setupError{Stage: rep.Stage, Msg: rep.Err}
			}
		case rep.Ready > 0:
			answer := "go\n"
			if err := cg.place(rep.Ready); err != nil {
				t.setup = &setupError{Stage: "placing the step in its cgroup", Msg: err.Error()}
				answer = "abort\n"
			}
			_, _ = w.Write([]byte(answer))
		}
	}
}

// limits makes the attempt's cgroup for the limits it can enforce that
// way, sets the rlimits of the others in spec, and records how each limit
// is enforced.
func (x *Executor) limits(l pack.Limits, token string, spec *helperSpec) ([]run.LimitRecord, *cgroup, error) {
	var want []string
	if l.CPU > 0 {
		want = append(want, ctrlCPU)
	}
	if l.MemoryMiB > 0 {
		want = append(want, ctrlMemory)
	}
	if l.Pids > 0 {
		want = append(want, ctrlPids)
	}
	cg := newCgroup(token, want)
	byName := map[string]run.LimitRecord{}
	if cg != nil {
		var err error
		if byName, err = cg.setLimits(l); err != nil {
			return nil, cg, err
		}
	}
	var recs []run.LimitRecord
	if l.CPU > 0 {
		r, ok := byName["cpu"]
		if !ok {
			r = run.LimitRecord{Name: "cpu", Value: strconv.FormatFloat(l.CPU, 'g', -1, 64), Enforced: run.EnforcedNone,
				Note: "no cpu cgroup controller this runner may use, and an rlimit cannot express a share of cores"}
		}
		recs = append(recs, r)
	}
	if l.MemoryMiB > 0 {
		r, ok := byName["memoryMiB"]
		if !ok {
			r = run.LimitRecord{Name: "memoryMiB", Value: strconv.Itoa(l.MemoryMiB), Enforced: run.EnforcedRlimit,
				Note: "RLIMIT_AS: bounds each process's address space, not the step's resident memory (no memory cgroup this runner may use)"}
			spec.Step.Rlimits = append(spec.Step.Rlimits, rlimit{Resource: unix.RLIMIT_AS, Name: "RLIMIT_AS", Value: uint64(l.MemoryMiB) << 20})
		}
		recs = append(recs, r)
	}
	if l.Pids > 0 {
		r, ok := byName["pids"]
		switch {
		case ok:
		case os.Getuid() == 0:
			r = run.LimitRecord{Name: "pids", Value: strconv.Itoa(l.Pids), Enforced: run.EnforcedNone,
				Note: "no pids cgroup controller this runner may use, and RLIMIT_NPROC does not bind uid 0"}
		default:
			r = run.LimitRecord{Name: "pids", Value: strconv.Itoa(l.Pids), Enforced: run.EnforcedRlimit,
				Note: "RLIMIT_NPROC: counts the tasks of the step's user namespace, the sandbox helper's threads included (no pids cgroup this runner may use)"}
			spec.Nproc = l.Pids
		}
		recs = append(recs, r)
	}
	if l.Timeout > 0 {
		recs = append(recs, run.LimitRecord{Name: "timeout", Value: l.Timeout.String(), Enforced: run.EnforcedRunner,
			Note: "the run engine stops the run when it passes"})
	}
	return recs, cg, nil
}

// withoutVar is env without the variable name.
func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
