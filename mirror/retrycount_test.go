package mirror_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// TestPullRetryCountsEachBlobOnce: a pull into an empty cache whose
// signature download is cut once: the retry finds the pack recorded by the
// first try. Nothing was in the cache before, so nothing is "already
// there", and each blob is counted once.
func TestPullRetryCountsEachBlobOnce(t *testing.T) {
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	seed := mustRef(t, r.Host+"/stella/retrycount:1.0.0")
	if _, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, seed, optionsFor(r)); err != nil {
		t.Fatal(err)
	}
	var cut atomic.Int64
	host := startProxy(t, r, func(w http.ResponseWriter, req *http.Request) bool {
		if !isBlobGet(req, f.dsse.Digest) || cut.Add(1) > 1 {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.blobs[f.dsse.Digest])))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(f.blobs[f.dsse.Digest][:10])
		return true
	})
	c := cachetest.Open(t)
	rep, err := mirror.Pull(testContext(t), mustRef(t, host+"/stella/retrycount:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	t.Logf("retries %d copied %d (%d bytes) skipped %d (%d bytes); pack+sig = 8 blobs, %d bytes", rep.Retries, rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, rep.BytesSkipped, f.packBytes+f.sigBytes)
	if rep.Retries != 1 {
		t.Fatalf("retries = %d", rep.Retries)
	}
	if rep.BlobsSkipped != 0 || rep.BlobsCopied+rep.BlobsSkipped != 8 {
		t.Errorf("fresh cache: %d blobs copied, %d already there; want 8, 0", rep.BlobsCopied, rep.BlobsSkipped)
	}
}
