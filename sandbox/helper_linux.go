package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"stellaops.io/stella/egress"
	"stellaops.io/stella/pack"
)

// Init runs the sandbox helper or the probe's check when this process was
// started as one of them (HelperEnv set, with the helper's descriptors
// inherited), and exits; otherwise it returns at once. Call it
// first thing in main, and in TestMain of any package whose tests run
// the sandbox.
func Init() {
	role, ok := os.LookupEnv(HelperEnv)
	if !ok {
		return
	}
	switch role {
	case roleHelper:
		os.Exit(helperMain())
	case roleServer:
		os.Exit(serverMain())
	case roleCheck:
		os.Exit(checkMain())
	case roleNoop:
		os.Exit(0)
	}
	os.Exit(2)
}

// helper sets up one attempt's sandbox, starts its step and reports how
// the step ended. It is either the sandbox helper process of that one
// attempt, in the attempt's fresh user, network and mount namespaces
// (uid 0 there, every capability), talking to the runner over two pipes;
// or one request of the sandbox server (server_linux.go), on a thread of
// the server's that holds the attempt's own network and mount namespaces.
type helper struct {
	spec helperSpec

	// Per-attempt helper process: the runner's pipes.
	in  *bufio.Reader
	out *os.File

	// Server request: the connection, the request's id, the runner's
	// answers to it, and the step's standard descriptors.
	conn    *serverConn
	id      uint64
	answers <-chan string
	stdio   [3]*os.File
}

func helperMain() int {
	unix.CloseOnExec(helperSpecFD)
	unix.CloseOnExec(helperReportFD)
	h := &helper{in: bufio.NewReader(os.NewFile(helperSpecFD, "sandbox-spec")), out: os.NewFile(helperReportFD, "sandbox-report"),
		stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr}}
	if stage, err := h.run(); err != nil {
		h.send(report{Stage: stage, Err: err.Error()})
		return 1
	}
	return 0
}

func (h *helper) send(r report) {
	if h.conn != nil {
		r.ID = h.id
		h.conn.send(r)
		return
	}
	b, _ := json.Marshal(r)
	_, _ = h.out.Write(append(b, '\n'))
}

// await is the runner's answer once the step is ready to be placed in its
// cgroup: "go" or "abort".
func (h *helper) await() (string, error) {
	if h.conn != nil {
		a, ok := <-h.answers
		if !ok {
			return "", errors.New("the runner went away")
		}
		return a, nil
	}
	line, err := h.in.ReadBytes('\n')
	return strings.TrimSuffix(string(line), "\n"), err
}

// run reads the spec, sets the sandbox up and runs the step; on failure
// it names the setup step that failed.
func (h *helper) run() (string, error) {
	line, err := h.in.ReadBytes('\n')
	if err != nil {
		return "reading the spec", err
	}
	if err := json.Unmarshal(line, &h.spec); err != nil {
		return "reading the spec", err
	}
	return h.setUp()
}

// setUp sets the sandbox up in the namespaces the calling thread is in,
// and runs the step.
func (h *helper) setUp() (string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "making mount propagation private", err
	}
	if err := loopbackUp(); err != nil {
		return "bringing up loopback", err
	}
	if stage, err := h.mount(); err != nil {
		return stage, err
	}
	if h.spec.Network == pack.NetworkAllowlist {
		fw, err := egress.Inside(h.spec.Socket, h.spec.Allowlist)
		if err != nil {
			return "starting the network allowlist forwarder (gateway " + h.spec.Socket + ")", err
		}
		defer fw.Close()
	}
	return h.step()
}

