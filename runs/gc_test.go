package runs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
)

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"720h", 720 * time.Hour},
		{"30d", 30 * 24 * time.Hour},
		{"1d", 24 * time.Hour},
		{"90m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
	} {
		got, err := ParseRetention(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "0d", "-1d", "-5h", "d", "1.5d", "30days", "abc", "1hd"} {
		if _, err := ParseRetention(in); !errors.Is(err, ErrRetention) {
			t.Errorf("ParseRetention(%q): %v, want ErrRetention", in, err)
		}
	}
}

// gcFixture is a runs store whose clock the test moves.
type gcFixture struct {
	t   *testing.T
	ctx context.Context
	now time.Time
	dir string
	rs  *Store
}

func newGCFixture(t *testing.T) *gcFixture {
	f := &gcFixture{t: t, ctx: context.Background(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), dir: t.TempDir()}
	// The cache is verified with the runs hook when the test ends: gc
	// must leave no record naming a missing folder or a missing run.
	st := cachetest.Open(t, VerifyHook(f.dir))
	f.rs = Open(st, f.dir, func() time.Time { return f.now })
	t.Cleanup(func() { f.rs.Close() })
	return f
}

// run creates a run that ends in state (unless it is running) at the
// current clock, with a log, work and outputs files.
func (f *gcFixture) run(tenant, state string) *run.Record {
	f.t.Helper()
	rec := &run.Record{Tenant: tenant, State: run.Running, Pack: plan.PackRef{Name: "p", Version: "1.0.0"}, Steps: map[string]*run.StepRecord{}}
	if err := f.rs.Create(f.ctx, rec); err != nil {
		f.t.Fatal(err)
	}
	if state != run.Running {
		end := f.now
		rec.State, rec.Ended = state, &end
		if err := f.rs.Compact(f.ctx, rec); err != nil {
			f.t.Fatal(err)
		}
	}
	for _, p := range []string{f.rs.LogPath(rec.ID), filepath.Join(f.rs.Folder(rec.ID), "work", "w.txt"), filepath.Join(f.rs.Folder(rec.ID), "outputs", "o.txt")} {
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	// A step may leave a read-only folder behind.
	ro := filepath.Join(f.rs.Folder(rec.ID), "work", "ro")
	if err := os.MkdirAll(filepath.Join(ro, "sub"), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o500); err != nil {
		f.t.Fatal(err)
	}
	f.now = f.now.Add(time.Second)
	return rec
}

func (f *gcFixture) export(rec *run.Record) {
	f.t.Helper()
	if err := f.rs.RecordExport(f.ctx, rec.ID, Export{Time: f.now, FileDigest: "sha256:0123", State: rec.State, Ended: rec.Ended}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gcFixture) gc(opts GCOptions) GCResult {
	f.t.Helper()
	res, err := f.rs.GC(f.ctx, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// present reports whether run id has an index record and a folder, and
// fails when only one of them is there.
func (f *gcFixture) present(id string) bool {
	f.t.Helper()
	_, err := f.rs.Get(f.ctx, id)
	indexed := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		f.t.Fatal(err)
	}
	_, serr := os.Stat(f.rs.Folder(id))
	if indexed != (serr == nil) {
		f.t.Fatalf("run %s: index record %v but folder %v", id, indexed, serr)
	}
	return indexed
}

func reasons(es []GCEntry) map[string]string {
	m := map[string]string{}
	for _, e := range es {
		m[e.RunID] = e.Reason
	}
	return m
}

// TestGC: only finished runs past the retention period go, and only when
// their evidence was exported as they ended (or with Force); running,
// locked and young runs stay; dry runs remove nothing.
func TestGC(t *testing.T) {
	f := newGCFixture(t)
	exported := f.run("acme", run.Succeeded)
	f.export(exported)
	unexported := f.run("acme", run.Failed)
	running := f.run("acme", run.Running)
	parked := f.run("other", run.AwaitingApproval)
	locked := f.run("acme", run.Cancelled)
	f.export(locked)
	// Exported, then resumed and ended again: the export no longer covers it.
	stale := f.run("acme", run.Failed)
	f.export(stale)
	f.now = f.now.Add(time.Hour)
	end := f.now
	stale.State, stale.Ended = run.Succeeded, &end
	if err := f.rs.Compact(f.ctx, stale); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(40 * 24 * time.Hour)
	young := f.run("acme", run.Succeeded)
	f.export(young)

	lock, err := f.rs.Lock(locked.ID, "test runner")
	if err != nil {
		t.Fatal(err)
	}

	wantKept := map[string]string{
		unexported.ID: KeptNotExported,
		running.ID:    KeptRunning,
		parked.ID:     KeptRunning,
		locked.ID:     KeptRunning,
		stale.ID:      KeptNotExported,
		young.ID:      KeptTooYoung,
	}
	dry := f.gc(GCOptions{DryRun: true})
	if !dry.DryRun || !dry.Cutoff.Equal(f.now.Add(-DefaultRetention)) {
		t.Fatalf("dry run result %+v", dry)
	}
	if diff := cmp.Diff(map[string]string{exported.ID: RemovedExported}, reasons(dry.Removed)); diff != "" {
		t.Errorf("dry run removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantKept, reasons(dry.Kept)); diff != "" {
		t.Errorf("dry run kept (-want +got):\n%s", diff)
	}
	for _, r := range []*run.Record{exported, unexported, running, parked, locked, stale, young} {
		if !f.present(r.ID) {
			t.Fatalf("dry run removed %s", r.ID)
		}
	}

	res := f.gc(GCOptions{})
	if diff := cmp.Diff(map[string]string{exported.ID: RemovedExported}, reasons(res.Removed)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantKept, reasons(res.Kept)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if f.present(exported.ID) {
		t.Fatalf("%s still present", exported.ID)
	}
	if e, err := f.rs.Exported(f.ctx, exported.ID); err != nil || e != nil {
		t.Fatalf("export record of a removed run: %v, %v", e, err)
	}

	// Force removes old runs not exported; never a running or locked one.
	res = f.gc(GCOptions{Force: true})
	want := map[string]string{unexported.ID: RemovedForced, stale.ID: RemovedForced}
	if diff := cmp.Diff(want, reasons(res.Removed)); diff != "" {
		t.Errorf("forced removed (-want +got):\n%s", diff)
	}
	for id := range want {
		if f.present(id) {
			t.Fatalf("%s still present", id)
		}
	}
	for _, r := range []*run.Record{running, parked, locked, young} {
		if !f.present(r.ID) {
			t.Fatalf("forced gc removed %s", r.ID)
		}
	}

	// Unlocked, the locked run goes; a shorter retention takes the young.
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	res = f.gc(GCOptions{OlderThan: time.Nanosecond})
	want = map[string]string{locked.ID: RemovedExported, young.ID: RemovedExported}
	if diff := cmp.Diff(want, reasons(res.Removed)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	list, err := f.rs.List(f.ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d runs left, want running and parked", len(list))
	}
	if _, err := os.Stat(filepath.Join(f.dir, "other")); err != nil {
		t.Fatalf("tenant folder of a kept run: %v", err)
	}
}

// TestGCInterrupted: a gc that stopped after deleting a run's index
// records left its folder (an orphan, never an index record naming a
// missing folder); the next gc removes it, but not a young folder.
func TestGCInterrupted(t *testing.T) {
	f := newGCFixture(t)
	rec := f.run("acme", run.Succeeded)
	f.export(rec)
	f.now = f.now.Add(31 * 24 * time.Hour)
	young := NewID("acme", f.now)
	if err := os.MkdirAll(filepath.Join(f.rs.Folder(young), "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What remove does first, alone: the records go, the folder stays.
	if err := f.rs.deleteRecords(f.ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.rs.Folder(rec.ID)); err != nil {
		t.Fatal(err)
	}
	dry := f.gc(GCOptions{DryRun: true})
	if diff := cmp.Diff(map[string]string{rec.ID: RemovedOrphan}, reasons(dry.Removed)); diff != "" {
		t.Errorf("dry run removed (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(f.rs.Folder(rec.ID)); err != nil {
		t.Fatalf("dry run removed the orphan: %v", err)
	}
	res := f.gc(GCOptions{})
	if diff := cmp.Diff(map[string]string{rec.ID: RemovedOrphan}, reasons(res.Removed)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(f.rs.Folder(rec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan folder: %v", err)
	}
	if _, err := os.Stat(f.rs.Folder(young)); err != nil {
		t.Fatalf("young folder without a record was removed: %v", err)
	}
}

// TestRecordExport: an export is recorded only for a run in the index.
func TestRecordExport(t *testing.T) {
	f := newGCFixture(t)
	err := f.rs.RecordExport(f.ctx, "run:acme:20260101T000000.000000Z", Export{Time: f.now})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("export of an unknown run: %v, want ErrNotFound", err)
	}
	rec := f.run("acme", run.Succeeded)
	if e, err := f.rs.Exported(f.ctx, rec.ID); err != nil || e != nil {
		t.Fatalf("before export: %v, %v", e, err)
	}
	f.export(rec)
	e, err := f.rs.Exported(f.ctx, rec.ID)
	if err != nil || e == nil || e.State != run.Succeeded || !e.covers(rec) {
		t.Fatalf("after export: %+v, %v", e, err)
	}
}

// TestGCFolderGone: an old exported run whose folder is already gone loses
// its records too.
func TestGCFolderGone(t *testing.T) {
	f := newGCFixture(t)
	rec := f.run("acme", run.Succeeded)
	f.export(rec)
	if err := os.Chmod(filepath.Join(f.rs.Folder(rec.ID), "work", "ro"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(f.rs.Folder(rec.ID)); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(31 * 24 * time.Hour)
	res := f.gc(GCOptions{})
	if diff := cmp.Diff(map[string]string{rec.ID: RemovedExported}, reasons(res.Removed)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if f.present(rec.ID) {
		t.Fatalf("%s still indexed", rec.ID)
	}
}

// TestVerifyHook: the runs hook of cache verify reports undecodable
// records and export records of no run as errors, and a run without its
// folder as a warning.
func TestVerifyHook(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := cachetest.OpenAt(t, t.TempDir()) // checked without the hook: this test breaks the run records on purpose
	rs := Open(st, dir, func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	defer rs.Close()
	rec := &run.Record{Tenant: "acme", State: run.Succeeded, Steps: map[string]*run.StepRecord{}}
	if err := rs.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	hook := VerifyHook(dir)
	probs, err := hook.Check(ctx, st)
	if err != nil || len(probs) != 0 {
		t.Fatalf("a sound run: %v, %v", probs, err)
	}
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		if err := tx.Put(bucket, []byte("run:acme:20250101T000000.000000Z"), []byte("{not json")); err != nil {
			return err
		}
		return tx.Put(exportsBucket, []byte("run:acme:20250102T000000.000000Z"), []byte(`{"state":"succeeded"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(rs.Folder(rec.ID)); err != nil {
		t.Fatal(err)
	}
	probs, err = hook.Check(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range probs {
		got[p.Object] = string(p.Severity) + " " + p.Problem
	}
	want := map[string]string{
		"run:acme:20250101T000000.000000Z":           "error " + ProblemRecord,
		"export of run:acme:20250102T000000.000000Z": "error " + ProblemExportOrphan,
		rec.ID: "warning " + ProblemFolder,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	// Leave the cache sound for cachetest's own check.
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return errors.Join(tx.Delete(bucket, []byte("run:acme:20250101T000000.000000Z")), tx.Delete(exportsBucket, []byte("run:acme:20250102T000000.000000Z")))
	}); err != nil {
		t.Fatal(err)
	}
}
