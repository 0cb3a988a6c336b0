package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"github.com/opencontainers/go-digest"
)

// holdExt ends the name of every hold file under root/holds.
const holdExt = ".hold"

// Hold keeps artifacts from GC while a running operation (an export, a
// push) reads them. It is a file root/holds/<pid>-<random>.hold naming the
// process, its command and the held manifest digests, on which the
// process keeps an exclusive flock until Release. GC marks every held
// digest live, with everything the index records it references, and
// reports the unreachable blobs it kept that way. A hold file GC can lock
// belongs to a process that is gone (the kernel dropped its lock when it
// died): GC removes it and honours nothing in it.
//
// A Hold is safe for concurrent use; Release is idempotent.
type Hold struct {
	path string
	fl   *flock.Flock
	once sync.Once
	rec  holdRecord
	// ingest, when set, is the folder under root/ingest where the holder
	// writes its blobs (see holdWrites); removed on Release.
	ingest string
}

// holdRecord is the content of a hold file.
type holdRecord struct {
	Holder
	Digests []digest.Digest `json:"digests"`
	// GCLock: the holder holds the gc lock shared (an import, a push of
	// blobs, verify), so a GC waiting for it can name it.
	GCLock bool `json:"gcLock,omitempty"`
	// All: the holder reads every blob and record (cache verify): GC
	// removes nothing while it runs.
	All bool `json:"all,omitempty"`
}

// HoldClosure is Closure(refs) and a Hold on every artifact it returns (and
// so on everything they reference) until Release. Both happen under the gc
// lock held shared, so a GC running at the same time either finished
// before (refs resolve to what it left) or starts after and honours the
// hold: an export never meets a blob that GC removed under it.
func (s *Store) HoldClosure(ctx context.Context, refs []string) ([]Artifact, *Hold, error) {
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	arts, err := s.Closure(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	ds := make([]digest.Digest, 0, len(arts))
	for _, a := range arts {
		ds = append(ds, a.Descriptor.Digest)
	}
	h, err := s.hold(holdRecord{Digests: ds})
	if err != nil {
		return nil, nil, err
	}
	return arts, h, nil
}

// hold writes a hold file of rec (its Holder set to this process) and
// locks it. The caller holds the gc lock (shared), so no GC reads the file
// before it is complete.
func (s *Store) hold(rec holdRecord) (*Hold, error) {
	dir := s.path(holdsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache hold: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	path := filepath.Join(dir, strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(rnd[:])+holdExt)
	fl := flock.New(path, flock.SetPermissions(0o644))
	ok, err := fl.TryLock()
	if err != nil {
		_ = fl.Close()
		return nil, fmt.Errorf("cache hold %s: %w", path, err)
	}
	if !ok { // a fresh random name: only a broken file system gets here
		_ = fl.Close()
		return nil, fmt.Errorf("cache hold %s: locked by another process", path)
	}
	rec.Holder = s.holderRecord()
	h := &Hold{path: path, fl: fl, rec: rec}
	if err := h.write(); err != nil {
		h.Release()
		return nil, err
	}
	return h, nil
}

// write writes the hold's record to its file. Written through the path,
// not the lock's descriptor (opened read-only); advisory locks do not stop
// it. The caller holds the gc lock shared, so no GC reads a half-written
// file.
func (h *Hold) write() error {
	b, err := json.Marshal(h.rec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(h.path, b, 0o644); err != nil {
		return fmt.Errorf("cache hold %s: %w", h.path, err)
	}
	return nil
}

// name is the hold file's name without its extension: "<pid>-<random>".
func (h *Hold) name() string { return strings.TrimSuffix(filepath.Base(h.path), holdExt) }

// holdWrites starts the hold of an operation that writes blobs (an
// import) without holding the gc lock while it runs: under the gc lock
// held shared for an instant it writes a hold with no digests and creates
// root/ingest/<pid>-<random>/, the folder its blobs are written in. GC
// removes no folder of a live hold, and a folder whose hold is gone is a
// leftover. The operation then names what it is about to use with
// setHold before it relies on it.
func (s *Store) holdWrites(ctx context.Context) (*Hold, error) {
	return s.holdShared(ctx, holdRecord{}, func(h *Hold) error {
		dir := s.path(ingestDir, h.name())
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("cache ingest %s: %w", dir, err)
		}
		h.ingest = dir
		return nil
	})
}

// holdAll starts the hold of an operation that reads the whole cache
// (Verify) without holding the gc lock while it runs: a hold, written
// under the gc lock held shared for an instant, that keeps every blob and
// record. A GC running beside it removes nothing and names it.
func (s *Store) holdAll(ctx context.Context) (*Hold, error) {
	return s.holdShared(ctx, holdRecord{All: true}, nil)
}

// holdShared writes a hold of rec, then runs then (if set) on it, under
// the gc lock held shared for an instant. The hold is released if then
// fails.
func (s *Store) holdShared(ctx context.Context, rec holdRecord, then func(*Hold) error) (*Hold, error) {
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer release()
	h, err := s.hold(rec)
	if err != nil {
		return nil, err
	}
	if then != nil {
		if err := then(h); err != nil {
			h.Release()
			return nil, err
		}
	}
	return h, nil
}

// setHold replaces the digests a hold names, under the gc lock held shared
// for an instant: a GC that reads the holds after it keeps them, one that
// read them before has finished removing what it removes (a blob the
// holder then finds missing, it copies again).
func (s *Store) setHold(ctx context.Context, h *Hold, ds []digest.Digest) error {
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer release()
	h.rec.Digests = ds
	return h.write()
}

// Release ends the hold: the next GC may remove what it kept. Its ingest
// folder, if any, is removed first, then the file, while still locked, so
// no GC takes either for a stale one.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		if h.ingest != "" {
			_ = os.RemoveAll(h.ingest) // empty but for a failed write's temp files
		}
		_ = os.Remove(h.path)
		_ = h.fl.Close()
	})
}

