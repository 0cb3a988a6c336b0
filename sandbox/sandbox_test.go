//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/egress"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/run"
	"stellaops.io/stella/run/process"
)

func TestMain(m *testing.M) {
	Init()
	if mode := os.Getenv(stepEnv); mode != "" {
		os.Exit(stepMain(mode, os.Args[1:]))
	}
	if os.Getenv(runnerEnv) != "" {
		os.Exit(runnerMain())
	}
	if os.Getenv(noUsernsEnv) != "" {
		os.Exit(noUsernsMain())
	}
	os.Exit(m.Run())
}

const testPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var root = os.Getuid() == 0

// sandboxTests run as this process's user, and again as nobody
// (TestUnprivileged) when that is root: the same runs must end the same.
var sandboxTests = []struct {
	name string
	f    func(t *testing.T)
}{
	{"probe", testProbe},
	{"probe-without-user-namespaces", testProbeWithoutUserns},
	{"network-none", testNetworkNone},
	{"hide", testHide},
	{"readonly-host", testReadonlyHost},
	{"no-capabilities", testNoCapabilities},
	{"exit-status", testExitStatus},
	{"cancel", testCancel},
	{"leftovers", testLeftovers},
	{"memory-limit", testMemoryLimit},
	{"pids-limit", testPidsLimit},
	{"limits-recorded", testLimitsRecorded},
	{"setup-errors", testSetupErrors},
	{"allowlist", testAllowlist},
	{"reap", testReap},
}

func TestSandbox(t *testing.T) {
	t.Logf("running as uid %d", os.Getuid())
	for _, tc := range sandboxTests {
		t.Run(tc.name, tc.f)
	}
}

// syncBuffer collects a step's output; notify, when set, is closed at the
// first line equal to "ready".
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	ready  chan struct{}
	closed bool
}

