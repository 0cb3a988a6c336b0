package mirror

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"stellaops.io/stella/artifact"
)

// maxReferrers bounds the referrers followed from one artifact, recursively.
const maxReferrers = 1000

// progressEvery is how many bytes of a blob pass between BlobProgress events.
const progressEvery = 1 << 20

// Artifact is one artifact to push: its manifest in the source and the tag
// it gets at the destination.
type Artifact struct {
	Descriptor ocispec.Descriptor
	// Tag is the tag to set; "" means the destination reference's tag, if any.
	Tag string
}

// Push copies artifacts from src into the repository dst, each with its
// referrers: the manifests of src whose subject is the artifact (found
// through src.Predecessors), recursively. Children are sent before the
// manifests that name them and referrers after their subject, so a manifest
// is never visible before its content. A manifest with a subject lands where
// the registry lists referrers: its referrers API, or, when it has none, the
// sha256-<hex> tag-schema index that oras-go maintains; Push then lists the
// referrers of each subject and sends again any the listing lacks. Finally
// each artifact is tagged.
//
// An artifact given with a subject of its own (evidence, whose subject is
// its pack) is pushed beside that subject: the destination repository must
// hold it already (ErrSubjectMissing otherwise, before anything is sent),
// and the source need not.
//
// Nothing the registry already has is sent again. A manifest the registry
// has by digest (a referrer's only with its subject) is trusted with its
// whole graph, as oras does, and nothing below it is checked
// (Report.ManifestsTrusted); with Options.CheckBlobs, manifests are always
// descended into and every blob checked with a HEAD request, so a blob
// missing under a present manifest is restored, and a manifest is sent only
// when absent. An interrupted push run again sends only what is missing. Transient failures are retried
// as Options.Retry says; Push stops at the first artifact that fails.
//
// dst names a repository and optionally a tag (for artifacts given without
// one); a digest is refused (ErrInvalidReference). Errors wrap the
// sentinels of this package, or the source's own errors.
func Push(ctx context.Context, src content.ReadOnlyGraphStorage, artifacts []Artifact, dst Reference, opts Options) (Report, error) {
	rep := Report{Destination: dst.String()}
	if err := dst.validate(); err != nil {
		return rep, fmt.Errorf("push to %s: %w", dst, err)
	}
	if dst.Digest != "" {
		return rep, fmt.Errorf("push to %s: %w: a push names a repository and a tag, not a digest", dst, ErrInvalidReference)
	}
	artifacts = slices.Clone(artifacts)
	tags := map[string]digest.Digest{}
	for i, a := range artifacts {
		if a.Tag == "" {
			artifacts[i].Tag, a.Tag = dst.Tag, dst.Tag
		}
		if a.Tag == "" {
			continue
		}
		if err := checkTag(a.Tag); err != nil {
			return rep, fmt.Errorf("push to %s: %w", dst.Name(), err)
		}
		if d, ok := tags[a.Tag]; ok && d != a.Descriptor.Digest {
			return rep, fmt.Errorf("push to %s: %w: tag %q given to %s and %s", dst.Name(), ErrInvalidReference, a.Tag, d, a.Descriptor.Digest)
		}
		tags[a.Tag] = a.Descriptor.Digest
	}
	op, err := newOperation(opts)
	if err != nil {
		return rep, err
	}
	if err := op.allow(dst.Host); err != nil {
		return rep, fmt.Errorf("push to %s: %w", dst.Name(), err)
	}
	rep.CheckedBlobs = opts.CheckBlobs
	p := &pusher{op: op, src: src, repo: op.repository(dst), rep: &rep}
	for _, a := range artifacts {
		if err := p.push(ctx, a); err != nil {
			rep.Retries = int(op.retries.Load())
			return rep, classify(fmt.Errorf("push %s to %s: %w", a.Descriptor.Digest, dst.Name(), err))
		}
	}
	rep.Retries = int(op.retries.Load())
	return rep, nil
}

// pusher carries one Push.
type pusher struct {
	op   *operation
	src  content.ReadOnlyGraphStorage
	repo *remote.Repository

	mu     sync.Mutex // guards rep, sent and the referrers found
	rep    *Report
	sent   map[digest.Digest]bool // manifests sent by this push
	found  map[digest.Digest]referrer
	artRef string
	art    ocispec.Descriptor
	// rootRef is the artifact itself when it has a subject (evidence
	// pushed beside its pack): it must be listed as a referrer too.
	rootRef *referrer
	// there caches what the registry said of a manifest (trust mode);
	// skippedSet the blobs counted as skipped, each once.
	there      map[digest.Digest]bool
	skippedSet map[digest.Digest]bool
}

