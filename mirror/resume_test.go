package mirror_test

import (
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// A push run again after part of it went missing at the registry (as after an
// interrupted push, or a blob removed under a manifest) sends exactly what is missing.
func TestPushSendsOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		remove func(t *testing.T, repo string)
		sent   []digest.Digest
		bytes  int64
	}{
		{"a layer", func(t *testing.T, repo string) { deleteBlob(t, r, repo, f.layers[2].Digest) },
			[]digest.Digest{f.layers[2].Digest}, f.layers[2].Size},
		{"the pack manifest", func(t *testing.T, repo string) {
			if err := r.Repository(t, repo).Delete(testContext(t), f.pack); err != nil {
				t.Fatal(err)
			}
		}, []digest.Digest{f.pack.Digest}, f.pack.Size},
		{"the signature manifest", func(t *testing.T, repo string) {
			// oras-go also drops it from the tag-schema referrers index.
			if err := r.Repository(t, repo).Delete(testContext(t), f.sig); err != nil {
				t.Fatal(err)
			}
		}, []digest.Digest{f.sig.Digest}, f.sig.Size},
		{"the tag-schema referrers index", func(t *testing.T, repo string) {
			ctx := testContext(t)
			index, err := r.Repository(t, repo).Resolve(ctx, "sha256-"+f.pack.Digest.Encoded())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Repository(t, repo).Delete(ctx, index); err != nil {
				t.Fatal(err)
			}
			if refs := referrersAt(t, r, repo, f.pack); len(refs) != 0 {
				t.Fatalf("referrers after deleting the index: %v", refs)
			}
		}, nil, 0},
		{"the signature's layer", func(t *testing.T, repo string) { deleteBlob(t, r, repo, f.dsse.Digest) },
			[]digest.Digest{f.dsse.Digest}, f.dsse.Size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			repo := "stella/resume-" + digest.FromString(tc.name).Encoded()[:8]
			dst := mustRef(t, r.Host+"/"+repo+":1.0.0")
			opts := optionsFor(r)
			if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts); err != nil {
				t.Fatalf("first push: %v", err)
			}
			tc.remove(t, repo)

			var ev events
			opts.Progress = ev.add
			rep, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts)
			if err != nil {
				t.Fatalf("second push: %v", err)
			}
			var sent []digest.Digest
			for _, e := range ev.all {
				if e.Kind == mirror.BlobCopied {
					sent = append(sent, e.Blob.Digest)
				}
			}
			if !slices.Equal(sent, tc.sent) || rep.BlobsCopied != len(tc.sent) || rep.BytesCopied != tc.bytes {
				t.Errorf("second push sent %v (%d blobs, %d bytes); want %v (%d bytes)", sent, rep.BlobsCopied, rep.BytesCopied, tc.sent, tc.bytes)
			}
			if rep.BlobsSkipped != 8-len(tc.sent) {
				t.Errorf("second push skipped %d blobs; want %d", rep.BlobsSkipped, 8-len(tc.sent))
			}
			checkRegistry(t, r, repo, "1.0.0", f, false)
		})
	}
}
