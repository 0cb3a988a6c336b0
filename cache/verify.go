package cache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// Severity of a problem found by Verify.
type Severity string

const (
	// SeverityError: the cache is inconsistent or content is corrupt.
	SeverityError Severity = "error"
	// SeverityWarning: something to clean up (gc does), not an inconsistency.
	SeverityWarning Severity = "warning"
)

// Problem codes of the cache's own checks. Hooks use their own codes.
const (
	ProblemBlobDigest       = "blob-digest-mismatch"  // file content hashes to another digest than its name
	ProblemBlobSize         = "blob-size-mismatch"    // file size differs from the index
	ProblemBlobMissing      = "blob-missing"          // the index names a blob whose file is gone
	ProblemBlobUnreadable   = "blob-unreadable"       // the file cannot be read
	ProblemBlobRecord       = "blob-record-missing"   // a graph node has no blob record
	ProblemRefcount         = "refcount-mismatch"     // recorded refcount differs from the mark
	ProblemRefDangling      = "ref-dangling"          // a ref names an artifact with no record
	ProblemRefMismatch      = "ref-mismatch"          // an artifact and the ref table disagree
	ProblemArtifactUnrooted = "artifact-unrooted"     // an artifact record kept by no ref and no link
	ProblemLinkDangling     = "link-dangling"         // a referrer link names an artifact with no record, or not its subject
	ProblemGraph            = "graph-mismatch"        // recorded children differ from the manifest, or are missing
	ProblemManifest         = "manifest-invalid"      // a manifest blob cannot be parsed
	ProblemRecord           = "record-invalid"        // an index record cannot be decoded
	ProblemImportRecord     = "import-record-missing" // an import index entry names no record
	ProblemStrayFile        = "stray-file"            // a file under blobs/ or segments/ that is not a blob or a segment (warning)
	ProblemSegmentDamaged   = "segment-damaged"       // a segment whose entries or footer do not check out
	ProblemLeftover         = "leftover"              // a temp file of an interrupted write (warning)
)

// Problem is one finding of Verify.
type Problem struct {
	Severity Severity `json:"severity"`
	Source   string   `json:"source"`  // "cache" or the name of the hook
	Object   string   `json:"object"`  // digest, ref or file the problem is about
	Problem  string   `json:"problem"` // a code, e.g. ProblemBlobDigest
	Expected string   `json:"expected,omitempty"`
	Actual   string   `json:"actual,omitempty"`
}

// Report is the outcome of Verify.
type Report struct {
	Problems          []Problem `json:"problems"` // sorted by source, object, problem
	Blobs             int       `json:"blobs"`    // blobs hashed, each digest once
	Bytes             int64     `json:"bytes"`    // their bytes on disk, every copy
	Artifacts         int       `json:"artifacts"`
	Refs              int       `json:"refs"`
	UnreferencedBlobs int       `json:"unreferencedBlobs"` // blobs gc would remove
	UnreferencedBytes int64     `json:"unreferencedBytes"` // and the bytes that frees
}

// OK reports whether the report has no error (warnings allowed).
func (r Report) OK() bool {
	return !slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Severity == SeverityError })
}

// VerifyHook lets another package check its own records (kept through
// Records) as part of Verify. Check reads them in its own transactions
// (Records.View); it returns problems found, or an error when it could not
// check at all. Source of the problems is set to Name.
type VerifyHook struct {
	Name  string
	Check func(ctx context.Context, s *Store) ([]Problem, error)
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	Hooks []VerifyHook
}

// snapshot is what Verify needs of the index, and no more, held without
// a string or a map entry per record: a cache of 30,000 packs has 120,000
// blob records, and maps keyed by digest strings held them in about 100
// MiB of heap. Every digest the index names has an id: the blob records
// come first, 0 to len(blobs)-1 in key order (their digests sorted in one
// string, digests), then the digests named with no blob record (extra: in
// a consistent cache, none). Artifacts, refs and children records are in
// key order too, so walking them is walking sorted keys. Of an artifact
// record it keeps its refs and subject, of a children record each child's
// id and size, of a blob record its size, refcount and media type (each
// media type once); records still decode whole first, so a malformed one
// is reported as before.
type snapshot struct {
	digests   sortedStrings
	blobs     []blobEntry
	types     []string // media types of blob records, each once
	extra     []string
	extraID   map[string]int32 // extra's ids; empty in a consistent cache
	refs      sortedStrings    // ref names
	refTo     []int32          // refTo[i]: the artifact ref i names
	artifacts []artifactEntry
	children  []childrenEntry
	nodes     []node // the children of every children record, in turn
	links     []link
}

