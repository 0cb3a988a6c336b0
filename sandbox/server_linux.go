package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
)

// The sandbox server spares each step the start of a helper process.
//
// A helper process is stella re-executed: before it can create anything
// it pays Go's start and the initialisation of every package stella
// links (15–19 ms here, docs/benchmarks.md). The server pays that once per
// runner: it is started in a user and mount namespace of its own, and
// serves each attempt on a thread of its own, locked to its goroutine,
// which unshares a network and mount namespace for the attempt, sets
// them up exactly as a helper process does (helper.setUp) and forks the
// step from that thread, so the step is born in them. The thread is never
// unlocked: it ends with the request, taking the namespaces with it.
//
// Runner and server talk over a SOCK_SEQPACKET socket pair, one JSON
// message a packet: the runner sends a serverRequest (a new attempt,
// with the step's stdout and stderr as SCM_RIGHTS descriptors; or the
// answer to a step waiting to be placed in its cgroup), the server sends
// reports tagged with the request's id. The step leads a process group of
// its own, which the runner signals directly to stop it.
//
// What a server cannot do, a helper process still does: an allowlist
// step (its forwarder and resolver must be a process in the step's
// network namespace: egress.Inside) and a step whose pids limit is an
// RLIMIT_NPROC (which counts every task of the user namespace, and the
// server's is shared).

// ServerRunnerEnv is in a sandbox server's environment (and only there):
// the pid of the runner it serves, for ps and for tests.
const ServerRunnerEnv = "STELLA_SANDBOX_RUNNER"

// serverFD is the server's end of the socket pair.
const serverFD = 3

// serverIdle is how long a server without a step waits before the runner
// lets it go; the next step starts a new one.
const serverIdle = 5 * time.Second

// maxMessage bounds one message (a spec holds the step's argv and
// environment).
const maxMessage = 4 << 20

// serverRequest is one message of the runner to the server.
type serverRequest struct {
	ID uint64 `json:"id"`
	// Spec starts an attempt; the message carries the step's stdout and
	// stderr descriptors.
	Spec *helperSpec `json:"spec,omitempty"`
	// Answer is "go" or "abort" for the attempt's step waiting to be
	// placed in its cgroup.
	Answer string `json:"answer,omitempty"`
}

// serverConn is one end of the socket pair.
type serverConn struct {
	fd int
	mu sync.Mutex // one writer at a time
}

