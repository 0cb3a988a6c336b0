package cache

import "context"

// LockGCExclusive takes the gc lock as GC does, for lock tests.
func LockGCExclusive(ctx context.Context, s *Store) (func(), error) { return s.lockGC(ctx, true) }
