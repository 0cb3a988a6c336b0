// Package runs keeps the runs of one stella home: their records in the
// cache index (record namespace "run"), and beside them, under
// <home>/runs/<folder of the id>/, each run's private work folder, its
// outputs folder, its NDJSON log and its lock.
//
// Records are saved with the cache's durability (an index transaction,
// fsync on commit) before the engine takes its next action. The lock is a
// file lock held by the one process driving a run: a second runner fails at
// once with ErrLocked naming the holder, and a run whose state says
// running while nobody holds its lock has lost its runner.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/run"
)

var (
	// ErrNotFound: no run has that id.
	ErrNotFound = errors.New("run not found")
	// ErrLocked: another process drives the run.
	ErrLocked = errors.New("run is driven by another runner")
	// ErrCorrupt: a run record cannot be read.
	ErrCorrupt = errors.New("run record is corrupt")
	// ErrState: the run is not in a state that allows what was asked.
	ErrState = errors.New("run is not in a state for this")
)

const (
	namespace = "run"
	bucket    = "runs"
)

// Store is the runs of one home.
type Store struct {
	cache *cache.Store
	dir   string // <home>/runs
	now   func() time.Time
}

// Open returns the runs kept in st, with their folders under dir.
func Open(st *cache.Store, dir string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{cache: st, dir: dir, now: now}
}

// NewID returns a run id of the runbook's form, run:<tenant>:<UTC time>,
// with the time to the microsecond ("20261127T163555.123456Z"); Create
// makes it unique on this host.
func NewID(tenant string, t time.Time) string {
	return "run:" + tenant + ":" + t.UTC().Format("20060102T150405.000000Z")
}

var idRE = regexp.MustCompile(`^run:[A-Za-z0-9._-]{1,128}:[0-9]{8}T[0-9]{6}\.[0-9]{6}Z$`)

// ValidID reports whether id has the form NewID gives.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Folder is the run's folder: <dir>/<tenant>/<time>.
func (s *Store) Folder(id string) string {
	parts := strings.SplitN(id, ":", 3)
	if len(parts) != 3 {
		return filepath.Join(s.dir, "invalid")
	}
	return filepath.Join(s.dir, parts[1], parts[2])
}

// Create records a new run for tenant, with an id unique on this host (a
// run started in the same microsecond gets the next one), and makes its
// folder (mode 0700) with work/ and outputs/ in it.
func (s *Store) Create(ctx context.Context, rec *run.Record) error {
	t := s.now().UTC().Truncate(time.Microsecond)
	err := s.cache.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		for {
			id := NewID(rec.Tenant, t)
			if tx.Get(bucket, []byte(id)) == nil {
				rec.ID = id
				break
			}
			t = t.Add(time.Microsecond)
		}
		rec.Created, rec.Updated = t, t
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return tx.Put(bucket, []byte(rec.ID), b)
	})
	if err != nil {
		return err
	}
	for _, sub := range []string{"work", "outputs"} {
		if err := os.MkdirAll(filepath.Join(s.Folder(rec.ID), sub), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// Save records rec durably (run.Store).
func (s *Store) Save(ctx context.Context, rec *run.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.cache.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put(bucket, []byte(rec.ID), b)
	})
}

// Get returns the record of run id.
func (s *Store) Get(ctx context.Context, id string) (*run.Record, error) {
	var rec *run.Record
	err := s.cache.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		b := tx.Get(bucket, []byte(id))
		if b == nil {
			return fmt.Errorf("run %s: %w", id, ErrNotFound)
		}
		var r run.Record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("run %s: %w: %v", id, ErrCorrupt, err)
		}
		rec = &r
		return nil
	})
	return rec, err
}

// Filter selects runs in List; empty fields match everything.
type Filter struct {
	State  string
	Pack   string // <name> or <name>:<version>
	Tenant string
}

// List returns the runs matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*run.Record, error) {
	var out []*run.Record
	err := s.cache.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		return tx.ForEach(bucket, nil, func(k, v []byte) error {
			var r run.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("run %s: %w: %v", k, ErrCorrupt, err)
			}
			ref := r.Pack.Name + ":" + r.Pack.Version
			if (f.State == "" || r.State == f.State) && (f.Tenant == "" || r.Tenant == f.Tenant) &&
				(f.Pack == "" || f.Pack == r.Pack.Name || f.Pack == ref) {
				out = append(out, &r)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out, err
}

// Lock is a held run lock.
type Lock struct{ fl *flock.Flock }

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.fl.Unlock() }

// Lock takes the run's lock without waiting: ErrLocked (naming the holder
// when it can) if another process drives the run.
func (s *Store) Lock(id, holder string) (*Lock, error) {
	dir := s.Folder(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fl := flock.New(filepath.Join(dir, "lock"), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, err
	}
	if !ok {
		who, _ := os.ReadFile(filepath.Join(dir, "runner"))
		return nil, fmt.Errorf("run %s: %w (%s)", id, ErrLocked, orUnknown(strings.TrimSpace(string(who))))
	}
	_ = os.WriteFile(filepath.Join(dir, "runner"), []byte(fmt.Sprintf("pid %d, %s, since %s\n", os.Getpid(), holder, s.now().UTC().Format(time.RFC3339))), 0o600)
	return &Lock{fl: fl}, nil
}

// Live reports whether a process holds run id's lock (its runner is alive).
func (s *Store) Live(id string) bool {
	p := filepath.Join(s.Folder(id), "lock")
	if _, err := os.Stat(p); err != nil {
		return false
	}
	fl := flock.New(p)
	ok, err := fl.TryRLock()
	if err != nil {
		return false
	}
	if ok {
		_ = fl.Unlock()
		return false
	}
	return true
}

func orUnknown(s string) string {
	if s == "" {
		return "holder unknown"
	}
	return "held by " + s
}

// LogPath is the run's NDJSON log.
func (s *Store) LogPath(id string) string { return filepath.Join(s.Folder(id), "log.ndjson") }

// CancelPath is the file whose presence asks the live runner to cancel.
func (s *Store) CancelPath(id string) string { return filepath.Join(s.Folder(id), "cancel") }

// RequestCancel asks the runner of id to cancel the run.
func (s *Store) RequestCancel(id string) error {
	return os.WriteFile(s.CancelPath(id), []byte(strconv.FormatInt(s.now().Unix(), 10)+"\n"), 0o600)
}

// CancelRequested reports whether a cancel was asked for.
func (s *Store) CancelRequested(id string) bool {
	_, err := os.Stat(s.CancelPath(id))
	return err == nil
}
