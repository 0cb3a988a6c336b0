//go:build linux

package process

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOutputPipeIsGrown: the pipe exec makes for a step's output is grown
// to PipeSize as its copying starts, and everything written reaches the
// writer.
func TestOutputPipeIsGrown(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Start from one page, whatever size this host gives new pipes.
	if n, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize()); err != nil || n >= PipeSize {
		t.Fatalf("shrinking the pipe: %d, %v", n, err)
	}
	want := strings.Repeat("output ", 10000)
	go func() {
		_, _ = w.WriteString(want)
		w.Close()
	}()
	var got bytes.Buffer
	if _, err := (&grownPipe{w: &got}).ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0); err != nil || n != PipeSize {
		t.Errorf("pipe size %d (%v), want %d", n, err, PipeSize)
	}
	if got.String() != want {
		t.Errorf("copied %d bytes of %d", got.Len(), len(want))
	}
}

// TestOneWriterForBothStreams: a writer given as both stdout and stderr
// stays one writer, so exec shares one pipe and writes to it one at a
// time (the race detector watches).
func TestOneWriterForBothStreams(t *testing.T) {
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := Run(context.Background(), cmd, 0, nil); err != nil {
		t.Fatal(err)
	}
	if cmd.Stdout != cmd.Stderr {
		t.Error("stdout and stderr became two writers")
	}
	if n := strings.Count(out.String(), "\n"); n != 10 {
		t.Errorf("%d lines: %q", n, out.String())
	}
}
