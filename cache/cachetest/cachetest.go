// Package cachetest opens caches for tests and checks them on the way out:
// the cache's own Verify runs when the test ends and fails it on any
// problem, as bbolt's test helper checks its database.
package cachetest

import (
	"context"
	"testing"
	"time"

	"stellaops.io/stella/cache"
)

// Open opens a cache in a fresh temp directory. When the test ends it runs
// Verify with hooks and fails the test on any problem, warnings included
// (a test process is never killed mid-write, so even a leftover is a bug).
func Open(t testing.TB, hooks ...cache.VerifyHook) *cache.Store {
	t.Helper()
	return OpenAt(t, t.TempDir(), hooks...)
}

// OpenAt is Open on a given root.
func OpenAt(t testing.TB, root string, hooks ...cache.VerifyHook) *cache.Store {
	t.Helper()
	ctx := context.Background()
	s, err := cache.Open(ctx, root, cache.Options{LockTimeout: 10 * time.Second, Holder: "go test " + t.Name()})
	if err != nil {
		t.Fatalf("cachetest: open %s: %v", root, err)
	}
	t.Cleanup(func() {
		Check(t, s, hooks...)
	})
	return s
}

// Check runs Verify now and fails the test on any problem.
func Check(t testing.TB, s *cache.Store, hooks ...cache.VerifyHook) {
	t.Helper()
	r, err := s.Verify(context.Background(), cache.VerifyOptions{Hooks: hooks})
	if err != nil {
		t.Errorf("cachetest: verify %s: %v", s.Root(), err)
		return
	}
	for _, p := range r.Problems {
		t.Errorf("cachetest: verify %s: %s %s %s: %s (expected %q, actual %q)",
			s.Root(), p.Severity, p.Source, p.Object, p.Problem, p.Expected, p.Actual)
	}
}
