package mirror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
)

// maxReferrerDepth bounds how deep referrers of referrers are followed.
const maxReferrerDepth = 8

// Importer is where a pull stores what it fetched: *cache.Store.
type Importer interface {
	Import(ctx context.Context, src content.ReadOnlyStorage, artifacts []cache.Artifact, rec cache.ImportRecord, opts cache.ImportOptions) (cache.ImportResult, error)
}

// PullOptions tune Pull.
type PullOptions struct {
	Options
	// Replace lets the pulled artifact's ref move to its digest when the
	// cache has it pointing elsewhere (cache.ImportOptions.Replace).
	Replace bool
	// Verify is passed to cache.Import: it is called for each artifact after
	// its blobs are durable in the cache and before it is recorded; an error
	// refuses it and nothing is recorded for it. A referrer whose subject was
	// refused is refused too. The fetcher reads the cache first and the
	// registry (verified) for what the cache does not hold yet; it is also a
	// content.ReadOnlyGraphStorage whose Predecessors are the referrers found
	// at the registry, so a signature policy can read the signatures of an
	// artifact before they are imported.
	Verify func(ctx context.Context, a cache.Artifact, fetcher content.Fetcher) error
	// BindSignatures records a pulled pack and its own signatures (its
	// direct referrers of kind signature) in one cache transaction
	// (cache.Artifact.WithPrevious): a crash or the failure of either
	// leaves neither recorded, so a pack admitted by a signature never
	// stays without it.
	BindSignatures bool
}

// Pull fetches the artifact src names and its referrers (signatures,
// approvals, evidence; recursively) from a registry into dst, through
// cache.Import, so each artifact is stored whole and verified or not at
// all. The tag or digest is resolved, the manifest fetched to learn its
// artifactType (its kind, artifact.KindOf; anything else is
// ErrUnsupportedArtifact), and the referrers listed through the registry's
// referrers API or, where it has none, the sha256-<hex> tag schema.
// Referrers that are not stella artifacts are listed in Report.Ignored.
//
// The artifact is recorded under its io.stellaops.ref annotation when it
// has one, else as <repository>:<tag> (<repository>@<digest> when pulled by
// digest alone); referrers are kept by their subject.
//
// Every blob is hashed while it streams from the registry and checked
// against its descriptor (integrity.ErrDigestMismatch, integrity.ErrSizeMismatch),
// and again by the cache as it writes. rec.From defaults to the reference.
func Pull(ctx context.Context, src Reference, dst Importer, rec cache.ImportRecord, opts PullOptions) (Report, error) {
	rep := Report{Source: src.String()}
	if err := src.validate(); err != nil {
		return rep, fmt.Errorf("pull %s: %w", src, err)
	}
	if src.Tag == "" && src.Digest == "" {
		return rep, fmt.Errorf("pull %s: %w: name a tag or a digest", src, ErrInvalidReference)
	}
	op, err := newOperation(opts.Options)
	if err != nil {
		return rep, err
	}
	if err := op.allow(src.Host); err != nil {
		return rep, fmt.Errorf("pull %s: %w", src, err)
	}
	pl := &puller{op: op, src: src, dst: dst, rep: &rep, opts: opts,
		rs: &remoteSource{repo: op.repository(src), name: src.Name(), manifests: map[digest.Digest][]byte{}}}
	err = pl.pull(ctx, rec)
	rep.Retries = int(op.retries.Load())
	if err != nil {
		return rep, classify(fmt.Errorf("pull %s: %w", src, err))
	}
	return rep, nil
}

// puller carries one Pull.
type puller struct {
	op   *operation
	src  Reference
	dst  Importer
	rs   *remoteSource
	rep  *Report
	opts PullOptions

	referrers map[digest.Digest][]ocispec.Descriptor // subject → stella referrers found
	subjects  map[digest.Digest]digest.Digest        // referrer → subject

	mu       sync.Mutex
	accepted map[digest.Digest]bool // artifacts the Verify hook let in
}