// mount covers the private and hidden folders, binds the step's own back,
// and puts the generated /etc/hosts (and /etc/resolv.conf) in place.
func (h *helper) mount() (string, error) {
	fds := map[int]int{}
	wasRO := map[int]bool{} // a bind-back's folder was read-only on the host: it stays so
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	// Open what is bound back before anything hides it.
	for _, op := range h.spec.Mounts {
		if op.Kind != opBind {
			continue
		}
		if op.Src < 0 || op.Src >= len(h.spec.Binds) {
			return "binding " + op.Path + " back in", errors.New("no such source")
		}
		fd, err := unix.Open(h.spec.Binds[op.Src], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "opening " + h.spec.Binds[op.Src], err
		}
		fds[op.Src] = fd
		var st unix.Statfs_t
		if err := unix.Fstatfs(fd, &st); err != nil {
			return "opening " + h.spec.Binds[op.Src], err
		}
		if st.Flags&unix.ST_RDONLY != 0 {
			wasRO[op.Src] = true
		}
	}
	// Everything read-only, before the private tmpfs and the bind-backs
	// (made writable again below) are mounted.
	if err := readonlyHost(h.spec.Remount); err != nil {
		return "making the host file system read-only", err
	}
	var private []string // tmpfs covers of the private folders
	for _, op := range h.spec.Mounts {
		switch op.Kind {
		case opTmpfs:
			stage := "mounting a private tmpfs on " + op.Path
			if op.Hide {
				stage = "hiding " + op.Path
			} else {
				private = append(private, op.Path)
			}
			if err := os.MkdirAll(op.Path, 0o755); err != nil {
				return stage, err
			}
			if err := unix.Mount("tmpfs", op.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode="+op.Mode); err != nil {
				return stage, err
			}
		case opBind:
			stage := "binding " + op.Path + " back in"
			if err := os.MkdirAll(op.Path, 0o755); err != nil {
				return stage, err
			}
			src := "/proc/self/fd/" + strconv.Itoa(fds[op.Src])
			if err := unix.Mount(src, op.Path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return stage, err
			}
			// A bind of a folder on a read-only mount is read-only.
			if !wasRO[op.Src] {
				if err := writable(op.Path, h.spec.Remount); err != nil {
					return "making " + op.Path + " writable", err
				}
			}
		}
	}
	if err := placeFile("/etc/hosts", egress.Hosts(), private); err != nil {
		return "writing /etc/hosts", err
	}
	if h.spec.Network == pack.NetworkAllowlist {
		if err := placeFile("/etc/resolv.conf", egress.ResolvConf(), private); err != nil {
			return "writing /etc/resolv.conf", err
		}
	}
	for _, op := range h.spec.Mounts {
		if op.Kind != opReadonly {
			continue
		}
		if err := unix.Mount("", op.Path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return "making the tmpfs hiding " + op.Path + " read-only", err
		}
	}
	return "", nil
}

// placeFile makes the step see content, read-only, at path (through its
// symlinks): bound over the file when there is one, written in place when
// the path falls in one of the private tmpfs; a file missing on the host
// stays missing (nothing is ever created on the host).
func placeFile(path string, content []byte, private []string) error {
	if len(private) == 0 {
		return nil
	}
	target := path
	for range 40 {
		fi, err := os.Lstat(target)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(target)
			if err != nil {
				return err
			}
			if !filepath.IsAbs(l) {
				l = filepath.Join(filepath.Dir(target), l)
			}
			target = filepath.Clean(l)
			continue
		case err == nil && fi.Mode().IsRegular():
			f, err := os.CreateTemp(private[0], ".stella-sandbox-*")
			if err != nil {
				return err
			}
			staged := f.Name()
			defer os.Remove(staged)
			_, err = f.Write(content)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = unix.Mount(staged, target, "", unix.MS_BIND, "")
			}
			if err == nil {
				err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
			}
			return err
		case errors.Is(err, fs.ErrNotExist):
			for _, p := range private {
				if under(target, p) {
					if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
						return err
					}
					return os.WriteFile(target, content, 0o444)
				}
			}
			return nil
		case err != nil:
			return err
		default:
			return fmt.Errorf("%s is not a regular file", target)
		}
	}
	return fmt.Errorf("%s: too many symlinks", path)
}

// loopbackUp sets IFF_UP on lo.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// step starts the step, lets the runner place it in its cgroup when asked
// to, waits for it and reports its wait status. A helper process forwards
// SIGTERM and SIGINT to it; for a server request the runner signals the
// step's own process group itself.
func (h *helper) step() (string, error) {
	var st started
	if h.conn != nil {
		// This thread is the request's own, locked and never unlocked.
		st = h.start()
	} else {
		ch := make(chan started, 1)
		go func() {
			// The step is forked from this goroutine's thread and inherits
			// what dropPrivileges sets on it; the thread is never unlocked,
			// so it goes when the goroutine does and nothing else runs on it.
			runtime.LockOSThread()
			ch <- h.start()
		}()
		st = <-ch
	}
	if st.err != nil {
		return st.stage, st.err
	}
	var ws syscall.WaitStatus
	if st.ended != nil {
		ws = *st.ended
	} else {
		stop := make(chan struct{})
		if h.conn == nil {
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			go func() {
				for {
					select {
					case s := <-sigs:
						_ = st.cmd.Process.Signal(s)
					case <-stop:
						return
					}
				}
			}()
		}
		err := st.cmd.Wait()
		close(stop)
		if st.cmd.ProcessState == nil {
			return "waiting for the step", err
		}
		var ok bool
		if ws, ok = st.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok {
			return "waiting for the step", errors.New("no wait status")
		}
	}
	status := uint32(ws)
	h.send(report{Status: &status})
	return "", nil
}

// started is the outcome of helper.start.
type started struct {
	cmd   *exec.Cmd
	ended *syscall.WaitStatus // it ended before it was let run
	stage string
	err   error
}

