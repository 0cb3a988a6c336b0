package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content/memory"
)

// compactFixture is a cache of four packs (a config shared by all, a
// layer shared by all, one layer each), a signature referrer of the first
// two and an index of the last two, with the digests the damages need.
type compactFixture struct {
	s                        *Store
	packs, layers            []digest.Digest
	config, shared, sig, idx digest.Digest
}

func newCompactFixture(t *testing.T) compactFixture {
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
	return f
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

// compactDamages are damages of every kind Verify reports, and of the
// records it holds in its compact form (digests with no blob record, empty
// subjects, refs that name nothing).
var compactDamages = []struct {
	name   string
	damage func(t *testing.T, f compactFixture)
}{
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
	for _, tt := range compactDamages {
		t.Run(tt.name, func(t *testing.T) {
			f := newCompactFixture(t)
			tt.damage(t, f)
			root := os.Geteuid() == 0 // reads a file of mode 0
			check(t, f, tt.name != "clean" && (tt.name != "unreadable layer" || !root))
		})
	}
	t.Run("all at once", func(t *testing.T) {
		f := newCompactFixture(t)
		for _, tt := range compactDamages {
			tt.damage(t, f)
		}
		check(t, f, true)
	})
	all := []string{ProblemBlobDigest, ProblemBlobSize, ProblemBlobMissing, ProblemBlobUnreadable, ProblemBlobRecord,
		ProblemRefcount, ProblemRefDangling, ProblemRefMismatch, ProblemArtifactUnrooted, ProblemLinkDangling,
		ProblemGraph, ProblemManifest, ProblemRecord, ProblemImportRecord, ProblemStrayFile, ProblemLeftover}
	for _, c := range all {
		if c == ProblemBlobUnreadable && os.Geteuid() == 0 {
			continue // root reads a file of mode 0
		}
		if !codes[c] {
			t.Errorf("no damage made %s: the comparison does not cover it", c)
		}
	}
}
