package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"stellaops.io/stella/internal/safefile"
)

// DefaultLockTimeout is how long an operation waits for a lock held by
// another process before it fails with ErrLocked.
const DefaultLockTimeout = 30 * time.Second

// Options tune a Store. The zero value is usable.
type Options struct {
	// LockTimeout bounds every wait for the index lock and the gc lock.
	// Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// Holder is written next to an exclusive lock while this process holds
	// it (typically the command line), so that a process waiting on the
	// lock can name who holds it.
	Holder string
	// Now is the clock of import records and holder files; nil means time.Now.
	Now func() time.Time
}

// Store is the local cache rooted at one directory. It holds no open file
// between calls: every index transaction opens index.db, runs, and closes
// it again, so many processes can share one cache. A Store is safe for
// concurrent use by several goroutines.
type Store struct {
	root string
	opts Options

	// recordBytes counts the bytes of import records written, so that a
	// test holds an import's record work linear in its artifacts.
	recordBytes atomic.Int64
	// syncs counts the fsync, syncfs and directory fsync calls made for
	// blob files, so that a test holds an import's syncs independent of
	// its number of files.
	syncs atomic.Int64
	// updates counts index write transactions, so that a test holds an
	// import's transactions below one per artifact.
	updates atomic.Int64
	// scanned, when a test sets it, is called with a scan's transaction
	// before each release of mapped pages and when the scan ends, while
	// the pages it read are still mapped.
	scanned func(tx *bbolt.Tx)
	// segments is what this process read of segments/ (see locateIn).
	segments segmentIndex
	// afterCompact, when a test sets it, is called by gc after it wrote
	// the new segment of a compaction, before its locked check.
	afterCompact func(next string, made bool)
	// sha256Dir is blobs/sha256, opened once (statBlobFile).
	sha256DirOnce sync.Once
	sha256Dir     *os.File
}

// indexMmapSize is the address space an index opened for writing maps
// from the start (see openIndex): the index of a 10,000-file pack.
const indexMmapSize = 8 << 20

// Layout of the root directory.
const (
	indexFile  = "index.db"
	blobsDir   = "blobs"
	ingestDir  = "ingest"
	gcLockFile = "gc.lock"
	holdsDir   = "holds"
	holderExt  = ".holder"
)

// Open opens (creating if needed) the cache rooted at root, usually
// <home>/packs. It creates the layout and the index buckets, and fails with
// ErrIndexVersion when the index was written by a newer version.
func Open(ctx context.Context, root string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("cache root %s: %w", root, err)
	}
	s := &Store{root: abs, opts: opts}
	for _, dir := range []string{abs, s.path(blobsDir, "sha256"), s.path(ingestDir)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cache root %s: %w", abs, err)
		}
	}
	ready, err := s.indexReady(ctx)
	if err != nil {
		return nil, err
	}
	if !ready {
		if err := s.update(ctx, initIndex); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Root returns the absolute root directory of the cache.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) now() time.Time { return s.opts.Now().UTC() }

// view runs fn in a read-only transaction of the index. Other packages
// read their own records through Records. The index is opened for the
// transaction only: keep fn short and free of long I/O.
func (s *Store) view(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db, err := s.openIndex(true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(fn)
}

// update runs fn in a read-write transaction of the index, committed when
// fn returns nil. Other packages keep their own records through Records.
// While fn runs, other processes wait on the index lock: keep it short and
// free of long I/O.
func (s *Store) update(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db, err := s.openIndex(false)
	if err != nil {
		return err
	}
	s.updates.Add(1)
	holder := s.path(indexFile + holderExt)
	s.writeHolder(holder)
	defer func() {
		// Remove the side file while still holding the lock, so a next
		// holder's file is never removed by us.
		_ = os.Remove(holder)
		_ = db.Close()
	}()
	return db.Update(fn)
}

func (s *Store) openIndex(readOnly bool) (*bbolt.DB, error) {
	path := s.path(indexFile)
	opts := &bbolt.Options{Timeout: s.opts.LockTimeout, ReadOnly: readOnly}
	if !readOnly {
		// A write transaction that outgrows the mapping remaps the file,
		// and first copies every node it holds to the heap: a pack of
		// 10,000 files in a new cache did that eight times. The mapping
		// is address space only (pages count in RSS when touched), but
		// bbolt grows a file of up to 16 MiB to its mapping's size at the
		// first commit that grows it (sparse: what was not written takes
		// no disk; `cache du` counts the blocks), so it stays small.
		opts.InitialMmapSize = indexMmapSize
	}
	db, err := bbolt.Open(path, 0o644, opts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, s.lockError("index", path)
	}
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return nil, fmt.Errorf("cache index %s: %w (%v)", path, ErrIndexDamaged, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cache index %s: %w", path, err)
	}
	return db, nil
}

// writeHolder records this process as the holder of an exclusive lock. The
// side file is advisory (it only names the holder in another process's
// error message), so a failure to write it is not an error, and it is not
// fsynced: it is replaced atomically by rename, never durable.
func (s *Store) writeHolder(path string) {
	b, err := json.Marshal(s.holderRecord())
	if err != nil {
		return
	}
	tmp := filepath.Join(filepath.Dir(path), safefile.TempPrefix+filepath.Base(path)+"-"+strconv.Itoa(os.Getpid()))
	if os.WriteFile(tmp, b, 0o644) != nil || os.Rename(tmp, path) != nil {
		_ = os.Remove(tmp)
	}
}

func (s *Store) lockError(lock, path string) error {
	e := &LockError{Lock: lock, Path: path, Timeout: s.opts.LockTimeout}
	if b, err := os.ReadFile(path + holderExt); err == nil {
		var h Holder
		if json.Unmarshal(b, &h) == nil && h.PID > 0 && alive(h.PID) {
			e.Holder = &h
		}
	}
	if e.Holder == nil && lock == "gc" {
		if hs := s.gcLockHolders(); len(hs) > 0 {
			e.Holder, e.Others = &hs[0], len(hs)-1
		}
	}
	return e
}

// alive reports whether a process with this pid exists, so a side file left
// by a killed process does not name a holder that is gone.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