// start starts the step on the calling thread, which must be locked and
// is left without the means to give the step a capability. When the step
// must be placed in its cgroup or given rlimits before it runs its first
// instruction, it is stopped at its exec (ptrace) until it is.
func (h *helper) start() started {
	const stage = "starting the step"
	if err := dropPrivileges(); err != nil {
		return started{stage: "dropping capabilities for the step", err: err}
	}
	s := h.spec.Step
	rl := s.Rlimits
	if h.spec.Nproc > 0 {
		// RLIMIT_NPROC counts the tasks of the user namespace, the
		// helper's threads too.
		rl = append(rl, rlimit{Resource: unix.RLIMIT_NPROC, Name: "RLIMIT_NPROC", Value: uint64(h.spec.Nproc) + uint64(threads())})
	}
	hold := h.spec.Place || len(rl) > 0
	// A server's step leads a process group of its own, which the runner
	// signals; a helper process's step stays in the helper's group.
	cmd := &exec.Cmd{Path: s.Path, Args: s.Argv, Env: s.Env, Dir: s.Dir, Stdin: h.stdio[0], Stdout: h.stdio[1], Stderr: h.stdio[2],
		SysProcAttr: &syscall.SysProcAttr{Ptrace: hold, Setpgid: h.conn != nil}}
	if err := cmd.Start(); err != nil {
		if hold {
			err = fmt.Errorf("%w (stopped at its exec to set its limits)", err)
		}
		return started{stage: stage, err: err}
	}
	if !hold {
		h.send(report{Started: cmd.Process.Pid})
		return started{cmd: cmd}
	}
	pid := cmd.Process.Pid
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			_ = cmd.Process.Kill()
			return started{stage: "waiting for the step to stop at its exec", err: err}
		}
		if !ws.Stopped() {
			// Killed (cancelled) before it ran: it is reaped already.
			w := syscall.WaitStatus(ws)
			return started{ended: &w}
		}
		if ws.StopSignal() == unix.SIGTRAP {
			break // at its exec
		}
		// A signal (SIGTERM of a cancellation) arrived before the exec:
		// deliver it.
		if err := unix.PtraceCont(pid, int(ws.StopSignal())); err != nil {
			_ = cmd.Process.Kill()
			return started{stage: "waiting for the step to stop at its exec", err: err}
		}
	}
	fail := func(stage string, err error) started {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = unix.PtraceDetach(pid)
		_ = cmd.Wait()
		return started{stage: stage, err: err}
	}
	for _, r := range rl {
		lim := unix.Rlimit{Cur: r.Value, Max: r.Value}
		if err := unix.Prlimit(pid, r.Resource, &lim, nil); err != nil {
			return fail(fmt.Sprintf("setting the step's %s to %d", r.Name, r.Value), err)
		}
	}
	if h.spec.Place {
		h.send(report{Ready: pid})
		answer, err := h.await()
		if err != nil || answer != "go" {
			if err == nil {
				err = errors.New("the runner could not place it")
			}
			return fail("waiting for the step to be placed in its cgroup", err)
		}
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fail("letting the step run", err)
	}
	h.send(report{Started: pid})
	return started{cmd: cmd}
}

// threads is how many threads this process has.
func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return runtime.GOMAXPROCS(0) + 4
}

// Securebits (linux/securebits.h).
const (
	secbitNoroot                  = 1 << 0
	secbitNorootLocked            = 1 << 1
	secbitNoSetuidFixup           = 1 << 2
	secbitNoSetuidFixupLocked     = 1 << 3
	secbitKeepCapsLocked          = 1 << 5
	secbitNoCapAmbientRaise       = 1 << 6
	secbitNoCapAmbientRaiseLocked = 1 << 7
)

// dropPrivileges makes sure nothing the calling thread executes gets a
// capability, even as uid 0 of the user namespace: its bounding set is
// emptied, root is not special at execve (SECBIT_NOROOT, locked), its
// inheritable and ambient sets are cleared and no_new_privs is set. The
// thread itself keeps its effective capabilities (it may still need
// CAP_SYS_PTRACE to hold the step at its exec); the step cannot use them,
// nor trace the helper, which has capabilities it lacks.
func dropPrivileges() error {
	bits := secbitNoroot | secbitNorootLocked | secbitNoSetuidFixup | secbitNoSetuidFixupLocked |
		secbitKeepCapsLocked | secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLocked
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	for c := 0; c <= capLast(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("bounding set, capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("ambient set: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// capLast is the highest capability this kernel knows.
func capLast() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 63
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 63
	}
	return n
}

// checkMain is the step Probe runs in the sandbox: loopback is up and
// usable, and the step has no capability. It writes what failed.
func checkMain() int {
	if err := check(); err != nil {
		_, _ = os.Stdout.WriteString(err.Error())
		return 1
	}
	return 0
}

func check() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket: %w", err)
	}
	ifr, err := unix.NewIfreq("lo")
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("reading loopback's flags: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP == 0 {
		return errors.New("loopback is not up")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening on loopback: %w", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("connecting over loopback: %w", err)
	}
	c.Close()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !bytes.Contains(b, []byte(want+"\n")) {
			return fmt.Errorf("dropping privileges: the step's status lacks %q", want)
		}
	}
	return nil
}
