package redact

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
)

// gram is the length of the blocks the matcher samples: every step-th
// block of the text is looked up among the blocks of the patterns.
const gram = 4

// mul is the multiplier of the table's hash of blocks (Fibonacci hashing).
const mul = 0x9e3779b1

// sampler is the first test of a sampled block: a blocked Bloom filter of
// 32 KiB (it stays in the first level cache next to the text) in which
// each block sets two bits of one word, all from one 32-bit
// multiplicative hash, so a test is a multiplication, a load and a few
// shifts. The fixed size lets the compiler drop the bounds checks of the
// hot loop. With the 8,700 distinct blocks of 100 random values of 16–40
// bytes, 1.4% of the samples of log text pass it (one bit a block let 6%
// through, and cost more in mispredicted branches than the second bit
// costs), and 0.5% pass the bloom test after it.
type sampler [samplerWords]uint64

const samplerWords = 1 << 12

// add sets the bits of block b.
func (f *sampler) add(b uint32) {
	h := b * mul
	f[h>>20] |= 1<<(h>>14&63) | 1<<(h>>8&63)
}

// scan returns the first of the positions i, i+step, i+2*step, ... of b
// whose block passes f, or -1. It is the hot loop of the matcher: free of
// calls, so that its state stays in registers, and two samples a round,
// which measured a fifth faster than one.
func (f *sampler) scan(b []byte, i, step int) int {
	for ; i+step <= len(b)-gram; i += 2 * step {
		h0 := binary.LittleEndian.Uint32(b[i:]) * mul
		h1 := binary.LittleEndian.Uint32(b[i+step:]) * mul
		w0 := f[(h0>>20)%samplerWords]
		w1 := f[(h1>>20)%samplerWords]
		x0 := w0 >> (h0 >> 14 & 63) & (w0 >> (h0 >> 8 & 63))
		x1 := w1 >> (h1 >> 14 & 63) & (w1 >> (h1 >> 8 & 63))
		if (x0|x1)&1 != 0 {
			if x0&1 != 0 {
				return i
			}
			return i + step
		}
	}
	if i <= len(b)-gram {
		h := binary.LittleEndian.Uint32(b[i:]) * mul
		w := f[(h>>20)%samplerWords]
		if w>>(h>>14&63)&(w>>(h>>8&63))&1 != 0 {
			return i
		}
	}
	return -1
}

// bloom is a blocked Bloom filter over blocks: each block sets two bits
// of one 64-bit word, both taken from the top bits of a 64-bit
// multiplicative hash (other bits than the sampler's): the second test of
// a sampled block, and the test of first blocks in holdback.
type bloom [bloomWords]uint64

const bloomWords = 1 << 12

// bloomKey returns the word of block b and the mask of its two bits.
func bloomKey(b uint32) (int, uint64) {
	h := uint64(b) * 0x9e3779b97f4a7c15
	return int(h >> 52), 1<<(h>>46&63) | 1<<(h>>40&63)
}

// add sets the bits of block b.
func (f *bloom) add(b uint32) {
	w, m := bloomKey(b)
	f[w] |= m
}

// has reports whether the bits of block b are set: false means b was not
// added.
func (f *bloom) has(b uint32) bool {
	w, m := bloomKey(b)
	return f[w%bloomWords]&m == m
}

// matcher finds every occurrence of a fixed set of patterns. It is built
// once by compile and never changed, so any number of goroutines may use
// it; a Set swaps in a new one when a value is added.
//
// The search samples the text: with m the length of the shortest pattern
// and step = m-gram+1, any occurrence of a pattern covers the gram-byte
// block at exactly one position that is a multiple of step, at an offset
// below step into the pattern. So the blocks of each pattern at offsets
// 0..step-1 are indexed (block → pattern, offset); the text's blocks at
// multiples of step are tested against a bitmap and a Bloom filter of the
// indexed blocks and only on a hit looked up and verified. On ordinary
// text, that is one load, one multiplication and one bit test per step
// bytes.
type matcher struct {
	pats    []string // the patterns, each at least gram bytes long
	minLen  int      // length of the shortest pattern
	step    int      // minLen - gram + 1
	sample  *sampler // the indexed blocks, first test
	filter  *bloom   // the indexed blocks, second test
	first   *bloom   // the patterns' first blocks
	keys    []uint32 // open-addressing table of the indexed blocks; 0 means empty
	slots   []span   // per slot of keys: the block's range of entries
	tshift  uint32   // 32 - log2(len(keys))
	zero    span     // the entries of the block 0, which keys cannot hold
	entries []entry  // grouped by block
	prefix  *automaton
}

// entry says that a block occurs in pattern pat at offset off.
type entry struct{ pat, off uint32 }

// span is the half-open range [lo, hi).
type span struct{ lo, hi int }

