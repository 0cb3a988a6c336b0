package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"stellaops.io/stella/run"
)

var probed struct {
	sync.Mutex
	done bool
	err  error
}

// Probe checks that steps can be isolated here, by running a check
// through the whole path, both ways a step may take (a helper process of
// its own, and a sandbox server's thread): new user, network and mount
// namespaces, loopback up, the private folders mounted, and a step that
// can listen and connect on loopback and has no capability. The result
// is kept for the life of the process (a cancelled probe is not). On
// failure the error wraps run.ErrSandboxUnavailable and names the check
// that failed, such as "creating a user namespace: operation not
// permitted". ForceUnavailableEnv=1 in the environment makes it fail.
func Probe(ctx context.Context) error {
	if os.Getenv(ForceUnavailableEnv) == "1" {
		return fmt.Errorf("%w: %s=1", run.ErrSandboxUnavailable, ForceUnavailableEnv)
	}
	probed.Lock()
	defer probed.Unlock()
	if probed.done {
		return probed.err
	}
	err := probe(ctx)
	if ctx.Err() != nil {
		// Cut short: says nothing of this host.
		return fmt.Errorf("probing step isolation: %w", context.Cause(ctx))
	}
	probed.done, probed.err = true, err
	return err
}

func probe(ctx context.Context) error {
	// Both ways a step is started: in a helper process of its own, and
	// through a sandbox server (whose thread unshares the namespaces).
	if err := checkThrough(ctx, &Executor{Grace: time.Second, perStep: true}); err != nil {
		return err
	}
	x := &Executor{Grace: time.Second}
	defer x.closeServer()
	if err := checkThrough(ctx, x); err != nil {
		return fmt.Errorf("%w (through the sandbox server)", err)
	}
	return nil
}

// checkThrough runs the check step through x.
func checkThrough(ctx context.Context, x *Executor) error {
	var out bytes.Buffer
	ex := x.execute(ctx, run.Invocation{Command: []string{"/proc/self/exe"}, Env: map[string]string{HelperEnv: roleCheck},
		Stdout: &out, Stderr: &out}, true)
	var what string
	switch {
	case errors.Is(ex.Err, errStartHelper):
		what = diagnose(ex.Err)
	case ex.Err != nil:
		what = ex.Err.Error()
	case ex.Signal != "":
		what = "the check was killed by " + ex.Signal
	case ex.Code != 0:
		what = strings.TrimSpace(out.String())
		if what == "" {
			what = fmt.Sprintf("the check exited with status %d", ex.Code)
		}
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", run.ErrSandboxUnavailable, what)
}

// diagnose names which namespace could not be created, by trying a user
// namespace alone.
func diagnose(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{HelperEnv + "=" + roleNoop}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	if uerr := cmd.Run(); uerr != nil {
		var uerrno syscall.Errno
		if errors.As(uerr, &uerrno) {
			return "creating a user namespace: " + uerrno.Error()
		}
		return "creating a user namespace: " + uerr.Error()
	}
	return "creating network and mount namespaces in a user namespace: " + errno.Error()
}
