package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
)

// nestedPack has iterations in iterations, in branches and parallels,
// with gates, policies, secrets of both scopes, skipped and deferred
// maps (a counted loop in the template of one), a loop and a map over
// no items.
const nestedPack = `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: nested, version: 1.0.0, description: Iterations in iterations.}
spec:
  inputs:
    - {name: hosts, type: array, required: true}
    - {name: none, type: array, default: []}
    - {name: flag, type: boolean, default: false}
  secrets:
    - {name: token, source: "env:TOKEN", scope: run}
    - {name: key, source: "env:KEY", scope: step}
  approvals:
    - {id: owner, role: Packs.Approve, minApprovers: 2}
  steps:
    - id: discover
      run: {command: [sh, discover.sh], outputs: [ports]}
    - id: hosts
      map:
        items: inputs.hosts
        maxParallel: 2
        steps:
          - id: touch
            when: "item.name != 'b'"
            run: {command: [sh, touch.sh, "${{ item.name }}", "${{ index }}"], env: {HOST: "${{ item.name }}", AT: "${{ index }}"}, secrets: [key]}
          - id: ok
            gate: {approval: owner}
          - id: policy
            gate: {policy: {expr: "item.name != 'c'", message: not c}}
          - id: ports
            map:
              items: item.ports
              steps:
                - id: probe
                  run: {command: [sh, probe.sh, "${{ item }}", "${{ index }}"]}
                - id: probe-ok
                  gate: {approval: owner}
          - id: retry
            loop:
              count: 2
              steps:
                - id: again
                  run: {command: [sh, again.sh, "${{ index }}"]}
          - id: pick
            conditional:
              branches:
                - when: "item.name == 'a'"
                  steps:
                    - id: is-a
                      run: {command: [sh, a.sh]}
              else:
                - id: not-a
                  parallel:
                    steps:
                      - id: inner
                        map:
                          items: item.ports
                          steps:
                            - id: deep
                              run: {command: [sh, deep.sh, "${{ item }}"], secrets: [key]}
          - id: later
            map:
              items: steps.discover.outputs.ports
              steps:
                - id: deferred
                  run: {command: [sh, d.sh, "${{ item }}"]}
                - id: twice
                  loop:
                    count: 2
                    steps:
                      - id: counted
                        run: {command: [sh, c.sh, "${{ index }}"]}
    - id: empty
      map:
        items: inputs.none
        steps:
          - id: never
            run: {command: [sh, never.sh]}
    - id: skipped
      when: inputs.flag
      map:
        items: inputs.hosts
        steps:
          - id: no
            run: {command: [sh, no.sh, "${{ item.name }}"], secrets: [key]}
`

const nestedInputs = `{"hosts": [{"name": "a", "ports": [1, 2]}, {"name": "b", "ports": []}, {"name": "c", "ports": [3]}]}`

