package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/run"
)

// DefaultRetention is how long a finished run is kept (the runbook's 30
// days), measured from its end.
const DefaultRetention = 30 * 24 * time.Hour

// ErrRetention: a retention period is not a positive duration.
var ErrRetention = errors.New("invalid retention period")

// exportsBucket holds, per run id, the Export of its finished evidence.
const exportsBucket = "exports"

// ParseRetention parses a retention period: a Go duration ("720h") or a
// whole number of days ("30d").
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && !strings.ContainsAny(n, "hmsuµn.") {
		var days int64
		days, err = strconv.ParseInt(n, 10, 64)
		if err == nil && days > 0 && days <= 100*365 {
			d = time.Duration(days) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 720h or 30d: %w", s, ErrRetention)
	}
	return d, nil
}

// Export records that a finished run's evidence was written whole (never
// for a partial export): when, the sha256 of the bundle file, the evidence
// manifest, and the run's state and end as exported. A run resumed after
// its export ends again later, so its export no longer covers it.
type Export struct {
	Time       time.Time     `json:"time"`
	FileDigest digest.Digest `json:"fileDigest"`
	Evidence   digest.Digest `json:"evidence"`
	State      string        `json:"state"`
	Ended      *time.Time    `json:"ended,omitempty"`
}

// RecordExport records e as the export of run id, replacing an earlier one.
// ErrNotFound if the index holds no such run.
func (s *Store) RecordExport(ctx context.Context, id string, e Export) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.cache.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		if tx.Get(bucket, []byte(id)) == nil {
			return fmt.Errorf("run %s: %w", id, ErrNotFound)
		}
		return tx.Put(exportsBucket, []byte(id), b)
	})
}

// Exported returns the recorded export of run id, or nil if its evidence
// was never exported whole.
func (s *Store) Exported(ctx context.Context, id string) (*Export, error) {
	var e *Export
	err := s.cache.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		v := tx.Get(exportsBucket, []byte(id))
		if v == nil {
			return nil
		}
		e = new(Export)
		if err := json.Unmarshal(v, e); err != nil {
			return fmt.Errorf("run %s: export record: %w: %v", id, ErrCorrupt, err)
		}
		return nil
	})
	return e, err
}

// covers reports whether e is an export of rec as it ended.
func (e *Export) covers(rec *run.Record) bool {
	return e != nil && e.State == rec.State && e.Ended != nil && rec.Ended != nil && e.Ended.Equal(*rec.Ended)
}

// Why GC kept or removed a run (GCEntry.Reason).
const (
	KeptRunning     = "running"      // not finished, or its runner lock is held
	KeptTooYoung    = "too-young"    // ended within the retention period
	KeptNotExported = "not-exported" // its evidence was not exported (since it last ended)
	RemovedExported = "exported"     // old enough and its evidence exported
	RemovedForced   = "forced"       // old enough, not exported, --force
	RemovedOrphan   = "orphan"       // a folder with no index record, left by an interrupted gc
)