type blobEntry struct {
	size, refs int64
	mediaType  uint16 // in snapshot.types
}

type artifactEntry struct {
	id      int32
	subject int32 // -1 when the record has none
	refs    []string
}

// childrenEntry is a children record: its manifest's id and its children,
// nodes[from:to].
type childrenEntry struct {
	id, from, to int32
}

// node is a child as a children record lists it: its id and size.
type node struct {
	id   int32
	size int64
}

type link struct {
	subject, referrer int32
}

// sortedStrings holds strings added in increasing order in one string:
// a digest costs its bytes and four more, and is found by binary search.
type sortedStrings struct {
	b    strings.Builder
	s    string
	ends []uint32
}

// add appends v, which sorts after every string added before.
func (t *sortedStrings) add(v []byte) {
	t.b.Write(v)
	t.ends = append(t.ends, uint32(t.b.Len()))
}

// done ends the adding; at and find work after it.
func (t *sortedStrings) done() { t.s = t.b.String() }

func (t *sortedStrings) len() int { return len(t.ends) }

func (t *sortedStrings) at(i int32) string {
	from := uint32(0)
	if i > 0 {
		from = t.ends[i-1]
	}
	return t.s[from:t.ends[i]]
}

func (t *sortedStrings) find(v string) (int32, bool) {
	lo, hi := 0, len(t.ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.at(int32(m)) < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return int32(lo), lo < len(t.ends) && t.at(int32(lo)) == v
}

// id returns the id of digest d, giving it one when it is new.
func (snap *snapshot) id(d string) int32 {
	if i, ok := snap.digests.find(d); ok {
		return i
	}
	if i, ok := snap.extraID[d]; ok {
		return i
	}
	i := int32(snap.digests.len() + len(snap.extra))
	snap.extra = append(snap.extra, d)
	snap.extraID[d] = i
	return i
}

// ids is how many ids there are.
func (snap *snapshot) ids() int { return snap.digests.len() + len(snap.extra) }

// digest returns the digest of id.
func (snap *snapshot) digest(id int32) string {
	if n := int32(snap.digests.len()); id >= n {
		return snap.extra[id-n]
	}
	return snap.digests.at(id)
}

// blob returns the blob record of id, if it has one.
func (snap *snapshot) blob(id int32) (blobEntry, bool) {
	if id < int32(len(snap.blobs)) {
		return snap.blobs[id], true
	}
	return blobEntry{}, false
}

// sorted returns every id in the order of its digest.
func (snap *snapshot) sorted() []int32 {
	out := make([]int32, 0, snap.ids())
	extra := make([]int32, len(snap.extra))
	for i := range extra {
		extra[i] = int32(snap.digests.len() + i)
	}
	slices.SortFunc(extra, func(a, b int32) int { return strings.Compare(snap.digest(a), snap.digest(b)) })
	i := 0
	for id := range int32(snap.digests.len()) {
		for i < len(extra) && snap.digest(extra[i]) < snap.digest(id) {
			out = append(out, extra[i])
			i++
		}
		out = append(out, id)
	}
	return append(out, extra[i:]...)
}

// perID returns a slice with one v per id.
func perID[T any](snap *snapshot, v T) []T {
	out := make([]T, snap.ids())
	for i := range out {
		out[i] = v
	}
	return out
}

// Verify checks the whole cache: re-hashes every blob file, checks sizes
// against the index, that every artifact's graph is complete and matches
// its manifests, that refcounts match a mark from all refs and referrers,
// that no index entry names a missing blob, and lists leftovers as
// warnings; then runs the hooks. It holds every blob and record against
// GC while it runs (a hold, not the gc lock: a GC beside it runs, removes
// nothing and names it) and the index only for short snapshots. The
// error is for a failure to verify; what is wrong is in the report.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	h, err := s.holdAll(ctx)
	if err != nil {
		return Report{}, err
	}
	defer h.Release()

	var r Report
	add := func(sev Severity, object, problem, expected, actual string) {
		r.Problems = append(r.Problems, Problem{Severity: sev, Source: "cache", Object: object,
			Problem: problem, Expected: expected, Actual: actual})
	}
	bad := func(object, problem, expected, actual string) { add(SeverityError, object, problem, expected, actual) }

	snap, err := s.snapshot(ctx, bad)
	if err != nil {
		return Report{}, err
	}
	r.Artifacts, r.Refs = len(snap.artifacts), snap.refs.len()

	artOf := perID(snap, int32(-1)) // the artifact record of an id
	for i, a := range snap.artifacts {
		artOf[a.id] = int32(i)
	}
	childrenOf := perID(snap, int32(-1))
	for i, c := range snap.children {
		childrenOf[c.id] = int32(i)
	}
	live := snap.mark(childrenOf)

	// Blob files: hash every one.
	present := perID(snap, int64(-1))       // the size of an id's file
	good := perID(snap, false)              // its content matches its name
	unknownSeen := map[digest.Digest]bool{} // blobs with no record, counted
	err = s.hashBlobFiles(ctx, func(f file, h hashResult) {
		if f.damaged != nil {
			bad(s.rel(f.path), ProblemSegmentDamaged, "", f.damaged.Error())
			return
		}
		if f.digest == "" {
			add(SeverityWarning, s.rel(f.path), ProblemStrayFile, "", "")
			return
		}
		id, known := snap.lookup(string(f.digest))
		// A blob held twice (as a file and in a segment) counts once in
		// Blobs and twice in Bytes, which is what the disk holds.
		first := known && present[id] < 0 || !known && !unknownSeen[f.digest]
		if !known {
			unknownSeen[f.digest] = true
		}
		if first {
			r.Blobs++
		}
		r.Bytes += f.size
		switch {
		case h.err != nil:
			bad(string(f.digest), ProblemBlobUnreadable, "", h.err.Error())
		case h.digest != f.digest:
			actual := string(h.digest)
			if f.seg {
				actual += fmt.Sprintf(" (its bytes in %s, at %d)", s.rel(f.path), f.off)
			}
			bad(string(f.digest), ProblemBlobDigest, string(f.digest), actual)
		case known:
			good[id] = true
		}
		if known {
			present[id] = f.size
		}
		if !known || !live[id] {
			if first {
				r.UnreferencedBlobs++
			}
			r.UnreferencedBytes += f.size
		}
	})
	if err != nil {
		return Report{}, err
	}

	// Blob records against files.
	for id, br := range snap.blobs {
		d := snap.digests.at(int32(id))
		size := present[id]
		if size < 0 {
			bad(d, ProblemBlobMissing, "file "+s.relBlobPath(digest.Digest(d)), "none")
			continue
		}
		if size != br.size {
			bad(d, ProblemBlobSize, strconv.FormatInt(br.size, 10), strconv.FormatInt(size, 10))
		}
	}

	// Refs, artifacts and links agree with each other.
	for i := range int32(snap.refs.len()) {
		ref, d := snap.refs.at(i), snap.refTo[i]
		a := artOf[d]
		if a < 0 {
			bad(ref, ProblemRefDangling, "artifact "+snap.digest(d), "none")
			continue
		}
		if !slices.Contains(snap.artifacts[a].refs, ref) {
			bad(ref, ProblemRefMismatch, "artifact "+snap.digest(d)+" lists the ref", "it does not")
		}
	}
	linked := perID(snap, int32(-1)) // the subject a referrer is linked to
	for _, l := range snap.links {
		linked[l.referrer] = l.subject
		a := artOf[l.referrer]
		if a < 0 {
			bad(snap.digest(l.referrer), ProblemLinkDangling, "artifact record", "none")
			continue
		}
		if sub := snap.artifacts[a].subject; sub < 0 || sub != l.subject {
			bad(snap.digest(l.referrer), ProblemLinkDangling, "subject "+snap.digest(l.subject), "manifest subject "+snap.subjectOf(a))
		}
	}

	// Graphs: complete, and refcounts as a mark from every artifact says.
	want := perID(snap, int64(0))
	seen := perID(snap, int32(-1)) // the artifact whose graph saw an id last
	var queue []int32
	for i, a := range snap.artifacts {
		d := snap.digest(a.id)
		for _, ref := range a.refs {
			got := ""
			if j, ok := snap.refs.find(ref); ok {
				got = snap.digest(snap.refTo[j])
			}
			if got != d {
				bad(ref, ProblemRefMismatch, d, got)
			}
		}
		if len(a.refs) == 0 && (a.subject < 0 || snap.linkedDigest(linked, a.id) != snap.digest(a.subject)) {
			bad(d, ProblemArtifactUnrooted, "a ref or a referrer link", "none")
		}
		queue = snap.graph(a.id, int32(i), seen, childrenOf, queue[:0], bad)
		for _, n := range queue {
			want[n]++
		}
	}
	for _, id := range snap.sorted() {
		if want[id] == 0 {
			continue
		}
		br, ok := snap.blob(id)
		if !ok {
			bad(snap.digest(id), ProblemBlobRecord, "blob record", "none")
			continue
		}
		if br.refs != want[id] {
			bad(snap.digest(id), ProblemRefcount, strconv.FormatInt(want[id], 10), strconv.FormatInt(br.refs, 10))
		}
	}
	for id, br := range snap.blobs {
		if want[id] == 0 && br.refs != 0 {
			bad(snap.digests.at(int32(id)), ProblemRefcount, "0", strconv.FormatInt(br.refs, 10))
		}
	}

	// Recorded children and subjects against the manifests themselves.
	for _, c := range snap.children {
		if !good[c.id] {
			continue // reported above as missing or corrupt
		}
		s.checkManifest(c, artOf[c.id], snap, bad)
	}

	left, err := s.leftovers()
	if err != nil {
		return Report{}, err
	}
	for _, l := range left {
		add(SeverityWarning, s.rel(l.path), ProblemLeftover, "", strconv.FormatInt(l.size, 10)+" bytes")
	}

	for _, h := range opts.Hooks {
		ps, err := h.Check(ctx, s)
		if err != nil {
			return Report{}, fmt.Errorf("verify hook %s: %w", h.Name, err)
		}
		for _, p := range ps {
			p.Source = h.Name
			if p.Severity == "" {
				p.Severity = SeverityError
			}
			r.Problems = append(r.Problems, p)
		}
	}
	slices.SortStableFunc(r.Problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Object, b.Object), cmp.Compare(a.Problem, b.Problem))
	})
	return r, nil
}

