package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"stellaops.io/stella/canonical"
)

// summary is what the scan tests make of a step: its depth and its
// canonical JSON without the steps it holds, as walked makes it.
func summary(s *Step, depth int) string {
	small := *s
	small.Template, small.Branches, small.Else, small.Children = nil, nil, nil, nil
	b, err := json.Marshal(&small)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%d %s", depth, b)
}

// scanned scans b and returns the plan, the hash and the steps emitted.
func scanned(b []byte) (*Plan, string, []string, error) {
	var got []string
	pl, h, err := Scan(bytes.NewReader(b), summary, func(s string) { got = append(got, s) })
	return pl, string(h), got, err
}

// TestScanIsWalk: scanning the canonical JSON of every sample plan gives
// its hash, the plan without its steps, and every step in Walk's order
// (templates left out), each visited with its own members only.
func TestScanIsWalk(t *testing.T) {
	all := samplePlans(t)
	// Steps under one step across several chunks of the walk buffer,
	// branches before children in the bytes.
	wide := Step{ID: "wide", Kind: "conditional", Branches: []Branch{{When: "w"}}}
	for i := range 1500 {
		wide.Branches[0].Steps = append(wide.Branches[0].Steps, Step{ID: fmt.Sprintf("b%d", i)})
	}
	for i := range 2500 {
		wide.Children = append(wide.Children, Step{ID: fmt.Sprintf("c%d", i)})
	}
	all["wide"] = &Plan{APIVersion: APIVersion, Steps: []Step{{ID: "first"}, wide, {ID: "last"}}}
	for name, pl := range all {
		c, err := pl.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		head, h, got, err := scanned(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h != string(HashBytes(c)) {
			t.Errorf("%s: scan hash %s, want %s", name, h, HashBytes(c))
		}
		var want []string
		pl.Walk(func(s *Step, depth int) { want = append(want, summary(s, depth)) })
		if !slices.Equal(got, want) {
			t.Errorf("%s: steps emitted\n got %q\nwant %q", name, got, want)
		}
		if head.Steps != nil {
			t.Errorf("%s: scan returned %d steps, want none held", name, len(head.Steps))
		}
		small := *pl
		small.Steps = nil
		hb, _ := canonical.Marshal(head)
		wb, _ := canonical.Marshal(&small)
		if !bytes.Equal(hb, wb) {
			t.Errorf("%s: plan without steps\n got %s\nwant %s", name, hb, wb)
		}
	}
}

// TestScanRefuses: bytes that are not the canonical JSON of a plan are
// refused (ErrInvalid) or hash to something else than their own hash;
// none is both accepted and hashed as itself.
func TestScanRefuses(t *testing.T) {
	pl := samplePlans(t)["by hand"]
	c, err := pl.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := string(c)
	edit := func(old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("no %q in the sample plan", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	for name, b := range map[string]string{
		"whitespace":                edit(`"kind":"run"`, `"kind": "run"`),
		"members out of order":      edit(`"id":"c","kind":"conditional"`, `"kind":"conditional","id":"c"`),
		"a branch's steps left out": edit(`{"selected":false,"steps":null,"when":"x"}`, `{"selected":false,"when":"x"}`),
		"a branch out of order":     edit(`{"steps":[],"when":"y"}`, `{"when":"y","steps":[]}`),
		"a template out of order":   edit(`"template":[{"children":[{"id":"t1","kind":"","status":""}],"id":"t"`, `"template":[{"id":"t","children":[{"id":"t1","kind":"","status":""}]`),
		"plan members out of order": edit(`{"apiVersion":"stellaops.io/plan.v1","approvals"`, `{"approvals"`)[:0] + `{"approvals":[],"apiVersion":"stellaops.io/plan.v1"}`,
		"trailing bytes":            s + " ",
		"a member twice":            edit(`"id":"c",`, `"id":"c","id":"c",`),
		"an unknown member":         edit(`"id":"c",`, `"id":"c","idx":"c",`),
		"empty children":            edit(`{"id":"e1",`, `{"children":[],"id":"e1",`),
		"null children":             edit(`{"id":"e1",`, `{"children":null,"id":"e1",`),
		"a false flag":              edit(`{"id":"e1",`, `{"deferred":false,"id":"e1",`),
		"no id":                     edit(`{"id":"e1",`, `{`),
		"a wrong type":              edit(`"maxParallel":2`, `"maxParallel":"2"`),
		"another apiVersion":        edit(`"stellaops.io/plan.v1"`, `"stellaops.io/plan.v2"`),
		"a list for an object":      edit(`"gate":{`, `"gate":[{`),
		"an unknown run member":     edit(`"command":[`, `"cmd":[],"command":[`),
		"a number not canonical":    edit(`"index":1`, `"index":1.0`),
		"an escape not canonical":   edit(`"id":"c"`, `"id":"\u0063"`),
		"empty else":                edit(`"else":[{"id":"e1","kind":"","status":""},{"id":"e2","kind":"","status":""}],`, `"else":[],`),
		"not an object":             "[]",
		"cut short":                 s[:len(s)/2],
	} {
		_, h, _, err := scanned([]byte(b))
		if err == nil && h == string(HashBytes([]byte(b))) {
			t.Errorf("%s: accepted, hashed as itself", name)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