// GCOptions tune GC.
type GCOptions struct {
	// OlderThan is the retention period; zero means DefaultRetention.
	OlderThan time.Duration
	// Force removes old runs whose evidence was not exported too.
	Force bool
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// GCEntry is one run GC removed or kept.
type GCEntry struct {
	RunID  string     `json:"runId"`
	Tenant string     `json:"tenant"`
	State  string     `json:"state"`
	Ended  *time.Time `json:"ended,omitempty"`
	Reason string     `json:"reason"`
}

// GCResult says what GC removed (or, with DryRun, would remove) and what
// it kept and why; both sorted by run id.
type GCResult struct {
	DryRun  bool      `json:"dryRun"`
	Cutoff  time.Time `json:"cutoff"` // runs that ended before this are old enough
	Removed []GCEntry `json:"removed"`
	Kept    []GCEntry `json:"kept"`
}

// GC removes the runs of every tenant that ended before now minus the
// retention period and whose evidence was exported (any such run with
// Force): their index records (summary and export) and their folders
// (journal, lock, log, log data, work, outputs, secrets). A run that has
// not ended, or whose runner lock is held, is never removed.
//
// Each run is locked, checked again, then its index records are deleted
// in one transaction and only then its folder: an index entry never names
// a missing folder. A gc interrupted between the two leaves a folder
// without a record (an orphan); the next GC removes orphans whose run id
// is older than the cutoff. Saved plans and packs are not per run (plans
// are shared by every run and approval of a plan hash) and stay.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	ret := opts.OlderThan
	if ret == 0 {
		ret = DefaultRetention
	}
	if ret < 0 {
		return GCResult{}, fmt.Errorf("%s: %w", ret, ErrRetention)
	}
	cutoff := s.now().UTC().Add(-ret)
	res := GCResult{DryRun: opts.DryRun, Cutoff: cutoff, Removed: []GCEntry{}, Kept: []GCEntry{}}
	list, err := s.List(ctx, Filter{})
	if err != nil {
		return res, err
	}
	indexed := map[string]bool{}
	for _, sum := range list {
		indexed[sum.ID] = true
		if err := ctx.Err(); err != nil {
			return res, err
		}
		ent, remove, err := s.judge(ctx, sum, cutoff, opts.Force, true)
		if errors.Is(err, ErrNotFound) {
			continue // another gc removed it meanwhile
		}
		if err != nil {
			return res, err
		}
		if !remove {
			res.Kept = append(res.Kept, ent)
			continue
		}
		if opts.DryRun {
			res.Removed = append(res.Removed, ent)
			continue
		}
		unlock, err := s.tryLock(sum.ID)
		if errors.Is(err, ErrLocked) {
			ent.Reason = KeptRunning
			res.Kept = append(res.Kept, ent)
			continue
		}
		if err != nil {
			return res, err
		}
		// Judged again under the lock: a resume may have started since.
		ent, remove, err = s.judge(ctx, sum, cutoff, opts.Force, false)
		if errors.Is(err, ErrNotFound) {
			unlock()
			continue // another gc removed it meanwhile
		}
		if err == nil && remove {
			err = s.remove(ctx, sum.ID)
		}
		unlock()
		if err != nil {
			return res, err
		}
		if remove {
			res.Removed = append(res.Removed, ent)
		} else {
			res.Kept = append(res.Kept, ent)
		}
	}
	orphans, err := s.orphans(indexed, cutoff)
	if err != nil {
		return res, err
	}
	for _, id := range orphans {
		ent := GCEntry{RunID: id, Tenant: strings.SplitN(id, ":", 3)[1], Reason: RemovedOrphan}
		if !opts.DryRun {
			ok, err := s.removeOrphan(ctx, id)
			if err != nil {
				return res, err
			}
			if !ok {
				continue
			}
		}
		res.Removed = append(res.Removed, ent)
	}
	sort.Slice(res.Removed, func(i, j int) bool { return res.Removed[i].RunID < res.Removed[j].RunID })
	sort.Slice(res.Kept, func(i, j int) bool { return res.Kept[i].RunID < res.Kept[j].RunID })
	return res, nil
}

// tryLock takes run id's lock without waiting and without making its
// folder (Lock would): ErrLocked if a runner holds it; a run whose folder
// is already gone needs no lock (its records alone are left to delete).
func (s *Store) tryLock(id string) (func(), error) {
	if _, err := os.Stat(s.Folder(id)); errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	fl := flock.New(filepath.Join(s.Folder(id), "lock"), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil // removed meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: lock: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("run %s: %w", id, ErrLocked)
	}
	return func() { _ = fl.Unlock() }, nil
}

// judge decides on one run from its full record (its summary when the
// journal cannot be read); live asks whether another process holds its
// lock (not when GC holds it itself).
func (s *Store) judge(ctx context.Context, sum *run.Record, cutoff time.Time, force, live bool) (GCEntry, bool, error) {
	rec, err := s.Get(ctx, sum.ID)
	if errors.Is(err, ErrCorrupt) {
		rec = sum
	} else if err != nil {
		return GCEntry{}, false, err
	}
	ent := GCEntry{RunID: rec.ID, Tenant: rec.Tenant, State: rec.State, Ended: rec.Ended}
	if !run.Terminal(rec.State) || (live && s.Live(rec.ID)) {
		ent.Reason = KeptRunning
		return ent, false, nil
	}
	ended := rec.Updated
	if rec.Ended != nil {
		ended = *rec.Ended
	}
	if !ended.Before(cutoff) {
		ent.Reason = KeptTooYoung
		return ent, false, nil
	}
	exp, err := s.Exported(ctx, rec.ID)
	if err != nil {
		return ent, false, err
	}
	switch {
	case exp.covers(rec):
		ent.Reason = RemovedExported
	case force:
		ent.Reason = RemovedForced
	default:
		ent.Reason = KeptNotExported
		return ent, false, nil
	}
	return ent, true, nil
}

