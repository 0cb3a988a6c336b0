package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"stellaops.io/stella/run"
)

// buildStepkit builds testdata/stepkit into dir (a static binary, so a
// step resolves names with Go's own resolver through /etc/resolv.conf).
func buildStepkit(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "stepkit"), "../../testdata/stepkit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stepkit: %v\n%s", err, out)
	}
}

// pongServer answers every connection on ln with "pong".
func pongServer(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "pong\n")
			}()
		}
	}()
}

// isolationWorld is what the network tests share: a folder anyone may
// read (so an unprivileged runner can use it), a TCP and a Unix service on
// the host, and the packs.
type isolationWorld struct {
	dir      string
	tcp      string // host 127.0.0.1:port
	unixPath string
}

func newIsolationWorld(t *testing.T) *isolationWorld {
	t.Helper()
	dir, err := os.MkdirTemp("", "stella-iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &isolationWorld{dir: dir, unixPath: filepath.Join(dir, "host.sock")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pongServer(t, ln)
	w.tcp = ln.Addr().String()
	ul, err := net.Listen("unix", w.unixPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.unixPath, 0o777); err != nil {
		t.Fatal(err)
	}
	pongServer(t, ul)
	kit := filepath.Join(dir, "kit")
	for _, p := range []string{"none", "allow"} {
		if err := os.MkdirAll(filepath.Join(kit, p), 0o755); err != nil {
			t.Fatal(err)
		}
		buildStepkit(t, filepath.Join(kit, p))
	}
	writeFile(t, filepath.Join(kit, "none", "pack.yaml"), fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: net-none, version: 1.0.0, description: A step with no network.}
spec:
  steps:
    - id: probe
      continueOnError: true
      run: {command: ["./stepkit", "listen", "tcp", %q, "unix", %q, "lookup", "localhost.stella.test"]}
`, w.tcp, w.unixPath))
	writeFile(t, filepath.Join(kit, "allow", "pack.yaml"), fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: net-allow, version: 1.0.0, description: A step that may reach one host service.}
spec:
  sandbox:
    network:
      mode: allowlist
      allowlist: [%q]
  steps:
    - id: probe
      continueOnError: true
      run: {command: ["./stepkit", "listen", "tcp", %q, "tcp", "192.0.2.1:80", "lookup", "blocked.stella.test", "unix", %q]}
`, w.tcp, w.tcp, w.unixPath))
	for _, f := range []string{filepath.Join(kit, "none", "pack.yaml"), filepath.Join(kit, "allow", "pack.yaml")} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// run runs pack (none or allow) in a fresh home as uid (or as this
