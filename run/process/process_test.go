//go:build unix

package process

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Run's hook sees the running command; an error from it stops the whole
// group at once and is returned.
func TestRunStartedHook(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30")
	boom := errors.New("boom")
	var pid int
	start := time.Now()
	err := Run(context.Background(), cmd, time.Second, func(p int) error {
		pid = p
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the hook's error", err)
	}
	if pid != cmd.Process.Pid {
		t.Errorf("the hook saw pid %d, the command is %d", pid, cmd.Process.Pid)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stopping the group took %s", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for live(pid) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := live(pid); n > 0 {
		t.Errorf("%d processes of the command's group are still alive", n)
	}
}

// live counts the processes of group pgid that are not zombies.
func live(pgid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

// A command ignoring SIGTERM gets SIGKILL after the grace.
func TestRunTermThenKill(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; echo ready; sleep 30")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	const grace = 200 * time.Millisecond
	var start time.Time
	err = Run(ctx, cmd, grace, func(int) error {
		b := make([]byte, 6)
		if _, err := out.Read(b); err != nil || !strings.HasPrefix(string(b), "ready") {
			t.Errorf("read %q, %v", b, err)
		}
		start = time.Now()
		cancel()
		return nil
	})
	x := exitOf(cmd, err)
	if x.Signal != "killed" || x.Code != -1 || x.Err != nil {
		t.Fatalf("exit = %+v, want killed", x)
	}
	if took := time.Since(start); took < grace {
		t.Errorf("killed after %s, before the grace of %s", took, grace)
	}
}