func newBuffer() *syncBuffer { return &syncBuffer{ready: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if !b.closed && strings.Contains(b.buf.String(), "ready\n") {
		b.closed = true
		close(b.ready)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var tokens atomic.Int64

// invocation is a step of the test binary itself in the given mode.
func selfStep(t *testing.T, mode string, args ...string) run.Invocation {
	return run.Invocation{Command: append([]string{"/proc/self/exe"}, args...), Env: map[string]string{stepEnv: mode}}
}

func shStep(script string) run.Invocation {
	return run.Invocation{Command: []string{"sh", "-c", script}}
}

// execute runs inv with x (the defaults filled in: a folder, a token,
// output collected) and returns how it ended and what it wrote.
func execute(t *testing.T, x run.Executor, inv run.Invocation) (run.Exit, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := newBuffer()
	fill(t, &inv, out)
	t.Cleanup(func() { _ = (&Executor{}).Reap(inv.Token) })
	ex := x.Execute(ctx, inv)
	return ex, out.String()
}

func fill(t *testing.T, inv *run.Invocation, out io.Writer) {
	if inv.Dir == "" {
		inv.Dir = t.TempDir()
	}
	if inv.Token == "" {
		inv.Token = fmt.Sprintf("test|%d|%d|%d", os.Getpid(), time.Now().UnixNano(), tokens.Add(1))
	}
	inv.Stdout, inv.Stderr = out, out
}

func newExecutor() *Executor {
	return &Executor{Env: []string{testPath, "LANG=C.UTF-8"}, Grace: time.Second}
}

// hostDir is a new folder outside the sandbox's private folders (/tmp,
// /var/tmp, ...), for what a test means to hide.
func hostDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv(hostDirEnv)
	if base == "" {
		base = "/var/lib"
		if !root {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			base = home
		}
	}
	d, err := os.MkdirTemp(base, "stella-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func mustExit(t *testing.T, ex run.Exit, out string, code int, signal string) {
	t.Helper()
	if ex.Err != nil || ex.Code != code || ex.Signal != signal {
		t.Fatalf("exit = code %d signal %q err %v, want code %d signal %q\noutput:\n%s", ex.Code, ex.Signal, ex.Err, code, signal, out)
	}
}

func testProbe(t *testing.T) {
	if err := Probe(context.Background()); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	t.Setenv(ForceUnavailableEnv, "1")
	err := Probe(context.Background())
	if !errors.Is(err, run.ErrSandboxUnavailable) || !strings.Contains(err.Error(), ForceUnavailableEnv) {
		t.Fatalf("Probe with %s=1: %v, want run.ErrSandboxUnavailable naming it", ForceUnavailableEnv, err)
	}
	// Execute fails closed: nothing runs.
	dir := t.TempDir()
	ex, out := execute(t, newExecutor(), shStep("touch "+filepath.Join(dir, "ran")))
	if !errors.Is(ex.Err, run.ErrSandboxUnavailable) {
		t.Fatalf("Execute with %s=1: %+v, want run.ErrSandboxUnavailable\n%s", ForceUnavailableEnv, ex, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Fatal("the step ran although the sandbox was unavailable")
	}
}

// noUsernsEnv starts this test binary as a process that may create no
// user namespace, to probe.
const noUsernsEnv = "STELLA_SANDBOX_TEST_NO_USERNS"

func noUsernsMain() int {
	// The limit is per user namespace: this one, of the test's making.
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
		fmt.Println("setting max_user_namespaces:", err)
		return 1
	}
	err := Probe(context.Background())
	fmt.Printf("unavailable=%v\n%v\n", errors.Is(err, run.ErrSandboxUnavailable), err)
	return 0
}

// testProbeWithoutUserns: where no user namespace can be made, Probe fails
// and says so.
func testProbeWithoutUserns(t *testing.T) {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{testPath, noUsernsEnv + "=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "unavailable=true\n" + run.ErrSandboxUnavailable.Error() + ": creating a user namespace: " + syscall.ENOSPC.Error() + "\n"
	if string(out) != want {
		t.Fatalf("Probe where no user namespace can be made:\n%s\nwant:\n%s", out, want)
	}
}

// serve accepts and closes connections on ln until the test ends.
func serve(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func testNetworkNone(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	targets := []string{"127.0.0.1:" + port}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			targets = append(targets, net.JoinHostPort(ip.IP.String(), port))
		}
	}
	sockets := []string{filepath.Join(t.TempDir(), "service.sock"), fmt.Sprintf("@stella-sandbox-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	if root {
		d, err := os.MkdirTemp("/run", "stella-sandbox-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		sockets = append(sockets, filepath.Join(d, "service.sock"))
	}
	for _, s := range sockets {
		l, err := net.Listen("unix", s)
		if err != nil {
			t.Fatal(err)
		}
		serve(t, l)
	}
	targets = append(targets, sockets...)
	// Each is reachable from the host: the step's failures are its
	// isolation, not a broken server.
	for _, target := range targets {
		network := "tcp"
		if strings.HasPrefix(target, "/") || strings.HasPrefix(target, "@") {
			network = "unix"
		}
		c, err := net.DialTimeout(network, target, 2*time.Second)
		if err != nil {
			t.Fatalf("from the host, %s: %v", target, err)
		}
		c.Close()
	}

	ex, out := execute(t, newExecutor(), selfStep(t, "net", targets...))
	mustExit(t, ex, out, 0, "")
	var res map[string]string
	if err := lastJSON(out, &res); err != nil {
		t.Fatal(err)
	}
	for _, target := range targets {
		if !strings.HasPrefix(res[target], "error") {
			t.Errorf("the step reached %s: %q", target, res[target])
		}
	}
	if res["loopback"] != "ok" {
		t.Errorf("loopback inside the sandbox: %q, want ok", res["loopback"])
	}
	if ex.Isolation == nil || ex.Isolation.Network != "none" || !cmp.Equal(ex.Isolation.Namespaces, []string{"user", "net", "mount"}) {
		t.Errorf("isolation = %+v, want network none in user, net and mount namespaces", ex.Isolation)
	}
	t.Logf("from the sandbox: %v", res)
}

func testHide(t *testing.T) {
	home := hostDir(t)
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(home, "keys", "private.key")
	write(other, "not for steps", 0o600)
	otherRun := filepath.Join(home, "runs", "r2", "work", "data.txt")
	write(otherRun, "another run's", 0o644)
	work := filepath.Join(home, "runs", "r1", "work")
	secretDir := filepath.Join(home, "runs", "r1", "secrets", "a1")
	secret := filepath.Join(secretDir, "TOKEN")
	write(secret, "s3cr3t", 0o600)
	outputs := filepath.Join(home, "runs", "r1", "outputs", "step.1.out")
	write(outputs, "", 0o600)
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}

	x := newExecutor()
	x.Hide, x.Work = []string{home}, work
	inv := selfStep(t, "hide", home, other, otherRun, secret, work, outputs)
	inv.Dir, inv.SecretDir = work, secretDir
	inv.Env[run.OutputEnv] = outputs
	ex, out := execute(t, x, inv)
	mustExit(t, ex, out, 0, "")
	var res map[string]string
	if err := lastJSON(out, &res); err != nil {
		t.Fatal(err)
	}
	if res["list"] != "runs" {
		t.Errorf("the step lists the hidden folder as %q, want only the way to its own folders (runs)", res["list"])
	}
	for _, k := range []string{"other", "otherRun", "intoHidden"} {
		if !strings.HasPrefix(res[k], "error") {
			t.Errorf("%s: %q, want an error", k, res[k])
		}
	}
	if res["secret"] != "s3cr3t" {
		t.Errorf("secret file: %q", res["secret"])
	}
	if res["work"] != "ok" || res["outputs"] != "ok" {
		t.Errorf("writing its work and outputs files: %q, %q", res["work"], res["outputs"])
	}
	if b, err := os.ReadFile(filepath.Join(work, "made-by-step.txt")); err != nil || string(b) != "from the step\n" {
		t.Errorf("the step's work file on the host: %q, %v", b, err)
	}
	if b, err := os.ReadFile(outputs); err != nil || string(b) != "from the step\n" {
		t.Errorf("the step's outputs file on the host: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(home, "planted.txt")); err == nil {
		t.Error("the step planted a file in the hidden folder")
	}
}

// testReadonlyHost: the step cannot create files anywhere on the host
// (read-only file system, also as root, whose permission checks would
// pass), but it writes its own folders, outputs file, the private /tmp and
// /dev/null; with mount_setattr and with the fallback that remounts each
// mount.
func testReadonlyHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		remount bool
	}{{"mount_setattr", false}, {"remount", true}} {
		t.Run(tc.name, func(t *testing.T) { readonlyHostRun(t, tc.remount) })
	}
}

func readonlyHostRun(t *testing.T, remount bool) {
	host := hostDir(t)
	work := filepath.Join(host, "work") // neither hidden nor private: bound onto itself
	secretDir := filepath.Join(host, "secrets")
	secret := filepath.Join(secretDir, "TOKEN")
	outputs := filepath.Join(host, "outputs", "step.out")
	for _, d := range []string{work, secretDir, filepath.Dir(outputs)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(secret, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outputs, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	runWork := t.TempDir() // under /tmp: bound back into the private /tmp

	tag := fmt.Sprintf("stella-ro-probe-%d-%d", os.Getpid(), tokens.Add(1))
	system := []string{filepath.Join("/etc", tag), filepath.Join("/usr", tag), filepath.Join("/var/lib", tag), filepath.Join("/", tag),
		"mkdir:" + filepath.Join("/etc", tag+".d")}
	mine := filepath.Join(host, tag) // the runner's own folder, but not the step's
	for _, p := range append(system, mine) {
		p = strings.TrimPrefix(p, "mkdir:")
		t.Cleanup(func() { os.Remove(p) })
	}
	private := []string{filepath.Join("/tmp", tag), filepath.Join("/var/tmp", tag), filepath.Join("/dev/shm", tag), filepath.Join("/run", tag)}
	own := []string{filepath.Join(work, "w.txt"), filepath.Join(runWork, "r.txt"), outputs, "/dev/null", "/dev/zero", "read:" + secret}
	args := append(append(append(append([]string{}, system...), mine), private...), own...)

	x := newExecutor()
	x.Work, x.remount = runWork, remount
	inv := selfStep(t, "write", args...)
	inv.Dir, inv.SecretDir = work, secretDir
	inv.Env[run.OutputEnv] = outputs
	ex, out := execute(t, x, inv)
	mustExit(t, ex, out, 0, "")
	var res map[string]string
	if err := lastJSON(out, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("from the sandbox: %v", res)
	rofs := syscall.EROFS.Error()
	for _, p := range append(system, mine) {
		got := res[p]
		switch {
		case !strings.HasPrefix(got, "error"):
			t.Errorf("%s: %q, want an error", p, got)
		case (root || p == mine) && !strings.Contains(got, rofs):
			t.Errorf("%s: %q, want %q", p, got, rofs)
		case !strings.Contains(got, rofs) && !strings.Contains(got, syscall.EACCES.Error()):
			t.Errorf("%s: %q, want %q or permission denied", p, got, rofs)
		}
		if _, err := os.Lstat(strings.TrimPrefix(p, "mkdir:")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is on the host after the step (%v)", p, err)
		}
	}
	for _, p := range append(private, own...) {
		want := "ok"
		if strings.HasPrefix(p, "read:") {
			want = "ok: s3cr3t"
		}
		if res[p] != want {
			t.Errorf("%s: %q, want %q", p, res[p], want)
		}
	}
	for _, p := range private {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, written in the private folder, is on the host (%v)", p, err)
			os.Remove(p)
		}
	}
	for _, p := range own[:3] {
		if b, err := os.ReadFile(p); err != nil || string(b) != "from the step\n" {
			t.Errorf("the step's %s on the host: %q, %v", p, b, err)
		}
	}
}

// TestReadonlySource: a folder of the step's own that is read-only on the
// host (its secret folder on a read-only mount) is bound back read-only,
// as it is: the step reads it, and the sandbox does not fail trying to
// make it writable (a user namespace may not).
func TestReadonlySource(t *testing.T) {
	if !root {
		t.Skip("mounting a read-only folder on the host needs root")
	}
	if err := Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	host := hostDir(t)
	secretDir := filepath.Join(host, "secrets")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", secretDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs on the host: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(secretDir, syscall.MNT_DETACH) })
	secret := filepath.Join(secretDir, "TOKEN")
	if err := os.WriteFile(secret, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("", secretDir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
		t.Fatal(err)
	}
	for _, remount := range []bool{false, true} {
		x := newExecutor()
		x.remount = remount
		inv := selfStep(t, "write", "read:"+secret, filepath.Join(secretDir, "new"))
		inv.SecretDir = secretDir
		ex, out := execute(t, x, inv)
		mustExit(t, ex, out, 0, "")
		var res map[string]string
		if err := lastJSON(out, &res); err != nil {
			t.Fatal(err)
		}
		if res["read:"+secret] != "ok: s3cr3t" || !strings.Contains(res[filepath.Join(secretDir, "new")], syscall.EROFS.Error()) {
			t.Errorf("remount %v: %v, want the secret read and nothing written", remount, res)
		}
	}
}

func testNoCapabilities(t *testing.T) {
	ex, out := execute(t, newExecutor(), selfStep(t, "caps"))
	mustExit(t, ex, out, 0, "")
	var res map[string]string
	if err := lastJSON(out, &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if res[k] != "0000000000000000" {
			t.Errorf("%s = %q, want none", k, res[k])
		}
	}
	if res["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", res["NoNewPrivs"])
	}
	if !strings.HasPrefix(res["Uid"], "0\t") {
		t.Errorf("Uid = %q, want 0 (of the step's user namespace)", res["Uid"])
	}
	for _, k := range []string{"umount /run", "mount tmpfs", "lo down"} {
		if !errorsIsPerm(res[k]) {
			t.Errorf("%s: %q, want not permitted", k, res[k])
		}
	}
	if _, err := exec.LookPath("umount"); err == nil {
		ex, out := execute(t, newExecutor(), shStep("umount /run"))
		if ex.Err != nil || ex.Code == 0 {
			t.Errorf("umount /run in the step: %+v, want it to fail\n%s", ex, out)
		}
	}
}

// testExitStatus: the step's own exit code or signal, as run/process
// reports them.
func testExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		code   int
		signal string
	}{
		{"exit 0", 0, ""},
		{"exit 3", 3, ""},
		{"kill -KILL $$", -1, "killed"},
		{"kill -TERM $$", -1, "terminated"},
	} {
		ex, out := execute(t, newExecutor(), shStep(tc.script))
		mustExit(t, ex, out, tc.code, tc.signal)
		pex, pout := execute(t, &process.Executor{Env: []string{testPath}}, shStep(tc.script))
		mustExit(t, pex, pout, tc.code, tc.signal)
	}
}

// testCancel: TERM, then KILL after the grace, like run/process.
func testCancel(t *testing.T) {
	const grace = 300 * time.Millisecond
	for _, tc := range []struct {
		mode   string
		signal string
	}{{"sleep", "terminated"}, {"ignore-term", "killed"}} {
		for name, x := range map[string]run.Executor{
			"sandbox": &Executor{Env: []string{testPath}, Grace: grace},
			"process": &process.Executor{Env: []string{testPath}, Grace: grace},
		} {
			inv := selfStep(t, tc.mode)
			out := newBuffer()
			fill(t, &inv, out)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-out.ready:
				case <-time.After(time.Minute):
				}
				cancel()
			}()
			start := time.Now()
			ex := x.Execute(ctx, inv)
			took := time.Since(start)
			cancel()
			mustExit(t, ex, out.String(), -1, tc.signal)
			if tc.signal == "killed" && took < grace {
				t.Errorf("%s: a step ignoring SIGTERM was killed after %s, before its grace of %s", name, took, grace)
			}
			if took > 10*time.Second {
				t.Errorf("%s: stopping the step took %s", name, took)
			}
		}
	}
}

// testLeftovers: what a step leaves behind in its group is killed when it
// ends, at once, even when it holds the step's output open; with a cgroup
// (limits set, root here), so is what left its group.
func testLeftovers(t *testing.T) {
	x := &Executor{Env: []string{testPath}, Grace: 5 * time.Second}
	script := "sleep 60 & (sleep 60 &); echo done"
	var lim pack.Sandbox
	if cgroupsHere() {
		script = "setsid sleep 60 >/dev/null 2>&1 & " + script
		lim.Limits.Pids = 64
	}
	inv := shStep(script)
	inv.Sandbox = lim
	inv.Token = fmt.Sprintf("leftovers|%d|%d", os.Getpid(), time.Now().UnixNano())
	start := time.Now()
	ex, out := execute(t, x, inv)
	mustExit(t, ex, out, 0, "")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a step that left processes holding its output took %s to end", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(procsWith(inv.Token)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := procsWith(inv.Token); len(left) > 0 {
		t.Errorf("processes %v of the step outlived it", left)
	}
}

