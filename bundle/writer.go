package bundle

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/internal/safefile"
)

// WriteOptions tune the writers.
type WriteOptions struct {
	// Progress, if set, is called as the bundle is written with the bytes
	// written so far and the total size of the bundle file.
	Progress func(done, total int64)
	// AllowAnyMediaType lets foreign OCI content (any config, layer and
	// artifact type) into the bundle. Readers refuse such a bundle unless
	// they are given the same option.
	AllowAnyMediaType bool
}

// Summary describes a written bundle.
type Summary struct {
	Entries []Entry       // as listed in index.json, in its order
	Blobs   int           // number of blobs, manifests included
	Size    int64         // size of the bundle file (of all parts together)
	Digest  digest.Digest // sha256 of the bundle file (of all parts concatenated)
	Parts   []Part        // the parts of a split write, nil otherwise
}

// Write writes a bundle holding entries and everything they reference
// (config, layers, manifests of an index, recursively) to w, reading blobs
// from src. A manifest's subject is not followed: a referrer travels with
// its subject only if both are entries.
//
// Manifests are fetched once and kept in memory (each at most
// integrity.MaxManifestSize); other blobs are streamed from src, hashed while they are
// copied, and a blob whose content disagrees with its descriptor fails the
// write with integrity.ErrDigestMismatch or integrity.ErrSizeMismatch naming its digest. The
// output is deterministic: the same entries and content give the same bytes.
func Write(ctx context.Context, w io.Writer, src content.Fetcher, entries []Entry, opts WriteOptions) (Summary, error) {
	l, err := planLayout(ctx, src, entries, opts.AllowAnyMediaType)
	if err != nil {
		return Summary{}, err
	}
	return l.write(ctx, w, src, opts.Progress)
}

// WriteFile writes a bundle to path atomically: on any failure no file (and
// no partial file) is left at path.
func WriteFile(ctx context.Context, path string, src content.Fetcher, entries []Entry, opts WriteOptions) (Summary, error) {
	l, err := planLayout(ctx, src, entries, opts.AllowAnyMediaType)
	if err != nil {
		return Summary{}, err
	}
	f, err := safefile.Create(path, 0o644)
	if err != nil {
		return Summary{}, err
	}
	defer f.Abort()
	sum, err := l.write(ctx, f, src, opts.Progress)
	if err != nil {
		return Summary{}, err
	}
	if err := f.Commit(); err != nil {
		return Summary{}, err
	}
	return sum, nil
}

// layoutPlan is everything about a bundle known before its blobs are
// streamed.
type layoutPlan struct {
	entries   []Entry
	index     []byte
	sums      []byte
	blobs     []ocispec.Descriptor // sorted by digest
	manifests map[digest.Digest][]byte
}

// planner walks the entries' graphs in src.
type planner struct {
	src       content.Fetcher
	allowAny  bool
	blobs     map[digest.Digest]ocispec.Descriptor
	manifests map[digest.Digest][]byte
	nodes     map[digest.Digest]*node
}

