//go:build unix

package process

import (
	"io"
	"os"
	"os/exec"
	"syscall"
)

// PipeSize is what a step's output pipes are grown to (where the system
// lets them grow): a step printing at full speed then waits on the runner
// once per PipeSize bytes rather than once per 64 KiB.
const PipeSize = 1 << 20

// copyBuffer is what output goes through when the writer does not read
// from the pipe itself.
const copyBuffer = 256 << 10

// grownPipe is a step's output writer, handed to os/exec in place of the
// caller's: exec makes a pipe for it and copies from the pipe with
// ReadFrom, which first grows the pipe.
type grownPipe struct{ w io.Writer }

func (g *grownPipe) Write(p []byte) (int, error) { return g.w.Write(p) }

func (g *grownPipe) ReadFrom(r io.Reader) (int64, error) {
	// exec hands over the pipe's read end wrapped, but with its
	// SyscallConn; Fd would make it blocking, which WaitDelay cannot
	// interrupt.
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { growPipe(fd, PipeSize) })
		}
	}
	if rf, ok := g.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.CopyBuffer(struct{ io.Writer }{g.w}, r, make([]byte, copyBuffer))
}

// growPipes wraps cmd's output writers that exec would make a pipe for;
// one writer given as both stays one (exec then shares one pipe).
func growPipes(cmd *exec.Cmd) {
	wrap := func(w io.Writer) io.Writer {
		switch w.(type) {
		case nil, *grownPipe:
			return w
		case interface{ Fd() uintptr }: // a file: exec passes it as it is
			return w
		}
		return &grownPipe{w: w}
	}
	same := sameWriter(cmd.Stdout, cmd.Stderr)
	cmd.Stdout = wrap(cmd.Stdout)
	if same {
		cmd.Stderr = cmd.Stdout
	} else {
		cmd.Stderr = wrap(cmd.Stderr)
	}
}

// sameWriter reports a == b without panicking on incomparable writers.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a != nil && a == b
}

// OutputPipe makes a pipe for a step's output (the write end is the
// step's), grown to PipeSize where the system lets it grow.
func OutputPipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if rc, err := w.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { growPipe(fd, PipeSize) })
	}
	return r, w, nil
}

// SameWriter reports whether a and b are one writer (both not nil),
// without panicking on writers that cannot be compared.
func SameWriter(a, b io.Writer) bool { return sameWriter(a, b) }
