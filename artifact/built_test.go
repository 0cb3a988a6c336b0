package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"testing/fstest"
	"time"

	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
)

// TestBuiltManifestIsItsBytes: the manifest a build hands an import
// (BuiltManifest, checked by integrity.ManifestOf) is what its bytes
// decode to, for folders that take marshalManifest's plain path and its
// generic one, with and without a creation time; and it is handed only
// for the pack's own manifest.
func TestBuiltManifestIsItsBytes(t *testing.T) {
	manifest := "apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata: {name: built, version: 1.0.0, description: \"d <&> é\"}\nspec:\n  steps:\n    - {id: s, run: {command: [\"true\"]}}\n"
	folders := map[string]fstest.MapFS{
		"only pack.yaml": {},
		"plain":          {},
		"non-ASCII path": {"données/é.txt": {Data: []byte("x")}},
		"executable":     {"bin/run.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}},
	}
	for i := range 300 {
		folders["plain"][fmt.Sprintf("d%d/f%03d.bin", i/100, i)] = &fstest.MapFile{Data: []byte(fmt.Sprint(i)), Mode: 0o644}
	}
	created := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for name, fsys := range folders {
		for _, opts := range []BuildOptions{{}, {Created: &created}} {
			t.Run(fmt.Sprintf("%s/created=%v", name, opts.Created != nil), func(t *testing.T) {
				fsys[pack.ManifestFile] = &fstest.MapFile{Data: []byte(manifest), Mode: 0o644}
				p, err := pack.Load(fsys)
				if err != nil {
					t.Fatal(err)
				}
				a, err := Build(p, opts)
				if err != nil {
					t.Fatal(err)
				}
				built, ok := a.BuiltManifest(a.Manifest.Digest)
				if !ok {
					t.Fatal("no built manifest for the pack's manifest")
				}
				if _, ok := a.BuiltManifest(a.Manifest.Digest + "0"); ok {
					t.Fatal("a built manifest for another digest")
				}
				got, err := integrity.ManifestOf(a.Manifest.MediaType, built)
				if err != nil {
					t.Fatal(err)
				}
				want, err := integrity.ParseManifest(a.Manifest, a.ManifestBytes())
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					t.Fatalf("built %.300s\ndecoded %.300s", gj, wj)
				}
				if again, _ := json.Marshal(built); !bytes.Equal(again, a.ManifestBytes()) {
					t.Fatalf("the built struct marshals to %.200s, not the manifest's bytes", again)
				}
			})
		}
	}
}
