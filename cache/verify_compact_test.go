package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

// compactFixture is a cache of four packs (a config shared by all, a
// layer shared by all, one layer each), a signature referrer of the first
// two and an index of the last two, with the digests the damages need.
// In its segmented form (newSegmentFixture) it also holds two packs of
// many small files, each imported alone, whose blobs are kept in a segment
// of their own: segPacks[i] and its layers segLayers[i] in segs[i].
type compactFixture struct {
	s                        *Store
	packs, layers            []digest.Digest
	config, shared, sig, idx digest.Digest

	segPacks  []digest.Digest
	segLayers [][]digest.Digest
	segs      []string                 // paths of the segments
	segBlobs  map[digest.Digest][]byte // the bytes of every segmented blob
}

// segmentedFiles is how many small layers a pack of the segmented fixture
// has: more than segmentMin, so that its import writes a segment.
const segmentedFiles = 40

func newCompactFixture(t *testing.T) compactFixture { return newFixture(t, false) }

// newSegmentFixture is the fixture with its two segmented packs. It
// checks that each was written as a segment: a new .seg file in segments/
// holding the bytes of the pack's manifest and layers, none of which is a
// blob file.
func newSegmentFixture(t *testing.T) compactFixture { return newFixture(t, true) }

func newFixture(t *testing.T, segmented bool) compactFixture {
	t.Helper()
	ctx := context.Background()
	src := memory.New()
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := src.Push(ctx, d, bytesReader(b)); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		return d
	}
	manifest := func(artifactType string, subject *ocispec.Descriptor, cfg ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
		var ls []string
		for _, l := range layers {
			ls = append(ls, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, l.MediaType, l.Digest, l.Size))
		}
		sub := ""
		if subject != nil {
			sub = fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":%q,"size":%d}`, subject.MediaType, subject.Digest, subject.Size)
		}
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[%s]%s}`,
			ocispec.MediaTypeImageManifest, artifactType, cfg.MediaType, cfg.Digest, cfg.Size, strings.Join(ls, ","), sub)
		return push(ocispec.MediaTypeImageManifest, []byte(m))
	}
	cfg := push("application/vnd.example.config.v1+json", []byte(`{}`))
	shared := push("application/vnd.example.layer.v1", []byte("shared layer"))
	f := compactFixture{config: cfg.Digest, shared: shared.Digest}
	var arts []Artifact
	var descs []ocispec.Descriptor
	for i := range 4 {
		layer := push("application/vnd.example.layer.v1", []byte(fmt.Sprintf("layer %d", i)))
		m := manifest("application/vnd.example.pack.v1", nil, cfg, shared, layer)
		f.packs, f.layers = append(f.packs, m.Digest), append(f.layers, layer.Digest)
		descs = append(descs, m)
		arts = append(arts, Artifact{Descriptor: m, Kind: "pack", Ref: fmt.Sprintf("demo:1.0.%d", i)})
	}
	for i := range 2 {
		body := push("application/vnd.example.signature.v1", []byte(fmt.Sprintf("signature %d", i)))
		sig := manifest("application/vnd.example.signature.v1", &descs[i], cfg, body)
		if i == 0 {
			f.sig = sig.Digest
		}
		arts = append(arts, Artifact{Descriptor: sig, Kind: "signature"})
	}
	idx := push(ocispec.MediaTypeImageIndex, []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d},{"mediaType":%q,"digest":%q,"size":%d}]}`,
		ocispec.MediaTypeImageIndex, descs[2].MediaType, descs[2].Digest, descs[2].Size, descs[3].MediaType, descs[3].Digest, descs[3].Size)))
	f.idx = idx.Digest
	arts = append(arts, Artifact{Descriptor: idx, Kind: "pack", Ref: "bundle:1"})
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, src, arts, ImportRecord{From: "test"}, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	f.s = s
	if !segmented {
		return f
	}
	f.segBlobs = map[digest.Digest][]byte{}
	for i := range 2 {
		var layers []ocispec.Descriptor
		var ds []digest.Digest
		for j := range segmentedFiles {
			b := []byte(fmt.Sprintf("pack %d file %d: %s", i, j, strings.Repeat("x", j%5*100)))
			l := push("application/vnd.example.layer.v1", b)
			layers, ds = append(layers, l), append(ds, l.Digest)
			f.segBlobs[l.Digest] = b
		}
		m := manifest("application/vnd.example.pack.v1", nil, cfg, layers...)
		mb, err := content.FetchAll(ctx, src, m)
		if err != nil {
			t.Fatal(err)
		}
		f.segBlobs[m.Digest] = mb
		f.segPacks, f.segLayers = append(f.segPacks, m.Digest), append(f.segLayers, ds)
		before := segmentPaths(t, s)
		art := Artifact{Descriptor: m, Kind: "pack", Ref: fmt.Sprintf("many:%d", i)}
		if _, err := s.Import(ctx, src, []Artifact{art}, ImportRecord{From: "test"}, ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		after := segmentPaths(t, s)
		if len(after) != len(before)+1 {
			t.Fatalf("segments after importing pack %d: %v, want one more than %v", i, after, before)
		}
		seg := slices.DeleteFunc(after, func(p string) bool { return slices.Contains(before, p) })[0]
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range append([]digest.Digest{m.Digest}, ds...) {
			if !bytes.Contains(b, f.segBlobs[d]) {
				t.Fatalf("blob %s is not in segment %s", d, seg)
			}
			if _, err := os.Stat(f.blobFile(d)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("blob %s of a segment is a file too (%v)", d, err)
			}
		}
		f.segs = append(f.segs, seg)
	}
	return f
}