func limitRecord(t *testing.T, ex run.Exit, name string) run.LimitRecord {
	t.Helper()
	if ex.Isolation == nil {
		t.Fatalf("no isolation recorded: %+v", ex)
	}
	for _, l := range ex.Isolation.Limits {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no record of limit %s in %+v", name, ex.Isolation.Limits)
	return run.LimitRecord{}
}

// cgroupsHere: this runner can make cgroups (root on this kind of host);
// otherwise the limits fall back to rlimits.
func cgroupsHere() bool {
	cg := newCgroup("probe", []string{ctrlMemory, ctrlPids})
	defer cg.remove()
	_, ok := cg.has(ctrlMemory)
	_, ok2 := cg.has(ctrlPids)
	return ok && ok2
}

func testMemoryLimit(t *testing.T) {
	x := newExecutor()
	lim := pack.Sandbox{Limits: pack.Limits{MemoryMiB: 64}}
	// Within the limit: succeeds.
	inv := shStep("head -c 16m /dev/zero | tail -n1 >/dev/null")
	inv.Sandbox = lim
	ex, out := execute(t, x, inv)
	mustExit(t, ex, out, 0, "")
	// Beyond it (tail keeps a line of 512 MiB): stopped.
	inv = shStep("head -c 512m /dev/zero | tail -n1 >/dev/null")
	inv.Sandbox = lim
	ex, out = execute(t, x, inv)
	if ex.Err != nil || ex.Code == 0 && ex.Signal == "" {
		t.Fatalf("a step beyond its memory limit: %+v, want it stopped\n%s", ex, out)
	}
	rec := limitRecord(t, ex, "memoryMiB")
	if cgroupsHere() {
		if rec.Enforced != run.EnforcedCgroupV1 && rec.Enforced != run.EnforcedCgroupV2 {
			t.Errorf("memory limit enforced by %q, want a cgroup", rec.Enforced)
		}
		if ex.Limit != "memoryMiB" {
			t.Errorf("Exit.Limit = %q, want memoryMiB", ex.Limit)
		}
	} else if rec.Enforced != run.EnforcedRlimit || !strings.Contains(rec.Note, "RLIMIT_AS") {
		t.Errorf("memory limit record = %+v, want the rlimit fallback", rec)
	}
	if rec.Value != "64" {
		t.Errorf("memory limit value %q", rec.Value)
	}
	t.Logf("over the limit: %+v; record %+v", ex, rec)
}

func testPidsLimit(t *testing.T) {
	const pids = 16
	x := newExecutor()
	lim := pack.Sandbox{Limits: pack.Limits{Pids: pids}}
	inv := shStep("sleep 0 & sleep 0 & wait")
	inv.Sandbox = lim
	ex, out := execute(t, x, inv)
	mustExit(t, ex, out, 0, "")

	// A fork bomb, kept finite should the limit not hold.
	inv = shStep(`i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); echo $i; done; wait`)
	inv.Sandbox = lim
	start := time.Now()
	ex, out = execute(t, x, inv)
	if ex.Err != nil || ex.Code == 0 && ex.Signal == "" {
		t.Fatalf("a fork bomb: %+v, want it to fail\n%s", ex, out)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the fork bomb ran for %s", time.Since(start))
	}
	spawned := 0
	for _, line := range strings.Split(out, "\n") {
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			spawned = n
		}
	}
	rec := limitRecord(t, ex, "pids")
	if cgroupsHere() {
		if spawned >= pids {
			t.Errorf("the fork bomb started %d processes beside its shell, beyond pids %d", spawned, pids)
		}
		if ex.Limit != "pids" {
			t.Errorf("Exit.Limit = %q, want pids", ex.Limit)
		}
	} else {
		if rec.Enforced != run.EnforcedRlimit || !strings.Contains(rec.Note, "RLIMIT_NPROC") {
			t.Errorf("pids limit record = %+v, want the rlimit fallback", rec)
		}
		if spawned >= 200 {
			t.Errorf("the fork bomb was not contained: %d processes", spawned)
		}
	}
	t.Logf("fork bomb: %+v after %d processes; record %+v", ex, spawned, rec)
}

