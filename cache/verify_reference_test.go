package cache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// refSnapshot is what verifyReference held of the index, and no more: of an
// artifact record its refs and subject, of a children record each
// child's digest and size (annotations, media types and the like are
// dropped once a record has decoded whole), so a cache of 30,000 packs is
// checked in tens of MiB rather than hundreds.
type refSnapshot struct {
	refs      map[string]digest.Digest
	artifacts map[digest.Digest]artifactRecord // Refs and Subject (its digest) only
	blobs     map[digest.Digest]blobRecord
	children  map[digest.Digest][]refNode
	links     []refLink
	live      map[digest.Digest]bool
}

// verifyReference is Verify as it was before its cross-check was made
// compact (ADR 0026, verify and list): maps of digest strings for every
// blob, artifact and children record, and every blob file listed before
// it is hashed. It is kept, in tests only, as the reference Verify's
// reports are compared with (TestVerifyFindsWhatItFoundBefore).
//
// It knows segments (ADR 0030) in the plainest way, apart from Verify's
// code for them: a segment entry's blob is read at its offset with a
// plain read of the segment file and hashed, a manifest is parsed from a
// copy of it that hashed to its digest, a blob held twice (a file and a
// segment entry) counts once in Blobs, and a segment whose entries cannot
// be read is reported as Verify reports it (segment-damaged, its blobs
// then missing).
func (s *Store) verifyReference(ctx context.Context, opts VerifyOptions) (Report, error) {
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return Report{}, err
	}
	defer release()

	var r Report
	add := func(sev Severity, object, problem, expected, actual string) {
		r.Problems = append(r.Problems, Problem{Severity: sev, Source: "cache", Object: object,
			Problem: problem, Expected: expected, Actual: actual})
	}
	bad := func(object, problem, expected, actual string) { add(SeverityError, object, problem, expected, actual) }

	snap, err := s.refSnapshotOf(ctx, bad)
	if err != nil {
		return Report{}, err
	}
	r.Artifacts, r.Refs = len(snap.artifacts), len(snap.refs)

	// Blob files: hash every one.
	files, err := s.blobFiles(ctx)
	if err != nil {
		return Report{}, err
	}
	good := map[digest.Digest]file{} // a copy whose content matches its name
	present := map[digest.Digest]int64{}
	counted := map[digest.Digest]bool{} // a blob held twice counts once
	hashed := s.hashAll(ctx, files)
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	for i, f := range files {
		if f.damaged != nil {
			// A segment whose entries cannot be read: reported as Verify
			// does, and its blobs then count as missing below.
			bad(s.rel(f.path), ProblemSegmentDamaged, "", f.damaged.Error())
			continue
		}
		if f.digest == "" {
			add(SeverityWarning, s.rel(f.path), ProblemStrayFile, "", "")
			continue
		}
		first := !counted[f.digest]
		counted[f.digest] = true
		if first {
			r.Blobs++
		}
		r.Bytes += f.size
		present[f.digest] = f.size
		h := hashed[i]
		switch {
		case h.err != nil:
			bad(string(f.digest), ProblemBlobUnreadable, "", h.err.Error())
		case h.digest != f.digest:
			actual := string(h.digest)
			if f.seg {
				actual += fmt.Sprintf(" (its bytes in %s, at %d)", s.rel(f.path), f.off)
			}
			bad(string(f.digest), ProblemBlobDigest, string(f.digest), actual)
		default:
			good[f.digest] = f
		}
		if !snap.live[f.digest] {
			if first {
				r.UnreferencedBlobs++
			}
			r.UnreferencedBytes += f.size
		}
	}

	// Blob records against files.
	for _, d := range sortedKeys(snap.blobs) {
		br := snap.blobs[d]
		size, ok := present[d]
		if !ok {
			bad(string(d), ProblemBlobMissing, "file "+s.relBlobPath(d), "none")
			continue
		}
		if size != br.Size {
			bad(string(d), ProblemBlobSize, strconv.FormatInt(br.Size, 10), strconv.FormatInt(size, 10))
		}
	}

	// Refs, artifacts and links agree with each other.
	for _, ref := range sortedKeys(snap.refs) {
		d := snap.refs[ref]
		ar, ok := snap.artifacts[d]
		if !ok {
			bad(ref, ProblemRefDangling, "artifact "+string(d), "none")
			continue
		}
		if !slices.Contains(ar.Refs, ref) {
			bad(ref, ProblemRefMismatch, "artifact "+string(d)+" lists the ref", "it does not")
		}
	}
	linked := map[digest.Digest]digest.Digest{}
	for _, l := range snap.links {
		linked[l.referrer] = l.subject
		ar, ok := snap.artifacts[l.referrer]
		if !ok {
			bad(string(l.referrer), ProblemLinkDangling, "artifact record", "none")
			continue
		}
		if ar.Subject == nil || ar.Subject.Digest != l.subject {
			bad(string(l.referrer), ProblemLinkDangling, "subject "+string(l.subject), "manifest subject "+refSubjectOf(ar))
		}
	}

	// Graphs: complete, and refcounts as a mark from every artifact says.
	want := map[digest.Digest]int64{}
	for _, d := range sortedKeys(snap.artifacts) {
		ar := snap.artifacts[d]
		for _, ref := range ar.Refs {
			if snap.refs[ref] != d {
				bad(ref, ProblemRefMismatch, string(d), string(snap.refs[ref]))
			}
		}
		if len(ar.Refs) == 0 && (ar.Subject == nil || linked[d] != ar.Subject.Digest) {
			bad(string(d), ProblemArtifactUnrooted, "a ref or a referrer link", "none")
		}
		for _, n := range snap.graph(d, bad) {
			want[n]++
		}
	}
	for _, d := range sortedKeys(want) {
		br, ok := snap.blobs[d]
		if !ok {
			bad(string(d), ProblemBlobRecord, "blob record", "none")
			continue
		}
		if br.Refs != want[d] {
			bad(string(d), ProblemRefcount, strconv.FormatInt(want[d], 10), strconv.FormatInt(br.Refs, 10))
		}
	}
	for _, d := range sortedKeys(snap.blobs) {
		if br := snap.blobs[d]; want[d] == 0 && br.Refs != 0 {
			bad(string(d), ProblemRefcount, "0", strconv.FormatInt(br.Refs, 10))
		}
	}

	// Recorded children and subjects against the manifests themselves.
	for _, d := range sortedKeys(snap.children) {
		g, ok := good[d]
		if !ok {
			continue // reported above as missing or corrupt
		}
		s.refCheckManifest(d, g, snap, bad)
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

// refSnapshot copies the index into memory in one short read transaction.
func (s *Store) refSnapshotOf(ctx context.Context, bad func(object, problem, expected, actual string)) (*refSnapshot, error) {
	snap := &refSnapshot{refs: map[string]digest.Digest{}, artifacts: map[digest.Digest]artifactRecord{},
		blobs: map[digest.Digest]blobRecord{}, children: map[digest.Digest][]refNode{}}
	decode := func(bucket []byte, k, v []byte, into any) bool {
		if err := json.Unmarshal(v, into); err != nil {
			bad(string(bucket)+"/"+string(k), ProblemRecord, "json", err.Error())
			return false
		}
		return true
	}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %s missing: %w", b, ErrIndexCorrupt)
			}
		}
		snap.live = mark(tx)
		_ = tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
			var r refRecord
			if decode(bucketRefs, k, v, &r) {
				snap.refs[string(k)] = r.Digest
			}
			return nil
		})
		_ = tx.Bucket(bucketArtifacts).ForEach(func(k, v []byte) error {
			var ar artifactRecord
			if decode(bucketArtifacts, k, v, &ar) {
				kept := artifactRecord{Refs: ar.Refs}
				if ar.Subject != nil {
					kept.Subject = &ocispec.Descriptor{Digest: ar.Subject.Digest}
				}
				snap.artifacts[digest.Digest(k)] = kept
			}
			return nil
		})
		mediaTypes := map[string]string{} // a few, each held once
		_ = tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			var br blobRecord
			if decode(bucketBlobs, k, v, &br) {
				if mt, ok := mediaTypes[br.MediaType]; ok {
					br.MediaType = mt
				} else {
					mediaTypes[br.MediaType] = br.MediaType
				}
				snap.blobs[digest.Digest(k)] = br
			}
			return nil
		})
		_ = tx.Bucket(bucketChildren).ForEach(func(k, v []byte) error {
			var cs []ocispec.Descriptor
			if decode(bucketChildren, k, v, &cs) {
				snap.children[digest.Digest(k)] = refNodes(cs)
			}
			return nil
		})
		_ = tx.Bucket(bucketReferrers).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				bad(string(bucketReferrers)+"/"+string(k), ProblemRecord, "subject\\x00referrer", "no separator")
				return nil
			}
			snap.links = append(snap.links, refLink{subject: digest.Digest(k[:i]), referrer: digest.Digest(k[i+1:])})
			return nil
		})
		imports := tx.Bucket(bucketImports)
		return tx.Bucket(bucketImportsBy).ForEach(func(k, v []byte) error {
			if len(k) < 9 || imports.Get(k[len(k)-8:]) == nil {
				bad(string(bytes.TrimRight(k, "\x00")), ProblemImportRecord, "import record", "none")
			}
			return nil
		})
	})
	return snap, err
}