// segmentPaths lists the .seg files of a cache, sorted.
func segmentPaths(t *testing.T, s *Store) []string {
	t.Helper()
	ps, err := filepath.Glob(filepath.Join(s.root, segmentsDir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func (f compactFixture) put(t *testing.T, bucket []byte, key, value string) {
	t.Helper()
	if err := f.s.update(context.Background(), func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), []byte(value))
	}); err != nil {
		t.Fatal(err)
	}
}

func (f compactFixture) del(t *testing.T, bucket []byte, key string) {
	t.Helper()
	if err := f.s.update(context.Background(), func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Delete([]byte(key))
	}); err != nil {
		t.Fatal(err)
	}
}

// edit replaces old by new in the record of key, if it has old (an
// earlier damage may have changed it: then the record is left as it is).
func (f compactFixture) edit(t *testing.T, bucket []byte, key, old, new string) {
	t.Helper()
	if err := f.s.update(context.Background(), func(tx *bbolt.Tx) error {
		v := string(tx.Bucket(bucket).Get([]byte(key)))
		if !strings.Contains(v, old) {
			return nil
		}
		return tx.Bucket(bucket).Put([]byte(key), []byte(strings.Replace(v, old, new, 1)))
	}); err != nil {
		t.Fatal(err)
	}
}

