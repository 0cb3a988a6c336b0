package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// Buckets of the index. Every name starting with "cache." is reserved to
// this package; other packages keep their own top-level buckets.
var (
	bucketMeta      = []byte("cache.meta")              // "version" → decimal index version
	bucketRefs      = []byte("cache.refs")              // ref → refRecord
	bucketArtifacts = []byte("cache.artifacts")         // manifest digest → artifactRecord
	bucketBlobs     = []byte("cache.blobs")             // digest → blobRecord (every node of every graph)
	bucketChildren  = []byte("cache.children")          // manifest digest → []ocispec.Descriptor
	bucketReferrers = []byte("cache.referrers")         // subject digest 0x00 referrer digest → ocispec.Descriptor
	bucketImports   = []byte("cache.imports")           // big-endian uint64 id → ImportRecord; id, uint32 n → its n-th ImportedArtifact
	bucketImportsBy = []byte("cache.imports.by-digest") // digest 0x00 big-endian id → empty

	allBuckets = [][]byte{bucketMeta, bucketRefs, bucketArtifacts, bucketBlobs,
		bucketChildren, bucketReferrers, bucketImports, bucketImportsBy}
)

// indexVersion is the newest version of the index and layout this stella
// reads. 2: blobs may be kept in segments (ADR 0030), which earlier
// versions do not read; a cache starts at version 1 and becomes 2 in the
// first transaction that may record a blob kept in a segment
// (markSegmentedTx).
const indexVersion = 2

// segmentedVersion is the first index version whose caches may hold
// segments.
const segmentedVersion = 2

type refRecord struct {
	Digest digest.Digest `json:"digest"`
}

// artifactRecord is one imported artifact: a manifest kept by its refs or
// by its referrer link (subject → it). It exists exactly while it is rooted.
type artifactRecord struct {
	MediaType    string              `json:"mediaType"`
	ArtifactType string              `json:"artifactType,omitempty"`
	Size         int64               `json:"size"`
	Kind         string              `json:"kind"`
	Refs         []string            `json:"refs,omitempty"`
	Subject      *ocispec.Descriptor `json:"subject,omitempty"`
	Annotations  map[string]string   `json:"annotations,omitempty"`
}

func (a *artifactRecord) descriptor(d digest.Digest) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: a.MediaType, Digest: d, Size: a.Size,
		ArtifactType: a.ArtifactType, Annotations: a.Annotations}
}

// blobRecord is one node of some graph. Refs counts the artifact records
// whose graph contains the node (each artifact once).
type blobRecord struct {
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	Refs      int64  `json:"refs"`
}

// appendJSON appends the record as json.Marshal writes it, without
// reflection when the media type needs no escaping (TestBlobRecordJSON):
// a pack of 10,000 files records 10,000 of them in one transaction.
func (br blobRecord) appendJSON(b []byte) []byte {
	for i := 0; i < len(br.MediaType); i++ {
		if c := br.MediaType[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(br) // cannot fail: strings and integers
			return append(b, j...)
		}
	}
	b = append(b, `{"size":`...)
	b = strconv.AppendInt(b, br.Size, 10)
	if br.MediaType != "" {
		b = append(b, `,"mediaType":"`...)
		b = append(b, br.MediaType...)
		b = append(b, '"')
	}
	b = append(b, `,"refs":`...)
	b = strconv.AppendInt(b, br.Refs, 10)
	return append(b, '}')
}

func initIndex(tx *bbolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("cache index: bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get([]byte("version")) == nil {
		// The oldest version that reads it: a cache becomes version 2
		// with its first segment (markSegmentedTx), so until then an
		// earlier stella (a rolled-back upgrade) still reads it.
		return meta.Put([]byte("version"), []byte(strconv.Itoa(segmentedVersion-1)))
	}
	return checkVersion(tx)
}

// checkVersion fails when the index was written by a newer version
// (ErrIndexVersion) or its version is not a number.
func checkVersion(tx *bbolt.Tx) error {
	v := tx.Bucket(bucketMeta).Get([]byte("version"))
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return fmt.Errorf("cache index version %q: %w", v, ErrIndexCorrupt)
	}
	if n > indexVersion {
		return fmt.Errorf("cache index version %d, this stella reads up to %d: %w", n, indexVersion, ErrIndexVersion)
	}
	return nil
}