// walked lists every step a walk gives: its depth and its canonical JSON
// without the steps it holds.
func walked(t *testing.T, walk func(fn func(s *Step, depth int)) error) []string {
	t.Helper()
	var got []string
	err := walk(func(s *Step, depth int) {
		small := *s
		small.Template, small.Branches, small.Else, small.Children = nil, nil, nil, nil
		b, err := json.Marshal(&small)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", depth, b))
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestStreamedIsBuild: a streamed plan has, for every sample pack and a
// pack with iterations nested every way, the canonical bytes, hash,
// approvals, secrets and steps of the plan Build makes — written,
// hashed and walked twice, since its iterations are expanded anew each
// time.
func TestStreamedIsBuild(t *testing.T) {
	type source struct {
		p      *pack.Pack
		d      digest.Digest
		inputs []byte
	}
	sources := map[string]source{}
	dirs, _ := filepath.Glob("../testdata/packs/*")
	for _, dir := range dirs {
		p, d := loadDir(t, dir)
		raw, _ := os.ReadFile(filepath.Join(dir, "inputs.json"))
		sources[filepath.Base(dir)] = source{p, d, raw}
	}
	for name, m := range map[string]struct{ manifest, inputs string }{
		"nested":   {nestedPack, nestedInputs},
		"template": {templatePack, `{}`},
		"map":      {mapPack, string(mapInputs(50))},
	} {
		p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(m.manifest)}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sources[name] = source{p, digest.Digest("sha256:" + strings.Repeat("0", 64)), []byte(m.inputs)}
	}
	// Two map steps with one id: not a pack that loads (its ids are
	// unique), but Build plans it, and so must BuildStreamed, holding it.
	same, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(nestedPack)}})
	if err != nil {
		t.Fatal(err)
	}
	same.Manifest.Spec.Steps[2].ID = "hosts"
	sources["same ids"] = source{same, digest.Digest("sha256:" + strings.Repeat("0", 64)), []byte(nestedInputs)}
	if len(sources) < 9 {
		t.Fatalf("%d plans: the sample packs are missing", len(sources))
	}
	for name, src := range sources {
		in, err := src.p.ResolveInputs("inputs.json", src.inputs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pl, err := Build(src.p, src.d, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, err := BuildStreamed(src.p, src.d, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := pl.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		wantSteps := walked(t, func(fn func(s *Step, depth int)) error { pl.Walk(fn); return nil })
		for pass := range 2 {
			got, err := st.Canonical()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, pass %d: streamed canonical JSON differs:\n got %s\nwant %s", name, pass, got, want)
			}
			if h, err := st.Hash(); err != nil || h != HashBytes(want) {
				t.Errorf("%s, pass %d: Hash = %s (%v), want %s", name, pass, h, err, HashBytes(want))
			}
			if diff := cmp.Diff(wantSteps, walked(t, st.Walk)); diff != "" {
				t.Errorf("%s, pass %d: walked steps (-Build +streamed):\n%s", name, pass, diff)
			}
		}
		if diff := cmp.Diff(pl.Approvals, st.Approvals()); diff != "" {
			t.Errorf("%s: approvals (-Build +streamed):\n%s", name, diff)
		}
		if diff := cmp.Diff(pl.Secrets, st.Secrets()); diff != "" {
			t.Errorf("%s: secrets (-Build +streamed):\n%s", name, diff)
		}
		if (name == "same ids") != (st.lazy == nil) {
			t.Errorf("%s: streamed plan lazy %v", name, st.lazy != nil)
		}
		if st.Pack() != pl.Pack {
			t.Errorf("%s: pack %+v, want %+v", name, st.Pack(), pl.Pack)
		}
	}

	// The nested pack exercises what it says: approvals and secret uses
	// recorded from iterations in iterations, once each.
	p, _ := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(nestedPack)}})
	in, _ := p.ResolveInputs("inputs.json", []byte(nestedInputs))
	st, err := BuildStreamed(p, "sha256:00", in)
	if err != nil {
		t.Fatal(err)
	}
	var gates []string
	for _, a := range st.Approvals() {
		gates = append(gates, a.Gate)
	}
	wantGates := []string{"hosts[0]::ok", "hosts[0]::ports[0]::probe-ok", "hosts[0]::ports[1]::probe-ok", "hosts[1]::ok", "hosts[2]::ok", "hosts[2]::ports[0]::probe-ok"}
	if diff := cmp.Diff(wantGates, gates); diff != "" {
		t.Errorf("nested approvals (-want +got):\n%s", diff)
	}
	wantKey := []string{"hosts[0]::touch", "hosts[2]::touch", "hosts[2]::inner[0]::deep"}
	if s := st.Secrets(); len(s) != 2 || s[0].Name != "key" || !cmp.Equal(s[0].Steps, wantKey) {
		t.Errorf("nested secrets: %+v, want key used by %q", s, wantKey)
	}
}

