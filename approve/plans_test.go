package approve

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/plan"
)

func TestSavePlan(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := cachetest.Open(t, VerifyHook())
	sp, err := SavePlan(ctx, st, fx.canonical, PlanMeta{Tenant: testTenant, SavedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if string(sp.Hash) != fx.hash || sp.PackRef != "remediate-cve:"+sp.Pack.Version || sp.Tenant != testTenant ||
		!sp.SavedAt.Equal(t0) || len(sp.Approvals) != 1 || sp.Approvals[0].Gate != testGate || sp.Approvals[0].MinApprovers != 2 {
		t.Fatalf("saved: %+v", sp)
	}
	// Saving again changes nothing.
	again, err := SavePlan(ctx, st, fx.canonical, PlanMeta{Tenant: "other", SavedAt: t0.Add(time.Hour)})
	if err != nil || again.Tenant != testTenant || !again.SavedAt.Equal(t0) {
		t.Fatalf("second save: %+v %v", again, err)
	}

	for _, h := range []string{fx.hash, strings.TrimPrefix(fx.hash, "sha256:"), fx.hash[:7+MinHashPrefix], fx.hash[7 : 7+MinHashPrefix]} {
		got, err := Plan(ctx, st, h)
		if err != nil {
			t.Fatalf("plan %s: %v", h, err)
		}
		if string(got.Hash) != fx.hash || string(got.Canonical) != string(fx.canonical) || got.Plan.Pack.Name != "remediate-cve" {
			t.Fatalf("plan %s: %+v", h, got)
		}
	}
	for _, h := range []string{fx.hash[:7+MinHashPrefix-1], "sha256:" + strings.Repeat("0", 64), "SHA256:" + fx.hash[7:], "zz" + fx.hash[9:]} {
		if _, err := Plan(ctx, st, h); !errors.Is(err, ErrPlanNotFound) {
			t.Fatalf("plan %s: %v, want ErrPlanNotFound", h, err)
		}
	}

	list, err := Plans(ctx, st)
	if err != nil || len(list) != 1 || string(list[0].Hash) != fx.hash || list[0].Canonical != nil || list[0].Size != int64(len(fx.canonical)) {
		t.Fatalf("plans: %+v %v", list, err)
	}

	// Two plans sharing a 12-digit prefix make the prefix ambiguous.
	prefix := "sha256:" + strings.Repeat("a", MinHashPrefix)
	if err := update(ctx, st, func(tx cache.RecordTx) error {
		for _, tail := range []string{"0", "1"} {
			k := prefix + strings.Repeat(tail, 64-MinHashPrefix)
			if err := tx.Put(bucketPlans, []byte(k), []byte(`{"packRef":"x:1"}`)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Plan(ctx, st, prefix); !errors.Is(err, ErrPlanAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
}

func TestSavePlanRefusesNonCanonical(t *testing.T) {
	ctx := context.Background()
	fx := loadFixture(t)
	st := cachetest.Open(t, VerifyHook())
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
			if _, err := SavePlan(ctx, st, b, PlanMeta{}); !errors.Is(err, plan.ErrInvalid) {
				t.Fatalf("got %v, want plan.ErrInvalid", err)
			}
		})
	}
	if _, err := SavePlan(ctx, st, fx.canonical, PlanMeta{PackRef: "other:1.0.0"}); !errors.Is(err, plan.ErrInvalid) {
		t.Fatalf("pack ref of another pack: %v", err)
	}
	if list, _ := Plans(ctx, st); len(list) != 0 {
		t.Fatalf("refused plans were saved: %+v", list)
	}
}

// reorder moves the plan's first member (apiVersion) to the end: the same
// JSON value, not in canonical form.
func reorder(t *testing.T, canonical []byte) []byte {
	const first = `{"apiVersion":"stellaops.io/plan.v1",`
	c := string(canonical)
	if !strings.HasPrefix(c, first) {
		t.Fatalf("canonical plan starts %.40q", c)
	}
	return []byte("{" + c[len(first):len(c)-1] + `,"apiVersion":"stellaops.io/plan.v1"}`)
}
