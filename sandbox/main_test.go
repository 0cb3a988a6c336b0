//go:build linux

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is also the sandbox helper (Init), the steps the tests
// run (stepEnv names the mode) and a runner that the Reap test kills.
const (
	stepEnv   = "STELLA_SANDBOX_TEST_STEP"
	runnerEnv = "STELLA_SANDBOX_TEST_RUNNER"
	// hostDirEnv is a folder outside the sandbox's private folders that
	// the unprivileged re-run may write (made and handed over by the
	// privileged run).
	hostDirEnv = "STELLA_SANDBOX_TEST_HOSTDIR"
)

// stepMain runs the test step named by mode, with the arguments after the
// executable, and returns its exit code.
func stepMain(mode string, args []string) int {
	switch mode {
	case "net":
		return stepNet(args)
	case "caps":
		return stepCaps()
	case "hide":
		return stepHide(args)
	case "write":
		return stepWrite(args)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown test step %q\n", mode)
	return 2
}

// stepNet tries each destination (host:port, a Unix socket path, or @name
// of an abstract one) and loopback of its own, and prints what it reached
// as JSON.
func stepNet(targets []string) int {
	res := map[string]string{}
	for _, t := range targets {
		network := "tcp"
		if strings.HasPrefix(t, "/") || strings.HasPrefix(t, "@") {
			network = "unix"
		}
		c, err := net.DialTimeout(network, t, 2*time.Second)
		if err != nil {
			res[t] = "error: " + err.Error()
			continue
		}
		c.Close()
		res[t] = "ok"
	}
	res["loopback"] = func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "error: " + err.Error()
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				_, _ = c.Write([]byte("hello"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return "error: " + err.Error()
		}
		defer c.Close()
		b := make([]byte, 5)
		if _, err := c.Read(b); err != nil || string(b) != "hello" {
			return fmt.Sprintf("error: read %q: %v", b, err)
		}
		return "ok"
	}()
	return printJSON(res)
}

// stepCaps prints the step's capability sets and what happens when it
// tries what a privileged process could.
func stepCaps() int {
	res := map[string]string{}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Uid") {
			res[k] = strings.TrimSpace(v)
		}
	}
	errOf := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	res["umount /run"] = errOf(unix.Unmount("/run", unix.MNT_DETACH))
	res["mount tmpfs"] = errOf(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	res["lo down"] = errOf(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return err
		}
		ifr.SetUint16(ifr.Uint16() &^ unix.IFF_UP)
		return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
	}())
	return printJSON(res)
}

// stepHide lists the hidden folder, reads what it should not and what it
// should, and writes its work and outputs files.
func stepHide(args []string) int {
	hidden, other, otherRun, secret, work, outputs := args[0], args[1], args[2], args[3], args[4], args[5]
	res := map[string]string{}
	if entries, err := os.ReadDir(hidden); err != nil {
		res["list"] = "error: " + err.Error()
	} else {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		res["list"] = strings.Join(names, ",")
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	res["other"] = read(other)
	res["otherRun"] = read(otherRun)
	res["secret"] = read(secret)
	write := func(p string) string {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return "error: " + err.Error()
		}
		_, err = f.WriteString("from the step\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	}
	res["work"] = write(filepath.Join(work, "made-by-step.txt"))
	res["outputs"] = write(outputs)
	res["intoHidden"] = write(filepath.Join(hidden, "planted.txt"))
	return printJSON(res)
}

// stepWrite tries each path: "read:" and a file reads it, "dir:" and a
// folder lists it, "mkdir:" and a path makes a folder there, a bare path
// opens it for writing, creating it, and writes a line; it prints "ok" or
// the error, as JSON, per argument.
func stepWrite(args []string) int {
	res := map[string]string{}
	for _, a := range args {
		var err error
		switch {
		case strings.HasPrefix(a, "read:"):
			var b []byte
			b, err = os.ReadFile(strings.TrimPrefix(a, "read:"))
			if err == nil {
				res[a] = "ok: " + string(b)
				continue
			}
		case strings.HasPrefix(a, "dir:"):
			_, err = os.ReadDir(strings.TrimPrefix(a, "dir:"))
		case strings.HasPrefix(a, "mkdir:"):
			err = os.Mkdir(strings.TrimPrefix(a, "mkdir:"), 0o755)
		case a == "/dev/zero":
			var f *os.File
			if f, err = os.Open(a); err == nil {
				b := make([]byte, 8)
				_, err = io.ReadFull(f, b)
				if err == nil && string(b) != "\x00\x00\x00\x00\x00\x00\x00\x00" {
					err = fmt.Errorf("read %q", b)
				}
				f.Close()
			}
		default:
			var f *os.File
			if f, err = os.OpenFile(a, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
				_, err = f.WriteString("from the step\n")
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			res[a] = "error: " + err.Error()
		} else {
			res[a] = "ok"
		}
	}
	return printJSON(res)
}

func printJSON(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(string(b))
	return 0
}

// errorsIsPerm reports whether a step's error text says the operation was
// not permitted.
func errorsIsPerm(s string) bool {
	return strings.Contains(s, unix.EPERM.Error()) || strings.Contains(s, unix.EACCES.Error())
}

var errStepOutput = errors.New("no JSON line in the step's output")

// lastJSON decodes the last JSON line of a step's output into v.
func lastJSON(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return json.Unmarshal([]byte(lines[i]), v)
		}
	}
	return fmt.Errorf("%w: %q", errStepOutput, out)
}
