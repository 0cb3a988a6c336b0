package pack

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestApproverRoleProblems: a gate whose role the site does not let
// approve is reported at its role, with file, line and column; the others
// are not.
func TestApproverRoleProblems(t *testing.T) {
	manifest := `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata:
  name: roles
  version: 0.1.0
  description: Three gates, three roles.
spec:
  approvals:
    - {id: a, role: Packs.Approve}
    - id: b
      role: publisher
    - {id: c, role: Change.Board}
  steps:
    - {id: ga, gate: {approval: a}}
    - {id: gb, gate: {approval: b}}
    - {id: gc, gate: {approval: c}}
`
	p, err := Load(fstest.MapFS{ManifestFile: &fstest.MapFile{Data: []byte(manifest), Mode: 0o644}})
	if err != nil {
		t.Fatalf("the format allows any role: %v", err)
	}
	only := func(roles ...string) func(string) bool {
		return func(r string) bool {
			for _, x := range roles {
				if r == x {
					return true
				}
			}
			return false
		}
	}
	got := p.ApproverRoleProblems(only("Packs.Approve"), []string{"Packs.Approve"})
	want := []Problem{
		{File: ManifestFile, Line: 11, Column: 7, Path: "spec.approvals[1].role",
			Message: `role "publisher" is not an approver role at this site (approver roles: Packs.Approve); publisher and Packs.Run never approve`},
		{File: ManifestFile, Line: 12, Column: 15, Path: "spec.approvals[2].role",
			Message: `role "Change.Board" is not an approver role at this site (approver roles: Packs.Approve)`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if got := p.ApproverRoleProblems(only("Packs.Approve", "Change.Board", "publisher"), nil); len(got) != 0 {
		t.Errorf("every role an approver role: %v", got)
	}
}