func planLayout(ctx context.Context, src content.Fetcher, entries []Entry, allowAny bool) (*layoutPlan, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no entries", ErrInvalidEntry)
	}
	p := &planner{
		src:       src,
		allowAny:  allowAny,
		blobs:     map[digest.Digest]ocispec.Descriptor{},
		manifests: map[digest.Digest][]byte{},
		nodes:     map[digest.Digest]*node{},
	}
	type entryKey struct {
		digest    digest.Digest
		kind, ref string
	}
	refs := map[string]digest.Digest{}
	seen := map[entryKey]bool{}
	var out []Entry
	for _, e := range entries {
		d := e.Descriptor
		if err := checkEntry(e); err != nil {
			return nil, err
		}
		key := entryKey{d.Digest, e.Kind, e.Ref}
		if seen[key] {
			continue // the same entry twice is one entry
		}
		seen[key] = true
		if e.Ref != "" {
			if other, ok := refs[e.Ref]; ok && other != d.Digest {
				return nil, fmt.Errorf("%w: ref %s names both %s and %s", ErrInvalidEntry, e.Ref, other, d.Digest)
			}
			refs[e.Ref] = d.Digest
		}
		n, err := p.manifest(ctx, d, nil)
		if err != nil {
			return nil, err
		}
		if err := n.checkKind(e.Kind); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidEntry, d.Digest, err)
		}
		if e.Ref == "" && n.subject == nil {
			return nil, fmt.Errorf("%w: %s: a ref is required for an artifact without subject", ErrInvalidEntry, d.Digest)
		}
		out = append(out, indexEntry(e, n))
	}
	slices.SortFunc(out, compareEntries)

	l := &layoutPlan{entries: out, manifests: p.manifests}
	for _, d := range p.blobs {
		l.blobs = append(l.blobs, d)
	}
	slices.SortFunc(l.blobs, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })

	var err error
	if l.index, err = encodeIndex(out); err != nil {
		return nil, err
	}
	var sums bytes.Buffer
	for _, d := range l.blobs {
		fmt.Fprintf(&sums, "%s  %s\n", d.Digest.Encoded(), blobPath(d.Digest))
	}
	fmt.Fprintf(&sums, "%s  %s\n", digest.FromBytes(l.index).Encoded(), IndexFile)
	fmt.Fprintf(&sums, "%s  %s\n", digest.FromString(layoutContent).Encoded(), LayoutFile)
	l.sums = sums.Bytes()
	return l, nil
}

// checkEntry checks what can be checked of an entry before fetching it.
func checkEntry(e Entry) error {
	d := e.Descriptor
	if !kinds[e.Kind] {
		return fmt.Errorf("%w: %s: unknown kind %q", ErrInvalidEntry, d.Digest, e.Kind)
	}
	if !isManifestType(d.MediaType) {
		return fmt.Errorf("%w: %s: media type %q is not a manifest", ErrInvalidEntry, d.Digest, d.MediaType)
	}
	if _, err := parseDigest(d.Digest); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if e.Ref != "" {
		if err := checkRef(e.Ref); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidEntry, d.Digest, err)
		}
	}
	return nil
}

// indexEntry is the index.json descriptor of an entry: identity, the
// manifest's artifactType, the platform if the caller gave one, and only
// stella's annotations.
func indexEntry(e Entry, n *node) Entry {
	a := map[string]string{artifact.AnnotationKind: e.Kind}
	if e.Ref != "" {
		a[artifact.AnnotationRef] = e.Ref
		a[ocispec.AnnotationRefName] = e.Ref
	}
	d := ocispec.Descriptor{
		MediaType:    n.desc.MediaType,
		Digest:       n.desc.Digest,
		Size:         n.desc.Size,
		ArtifactType: n.desc.ArtifactType,
		Platform:     e.Descriptor.Platform,
		Annotations:  a,
	}
	return Entry{Descriptor: d, Kind: e.Kind, Ref: e.Ref}
}

// compareEntries orders index.json by (kind, ref, digest).
func compareEntries(a, b Entry) int {
	return cmp.Or(
		strings.Compare(a.Kind, b.Kind),
		strings.Compare(a.Ref, b.Ref),
		strings.Compare(string(a.Descriptor.Digest), string(b.Descriptor.Digest)),
	)
}

// encodeIndex is the canonical (RFC 8785) JSON of the bundle's index.
func encodeIndex(entries []Entry) ([]byte, error) {
	ix := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: make([]ocispec.Descriptor, 0, len(entries)),
	}
	for _, e := range entries {
		ix.Manifests = append(ix.Manifests, e.Descriptor)
	}
	return canonical.Marshal(ix)
}