func (c *serverConn) write(v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxMessage {
		return fmt.Errorf("a sandbox message of %d bytes is over %d", len(b), maxMessage)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return errServerGone
	}
	for {
		err = unix.Sendmsg(c.fd, b, oob, nil, 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// read reads one message into v and returns the descriptors it carried
// (close-on-exec). It returns io.EOF once the other end is closed.
func (c *serverConn) read(buf []byte, v any) ([]int, error) {
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if rights, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return nil, errors.New("a sandbox message was truncated")
	}
	return fds, json.Unmarshal(buf[:n], v)
}

// shutdown ends both directions: the other end reads the end of the
// messages, and so does this one.
func (c *serverConn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

// close closes this end; writing then fails.
func (c *serverConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// send is a server's report; a runner gone away is nobody to tell.
func (c *serverConn) send(r report) { _ = c.write(r) }

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// serverMain serves attempts until the runner closes its end, then waits
// for the steps under way (their runner is gone; a resumed run reaps
// them by token).
func serverMain() int {
	unix.CloseOnExec(serverFD)
	c := &serverConn{fd: serverFD}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[uint64]chan string{}
	)
	buf := make([]byte, maxMessage)
	for {
		var req serverRequest
		fds, err := c.read(buf, &req)
		if err != nil {
			break
		}
		switch {
		case req.Spec != nil:
			if len(fds) != 2 {
				closeAll(fds)
				c.send(report{ID: req.ID, Stage: "receiving the step's output", Err: fmt.Sprintf("%d descriptors, want 2", len(fds))})
				continue
			}
			ch := make(chan string, 1)
			mu.Lock()
			answers[req.ID] = ch
			mu.Unlock()
			wg.Add(1)
			go func(id uint64, spec helperSpec) {
				defer wg.Done()
				serveStep(c, id, spec, fds, ch)
				mu.Lock()
				delete(answers, id)
				mu.Unlock()
			}(req.ID, *req.Spec)
		default:
			closeAll(fds)
			mu.Lock()
			if ch := answers[req.ID]; ch != nil {
				select {
				case ch <- req.Answer:
				default:
				}
			}
			mu.Unlock()
		}
	}
	mu.Lock()
	for _, ch := range answers {
		select {
		case ch <- "abort":
		default:
		}
	}
	mu.Unlock()
	wg.Wait()
	return 0
}

// serveStep runs one attempt on a thread of its own, in network and mount
// namespaces of its own.
func serveStep(c *serverConn, id uint64, spec helperSpec, fds []int, answers <-chan string) {
	// Never unlocked: the thread ends with this goroutine, and the
	// namespaces with it.
	runtime.LockOSThread()
	stdout, stderr := os.NewFile(uintptr(fds[0]), "stdout"), os.NewFile(uintptr(fds[1]), "stderr")
	defer stdout.Close()
	defer stderr.Close()
	h := &helper{spec: spec, conn: c, id: id, answers: answers}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		h.send(report{Stage: "opening " + os.DevNull, Err: err.Error()})
		return
	}
	defer stdin.Close()
	h.stdio = [3]*os.File{stdin, stdout, stderr}
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWNET); err != nil {
		h.send(report{Stage: "creating the step's network and mount namespaces", Err: err.Error()})
		return
	}
	if stage, err := h.setUp(); err != nil {
		h.send(report{Stage: stage, Err: err.Error()})
	}
}

// server is the runner's side of one sandbox server.
type server struct {
	c    *serverConn
	cmd  *exec.Cmd
	mu   sync.Mutex
	next uint64
	reqs map[uint64]chan report
	gone bool // the server has ended, or is being let go
	busy int
	idle *time.Timer
}

// errServerGone: the server ended while a step of the runner's was under
// way.
var errServerGone = errors.New("sandbox: the sandbox server ended before reporting the step's end")

// server is x's running server, started when there is none.
func (x *Executor) server() (*server, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.srv != nil && !x.srv.ended() {
		return x.srv, nil
	}
	s, err := startServer(x.exe())
	if err != nil {
		return nil, err
	}
	x.srv = s
	return s, nil
}

// closeServer lets x's server go (Probe's executor, tests).
func (x *Executor) closeServer() {
	x.mu.Lock()
	s := x.srv
	x.srv = nil
	x.mu.Unlock()
	if s != nil {
		s.shutdown()
	}
}

func (x *Executor) exe() string {
	if x.Exe != "" {
		return x.Exe
	}
	return "/proc/self/exe"
}

func startServer(exe string) (*server, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: a socket pair for the sandbox server: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "sandbox-server")
	cmd := &exec.Cmd{Path: exe, Args: []string{"stella-sandbox-server"}, Env: []string{HelperEnv + "=" + roleServer, ServerRunnerEnv + "=" + strconv.Itoa(os.Getpid())}, Dir: "/",
		ExtraFiles: []*os.File{theirs},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			// Not in the runner's group: stopping the runner's work
			// stops steps, whose groups are their own.
			Setpgid: true,
		}}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("%w: %w", errStartHelper, err)
	}
	s := &server{c: &serverConn{fd: fds[0]}, cmd: cmd, reqs: map[uint64]chan report{}}
	go s.demux()
	return s, nil
}

// demux hands each report to its request until the server ends.
func (s *server) demux() {
	buf := make([]byte, 64<<10)
	for {
		var rep report
		fds, err := s.c.read(buf, &rep)
		closeAll(fds)
		if err != nil && !errors.As(err, new(*json.SyntaxError)) {
			break
		}
		s.mu.Lock()
		if ch := s.reqs[rep.ID]; ch != nil {
			select {
			case ch <- rep:
			default: // a request gets at most ready, started and an end
			}
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.gone = true
	for id, ch := range s.reqs {
		close(ch)
		delete(s.reqs, id)
	}
	s.mu.Unlock()
	_ = s.cmd.Wait()
	s.c.close()
}

func (s *server) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// begin registers a new request; its reports arrive on the channel, which
// is closed if the server ends first.
func (s *server) begin() (uint64, chan report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return 0, nil, errServerGone
	}
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	s.next++
	ch := make(chan report, 4)
	s.reqs[s.next] = ch
	s.busy++
	return s.next, ch, nil
}

// end forgets a request; the last one arms the idle timer.
func (s *server) end(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reqs, id)
	s.busy--
	if s.busy == 0 && !s.gone {
		s.idle = time.AfterFunc(serverIdle, func() {
			s.mu.Lock()
			idle := s.busy == 0 && !s.gone
			s.mu.Unlock()
			if idle {
				s.shutdown()
			}
		})
	}
}