// lookup returns the id of digest d, if the index names it.
func (snap *snapshot) lookup(d string) (int32, bool) {
	if i, ok := snap.digests.find(d); ok {
		return i, true
	}
	i, ok := snap.extraID[d]
	return i, ok
}

// subjectOf names the subject of artifact a, "none" when it has none.
func (snap *snapshot) subjectOf(a int32) string {
	if sub := snap.artifacts[a].subject; sub >= 0 {
		return snap.digest(sub)
	}
	return "none"
}

// linkedDigest is the subject id is linked to as a referrer, "" when none.
func (snap *snapshot) linkedDigest(linked []int32, id int32) string {
	if l := linked[id]; l >= 0 {
		return snap.digest(l)
	}
	return ""
}

// mark returns, by id, what is reachable from the roots — the artifacts
// refs name and the referrers of links — following every children record
// (what gc keeps, as mark does in the index).
func (snap *snapshot) mark(childrenOf []int32) []bool {
	live := perID(snap, false)
	var queue []int32
	push := func(id int32) {
		if !live[id] {
			live[id] = true
			queue = append(queue, id)
		}
	}
	for _, d := range snap.refTo {
		push(d)
	}
	for _, l := range snap.links {
		push(l.referrer)
	}
	for i := 0; i < len(queue); i++ {
		if c := childrenOf[queue[i]]; c >= 0 {
			for _, n := range snap.nodes[snap.children[c].from:snap.children[c].to] {
				push(n.id)
			}
		}
	}
	return live
}

