package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/pack"
)

// openCache opens the local cache under <home>/packs.
func (s *session) openCache(ctx context.Context) (*cache.Store, error) {
	return cache.Open(ctx, filepath.Join(s.home, "packs"), cache.Options{
		LockTimeout: s.config.LockTimeout,
		Holder:      s.holder,
		Now:         s.now,
	})
}

// packRef names where a pack comes from: a folder, or the cache.
type loadedPack struct {
	pack     *pack.Pack
	artifact *artifact.Pack
	from     string // "folder DIR" or "cache REF"
}

// resolvePack loads a pack given as a folder path or as <id>:<version> from
// the cache. A folder wins when both could match.
func (s *session) resolvePack(ctx context.Context, ref string) (*loadedPack, error) {
	if st, err := os.Stat(ref); err == nil && st.IsDir() {
		p, a, err := s.loadPack(ref)
		if err != nil {
			return nil, err
		}
		return &loadedPack{pack: p, artifact: a, from: "folder " + ref}, nil
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return nil, err
	}
	pol, err := s.inspectionPolicy()
	if err != nil {
		return nil, err
	}
	lp, err := pol.LoadPack(ctx, st, ref)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("%s is neither a pack folder nor in the cache: %w", ref, pack.ErrNotFound)
		}
		return nil, err
	}
	return &loadedPack{pack: lp.Pack, artifact: lp.Artifact, from: "cache " + ref}, nil
}
