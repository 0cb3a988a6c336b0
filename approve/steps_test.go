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
	packed := 0
	for _, ss := range want {
		if n, m := packedSize(ss), len(appendStep(nil, ss)); n != m {
			t.Fatalf("packedSize %d, appendStep appends %d, for %+v", n, m, ss)
		}
		packed += packedSize(ss)
	}
	checkChunks(t, &s, packed)
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

// checkChunks: the chunks hold the packed steps in about their size:
// at most stepsLarge bytes unused of each full-size chunk, plus the last.
func checkChunks(t *testing.T, s *Steps, packed int) {
	t.Helper()
	held := 0
	for _, c := range s.chunks {
		held += cap(c)
	}
	if limit := packed + packed/7 + stepsChunk; held > limit {
		t.Errorf("%d bytes of steps packed in %d bytes of %d chunks, more than %d", packed, held, len(s.chunks), limit)
	}
}

// TestStepsLargeSteps: steps of just over half a chunk, which would each
// have left half a chunk unused, are packed in about their size, as are
// small steps between large ones.
func TestStepsLargeSteps(t *testing.T) {
	var s Steps
	packed := 0
	for i := range 60 {
		ss := StepSummary{ID: strings.Repeat("x", stepsChunk/2+1), Kind: "run"}
		if i%2 == 1 { // a large step comes first
			ss = StepSummary{ID: fmt.Sprint(i), Command: []string{strings.Repeat("y", 3000)}}
		}
		s.list(s.add(ss))
		packed += packedSize(ss)
	}
	checkChunks(t, &s, packed)
	for i, c := range s.chunks {
		if len(c) != cap(c) && cap(c) != stepsChunk {
			t.Errorf("chunk %d: %d bytes of %d used: a small step went into a large step's chunk", i, len(c), cap(c))
		}
	}
	i := 0
	s.Each(func(ss StepSummary) error {
		if want := fmt.Sprint(i); i%2 == 1 && (ss.ID != want || len(ss.Command) != 1 || len(ss.Command[0]) != 3000) ||
			i%2 == 0 && len(ss.ID) != stepsChunk/2+1 {
			t.Fatalf("step %d given back as %.40q", i, ss.ID)
		}
		i++
		return nil
	})
}