func (pl *puller) pull(ctx context.Context, rec cache.ImportRecord) error {
	reference := pl.src.Tag
	if pl.src.Digest != "" {
		reference = pl.src.Digest.String()
	}
	var root ocispec.Descriptor
	err := pl.op.run(ctx, func(ctx context.Context) error {
		d, err := pl.rs.repo.Resolve(ctx, reference)
		root = d
		return err
	})
	if errors.Is(err, errdef.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return err
	}
	root = plain(root)
	info, err := pl.manifest(ctx, root)
	if err != nil {
		return err
	}
	root.ArtifactType = info.artifactType
	kind := artifact.KindOf(info.artifactType)
	if kind == "" || root.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("manifest %s (%s, artifactType %q): %w", root.Digest, root.MediaType, info.artifactType, ErrUnsupportedArtifact)
	}
	ref := info.annotations[artifact.AnnotationRef]
	switch {
	case ref != "":
	case pl.src.Tag != "":
		ref = pl.src.Repository + ":" + pl.src.Tag
	case info.subject == nil:
		ref = pl.src.Repository + "@" + root.Digest.String()
	}
	artifacts := []cache.Artifact{{Descriptor: root, Kind: kind, Ref: ref}}
	found, err := pl.findReferrers(ctx, root)
	if err != nil {
		return err
	}
	ownSignature := func(a cache.Artifact) bool {
		return pl.opts.BindSignatures && kind == artifact.KindPack && a.Kind == artifact.KindSignature && pl.subjects[a.Descriptor.Digest] == root.Digest
	}
	for _, a := range found { // bound signatures right after the pack
		if ownSignature(a) {
			a.WithPrevious = true
			artifacts = append(artifacts, a)
		}
	}
	for _, a := range found {
		if !ownSignature(a) {
			artifacts = append(artifacts, a)
		}
	}

	if rec.From == "" {
		rec.From = pl.src.String()
	}
	rec.Verified = append(slices.Clone(rec.Verified), "sha256 and size of every blob, while streaming from "+pl.src.Name())
	pl.accepted = map[digest.Digest]bool{}
	results := map[digest.Digest]cache.ArtifactResult{}
	err = pl.op.run(ctx, func(ctx context.Context) error {
		res, err := pl.dst.Import(ctx, pl.rs, artifacts, rec, cache.ImportOptions{
			Replace:     pl.opts.Replace,
			Concurrency: pl.op.opts.Concurrency,
			Progress:    pl.progress,
			Verify:      pl.verify,
		})
		pl.rep.BlobsCopied += res.BlobsWritten
		pl.rep.BytesCopied += res.BytesWritten
		if res.Record.ID != 0 {
			pl.rep.ImportIDs = append(pl.rep.ImportIDs, res.Record.ID)
		}
		for _, ar := range res.Artifacts {
			prev, ok := results[ar.Artifact.Descriptor.Digest]
			if ok && prev.Status != cache.StatusFailed && ar.Status == cache.StatusPresent {
				continue // stored by an earlier try
			}
			results[ar.Artifact.Descriptor.Digest] = ar
		}
		return err
	})
	// What each artifact found already there, from the try that stored
	// it: a retry finds what an earlier try stored present again.
	for _, ar := range results {
		pl.rep.BlobsSkipped += ar.BlobsSkipped
		pl.rep.BytesSkipped += ar.BytesSkipped
	}
	for _, a := range artifacts {
		ar, ok := results[a.Descriptor.Digest]
		r := ArtifactReport{Descriptor: a.Descriptor, Kind: a.Kind, Ref: a.Ref, Subject: pl.subjects[a.Descriptor.Digest], Status: StatusFailed}
		if ok {
			r.Descriptor, r.Err = ar.Artifact.Descriptor, ar.Err
			r.Status = map[cache.Status]Status{cache.StatusNew: StatusCopied, cache.StatusLinked: StatusLinked,
				cache.StatusPresent: StatusPresent, cache.StatusFailed: StatusFailed}[ar.Status]
		}
		pl.rep.Artifacts = append(pl.rep.Artifacts, r)
	}
	return err
}

// manifest fetches a manifest (checked against its descriptor), keeps it
// for the import and parses it.
func (pl *puller) manifest(ctx context.Context, desc ocispec.Descriptor) (manifestInfo, error) {
	var data []byte
	err := pl.op.run(ctx, func(ctx context.Context) error {
		b, err := fetchManifest(ctx, pl.rs, desc)
		data = b
		return err
	})
	if err != nil {
		return manifestInfo{}, err
	}
	info, err := parseManifest(desc, data)
	if err != nil {
		return manifestInfo{}, fmt.Errorf("%w: %w", ErrUnsupportedArtifact, err)
	}
	pl.rs.manifests[desc.Digest] = data
	return info, nil
}

