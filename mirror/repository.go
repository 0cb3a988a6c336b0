package mirror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// Repository is a registry repository opened for reading what was pushed
// beside an artifact: its referrers (evidence from every host that ran a
// pack), and their content. It is a content.Fetcher whose every fetch is
// hashed while it streams and checked against the descriptor.
type Repository struct {
	op  *operation
	ref Reference
	src *remoteSource
}

// Open opens ref's repository for reading with opts. It makes no request;
// Options.Allow is asked about the host here (ErrNetworkBlocked).
func Open(ref Reference, opts Options) (*Repository, error) {
	if err := ref.validate(); err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	op, err := newOperation(opts)
	if err != nil {
		return nil, err
	}
	if err := op.allow(ref.Host); err != nil {
		return nil, fmt.Errorf("open %s: %w", ref.Name(), err)
	}
	return &Repository{op: op, ref: ref, src: &remoteSource{repo: op.repository(ref), name: ref.Name(), manifests: map[digest.Digest][]byte{}}}, nil
}

// Resolve resolves the reference's digest, else its tag, to the manifest
// it names (ErrInvalidReference without either, ErrNotFound when the
// registry has neither).
func (r *Repository) Resolve(ctx context.Context) (ocispec.Descriptor, error) {
	reference := r.ref.Tag
	if r.ref.Digest != "" {
		reference = r.ref.Digest.String()
	}
	if reference == "" {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w: name a tag or a digest", r.ref, ErrInvalidReference)
	}
	var d ocispec.Descriptor
	err := r.op.run(ctx, func(ctx context.Context) error {
		var err error
		d, err = r.src.repo.Resolve(ctx, reference)
		return err
	})
	if errors.Is(err, errdef.ErrNotFound) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return ocispec.Descriptor{}, classify(fmt.Errorf("resolve %s: %w", r.ref, err))
	}
	return plain(d), nil
}

// Referrers lists the manifests whose subject is subject, of artifactType
// ("" for any), through the registry's referrers API or, where it has
// none, the sha256-<hex> tag schema; sorted by digest, at most
// maxReferrers (ErrTooManyReferrers). The listing is the registry's word:
// a caller reads each manifest (Fetch) before believing its type or
// subject.
func (r *Repository) Referrers(ctx context.Context, subject ocispec.Descriptor, artifactType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	err := r.op.run(ctx, func(ctx context.Context) error {
		out = out[:0]
		return r.src.repo.Referrers(ctx, subject, artifactType, func(page []ocispec.Descriptor) error {
			out = append(out, page...)
			if len(out) > maxReferrers {
				return fmt.Errorf("%s: %w: more than %d", subject.Digest, ErrTooManyReferrers, maxReferrers)
			}
			return nil
		})
	})
	if err != nil {
		return nil, classify(fmt.Errorf("list referrers of %s in %s: %w", subject.Digest, r.ref.Name(), err))
	}
	for i := range out {
		out[i] = plain(out[i])
	}
	slices.SortFunc(out, func(a, b ocispec.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	return slices.CompactFunc(out, func(a, b ocispec.Descriptor) bool { return a.Digest == b.Digest }), nil
}

// Fetch reads a manifest or blob of the repository, hashed while it
// streams and checked against desc's digest and size (errors wrap
// integrity.ErrDigestMismatch, integrity.ErrSizeMismatch; ErrNotFound).
func (r *Repository) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := r.src.Fetch(ctx, desc)
	if err != nil {
		return nil, classify(err)
	}
	return rc, nil
}