// rel names a file by its path under the root, with slashes.
func (s *Store) rel(path string) string {
	if r, err := filepath.Rel(s.root, path); err == nil {
		return filepath.ToSlash(r)
	}
	return path
}

func (s *Store) relBlobPath(d digest.Digest) string {
	return blobsDir + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// snapshot copies what Verify checks of the index into memory in one
// short read transaction, a scan: the pages of index.db it reads do not
// stay resident.
func (s *Store) snapshot(ctx context.Context, bad func(object, problem, expected, actual string)) (*snapshot, error) {
	snap := &snapshot{extraID: map[string]int32{}}
	decode := func(bucket []byte, k, v []byte, into any) bool {
		if err := json.Unmarshal(v, into); err != nil {
			bad(string(bucket)+"/"+string(k), ProblemRecord, "json", err.Error())
			return false
		}
		return true
	}
	err := s.scan(ctx, func(tx *bbolt.Tx, sc *scanner) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %s missing: %w", b, ErrIndexCorrupt)
			}
		}
		// Blob records first: their digests are the ids the others name.
		types := map[string]uint16{} // a few
		_ = sc.forEach(tx.Bucket(bucketBlobs), func(k, v []byte) error {
			var br blobRecord
			if !decode(bucketBlobs, k, v, &br) {
				return nil
			}
			mt, ok := types[br.MediaType]
			if !ok {
				mt = uint16(len(snap.types))
				types[br.MediaType] = mt
				snap.types = append(snap.types, br.MediaType)
			}
			snap.digests.add(k)
			snap.blobs = append(snap.blobs, blobEntry{size: br.Size, refs: br.Refs, mediaType: mt})
			return nil
		})
		snap.digests.done()
		_ = sc.forEach(tx.Bucket(bucketRefs), func(k, v []byte) error {
			var r refRecord
			if decode(bucketRefs, k, v, &r) {
				snap.refs.add(k)
				snap.refTo = append(snap.refTo, snap.id(string(r.Digest)))
			}
			return nil
		})
		snap.refs.done()
		_ = sc.forEach(tx.Bucket(bucketArtifacts), func(k, v []byte) error {
			var ar artifactRecord
			if decode(bucketArtifacts, k, v, &ar) {
				a := artifactEntry{id: snap.id(string(k)), subject: -1, refs: ar.Refs}
				if ar.Subject != nil {
					a.subject = snap.id(string(ar.Subject.Digest))
				}
				snap.artifacts = append(snap.artifacts, a)
			}
			return nil
		})
		_ = sc.forEach(tx.Bucket(bucketChildren), func(k, v []byte) error {
			var cs []ocispec.Descriptor
			if decode(bucketChildren, k, v, &cs) {
				c := childrenEntry{id: snap.id(string(k)), from: int32(len(snap.nodes))}
				for _, d := range cs {
					snap.nodes = append(snap.nodes, node{id: snap.id(string(d.Digest)), size: d.Size})
				}
				c.to = int32(len(snap.nodes))
				snap.children = append(snap.children, c)
			}
			return nil
		})
		_ = sc.forEach(tx.Bucket(bucketReferrers), func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				bad(string(bucketReferrers)+"/"+string(k), ProblemRecord, "subject\\x00referrer", "no separator")
				return nil
			}
			snap.links = append(snap.links, link{subject: snap.id(string(k[:i])), referrer: snap.id(string(k[i+1:]))})
			return nil
		})
		imports := tx.Bucket(bucketImports)
		return sc.forEach(tx.Bucket(bucketImportsBy), func(k, v []byte) error {
			if len(k) < 9 || sc.get(imports, k[len(k)-8:]) == nil {
				bad(string(bytes.TrimRight(k, "\x00")), ProblemImportRecord, "import record", "none")
			}
			return nil
		})
	})
	return snap, err
}

