package mirror_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// A push run again with CheckBlobs after part of it went missing at the registry (as
// after an interrupted push, or a blob removed under a manifest) sends exactly what is
// missing.
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
			opts.CheckBlobs = true
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

// By default a push trusts a manifest the registry has, as oras does: pushed again, it
// asks for the manifests (and the referrers and the tag) and for no blob; a layer deleted
// at the registry is not noticed. With CheckBlobs it is checked and restored.
func TestPushTrustsManifestThere(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	ctx := testContext(t)
	repo := "stella/trust"
	dst := mustRef(t, r.Host+"/"+repo+":1.0.0")
	opts := optionsFor(r)
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts); err != nil {
		t.Fatalf("first push: %v", err)
	}
	var mu sync.Mutex
	var lines []string
	opts.Trace = func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}
	requests := func() (all, blobs int) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if strings.HasPrefix(l, "refused") {
				continue
			}
			all++
			if strings.Contains(l, "/blobs/") {
				blobs++
			}
		}
		lines = nil
		return all, blobs
	}

	rep, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts)
	if err != nil {
		t.Fatalf("second push: %v", err)
	}
	all, blobs := requests()
	t.Logf("second push: %d requests", all)
	if blobs != 0 {
		t.Errorf("second push made %d blob requests, want 0", blobs)
	}
	// HEAD signature, HEAD pack, the tag-schema referrers index, the tag: at most a few
	// more on a first connection (the /v2/ ping).
	if all > 6 {
		t.Errorf("second push made %d requests, want at most 6", all)
	}
	if rep.BlobsCopied != 0 || rep.BlobsSkipped != 8 || rep.BytesSkipped != f.packBytes+f.sigBytes || rep.ManifestsTrusted != 1 || rep.CheckedBlobs {
		t.Errorf("second push: copied %d, skipped %d (%d bytes), trusted %d, checked %v; want 0, 8 (%d bytes), 1, false",
			rep.BlobsCopied, rep.BlobsSkipped, rep.BytesSkipped, rep.ManifestsTrusted, rep.CheckedBlobs, f.packBytes+f.sigBytes)
	}

	// A layer deleted at the registry: trusted all the same.
	deleteBlob(t, r, repo, f.layers[2].Digest)
	rep, err = mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts)
	if err != nil {
		t.Fatalf("push after a deleted layer: %v", err)
	}
	if _, blobs := requests(); blobs != 0 || rep.BlobsCopied != 0 || rep.ManifestsTrusted != 1 {
		t.Errorf("push after a deleted layer: %d blob requests, %d copied, %d trusted; want 0, 0, 1", blobs, rep.BlobsCopied, rep.ManifestsTrusted)
	}

	// --check-blobs checks every blob and restores it.
	opts.CheckBlobs = true
	rep, err = mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts)
	if err != nil {
		t.Fatalf("push with CheckBlobs: %v", err)
	}
	if _, blobs := requests(); blobs < 6 {
		t.Errorf("push with CheckBlobs made %d blob requests, want one per blob (6) at least", blobs)
	}
	if rep.BlobsCopied != 1 || rep.BytesCopied != f.layers[2].Size || rep.ManifestsTrusted != 0 || !rep.CheckedBlobs {
		t.Errorf("push with CheckBlobs: copied %d (%d bytes), trusted %d, checked %v; want 1 (%d bytes), 0, true",
			rep.BlobsCopied, rep.BytesCopied, rep.ManifestsTrusted, rep.CheckedBlobs, f.layers[2].Size)
	}
	checkRegistry(t, r, repo, "1.0.0", f, false)
}
