package runs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
)

// TestJournal: what Save appends replays to the record as it was; a last
// line cut short by a crash is ignored; anything else unreadable is
// ErrCorrupt; Compact rewrites the same record in one piece.
func TestJournal(t *testing.T) {
	ctx := context.Background()
	st := cachetest.Open(t)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rs := Open(st, t.TempDir(), func() time.Time { return now })
	defer rs.Close()
	rec := &run.Record{Tenant: "acme", State: run.Running, Pack: plan.PackRef{Name: "p", Version: "1.0.0"}, Inputs: map[string]any{"x": 1.0}, Steps: map[string]*run.StepRecord{}}
	if err := rs.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if !ValidID(rec.ID) || rec.ID != "run:acme:20261127T120000.000000Z" {
		t.Fatalf("id %q", rec.ID)
	}
	for i, id := range []string{"a", "b", "a"} {
		sr := &run.StepRecord{ID: id, Kind: "run", State: run.Succeeded, Attempts: i + 1, Outputs: map[string]any{"n": float64(i)}}
		rec.Steps[id] = sr
		ev := run.Event{Time: now, Type: run.EventStepSucceeded, StepID: id}
		rec.Timeline = append(rec.Timeline, ev)
		d := run.Delta{Steps: []*run.StepRecord{sr}, Events: []run.Event{ev}}
		if i == 1 {
			exp := plan.Expansion{Steps: []plan.Step{{ID: "m[0]::x", Kind: "run"}}}
			rec.Expansions = map[string]plan.Expansion{"m": exp}
			d.Expansions = rec.Expansions
		}
		if err := rs.Save(ctx, rec, d); err != nil {
			t.Fatal(err)
		}
	}
	rec.State = run.Succeeded
	if err := rs.Save(ctx, rec, run.Delta{}); err != nil {
		t.Fatal(err)
	}
	got, err := rs.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Fatalf("replayed record (-saved +replayed):\n%s", diff)
	}
	list, err := rs.List(ctx, Filter{State: run.Succeeded})
	if err != nil || len(list) != 1 || list[0].ID != rec.ID || list[0].Steps != nil {
		t.Fatalf("list: %v %+v", err, list)
	}

	path := rs.JournalPath(rec.ID)
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(append([]byte{}, good...), []byte(`{"step":{"id":"c","sta`)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := rs.Get(ctx, rec.ID); err != nil || got.Steps["c"] != nil {
		t.Fatalf("a torn last line must be ignored: %v", err)
	}
	bad := append([]byte(`{"step":{"id":`+"\n"), good...)
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Get(ctx, rec.ID); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a bad line inside the journal must be ErrCorrupt, got %v", err)
	}
	if err := rs.Compact(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := rs.Get(ctx, rec.ID); err != nil || cmp.Diff(rec, got) != "" {
		t.Fatalf("compacted: %v %s", err, cmp.Diff(rec, got))
	}
	if _, err := rs.Get(ctx, "run:acme:20200101T000000.000000Z"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
	if filepath.Dir(path) != rs.Folder(rec.ID) {
		t.Fatal(path)
	}
}

// TestDestroyStaleSecrets: the secret files of a run whose runner is gone
// are destroyed; those of a live run (its lock held) are not touched.
func TestDestroyStaleSecrets(t *testing.T) {
	ctx := context.Background()
	st := cachetest.Open(t)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rs := Open(st, t.TempDir(), func() time.Time { now = now.Add(time.Second); return now })
	defer rs.Close()
	var files []string
	var live *Lock
	for i := 0; i < 2; i++ {
		rec := &run.Record{Tenant: "acme", State: run.Running}
		if err := rs.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(rs.SecretsPath(rec.ID), "step.1")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "token")
		if err := os.WriteFile(f, []byte("left-behind-secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		if i == 1 {
			l, err := rs.Lock(rec.ID, "test")
			if err != nil {
				t.Fatal(err)
			}
			live = l
		}
	}
	defer live.Unlock()
	if err := rs.DestroyStaleSecrets(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale secret %s survived: %v", files[0], err)
	}
	if b, err := os.ReadFile(files[1]); err != nil || string(b) != "left-behind-secret" {
		t.Errorf("a live run's secret was touched: %q, %v", b, err)
	}
}