// graph appends to queue the ids of the nodes of artifact a's graph (its
// manifest's id is root), reporting holes; seen[id] == a marks the ids
// already queued.
func (snap *snapshot) graph(root, a int32, seen, childrenOf []int32, queue []int32, bad func(object, problem, expected, actual string)) []int32 {
	seen[root] = a
	queue = append(queue, root)
	for i := 0; i < len(queue); i++ {
		id := queue[i]
		br, ok := snap.blob(id)
		if !ok {
			continue // reported with the refcounts
		}
		if !isManifest(snap.types[br.mediaType]) {
			continue
		}
		c := childrenOf[id]
		if c < 0 {
			bad(snap.digest(id), ProblemGraph, "children record of manifest", "none")
			continue
		}
		for _, n := range snap.nodes[snap.children[c].from:snap.children[c].to] {
			if seen[n.id] != a {
				seen[n.id] = a
				queue = append(queue, n.id)
			}
		}
	}
	return queue
}

// checkManifest checks children record c (of artifact record a, -1 when
// none) against the manifest it names.
func (s *Store) checkManifest(c childrenEntry, a int32, snap *snapshot, bad func(object, problem, expected, actual string)) {
	d := digest.Digest(snap.digest(c.id))
	br, ok := snap.blob(c.id)
	mediaType := ""
	if ok {
		mediaType = snap.types[br.mediaType]
	}
	b, err := s.readGoodBlob(d) // a wrong size is reported as blob-size
	if errors.Is(err, fs.ErrNotExist) {
		return // reported as blob-missing
	}
	if err != nil {
		bad(string(d), ProblemBlobUnreadable, "", err.Error())
		return
	}
	info, err := parseManifest(ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: br.size}, b)
	if err != nil {
		bad(string(d), ProblemManifest, mediaType, err.Error())
		return
	}
	recorded := make([]string, 0, c.to-c.from)
	for _, n := range snap.nodes[c.from:c.to] {
		recorded = append(recorded, snap.digest(n.id)+"("+strconv.FormatInt(n.size, 10)+")")
	}
	if got, rec := nodeList(info.children), strings.TrimSpace(strings.Join(recorded, " ")); got != rec {
		bad(string(d), ProblemGraph, got, rec)
	}
	if a >= 0 {
		want := "none"
		if info.subject != nil {
			want = string(info.subject.Digest)
		}
		if got := snap.subjectOf(a); got != want {
			bad(string(d), ProblemLinkDangling, "subject "+want, "recorded subject "+got)
		}
	}
}

