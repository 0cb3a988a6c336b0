package cache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
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

// GC runs beside an import in flight (it used to wait for it): it does
// not wait out the import, and does not remove what the import wrote but
// has not recorded yet, nor its ingest folder.
func TestGCBesideImport(t *testing.T) {
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
	res, err := b.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatalf("gc beside an import: %v", err)
	}
	if res.Blobs != 0 || res.Leftovers != 0 {
		t.Errorf("gc beside an import removed %+v", res)
	}
	if want := sortedDigests(pack.Digest, ocispec.DescriptorEmptyJSON.Digest, sha([]byte("layer written before gc"))); !slices.Equal(res.Held, want) {
		t.Errorf("gc held %v, want the import's blobs %v", res.Held, want)
	}
	if len(res.Holders) != 1 || res.Holders[0].Command != holderA {
		t.Errorf("gc holders = %+v, want the import", res.Holders)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err = b.GC(ctx, cache.GCOptions{})
	if err != nil || res.Blobs != 0 {
		t.Fatalf("gc after import = %+v, %v", res, err)
	}
	if got := fetchAll(t, b, pack); int64(len(got)) != pack.Size {
		t.Errorf("manifest unreadable after gc")
	}
}

func TestLockErrorMessage(t *testing.T) {
	since := time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)
	h := &cache.Holder{PID: 4242, Command: "stella pack import", Since: since}
	for _, tc := range []struct {
		holder *cache.Holder
		others int
		want   string
	}{
		{nil, 0, "cache gc lock /c/gc.lock held by another stella process; gave up after 30s: cache is locked by another process"},
		{h, 0, "cache gc lock /c/gc.lock held by pid 4242 (stella pack import) since 2026-11-28T01:02:03Z; gave up after 30s: cache is locked by another process"},
		{h, 1, "cache gc lock /c/gc.lock held by pid 4242 (stella pack import) since 2026-11-28T01:02:03Z and 1 other process; gave up after 30s: cache is locked by another process"},
		{h, 3, "cache gc lock /c/gc.lock held by pid 4242 (stella pack import) since 2026-11-28T01:02:03Z and 3 other processes; gave up after 30s: cache is locked by another process"},
	} {
		e := &cache.LockError{Lock: "gc", Path: "/c/gc.lock", Timeout: 30 * time.Second, Holder: tc.holder, Others: tc.others}
		if got := e.Error(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// A GC that gives up on the gc lock held shared names the oldest holder and
// counts the others; once they are gone it runs.
func TestGCNamesSharedHolders(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)
	var unlocks []func()
	for range 2 {
		unlock, err := cache.LockGCShared(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		unlocks = append(unlocks, unlock)
	}
	_, err := b.GC(ctx, cache.GCOptions{})
	wantLocked(t, err, "gc", true)
	var le *cache.LockError
	if errors.As(err, &le) && le.Others != 1 {
		t.Errorf("lock error counts %d other holders, want 1: %v", le.Others, err)
	}
	for _, u := range unlocks {
		u()
	}
	if _, err := b.GC(ctx, cache.GCOptions{}); err != nil {
		t.Fatalf("gc after the holders left: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root(), "holds")); len(ents) != 0 {
		t.Errorf("hold files left: %v", ents)
	}
}