func (f compactFixture) write(t *testing.T, rel string, b []byte) {
	t.Helper()
	p := filepath.Join(f.s.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f compactFixture) blobFile(d digest.Digest) string { return f.s.blobPath(d) }

// compactDamage is a way to damage a cache, by name.
type compactDamage struct {
	name   string
	damage func(t *testing.T, f compactFixture)
}

// compactDamages are damages of every kind Verify reports, and of the
// records it holds in its compact form (digests with no blob record, empty
// subjects, refs that name nothing).
var compactDamages = []compactDamage{
	{"clean", func(t *testing.T, f compactFixture) {}},
	{"flipped layer", func(t *testing.T, f compactFixture) { f.write(t, f.s.relBlobPath(f.layers[0]), []byte("layer X")) }},
	{"flipped manifest", func(t *testing.T, f compactFixture) { f.write(t, f.s.relBlobPath(f.packs[1]), []byte("{}")) }},
	{"flipped index", func(t *testing.T, f compactFixture) { f.write(t, f.s.relBlobPath(f.idx), []byte("{}")) }},
	{"deleted shared layer", func(t *testing.T, f compactFixture) { _ = os.Remove(f.blobFile(f.shared)) }},
	{"deleted manifest", func(t *testing.T, f compactFixture) { _ = os.Remove(f.blobFile(f.packs[0])) }},
	{"manifest replaced by a folder", func(t *testing.T, f compactFixture) {
		p := f.blobFile(f.packs[2])
		_ = os.Remove(p)
		_ = os.Mkdir(p, 0o755)
	}},
	{"unreadable layer", func(t *testing.T, f compactFixture) { _ = os.Chmod(f.blobFile(f.layers[3]), 0) }},
	{"truncated layer", func(t *testing.T, f compactFixture) { _ = os.Truncate(f.blobFile(f.layers[2]), 3) }},
	{"refcount up", func(t *testing.T, f compactFixture) { f.edit(t, bucketBlobs, string(f.shared), `"refs":`, `"refs":3`) }},
	{"refcount of no graph", func(t *testing.T, f compactFixture) {
		f.put(t, bucketBlobs, string(digest.FromString("nobody")), `{"size":6,"refs":2}`)
		f.write(t, f.s.relBlobPath(digest.FromString("nobody")), []byte("nobody"))
	}},
	{"blob record missing", func(t *testing.T, f compactFixture) { f.del(t, bucketBlobs, string(f.layers[1])) }},
	{"manifest's blob record missing", func(t *testing.T, f compactFixture) { f.del(t, bucketBlobs, string(f.packs[3])) }},
	{"children missing", func(t *testing.T, f compactFixture) { f.del(t, bucketChildren, string(f.packs[2])) }},
	{"children of no blob record", func(t *testing.T, f compactFixture) {
		f.del(t, bucketBlobs, string(f.packs[1]))
	}},
	{"child dropped", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketChildren, string(f.packs[0]), `"digest":"`+string(f.layers[0])+`"`, `"digest":"`+string(f.layers[1])+`"`)
	}},
	{"child unknown", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketChildren, string(f.packs[2]), `"digest":"`+string(f.layers[2])+`"`, `"digest":"sha256:unknown"`)
	}},
	{"child size", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketChildren, string(f.packs[1]), `"size":7`, `"size":8`)
	}},
	{"dangling ref", func(t *testing.T, f compactFixture) {
		f.put(t, bucketRefs, "ghost:1", `{"digest":"`+string(f.layers[0])+`"}`)
	}},
	{"ref to nothing known", func(t *testing.T, f compactFixture) { f.put(t, bucketRefs, "ghost:2", `{"digest":"sha256:nothing"}`) }},
	{"ref to empty", func(t *testing.T, f compactFixture) { f.put(t, bucketRefs, "ghost:3", `{}`) }},
	{"ref moved", func(t *testing.T, f compactFixture) {
		f.put(t, bucketRefs, "demo:1.0.0", `{"digest":"`+string(f.packs[1])+`"}`)
	}},
	{"ref removed", func(t *testing.T, f compactFixture) { f.del(t, bucketRefs, "demo:1.0.3") }},
	{"artifact lists an unknown ref", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketArtifacts, string(f.packs[0]), `"demo:1.0.0"`, `"demo:1.0.0","other:1"`)
	}},
	{"artifact record missing", func(t *testing.T, f compactFixture) { f.del(t, bucketArtifacts, string(f.packs[1])) }},
	{"artifact of no blob record", func(t *testing.T, f compactFixture) {
		f.put(t, bucketArtifacts, "sha256:stranger", `{"mediaType":"x","size":1,"kind":"pack","refs":["stranger:1"]}`)
		f.put(t, bucketRefs, "stranger:1", `{"digest":"sha256:stranger"}`)
	}},
	{"unrooted with empty subject", func(t *testing.T, f compactFixture) {
		f.put(t, bucketArtifacts, string(f.layers[3]), `{"mediaType":"x","size":1,"kind":"pack","subject":{"mediaType":"","digest":"","size":0}}`)
	}},
	{"unrooted", func(t *testing.T, f compactFixture) {
		f.put(t, bucketArtifacts, string(f.layers[3]), `{"mediaType":"x","size":1,"kind":"pack"}`)
	}},
	{"subject changed", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketArtifacts, string(f.sig), string(f.packs[0]), string(f.packs[3]))
	}},
	{"subject dropped", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketArtifacts, string(f.sig), `"subject"`, `"was"`)
	}},
	{"link removed", func(t *testing.T, f compactFixture) {
		f.del(t, bucketReferrers, string(f.packs[0])+"\x00"+string(f.sig))
	}},
	{"link dangling", func(t *testing.T, f compactFixture) {
		f.put(t, bucketReferrers, string(f.packs[2])+"\x00"+string(f.layers[2]), `{}`)
		f.put(t, bucketReferrers, string(f.packs[2])+"\x00sha256:gone", `{}`)
	}},
	{"link to the wrong subject", func(t *testing.T, f compactFixture) {
		f.put(t, bucketReferrers, string(f.packs[3])+"\x00"+string(f.sig), `{}`)
	}},
	{"link without separator", func(t *testing.T, f compactFixture) { f.put(t, bucketReferrers, "nosep", `{}`) }},
	{"bad json", func(t *testing.T, f compactFixture) {
		f.put(t, bucketRefs, "broken:1", `{`)
		f.put(t, bucketArtifacts, string(f.packs[2]), `[`)
		f.put(t, bucketBlobs, string(f.layers[2]), `nope`)
		f.put(t, bucketChildren, string(f.packs[3]), `{"a":1}`)
	}},
	{"import record missing", func(t *testing.T, f compactFixture) {
		f.put(t, bucketImportsBy, string(f.packs[0])+"\x00\x00\x00\x00\x00\x00\x00\x00\x63", "")
		f.put(t, bucketImportsBy, "short", "")
	}},
	{"stray files", func(t *testing.T, f compactFixture) {
		f.write(t, "blobs/sha256/not-a-digest", []byte("x"))
		f.write(t, "blobs/sha256/"+strings.Repeat("a", 64)+"/inner", []byte("x"))
		f.write(t, "blobs/md5/abc", []byte("x"))
		f.write(t, "blobs/loose", []byte("x"))
	}},
	{"leftovers", func(t *testing.T, f compactFixture) {
		f.write(t, "ingest/.stella-tmp-abc-123", []byte("xyz"))
		f.write(t, "ingest/gone-import/a", []byte("xy"))
		f.write(t, tempPrefix+"index.db-1", []byte("x"))
	}},
	{"file of no record", func(t *testing.T, f compactFixture) {
		f.write(t, f.s.relBlobPath(digest.FromString("loose")), []byte("loose"))
		f.write(t, f.s.relBlobPath(digest.FromString("wrong")), []byte("not wrong"))
	}},
	{"manifest that does not parse", func(t *testing.T, f compactFixture) {
		d := digest.FromString("not a manifest")
		f.write(t, f.s.relBlobPath(d), []byte("not a manifest"))
		f.put(t, bucketBlobs, string(d), `{"size":14,"mediaType":"`+ocispec.MediaTypeImageManifest+`","refs":0}`)
		f.put(t, bucketChildren, string(d), `[]`)
	}},
	{"children of a file with no record", func(t *testing.T, f compactFixture) {
		b, err := os.ReadFile(f.blobFile(f.packs[3]))
		if err != nil {
			t.Fatal(err)
		}
		d := digest.FromBytes(append(b, ' '))
		f.write(t, f.s.relBlobPath(d), append(b, ' '))
		f.put(t, bucketChildren, string(d), `[]`)
	}},
}