// graph returns the nodes of an artifact's graph from the refSnapshot,
// reporting holes.
func (snap *refSnapshot) graph(root digest.Digest, bad func(object, problem, expected, actual string)) []digest.Digest {
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	for i := 0; i < len(queue); i++ {
		d := queue[i]
		br, ok := snap.blobs[d]
		if !ok {
			continue // reported with the refcounts
		}
		if !isManifest(br.MediaType) {
			continue
		}
		cs, ok := snap.children[d]
		if !ok {
			bad(string(d), ProblemGraph, "children record of manifest", "none")
			continue
		}
		for _, c := range cs {
			if !seen[c.digest] {
				seen[c.digest] = true
				queue = append(queue, c.digest)
			}
		}
	}
	return queue
}

// refCheckManifest checks the children record of manifest d against the
// copy of it that hashed to its digest, g: its blob file, or its entry in
// a segment.
func (s *Store) refCheckManifest(d digest.Digest, g file, snap *refSnapshot, bad func(object, problem, expected, actual string)) {
	br := snap.blobs[d]
	var b []byte
	var err error
	if g.seg {
		b, err = readSegmentEntry(g)
	} else {
		b, err = os.ReadFile(g.path)
	}
	if err != nil {
		bad(string(d), ProblemBlobUnreadable, "", err.Error())
		return
	}
	info, err := parseManifest(ocispec.Descriptor{MediaType: br.MediaType, Digest: d, Size: br.Size}, b)
	if err != nil {
		bad(string(d), ProblemManifest, br.MediaType, err.Error())
		return
	}
	if got, rec := refNodeList(refNodes(info.children)), refNodeList(snap.children[d]); got != rec {
		bad(string(d), ProblemGraph, got, rec)
	}
	if ar, ok := snap.artifacts[d]; ok {
		want := "none"
		if info.subject != nil {
			want = string(info.subject.Digest)
		}
		if got := refSubjectOf(ar); got != want {
			bad(string(d), ProblemLinkDangling, "subject "+want, "recorded subject "+got)
		}
	}
}