// readGoodBlob reads blob d, whatever its size, from a copy whose bytes
// hash to d when it has one: a blob held both as a file and in a segment
// may have one copy damaged (reported apart as blob-digest-mismatch), and
// checkManifest is to parse the one Fetch serves, not the damaged one.
// Without a good copy it returns what the blob file (or else the segment)
// holds.
func (s *Store) readGoodBlob(d digest.Digest) ([]byte, error) {
	b, err := s.readBlob(d, -1) // the blob file first, then a segment
	if err != nil || d.Algorithm().FromBytes(b) == d {
		return b, err
	}
	r, _, ok, serr := s.segmentReader(d)
	if serr != nil || !ok {
		return b, nil
	}
	defer r.Close()
	if sb, rerr := io.ReadAll(r); rerr == nil && d.Algorithm().FromBytes(sb) == d {
		return sb, nil
	}
	return b, nil
}

// nodeList writes the children of a manifest as checkManifest compares
// them: digest(size), separated by spaces.
func nodeList(ds []ocispec.Descriptor) string {
	var b bytes.Buffer
	for _, d := range ds {
		fmt.Fprintf(&b, "%s(%d) ", d.Digest, d.Size)
	}
	return string(bytes.TrimSpace(b.Bytes()))
}

type hashResult struct {
	digest digest.Digest
	err    error
}

// hashBlobFiles lists blobs/<algorithm>/<encoded> a batch of names at a
// time and re-hashes the files on two workers (the machine's cores),
// calling fn (in the calling goroutine) for every file with its hash;
// files whose name is not a valid digest come with an empty digest and
// are not hashed. No list of every file is held: a cache of 30,000 packs
// has 120,000. Files come in no particular order.
func (s *Store) hashBlobFiles(ctx context.Context, fn func(file, hashResult)) error {
	type job struct {
		f file
		h hashResult
	}
	jobs, done := make(chan file), make(chan job)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var seg segmentReader
			defer seg.close()
			for f := range jobs {
				var d digest.Digest
				var err error
				if f.seg {
					d, err = seg.hash(ctx, f)
				} else {
					d, _, err = hashFile(ctx, f.path, f.digest.Algorithm())
				}
				done <- job{f, hashResult{digest: d, err: err}}
			}
		})
	}
	var listErr error
	go func() {
		defer func() {
			close(jobs)
			wg.Wait()
			close(done)
		}()
		listErr = s.listBlobFiles(ctx, func(f file) {
			if f.digest == "" || f.damaged != nil {
				done <- job{f: f}
				return
			}
			jobs <- f
		})
	}()
	for j := range done {
		fn(j.f, j.h)
	}
	if listErr != nil {
		return listErr
	}
	return ctx.Err()
}

// listBlobFiles calls fn for every file under blobs/ as blobFiles lists
// it, reading each folder a batch of names at a time.
func (s *Store) listBlobFiles(ctx context.Context, fn func(file)) error {
	algs, err := os.ReadDir(s.path(blobsDir))
	if err != nil {
		return fmt.Errorf("cache blobs: %w", err)
	}
	for _, alg := range algs {
		dir := s.path(blobsDir, alg.Name())
		if !alg.IsDir() {
			fn(file{path: dir})
			continue
		}
		if err := s.listAlgorithm(ctx, alg.Name(), dir, fn); err != nil {
			return err
		}
	}
	return s.listSegments(ctx, fn)
}

func (s *Store) listAlgorithm(ctx context.Context, alg, dir string, fn func(file)) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cache blobs: %w", err)
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(1024)
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			bf := file{path: filepath.Join(dir, e.Name())}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return fmt.Errorf("cache blobs: %w", err)
			}
			bf.size = fi.Size()
			if d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name()); fi.Mode().IsRegular() && d.Validate() == nil {
				bf.digest = d
			}
			fn(bf)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cache blobs: %w", err)
		}
	}
}
