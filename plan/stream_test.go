package plan

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"testing/fstest"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/pack"
)

// TestWriteCanonicalIsCanonicalMarshal holds the streamed canonical JSON
// of a plan to the bytes of canonical.Marshal of the whole plan (what
// plan hashes were computed over before): every sample pack, and plans
// made by hand with every list a step holds, names outside ASCII and
// characters RFC 8785 writes differently from encoding/json.
func TestWriteCanonicalIsCanonicalMarshal(t *testing.T) {
	plans := samplePlans(t)
	for name, pl := range plans {
		want, err := canonical.Marshal(pl)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := pl.WriteCanonical(&got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: streamed canonical JSON differs:\n got %s\nwant %s", name, got.Bytes(), want)
		}
		c, err := pl.Canonical()
		if err != nil || !bytes.Equal(c, want) {
			t.Errorf("%s: Canonical differs (%v)", name, err)
		}
		if h, err := pl.Hash(); err != nil || h != HashBytes(want) {
			t.Errorf("%s: Hash = %s (%v), want %s", name, h, err, HashBytes(want))
		}
	}
}

// TestHashHoldsNoWholePlan: hashing a plan of 20,000 steps makes no
// allocation larger than 32 KiB — nothing the size of the plan's JSON
// (about 5 MiB here) — so the memory hashing takes does not grow with the
// plan (issue 13: a plan of 100,000 steps in well under 100 MiB).
func TestHashHoldsNoWholePlan(t *testing.T) {
	const outer, inner = 200, 100
	manifest := fmt.Sprintf(`apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: many, version: 1.0.0, description: Many steps.}
spec:
  steps:
    - id: each
      loop:
        count: %d
        steps:
          - id: host
            loop:
              count: %d
              steps:
                - id: touch
                  run: {command: ["sh", "touch.sh", "${{ index }}"], env: {AT: "${{ index }}"}}
`, outer, inner)
	p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(manifest)}, "touch.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, "sha256:0000000000000000000000000000000000000000000000000000000000000000", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pl.Steps[0].Children); got != outer || len(pl.Steps[0].Children[outer-1].Children) != inner {
		t.Fatalf("expanded %d steps, want %d of %d", got, outer, inner)
	}
	large := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/allocs-by-size:bytes"}}
		metrics.Read(s)
		h := s[0].Value.Float64Histogram()
		var count uint64
		for i, c := range h.Counts {
			if h.Buckets[i] >= 32<<10 { // the bucket starts at 32 KiB or above
				count += c
			}
		}
		return count
	}
	runtime.GC()
	before := large()
	h, err := pl.Hash()
	after := large()
	if err != nil {
		t.Fatal(err)
	}
	if n := after - before; n > 0 {
		t.Errorf("hashing a plan of %d steps made %d allocations of 32 KiB or more", outer*inner, n)
	}
	c, err := canonical.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) < 1<<20 {
		t.Fatalf("the plan's canonical JSON is %d bytes: too small to tell", len(c))
	}
	if h != HashBytes(c) {
		t.Fatalf("Hash = %s, want %s", h, HashBytes(c))
	}
}

// oddStrings are strings whose JSON encoding/json and RFC 8785 write
// differently, or that are not UTF-8.
var oddStrings = []string{
	"", "plain", "\"q\" \\ /", "<&>", "\u2028\u2029", "\x7f", "é", "😀", "\uff61", "\U0001F600\uff61",
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f ", "\xff", "a\xffb\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf0\x9f\x98", "\ufffd",
}

// TestStepCanonicalIsMarshal holds the canonical JSON of a step, written
// member by member, to canonical.Marshal of it: every field set and
// unset, odd strings in every string, integers at and beyond 2^53, maps
// whose keys sort differently in UTF-8 and UTF-16.
func TestStepCanonicalIsMarshal(t *testing.T) {
	yes, no := true, false
	ints := []int{0, 1, -1, 99999, 1 << 53, 1<<53 + 1, -(1 << 53) - 1, math.MaxInt, math.MinInt}
	var steps []Step
	for i, s := range oddStrings {
		n := ints[i%len(ints)]
		next := oddStrings[(i+1)%len(oddStrings)]
		steps = append(steps,
			Step{ID: s, Kind: next, Status: s},
			Step{ID: s, Kind: "run", Name: next, Status: s, When: next, WhenResult: &no, ContinueOnError: true, Timeout: s, Index: &n,
				Run: &Run{Command: []string{s, next, ""}, Env: map[string]string{s: next, next: s, "\U0001F600": "a", "\uff61": "b", "Z": s},
					Secrets: []string{next}, Workdir: s, Outputs: []string{s}},
				MaxParallel: n, Items: next, Deferred: true, Vars: map[string]any{"item": s, next: []any{1.5, s}, "index": float64(n)}},
			Step{ID: "g", Gate: &Gate{Approval: s, Policy: next, Message: s, PolicyResult: &yes}, Run: &Run{Command: []string{}}},
			Step{ID: "n", Gate: &Gate{}, Run: &Run{}, Index: &n, Vars: map[string]any{}},
			Step{ID: "b", Kind: "conditional", Branches: []Branch{{When: s, Selected: &yes, Steps: []Step{{ID: next}}}, {When: next}, {Steps: []Step{}}},
				Else: []Step{{ID: s, Children: []Step{{ID: next, Template: []Step{{ID: s}}}}}}},
		)
	}
	for i := range steps {
		want, err := canonical.Marshal(&steps[i])
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := steps[i].writeCanonical(w, nil); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("step %d: canonical JSON differs:\n got %q\nwant %q", i, b.Bytes(), want)
		}
	}
}

