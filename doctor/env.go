package doctor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/vault"
)

// Env is what the checks look at, filled by the caller. A nil function
// skips the checks that need it (saying so), except Now (time.Now).
type Env struct {
	// Home is the stella home folder.
	Home string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// OpenCache opens the cache (<home>/packs), waiting at most a short
	// lock timeout; it may fail with a *cache.LockError.
	OpenCache func(ctx context.Context) (*cache.Store, error)
	// CacheHooks are the checks other packages add to cache verify.
	CacheHooks []cache.VerifyHook
	// RunsDir is the folder of the run folders (<home>/runs).
	RunsDir string
	// Retention is how long a finished run is kept (the config's
	// runRetention); zero means runs.DefaultRetention.
	Retention time.Duration

	// TrustPath is the trust store file.
	TrustPath string

	// VaultPath is the vault file; VaultNamed says the flag, the
	// environment or the configuration named it (else it is the default
	// <home>/vault.age, which may well not exist).
	VaultPath  string
	VaultNamed bool
	// Unlocker returns what unlocks the vault; nil when the operator did
	// not ask for vault.unlock to be checked.
	Unlocker func() (vault.Unlocker, error)

	// Registries are the configured registry hosts; Reach tries one
	// (registry.reachable, the only check that uses the network, only
	// through this function and only to these hosts).
	Registries []string
	Reach      func(ctx context.Context, host string) error

	// TracesEndpoint is the configured traces collector ("" when none):
	// traces.pending checks, offline, that it took every ended span.
	TracesEndpoint string

	// Sealed are the three places sealed mode is set.
	Sealed Sealed

	// Probe is the isolation probe runs use to decide how steps run.
	Probe func(ctx context.Context) error

	// Free returns the bytes available to this user on the file system of
	// path; nil skips home.space.
	Free func(path string) (uint64, error)
	// MinFree fails home.space below it, WarnFree warns below it; zero
	// means 256 MiB and 2 GiB.
	MinFree, WarnFree uint64

	once     sync.Once
	store    *cache.Store
	storeErr error
}

// Sealed is how each place sets sealed mode.
type Sealed struct {
	Flag   bool   // --sealed
	Env    string // STELLA_SEALED as set ("" when unset)
	Config bool   // the config's sealed
	// Effective is the mode commands run in.
	Effective bool
}

func (e *Env) now() time.Time {
	if e.Now == nil {
		return time.Now().UTC()
	}
	return e.Now().UTC()
}

// cache opens the cache once for every check.
func (e *Env) cache(ctx context.Context) (*cache.Store, error) {
	e.once.Do(func() {
		if e.OpenCache == nil {
			e.storeErr = errNoCache
			return
		}
		// A home with no cache yet stays so: doctor reads, it never
		// creates what it looks at.
		if _, err := os.Stat(filepath.Join(e.Home, "packs")); errors.Is(err, fs.ErrNotExist) {
			e.storeErr = errNoCache
			return
		}
		e.store, e.storeErr = e.OpenCache(ctx)
	})
	return e.store, e.storeErr
}
