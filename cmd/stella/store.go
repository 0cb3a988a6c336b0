package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"

	"github.com/opencontainers/go-digest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

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
	art, err := st.Resolve(ctx, ref)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("%s is neither a pack folder nor in the cache: %w", ref, pack.ErrNotFound)
		}
		return nil, err
	}
	if art.Kind != artifact.KindPack {
		return nil, fmt.Errorf("%s is a %s, not a pack: %w", ref, art.Kind, pack.ErrNotFound)
	}
	p, a, err := loadArtifactPack(ctx, st, art.Descriptor)
	if err != nil {
		return nil, err
	}
	if a.Digest() != art.Descriptor.Digest {
		return nil, fmt.Errorf("pack %s in the cache (%s) does not rebuild to its own digest (%s): %w", ref, art.Descriptor.Digest, a.Digest(), integrity.ErrDigestMismatch)
	}
	return &loadedPack{pack: p, artifact: a, from: "cache " + ref}, nil
}

// loadArtifactPack loads a pack from its artifact in src and derives its
// artifact again, which must give the same digest.
func loadArtifactPack(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*pack.Pack, *artifact.Pack, error) {
	if desc.Size > integrity.MaxManifestSize {
		return nil, nil, fmt.Errorf("manifest %s: %w", desc.Digest, integrity.ErrTooLarge)
	}
	mb, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		return nil, nil, err
	}
	fsys, err := artifact.PackFS(ctx, src, mb)
	if err != nil {
		return nil, nil, err
	}
	p, err := pack.Load(fsys)
	if err != nil {
		return nil, nil, err
	}
	var opts artifact.BuildOptions
	a, err := artifact.Build(p, opts)
	if err != nil {
		return nil, nil, err
	}
	if a.Digest() != desc.Digest {
		// A created time (SOURCE_DATE_EPOCH at build) is the one thing the
		// files do not carry: take it from the manifest and try again.
		if t := createdOf(mb); t != nil {
			opts.Created = t
			if a, err = artifact.Build(p, opts); err != nil {
				return nil, nil, err
			}
		}
	}
	return p, a, nil
}

func createdOf(manifest []byte) *time.Time {
	var m ocispec.Manifest
	if json.Unmarshal(manifest, &m) != nil {
		return nil
	}
	v, ok := m.Annotations[artifact.AnnotationCreated]
	if !ok {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil
	}
	return &t
}

// subjectDigest returns the subject digest of manifest bytes, or "".
func subjectDigest(manifest []byte) digest.Digest {
	var m struct {
		Subject *ocispec.Descriptor `json:"subject"`
	}
	if json.Unmarshal(manifest, &m) != nil || m.Subject == nil {
		return ""
	}
	return m.Subject.Digest
}
