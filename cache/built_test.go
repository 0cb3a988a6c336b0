package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/pack"
)

// fetchOnly hides every method of a source but content.ReadOnlyStorage's,
// so the import decodes its manifests from their bytes.
type fetchOnly struct{ content.ReadOnlyStorage }

// TestImportOfABuiltManifestIsTheSame: an import handed a pack's manifest
// as built (cache.BuiltManifests) writes the index, byte for byte, that
// the same import writes decoding the manifest's bytes.
func TestImportOfABuiltManifestIsTheSame(t *testing.T) {
	fsys := fstest.MapFS{pack.ManifestFile: {Data: []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: built, version: 1.0.0, description: d}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n")}}
	for i := range 200 {
		fsys[fmt.Sprintf("d%d/f%03d.bin", i/100, i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i))}
	}
	p, err := pack.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := any(a).(cache.BuiltManifests); !ok {
		t.Fatal("artifact.Pack does not hand its built manifest")
	}
	ctx := context.Background()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var dumps [][]byte
	for _, src := range []content.ReadOnlyStorage{a, fetchOnly{a}} {
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