// liveHolds reads the holds of running processes. Hold files whose lock it
// can take belong to processes that are gone: they are removed (even by a
// dry run: they are bookkeeping, not content). Called with the gc lock
// held exclusive, so no hold is being written. A live hold that cannot be read fails: GC must not guess what
// it keeps.
func (s *Store) liveHolds() ([]holdRecord, error) {
	ents, err := os.ReadDir(s.path(holdsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache holds: %w", err)
	}
	var out []holdRecord
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), holdExt) {
			continue
		}
		path := s.path(holdsDir, e.Name())
		fl := flock.New(path, flock.SetPermissions(0o644))
		locked, err := fl.TryLock()
		if err != nil {
			_ = fl.Close()
			return nil, fmt.Errorf("cache hold %s: %w", path, err)
		}
		if locked {
			// Its process is gone (or released it just now).
			_ = os.Remove(path)
			_ = fl.Close()
			continue
		}
		_ = fl.Close()
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		var r holdRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			return nil, fmt.Errorf("cache hold %s of a running process is unreadable: %w", path, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b holdRecord) int { return a.Since.Compare(b.Since) })
	return out, nil
}

// holderRecord describes this process as a lock or hold holder.
func (s *Store) holderRecord() Holder {
	args := s.opts.Holder
	if args == "" {
		args = "pid " + strconv.Itoa(os.Getpid())
	}
	return Holder{PID: os.Getpid(), Command: args, Since: s.now().Truncate(time.Second)}
}

// gcLockHolders names the running processes that hold the gc lock shared,
// oldest first, for a lock error. It only reads: a hold file of a process
// that is gone (by its pid) is skipped.
func (s *Store) gcLockHolders() []Holder {
	ents, err := os.ReadDir(s.path(holdsDir))
	if err != nil {
		return nil
	}
	var out []Holder
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), holdExt) {
			continue
		}
		b, err := os.ReadFile(s.path(holdsDir, e.Name()))
		if err != nil {
			continue
		}
		var r holdRecord
		if json.Unmarshal(b, &r) != nil || !r.GCLock || r.PID <= 0 || !alive(r.PID) {
			continue
		}
		out = append(out, r.Holder)
	}
	slices.SortFunc(out, func(a, b Holder) int { return a.Since.Compare(b.Since) })
	return out
}

// holdLive reports whether the hold named name ("<pid>-<random>") belongs
// to a running process: its file exists and is locked. It only reads.
func (s *Store) holdLive(name string) bool {
	path := s.path(holdsDir, name+holdExt)
	if _, err := os.Stat(path); err != nil {
		return false
	}
	fl := flock.New(path, flock.SetFlag(os.O_RDONLY))
	defer fl.Close()
	locked, err := fl.TryRLock()
	return err == nil && !locked
}
