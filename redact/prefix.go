package redact

import "slices"

// automaton answers, for the end of a text, how long its longest suffix is
// that is a proper prefix of some pattern: what a Writer must hold back,
// since a pattern may begin there and end in a later write. It is the
// Aho–Corasick automaton of the patterns: after reading a text from the
// root, its state is the longest suffix of the text that is a prefix of a
// pattern (a node of the patterns' trie), and that node's failure chain
// lists every shorter one. hold gives, for each node, the depth of the
// first node on its chain that has a child (is a proper prefix).
//
// No such suffix is longer than the longest pattern less one byte, so
// holdback reads only that many bytes of the end of a text: its cost is
// bounded whatever the length of the text.
type automaton struct {
	root  [256]int32 // the root's child for each byte; 0 (the root) when none
	first []int32    // node → index of its first edge; node n's are first[n]:first[n+1]
	label []byte     // edge → its byte, increasing within a node
	to    []int32    // edge → the child it leads to
	fail  []int32    // node → the node of its longest proper suffix in the trie
	hold  []int32    // node → depth of the first node with a child on its failure chain
	span  int        // longest pattern less one: the most a suffix to hold can be
}

// buildAutomaton builds the automaton of pats.
func buildAutomaton(pats []string) *automaton {
	a := &automaton{}
	sorted := slices.Clone(pats)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)

	// The trie, from the patterns in order: each pattern's path follows
	// the previous one's for their common prefix and then grows, so every
	// node's children are created in increasing byte order.
	type edge struct {
		parent int32
		c      byte
	}
	depth := []int32{0}
	var edges []edge   // node n > 0 was reached by edges[n-1]
	path := []int32{0} // the nodes of the previous pattern's path, by depth
	prev := ""
	for _, p := range sorted {
		a.span = max(a.span, len(p)-1)
		n := commonPrefix(prev, p)
		path = path[:n+1]
		for d := n; d < len(p); d++ {
			edges = append(edges, edge{path[d], p[d]})
			depth = append(depth, int32(d+1))
			path = append(path, int32(len(depth)-1))
		}
		prev = p
	}
	nodes := len(depth)

	// Each node's edges, together (a counting sort by parent keeps their
	// byte order).
	a.first = make([]int32, nodes+1)
	for _, e := range edges {
		a.first[e.parent+1]++
	}
	for n := range nodes {
		a.first[n+1] += a.first[n]
	}
	a.label = make([]byte, len(edges))
	a.to = make([]int32, len(edges))
	next := slices.Clone(a.first[:nodes])
	for i, e := range edges {
		k := next[e.parent]
		next[e.parent]++
		a.label[k], a.to[k] = e.c, int32(i+1)
		if e.parent == 0 {
			a.root[e.c] = int32(i + 1)
		}
	}

	// Failure links and hold, breadth first: a node's failure lies at a
	// smaller depth.
	a.fail = make([]int32, nodes)
	a.hold = make([]int32, nodes)
	order := make([]int32, 0, nodes)
	order = append(order, 0)
	for i := 0; i < len(order); i++ {
		n := order[i]
		if n != 0 {
			e := edges[n-1]
			if e.parent != 0 {
				a.fail[n] = a.next(a.fail[e.parent], e.c)
			}
			if a.first[n+1] > a.first[n] {
				a.hold[n] = depth[n]
			} else {
				a.hold[n] = a.hold[a.fail[n]]
			}
		}
		for k := a.first[n]; k < a.first[n+1]; k++ {
			order = append(order, a.to[k])
		}
	}
	return a
}

// commonPrefix returns the length of the longest common prefix of x and y.
func commonPrefix(x, y string) int {
	n := min(len(x), len(y))
	for i := range n {
		if x[i] != y[i] {
			return i
		}
	}
	return n
}

// child returns the child of node n by byte c, or -1.
func (a *automaton) child(n int32, c byte) int32 {
	lo, hi := a.first[n], a.first[n+1]
	for hi-lo > 8 {
		mid := lo + (hi-lo)/2
		if a.label[mid] < c {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for ; lo < hi; lo++ {
		if a.label[lo] == c {
			return a.to[lo]
		}
	}
	return -1
}

// next returns the state after reading c in state n.
func (a *automaton) next(n int32, c byte) int32 {
	for n != 0 {
		if t := a.child(n, c); t >= 0 {
			return t
		}
		n = a.fail[n]
	}
	return a.root[c]
}

// holdback returns the length of the longest suffix of b that is a proper
// prefix of some pattern.
func (a *automaton) holdback(b []byte) int {
	var n int32
	for _, c := range b[max(0, len(b)-a.span):] {
		n = a.next(n, c)
	}
	return int(a.hold[n])
}