// flipIn flips the byte at of segmented blob d's bytes in segment file
// path, if its bytes are still there (an earlier damage may have changed
// them or the file: then it is left as it is).
func (f compactFixture) flipIn(t *testing.T, path string, d digest.Digest, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, f.segBlobs[d])
	if i < 0 {
		return
	}
	b[i+at] ^= 1
	writeInPlace(t, path, b)
}

// flipAt flips the byte off bytes from the end of file path, if it is
// still there and that long.
func flipAt(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(b) < off {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-off] ^= 1
	writeInPlace(t, path, b)
}

// writeInPlace writes b over file path, whose mode is read-only (a
// segment is).
func writeInPlace(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// segBlob is a blob of a segment writeSegment writes: its entry's digest
// and the bytes it holds (which need not match).
type segBlob struct {
	d digest.Digest
	b []byte
}

// writeSegment writes blobs into segments/ as a segment of their own,
// laid out as ADR 0030 says and written here byte by byte (not by the
// cache's segment writer): the blobs one after another, their entries
// (sha256, offset, size) sorted by digest, then the footer (sha256 of the
// entries, their count, the magic); the name is the entries' sha256.
// table, when not nil, changes the entries before their sha256 is taken.
func (f compactFixture) writeSegment(t *testing.T, blobs []segBlob, table func(entries []byte)) {
	t.Helper()
	var data, entries []byte
	blobs = slices.Clone(blobs)
	slices.SortFunc(blobs, func(a, b segBlob) int { return strings.Compare(string(a.d), string(b.d)) })
	for _, bl := range blobs {
		sum, err := hex.DecodeString(bl.d.Encoded())
		if err != nil || len(sum) != 32 {
			t.Fatalf("%s: not a sha256 digest", bl.d)
		}
		entries = append(entries, sum...)
		entries = binary.BigEndian.AppendUint64(entries, uint64(len(data)))
		entries = binary.BigEndian.AppendUint64(entries, uint64(len(bl.b)))
		data = append(data, bl.b...)
	}
	if table != nil {
		table(entries)
	}
	sum := sha256.Sum256(entries)
	out := append(append(data, entries...), sum[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(blobs)))
	out = append(out, "STLASEG1"...)
	f.write(t, "segments/"+hex.EncodeToString(sum[:])+".seg", out)
}

// segmentDamages are damages of the segmented fixture that involve its
// segments: their blobs, their tables and footers, files in segments/
// that are not segments, blobs held both as a file and in a segment, and
// the records of segmented blobs. Blob-level damages are made in segs[0],
// segment-level ones in segs[1]. No two of them (nor a damage of
// compactDamages) damage two copies of one blob: Verify hashes copies in
// no set order, so its two problems of one blob could come in either.
var segmentDamages = []compactDamage{
	{"flipped segmented layer", func(t *testing.T, f compactFixture) { f.flipIn(t, f.segs[0], f.segLayers[0][3], 5) }},
	{"flipped segmented manifest", func(t *testing.T, f compactFixture) { f.flipIn(t, f.segs[0], f.segPacks[0], 20) }},
	{"segment cut short", func(t *testing.T, f compactFixture) {
		if fi, err := os.Stat(f.segs[1]); err == nil {
			_ = os.Truncate(f.segs[1], fi.Size()/2)
		}
	}},
	{"segment table damaged", func(t *testing.T, f compactFixture) { flipAt(t, f.segs[1], segFooterSize+segEntrySize+20) }},
	{"segment footer's sha256 damaged", func(t *testing.T, f compactFixture) { flipAt(t, f.segs[1], segFooterSize) }},
	{"segment footer's count damaged", func(t *testing.T, f compactFixture) { flipAt(t, f.segs[1], 9) }},
	{"segment footer's magic damaged", func(t *testing.T, f compactFixture) { flipAt(t, f.segs[1], 1) }},
	{"segment renamed", func(t *testing.T, f compactFixture) {
		_ = os.Rename(f.segs[1], filepath.Join(filepath.Dir(f.segs[1]), strings.Repeat("0", 64)+segmentExt))
	}},
	{"segment of garbage", func(t *testing.T, f compactFixture) {
		f.write(t, "segments/"+strings.Repeat("b", 64)+".seg", []byte("garbage"))
	}},
	{"segment entries out of order", func(t *testing.T, f compactFixture) {
		f.writeSegment(t, []segBlob{{digest.FromString("one"), []byte("one")}, {digest.FromString("two"), []byte("two")}}, func(es []byte) {
			first := slices.Clone(es[:segEntrySize])
			copy(es, es[segEntrySize:])
			copy(es[segEntrySize:], first)
		})
	}},
	{"segment entry beyond its data", func(t *testing.T, f compactFixture) {
		f.writeSegment(t, []segBlob{{digest.FromString("three"), []byte("three")}}, func(es []byte) {
			binary.BigEndian.PutUint64(es[40:48], 6)
		})
	}},
	{"stray files in segments", func(t *testing.T, f compactFixture) {
		f.write(t, "segments/notes.txt", []byte("x"))
		f.write(t, "segments/"+strings.Repeat("c", 64)+".seg/inner", []byte("x"))
		f.write(t, "segments/"+strings.Repeat("d", 64)+".seg.tmp", []byte("x"))
	}},
	{"segmented blob held as a file too, the file flipped", func(t *testing.T, f compactFixture) {
		d := f.segLayers[0][5]
		b := slices.Clone(f.segBlobs[d])
		b[0] ^= 1
		f.write(t, f.s.relBlobPath(d), b)
	}},
	{"blob files held in a segment too, a segment copy flipped", func(t *testing.T, f compactFixture) {
		f.writeSegment(t, []segBlob{{f.config, []byte(`{}`)}, {f.shared, []byte("shared layer")}, {f.layers[1], []byte("layer X")}}, nil)
	}},
	{"segment entries of no record", func(t *testing.T, f compactFixture) {
		f.writeSegment(t, []segBlob{{digest.FromString("orphan"), []byte("orphan")}, {digest.FromString("amiss"), []byte("not amiss")}}, nil)
	}},
	{"segmented blob's record removed", func(t *testing.T, f compactFixture) { f.del(t, bucketBlobs, string(f.segLayers[0][7])) }},
	{"segmented manifest's record removed", func(t *testing.T, f compactFixture) { f.del(t, bucketBlobs, string(f.segPacks[1])) }},
	{"segmented blob's recorded size", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketBlobs, string(f.segLayers[0][8]), `"size":`, `"size":1`)
	}},
	{"children of a segmented manifest changed", func(t *testing.T, f compactFixture) {
		f.edit(t, bucketChildren, string(f.segPacks[0]), `"digest":"`+string(f.segLayers[0][0])+`"`, `"digest":"`+string(f.segLayers[0][1])+`"`)
	}},
	{"children of a segmented manifest with no record", func(t *testing.T, f compactFixture) {
		b := append(slices.Clone(f.segBlobs[f.segPacks[0]]), ' ')
		d := digest.FromBytes(b)
		f.writeSegment(t, []segBlob{{d, b}}, nil)
		f.put(t, bucketChildren, string(d), `[]`)
	}},
	// A manifest held twice, in a segment intact and as a file whose
	// bytes changed: the file is reported as blob-digest-mismatch, and the
	// manifest is parsed from the copy that hashes to its digest (the one
	// Fetch serves), not from the damaged file (Verify did until the
	// reference learnt segments).
	{"segmented manifest held as a file too, the file flipped", func(t *testing.T, f compactFixture) {
		d := f.segPacks[0]
		b := slices.Clone(f.segBlobs[d])
		b[0] = '['
		f.write(t, f.s.relBlobPath(d), b)
	}},
}

