package approve

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStepsKeepWhatIsAdded: the packed steps give back, in the order
// listed, exactly the summaries added (empty and nil lists apart, a decided policy true,
// false or not, strings longer than a one-byte length), and Each stops at
// the first error.
func TestStepsKeepWhatIsAdded(t *testing.T) {
	yes, no := true, false
	want := []StepSummary{
		{},
		{ID: "approve", Kind: "gate", Status: "requires-approval"},
		{ID: "fleet[7]::touch", Kind: "run", Name: "touch é😀\x00\xff", Status: "pending", Depth: 2,
			Command: []string{"sh", "touch.sh", "", strings.Repeat("h", 300)}, Secrets: []string{"db"}},
		{ID: "p", Kind: "gate", Status: "requires-policy", Policy: "inputs.n > 3", Decided: &yes, Command: []string{}, Secrets: []string{}},
		{ID: "q", Kind: "gate", Status: "skipped", Policy: strings.Repeat("x", 70000), Decided: &no, Depth: 999},
		{ID: "larger than a chunk", Policy: strings.Repeat("y", stepsChunk+1)},
	}
	// Across many chunks.
	for i := range 20000 {
		want = append(want, StepSummary{ID: fmt.Sprintf("fleet[%d]::touch", i), Kind: "run", Status: "pending", Depth: 1,
			Command: []string{"sh", "touch.sh", fmt.Sprintf("host-%d", i), fmt.Sprint(i)}})
	}
	// Added in another order than listed, as Scan visits a step after
	// its children: each is listed where it belongs.
	var s Steps
	offs := make([]stepAt, len(want))
	for i := range want {
		// 2, 0, 4, 1, 3, 5, 6, ...
		if j := []int{2, 0, 4, 1, 3}; i < len(j) {
			i = j[i]
		}
		offs[i] = s.add(want[i])
	}
	if len(s.chunks) < 5 {
		t.Fatalf("%d steps packed in %d chunks: the test wants several", len(want), len(s.chunks))
	}
	for _, off := range offs {
		s.list(off)
	}
	if s.Len() != len(want) {
		t.Fatalf("Len %d, want %d", s.Len(), len(want))
	}
	var got []StepSummary
	if err := s.Each(func(ss StepSummary) error { got = append(got, ss); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("steps given back differ (-added +given):\n%s", diff)
	}
	if got[0].Command != nil || got[3].Command == nil || got[3].Secrets == nil {
		t.Fatalf("nil and empty lists not kept apart: %#v, %#v", got[0].Command, got[3].Command)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Each(func(StepSummary) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Each after an error: %v after %d steps, want stop after 1", err, n)
	}
}
