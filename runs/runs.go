// Package runs keeps the runs of one stella home. Under
// <home>/runs/<tenant>/<time>/ each run has its private work folder, its
// outputs folder, its NDJSON log, its lock, and its journal: the durable
// record of the run. The cache index (record namespace "run") holds a
// summary of every run — its header, without steps or timeline — for
// listing, updated when the run's state changes, and, once a finished
// run's evidence was exported whole, its Export record; GC removes runs
// past the retention period, records before folders (gc.go).
//
// The journal is append-only: each Save appends, in one write followed by
// fdatasync, the record's header and what changed since the last Save
// (steps, timeline events, expansions), so a save costs what changed, not
// the size of the run. Reading replays it; a last line cut short by a crash
// (its Save never returned, so nothing acted on it) is ignored, anything
// else unreadable is ErrCorrupt. A run that is resumed starts from a
// compacted journal (one line per step).
//
// The lock is a file lock held by the one process driving a run: a second
// runner fails at once with ErrLocked naming the holder, and a run whose
// state says running while nobody holds its lock has lost its runner.
package runs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/plan"
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

	mu      sync.Mutex
	open    map[string]*os.File // journals open for appending
	indexed map[string]string   // run → state of its summary in the index
}

// Open returns the runs kept in st, with their folders under dir.
func Open(st *cache.Store, dir string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{cache: st, dir: dir, now: now, open: map[string]*os.File{}, indexed: map[string]string{}}
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
		b, err := json.Marshal(header(rec))
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
	return s.Compact(ctx, rec)
}

// header is rec without its steps, timeline and expansions.
func header(rec *run.Record) *run.Record {
	h := *rec
	h.Steps, h.Timeline, h.Expansions = nil, nil, nil
	return &h
}

// entry is one line of a journal: exactly one field is set.
type entry struct {
	Header    *run.Record     `json:"header,omitempty"`
	Step      *run.StepRecord `json:"step,omitempty"`
	Event     *run.Event      `json:"event,omitempty"`
	Expansion *expansionEntry `json:"expansion,omitempty"`
}

type expansionEntry struct {
	ID  string         `json:"id"`
	Exp plan.Expansion `json:"of"`
}

// JournalPath is the run's journal.
func (s *Store) JournalPath(id string) string { return filepath.Join(s.Folder(id), "journal.ndjson") }

// Save appends rec's header and d to the run's journal and syncs it
// (run.Store); when the run's state changed, its summary in the index too.
func (s *Store) Save(ctx context.Context, rec *run.Record, d run.Delta) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	put := func(e entry) error { return enc.Encode(e) }
	for _, st := range d.Steps {
		if err := put(entry{Step: st}); err != nil {
			return err
		}
	}
	for i := range d.Events {
		if err := put(entry{Event: &d.Events[i]}); err != nil {
			return err
		}
	}
	ids := make([]string, 0, len(d.Expansions))
	for id := range d.Expansions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := put(entry{Expansion: &expansionEntry{ID: id, Exp: d.Expansions[id]}}); err != nil {
			return err
		}
	}
	// The header goes last: a replay that reads it has read everything
	// this save wrote before it.
	if err := put(entry{Header: header(rec)}); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.journal(rec.ID)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("run %s: journal: %w", rec.ID, err)
	}
	if err := datasync(f); err != nil {
		return fmt.Errorf("run %s: journal: %w", rec.ID, err)
	}
	if s.indexed[rec.ID] != rec.State {
		if err := s.index(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// index records rec's header as its summary in the cache index.
func (s *Store) index(ctx context.Context, rec *run.Record) error {
	b, err := json.Marshal(header(rec))
	if err != nil {
		return err
	}
	if err := s.cache.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put(bucket, []byte(rec.ID), b)
	}); err != nil {
		return err
	}
	s.indexed[rec.ID] = rec.State
	return nil
}

// journal returns the open journal of run id, opening it for appending.
func (s *Store) journal(id string) (*os.File, error) {
	if f := s.open[id]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(s.JournalPath(id), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run %s: journal: %w", id, err)
	}
	s.open[id] = f
	return f, nil
}

