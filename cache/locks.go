package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/gofrs/flock"
	"go.etcd.io/bbolt"
)

// CheckLocks takes the gc lock and the index lock, both shared, for an
// instant each, waiting at most the lock timeout for each: a *LockError
// (naming the holder when it wrote itself down) when another process holds
// one exclusive for that long, such as a GC or a long import. It changes
// nothing in the cache.
func (s *Store) CheckLocks(ctx context.Context) error {
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	release()
	return s.view(ctx, func(*bbolt.Tx) error { return nil })
}

// HoldFiles lists the hold files under root/holds: the holders of those a
// running process keeps, and the paths of those left by processes that
// are gone (GC removes those). It only reads.
func (s *Store) HoldFiles() (live []Holder, stale []string, err error) {
	ents, err := os.ReadDir(s.path(holdsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cache holds: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), holdExt) {
			continue
		}
		path := s.path(holdsDir, e.Name())
		fl := flock.New(path, flock.SetFlag(os.O_RDONLY))
		locked, err := fl.TryRLock()
		if err != nil {
			_ = fl.Close()
			return nil, nil, fmt.Errorf("cache hold %s: %w", path, err)
		}
		_ = fl.Close()
		if locked {
			stale = append(stale, path)
			continue
		}
		var r holdRecord
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &r) == nil {
			live = append(live, r.Holder)
		}
	}
	return live, stale, nil
}