// manifest fetches, verifies and parses the manifest d, and adds it and
// everything it references to the plan.
func (p *planner) manifest(ctx context.Context, d ocispec.Descriptor, stack []digest.Digest) (*node, error) {
	if slices.Contains(stack, d.Digest) {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, ErrCycle)
	}
	if len(stack) > maxIndexDepth {
		return nil, fmt.Errorf("manifest %s: %w: indexes nested deeper than %d", d.Digest, integrity.ErrInvalidManifest, maxIndexDepth)
	}
	if err := p.addBlob(d); err != nil {
		return nil, err
	}
	if n, ok := p.nodes[d.Digest]; ok {
		return n, nil
	}
	b, err := fetchManifest(ctx, p.src, d)
	if err != nil {
		return nil, err
	}
	n, err := parseManifest(b, d, p.allowAny)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	p.manifests[d.Digest] = b
	p.nodes[d.Digest] = n
	for _, c := range n.children {
		if n.index {
			if _, err := p.manifest(ctx, c, append(stack, d.Digest)); err != nil {
				return nil, err
			}
			continue
		}
		if err := p.addBlob(c); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (p *planner) addBlob(d ocispec.Descriptor) error {
	if old, ok := p.blobs[d.Digest]; ok {
		if old.Size != d.Size {
			return fmt.Errorf("blob %s: %w: described as %d and %d bytes", d.Digest, integrity.ErrSizeMismatch, old.Size, d.Size)
		}
		return nil
	}
	p.blobs[d.Digest] = ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	return nil
}

// fetchManifest fetches a manifest of at most integrity.MaxManifestSize
// bytes and checks its size and digest.
func fetchManifest(ctx context.Context, src content.Fetcher, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > integrity.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes, limit %d", d.Digest, integrity.ErrTooLarge, d.Size, integrity.MaxManifestSize)
	}
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	b, err := integrity.ReadAll(rc, d, integrity.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return b, nil
}

// write streams the bundle: oci-layout, index.json, SHA256SUMS, then the
// blobs by digest.
func (l *layoutPlan) write(ctx context.Context, w io.Writer, src content.Fetcher, progress func(done, total int64)) (Summary, error) {
	sizes := []int64{int64(len(layoutContent)), int64(len(l.index)), int64(len(l.sums))}
	for _, d := range l.blobs {
		sizes = append(sizes, d.Size)
	}
	// The bundle's sha256 and the writes to w are done behind, in chunks,
	// while the blobs are read and checked (writeBehind).
	behind := newWriteBehind(w, integrity.NewHash(digest.SHA256))
	defer behind.abort() // after close, nothing: a failed write writes no more
	cw := &countingWriter{w: behind, total: tarSize(sizes), progress: progress}
	tw := tar.NewWriter(cw)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{LayoutFile, []byte(layoutContent)},
		{IndexFile, l.index},
		{ChecksumsFile, l.sums},
	} {
		if err := tw.WriteHeader(fileHeader(f.name, int64(len(f.data)))); err != nil {
			return Summary{}, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return Summary{}, err
		}
	}
	for _, d := range l.blobs {
		if err := ctx.Err(); err != nil {
			return Summary{}, err
		}
		if err := tw.WriteHeader(fileHeader(blobPath(d.Digest), d.Size)); err != nil {
			return Summary{}, err
		}
		if b, ok := l.manifests[d.Digest]; ok {
			if _, err := tw.Write(b); err != nil {
				return Summary{}, err
			}
			continue
		}
		if err := copyBlob(ctx, tw, src, d); err != nil {
			return Summary{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Summary{}, err
	}
	if err := behind.close(); err != nil {
		return Summary{}, err
	}
	cw.report(true)
	return Summary{
		Entries: l.entries,
		Blobs:   len(l.blobs),
		Size:    cw.n,
		Digest:  digest.NewDigest(digest.SHA256, behind.h),
	}, nil
}

// copyBlob streams one blob from src to w, checking size and digest.
func copyBlob(ctx context.Context, w io.Writer, src content.Fetcher, d ocispec.Descriptor) error {
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	// A blob from the cache is already checked as it streams (an
	// integrity.Reader of the same descriptor): NewReader then does not
	// hash it again. The context is checked at each write.
	v := integrity.NewReader(rc, d)
	v.Wrap = func(err error) error { return fmt.Errorf("blob %s: %w", d.Digest, err) }
	_, err = v.WriteTo(&ctxWriter{ctx: ctx, w: w})
	return err
}

// ctxWriter stops a copy when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// tarSize is the size of the tar stella writes for files of these sizes.
func tarSize(sizes []int64) int64 {
	t := int64(1024) // end-of-archive marker
	for _, s := range sizes {
		t += 512 + (s+511)/512*512
		if s > maxUSTARSize {
			t += 1024 // PAX header entry with the size record
		}
	}
	return t
}

// countingWriter counts what passes and reports progress about it.
type countingWriter struct {
	w        io.Writer
	n        int64
	total    int64
	last     int64
	progress func(done, total int64)
}

const progressStep = 1 << 20

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.report(false)
	return n, err
}

// writeBehindChunk is the size of the chunks a writeBehind gathers.
const writeBehindChunk = 1 << 20

// writeBehindSlots is how many chunks a writeBehind holds at most.
const writeBehindSlots = 6

// writeBehind gathers what it is given into chunks (so a bundle of 10,000
// small files is not 30,000 writes: a tar header, a blob and its padding
// each) and writes them to w, and hashes them into h, behind the caller:
// one goroutine writes each chunk, another then hashes it, so a bundle's
// sha256 (one pass over every byte), its writes to the file and the reads
// and checks of the blobs run beside each other on two cores. A write
// fails once one to w has failed, and nothing more is written to w; close
// sends the last chunk, waits for every write and returns the first error.
type writeBehind struct {
	h      hash.Hash
	cur    []byte // the chunk being filled
	jobs   chan []byte
	hashes chan []byte
	free   chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error
	shut   bool
}

func newWriteBehind(w io.Writer, h hash.Hash) *writeBehind {
	b := &writeBehind{h: h, jobs: make(chan []byte, writeBehindSlots), hashes: make(chan []byte, writeBehindSlots),
		free: make(chan []byte, writeBehindSlots), done: make(chan struct{})}
	for range writeBehindSlots {
		b.free <- make([]byte, 0, writeBehindChunk)
	}
	go func() {
		defer close(b.hashes)
		for p := range b.jobs {
			if b.failed() == nil {
				if _, err := w.Write(p); err != nil {
					b.mu.Lock()
					b.err = err
					b.mu.Unlock()
				}
			}
			b.hashes <- p
		}
	}()
	go func() {
		defer close(b.done)
		for p := range b.hashes {
			if b.failed() == nil {
				h.Write(p)
			}
			b.free <- p[:0]
		}
	}()
	return b
}

func (b *writeBehind) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Write copies p into chunks, handing each full one to the goroutines.
func (b *writeBehind) Write(p []byte) (int, error) {
	if err := b.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if b.cur == nil {
			b.cur = <-b.free
		}
		k := copy(b.cur[len(b.cur):cap(b.cur)], p)
		b.cur = b.cur[:len(b.cur)+k]
		n, p = n+k, p[k:]
		if len(b.cur) == cap(b.cur) {
			b.jobs <- b.cur
			b.cur = nil
			if err := b.failed(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// errWriteAborted: a bundle's write stopped on an error of its own.
var errWriteAborted = errors.New("bundle write aborted")

// abort drops the chunk being filled and every chunk not yet written, and
// waits for the goroutines: a write that failed (a blob that did not check
// out, a cancelled context) sends nothing more to w. After close it does
// nothing.
func (b *writeBehind) abort() {
	if b.shut {
		return
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = errWriteAborted
	}
	b.mu.Unlock()
	b.cur = nil
	_ = b.close()
}

// close hands on the chunk being filled, waits for every write and
// returns the first error; it may be called again.
func (b *writeBehind) close() error {
	if !b.shut {
		b.shut = true
		if len(b.cur) > 0 {
			b.jobs <- b.cur
		}
		b.cur = nil
		close(b.jobs)
		<-b.done
	}
	return b.failed()
}

func (c *countingWriter) report(final bool) {
	if c.progress == nil || (!final && c.n-c.last < progressStep) {
		return
	}
	c.last = c.n
	c.progress(c.n, max(c.total, c.n))
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