// referrer is a manifest of the source whose subject is another one.
type referrer struct {
	desc    ocispec.Descriptor // with ArtifactType
	subject ocispec.Descriptor
	data    []byte
}

func (p *pusher) push(ctx context.Context, a Artifact) error {
	data, err := fetchManifest(ctx, p.src, a.Descriptor)
	if err != nil {
		return fmt.Errorf("source manifest: %w", err)
	}
	info, err := parseManifest(a.Descriptor, data)
	if err != nil {
		return fmt.Errorf("source manifest: %w", err)
	}
	root := plain(a.Descriptor)
	root.ArtifactType = info.artifactType
	p.mu.Lock()
	p.sent, p.found, p.art, p.artRef, p.rootRef = map[digest.Digest]bool{}, map[digest.Digest]referrer{}, root, a.Tag, nil
	p.there, p.skippedSet = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	if info.subject != nil {
		p.rootRef = &referrer{desc: root, subject: plain(*info.subject), data: data}
	}
	p.mu.Unlock()
	p.op.emit(Event{Kind: ArtifactStarted, Artifact: root, Ref: a.Tag})

	if p.rootRef != nil {
		err = p.op.run(ctx, func(ctx context.Context) error { return p.checkSubject(ctx, p.rootRef.subject) })
	}
	if err == nil {
		err = p.copy(ctx, root)
	}
	if err == nil {
		err = p.op.run(ctx, p.ensureReferrers)
	}
	if err == nil && a.Tag != "" {
		err = p.op.run(ctx, func(ctx context.Context) error { return p.tag(ctx, root, data, a.Tag) })
	}
	p.op.emit(Event{Kind: ArtifactDone, Artifact: root, Ref: a.Tag, Err: err})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.rep.Artifacts = append(p.rep.Artifacts, ArtifactReport{Descriptor: root, Kind: artifact.KindOf(root.ArtifactType),
			Ref: a.Tag, Subject: subjectDigest(info.subject), Status: StatusFailed, Err: classify(err)})
		return err
	}
	status := func(d digest.Digest) Status {
		if p.sent[d] {
			return StatusCopied
		}
		return StatusPresent
	}
	p.rep.Artifacts = append(p.rep.Artifacts, ArtifactReport{Descriptor: root, Kind: artifact.KindOf(root.ArtifactType),
		Ref: a.Tag, Subject: subjectDigest(info.subject), Status: status(root.Digest)})
	for _, r := range p.sortedReferrers() {
		p.rep.Artifacts = append(p.rep.Artifacts, ArtifactReport{Descriptor: r.desc, Kind: artifact.KindOf(r.desc.ArtifactType),
			Subject: r.subject.Digest, Status: status(r.desc.Digest)})
	}
	return nil
}

func subjectDigest(s *ocispec.Descriptor) digest.Digest {
	if s == nil {
		return ""
	}
	return s.Digest
}

// checkSubject refuses to push an artifact whose subject the destination
// repository lacks: a referrer lands beside its subject, never alone.
func (p *pusher) checkSubject(ctx context.Context, subject ocispec.Descriptor) error {
	ok, err := p.repo.Exists(ctx, subject)
	if err != nil {
		return fmt.Errorf("subject %s: %w", subject.Digest, err)
	}
	if !ok {
		return fmt.Errorf("subject %s: %w", subject.Digest, ErrSubjectMissing)
	}
	return nil
}

// successors are content.Successors, but for the subject of the artifact
// pushed itself, which checkSubject found at the destination and the
// source need not hold.
func (p *pusher) successors(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	out, err := content.Successors(ctx, f, desc)
	if err != nil || p.rootRef == nil || desc.Digest != p.rootRef.desc.Digest {
		return out, err
	}
	return slices.DeleteFunc(out, func(d ocispec.Descriptor) bool { return d.Digest == p.rootRef.subject.Digest }), nil
}

