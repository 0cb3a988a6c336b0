package plans

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/plan"
)

// streamedFixture is the sample pack's plan built both ways.
type streamedFixture struct {
	fixture
	streamed *plan.Streamed
	whole    *plan.Plan
}

func loadStreamed(t testing.TB) streamedFixture {
	t.Helper()
	s, err := plan.BuildStreamed(loadSample(t))
	if err != nil {
		t.Fatal(err)
	}
	w, err := plan.Build(loadSample(t))
	if err != nil {
		t.Fatal(err)
	}
	return streamedFixture{fixture: loadFixture(t), streamed: s, whole: w}
}

// recordFile is where the canonical bytes of plan h are kept.
func recordFile(st *cache.Store, h string) string {
	return filepath.Join(st.Root(), "records", namespace+"."+bucket, "sha256", strings.TrimPrefix(h, "sha256:"))
}

// rawRecord reads the stored record of plan h as JSON members.
func rawRecord(t *testing.T, st *cache.Store, h string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := st.Records(namespace).View(context.Background(), func(tx cache.RecordTx) error {
		return json.Unmarshal(tx.Get(bucket, []byte(h)), &m)
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSaveStreamed: a plan saved as it streams (pack plan --save) or from
// a plan held whole (pack run) is stored with the hash, record and bytes
// Save gives its canonical bytes, and Get and List return exactly what
// they return for it; the bytes are the record file of the hash, not in
// the record, and gc keeps them.
func TestSaveStreamed(t *testing.T) {
	ctx := context.Background()
	fx := loadStreamed(t)
	meta := Meta{Tenant: testTenant, SavedAt: t0, PackSize: 1234}

	ref := openCache(t)
	if _, err := Save(ctx, ref, fx.canonical, meta); err != nil {
		t.Fatal(err)
	}
	wantGet, err := Get(ctx, ref, fx.hash)
	if err != nil {
		t.Fatal(err)
	}
	wantList, err := List(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	for name, save := range map[string]func(st *cache.Store, meta Meta) (*Saved, error){
		"streamed": func(st *cache.Store, meta Meta) (*Saved, error) { return SaveStreamed(ctx, st, fx.streamed, meta) },
		"whole":    func(st *cache.Store, meta Meta) (*Saved, error) { return SavePlan(ctx, st, fx.whole, meta) },
	} {
		t.Run(name, func(t *testing.T) {
			st := openCache(t)
			sp, err := save(st, meta)
			if err != nil {
				t.Fatal(err)
			}
			want := *wantGet
			want.Canonical, want.Plan = nil, nil
			if name == "whole" {
				want.Plan = fx.whole
			}
			if diff := cmp.Diff(want, *sp); diff != "" {
				t.Fatalf("saved (-want +got):\n%s", diff)
			}
			got, err := Get(ctx, st, fx.hash[7:7+MinHashPrefix])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*wantGet, *got); diff != "" {
				t.Fatalf("get (-want +got):\n%s", diff)
			}
			list, err := List(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantList, list); diff != "" {
				t.Fatalf("list (-want +got):\n%s", diff)
			}

			// The record holds the size, not the bytes; the record file
			// holds them, read-only.
			rec := rawRecord(t, st, fx.hash)
			if _, ok := rec["canonical"]; ok || string(rec["size"]) != jsonInt(len(fx.canonical)) {
				t.Fatalf("record holds canonical %t, size %s", ok, rec["size"])
			}
			b, err := os.ReadFile(recordFile(st, fx.hash))
			if err != nil || string(b) != string(fx.canonical) {
				t.Fatalf("record file: %d bytes, %v", len(b), err)
			}
			if fi, err := os.Stat(recordFile(st, fx.hash)); err != nil || fi.Mode().Perm()&0o222 != 0 {
				t.Fatalf("record file mode: %v %v", fi.Mode(), err)
			}

			// gc keeps them.
			if _, err := st.GC(ctx, cache.GCOptions{}); err != nil {
				t.Fatal(err)
			}
			if got, err := Get(ctx, st, fx.hash); err != nil || string(got.Canonical) != string(fx.canonical) {
				t.Fatalf("get after gc: %v", err)
			}

			// Saving again keeps the first record.
			again, err := save(st, Meta{Tenant: "other", SavedAt: t0.Add(time.Hour)})
			if err != nil || again.Tenant != testTenant || again.PackSize != 1234 || !again.SavedAt.Equal(t0) {
				t.Fatalf("second save: %+v %v", again, err)
			}
		})
	}
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestSaveStreamedRefuses: SaveStreamed refuses what Save refuses of a
// plan it can be given, with the same errors, and leaves nothing behind
// (no record, no record file, no staged file: the cache's own check on
// the way out fails on a leftover).
func TestSaveStreamedRefuses(t *testing.T) {
	ctx := context.Background()
	fx := loadStreamed(t)
	st := openCache(t)
	for name, meta := range map[string]Meta{
		"tenant with a space": {Tenant: "a b"},
		"negative pack size":  {PackSize: -1},
	} {
		if _, err := SaveStreamed(ctx, st, fx.streamed, meta); !errors.Is(err, ErrInvalidMeta) {
			t.Errorf("%s: got %v, want ErrInvalidMeta", name, err)
		}
	}
	if _, err := SaveStreamed(ctx, st, fx.streamed, Meta{PackRef: "other:1.0.0"}); !errors.Is(err, plan.ErrInvalid) {
		t.Errorf("pack ref of another pack: %v", err)
	}
	// A pack digest that is not sha256, more than MaxSize bytes, and a
	// write that fails midway.
	pk := fx.streamed.Pack()
	bad := pk
	bad.Digest = digest.Digest("sha512:" + strings.Repeat("a", 128))
	writeN := func(n int) func(w io.Writer) error {
		return func(w io.Writer) error {
			chunk := make([]byte, 1<<20)
			for ; n > 0; n -= len(chunk) {
				if _, err := w.Write(chunk[:min(n, len(chunk))]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	boom := errors.New("expansion failed")
	for name, c := range map[string]struct {
		pack  plan.PackRef
		write func(w io.Writer) error
		want  error
	}{
		"sha512 pack digest": {bad, writeN(10), plan.ErrInvalid},
		"over MaxSize":       {pk, writeN(MaxSize + 1), plan.ErrInvalid},
		"write fails": {pk, func(w io.Writer) error {
			if err := writeN(3 << 20)(w); err != nil {
				return err
			}
			return boom
		}, boom},
	} {
		if _, err := saveWritten(ctx, st, c.pack, nil, c.write, Meta{}); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	if list, _ := List(ctx, st); len(list) != 0 {
		t.Fatalf("refused plans were saved: %+v", list)
	}
	ents, err := os.ReadDir(filepath.Join(st.Root(), "records"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) || len(ents) != 0 {
		t.Fatalf("record files of refused plans: %v %v", ents, err)
	}
}

// TestSaveStreamedKeepsPreviousVersion: a plan saved by an earlier version
// (bytes inline) is kept as it is when saved again, and no record file is
// written for it.
func TestSaveStreamedKeepsPreviousVersion(t *testing.T) {
	ctx := context.Background()
	fx := loadStreamed(t)
	st := openCache(t)
	old, _ := json.Marshal(record{PackRef: "remediate-cve:" + fx.whole.Pack.Version, Pack: fx.whole.Pack, Tenant: testTenant,
		SavedAt: t0, PackSize: 1234, Approvals: fx.whole.Approvals, Canonical: fx.canonical})
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put(bucket, []byte(fx.hash), old)
	}); err != nil {
		t.Fatal(err)
	}
	sp, err := SaveStreamed(ctx, st, fx.streamed, Meta{Tenant: "other"})
	if err != nil || sp.Tenant != testTenant || sp.PackSize != 1234 || sp.Size != int64(len(fx.canonical)) {
		t.Fatalf("save: %+v %v", sp, err)
	}
	if sp, err := Save(ctx, st, fx.canonical, Meta{Tenant: "other"}); err != nil || sp.Tenant != testTenant || sp.Size != int64(len(fx.canonical)) {
		t.Fatalf("save of the bytes: %+v %v", sp, err)
	}
	if _, err := os.Stat(recordFile(st, fx.hash)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("record file of an inline plan: %v", err)
	}
	if rec := rawRecord(t, st, fx.hash); string(rec["tenant"]) != `"acme"` || rec["canonical"] == nil {
		t.Fatalf("record changed: tenant %s", rec["tenant"])
	}
	got, err := Get(ctx, st, fx.hash)
	if err != nil || string(got.Canonical) != string(fx.canonical) {
		t.Fatalf("get: %v", err)
	}

	// Its inline bytes are checked, not held: damaged base64 is
	// ErrCorrupt, as Save's decoding of the whole record finds it.
	damaged := strings.Replace(string(old), `"canonical":"`, `"canonical":"*`, 1)
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put(bucket, []byte(fx.hash), []byte(damaged))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveStreamed(ctx, st, fx.streamed, Meta{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("save over damaged base64: %v", err)
	}
	if _, err := Save(ctx, st, fx.canonical, Meta{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("save of the bytes over damaged base64: %v", err)
	}
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put(bucket, []byte(fx.hash), old)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecordFile: a record file altered or gone makes Get fail with
// ErrCorrupt; saving the plan again puts it back.
func TestDamagedRecordFile(t *testing.T) {
	ctx := context.Background()
	fx := loadStreamed(t)
	st := openCache(t)
	if _, err := SaveStreamed(ctx, st, fx.streamed, Meta{}); err != nil {
		t.Fatal(err)
	}
	file := recordFile(st, fx.hash)
	altered := []byte(strings.Replace(string(fx.canonical), "remediate-cve", "remediate-cvf", 1))
	for name, damage := range map[string]func() error{
		"altered":   func() error { return os.WriteFile(file, altered, 0o644) },
		"truncated": func() error { return os.WriteFile(file, fx.canonical[:100], 0o644) },
		"removed":   func() error { return os.Remove(file) },
	} {
		if err := os.Chmod(file, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		if _, err := Get(ctx, st, fx.hash); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
		want := ProblemFileDamaged
		if name == "removed" {
			want = ProblemFileMissing
		}
		if got := planProblems(t, st); got != want+" saved plan "+string(fx.hash) {
			t.Errorf("%s: cache verify reports %q, want %s of saved plan %s", name, got, want, fx.hash)
		}
		if _, err := SaveStreamed(ctx, st, fx.streamed, Meta{}); err != nil {
			t.Fatal(err)
		}
		if got, err := Get(ctx, st, fx.hash); err != nil || string(got.Canonical) != string(fx.canonical) {
			t.Fatalf("%s, saved again: %v", name, err)
		}
		if got := planProblems(t, st); got != "" {
			t.Errorf("%s, saved again: cache verify reports %q", name, got)
		}
	}
}

// planProblems is what cache verify with VerifyHook reports of saved
// plans: each problem and its object, one a line.
func planProblems(t *testing.T, st *cache.Store) string {
	t.Helper()
	rep, err := st.Verify(context.Background(), cache.VerifyOptions{Hooks: []cache.VerifyHook{VerifyHook()}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range rep.Problems {
		if p.Source == Source {
			out = append(out, p.Problem+" "+p.Object)
		}
	}
	return strings.Join(out, "\n")
}
