package mirror_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// startProxy runs a reverse proxy on loopback in front of a plain-HTTP registry.
// handle, if it returns true, has answered the request itself.
func startProxy(t *testing.T, r *regtest.Registry, handle func(w http.ResponseWriter, req *http.Request) bool) string {
	t.Helper()
	target, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if handle != nil && handle(w, req) {
			return
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func isBlobGet(req *http.Request, d digest.Digest) bool {
	return req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+d.String())
}

// assertNothingStored fails unless the cache lists no artifact (its own verify runs at
// cleanup through cachetest).
func assertNothingStored(t *testing.T, c *cache.Store) {
	t.Helper()
	list, err := c.List(testContext(t), "")
	if err != nil || len(list) != 0 {
		t.Errorf("cache lists %v, %v; want nothing", list, err)
	}
}

// A blob altered in the registry's storage is refused on pull; nothing is stored.
func TestPullRefusesBlobAlteredInStorage(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	ctx := testContext(t)
	f := newFixture(t)
	opts := optionsFor(r)
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/tamper:1.0.0"), opts); err != nil {
		t.Fatal(err)
	}
	path := r.BlobPath(f.layers[1].Digest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := cachetest.Open(t)
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/tamper:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
	if !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("pull of an altered blob: %v; want integrity.ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), f.layers[1].Digest.String()) {
		t.Errorf("error does not name the blob %s: %v", f.layers[1].Digest, err)
	}
	assertNothingStored(t, c)
}

// A server that cuts a blob short or serves another blob's bytes is refused; nothing is
// stored.
func TestPullRefusesBadBlobResponses(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	if _, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/bad:1.0.0"), optionsFor(r)); err != nil {
		t.Fatal(err)
	}
	target := f.layers[0]
	full := f.blobs[target.Digest]
	serve := func(body []byte, length int, chunked bool) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, req *http.Request) bool {
			if !isBlobGet(req, target.Digest) {
				return false
			}
			w.Header().Set("Docker-Content-Digest", target.Digest.String())
			w.Header().Set("Content-Type", "application/octet-stream")
			if !chunked {
				w.Header().Set("Content-Length", strconv.Itoa(length))
			}
			w.WriteHeader(http.StatusOK)
			if chunked {
				w.(http.Flusher).Flush()
			}
			_, _ = w.Write(body)
			return true
		}
	}
	for _, tc := range []struct {
		name   string
		handle func(http.ResponseWriter, *http.Request) bool
		want   error
	}{
		// The connection ends before the announced length: a network failure, retried
		// until the attempts run out.
		{"cut short, full length announced", serve(full[:len(full)/2], len(full), false), mirror.ErrTransient},
		{"cut short, short length announced", serve(full[:len(full)/2], len(full)/2, false), integrity.ErrSizeMismatch},
		{"cut short, chunked", serve(full[:len(full)/2], 0, true), integrity.ErrSizeMismatch},
		{"longer, chunked", serve(append(append([]byte{}, full...), 'x'), 0, true), integrity.ErrSizeMismatch},
		{"another blob of the same size", serve(f.blobs[f.layers[1].Digest], len(full), false), integrity.ErrDigestMismatch},
		{"another blob of another size", serve(f.blobs[f.layers[2].Digest], int(f.layers[2].Size), false), integrity.ErrSizeMismatch},
		{"same size, one byte changed", serve(flip(full), len(full), false), integrity.ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host := startProxy(t, r, tc.handle)
			c := cachetest.Open(t)
			_, err := mirror.Pull(testContext(t), mustRef(t, host+"/stella/bad:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("pull: %v; want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			assertNothingStored(t, c)
		})
	}
}

func flip(b []byte) []byte {
	out := append([]byte{}, b...)
	out[0] ^= 1
	return out
}

// rawImporter reads every blob of each artifact from the pull's source without any
// check of its own, so only mirror's verification stands between it and bad bytes.
type rawImporter struct{ read map[string][]byte }

func (im *rawImporter) Import(ctx context.Context, src content.ReadOnlyStorage, artifacts []cache.Artifact, _ cache.ImportRecord, _ cache.ImportOptions) (cache.ImportResult, error) {
	var walk func(d ocispec.Descriptor) error
	walk = func(d ocispec.Descriptor) error {
		rc, err := src.Fetch(ctx, d)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		im.read[d.Digest.String()] = data
		if d.MediaType != ocispec.MediaTypeImageManifest {
			return nil
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		for _, c := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, a := range artifacts {
		if err := walk(a.Descriptor); err != nil {
			return cache.ImportResult{}, err
		}
	}
	return cache.ImportResult{}, nil
}

// mirror's own check, apart from the cache's: bytes that disagree with their digest
// never reach the importer whole.
func TestPullVerifiesWhileStreaming(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	if _, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/raw:1.0.0"), optionsFor(r)); err != nil {
		t.Fatal(err)
	}
	target := f.layers[1]
	host := startProxy(t, r, func(w http.ResponseWriter, req *http.Request) bool {
		if !isBlobGet(req, target.Digest) {
			return false
		}
		w.Header().Set("Docker-Content-Digest", target.Digest.String())
		w.Header().Set("Content-Length", strconv.Itoa(int(target.Size)))
		_, _ = w.Write(flip(f.blobs[target.Digest]))
		return true
	})
	im := &rawImporter{read: map[string][]byte{}}
	_, err := mirror.Pull(testContext(t), mustRef(t, host+"/stella/raw:1.0.0"), im, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
	if !errors.Is(err, integrity.ErrDigestMismatch) || !strings.Contains(err.Error(), host) {
		t.Fatalf("pull: %v; want integrity.ErrDigestMismatch naming %s", err, host)
	}
	if _, ok := im.read[target.Digest.String()]; ok {
		t.Errorf("the importer received the whole altered blob %s", target.Digest)
	}
	if got := im.read[f.layers[0].Digest.String()]; !bytes.Equal(got, f.blobs[f.layers[0].Digest]) {
		t.Errorf("the intact layer before it was not read whole")
	}
}

// A push from a bundle whose blob was altered on the media fails on the bundle's own
// check, and the registry shows nothing of the artifact.
func TestPushRefusesAlteredBundle(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	ctx := testContext(t)
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "media.stella.tar")
	entries := []bundle.Entry{{Descriptor: f.pack, Kind: artifact.KindPack, Ref: testRef}, {Descriptor: f.sig, Kind: artifact.KindSignature}}
	if _, err := bundle.WriteFile(ctx, path, f.store, entries, bundle.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	target := f.layers[2]
	at := bytes.Index(data, f.blobs[target.Digest])
	if at < 0 {
		t.Fatal("layer not found in the bundle")
	}
	data[at+int(target.Size)-1] ^= 0xff // the last byte: only the completing read can tell
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := bundle.Open(ctx, path, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/media:1.0.0"), optionsFor(r))
	if !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("push: %v; want integrity.ErrDigestMismatch", err)
	}
	if len(rep.Artifacts) != 1 || rep.Artifacts[0].Status != mirror.StatusFailed {
		t.Errorf("report artifacts %+v; want the pack, failed", rep.Artifacts)
	}
	repo := r.Repository(t, "stella/media")
	for _, d := range []ocispec.Descriptor{target, f.pack, f.sig} {
		if ok, err := repo.Exists(ctx, d); ok || err != nil {
			t.Errorf("registry has %s (%s): %v, %v; want absent", d.Digest, d.MediaType, ok, err)
		}
	}
	if _, err := repo.Resolve(ctx, "1.0.0"); err == nil {
		t.Error("the tag exists after a failed push")
	}
}