// TestVerifyFindsWhatItFoundBefore: the compact Verify reports exactly
// what the Verify before it (verifyReference: maps of digest strings) did,
// on a cache damaged in each way apart and in all of them at once, so no
// check was dropped in making its cross-check compact; and between them
// the damages make every problem code of the cache's own checks.
func TestVerifyFindsWhatItFoundBefore(t *testing.T) {
	ctx := context.Background()
	codes := map[string]bool{}
	check := func(t *testing.T, f compactFixture, damaged bool) {
		t.Helper()
		want, err := f.s.verifyReference(ctx, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.s.Verify(ctx, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("report (-before +now):\n%s", diff)
		}
		for _, p := range got.Problems {
			codes[p.Problem] = true
		}
		if damaged == (len(got.Problems) == 0) {
			t.Errorf("damaged %v, problems %+v", damaged, got.Problems)
		}
	}
	// Each damage apart, then all at once: on the plain fixture, and on one
	// with two packs' blobs kept in segments (every damage above, then
	// those of segments).
	for _, run := range []struct {
		name    string
		fixture func(*testing.T) compactFixture
		damages []compactDamage
	}{
		{"plain", newCompactFixture, compactDamages},
		{"segmented", newSegmentFixture, append(slices.Clone(compactDamages), segmentDamages...)},
	} {
		t.Run(run.name, func(t *testing.T) {
			for _, tt := range run.damages {
				t.Run(tt.name, func(t *testing.T) {
					f := run.fixture(t)
					tt.damage(t, f)
					root := os.Geteuid() == 0 // reads a file of mode 0
					check(t, f, tt.name != "clean" && (tt.name != "unreadable layer" || !root))
				})
			}
			t.Run("all at once", func(t *testing.T) {
				f := run.fixture(t)
				for _, tt := range run.damages {
					tt.damage(t, f)
				}
				check(t, f, true)
			})
		})
	}
	all := []string{ProblemBlobDigest, ProblemBlobSize, ProblemBlobMissing, ProblemBlobUnreadable, ProblemBlobRecord,
		ProblemRefcount, ProblemRefDangling, ProblemRefMismatch, ProblemArtifactUnrooted, ProblemLinkDangling,
		ProblemGraph, ProblemManifest, ProblemRecord, ProblemImportRecord, ProblemStrayFile, ProblemSegmentDamaged, ProblemLeftover}
	for _, c := range all {
		if c == ProblemBlobUnreadable && os.Geteuid() == 0 {
			continue // root reads a file of mode 0
		}
		if !codes[c] {
			t.Errorf("no damage made %s: the comparison does not cover it", c)
		}
	}
}