// process's user when uid < 0), with the extra flags of pack run, and
// returns the step's result lines and the run record.
func (w *isolationWorld) run(t *testing.T, pack string, uid int, extra ...string) ([]string, *run.Record) {
	t.Helper()
	home, err := os.MkdirTemp(w.dir, "home-")
	if err != nil {
		t.Fatal(err)
	}
	exe := os.Args[0]
	var cred *syscall.Credential
	if uid >= 0 {
		// The test binary is not readable by another user where go test
		// built it: a copy is.
		exe = filepath.Join(w.dir, "stella.test")
		if _, err := os.Stat(exe); err != nil {
			copyFile(t, os.Args[0], exe, 0o755)
		}
		if err := os.Chown(home, uid, uid); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	stella := func(args ...string) string {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home, "HOME="+home, "TMPDIR="+home)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = home
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("stella %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String()
	}
	out := stella(append([]string{"--output", "json", "pack", "run", "--pack", filepath.Join(w.dir, "kit", pack)}, extra...)...)
	var res struct {
		RunID string `json:"runId"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rec run.Record
	if err := json.Unmarshal([]byte(stella("--output", "json", "pack", "runs", "show", res.RunID)), &rec); err != nil {
		t.Fatal(err)
	}
	var results []string
	for _, l := range strings.Split(stella("pack", "runs", "logs", res.RunID), "\n") {
		if _, msg, ok := strings.Cut(l, " stdout: "); ok {
			results = append(results, strings.ReplaceAll(strings.ReplaceAll(msg, w.tcp, "HOST-TCP"), w.unixPath, "HOST-UNIX"))
		}
		if _, msg, ok := strings.Cut(l, " stella: "); ok && strings.HasPrefix(msg, run.BlockedCode) {
			results = append(results, strings.ReplaceAll(msg, w.tcp, "HOST-TCP"))
		}
	}
	sort.Strings(results)
	return results, &rec
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestStepNetwork runs a step with network none and one with an allowlist
// against a TCP and a Unix service of the host, as this user and, when
// that is root (always on CI), again as an unprivileged one: the results
// must be the same.
func TestStepNetwork(t *testing.T) {
	w := newIsolationWorld(t)
	want := map[string][]string{
		"none": {
			"reached loopback: pong",
			"unreachable HOST-TCP",
			"unreachable HOST-UNIX",
			"unresolved localhost.stella.test",
		},
		"allow": {
			"ERR_PACK_NETWORK_BLOCKED: step probe: 192.0.2.1:80: not in the allowlist",
			"ERR_PACK_NETWORK_BLOCKED: step probe: blocked.stella.test: not in the allowlist",
			"reached HOST-TCP: pong",
			"reached loopback: pong",
			"unreachable 192.0.2.1:80",
			"unreachable HOST-UNIX",
			"unresolved blocked.stella.test",
		},
	}
	users := []int{-1}
	if os.Getuid() == 0 {
		users = append(users, 65534)
	}
	for _, uid := range users {
		for _, pack := range []string{"none", "allow"} {
			name := map[bool]string{true: "this-user", false: fmt.Sprintf("uid%d", uid)}[uid < 0]
			t.Run(pack+"/"+name, func(t *testing.T) {
				got, rec := w.run(t, pack, uid)
				blockedRE := regexp.MustCompile(`^ERR_PACK_NETWORK_BLOCKED: step probe: (.*?): .*`)
				for i, g := range got {
					// The reason's wording is the gateway's; the destination is the test's.
					if m := blockedRE.FindStringSubmatch(g); m != nil {
						got[i] = "ERR_PACK_NETWORK_BLOCKED: step probe: " + m[1] + ": not in the allowlist"
					}
				}
				if strings.Join(got, "\n") != strings.Join(want[pack], "\n") {
					t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want[pack], "\n"))
				}
				sr := rec.Steps["probe"]
				if sr == nil || sr.Isolation == nil {
					t.Fatalf("no isolation recorded: %+v", sr)
				}
				iso := sr.Isolation
				if strings.Join(iso.Namespaces, ",") != "user,net,mount" || iso.Network != map[string]string{"none": "none", "allow": "allowlist"}[pack] {
					t.Errorf("isolation %+v", iso)
				}
				events := 0
				for _, e := range rec.Timeline {
					if e.Type == run.EventNetworkBlocked {
						events++
					}
				}
				if pack == "allow" && (iso.Blocked != 2 || events != 2) {
					t.Errorf("blocked %d, %d events; want 2 and 2", iso.Blocked, events)
				}
			})
		}
	}
}

// TestChaosDropNetwork: the step of the allowlist pack, which reaches the
// host's TCP service on its own (TestStepNetwork), reaches nothing but its
// loopback when chaos drops its network, and the injection is recorded.
func TestChaosDropNetwork(t *testing.T) {
	w := newIsolationWorld(t)
	got, rec := w.run(t, "allow", -1, "--chaos", "drop-network=probe")
	want := []string{
		"reached loopback: pong",
		"unreachable 192.0.2.1:80",
		"unreachable HOST-TCP",
		"unreachable HOST-UNIX",
		"unresolved blocked.stella.test",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if iso := rec.Steps["probe"].Isolation; iso == nil || iso.Network != "none" || len(iso.Allowlist) != 0 {
		t.Errorf("isolation %+v, want network none", iso)
	}
	var chaos []string
	for _, e := range rec.Timeline {
		if e.Type == run.EventChaosInjected {
			chaos = append(chaos, e.StepID+" "+e.Message)
		}
	}
	if len(chaos) != 1 || chaos[0] != "probe drop-network=probe: the step runs with no network" {
		t.Errorf("chaos events %q", chaos)
	}
	if len(rec.Chaos) != 1 || rec.Chaos[0].Fired != 1 {
		t.Errorf("record chaos %+v", rec.Chaos)
	}
}

// TestStepLimits: a step over its memory limit, one over its pids limit and
// one past its timeout are each stopped, and each says why.
func TestStepLimits(t *testing.T) {
	dir := t.TempDir()
	pack := filepath.Join(dir, "limits")
	if err := os.MkdirAll(pack, 0o755); err != nil {
		t.Fatal(err)
	}
	buildStepkit(t, pack)
	writeFile(t, filepath.Join(pack, "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: limits, version: 1.0.0, description: Steps that exceed their limits.}
spec:
  sandbox:
    limits: {memoryMiB: 64, pids: 40}
  steps:
    - id: hog
      continueOnError: true
      run: {command: ["./stepkit", "mem", "512"]}
    - id: forker
      continueOnError: true
      run: {command: ["./stepkit", "fork", "200"]}
    - id: slow
      timeout: 1s
      continueOnError: true
      run: {command: ["sleep", "30"]}
    - id: fine
      run: {command: ["./stepkit", "mem", "8"]}
`)
	home := filepath.Join(dir, "home")
	l := stella(t, home, nil, "--output", "json", "pack", "run", "--pack", pack)
	var res struct {
		RunID string `json:"runId"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(l.stdout), &res); err != nil || res.State != run.Succeeded {
		t.Fatalf("run: %v %s\n%s", err, l.stdout, l.stderr)
	}
	var rec run.Record
	if err := json.Unmarshal([]byte(stella(t, home, nil, "--output", "json", "pack", "runs", "show", res.RunID).stdout), &rec); err != nil {
		t.Fatal(err)
	}
	enforced := map[string]string{}
	for _, lr := range rec.Steps["hog"].Isolation.Limits {
		enforced[lr.Name] = lr.Enforced
	}
	wantErr := map[string]string{
		"slow": "step slow timed out after 1s",
	}
	if strings.HasPrefix(enforced["memoryMiB"], "cgroup") {
		wantErr["hog"] = "step hog: stopped by its memoryMiB limit (64 MiB)"
	} else if enforced["memoryMiB"] != run.EnforcedRlimit {
		t.Errorf("memoryMiB enforced by %q", enforced["memoryMiB"])
	}
	if strings.HasPrefix(enforced["pids"], "cgroup") {
		wantErr["forker"] = "step forker: stopped by its pids limit (40 processes)"
	}
	for id, want := range wantErr {
		sr := rec.Steps[id]
		if sr == nil || !strings.HasPrefix(sr.Error, want) {
			t.Errorf("step %s: error %q, want it to start %q", id, sr.Error, want)
		}
	}
	for _, id := range []string{"hog", "forker", "slow"} {
		if st := rec.Steps[id].State; st == run.Succeeded {
			t.Errorf("step %s succeeded past its limit", id)
		}
	}
	if st := rec.Steps["fine"].State; st != run.Succeeded {
		t.Errorf("step within its limits: %s", st)
	}
	t.Logf("enforced: %v", enforced)
}

// tokenProcesses counts the live processes whose environment carries a
// process token of run id (the sandbox helper and the step alike).
func tokenProcesses(t *testing.T, id string) int {
	t.Helper()
	needle := []byte(run.TokenEnv + "=" + id + "|")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, needle) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			continue // a zombie is already dead
		}
		n++
	}
	return n
}

// TestIsolatedStepStopsWithItsRun: an isolated step is stopped by
// `runs cancel`, and one whose runner was SIGKILLed is stopped when the
// run resumes; in neither case does a process of the step survive.
func TestIsolatedStepStopsWithItsRun(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	writeFile(t, filepath.Join(dir, "slow", "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: slow, version: 1.0.0, description: stop me}
spec:
  sandbox:
    limits: {memoryMiB: 128}
  steps:
    - id: wait
      run: {command: ["sh", "-c", "echo waiting; sleep 60 & wait"]}
`)
	start := func() (*exec.Cmd, string) {
		t.Helper()
		cmd := stellaProcess(t, home, "--output", "json", "pack", "run", "--pack", filepath.Join(dir, "slow"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			l := stella(t, home, nil, "--output", "json", "pack", "runs", "list", "--state", "running")
			var list []runSummary
			if json.Unmarshal([]byte(l.stdout), &list) == nil && len(list) == 1 {
				if logs := stella(t, home, nil, "pack", "runs", "logs", list[0].RunID); strings.Contains(logs.stdout, "waiting") {
					return cmd, list[0].RunID
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("the step never started")
		return nil, ""
	}

	cmd, id := start()
	if n := tokenProcesses(t, id); n < 2 {
		t.Fatalf("%d processes carry the run's token while its step runs; want the helper and the step", n)
	}
	if r := stella(t, home, nil, "pack", "runs", "cancel", "--run", id); r.code != 0 {
		t.Fatalf("cancel: %d %s", r.code, r.stderr)
	}
	_ = cmd.Wait()
	if n := tokenProcesses(t, id); n != 0 {
		t.Errorf("%d processes of the cancelled step survive", n)
	}

	cmd, id = start()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The runner is gone; its step is not (nothing ties it to its runner),
	// so the resume has something to reap.
	if n := tokenProcesses(t, id); n == 0 {
		t.Fatal("no process of the step outlived its killed runner: the resume would check nothing")
	}
	if r := stella(t, home, nil, "pack", "runs", "resume", "--run", id); r.code == 0 || !strings.Contains(r.stdout, "runner lost") {
		t.Errorf("resume of a run whose only step lost its runner (no retries): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := tokenProcesses(t, id); n != 0 {
		t.Errorf("%d processes of the step whose runner was killed survive its resume", n)
	}
}

// TestStepCannotReadUnlockFiles: a sandboxed step sees neither stella's
// home nor the folders of the files that unlock the vault and the keys,
// wherever they are configured, while its own work folder works.
func TestStepCannotReadUnlockFiles(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	// Not under /tmp, which every sandboxed step sees as an empty tmpfs:
	// this folder would be visible if it were not hidden.
	keys, err := os.MkdirTemp(".", ".test-ops-keys-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(keys) })
	identity, err := filepath.Abs(filepath.Join(keys, "ops.agekey"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, identity, "AGE-SECRET-KEY-1THROWAWAYNOTAREALKEY\n")
	writeFile(t, filepath.Join(home, "config.yaml"), "tenant: default\n")
	writeFile(t, filepath.Join(dir, "peek", "pack.yaml"), `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: peek, version: 1.0.0, description: Looks where it should not.}
spec:
  inputs:
    - {name: identity, type: string, required: true}
    - {name: home, type: string, required: true}
  steps:
    - id: peek
      run: {command: ["sh", "-c", "cat \"$1\" 2>/dev/null || echo identity-hidden; ls \"$2\"/config.yaml 2>/dev/null || echo home-hidden; echo ok > mine && cat mine", "sh", "${{ inputs.identity }}", "${{ inputs.home }}"]}
`)
	writeFile(t, filepath.Join(dir, "inputs.json"), fmt.Sprintf(`{"identity": %q, "home": %q}`, identity, home))
	r := stella(t, home, map[string]string{"STELLA_VAULT_IDENTITY_FILE": identity}, "pack", "run", "--pack", filepath.Join(dir, "peek"), "--inputs", filepath.Join(dir, "inputs.json"))
	if r.code != 0 {
		t.Fatalf("run: %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"[peek] identity-hidden", "[peek] home-hidden", "[peek] ok"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the step's output lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "THROWAWAY") {
		t.Errorf("the step read the identity file:\n%s", r.stderr)
	}
}