// compile builds the matcher of pats, which are distinct and each at
// least MinLen bytes long. It does not keep pats itself, only its elements.
func compile(pats []string) *matcher {
	m := &matcher{pats: slices.Clone(pats)}
	if len(pats) == 0 {
		m.prefix = buildAutomaton(nil)
		return m
	}
	m.minLen = len(pats[0])
	for _, p := range pats {
		m.minLen = min(m.minLen, len(p))
	}
	m.step = m.minLen - gram + 1

	type indexed struct {
		block uint32
		entry
	}
	all := make([]indexed, 0, len(pats)*m.step)
	for k, p := range pats {
		for o := range m.step {
			b := binary.LittleEndian.Uint32([]byte(p[o : o+gram]))
			all = append(all, indexed{b, entry{uint32(k), uint32(o)}})
		}
	}
	slices.SortFunc(all, func(a, b indexed) int { return cmp.Compare(a.block, b.block) })
	m.entries = make([]entry, len(all))
	distinct := 0
	for i, x := range all {
		m.entries[i] = x.entry
		if i == 0 || x.block != all[i-1].block {
			distinct++
		}
	}

	// The table is at most half full.
	m.sample, m.filter, m.first = new(sampler), new(bloom), new(bloom)
	for _, p := range pats {
		m.first.add(binary.LittleEndian.Uint32([]byte(p[:gram])))
	}
	tbits := max(bits.Len(uint(distinct*2-1)), 4)
	m.keys = make([]uint32, 1<<tbits)
	m.slots = make([]span, 1<<tbits)
	m.tshift = uint32(32 - tbits)
	mask := uint32(len(m.keys) - 1)
	for lo := 0; lo < len(all); {
		b := all[lo].block
		hi := lo + 1
		for hi < len(all) && all[hi].block == b {
			hi++
		}
		m.sample.add(b)
		m.filter.add(b)
		if b == 0 {
			m.zero = span{lo, hi}
		} else {
			i := b * mul >> m.tshift
			for m.keys[i] != 0 {
				i = (i + 1) & mask
			}
			m.keys[i] = b
			m.slots[i] = span{lo, hi}
		}
		lo = hi
	}
	m.prefix = buildAutomaton(m.pats)
	return m
}

// holdback returns the length of the longest suffix of b that is a proper
// prefix of some pattern: what a Writer must hold back. The automaton
// finds it, started at the leftmost position where such a suffix can
// begin, which is found the way find looks for occurrences: a suffix of
// gram bytes or more that is a prefix of a pattern has the pattern's
// block at some offset below step at one of the positions len(b)-gram,
// len(b)-gram-step, ..., and its first block at its start. On ordinary
// text, no sample passes and the automaton reads the last gram-1 bytes.
func (m *matcher) holdback(b []byte) int {
	if len(m.pats) == 0 {
		return 0
	}
	lo := max(0, len(b)-m.prefix.span) // no longer suffix matters
	start := max(lo, len(b)-gram+1)    // suffixes shorter than a block
	last := len(b) - gram
	if last >= lo {
		// The window of sample i holds the starts j in (i-step, i].
		i := last - (last-lo)/m.step*m.step
	windows:
		for ; i <= last; i += m.step {
			if !m.filter.has(binary.LittleEndian.Uint32(b[i:])) {
				continue
			}
			for j := max(lo, i-m.step+1); j <= i; j++ {
				if m.first.has(binary.LittleEndian.Uint32(b[j:])) {
					start = j
					break windows
				}
			}
		}
	}
	return m.prefix.holdback(b[start:])
}

// find appends to iv the span of every occurrence of a pattern that lies
// wholly within b, in no particular order.
func (m *matcher) find(b []byte, iv []span) []span {
	if len(m.pats) == 0 || len(b) < m.minLen {
		return iv
	}
	// An occurrence at j ends by len(b), so the sample that finds it, at
	// most step-1 bytes after j, has its block within b.
	for i := m.sample.scan(b, 0, m.step); i >= 0; i = m.sample.scan(b, i+m.step, m.step) {
		if blk := binary.LittleEndian.Uint32(b[i:]); m.filter.has(blk) {
			iv = m.verify(b, i, blk, iv)
		}
	}
	return iv
}

// verify appends to iv the occurrences in b of the patterns whose block at
// some offset below step is blk, the text's block at i.
func (m *matcher) verify(b []byte, i int, blk uint32, iv []span) []span {
	var s span
	if blk == 0 {
		s = m.zero
	} else {
		mask := uint32(len(m.keys) - 1)
		for k := blk * mul >> m.tshift; ; k = (k + 1) & mask {
			if m.keys[k] == blk {
				s = m.slots[k]
				break
			}
			if m.keys[k] == 0 {
				return iv
			}
		}
	}
	for _, e := range m.entries[s.lo:s.hi] {
		p := m.pats[e.pat]
		j := i - int(e.off)
		if j >= 0 && j+len(p) <= len(b) && string(b[j:j+len(p)]) == p {
			iv = append(iv, span{j, j + len(p)})
		}
	}
	return iv
}

// sortSpans orders iv by start.
func sortSpans(iv []span) {
	if len(iv) > 1 {
		slices.SortFunc(iv, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	}
}

// render appends to dst the first h bytes of b with each run of masked
// bytes replaced by one Mask. A byte is masked when an occurrence in iv
// (sorted by start) covers it, or when it is among the first cov bytes,
// which occurrences that started before b cover. run says that the byte
// before b was masked: a run that reaches the end of what came before
// continues into b, and its Mask is not written again. Occurrences that
// start at or after h are left for later.
//
// It returns the new dst, how many bytes after h are covered by
// occurrences that start before h (the cov of what follows h), and
// whether byte h-1 is masked (or run again when h is 0).
func render(dst, b []byte, h int, iv []span, cov int, run bool) ([]byte, int, bool) {
	if h == 0 {
		return dst, cov, run
	}
	end := cov // the end of the current run, when run is set
	done := 0  // b[:done] is accounted for
	for _, s := range iv {
		if s.lo >= h {
			break
		}
		if run && s.lo <= end {
			end = max(end, s.hi)
			continue
		}
		if run {
			done = max(done, end)
		}
		dst = append(dst, b[done:s.lo]...)
		dst = append(dst, Mask...)
		run, end, done = true, s.hi, s.lo
	}
	if run {
		done = max(done, end)
	}
	if done < h {
		dst = append(dst, b[done:h]...)
		return dst, 0, false
	}
	return dst, end - h, true
}