// TestStreamedErrorsAsBuild: what Build refuses, BuildStreamed refuses
// with the same error — an error in the tenth of 20 iterations, items
// that are not a list, more than MaxExpandedSteps steps.
func TestStreamedErrorsAsBuild(t *testing.T) {
	for name, tc := range map[string]struct{ steps, inputs string }{
		"render": {`
    - id: each
      map:
        items: inputs.list
        steps:
          - id: bad
            run: {command: [sh, "${{ length(item) }}"]}`, `{"list": [` + strings.Repeat(`"xy",`, 9) + `1` + strings.Repeat(`,"xy"`, 10) + `]}`},
		"not a list": {`
    - id: each
      map:
        items: inputs.obj
        steps:
          - id: one
            run: {command: [sh, x.sh]}`, `{"obj": {"a": 1}}`},
		"too many": {`
    - id: each
      loop:
        count: 1000
        steps:
          - id: inner
            loop:
              count: 100
              steps:
                - id: one
                  run: {command: [sh, x.sh]}`, `{}`},
	} {
		manifest := `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: bad, version: 1.0.0, description: Refused.}
spec:
  inputs:
    - {name: list, type: array, default: []}
    - {name: obj, type: object, default: {}}
  steps:` + tc.steps + "\n"
		p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(manifest)}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		in, err := p.ResolveInputs("inputs.json", []byte(tc.inputs))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, want := Build(p, "sha256:00", in)
		st, got := BuildStreamed(p, "sha256:00", in)
		if want == nil || got == nil || got.Error() != want.Error() || st != nil {
			t.Errorf("%s: BuildStreamed: %v, want Build's %v", name, got, want)
			continue
		}
		if name == "render" && !strings.Contains(got.Error(), "each[9]::bad") {
			t.Errorf("%s: %v names another step", name, got)
		}
		if name != "render" && !errors.Is(got, ErrExpansion) {
			t.Errorf("%s: %v is not ErrExpansion", name, got)
		}
	}
}

// TestStreamedHoldsNoIterations: a streamed plan of a map over 20,000
// items holds less than 16 bytes a step beyond its inputs (4 KiB in all
// when written), and holds no more while it is walked — where the plan
// of Build holds about 1 KiB a step (issue 13: a plan of 100,000 steps
// under 100 MiB).
func TestStreamedHoldsNoIterations(t *testing.T) {
	const n = 20000
	// Without its run-scoped secret, which lists every step by id.
	manifest := strings.Replace(mapPack, "  secrets:\n    - {name: token, source: \"vault:fleet/token\", scope: run}\n", "", 1)
	if manifest == mapPack {
		t.Fatal("the secret is still there")
	}
	p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(manifest)}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", mapInputs(n))
	if err != nil {
		t.Fatal(err)
	}
	live := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	const bound = 16 * n
	before := live()
	st, err := BuildStreamed(p, "sha256:00", in)
	if err != nil {
		t.Fatal(err)
	}
	if held := live() - before; held > bound {
		t.Errorf("the streamed plan of %d steps holds %d bytes, more than %d", n, held, bound)
	}
	steps, most := 0, int64(0)
	if err := st.Walk(func(s *Step, depth int) {
		if steps++; steps%5000 == 0 {
			most = max(most, live()-before)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if steps != n+1 || most > bound {
		t.Errorf("walked %d steps (want %d) holding up to %d bytes, more than %d", steps, n+1, most, bound)
	}
	pl, err := Build(p, "sha256:00", in)
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.Hash()
	if want, _ := pl.Hash(); err != nil || h != want {
		t.Fatalf("Hash = %s (%v), want %s", h, err, want)
	}
	// What the test would see of a held plan: far above the bound.
	t.Logf("held %d bytes a step while walked; %d by the plan of Build", most/n, (live()-before)/n)
	if held := live() - before; held < 4*bound {
		t.Fatalf("the plan of Build holds %d bytes: too little to tell", held)
	}
	runtime.KeepAlive(pl)
	runtime.KeepAlive(st)
}
