package plans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
)

const (
	testTenant = "acme"
	testGate   = "change-board" // remediate-cve: minApprovers 2, expiresAfter 48h
	packDir    = "../testdata/packs/remediate-cve"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fixture is the sample pack's plan.
type fixture struct {
	canonical []byte
	hash      string
}

func loadFixture(t testing.TB) fixture {
	t.Helper()
	pl, err := plan.Build(loadSample(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pl.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{canonical: c, hash: string(plan.HashBytes(c))}
}

// loadSample loads the sample pack, its digest and its inputs.
func loadSample(t testing.TB) (*pack.Pack, digest.Digest, map[string]any) {
	t.Helper()
	p, err := pack.LoadDir(packDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(packDir, "inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	return p, a.Digest(), in
}

// openCache opens a test cache whose integrity is checked when the test
// ends, with every saved plan record required to decode (approve.VerifyHook
// checks that in the CLI; this package cannot import approve) and every
// record file intact (VerifyHook).
func openCache(t *testing.T) *cache.Store {
	t.Helper()
	return cachetest.Open(t, cache.VerifyHook{Name: "plans-list", Check: func(ctx context.Context, st *cache.Store) ([]cache.Problem, error) {
		_, err := List(ctx, st)
		return nil, err
	}}, VerifyHook())
}

func TestSave(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := openCache(t)
	sp, err := Save(ctx, st, fx.canonical, Meta{Tenant: testTenant, SavedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if string(sp.Hash) != fx.hash || sp.PackRef != "remediate-cve:"+sp.Pack.Version || sp.Tenant != testTenant ||
		!sp.SavedAt.Equal(t0) || len(sp.Approvals) != 1 || sp.Approvals[0].Gate != testGate || sp.Approvals[0].MinApprovers != 2 {
		t.Fatalf("saved: %+v", sp)
	}
	// Saving again changes nothing.
	again, err := Save(ctx, st, fx.canonical, Meta{Tenant: "other", SavedAt: t0.Add(time.Hour)})
	if err != nil || again.Tenant != testTenant || !again.SavedAt.Equal(t0) {
		t.Fatalf("second save: %+v %v", again, err)
	}

	for _, h := range []string{fx.hash, strings.TrimPrefix(fx.hash, "sha256:"), fx.hash[:7+MinHashPrefix], fx.hash[7 : 7+MinHashPrefix]} {
		got, err := Get(ctx, st, h)
		if err != nil {
			t.Fatalf("plan %s: %v", h, err)
		}
		if string(got.Hash) != fx.hash || string(got.Canonical) != string(fx.canonical) || got.Plan.Pack.Name != "remediate-cve" {
			t.Fatalf("plan %s: %+v", h, got)
		}
	}
	for _, h := range []string{fx.hash[:7+MinHashPrefix-1], "sha256:" + strings.Repeat("0", 64), "SHA256:" + fx.hash[7:], "zz" + fx.hash[9:]} {
		if _, err := Get(ctx, st, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("plan %s: %v, want ErrNotFound", h, err)
		}
	}

	list, err := List(ctx, st)
	if err != nil || len(list) != 1 || string(list[0].Hash) != fx.hash || list[0].Canonical != nil || list[0].Size != int64(len(fx.canonical)) {
		t.Fatalf("plans: %+v %v", list, err)
	}

	// Two plans sharing a 12-digit prefix make the prefix ambiguous.
	prefix := "sha256:" + strings.Repeat("a", MinHashPrefix)
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		for _, tail := range []string{"0", "1"} {
			k := prefix + strings.Repeat(tail, 64-MinHashPrefix)
			if err := tx.Put(bucket, []byte(k), []byte(`{"packRef":"x:1"}`)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, st, prefix); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
}

func TestSaveRefusesNonCanonical(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := openCache(t)
	cases := map[string][]byte{
		"whitespace":       append([]byte(" "), fx.canonical...),
		"reordered keys":   reorder(t, fx.canonical),
		"not a plan":       []byte(`{"apiVersion":"other"}`),
		"field case":       []byte(strings.Replace(string(fx.canonical), `"apiVersion"`, `"APIVersion"`, 1)),
		"not json":         []byte("plan"),
		"trailing garbage": append(append([]byte{}, fx.canonical...), "{}"...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Save(ctx, st, b, Meta{}); !errors.Is(err, plan.ErrInvalid) {
				t.Fatalf("got %v, want plan.ErrInvalid", err)
			}
		})
	}
	if _, err := Save(ctx, st, fx.canonical, Meta{PackRef: "other:1.0.0"}); !errors.Is(err, plan.ErrInvalid) {
		t.Fatalf("pack ref of another pack: %v", err)
	}
	if list, _ := List(ctx, st); len(list) != 0 {
		t.Fatalf("refused plans were saved: %+v", list)
	}
}

// reorder moves the plan's first member (apiVersion) to the end: the same
// JSON value, not in canonical form.
func reorder(t testing.TB, canonical []byte) []byte {
	const first = `{"apiVersion":"stellaops.io/plan.v1",`
	c := string(canonical)
	if !strings.HasPrefix(c, first) {
		t.Fatalf("canonical plan starts %.40q", c)
	}
	return []byte("{" + c[len(first):len(c)-1] + `,"apiVersion":"stellaops.io/plan.v1"}`)
}

func TestSaveRefusesInvalidMeta(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := openCache(t)
	for name, meta := range map[string]Meta{
		"tenant with a space":        {Tenant: "a b"},
		"tenant of 129 bytes":        {Tenant: strings.Repeat("a", 129)},
		"tenant starting with a dot": {Tenant: ".acme"},
		"negative pack size":         {PackSize: -1},
	} {
		if _, err := Save(ctx, st, fx.canonical, meta); !errors.Is(err, ErrInvalidMeta) {
			t.Errorf("%s: got %v, want ErrInvalidMeta", name, err)
		}
	}
	if list, _ := List(ctx, st); len(list) != 0 {
		t.Fatalf("refused plans were saved: %+v", list)
	}
}

// TestReadsPreviousVersion pins where and how saved plans are stored: a
// record written by the version that kept them in package approve (bucket
// approve.plans, these JSON names) reads unchanged.
func TestReadsPreviousVersion(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := openCache(t)
	pl, _, err := ParseCanonical(fx.canonical)
	if err != nil {
		t.Fatal(err)
	}
	pack, _ := json.Marshal(pl.Pack)
	approvals, _ := json.Marshal(pl.Approvals)
	canonical, _ := json.Marshal(fx.canonical) // base64, as encoding/json writes []byte
	raw := `{"packRef":"remediate-cve:` + pl.Pack.Version + `","pack":` + string(pack) + `,"tenant":"acme",` +
		`"savedAt":"2026-03-01T09:00:00Z","packSize":1234,"approvals":` + string(approvals) + `,"canonical":` + string(canonical) + `}`
	if err := st.Records("approve").Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put("plans", []byte(fx.hash), []byte(raw))
	}); err != nil {
		t.Fatal(err)
	}
	got, err := Get(ctx, st, fx.hash[7:7+MinHashPrefix])
	if err != nil {
		t.Fatal(err)
	}
	want := Saved{Hash: digest.Digest(fx.hash), PackRef: "remediate-cve:" + pl.Pack.Version, Pack: pl.Pack, Tenant: testTenant,
		SavedAt: t0, PackSize: 1234, Size: int64(len(fx.canonical)), Approvals: pl.Approvals, Canonical: fx.canonical, Plan: pl}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Fatalf("saved plan (-want +got):\n%s", diff)
	}
	// Saving it again keeps the stored record.
	again, err := Save(ctx, st, fx.canonical, Meta{Tenant: "other", SavedAt: t0.Add(time.Hour)})
	if err != nil || again.Tenant != testTenant || again.PackSize != 1234 || !again.SavedAt.Equal(t0) {
		t.Fatalf("second save: %+v %v", again, err)
	}
}

func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	// No record check on the way out: the records are corrupt on purpose.
	st := cachetest.Open(t)
	notJSON := "sha256:" + strings.Repeat("b", 64)
	notCanonical := "sha256:" + strings.Repeat("c", 64)
	bad, _ := json.Marshal(record{PackRef: "x:1", Canonical: append([]byte(" "), fx.canonical...)})
	if err := st.Records(namespace).Update(ctx, func(tx cache.RecordTx) error {
		if err := tx.Put(bucket, []byte(notJSON), []byte("{")); err != nil {
			return err
		}
		return tx.Put(bucket, []byte(notCanonical), bad)
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{notJSON, notCanonical} {
		if _, err := Get(ctx, st, h); !errors.Is(err, ErrCorrupt) {
			t.Errorf("get %s: got %v, want ErrCorrupt", h[:19], err)
		}
	}
	if _, err := List(ctx, st); !errors.Is(err, ErrCorrupt) {
		t.Errorf("list: got %v, want ErrCorrupt", err)
	}
}

// FuzzParseCanonical: whatever the bytes, ParseCanonical either refuses
// them with plan.ErrInvalid or returns a plan whose canonical form is
// exactly those bytes and whose hash is theirs.
func FuzzParseCanonical(f *testing.F) {
	fx := loadFixture(f)
	f.Add(fx.canonical)
	f.Add(reorder(f, fx.canonical))
	f.Add([]byte(`{"apiVersion":"stellaops.io/plan.v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pl, h, err := ParseCanonical(b)
		if err != nil {
			if !errors.Is(err, plan.ErrInvalid) {
				t.Fatalf("refusal %v does not wrap plan.ErrInvalid", err)
			}
			return
		}
		again, err := pl.Canonical()
		if err != nil || !bytes.Equal(again, b) || h != plan.HashBytes(b) {
			t.Fatalf("accepted bytes do not round-trip: %v", err)
		}
	})
}
