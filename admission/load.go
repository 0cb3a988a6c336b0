package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
)

// Loaded is a pack loaded from the cache and admitted.
type Loaded struct {
	Ref      string
	Pack     *pack.Pack
	Artifact *artifact.Pack
	// Verdict is the policy's decision, with each signature's check.
	Verdict Verdict
}

// LoadPack loads the pack ref names from the cache for use (a plan, a run,
// a listing of its files): it must be a pack, it must rebuild from its
// files to its own digest (integrity.ErrDigestMismatch otherwise), and it
// must pass the policy (a refusal is returned as the error), and it must be
// visible to the policy's tenant (Visible). A ref that names no pack wraps
// cache.ErrNotFound.
func (p Policy) LoadPack(ctx context.Context, st *cache.Store, ref string) (*Loaded, error) {
	art, err := st.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if art.Kind != artifact.KindPack {
		return nil, fmt.Errorf("%s is a %s, not a pack: %w", ref, art.Kind, cache.ErrNotFound)
	}
	pk, a, err := Rebuild(ctx, st, art.Descriptor)
	if err != nil {
		return nil, err
	}
	if a.Digest() != art.Descriptor.Digest {
		return nil, fmt.Errorf("pack %s in the cache (%s) does not rebuild to its own digest (%s): %w", ref, art.Descriptor.Digest, a.Digest(), integrity.ErrDigestMismatch)
	}
	v, err := p.Check(ctx, st, art, Claim{})
	if err != nil {
		return nil, err
	}
	if v.Err != nil {
		return nil, v.Err
	}
	if err := Visible(pk, p.Tenant); err != nil {
		return nil, err
	}
	return &Loaded{Ref: art.Ref, Pack: pk, Artifact: a, Verdict: v}, nil
}

// Visible is the rule of tenant visibility: a pack may be planned,
// approved or run for tenant only when its metadata.tenantVisibility lists
// the tenant or "*". A pack that sets no tenantVisibility is visible to
// every tenant. The list is in the manifest's pack config, which the pack
// digest and so every signature cover. The refusal wraps ErrNotVisible.
func Visible(pk *pack.Pack, tenant string) error {
	vis := pk.Manifest.Metadata.TenantVisibility
	if len(vis) == 0 || slices.Contains(vis, "*") || slices.Contains(vis, tenant) {
		return nil
	}
	return fmt.Errorf("pack %s is visible to tenants %s, not to tenant %s: %w", pk.ID(), strings.Join(vis, ", "), tenant, ErrNotVisible)
}

// Rebuild loads a pack from its artifact in src and derives its artifact
// again from the files, as `stella pack build` would; the caller compares
// the digests. A created time (SOURCE_DATE_EPOCH at build) is the one thing
// the files do not carry: it is taken from the manifest.
func Rebuild(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*pack.Pack, *artifact.Pack, error) {
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
	pk, err := pack.Load(fsys)
	if err != nil {
		return nil, nil, err
	}
	var opts artifact.BuildOptions
	a, err := artifact.Build(pk, opts)
	if err != nil {
		return nil, nil, err
	}
	if a.Digest() != desc.Digest {
		if t := createdOf(desc, mb); t != nil {
			opts.Created = t
			if a, err = artifact.Build(pk, opts); err != nil {
				return nil, nil, err
			}
		}
	}
	return pk, a, nil
}

func createdOf(desc ocispec.Descriptor, manifest []byte) *time.Time {
	m, err := integrity.ParseManifest(desc, manifest)
	if err != nil {
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
