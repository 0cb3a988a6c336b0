package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gofrs/flock"
)

// lockRetry is how often a waiting writer retries the lock.
const lockRetry = 25 * time.Millisecond

// lockPath is the lock file beside the vault. It is never removed: deleting
// a flock file while another process waits on it would let two writers in.
func lockPath(path string) string { return path + ".lock" }

// acquire takes the exclusive lock of the vault at path, waiting at most
// timeout, and records this process id in the lock file so that a waiter
// that gives up can name the holder. The pid is written in place, not with
// safefile: replacing the file would replace the inode the lock is on.
func acquire(ctx context.Context, path string, timeout time.Duration) (release func(), err error) {
	lp := lockPath(path)
	fl := flock.New(lp, flock.SetPermissions(0o600))
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := fl.TryLockContext(wctx, lockRetry)
	if err != nil || !ok {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("lock vault %s: %w", path, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			if pid := holder(lp); pid > 0 {
				return nil, fmt.Errorf("vault %s: %w (pid %d) after waiting %s", path, ErrLocked, pid, timeout)
			}
			return nil, fmt.Errorf("vault %s: %w after waiting %s", path, ErrLocked, timeout)
		default:
			return nil, fmt.Errorf("lock vault %s: %w", path, err)
		}
	}
	setHolder(lp, strconv.Itoa(os.Getpid())+"\n")
	return func() {
		setHolder(lp, "")
		_ = fl.Unlock()
	}, nil
}

// setHolder overwrites the lock file's content. It is best effort: the
// record only improves an error message.
func setHolder(lp, content string) {
	f, err := os.OpenFile(lp, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	_, _ = f.WriteString(content)
	_ = f.Close()
}

// holder returns the pid recorded in the lock file, or 0.
func holder(lp string) int {
	b, err := os.ReadFile(lp)
	if err != nil || len(b) > 32 {
		return 0
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