// findReferrers lists the referrers of root at the registry, breadth first
// to maxReferrerDepth, and returns the stella ones whose manifest names
// their subject, subjects before their referrers.
func (pl *puller) findReferrers(ctx context.Context, root ocispec.Descriptor) ([]cache.Artifact, error) {
	pl.referrers = map[digest.Digest][]ocispec.Descriptor{}
	pl.subjects = map[digest.Digest]digest.Digest{}
	seen := map[digest.Digest]bool{root.Digest: true}
	var out []cache.Artifact
	queue := []ocispec.Descriptor{root}
	for depth := 0; depth < maxReferrerDepth && len(queue) > 0; depth++ {
		var next []ocispec.Descriptor
		for _, node := range queue {
			var listed []ocispec.Descriptor
			err := pl.op.run(ctx, func(ctx context.Context) error {
				listed = listed[:0]
				return pl.rs.repo.Referrers(ctx, node, "", func(page []ocispec.Descriptor) error {
					listed = append(listed, page...)
					return nil
				})
			})
			if err != nil {
				return nil, fmt.Errorf("list referrers of %s: %w", node.Digest, err)
			}
			slices.SortFunc(listed, func(a, b ocispec.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
			for _, d := range listed {
				if seen[d.Digest] {
					continue
				}
				seen[d.Digest] = true
				if len(seen) > maxReferrers+1 {
					return nil, fmt.Errorf("%s: %w: more than %d", root.Digest, ErrTooManyReferrers, maxReferrers)
				}
				d = plain(d)
				if d.MediaType != ocispec.MediaTypeImageManifest {
					pl.rep.Ignored = append(pl.rep.Ignored, d)
					continue
				}
				info, err := pl.manifest(ctx, d)
				if err != nil {
					return nil, fmt.Errorf("referrer %s of %s: %w", d.Digest, node.Digest, err)
				}
				d.ArtifactType = info.artifactType
				kind := artifact.KindOf(info.artifactType)
				if kind == "" || info.subject == nil || info.subject.Digest != node.Digest {
					delete(pl.rs.manifests, d.Digest)
					pl.rep.Ignored = append(pl.rep.Ignored, d)
					continue
				}
				pl.referrers[node.Digest] = append(pl.referrers[node.Digest], d)
				pl.subjects[d.Digest] = node.Digest
				out = append(out, cache.Artifact{Descriptor: d, Kind: kind})
				next = append(next, d)
			}
		}
		queue = next
	}
	return out, nil
}

// verify runs the caller's hook, and refuses a referrer whose subject was
// not let in, so that a refused artifact brings none of its referrers.
func (pl *puller) verify(ctx context.Context, a cache.Artifact, f content.Fetcher) error {
	d := a.Descriptor.Digest
	if s, ok := pl.subjects[d]; ok {
		pl.mu.Lock()
		in := pl.accepted[s]
		pl.mu.Unlock()
		if !in {
			return fmt.Errorf("referrer %s of %s not imported: its subject was refused or failed: %w", d, s, admission.ErrSubjectRefused)
		}
	}
	if pl.opts.Verify != nil {
		if err := pl.opts.Verify(ctx, a, &hookView{cache: f, remote: pl.rs, referrers: pl.referrers}); err != nil {
			return err
		}
	}
	pl.mu.Lock()
	pl.accepted[d] = true
	pl.mu.Unlock()
	return nil
}

func (pl *puller) progress(p cache.Progress) {
	kinds := map[cache.ProgressEvent]EventKind{
		cache.ArtifactStarted: ArtifactStarted, cache.BlobStarted: BlobStarted, cache.BlobBytes: BlobProgress,
		cache.BlobDone: BlobCopied, cache.BlobSkipped: BlobSkipped, cache.ArtifactDone: ArtifactDone,
	}
	kind, ok := kinds[p.Event]
	if !ok {
		return
	}
	e := Event{Kind: kind, Artifact: p.Artifact.Descriptor, Ref: p.Artifact.Ref, Err: p.Err}
	if kind != ArtifactStarted && kind != ArtifactDone {
		e.Blob, e.Done, e.Total = plain(p.Blob), p.BlobBytes, p.Blob.Size
		if kind == BlobCopied || kind == BlobSkipped {
			e.Done = p.Blob.Size
		}
	}
	pl.op.emit(e)
}

// hookView is the fetcher given to PullOptions.Verify: the cache, then the
// registry; its Predecessors are the referrers found at the registry.
type hookView struct {
	cache     content.Fetcher
	remote    *remoteSource
	referrers map[digest.Digest][]ocispec.Descriptor
}

var _ content.ReadOnlyGraphStorage = (*hookView)(nil)

func (v *hookView) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := v.cache.Fetch(ctx, desc)
	if err == nil || !(errors.Is(err, cache.ErrNotFound) || errors.Is(err, errdef.ErrNotFound)) {
		return rc, err
	}
	return v.remote.Fetch(ctx, desc)
}

func (v *hookView) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if s, ok := v.cache.(content.ReadOnlyStorage); ok {
		if ok, err := s.Exists(ctx, desc); err != nil || ok {
			return ok, err
		}
	}
	return v.remote.Exists(ctx, desc)
}

func (v *hookView) Predecessors(_ context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return slices.Clone(v.referrers[node.Digest]), nil
}