// copy copies the graph of root and of its referrers.
func (p *pusher) copy(ctx context.Context, root ocispec.Descriptor) error {
	return p.op.run(ctx, func(ctx context.Context) error {
		return oras.ExtendedCopyGraph(ctx, p.src, &pushTarget{p: p}, root, oras.ExtendedCopyGraphOptions{
			CopyGraphOptions: oras.CopyGraphOptions{
				Concurrency:    p.op.opts.Concurrency,
				FindSuccessors: p.successors,
				PreCopy: func(_ context.Context, desc ocispec.Descriptor) error {
					p.event(BlobStarted, desc, 0)
					return nil
				},
				OnCopySkipped: func(_ context.Context, desc ocispec.Descriptor) error {
					p.skipped(desc)
					return nil
				},
			},
			FindPredecessors: p.referrers,
		})
	})
}

// referrers returns the manifests of src whose subject is node.
// src.Predecessors may also name manifests that hold node as a config,
// layer or index member: those are not referrers and do not travel.
func (p *pusher) referrers(ctx context.Context, src content.ReadOnlyGraphStorage, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	if !isManifestType(node.MediaType) {
		return nil, nil
	}
	preds, err := src.Predecessors(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, pd := range preds {
		if !isManifestType(pd.MediaType) {
			continue
		}
		data, err := fetchManifest(ctx, src, pd)
		if err != nil {
			return nil, fmt.Errorf("referrer %s: %w", pd.Digest, err)
		}
		info, err := parseManifest(pd, data)
		if err != nil {
			return nil, fmt.Errorf("referrer: %w", err)
		}
		if info.subject == nil || info.subject.Digest != node.Digest {
			continue
		}
		d := plain(pd)
		d.ArtifactType = info.artifactType
		p.mu.Lock()
		p.found[d.Digest] = referrer{desc: d, subject: plain(node), data: data}
		n := len(p.found)
		p.mu.Unlock()
		if n > maxReferrers {
			return nil, fmt.Errorf("%s: %w: more than %d", p.art.Digest, ErrTooManyReferrers, maxReferrers)
		}
		out = append(out, d)
	}
	return out, nil
}

func (p *pusher) sortedReferrers() []referrer {
	rs := make([]referrer, 0, len(p.found))
	for _, r := range p.found {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b referrer) int {
		return cmp.Or(cmp.Compare(a.subject.Digest, b.subject.Digest), cmp.Compare(a.desc.Digest, b.desc.Digest))
	})
	return rs
}

// ensureReferrers lists the referrers of every subject at the destination
// and sends again each one the listing lacks (its manifest was there but
// its tag-schema index entry was not, e.g. after an interrupted push).
func (p *pusher) ensureReferrers(ctx context.Context) error {
	p.mu.Lock()
	rs := p.sortedReferrers()
	if p.rootRef != nil {
		rs = append(rs, *p.rootRef)
		slices.SortStableFunc(rs, func(a, b referrer) int { return cmp.Compare(a.subject.Digest, b.subject.Digest) })
	}
	p.mu.Unlock()
	for i := 0; i < len(rs); {
		subject := rs[i].subject
		listed := map[digest.Digest]bool{}
		err := p.repo.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
			for _, d := range page {
				listed[d.Digest] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list referrers of %s: %w", subject.Digest, err)
		}
		for ; i < len(rs) && rs[i].subject.Digest == subject.Digest; i++ {
			r := rs[i]
			if listed[r.desc.Digest] {
				continue
			}
			if err := p.repo.Push(ctx, r.desc, bytes.NewReader(r.data)); err != nil {
				return fmt.Errorf("index referrer %s of %s: %w", r.desc.Digest, subject.Digest, err)
			}
			p.mu.Lock()
			p.sent[r.desc.Digest] = true
			p.mu.Unlock()
		}
	}
	return nil
}

// tag points tag at root unless it already does.
func (p *pusher) tag(ctx context.Context, root ocispec.Descriptor, data []byte, tag string) error {
	cur, err := p.repo.Resolve(ctx, tag)
	switch {
	case err == nil && cur.Digest == root.Digest:
		return nil
	case err != nil && !errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("resolve tag %s: %w", tag, err)
	}
	if err := p.repo.PushReference(ctx, root, bytes.NewReader(data), tag); err != nil {
		return fmt.Errorf("tag %s: %w", tag, err)
	}
	return nil
}

func (p *pusher) event(kind EventKind, blob ocispec.Descriptor, done int64) {
	p.mu.Lock()
	art, ref := p.art, p.artRef
	p.mu.Unlock()
	p.op.emit(Event{Kind: kind, Artifact: art, Ref: ref, Blob: plain(blob), Done: done, Total: blob.Size})
}

