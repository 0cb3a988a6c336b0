package cache

import (
	"context"

	"go.etcd.io/bbolt"
)

// LockGCExclusive takes the gc lock as GC does, for lock tests.
func LockGCExclusive(ctx context.Context, s *Store) (func(), error) { return s.lockGC(ctx, true) }

// Update runs fn in a write transaction of the raw index, for tests that
// damage or hold it.
func Update(ctx context.Context, s *Store, fn func(tx *bbolt.Tx) error) error {
	return s.update(ctx, fn)
}

// LockGCShared takes the gc lock as importers do, for lock tests.
func LockGCShared(ctx context.Context, s *Store) (func(), error) { return s.lockGC(ctx, false) }

// SetAfterCompact sets the hook gc calls after it wrote the new segment of
// a compaction, before its locked check.
func SetAfterCompact(s *Store, fn func(next string, made bool)) { s.afterCompact = fn }

// SetChunkWriting sets the hook called before each segment chunk an add
// writes (nil: none).
func SetChunkWriting(fn func()) { chunkWriting = fn }
