//go:build unix

// Package process runs run steps as plain operating-system processes: argv
// exactly as given (no shell), in its own process group, with a fixed base
// environment plus what the step sets. When a step is cancelled or times out
// its whole process group gets SIGTERM, then SIGKILL after a grace period;
// when the step's process exits, anything it left behind in its group is
// killed too, so no step outlives its record.
//
// It implements run.Executor and run.Reaper. Isolation (namespaces, limits,
// secret files) is a separate executor wrapped around the same contract.
package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"stellaops.io/stella/run"
)

// DefaultGrace is how long a stopped step's group has between SIGTERM and SIGKILL.
const DefaultGrace = 5 * time.Second

// Executor runs steps as processes.
type Executor struct {
	// Env is the base environment of every step ("KEY=value"); the step's
	// own env is added to it. Nothing else of the runner's environment
	// reaches a step.
	Env []string
	// Grace is the time between SIGTERM and SIGKILL (default DefaultGrace).
	Grace time.Duration
}

var _ run.Executor = (*Executor)(nil)
var _ run.Reaper = (*Executor)(nil)

// Execute runs inv and waits for it (run.Executor).
func (x *Executor) Execute(ctx context.Context, inv run.Invocation) run.Exit {
	if len(inv.Command) == 0 {
		return run.Exit{Code: -1, Err: errors.New("empty command")}
	}
	grace := x.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	cmd := exec.Command(inv.Command[0], inv.Command[1:]...)
	cmd.Dir = inv.Dir
	env := map[string]string{}
	for k, v := range inv.Env {
		env[k] = v
	}
	if inv.Token != "" {
		env[run.TokenEnv] = inv.Token
	}
	cmd.Env = Environ(x.Env, env)
	cmd.Stdout, cmd.Stderr = inv.Stdout, inv.Stderr
	err := Run(ctx, cmd, grace, nil)
	exit := exitOf(cmd, err)
	// Nothing isolates this step: the record says so, limit by limit.
	exit.Isolation = run.Unisolated(inv.Sandbox)
	return exit
}

// Run starts cmd as the leader of a new process group (keeping the rest of
// cmd.SysProcAttr), calls started once it runs (when not nil), and waits
// for it. When ctx ends first, the group gets SIGTERM, then SIGKILL after
// grace; when cmd has exited, whatever is left in its group is killed, so
// nothing it started outlives it. When started returns an error, the group
// is killed at once and that error is returned. Otherwise the error is
// that of starting or waiting for cmd.
//
// It is the one mechanism by which steps are started and stopped, whether
// isolated (package sandbox starts its helper with it) or not.
func Run(ctx context.Context, cmd *exec.Cmd, grace time.Duration, started func(pid int) error) error {
	if grace <= 0 {
		grace = DefaultGrace
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pgid = true, 0
	// Output copying must not outlive the step when a grandchild keeps
	// the pipes open.
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = grace
	}
	growPipes(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if started != nil {
		if err := started(pgid); err != nil {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
			return err
		}
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case err = <-done:
			t.Stop()
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			err = <-done
		}
	}
	// Whatever the command left in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}

func exitOf(cmd *exec.Cmd, err error) run.Exit {
	if cmd.ProcessState == nil {
		return run.Exit{Code: -1, Err: err}
	}
	st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return run.Exit{Code: -1, Err: err}
	}
	x := ExitOf(st)
	var ee *exec.ExitError
	if !st.Signaled() && err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		x.Err = err
	}
	return x
}

// ExitOf is how a process that ended with wait status st ended: its exit
// code, or the signal that killed it (Code -1).
func ExitOf(st syscall.WaitStatus) run.Exit {
	if st.Signaled() {
		return run.Exit{Code: -1, Signal: st.Signal().String()}
	}
	return run.Exit{Code: st.ExitStatus()}
}

// Environ is base ("KEY=value") plus env, sorted, env winning: the
// environment of a step.
func Environ(base []string, env map[string]string) []string {
	m := map[string]string{}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	for k, v := range env {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Reap kills every process whose environment carries token, with its
// process group (run.Reaper). Processes of other users cannot be read and
// are not ours. The scan repeats until it finds nothing, so children forked
// while it ran are caught too.
func (x *Executor) Reap(token string) error {
	if token == "" {
		return nil
	}
	needle := []byte(run.TokenEnv + "=" + token + "\x00")
	for round := 0; round < 10; round++ {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return err
		}
		found := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid <= 1 || pid == os.Getpid() {
				continue
			}
			env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err != nil || !bytes.Contains(env, needle) {
				continue
			}
			found++
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if found == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("processes carrying %s survived SIGKILL", token)
}
