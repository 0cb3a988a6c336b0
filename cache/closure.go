package cache

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// Closure returns the artifacts refs name, each followed by its referrers
// and theirs (a signature of a response of a request...), depth first,
// every level sorted by digest, every artifact once: the order a bundle or
// a registry needs to receive them in (subjects before referrers). Kinds
// are as recorded. A ref that names nothing is ErrNotFound.
func (s *Store) Closure(ctx context.Context, refs []string) ([]Artifact, error) {
	var out []Artifact
	seen := map[digest.Digest]bool{}
	var walk func(tx *bbolt.Tx, subject digest.Digest) error
	walk = func(tx *bbolt.Tx, subject digest.Digest) error {
		ds, err := links(tx, subject) // sorted by digest: keys are subject 0x00 referrer
		if err != nil {
			return err
		}
		for _, d := range ds {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			var ar artifactRecord
			ok, err := getJSON(tx, bucketArtifacts, d.Digest.String(), &ar)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("referrer %s of %s has no artifact record: %w", d.Digest, subject, ErrIndexCorrupt)
			}
			out = append(out, Artifact{Descriptor: d, Kind: ar.Kind})
			if err := walk(tx, d.Digest); err != nil {
				return err
			}
		}
		return nil
	}
	for _, ref := range refs {
		art, err := s.Resolve(ctx, ref)
		if err != nil {
			return nil, err
		}
		if seen[art.Descriptor.Digest] {
			continue
		}
		seen[art.Descriptor.Digest] = true
		out = append(out, art)
		if err := s.view(ctx, func(tx *bbolt.Tx) error { return walk(tx, art.Descriptor.Digest) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}
