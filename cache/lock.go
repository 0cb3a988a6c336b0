package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gofrs/flock"
)

const lockRetry = 50 * time.Millisecond

// lockGC takes root/gc.lock, shared (importers, writers, verify) or
// exclusive (gc), waiting at most the lock timeout. The returned function
// releases it. A shared holder writes itself down in a hold file (with no
// digests), an exclusive one in gc.lock.holder. Each call opens its own file description, so goroutines of
// one process exclude each other exactly as processes do.
func (s *Store) lockGC(ctx context.Context, exclusive bool) (func(), error) {
	path := s.path(gcLockFile)
	fl := flock.New(path, flock.SetPermissions(0o644))
	wait, cancel := context.WithTimeout(ctx, s.opts.LockTimeout)
	defer cancel()
	var ok bool
	var err error
	if exclusive {
		ok, err = fl.TryLockContext(wait, lockRetry)
	} else {
		ok, err = fl.TryRLockContext(wait, lockRetry)
	}
	if !ok {
		_ = fl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("cache gc lock %s: %w", path, err)
		}
		return nil, s.lockError("gc", path)
	}
	if !exclusive {
		// Written down so that a GC giving up can say who it waited for;
		// advisory, so a failure to write it is no error.
		h, _ := s.hold(holdRecord{GCLock: true})
		return func() {
			h.Release()
			_ = fl.Close()
		}, nil
	}
	holder := path + holderExt
	s.writeHolder(holder)
	return func() {
		_ = os.Remove(holder)
		_ = fl.Close()
	}, nil
}
