package cache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/pack"
)

// fetchOnly hides every method of a source but content.ReadOnlyStorage's,
// so the import decodes its manifests from their bytes.
type fetchOnly struct{ content.ReadOnlyStorage }

// TestImportOfABuiltManifestIsTheSame: an import handed a pack's manifest
// as built (cache.BuiltManifests) writes the index, byte for byte, that
// the same import writes decoding the manifest's bytes.
func TestImportOfABuiltManifestIsTheSame(t *testing.T) {
	files := fstest.MapFS{}
	for i := range 200 {
		files[fmt.Sprintf("d%d/f%03d.bin", i/100, i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	a := builtPack(t, "built", files)
	if _, ok := any(a).(cache.BuiltManifests); !ok {
		t.Fatal("artifact.Pack does not hand its built manifest")
	}
	ctx := context.Background()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var dumps [][]byte
	handed := &countBuilt{Pack: a}
	for _, src := range []content.ReadOnlyStorage{handed, fetchOnly{a}} {
		s, err := cache.Open(ctx, t.TempDir(), cache.Options{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Import(ctx, src, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.BlobsWritten != 203 {
			t.Fatalf("%d blobs written, want 203 (200 files, pack.yaml, config, manifest)", res.BlobsWritten)
		}
		dumps = append(dumps, dumpIndex(t, s))
	}
	if !bytes.Equal(dumps[0], dumps[1]) {
		t.Fatalf("the index differs:\nbuilt   %.400s\ndecoded %.400s", dumps[0], dumps[1])
	}
	if handed.n == 0 {
		t.Fatal("the import did not take the built manifest")
	}
	// What it hands is a copy: changing it changes the next one not.
	m, _ := a.BuiltManifest(a.Manifest.Digest)
	m.Layers[0].Digest, m.Annotations["x"] = "sha256:0", "y"
	again, _ := a.BuiltManifest(a.Manifest.Digest)
	if again.Layers[0].Digest == "sha256:0" || again.Annotations["x"] == "y" {
		t.Fatal("a change to a built manifest handed out reached the pack's")
	}
}

// countBuilt counts the built manifests a pack hands.
type countBuilt struct {
	*artifact.Pack
	n int
}

func (c *countBuilt) BuiltManifest(d digest.Digest) (*ocispec.Manifest, bool) {
	c.n++
	return c.Pack.BuiltManifest(d)
}

// builtPack builds a pack named name of one step and files, as `stella
// pack build` would.
func builtPack(t *testing.T, name string, files fstest.MapFS) *artifact.Pack {
	t.Helper()
	files[pack.ManifestFile] = &fstest.MapFile{Data: []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: " + name + ", version: 1.0.0, description: d}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n")}
	p, err := pack.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// dumpIndex lists every bucket, key and value of s's index in order.
func dumpIndex(t *testing.T, s *cache.Store) []byte {
	t.Helper()
	var out bytes.Buffer
	err := cache.Update(context.Background(), s, func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			fmt.Fprintf(&out, "[%s]\n", name)
			return b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&out, "%q=%q\n", k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestChildrenRecordIsSlim: a manifest's children record lists each child
// by media type, digest and size only (its annotations are in the
// manifest), in the manifest's order; a cache whose record holds the
// whole descriptors, as stella wrote them before, verifies the same.
func TestChildrenRecordIsSlim(t *testing.T) {
	a := builtPack(t, "slim", fstest.MapFS{"run.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}})
	ctx := context.Background()
	s := cachetest.Open(t)
	if _, err := s.Import(ctx, a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(a.ManifestBytes(), &m); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString("[")
	for i, c := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if i > 0 {
			want.WriteString(",")
		}
		fmt.Fprintf(&want, `{"mediaType":%q,"digest":%q,"size":%d}`, c.MediaType, c.Digest, c.Size)
	}
	want.WriteString("]")
	children := []byte("cache.children")
	err := cache.Update(ctx, s, func(tx *bbolt.Tx) error {
		got := tx.Bucket(children).Get([]byte(a.Manifest.Digest))
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("children record %s, want %s", got, want.Bytes())
		}
		// As an earlier stella wrote it: whole descriptors.
		whole, err := json.Marshal(append([]ocispec.Descriptor{m.Config}, m.Layers...))
		if err != nil {
			return err
		}
		return tx.Bucket(children).Put([]byte(a.Manifest.Digest), whole)
	})
	if err != nil {
		t.Fatal(err)
	}
	cachetest.Check(t, s)
}