// shutdown closes the runner's end for both directions: the server sees
// the end of its requests and exits once its steps have, and demux sees
// the end of the reports.
func (s *server) shutdown() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	s.c.shutdown()
}

// viaServer runs the attempt through x's sandbox server. When ctx ends,
// the step's process group gets SIGTERM, then SIGKILL after grace; when
// the step has ended, whatever is left in its group is killed, and its
// output is copied until its pipes close (or for grace more at most).
func (x *Executor) viaServer(ctx context.Context, inv run.Invocation, spec helperSpec, cg *cgroup, grace time.Duration) run.Exit {
	fail := func(err error) run.Exit { return run.Exit{Code: -1, Err: err} }
	s, err := x.server()
	if err != nil {
		return fail(err)
	}
	id, reps, err := s.begin()
	if err != nil {
		return fail(err)
	}
	defer s.end(id)

	// The step's output: one pipe per writer (stdout and stderr given as
	// one writer share one, as os/exec does).
	var readers []*os.File
	var writers []io.Writer
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	pipe := func(w io.Writer) (*os.File, error) {
		r, wf, err := process.OutputPipe()
		if err != nil {
			return nil, err
		}
		if w == nil {
			w = io.Discard
		}
		readers, writers = append(readers, r), append(writers, w)
		return wf, nil
	}
	outW, err := pipe(inv.Stdout)
	if err != nil {
		return fail(err)
	}
	defer outW.Close()
	errW := outW
	if !process.SameWriter(inv.Stdout, inv.Stderr) {
		if errW, err = pipe(inv.Stderr); err != nil {
			return fail(err)
		}
		defer errW.Close()
	}
	err = s.c.write(serverRequest{ID: id, Spec: &spec}, int(outW.Fd()), int(errW.Fd()))
	outW.Close()
	errW.Close()
	if err != nil {
		return fail(fmt.Errorf("sandbox: sending the attempt to the sandbox server: %w", err))
	}
	var copying sync.WaitGroup
	for i, r := range readers {
		copying.Add(1)
		go func(w io.Writer, r *os.File) {
			defer copying.Done()
			_, _ = io.Copy(w, r)
		}(writers[i], r)
	}

	var (
		pgid      int
		status    *uint32
		setup     error
		cancelled bool
		killed    bool
		killAt    <-chan time.Time
		done      = ctx.Done()
	)
	signal := func(sig syscall.Signal) {
		if pgid > 0 {
			_ = syscall.Kill(-pgid, sig)
		}
	}
wait:
	for {
		select {
		case rep, ok := <-reps:
			switch {
			case !ok:
				setup = errServerGone
				break wait
			case rep.Status != nil:
				status = rep.Status
				break wait
			case rep.Err != "":
				setup = &setupError{Stage: rep.Stage, Msg: rep.Err}
				break wait
			case rep.Ready > 0:
				answer := "go"
				if cancelled {
					answer = "abort"
				} else if err := cg.place(rep.Ready); err != nil {
					setup = &setupError{Stage: "placing the step in its cgroup", Msg: err.Error()}
					answer = "abort"
				}
				if err := s.c.write(serverRequest{ID: id, Answer: answer}); err != nil && setup == nil {
					setup = &setupError{Stage: "letting the step run", Msg: err.Error()}
				}
			case rep.Started > 0:
				pgid = rep.Started
				switch {
				case killed:
					signal(syscall.SIGKILL)
				case cancelled:
					signal(syscall.SIGTERM)
				}
			}
		case <-done:
			done, cancelled = nil, true
			signal(syscall.SIGTERM)
			killAt = time.After(grace)
		case <-killAt:
			killAt, killed = nil, true
			signal(syscall.SIGKILL)
		}
	}
	// Whatever the step left in its group goes with it.
	signal(syscall.SIGKILL)
	copied := make(chan struct{})
	go func() {
		copying.Wait()
		close(copied)
	}()
	select {
	case <-copied:
	case <-time.After(grace):
		// Something outside the group holds the output open.
		for _, r := range readers {
			r.Close()
		}
		<-copied
	}
	switch {
	case status != nil:
		return process.ExitOf(syscall.WaitStatus(*status))
	case setup != nil:
		if errors.Is(setup, errServerGone) && pgid > 0 {
			return fail(fmt.Errorf("%w (the step, pid %d, was killed)", setup, pgid))
		}
		return fail(setup)
	}
	return fail(errServerGone)
}