// markSegmentedTx raises the index's version to segmentedVersion in tx,
// a transaction that may record blobs kept in segments: an earlier stella
// then refuses the cache (ErrIndexVersion) instead of finding those blobs
// missing. A segment file no record names is nothing to an earlier
// stella (it never looks in segments/), so the version need not be
// raised before the segment is renamed into place, and raising it costs
// no transaction of its own.
func markSegmentedTx(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if n, _ := strconv.Atoi(string(meta.Get([]byte("version")))); n >= segmentedVersion {
		return nil
	}
	return meta.Put([]byte("version"), []byte(strconv.Itoa(segmentedVersion)))
}

// indexReady reports whether the index has every bucket and a version
// this stella reads, in a read transaction: then Open needs no write
// transaction, whose commit costs two fdatasyncs, and every command opens
// the cache. A lock timeout and a newer version are returned; any other
// failure reports false, and initIndex's write transaction reports it.
func (s *Store) indexReady(ctx context.Context) (bool, error) {
	ready := false
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return nil
			}
		}
		if tx.Bucket(bucketMeta).Get([]byte("version")) == nil {
			return nil
		}
		if err := checkVersion(tx); err != nil {
			return err
		}
		ready = true
		return nil
	})
	var lockErr *LockError
	if errors.As(err, &lockErr) || errors.Is(err, ErrIndexVersion) || ctx.Err() != nil {
		return false, err
	}
	return ready, nil
}

// getJSON reads key of bucket into v; it reports false when absent.
func getJSON(tx *bbolt.Tx, bucket []byte, key string, v any) (bool, error) {
	b := tx.Bucket(bucket)
	if b == nil {
		return false, fmt.Errorf("bucket %s missing: %w", bucket, ErrIndexCorrupt)
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%s %s: %w: %v", bucket, key, ErrIndexCorrupt, err)
	}
	return true, nil
}

func putJSON(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), raw)
}

func linkKey(subject, referrer digest.Digest) []byte {
	return []byte(string(subject) + "\x00" + string(referrer))
}

// links returns the referrer links of subject, sorted by referrer digest.
func links(tx *bbolt.Tx, subject digest.Digest) ([]ocispec.Descriptor, error) {
	prefix := []byte(string(subject) + "\x00")
	var out []ocispec.Descriptor
	c := tx.Bucket(bucketReferrers).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var d ocispec.Descriptor
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("referrer link %q: %w: %v", k, ErrIndexCorrupt, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func hasLink(tx *bbolt.Tx, subject, referrer digest.Digest) bool {
	return tx.Bucket(bucketReferrers).Get(linkKey(subject, referrer)) != nil
}

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// importEntryKey is the key of the n-th artifact of import record id. A
// record's header is under idKey(id); its artifacts follow it in key order.
// (Records written before this layout hold their artifacts in the header.)
func importEntryKey(id uint64, n int) []byte {
	return binary.BigEndian.AppendUint32(idKey(id), uint32(n))
}

// graphNodes returns the digests of the nodes of the graph rooted at root
// (root included), following the recorded children.
func graphNodes(tx *bbolt.Tx, root digest.Digest) ([]digest.Digest, error) {
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	for i := 0; i < len(queue); i++ {
		d := queue[i]
		var br blobRecord
		ok, err := getJSON(tx, bucketBlobs, string(d), &br)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("blob record %s (graph of %s) missing: %w", d, root, ErrIndexCorrupt)
		}
		if !isManifest(br.MediaType) {
			continue
		}
		var children []ocispec.Descriptor
		ok, err = getJSON(tx, bucketChildren, string(d), &children)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("children of manifest %s missing: %w", d, ErrIndexCorrupt)
		}
		for _, c := range children {
			if !seen[c.Digest] {
				seen[c.Digest] = true
				queue = append(queue, c.Digest)
			}
		}
	}
	return queue, nil
}

// addRefcounts adds delta to the refcount of every node of the graph.
func addRefcounts(tx *bbolt.Tx, nodes []digest.Digest, delta int64) error {
	for _, d := range nodes {
		var br blobRecord
		ok, err := getJSON(tx, bucketBlobs, string(d), &br)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("blob record %s missing: %w", d, ErrIndexCorrupt)
		}
		br.Refs += delta
		if br.Refs < 0 {
			return fmt.Errorf("blob %s refcount below zero: %w", d, ErrIndexCorrupt)
		}
		if err := putJSON(tx, bucketBlobs, string(d), br); err != nil {
			return err
		}
	}
	return nil
}

