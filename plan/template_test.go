package plan

import (
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
)

// templatePack maps over a step output (a deferred map) and, under a false
// when, over an input (a deferred map that is skipped).
const templatePack = `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: template
  version: 0.1.0
  description: Deferred maps keep their body as a template.
spec:
  inputs:
    - name: tag
      type: string
      default: v1
    - name: flag
      type: boolean
      default: false
  secrets:
    - name: token
      source: env:TOKEN
      scope: step
  approvals:
    - id: owner
      role: Packs.Approve
  steps:
    - id: discover
      run:
        command: [sh, discover.sh]
        outputs: [hosts]
    - id: each
      map:
        items: steps.discover.outputs.hosts
        steps:
          - id: touch
            run:
              command: [sh, touch.sh, "${{ item }}", "${{ index }}", "${{ inputs.tag }}", "${{ steps.discover.outputs.hosts }}"]
              env: {HOST: "${{ item.name }}", TAG: "${{ inputs.tag }}"}
              secrets: [token]
          - id: only-some
            when: "item.name != 'b'"
            run: {command: [sh, some.sh, "${{ item.name }}"]}
          - id: flagged
            when: inputs.flag
            run: {command: [sh, flagged.sh, "${{ item }}"]}
          - id: owner-ok
            gate: {approval: owner}
          - id: inner
            map:
              items: item.ports
              steps:
                - id: probe
                  run: {command: [sh, probe.sh, "${{ item }}", "${{ index }}"]}
    - id: later
      when: inputs.flag
      map:
        items: "[` + "`1`, `2`" + `]"
        steps:
          - id: never
            run:
              command: [sh, never.sh, "${{ item }}", "${{ index }}"]
              secrets: [token]
`

func buildTemplatePack(t *testing.T) *Plan {
	t.Helper()
	p, err := pack.Load(fstest.MapFS{"pack.yaml": &fstest.MapFile{Data: []byte(templatePack), Mode: 0o644}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := p.ResolveInputs("inputs.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Build(p, digest.Digest("sha256:"+strings.Repeat("0", 64)), in)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// TestDeferredTemplateKeepsPlaceholders: the plan an approver signs shows
// the commands a deferred map will run, with item and index (and step
// outputs) left for the runner and inputs rendered; its steps have the
// statuses each iteration will have, and its secrets are reported.
func TestDeferredTemplateKeepsPlaceholders(t *testing.T) {
	pl := buildTemplatePack(t)
	each := pl.Steps[1]
	if !each.Deferred || each.Status != StatusPending || len(each.Children) != 0 || len(each.Template) != 5 {
		t.Fatalf("each: deferred %v, status %s, %d children, %d template steps", each.Deferred, each.Status, len(each.Children), len(each.Template))
	}
	var got []string
	var walk func(steps []Step, depth int)
	walk = func(steps []Step, depth int) {
		for _, s := range steps {
			line := strings.Repeat(" ", depth) + s.ID + " " + s.Status
			if s.WhenResult != nil {
				line += " when=" + map[bool]string{true: "true", false: "false"}[*s.WhenResult]
			}
			if s.Index != nil {
				line += " indexed"
			}
			if s.Deferred {
				line += " deferred"
			}
			got = append(got, line)
			walk(s.Template, depth+1)
			walk(s.Children, depth+1)
		}
	}
	walk(pl.Steps, 0)
	want := []string{
		"discover pending",
		"each pending deferred",
		" each[*]::touch pending",
		" each[*]::only-some pending",
		" each[*]::flagged skipped when=false",
		" each[*]::owner-ok requires-approval",
		" each[*]::inner pending deferred",
		"  each[*]::inner[*]::probe pending",
		"later skipped when=false deferred",
		" later[*]::never skipped",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got)\n%s", diff)
	}

	touch := each.Template[0].Run
	if diff := cmp.Diff([]string{"sh", "touch.sh", "${{ item }}", "${{ index }}", "v1", "${{ steps.discover.outputs.hosts }}"}, touch.Command); diff != "" {
		t.Errorf("template command (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"HOST": "${{ item.name }}", "TAG": "v1"}, touch.Env); diff != "" {
		t.Errorf("template env (-want +got)\n%s", diff)
	}
	if got := each.Template[4].Template[0].Run.Command; !cmp.Equal(got, []string{"sh", "probe.sh", "${{ item }}", "${{ index }}"}) {
		t.Errorf("nested template command: %q", got)
	}
	if got := pl.Steps[2].Template[0].Run.Command; !cmp.Equal(got, []string{"sh", "never.sh", "${{ item }}", "${{ index }}"}) {
		t.Errorf("a skipped template keeps its placeholders too: %q", got)
	}

	// The template that will run uses its secret; the skipped one does not.
	if diff := cmp.Diff([]Secret{{Name: "token", Source: "env:TOKEN", Scope: "step", Steps: []string{"each[*]::touch"}}}, pl.Secrets); diff != "" {
		t.Errorf("secrets (-want +got)\n%s", diff)
	}
	// A gate in a template gets its ids, and its approvals, only when the
	// runner expands it.
	if len(pl.Approvals) != 0 {
		t.Errorf("approvals: %+v", pl.Approvals)
	}
}

// TestDeferredTemplateHash pins the hash of a plan with deferred templates
// and checks it does not move between builds.
func TestDeferredTemplateHash(t *testing.T) {
	const want = digest.Digest("sha256:d20124bdb05274dd06f880f594ab37ef2bd2c346ebfd3419680858f2d9c5bdb3")
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for i := 0; i < 20; i++ {
		runtime.GOMAXPROCS(1 + i%4)
		h, err := buildTemplatePack(t).Hash()
		if err != nil {
			t.Fatal(err)
		}
		if h != want {
			t.Fatalf("build %d: hash %s, want %s", i, h, want)
		}
	}
}
