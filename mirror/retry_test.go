package mirror_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"oras.land/oras-go/v2/registry/remote/errcode"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// failFirst answers 503 to the first n requests matching match, then lets them through.
func failFirst(n int64, match func(*http.Request) bool) (func(http.ResponseWriter, *http.Request) bool, *atomic.Int64) {
	var failed atomic.Int64
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !match(req) || failed.Add(1) > n {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}`))
		return true
	}, &failed
}

func anyRequest(*http.Request) bool { return true }

// Transient failures that pass are retried, on requests and on the uploads and
// downloads that cannot be replayed; failures that persist end in ErrTransient.
func TestTransientFailures(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	seed := mustRef(t, r.Host+"/stella/retry:1.0.0")
	if _, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, seed, optionsFor(r)); err != nil {
		t.Fatal(err)
	}

	t.Run("503 twice then through", func(t *testing.T) {
		t.Parallel()
		handle, failed := failFirst(2, anyRequest)
		host := startProxy(t, r, handle)
		ctx := testContext(t)
		rep, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, host+"/stella/retry-push:1.0.0"), optionsFor(r))
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if rep.Retries < 2 || failed.Load() < 2 {
			t.Errorf("push retried %d times after %d failures; want at least 2", rep.Retries, failed.Load())
		}
		checkRegistry(t, r, "stella/retry-push", "1.0.0", f, false)

		failed.Store(0)
		c := cachetest.Open(t)
		pulled, err := mirror.Pull(ctx, mustRef(t, host+"/stella/retry:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if pulled.Retries < 2 {
			t.Errorf("pull retried %d times; want at least 2", pulled.Retries)
		}
		checkPulled(t, c, pulled, f)
	})

	t.Run("upload refused once", func(t *testing.T) {
		t.Parallel()
		// The PUT that carries a blob cannot be replayed by the transport: the copy is.
		handle, failed := failFirst(1, func(req *http.Request) bool {
			return req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/blobs/uploads/")
		})
		host := startProxy(t, r, handle)
		var ev events
		opts := optionsFor(r)
		opts.Progress = ev.add
		rep, err := mirror.Push(testContext(t), f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, host+"/stella/retry-upload:1.0.0"), opts)
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if failed.Load() < 1 || rep.Retries < 1 || ev.count(mirror.Retrying) != rep.Retries {
			t.Errorf("push: %d refusals, %d retries, %d Retrying events", failed.Load(), rep.Retries, ev.count(mirror.Retrying))
		}
		checkRegistry(t, r, "stella/retry-upload", "1.0.0", f, false)
	})

	t.Run("download cut once", func(t *testing.T) {
		t.Parallel()
		var cut atomic.Int64
		host := startProxy(t, r, func(w http.ResponseWriter, req *http.Request) bool {
			if !isBlobGet(req, f.layers[0].Digest) || cut.Add(1) > 1 {
				return false
			}
			w.Header().Set("Content-Length", "65536")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(f.blobs[f.layers[0].Digest][:1000])
			return true
		})
		c := cachetest.Open(t)
		pulled, err := mirror.Pull(testContext(t), mustRef(t, host+"/stella/retry:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if pulled.Retries != 1 {
			t.Errorf("pull retried %d times; want 1", pulled.Retries)
		}
		checkPulled(t, c, pulled, f)
	})

	t.Run("503 always", func(t *testing.T) {
		t.Parallel()
		handle, failed := failFirst(1<<40, anyRequest)
		host := startProxy(t, r, handle)
		ctx := testContext(t)
		_, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, host+"/stella/retry-never:1.0.0"), optionsFor(r))
		var resp *errcode.ErrorResponse
		if !errors.Is(err, mirror.ErrTransient) || !errors.As(err, &resp) || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("push: %v; want ErrTransient wrapping HTTP 503", err)
		}
		// The pull goes through a proxy of its own, so requests the push
		// still had in flight when it returned are not counted.
		pullHandle, pullFailed := failFirst(1<<40, anyRequest)
		pullHost := startProxy(t, r, pullHandle)
		_ = failed
		c := cachetest.Open(t)
		_, err = mirror.Pull(ctx, mustRef(t, pullHost+"/stella/retry:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
		if !errors.Is(err, mirror.ErrTransient) {
			t.Errorf("pull: %v; want ErrTransient", err)
		}
		// The first request used up its 3 attempts; nothing was tried after it.
		if n := pullFailed.Load(); n != 3 {
			t.Errorf("pull made %d requests; want 3 (the attempts of the first)", n)
		}
		assertNothingStored(t, c)
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		host := l.Addr().String()
		_ = l.Close()
		_, err = mirror.Pull(testContext(t), mustRef(t, host+"/stella/gone:1.0.0"), cachetest.Open(t), cache.ImportRecord{}, mirror.PullOptions{Options: optionsFor(r)})
		if !errors.Is(err, mirror.ErrTransient) {
			t.Errorf("pull from a closed port: %v; want ErrTransient", err)
		}
	})
}