func testLimitsRecorded(t *testing.T) {
	inv := shStep(`cat /sys/fs/cgroup/cpu$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3)/cpu.cfs_quota_us 2>/dev/null || echo none`)
	inv.Sandbox = pack.Sandbox{Limits: pack.Limits{CPU: 0.5, Timeout: pack.Duration(90 * time.Second)}}
	ex, out := execute(t, newExecutor(), inv)
	mustExit(t, ex, out, 0, "")
	cpu, timeout := limitRecord(t, ex, "cpu"), limitRecord(t, ex, "timeout")
	if timeout.Enforced != run.EnforcedRunner || timeout.Value != "1m30s" {
		t.Errorf("timeout record %+v", timeout)
	}
	if cpu.Value != "0.5" {
		t.Errorf("cpu record %+v", cpu)
	}
	cg := newCgroup("probe", []string{ctrlCPU})
	_, cgCPU := cg.has(ctrlCPU)
	cg.remove()
	switch {
	case cgCPU && cpu.Enforced == run.EnforcedCgroupV1:
		if strings.TrimSpace(out) != "50000" {
			t.Errorf("the step's cpu.cfs_quota_us = %q, want 50000", out)
		}
	case cgCPU:
		if cpu.Enforced != run.EnforcedCgroupV2 {
			t.Errorf("cpu record %+v, want a cgroup", cpu)
		}
	default:
		if cpu.Enforced != run.EnforcedNone || cpu.Note == "" {
			t.Errorf("cpu record %+v, want none with a note", cpu)
		}
	}
	t.Logf("limits: %+v", ex.Isolation.Limits)
}

