package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// evilPack hides `rm -rf` behind an erase-line and carriage return, a file
// name behind a right-to-left override, and its description behind both.
const evilPack = `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: evil
  version: 1.0.0
  description: "Lists a folder\e[2K\rnothing else\u202e"
spec:
  approvals:
    - {id: ok, role: Packs.Approve, expiresAfter: 1h}
  steps:
    - id: gate
      gate: {approval: ok}
    - id: act
      run: {command: ["sh", "-c", "rm -rf \"$HOME/x\" #\e[2K\rls -l"]}
    - id: rtl
      run: {command: ["cat", "\u202ehs.txt"]}
`

// rawOnTerminal matches what must not arrive at a terminal from what a pack
// holds: C0 controls but tab and newline, DEL, C1, no-break space, soft
// hyphen, zero-width characters, bidi marks, embeddings, overrides and
// isolates, line and paragraph separators, BOM, tag characters.
var rawOnTerminal = regexp.MustCompile(`[\x00-\x08\x0b-\x1f\x7f\x{80}-\x{a0}\x{ad}\x{61c}\x{200b}-\x{200f}\x{2028}-\x{202e}\x{2060}-\x{2069}\x{feff}\x{e0000}-\x{e007f}]`)

// onTerminal runs the real binary (this test binary re-executed) on a fresh
// pseudo-terminal as its controlling terminal (stdin, stdout, stderr and
// /dev/tty), types typed, and returns its exit code and everything that
// arrived on the terminal's side. Output post-processing and echo are off,
// so the bytes are the program's own.
func onTerminal(t *testing.T, home, typed string, args ...string) (int, string) {
	t.Helper()
	master, tty := openPTY(t)
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STELLA_RUN_MAIN=1", "STELLA_HOME="+home)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds the terminal now: its exit ends the reads
	got := make(chan string)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			b.Write(buf[:n])
			if err != nil { // EIO once the child's side is closed
				got <- b.String()
				return
			}
		}
	}()
	if typed != "" {
		if _, err := master.Write([]byte(typed)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("stella %s: no exit within a minute", strings.Join(args, " "))
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil {
		t.Fatal(werr)
	}
	return code, <-got
}

// TestTerminalShowsEscapes: what an approver sees on a real terminal is
// what runs. approve review, the confirmation approve sign shows, and pack
// show put a pack's escape sequences and bidi overrides on the terminal as
// visible escapes, never raw, and the hidden command is there to read.
func TestTerminalShowsEscapes(t *testing.T) {
	dir := t.TempDir()
	op, approver := filepath.Join(dir, "op"), filepath.Join(dir, "approver")
	writeFile(t, filepath.Join(dir, "evil", "pack.yaml"), evilPack)
	request := filepath.Join(dir, "request.tar")
	for _, args := range [][]string{
		{"pack", "build", filepath.Join(dir, "evil")},
		{"pack", "plan", "--save", "--pack", "evil:1.0.0"},
	} {
		if r := stella(t, op, nil, args...); r.code != 0 {
			t.Fatalf("%s: %d %s", args, r.code, r.stderr)
		}
	}
	r := stella(t, op, nil, "--output", "json", "pack", "plans", "list")
	hash := regexp.MustCompile(`"hash": "sha256:([0-9a-f]{12})`).FindStringSubmatch(r.stdout)
	if hash == nil {
		t.Fatalf("no saved plan: %s", r.stdout)
	}
	if r := stella(t, op, nil, "pack", "approve", "--offline-request", "--plan", hash[1], "--gate", "gate", "-o", request); r.code != 0 {
		t.Fatalf("request: %d %s", r.code, r.stderr)
	}

	const (
		hiddenCommand = `sh -c $'rm -rf "$HOME/x" #\x1b[2K\rls -l'`
		hiddenName    = `cat $'\u202ehs.txt'`
		description   = `description: Lists a folder\x1b[2K\rnothing else\u202e`
	)
	for _, c := range []struct {
		name, typed string
		args        []string
		code        int
		want        []string
	}{
		{"review", "", []string{"pack", "approve", "review", request}, 0,
			[]string{hiddenCommand, hiddenName}},
		{"sign confirmation", "n\n", []string{"pack", "approve", "sign", "--key", filepath.Join(dir, "nokey"), "-o", filepath.Join(dir, "response.tar"), request}, 1,
			[]string{hiddenCommand, hiddenName, "Sign APPROVE for gate gate of plan", "not confirmed; nothing was signed"}},
		{"pack show", "", []string{"--home", op, "pack", "show", "evil:1.0.0"}, 0,
			[]string{description}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := onTerminal(t, approver, c.typed, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; the terminal showed:\n%s", code, c.code, out)
			}
			if loc := rawOnTerminal.FindStringIndex(out); loc != nil {
				t.Errorf("raw %q reached the terminal at byte %d:\n%q", out[loc[0]:loc[1]], loc[0], out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("the terminal does not show %s:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "response.tar")); err == nil {
				t.Error("a response was written without confirmation")
			}
		})
	}
}

// TestSessionRendersWhatRenderersForget: emit's text form, its JSON form,
// warnings, notes and errors never pass on a raw control or bidi character,
// even from a renderer that did not call display.Line.
func TestSessionRendersWhatRenderersForget(t *testing.T) {
	const evil = "ls\x1b[2K\rrm -rf /\u202e\x7f\u009b"
	var out, errb bytes.Buffer
	s := &session{stdout: &out, stderr: &errb, output: outputText}
	if err := s.emit(nil, func(w io.Writer) { fmt.Fprintf(w, "step: %s\n", evil) }); err != nil {
		t.Fatal(err)
	}
	s.warnf("step %s", evil)
	s.notef("note %s", evil)
	s.fail(fmt.Errorf("step %s: %w", evil, errFileNotFound))
	want := `ls\x1b[2K\rrm -rf /\u202e\x7f\u009b`
	if got := out.String(); got != "step: "+want+"\n" {
		t.Errorf("text: %q, want %q", got, "step: "+want+"\n")
	}
	for _, w := range []string{"warning: step " + want + "\n", "note " + want + "\n", "error: ERR_PACK_FILE_NOT_FOUND: step " + want + ": "} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr %q lacks %q", errb.String(), w)
		}
	}
	out.Reset()
	s.output = outputJSON
	if err := s.emit(map[string]string{"step": evil}, nil); err != nil {
		t.Fatal(err)
	}
	if want := `"step": "ls\u001b[2K\rrm -rf /\u202e\u007f\u009b"`; !strings.Contains(out.String(), want) {
		t.Errorf("json: %s, want %s", out.String(), want)
	}
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["step"] != evil {
		t.Errorf("json decodes to %q (%v), want %q", back["step"], err, evil)
	}
	for name, b := range map[string][]byte{"stdout": out.Bytes(), "stderr": errb.Bytes()} {
		if loc := rawOnTerminal.FindIndex(b); loc != nil {
			t.Errorf("raw %q on %s: %q", b[loc[0]:loc[1]], name, b)
		}
	}
}
