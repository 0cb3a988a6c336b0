package plans

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/plan"
)

// FuzzScanIsParseCanonical: whatever the bytes, Scan accepts them as the
// plan of their own hash exactly when ParseCanonical accepts them, and
// then returns that plan without its steps and emits its steps in Walk's
// order.
func FuzzScanIsParseCanonical(f *testing.F) {
	fx := loadFixture(f)
	f.Add(fx.canonical)
	f.Add(reorder(f, fx.canonical))
	f.Add([]byte(`{"apiVersion":"stellaops.io/plan.v1"}`))
	f.Add([]byte(`{"apiVersion":"stellaops.io/plan.v1","approvals":null,"failure":{},"inputs":null,"pack":{"digest":"sha256:` + strings.Repeat("a", 64) + `","name":"","version":""},"sandbox":{"limits":{},"network":{}},"secrets":null,"steps":null}`))
	c := string(fx.canonical)
	for _, edit := range [][2]string{{`"kind":"run"`, `"children":[],"kind":"run"`}, {`"kind":"run"`, `"kind":"run","kind":"run"`}, {`"id":`, `"ID":`}, {`"steps":[`, `"steps":[{"branches":[{"steps":[],"when":"x"}],"id":"c","kind":"conditional","status":""},`}} {
		f.Add([]byte(strings.Replace(c, edit[0], edit[1], 1)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, _, werr := ParseCanonical(b)
		var got []string
		id := func(s *plan.Step, depth int) string { return strings.Repeat(" ", depth) + s.ID + " " + s.Kind }
		head, err := Scan(bytes.NewReader(b), plan.HashBytes(b), id, func(s string) { got = append(got, s) })
		if (werr == nil) != (err == nil) {
			t.Fatalf("ParseCanonical: %v; Scan: %v", werr, err)
		}
		if err != nil {
			if !errors.Is(err, plan.ErrInvalid) {
				t.Fatalf("refusal %v does not wrap plan.ErrInvalid", err)
			}
			return
		}
		var walked []string
		want.Walk(func(s *plan.Step, depth int) { walked = append(walked, id(s, depth)) })
		if !slices.Equal(got, walked) {
			t.Fatalf("steps emitted %q, walked %q", got, walked)
		}
		want.Steps = nil
		var wb, hb bytes.Buffer
		if err := want.WriteCanonical(&wb); err != nil {
			t.Fatal(err)
		}
		if err := head.WriteCanonical(&hb); err != nil || !bytes.Equal(hb.Bytes(), wb.Bytes()) {
			t.Fatalf("plan without steps: %s (%v), want %s", hb.Bytes(), err, wb.Bytes())
		}
	})
}

// TestWalk: a saved plan is walked as Get gives it, and written out as
// its bytes; a damaged record file is ErrCorrupt for Walk, Find and
// WriteCanonical, as for Get.
func TestWalk(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := openCache(t)
	sp, err := Save(ctx, st, fx.canonical, Meta{Tenant: testTenant})
	if err != nil {
		t.Fatal(err)
	}
	full, err := Get(ctx, st, fx.hash)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	full.Plan.Walk(func(s *plan.Step, depth int) { want = append(want, s.ID) })
	walkedSp, head, err := Walk(ctx, st, fx.hash[7:7+MinHashPrefix], func(s *plan.Step, _ int) string { return s.ID }, func(id string) { got = append(got, id) })
	if err != nil || !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("walk: %q (%v), want %q", got, err, want)
	}
	if walkedSp.Hash != sp.Hash || head.Pack != full.Plan.Pack || head.Steps != nil {
		t.Fatalf("walk: saved %s, pack %+v, %d steps held", walkedSp.Hash, head.Pack, len(head.Steps))
	}
	found, err := Find(ctx, st, fx.hash)
	if err != nil || found.Canonical != nil || found.Plan != nil || !slices.Equal(found.Approvals, full.Approvals) {
		t.Fatalf("find: %+v %v", found, err)
	}
	withBytes, err := FindCanonical(ctx, st, fx.hash)
	if err != nil || !bytes.Equal(withBytes.Canonical, fx.canonical) {
		t.Fatalf("find with bytes: %v", err)
	}
	var out bytes.Buffer
	if err := WriteCanonical(ctx, st, found, &out); err != nil || !bytes.Equal(out.Bytes(), fx.canonical) {
		t.Fatalf("write canonical: %v", err)
	}

	// One byte changed in the record file.
	path := filepath.Join(st.Root(), "records", namespace+"."+bucket, "sha256", digest.Digest(fx.hash).Encoded())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := slices.Clone(b)
	b[len(b)/2] ^= 1
	t.Cleanup(func() { _ = os.WriteFile(path, orig, 0o444) }) // before the cache's check at its end
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Walk(ctx, st, fx.hash, func(*plan.Step, int) int { return 0 }, func(int) {}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("walk of a damaged plan: %v, want ErrCorrupt", err)
	}
	if _, err := Find(ctx, st, fx.hash); !errors.Is(err, ErrCorrupt) {
		t.Errorf("find of a damaged plan: %v, want ErrCorrupt", err)
	}
	if _, err := FindCanonical(ctx, st, fx.hash); !errors.Is(err, ErrCorrupt) {
		t.Errorf("find with bytes of a damaged plan: %v, want ErrCorrupt", err)
	}
	if err := WriteCanonical(ctx, st, found, &out); err == nil {
		t.Errorf("write canonical of a damaged plan: no error")
	}
}