func (p *pusher) skipped(desc ocispec.Descriptor) {
	p.mu.Lock()
	if p.skippedSet[desc.Digest] {
		p.mu.Unlock()
		return
	}
	p.skippedSet[desc.Digest] = true
	p.rep.BlobsSkipped++
	p.rep.BytesSkipped += desc.Size
	p.mu.Unlock()
	p.event(BlobSkipped, desc, desc.Size)
}

func (p *pusher) copied(desc ocispec.Descriptor) {
	p.mu.Lock()
	p.rep.BlobsCopied++
	p.rep.BytesCopied += desc.Size
	if isManifestType(desc.MediaType) {
		p.sent[desc.Digest] = true
	}
	p.mu.Unlock()
	p.event(BlobCopied, desc, desc.Size)
}

// pushTarget is the destination repository as oras-go's copy sees it.
// Without Options.CheckBlobs, a manifest the registry has is trusted
// (see trusted) and the copy stops there. With it, it never claims a
// manifest exists, so the copy always descends and checks every blob
// below; a manifest found present when its turn comes is not sent again.
type pushTarget struct {
	p *pusher
}

func (t *pushTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if isManifestType(desc.MediaType) {
		if t.p.op.opts.CheckBlobs {
			return false, nil
		}
		return t.p.trusted(ctx, desc)
	}
	return t.p.repo.Exists(ctx, desc)
}

// manifestThere asks the registry whether it has a manifest, once per push.
func (p *pusher) manifestThere(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	p.mu.Lock()
	ok, asked := p.there[desc.Digest]
	p.mu.Unlock()
	if asked {
		return ok, nil
	}
	ok, err := p.repo.Exists(ctx, desc)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	p.there[desc.Digest] = ok
	p.mu.Unlock()
	return ok, nil
}

// trusted says whether the copy may stop at a manifest: the registry has
// it, and, for a referrer, its subject too (a registry takes a referrer
// whose subject it lacks). Its graph in the source is then counted as
// skipped, without a request.
func (p *pusher) trusted(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	ok, err := p.manifestThere(ctx, desc)
	if err != nil || !ok {
		return false, err
	}
	p.mu.Lock()
	r, isReferrer := p.found[desc.Digest]
	p.mu.Unlock()
	if isReferrer {
		if ok, err := p.manifestThere(ctx, r.subject); err != nil || !ok {
			return false, err
		}
	}
	p.mu.Lock()
	p.rep.ManifestsTrusted++
	p.mu.Unlock()
	return true, p.countTrusted(ctx, desc)
}

// countTrusted counts the graph of a trusted manifest, in the source, as
// skipped (the manifest itself is counted by the copy's OnCopySkipped).
func (p *pusher) countTrusted(ctx context.Context, desc ocispec.Descriptor) error {
	queue := []ocispec.Descriptor{desc}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n.Digest != desc.Digest {
			p.skipped(n)
		}
		if !isManifestType(n.MediaType) {
			continue
		}
		succ, err := p.successors(ctx, p.src, n)
		if err != nil {
			return err
		}
		queue = append(queue, succ...)
	}
	return nil
}

func (t *pushTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return t.p.repo.Fetch(ctx, desc)
}

func (t *pushTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if isManifestType(desc.MediaType) {
		data, err := readVerified(r, desc)
		if err != nil {
			return err
		}
		ok, err := t.p.repo.Exists(ctx, desc)
		if err != nil {
			return err
		}
		if ok {
			t.p.skipped(desc)
			return nil
		}
		// A byte slice body can be replayed, so the transport retries it.
		if err := t.p.repo.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			return err
		}
		t.p.copied(desc)
		return nil
	}
	if err := t.p.repo.Push(ctx, desc, &progressReader{r: r, p: t.p, desc: desc}); err != nil {
		return err
	}
	t.p.copied(desc)
	return nil
}

// progressReader reports the bytes of a blob as the registry takes them.
type progressReader struct {
	r          io.Reader
	p          *pusher
	desc       ocispec.Descriptor
	done, last int64
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.done += int64(n)
	if r.done-r.last >= progressEvery || (r.done == r.desc.Size && r.last != r.done) {
		r.last = r.done
		r.p.event(BlobProgress, r.desc, r.done)
	}
	return n, err
}
