package cache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

const holderA = "stella pack import --bundle a.stella.tar"

// twoStores opens one cache twice: a (the holder) and b (short timeout).
func twoStores(t *testing.T) (a, b *cache.Store) {
	t.Helper()
	root := t.TempDir()
	a = cachetest.OpenAt(t, root)
	a2, err := cache.Open(context.Background(), root, cache.Options{Holder: holderA})
	if err != nil {
		t.Fatal(err)
	}
	b, err = cache.Open(context.Background(), root, cache.Options{LockTimeout: 200 * time.Millisecond, Holder: "stella pack gc"})
	if err != nil {
		t.Fatal(err)
	}
	return a2, b
}

func wantLocked(t *testing.T, err error, lock string, holder bool) {
	t.Helper()
	if !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("error = %v, want ErrLocked", err)
	}
	var le *cache.LockError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *LockError", err)
	}
	if le.Lock != lock {
		t.Errorf("lock = %q, want %q", le.Lock, lock)
	}
	if !holder {
		if le.Holder != nil {
			t.Errorf("holder = %+v, want none", le.Holder)
		}
		return
	}
	if le.Holder == nil {
		t.Fatalf("lock error names no holder: %v", err)
	}
	if le.Holder.PID != os.Getpid() || le.Holder.Command != holderA || le.Holder.Since.IsZero() {
		t.Errorf("holder = %+v, want pid %d %q", le.Holder, os.Getpid(), holderA)
	}
}

func TestIndexLockTimeout(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- cache.Update(ctx, a, func(tx *bbolt.Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	start := time.Now()
	_, err := b.Resolve(ctx, "demo:1")
	wantLocked(t, err, "index", true)
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("waited %v with a 200ms timeout", waited)
	}
	wantLocked(t, b.Remove(ctx, "demo:1"), "index", true)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolve(ctx, "demo:1"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("after release: %v, want ErrNotFound", err)
	}
}

func TestGCLockTimeout(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)
	unlock, err := cache.LockGCExclusive(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	pack := src.pack(t, "content")
	arts := []cache.Artifact{packArtifact(pack, "demo:1")}
	_, err = b.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{})
	wantLocked(t, err, "gc", true)
	data := []byte("blob")
	wantLocked(t, b.Push(ctx, ocispec.Descriptor{Digest: sha(data), Size: 4}, bytes.NewReader(data)), "gc", true)
	_, err = b.GC(ctx, cache.GCOptions{})
	wantLocked(t, err, "gc", true)

	// A cancelled wait is a cancellation, not a lock error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Import(cctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled import = %v, want context.Canceled", err)
	}

	unlock()
	if _, err := b.Import(ctx, src, arts, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatalf("import after unlock: %v", err)
	}
}

// GC waits for an import in flight (shared holders are not named) and does
// not remove what the import wrote.
func TestGCWaitsForImport(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)
	src := newSource()
	pack := src.pack(t, "layer written before gc")
	inHook, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := a.Import(ctx, src, []cache.Artifact{packArtifact(pack, "demo:1")}, cache.ImportRecord{}, cache.ImportOptions{
			Verify: func(context.Context, cache.Artifact, content.Fetcher) error {
				close(inHook)
				<-release
				return nil
			}})
		done <- err
	}()
	<-inHook // blobs durable, not yet recorded: unreferenced
	_, err := b.GC(ctx, cache.GCOptions{})
	wantLocked(t, err, "gc", false)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err := b.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 0 {
		t.Fatalf("gc after import = %+v, %v", res, err)
	}
	if got := fetchAll(t, b, pack); int64(len(got)) != pack.Size {
		t.Errorf("manifest unreadable after gc")
	}
}
