package redact

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// bruteMask is the definition the matcher implements, the slow way: every
// byte covered by an occurrence (overlapping ones included) of any pattern
// is masked, and each maximal run of masked bytes becomes one Mask.
func bruteMask(text []byte, pats []string) []byte {
	covered := make([]bool, len(text))
	for _, p := range pats {
		for i := 0; i+len(p) <= len(text); i++ {
			if string(text[i:i+len(p)]) == p {
				for k := i; k < i+len(p); k++ {
					covered[k] = true
				}
			}
		}
	}
	var out []byte
	for i := 0; i < len(text); i++ {
		if !covered[i] {
			out = append(out, text[i])
			continue
		}
		out = append(out, Mask...)
		for i+1 < len(text) && covered[i+1] {
			i++
		}
	}
	return out
}

// bruteHold is the length of the longest suffix of text that is a proper
// prefix of one of pats.
func bruteHold(text []byte, pats []string) int {
	for k := len(text); k > 0; k-- {
		s := string(text[len(text)-k:])
		for _, p := range pats {
			if len(s) < len(p) && strings.HasPrefix(p, s) {
				return k
			}
		}
	}
	return 0
}

// randomPatterns returns n distinct patterns of MinLen to MinLen+maxExtra
// bytes over alphabet: a small alphabet makes overlaps, shared prefixes and
// patterns inside patterns common.
func randomPatterns(r *rand.Rand, n, maxExtra int, alphabet string) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		b := make([]byte, MinLen+r.IntN(maxExtra+1))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, string(b))
		}
	}
	return out
}

// randomText returns text over alphabet with patterns planted in it, some
// overlapping and some cut short.
func randomText(r *rand.Rand, n int, alphabet string, pats []string) []byte {
	var b []byte
	for len(b) < n {
		switch r.IntN(4) {
		case 0:
			p := pats[r.IntN(len(pats))]
			if r.IntN(3) == 0 {
				p = p[:r.IntN(len(p))]
			}
			if len(b) > 0 && r.IntN(3) == 0 {
				b = b[:len(b)-r.IntN(min(len(b), 6))] // overlap what precedes
			}
			b = append(b, p...)
		default:
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
	}
	return b
}

// TestMatcherAgainstBruteForce checks find and render against bruteMask
// on patterns over tiny alphabets, where occurrences overlap, nest, touch
// and share prefixes all the time.
func TestMatcherAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, alphabet := range []string{"ab", "abc", "abcdefgh", "\x00\xff\n"} {
		for round := range 60 {
			pats := randomPatterns(r, 1+r.IntN(12), r.IntN(20), alphabet)
			m := compile(pats)
			text := randomText(r, r.IntN(400), alphabet, pats)
			iv := m.find(text, nil)
			sortSpans(iv)
			got, _, _ := render(nil, text, len(text), iv, 0, false)
			if want := bruteMask(text, pats); !bytes.Equal(got, want) {
				t.Fatalf("alphabet %q round %d: patterns %q\ntext %q\n got %q\nwant %q", alphabet, round, pats, text, got, want)
			}
			for _, n := range []int{0, min(1, len(text)), len(text) / 2, len(text)} {
				if got, want := m.holdback(text[:n]), bruteHold(text[:n], pats); got != want {
					t.Fatalf("holdback of %q with patterns %q = %d, want %d", text[:n], pats, got, want)
				}
			}
		}
	}
}

// TestHoldbackAgainstBruteForce checks the held suffix after every byte of
// texts built from the patterns' own pieces.
func TestHoldbackAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, alphabet := range []string{"ab", "abcd", "xyzXYZ012"} {
		for range 25 {
			pats := randomPatterns(r, 1+r.IntN(30), r.IntN(40), alphabet)
			m := compile(pats)
			text := randomText(r, 200, alphabet, pats)
			for n := range len(text) + 1 {
				if got, want := m.holdback(text[:n]), bruteHold(text[:n], pats); got != want {
					t.Fatalf("holdback of %q with patterns %q = %d, want %d", text[:n], pats, got, want)
				}
			}
		}
	}
}

// TestRender pins the merging rules on hand-made spans, including the
// state carried from one write to the next.
func TestRender(t *testing.T) {
	b := []byte("0123456789")
	for _, c := range []struct {
		name    string
		h       int
		iv      []span
		cov     int
		run     bool
		want    string
		wantCov int
		wantRun bool
	}{
		{"nothing", 10, nil, 0, false, "0123456789", 0, false},
		{"one", 10, []span{{2, 4}}, 0, false, "01***456789", 0, false},
		{"overlapping", 10, []span{{2, 5}, {4, 7}}, 0, false, "01***789", 0, false},
		{"adjacent", 10, []span{{2, 4}, {4, 6}}, 0, false, "01***6789", 0, false},
		{"apart", 10, []span{{2, 4}, {5, 6}}, 0, false, "01***4***6789", 0, false},
		{"nested", 10, []span{{1, 8}, {2, 3}}, 0, false, "0***89", 0, false},
		{"to the end", 10, []span{{7, 10}}, 0, false, "0123456***", 0, true},
		{"past h", 6, []span{{4, 9}}, 0, false, "0123***", 3, true},
		{"starting at h is left", 6, []span{{6, 9}}, 0, false, "012345", 0, false},
		{"covered from before", 10, nil, 3, true, "3456789", 0, false},
		{"covered from before, extended", 10, []span{{2, 5}}, 3, true, "56789", 0, false},
		{"run continues at 0", 10, []span{{0, 2}}, 0, true, "23456789", 0, false},
		{"run ended before 0", 10, []span{{1, 2}}, 0, true, "0***23456789", 0, false},
		{"covered past h", 4, nil, 6, true, "", 2, true},
		{"nothing to emit", 0, []span{{0, 3}}, 2, true, "", 2, true},
	} {
		got, cov, run := render(nil, b, c.h, c.iv, c.cov, c.run)
		if string(got) != c.want || cov != c.wantCov || run != c.wantRun {
			t.Errorf("%s: render = %q, %d, %v; want %q, %d, %v", c.name, got, cov, run, c.want, c.wantCov, c.wantRun)
		}
	}
}