// FuzzStepCanonical: for any strings and integers, a step's canonical
// JSON written member by member is canonical.Marshal's, or both fail.
func FuzzStepCanonical(f *testing.F) {
	for i, s := range oddStrings {
		f.Add(s, oddStrings[(i+3)%len(oddStrings)], i*7919-20000)
	}
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		s := Step{ID: a, Kind: b, Name: a, Status: b, When: a, Timeout: b, Index: &n, MaxParallel: n, Items: a,
			Run:  &Run{Command: []string{a, b}, Env: map[string]string{a: b, b: a}, Workdir: b, Secrets: []string{a}},
			Gate: &Gate{Approval: a, Message: b, Policy: a}, Vars: map[string]any{a: b},
			Branches: []Branch{{When: b, Steps: []Step{{ID: a}}}}}
		want, wantErr := canonical.Marshal(&s)
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		err := s.writeCanonical(w, nil)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, canonical.Marshal's %v", err, wantErr)
		}
		if err != nil {
			return // two names that are not UTF-8 made the same name
		}
		w.Flush()
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("canonical JSON differs:\n got %q\nwant %q", buf.Bytes(), want)
		}
	})
}

// samplePlans are every sample pack's plan and plans made by hand with
// every list a step holds, names outside ASCII and characters RFC 8785
// writes differently from encoding/json.
func samplePlans(t *testing.T) map[string]*Plan {
	plans := map[string]*Plan{}
	dirs, _ := filepath.Glob("../testdata/packs/*")
	for _, dir := range dirs {
		p, d := loadDir(t, dir)
		raw, _ := os.ReadFile(filepath.Join(dir, "inputs.json"))
		in, err := p.ResolveInputs("inputs.json", raw)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Build(p, d, in)
		if err != nil {
			t.Fatal(err)
		}
		plans[filepath.Base(dir)] = pl
	}
	yes, no, one := true, false, 1
	odd := "<&> \u2028 é 😀 \x7f \"q\" \\"
	plans["by hand"] = &Plan{
		APIVersion: APIVersion,
		Pack:       PackRef{Name: odd, Version: "1.0.0", Digest: "sha256:00"},
		Inputs: map[string]any{"é": 1.0, "z": []any{1e21, 0.1, odd, []any(nil), map[string]any(nil), 7, uint8(2), -0.0, 1e-7}, "\U0001F600": nil, "\uff61": true,
			"a": map[string]any{"steps": []any{}, "": map[string]any{}, "x\xff": "y\xfe"}, "list": []any(nil), "map": map[string]any(nil)},
		Secrets:   []Secret{{Name: "s", Steps: []string{}}},
		Approvals: []Approval{{Gate: "g", Reason: odd}},
		Steps: []Step{
			{ID: "a" + odd, Kind: "run", Status: StatusPending, WhenResult: &yes, Index: &one, Run: &Run{Command: []string{odd}, Env: map[string]string{"é": odd, "B": "b"}},
				Vars: map[string]any{"item": odd, "index": 1.0}},
			{ID: "c", Kind: "conditional", Branches: []Branch{
				{When: "x", Selected: &no, Steps: nil},
				{When: "y", Steps: []Step{}},
				{When: "z", Selected: &yes, Steps: []Step{{ID: "z1", Gate: &Gate{Policy: odd, PolicyResult: &no}}}},
			}, Else: []Step{{ID: "e1"}, {ID: "e2", Children: []Step{}}}},
			{ID: "m", Kind: "map", Deferred: true, Template: []Step{{ID: "t", Children: []Step{{ID: "t1"}}}}, Children: []Step{{ID: "k"}}, MaxParallel: 2},
			// No pack makes a step with both, but the format holds them.
			{ID: "bc", Kind: "conditional", Branches: []Branch{{When: "p", Steps: []Step{{ID: "b1", Children: []Step{{ID: "b11"}}}, {ID: "b2"}}}, {When: "q", Steps: []Step{{ID: "b3"}}}},
				Children: []Step{{ID: "c1", Branches: []Branch{{When: "r", Steps: []Step{{ID: "c11"}}}}, Children: []Step{{ID: "c12"}}}, {ID: "c2"}}, Else: []Step{{ID: "e3"}}},
		},
		Outputs: []pack.Output{{Name: odd}},
	}
	plans["no steps"] = &Plan{APIVersion: APIVersion}
	plans["empty steps"] = &Plan{APIVersion: APIVersion, Steps: []Step{}}
	return plans
}