func testSetupErrors(t *testing.T) {
	// A program inside a hidden folder is not there for the step.
	home := hostDir(t)
	tool := filepath.Join(home, "bin", "tool")
	if err := os.MkdirAll(filepath.Dir(tool), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	x := newExecutor()
	x.Hide = []string{home}
	ex, out := execute(t, x, run.Invocation{Command: []string{tool}})
	var se *setupError
	if !errors.As(ex.Err, &se) || se.Stage != "starting the step" || !strings.Contains(se.Msg, tool) ||
		!strings.Contains(se.Msg, syscall.ENOENT.Error()) || ex.Code != -1 {
		t.Fatalf("running a hidden program: %+v (%v), want the setup step that failed\n%s", ex, ex.Err, out)
	}
	pex, _ := execute(t, &process.Executor{Env: []string{testPath}}, run.Invocation{Command: []string{tool}})
	if pex.Err != nil || pex.Code != 0 {
		t.Fatalf("unisolated, the same program: %+v", pex)
	}

	// A work folder that does not exist.
	missing := filepath.Join(t.TempDir(), "missing")
	ex, _ = execute(t, newExecutor(), run.Invocation{Command: []string{"true"}, Dir: missing})
	if ex.Err == nil || !strings.Contains(ex.Err.Error(), missing) {
		t.Errorf("a missing folder: %+v, want an error naming it", ex)
	}

	// A network mode it does not know.
	inv := run.Invocation{Command: []string{"true"}, Sandbox: pack.Sandbox{Network: pack.Network{Mode: "host"}}}
	ex, _ = execute(t, newExecutor(), inv)
	if ex.Err == nil || !strings.Contains(ex.Err.Error(), `"host"`) {
		t.Errorf("network mode host: %+v, want an error naming it", ex)
	}
}

func testAllowlist(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	var mu sync.Mutex
	var blocked []string
	inv := selfStep(t, "net", ln.Addr().String())
	inv.Sandbox = pack.Sandbox{Network: pack.Network{Mode: pack.NetworkAllowlist, Allowlist: []string{"registry.example:443"}}}
	inv.Blocked = func(dest, reason string) {
		mu.Lock()
		blocked = append(blocked, dest)
		mu.Unlock()
	}
	gw, gwErr := egress.Listen(filepath.Join(t.TempDir(), "probe.sock"), egress.Rules{}, nil)
	ex, out := execute(t, newExecutor(), inv)
	if gwErr != nil {
		// egress is not there yet: the step must not run without its
		// allowlist network, and the error says which part failed.
		if ex.Err == nil || !strings.Contains(ex.Err.Error(), "network allowlist: starting the gateway") || out != "" {
			t.Fatalf("allowlist without a gateway: %+v, want an error naming the gateway, nothing run\n%s", ex, out)
		}
		if ex.Isolation == nil || ex.Isolation.Network != "allowlist" || !cmp.Equal(ex.Isolation.Allowlist, []string{"registry.example:443"}) {
			t.Errorf("isolation = %+v", ex.Isolation)
		}
		t.Logf("egress not implemented yet: %v", ex.Err)
		return
	}
	gw.Close()
	mustExit(t, ex, out, 0, "")
	var res map[string]string
	if err := lastJSON(out, &res); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res[ln.Addr().String()], "error") || res["loopback"] != "ok" {
		t.Errorf("from the sandbox: %v, want %s unreachable and loopback working", res, ln.Addr())
	}
	mu.Lock()
	defer mu.Unlock()
	if ex.Isolation.Blocked != len(blocked) {
		t.Errorf("isolation counts %d blocked, the callback saw %v", ex.Isolation.Blocked, blocked)
	}
}