// unref removes ref from the artifact it names (the ref entry itself is
// the caller's) and drops the artifact when nothing roots it any more.
func unref(tx *bbolt.Tx, ref string, d digest.Digest) error {
	var ar artifactRecord
	ok, err := getJSON(tx, bucketArtifacts, string(d), &ar)
	if err != nil {
		return err
	}
	if !ok {
		return nil // a dangling ref: nothing more to undo
	}
	ar.Refs = slices.DeleteFunc(ar.Refs, func(r string) bool { return r == ref })
	if rooted(tx, d, &ar) {
		return putJSON(tx, bucketArtifacts, string(d), ar)
	}
	return drop(tx, d)
}

// rooted reports whether an artifact is kept by a ref or its referrer link.
func rooted(tx *bbolt.Tx, d digest.Digest, ar *artifactRecord) bool {
	return len(ar.Refs) > 0 || (ar.Subject != nil && hasLink(tx, ar.Subject.Digest, d))
}

// drop removes an artifact record, decrements the refcounts of its graph,
// removes its referrer links and, in cascade, the referrers no longer
// rooted. Blobs and blob records stay for gc.
func drop(tx *bbolt.Tx, d digest.Digest) error {
	nodes, err := graphNodes(tx, d)
	if err != nil {
		return err
	}
	if err := addRefcounts(tx, nodes, -1); err != nil {
		return err
	}
	if err := tx.Bucket(bucketArtifacts).Delete([]byte(d)); err != nil {
		return err
	}
	refs, err := links(tx, d)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := tx.Bucket(bucketReferrers).Delete(linkKey(d, r.Digest)); err != nil {
			return err
		}
		var rr artifactRecord
		ok, err := getJSON(tx, bucketArtifacts, string(r.Digest), &rr)
		if err != nil {
			return err
		}
		if ok && !rooted(tx, r.Digest, &rr) {
			if err := drop(tx, r.Digest); err != nil {
				return err
			}
		}
	}
	return nil
}

// mark returns every node reachable from the roots: the digests of all
// refs and all referrer links, following recorded children. Missing
// records are skipped here (verify reports them).
func mark(tx *bbolt.Tx) map[digest.Digest]bool {
	live, _ := markHeld(tx, nil)
	return live
}

// markHeld is mark, then a mark from the held digests: held has the nodes
// only a hold keeps (reachable from held, not from the roots).
func markHeld(tx *bbolt.Tx, holds []digest.Digest) (live, held map[digest.Digest]bool) {
	live = map[digest.Digest]bool{}
	held = map[digest.Digest]bool{}
	var queue []digest.Digest
	push := func(d digest.Digest) {
		if !live[d] && !held[d] {
			live[d] = true
			queue = append(queue, d)
		}
	}
	_ = tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
		var r refRecord
		if json.Unmarshal(v, &r) == nil {
			push(r.Digest)
		}
		return nil
	})
	_ = tx.Bucket(bucketReferrers).ForEach(func(k, v []byte) error {
		if i := bytes.IndexByte(k, 0); i >= 0 {
			push(digest.Digest(k[i+1:]))
		}
		return nil
	})
	children := tx.Bucket(bucketChildren)
	walk := func(from int) {
		for i := from; i < len(queue); i++ {
			raw := children.Get([]byte(queue[i]))
			if raw == nil {
				continue
			}
			var cs []ocispec.Descriptor
			if json.Unmarshal(raw, &cs) != nil {
				continue
			}
			for _, c := range cs {
				push(c.Digest)
			}
		}
	}
	walk(0)
	rooted := len(queue)
	for _, d := range holds {
		push(d)
	}
	walk(rooted)
	for _, d := range queue[rooted:] {
		delete(live, d)
		held[d] = true
	}
	return live, held
}

// reach returns the digests reachable from roots, following recorded
// children: what holds keep.
func reach(tx *bbolt.Tx, roots []digest.Digest) map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	queue := slices.Clone(roots)
	children := tx.Bucket(bucketChildren)
	for i := 0; i < len(queue); i++ {
		d := queue[i]
		if out[d] {
			continue
		}
		out[d] = true
		raw := children.Get([]byte(d))
		if raw == nil {
			continue
		}
		var cs []ocispec.Descriptor
		if json.Unmarshal(raw, &cs) != nil {
			continue
		}
		for _, c := range cs {
			queue = append(queue, c.Digest)
		}
	}
	return out
}