// TestScanDepthAsParseCanonical: Scan and ParseCanonical refuse the same
// nesting — steps MaxStepDepth levels deep, inputs nested past what
// encoding/json decodes in a document — and Scan refuses steps nested
// far deeper than that (an approval request's plan is untrusted) before
// it goes deeper, without exhausting its stack.
func TestScanDepthAsParseCanonical(t *testing.T) {
	fx := loadFixture(t)
	base, _, err := ParseCanonical(fx.canonical)
	if err != nil {
		t.Fatal(err)
	}
	chain := func(levels int) []plan.Step {
		s := plan.Step{ID: "leaf", Kind: "run", Status: plan.StatusPending}
		for range levels - 1 {
			s = plan.Step{ID: "up", Kind: "map", Status: plan.StatusPending, Children: []plan.Step{s}}
		}
		return []plan.Step{s}
	}
	nested := func(levels int) any {
		var v any = "x"
		for range levels {
			v = []any{v}
		}
		return v
	}
	for _, tc := range []struct {
		name string
		edit func(pl *plan.Plan)
		ok   bool
	}{
		{"steps just under the limit", func(pl *plan.Plan) { pl.Steps = chain(plan.MaxStepDepth) }, true},
		{"steps at the limit", func(pl *plan.Plan) { pl.Steps = chain(plan.MaxStepDepth + 1) }, false},
		{"inputs as deep as JSON decodes", func(pl *plan.Plan) { pl.Inputs = map[string]any{"x": nested(9998)} }, true},
		{"inputs a level deeper", func(pl *plan.Plan) { pl.Inputs = map[string]any{"x": nested(9999)} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := *base
			tc.edit(&pl)
			b, err := pl.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			_, _, perr := ParseCanonical(b)
			_, serr := Scan(bytes.NewReader(b), plan.HashBytes(b), func(*plan.Step, int) int { return 0 }, func(int) {})
			if (perr == nil) != tc.ok || (serr == nil) != tc.ok {
				t.Fatalf("ParseCanonical: %v; Scan: %v; want accepted %v by both", perr, serr, tc.ok)
			}
			if !tc.ok && (!errors.Is(perr, plan.ErrInvalid) || !errors.Is(serr, plan.ErrInvalid)) {
				t.Fatalf("refusals %v, %v do not wrap plan.ErrInvalid", perr, serr)
			}
		})
	}
	// A request's plan of a million nested steps: refused at the bound.
	head := `{"apiVersion":"stellaops.io/plan.v1","steps":[`
	deep := []byte(head + strings.Repeat(`{"children":[`, 1<<20))
	if _, err := Scan(bytes.NewReader(deep), plan.HashBytes(deep), func(*plan.Step, int) int { return 0 }, func(int) {}); !errors.Is(err, plan.ErrInvalid) {
		t.Fatalf("Scan of steps nested a million deep: %v, want plan.ErrInvalid", err)
	}
}