// runnerMain runs one sandboxed step that announces itself and sleeps,
// for testReap to kill this runner under it. reapPathEnv says which way
// the attempt goes: "server" (network none, no pids limit: through the
// runner's sandbox server) or "helper" (a helper process of its own, as
// a pids limit enforced as RLIMIT_NPROC or an allowlist needs).
func runnerMain() int {
	x := &Executor{Env: []string{testPath}}
	limits := pack.Limits{MemoryMiB: 256}
	if os.Getenv(reapPathEnv) == "helper" {
		x.perStep = true
		limits.Pids = 64
	}
	ex := x.Execute(context.Background(), run.Invocation{
		Command: []string{"sh", "-c", "echo up; exec sleep 120"}, Dir: os.Getenv("STELLA_SANDBOX_TEST_DIR"),
		Token: os.Getenv(runnerEnv), Stdout: os.Stdout, Stderr: os.Stderr,
		Sandbox: pack.Sandbox{Limits: limits},
	})
	fmt.Fprintf(os.Stderr, "runner: the step ended: %+v\n", ex)
	return 1
}

// reapPathEnv names the way runnerMain's attempt goes.
const reapPathEnv = "STELLA_SANDBOX_TEST_REAP_PATH"

// procsWith lists the live processes whose environment carries token.
func procsWith(token string) []int { return procsWithEnv(run.TokenEnv + "=" + token) }