// Compact rewrites the run's journal as rec whole (temp file, fsync,
// rename), and its summary: for a new run, a run about to be resumed, and a
// change made outside the engine (a cancel without a live runner).
func (s *Store) Compact(ctx context.Context, rec *run.Record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	ids := make([]string, 0, len(rec.Steps))
	for id := range rec.Steps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := enc.Encode(entry{Step: rec.Steps[id]}); err != nil {
			return err
		}
	}
	for i := range rec.Timeline {
		if err := enc.Encode(entry{Event: &rec.Timeline[i]}); err != nil {
			return err
		}
	}
	eids := make([]string, 0, len(rec.Expansions))
	for id := range rec.Expansions {
		eids = append(eids, id)
	}
	sort.Strings(eids)
	for _, id := range eids {
		if err := enc.Encode(entry{Expansion: &expansionEntry{ID: id, Exp: rec.Expansions[id]}}); err != nil {
			return err
		}
	}
	if err := enc.Encode(entry{Header: header(rec)}); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.open[rec.ID]; f != nil {
		f.Close()
		delete(s.open, rec.ID)
	}
	if err := safefile.WriteBytes(s.JournalPath(rec.ID), buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("run %s: journal: %w", rec.ID, err)
	}
	return s.index(ctx, rec)
}

// Close closes the journals this Store opened.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, f := range s.open {
		errs = append(errs, f.Close())
		delete(s.open, id)
	}
	return errors.Join(errs...)
}

// Get returns the record of run id, replayed from its journal.
func (s *Store) Get(ctx context.Context, id string) (*run.Record, error) {
	var summary []byte
	err := s.cache.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		summary = bytes.Clone(tx.Get(bucket, []byte(id)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if summary == nil {
		return nil, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(s.JournalPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		// Created, and its runner died before the first journal was
		// written: the summary is the whole record.
		var rec run.Record
		if err := json.Unmarshal(summary, &rec); err != nil {
			return nil, fmt.Errorf("run %s: %w: %v", id, ErrCorrupt, err)
		}
		rec.Steps = map[string]*run.StepRecord{}
		return &rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: journal: %w: %v", id, ErrCorrupt, err)
	}
	return replay(id, b)
}

// replay rebuilds a record from its journal. The last line may be cut
// short (a Save that never returned); any other bad line is ErrCorrupt.
func replay(id string, b []byte) (*run.Record, error) {
	var rec *run.Record
	steps := map[string]*run.StepRecord{}
	var timeline []run.Event
	exps := map[string]plan.Expansion{}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			if i == len(lines)-1 {
				break // a torn last write
			}
			return nil, fmt.Errorf("run %s: journal line %d: %w: %v", id, i+1, ErrCorrupt, err)
		}
		switch {
		case e.Header != nil:
			rec = e.Header
		case e.Step != nil:
			steps[e.Step.ID] = e.Step
		case e.Event != nil:
			timeline = append(timeline, *e.Event)
		case e.Expansion != nil:
			exps[e.Expansion.ID] = e.Expansion.Exp
		default:
			return nil, fmt.Errorf("run %s: journal line %d: %w: empty entry", id, i+1, ErrCorrupt)
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("run %s: journal holds no header: %w", id, ErrCorrupt)
	}
	rec.Steps, rec.Timeline = steps, timeline
	if len(exps) > 0 {
		rec.Expansions = exps
	}
	return rec, nil
}

// Filter selects runs in List; empty fields match everything.
type Filter struct {
	State  string
	Pack   string // <name> or <name>:<version>
	Tenant string
}

// List returns the summaries (records without steps, timeline and
// expansions; Updated as of the last change of state) of the runs matching
// f, newest first.
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

// SecretsPath is the run's folder of per-attempt secret folders.
func (s *Store) SecretsPath(id string) string { return filepath.Join(s.Folder(id), "secrets") }

// DestroyStaleSecrets destroys the secret files that runners killed
// before they could remove them left in any run of any tenant. A run whose
// lock is held (its runner is alive) is left alone; a run whose lock is
// free is locked while its files go, so no runner starts in between.
func (s *Store) DestroyStaleSecrets() error {
	tenants, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		folders, err := os.ReadDir(filepath.Join(s.dir, t.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range folders {
			folder := filepath.Join(s.dir, t.Name(), f.Name())
			secrets := filepath.Join(folder, "secrets")
			if ents, err := os.ReadDir(secrets); err != nil || len(ents) == 0 {
				continue
			}
			fl := flock.New(filepath.Join(folder, "lock"), flock.SetPermissions(0o600))
			ok, err := fl.TryLock()
			if err != nil || !ok {
				continue
			}
			errs = append(errs, run.DestroySecrets(secrets))
			_ = fl.Unlock()
		}
	}
	return errors.Join(errs...)
}