// remove deletes run id's index records, then its folder.
func (s *Store) remove(ctx context.Context, id string) error {
	if err := s.deleteRecords(ctx, id); err != nil {
		return err
	}
	return s.removeFolder(id)
}

// deleteRecords deletes run id's summary and export in one transaction.
func (s *Store) deleteRecords(ctx context.Context, id string) error {
	if err := s.cache.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		if err := tx.Delete(bucket, []byte(id)); err != nil {
			return err
		}
		return tx.Delete(exportsBucket, []byte(id))
	}); err != nil {
		return fmt.Errorf("run %s: %w", id, err)
	}
	s.mu.Lock()
	if f := s.open[id]; f != nil {
		f.Close()
		delete(s.open, id)
	}
	delete(s.indexed, id)
	s.mu.Unlock()
	return nil
}

// removeFolder removes the run's folder, making read-only folders a step
// left writable first, then its tenant folder if that is now empty.
func (s *Store) removeFolder(id string) error {
	dir := s.Folder(id)
	if err := os.RemoveAll(dir); err != nil {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("run %s: remove folder: %w", id, err)
		}
	}
	_ = os.Remove(filepath.Dir(dir)) // only if empty
	return nil
}

// orphans are the run folders with no index record whose run id (its start
// time) is before cutoff, sorted. Younger folders are left alone: a run
// being created writes its record first, but a folder that young is never
// an orphan of a gc of runs older than the retention period.
func (s *Store) orphans(indexed map[string]bool, cutoff time.Time) ([]string, error) {
	tenants, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		folders, err := os.ReadDir(filepath.Join(s.dir, t.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range folders {
			id := "run:" + t.Name() + ":" + f.Name()
			if !f.IsDir() || !ValidID(id) || indexed[id] {
				continue
			}
			started, err := time.Parse("20060102T150405.000000Z", f.Name())
			if err != nil || !started.Before(cutoff) {
				continue
			}
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// removeOrphan removes an orphan folder under its lock, once the index
// still holds no record of it; false if it was locked or got a record.
func (s *Store) removeOrphan(ctx context.Context, id string) (bool, error) {
	fl := flock.New(filepath.Join(s.Folder(id), "lock"), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil || !ok {
		return false, nil
	}
	defer fl.Unlock()
	var has bool
	if err := s.cache.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		has = tx.Get(bucket, []byte(id)) != nil
		return nil
	}); err != nil {
		return false, err
	}
	if has {
		return false, nil
	}
	return true, s.removeFolder(id)
}

// Problem codes of VerifyHook.
const (
	ProblemRecord       = "run-record-invalid"  // a run summary or export record cannot be decoded
	ProblemExportOrphan = "run-export-dangling" // an export record names no run
	ProblemFolder       = "run-folder-missing"  // a run record whose folder is gone (warning: a runner killed at creation)
	VerifySource        = "runs"                // Problem.Source of VerifyHook's problems
)

// VerifyHook checks the run records as part of `stella cache verify`:
// every summary and export record decodes, every export names a run, and
// (a warning) every run's folder exists.
func VerifyHook(dir string) cache.VerifyHook {
	return cache.VerifyHook{Name: VerifySource, Check: func(ctx context.Context, st *cache.Store) ([]cache.Problem, error) {
		var out []cache.Problem
		s := Open(st, dir, nil)
		err := st.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
			if err := tx.ForEach(bucket, nil, func(k, v []byte) error {
				var r run.Record
				if json.Unmarshal(v, &r) != nil {
					out = append(out, cache.Problem{Severity: cache.SeverityError, Source: VerifySource, Object: string(k), Problem: ProblemRecord})
					return nil
				}
				if _, err := os.Stat(s.Folder(string(k))); errors.Is(err, fs.ErrNotExist) {
					out = append(out, cache.Problem{Severity: cache.SeverityWarning, Source: VerifySource, Object: string(k), Problem: ProblemFolder, Expected: s.Folder(string(k))})
				}
				return nil
			}); err != nil {
				return err
			}
			return tx.ForEach(exportsBucket, nil, func(k, v []byte) error {
				var e Export
				if json.Unmarshal(v, &e) != nil {
					out = append(out, cache.Problem{Severity: cache.SeverityError, Source: VerifySource, Object: "export of " + string(k), Problem: ProblemRecord})
				}
				if tx.Get(bucket, k) == nil {
					out = append(out, cache.Problem{Severity: cache.SeverityError, Source: VerifySource, Object: "export of " + string(k), Problem: ProblemExportOrphan})
				}
				return nil
			})
		})
		return out, err
	}}
}