// procsWithEnv are the processes whose environment holds kv.
func procsWithEnv(kv string) []int {
	needle := []byte("\x00" + kv + "\x00")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil && bytes.Contains(append([]byte{0}, env...), needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// testReap: a runner dies under its sandboxed step; Reap finds the step
// by the attempt's token and stops it, with the runner's sandbox server or
// the attempt's helper process, and its cgroup. Both ways an attempt can
// go are run: which one a pids limit takes depends on whether this user
// may make a pids cgroup, so neither is left to the host.
func testReap(t *testing.T) {
	for _, way := range []string{"server", "helper"} {
		t.Run(way, func(t *testing.T) { testReapVia(t, way) })
	}
}

func testReapVia(t *testing.T, way string) {
	token := fmt.Sprintf("reap|%d|%d", os.Getpid(), time.Now().UnixNano())
	// Should the test fail before its Reap, nothing of it stays.
	t.Cleanup(func() { _ = (&Executor{}).Reap(token) })
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{testPath, runnerEnv + "=" + token, reapPathEnv + "=" + way, "STELLA_SANDBOX_TEST_DIR=" + t.TempDir()}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		up <- line
	}()
	select {
	case line := <-up:
		if line != "up\n" {
			t.Fatalf("the step said %q; runner: %s", line, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the step did not start; runner: %s", stderr.String())
	}
	// Only the runner dies; its output pipes stay open in the step, so
	// the runner's Cmd is waited for (pipes and all) after Reap.
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
	defer func() { _ = cmd.Wait() }()
	// The step carries the token, and so does its helper process when it
	// has one; the sandbox server carries the runner's pid instead, and
	// ends once its steps have.
	left := procsWith(token)
	helpers := 0
	for _, pid := range left {
		if argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.HasPrefix(argv, []byte("stella-sandbox\x00")) {
			helpers++
		}
	}
	servers := procsWithEnv(ServerRunnerEnv + "=" + strconv.Itoa(cmd.Process.Pid))
	switch way {
	case "server":
		if len(left) != 1 || helpers != 0 {
			t.Fatalf("after the runner died, %v carry the token (%d helpers); want the step alone", left, helpers)
		}
		if len(servers) == 0 {
			t.Fatal("the dead runner's sandbox server is gone under its step")
		}
	case "helper":
		// (A server of the runner's probe may still be exiting: servers
		// are not this attempt's way, and not counted.)
		if len(left) != 2 || helpers != 1 {
			t.Fatalf("after the runner died, %v carry the token (%d helpers); want the step and its helper", left, helpers)
		}
	}
	prefix := cgroupPrefix(token)
	if err := (&Executor{}).Reap(token); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(procsWith(token)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := procsWith(token); len(left) > 0 {
		t.Fatalf("after Reap, %v still carry the token", left)
	}
	for len(procsWithEnv(ServerRunnerEnv+"="+strconv.Itoa(cmd.Process.Pid))) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := procsWithEnv(ServerRunnerEnv + "=" + strconv.Itoa(cmd.Process.Pid)); len(left) > 0 {
		t.Fatalf("after Reap, the dead runner's sandbox server %v is still there", left)
	}
	h := cgroupHierarchies()
	for _, d := range h.v1 {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("cgroup %s left after Reap", filepath.Join(d, e.Name()))
			}
		}
	}
}

// TestUnprivileged runs TestSandbox again as nobody (uid and gid 65534, no
// groups) from a copy of this test binary: the same runs must end the
// same, with the limits falling back to rlimits where no cgroup can be
// made.
func TestUnprivileged(t *testing.T) {
	if !root {
		t.Skip("this process is unprivileged: TestSandbox ran as such")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "stella-sandbox-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	host, err := os.MkdirTemp("/var/lib", "stella-sandbox-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{tmp, host} {
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sandbox.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSandbox$", "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Dir = tmp
	cmd.Env = []string{testPath, "HOME=" + tmp, "TMPDIR=" + tmp, hostDirEnv + "=" + host}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("TestSandbox as nobody: %v", err)
	}
	if !bytes.Contains(out, []byte("running as uid 65534")) {
		t.Fatal("the re-run did not run as nobody")
	}
	for _, tc := range sandboxTests {
		if !regexp.MustCompile(`--- PASS: TestSandbox/` + regexp.QuoteMeta(tc.name) + ` `).Match(out) {
			t.Errorf("as nobody, %s did not pass", tc.name)
		}
	}
}

func TestPlanMounts(t *testing.T) {
	tmp := cover{path: "/tmp", mode: "1777"}
	run := cover{path: "/run", mode: "0755"}
	home := cover{path: "/home/u/.stella", mode: "0755", hide: true}
	for _, tc := range []struct {
		name   string
		covers []cover
		binds  []string
		want   []mountOp
	}{
		{"private folders only", []cover{tmp, run}, nil, []mountOp{
			{Kind: opTmpfs, Path: "/run", Mode: "0755"}, {Kind: opTmpfs, Path: "/tmp", Mode: "1777"}}},
		{"the step's folders bound back into the hidden one, in depth order",
			[]cover{tmp, home},
			[]string{"/home/u/.stella/runs/r/work", "/home/u/.stella/runs/r/outputs", "/home/u/.stella/runs/r/work/sub", "/srv/data"},
			[]mountOp{
				{Kind: opTmpfs, Path: "/tmp", Mode: "1777"},
				{Kind: opBind, Path: "/srv/data", Src: 3},
				{Kind: opTmpfs, Path: "/home/u/.stella", Mode: "0755", Hide: true},
				{Kind: opBind, Path: "/home/u/.stella/runs/r/outputs", Src: 1},
				{Kind: opBind, Path: "/home/u/.stella/runs/r/work", Src: 0},
				{Kind: opBind, Path: "/home/u/.stella/runs/r/work/sub", Src: 2},
				{Kind: opReadonly, Path: "/home/u/.stella"},
			}},
		{"a work folder under /tmp", []cover{tmp}, []string{"/tmp/x/work"}, []mountOp{
			{Kind: opTmpfs, Path: "/tmp", Mode: "1777"}, {Kind: opBind, Path: "/tmp/x/work"}}},
		{"a hidden folder inside one already hidden is left out", []cover{home, {path: "/home/u/.stella/keys", mode: "0755", hide: true}}, nil, []mountOp{
			{Kind: opTmpfs, Path: "/home/u/.stella", Mode: "0755", Hide: true}, {Kind: opReadonly, Path: "/home/u/.stella"}}},
		{"a hidden folder inside a bound-back one is hidden again",
			[]cover{home, {path: "/home/u/.stella/runs/r/work/.cache", mode: "0755", hide: true}},
			[]string{"/home/u/.stella/runs/r/work"},
			[]mountOp{
				{Kind: opTmpfs, Path: "/home/u/.stella", Mode: "0755", Hide: true},
				{Kind: opBind, Path: "/home/u/.stella/runs/r/work"},
				{Kind: opTmpfs, Path: "/home/u/.stella/runs/r/work/.cache", Mode: "0755", Hide: true},
				{Kind: opReadonly, Path: "/home/u/.stella"},
				{Kind: opReadonly, Path: "/home/u/.stella/runs/r/work/.cache"},
			}},
		{"a bound-back folder that is itself private stays the host's, bound onto itself", []cover{tmp}, []string{"/tmp"}, []mountOp{
			{Kind: opBind, Path: "/tmp"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, planMounts(tc.covers, tc.binds)); diff != "" {
				t.Errorf("planMounts (-want +got):\n%s", diff)
			}
		})
	}
}

func benchStart(b *testing.B, x run.Executor) {
	dir := b.TempDir()
	ctx := context.Background()
	for b.Loop() {
		ex := x.Execute(ctx, run.Invocation{Command: []string{"/bin/true"}, Dir: dir, Token: "bench"})
		if ex.Err != nil || ex.Code != 0 {
			b.Fatalf("%+v", ex)
		}
	}
}

// BenchmarkStartIsolated and BenchmarkStartUnisolated: the cost of one
// step running /bin/true, isolated and not; the difference is what
// isolation adds per step.
func BenchmarkStartIsolated(b *testing.B) {
	if err := Probe(context.Background()); err != nil {
		b.Fatal(err)
	}
	benchStart(b, &Executor{Env: []string{testPath}})
}

func BenchmarkStartUnisolated(b *testing.B) {
	benchStart(b, &process.Executor{Env: []string{testPath}})
}