func (s *Store) hashAll(ctx context.Context, files []file) []hashResult {
	out := make([]hashResult, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range next {
				var d digest.Digest
				var err error
				if files[i].seg {
					d, err = hashSegmentEntry(ctx, files[i])
				} else {
					d, _, err = hashFile(ctx, files[i].path, files[i].digest.Algorithm())
				}
				out[i] = hashResult{digest: d, err: err}
			}
		})
	}
	for i, f := range files {
		if f.digest == "" || f.damaged != nil {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// readSegmentEntry reads the blob of segment entry f: its size bytes at
// its offset in the segment file, with plain reads (not the cache's own
// segment reader, which Verify uses).
func readSegmentEntry(f file) ([]byte, error) {
	sf, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	b := make([]byte, f.size)
	if _, err := sf.ReadAt(b, f.off); err != nil {
		return nil, err
	}
	return b, nil
}

// hashSegmentEntry hashes the blob of segment entry f (segments hold
// sha256 blobs only).
func hashSegmentEntry(ctx context.Context, f file) (digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	b, err := readSegmentEntry(f)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return digest.NewDigestFromBytes(digest.SHA256, sum[:]), nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type refNode struct {
	digest digest.Digest
	size   int64
}

type refLink struct {
	subject, referrer digest.Digest
}

func refNodes(ds []ocispec.Descriptor) []refNode {
	out := make([]refNode, len(ds))
	for i, d := range ds {
		out[i] = refNode{digest: d.Digest, size: d.Size}
	}
	return out
}

func refNodeList(ns []refNode) string {
	var b bytes.Buffer
	for _, n := range ns {
		fmt.Fprintf(&b, "%s(%d) ", n.digest, n.size)
	}
	return string(bytes.TrimSpace(b.Bytes()))
}

func refSubjectOf(ar artifactRecord) string {
	if ar.Subject == nil {
		return "none"
	}
	return string(ar.Subject.Digest)
}
