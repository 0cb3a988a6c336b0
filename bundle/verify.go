package bundle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

// zstd window bounds: at least what common encoders use for small inputs,
// at most what a bomb may make the decoder allocate.
const (
	minZstdWindow = 8 << 20
	maxZstdWindow = 128 << 20
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Concurrency is the number of blobs checked at once; 0 means 2.
	Concurrency int
	// MaxUncompressedSize caps the uncompressed size of a compressed layer;
	// 0 means DefaultMaxUncompressedSize.
	MaxUncompressedSize int64
	// MaxTotalUncompressed caps the uncompressed size of all the distinct
	// compressed blobs together; 0 means DefaultMaxTotalUncompressed.
	MaxTotalUncompressed int64
	// Progress, if set, is called with the bytes checked so far and the
	// total to check. It may be called from several goroutines, never at
	// the same time.
	Progress func(done, total int64)
}

// Report says what Verify checked.
type Report struct {
	Entries []EntryReport // one per index.json entry, in its order
	Blobs   int           // distinct blobs hashed (manifests included)
	Bytes   int64         // bytes hashed
}

// EntryReport is the result for one artifact: the blobs of its graph
// (manifest, config, layers, recursively) and the first failure among them.
type EntryReport struct {
	Entry
	Blobs int
	Bytes int64
	Err   error // nil when every blob checked out
}

// Verify re-hashes every blob of the bundle (streaming, bounded memory,
// Concurrency blobs at once), re-checks each entry's manifest graph, and
// decompresses every blob named by a layer whose media type ends in "+zstd",
// once however many layers name it, bounded by its
// io.stellaops.uncompressed.size annotation and MaxUncompressedSize, to
// check its io.stellaops.uncompressed.digest. A layer that inflates beyond
// its bound fails as soon as it does, with ErrDecompressionLimit. Before
// reading anything it refuses, with ErrDecompressionTotal, a bundle whose
// compressed blobs declare more than MaxTotalUncompressed together. It
// checks everything, then returns the report and the first entry's error,
// if any. For a split set opened with DeferPartChecks it reads the blobs
// one at a time in file order, so that the same read checks the parts,
// and completes the part checks (CheckParts) before it returns: a bad part
// is returned, with no report, in place of any blob error it caused.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	workers := opts.Concurrency
	if workers <= 0 {
		workers = 2
	}
	// The cheap checks first: every compressed blob's annotations, and the
	// total they declare, before anything is read.
	plan, err := r.planZstd(opts.MaxUncompressedSize, opts.MaxTotalUncompressed)
	if err != nil {
		if perr := r.CheckParts(ctx); perr != nil {
			return Report{}, perr
		}
		return Report{}, err
	}
	digests := slices.Sorted(maps.Keys(r.blobs))
	order := digests
	if r.parts != nil {
		// A split set whose parts are checked as they are read: one
		// reader, in file order, so that the blob pass is also the part
		// check (the part and whole-file hashes run beside it).
		workers = 1
		order = slices.SortedFunc(slices.Values(digests), func(a, b digest.Digest) int {
			return cmp.Compare(r.blobs[a].off, r.blobs[b].off)
		})
	}
	var total int64
	for _, d := range digests {
		total += r.blobs[d].size
	}

	results := make(map[digest.Digest]error, len(digests))
	var (
		mu   sync.Mutex
		done atomic.Int64
		wg   sync.WaitGroup
	)
	report := func(k int64) {
		n := done.Add(k)
		if opts.Progress != nil {
			mu.Lock()
			opts.Progress(n, total)
			mu.Unlock()
		}
	}
	tasks := make(chan digest.Digest)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range tasks {
				err := r.checkBlob(ctx, d, plan, report)
				mu.Lock()
				results[d] = err
				mu.Unlock()
			}
		}()
	}
	for _, d := range order {
		if ctx.Err() != nil {
			break
		}
		tasks <- d
	}
	close(tasks)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	// A bad part is reported as such, before any blob it damaged.
	if err := r.CheckParts(ctx); err != nil {
		return Report{}, err
	}

	rep := Report{Blobs: len(digests)}
	for _, d := range digests {
		rep.Bytes += r.blobs[d].size
	}
	var first error
	for _, e := range r.entries {
		er := EntryReport{Entry: e}
		er.Descriptor = r.entryDescriptor(e) // with index.json's annotations
		for _, d := range r.closure(e.Descriptor.Digest) {
			er.Blobs++
			er.Bytes += r.blobs[d].size
			if err := results[d]; err != nil && er.Err == nil {
				er.Err = err
			}
		}
		if er.Err != nil && first == nil {
			first = fmt.Errorf("%s %s: %w", e.Kind, entryName(e), er.Err)
		}
		rep.Entries = append(rep.Entries, er)
	}
	return rep, first
}

func entryName(e Entry) string {
	if e.Ref != "" {
		return e.Ref
	}
	return string(e.Descriptor.Digest)
}

// closure lists the blobs of a manifest's graph, sorted by digest.
func (r *Reader) closure(root digest.Digest) []digest.Digest {
	seen := map[digest.Digest]bool{}
	var visit func(d digest.Digest)
	visit = func(d digest.Digest) {
		if seen[d] {
			return
		}
		seen[d] = true
		if n, ok := r.nodes[d]; ok {
			for _, c := range n.children {
				visit(c.Digest)
			}
		}
	}
	visit(root)
	return slices.Sorted(func(yield func(digest.Digest) bool) {
		for d := range seen {
			if !yield(d) {
				return
			}
		}
	})
}

// zstdCheck is how a blob named by zstd layers is checked: the one bound
// and uncompressed digest that every layer naming it declares, or hashed
// only (foreign layers without annotations), or refused by err before it is
// read.
type zstdCheck struct {
	size     int64
	digest   digest.Digest
	hashOnly bool
	err      error
}

// planZstd decides, from the manifests alone, how each blob named by a zstd
// layer is checked: one decompression per distinct blob, never one per
// layer naming it. A layer with missing or malformed annotations, layers
// that declare different contents for the same blob, or a declared size
// over maxSize refuse that blob; declared sizes over maxTotal together
// refuse the whole bundle (ErrDecompressionTotal).
func (r *Reader) planZstd(maxSize, maxTotal int64) (map[digest.Digest]*zstdCheck, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxUncompressedSize
	}
	if maxTotal <= 0 {
		maxTotal = DefaultMaxTotalUncompressed
	}
	plan := map[digest.Digest]*zstdCheck{}
	for _, d := range slices.Sorted(maps.Keys(r.nodes)) {
		n := r.nodes[d]
		if n.index {
			continue
		}
		for _, l := range n.children {
			if !strings.HasSuffix(l.MediaType, "+zstd") {
				continue
			}
			e, ok := r.blob(l.Digest)
			if !ok {
				return nil, entryErr(blobPath(l.Digest), ErrBlobMissing, "zstd layer of %s", d)
			}
			c := r.layerCheck(e, l, maxSize)
			old, seen := plan[l.Digest]
			switch {
			case !seen || old.hashOnly:
				plan[l.Digest] = &c
			case old.err != nil || c.hashOnly:
			case c.err != nil:
				plan[l.Digest] = &c
			case c.size != old.size || c.digest != old.digest:
				plan[l.Digest] = &zstdCheck{err: entryErr(e.name, integrity.ErrInvalidManifest,
					"zstd layers naming it declare different contents: %d bytes %s and %d bytes %s", old.size, old.digest, c.size, c.digest)}
			}
		}
	}
	var total int64
	for _, d := range slices.Sorted(maps.Keys(plan)) {
		c := plan[d]
		if c.err != nil || c.hashOnly {
			continue
		}
		if c.size > maxTotal-total { // total+size > maxTotal, without overflow
			return nil, fmt.Errorf("%w: the bundle's distinct compressed blobs declare more than %d uncompressed bytes together (DefaultMaxTotalUncompressed)", ErrDecompressionTotal, maxTotal)
		}
		total += c.size
	}
	return plan, nil
}

// layerCheck reads the annotations of one zstd layer l of the blob e.
func (r *Reader) layerCheck(e tarEntry, l ocispec.Descriptor, maxSize int64) zstdCheck {
	sizeText, hasSize := l.Annotations[artifact.AnnotationUncompressedSize]
	digestText, hasDigest := l.Annotations[artifact.AnnotationUncompressedDigest]
	if !hasSize && !hasDigest && r.allowAny && !strings.HasPrefix(l.MediaType, "application/vnd.stellaops.") {
		// Foreign zstd content carries no bound: hash it only.
		return zstdCheck{hashOnly: true}
	}
	if !hasSize || !hasDigest {
		return zstdCheck{err: entryErr(e.name, integrity.ErrInvalidManifest, "zstd layer without %s and %s annotations", artifact.AnnotationUncompressedSize, artifact.AnnotationUncompressedDigest)}
	}
	usize, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || usize < 0 {
		return zstdCheck{err: entryErr(e.name, integrity.ErrInvalidManifest, "%s %q is not a size", artifact.AnnotationUncompressedSize, sizeText)}
	}
	udigest, err := parseDigest(digest.Digest(digestText))
	if err != nil {
		return zstdCheck{err: entryErr(e.name, integrity.ErrInvalidManifest, "%s: %v", artifact.AnnotationUncompressedDigest, err)}
	}
	if usize > maxSize {
		return zstdCheck{err: entryErr(e.name, ErrDecompressionLimit, "declares %d uncompressed bytes, limit %d", usize, maxSize)}
	}
	return zstdCheck{size: usize, digest: udigest}
}

// checkBlob hashes one blob and, if zstd layers name it, decompresses it
// once as plan says.
func (r *Reader) checkBlob(ctx context.Context, d digest.Digest, plan map[digest.Digest]*zstdCheck, report func(int64)) error {
	e, _ := r.blob(d)
	c, ok := plan[d]
	switch {
	case ok && c.err != nil:
		return c.err
	case !ok || c.hashOnly:
		_, err := copyBuffer(ctx, io.Discard, r.open(e, d), make([]byte, 256<<10), report)
		return err
	}
	return r.checkZstd(ctx, e, d, *c, report)
}

// checkZstd checks a zstd blob: its compressed digest, and that it
// decompresses to exactly the size and digest its layers declare.
func (r *Reader) checkZstd(ctx context.Context, e tarEntry, d digest.Digest, c zstdCheck, report func(int64)) error {
	r.decompressions.Add(1)
	usize, udigest := c.size, c.digest
	vr := r.open(e, d)
	counted := &reportingReader{r: &ctxReader{ctx: ctx, r: vr}, report: report}
	window := uint64(min(max(usize, minZstdWindow), maxZstdWindow))
	dec, err := zstd.NewReader(counted,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(window),
		zstd.WithDecoderMaxMemory(window),
	)
	if err != nil {
		return err
	}
	h := integrity.NewHash(digest.SHA256)
	n, derr := io.Copy(h, io.LimitReader(dec, usize+1))
	dec.Close()
	// The compressed digest comes first: a tampered blob is a digest
	// mismatch, whatever it decompresses to.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return err
	}
	switch {
	case derr != nil && (errors.Is(derr, zstd.ErrWindowSizeExceeded) || errors.Is(derr, zstd.ErrDecoderSizeExceeded)):
		return entryErr(e.name, ErrDecompressionLimit, "%v", derr)
	case derr != nil:
		return entryErr(e.name, ErrBadCompression, "%v", derr)
	case n > usize:
		return entryErr(e.name, ErrDecompressionLimit, "inflates beyond the declared %d bytes", usize)
	case n < usize:
		return entryErr(e.name, integrity.ErrSizeMismatch, "decompresses to %d bytes, %s says %d", n, artifact.AnnotationUncompressedSize, usize)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != udigest {
		return entryErr(e.name, integrity.ErrDigestMismatch, "uncompressed content: expected %s, actual %s", udigest, got)
	}
	return nil
}

// reportingReader reports the bytes read.
type reportingReader struct {
	r      io.Reader
	report func(int64)
}

func (p *reportingReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.report(int64(n))
	}
	return n, err
}

// VerifyCompressed checks, as Verify does, only the blobs named by layers
// whose media type ends in "+zstd": each decompresses once, bounded, to its
// declared size and digest, and together they declare no more than
// DefaultMaxTotalUncompressed. Importers call it so that a decompression
// bomb never enters the cache, without hashing everything twice (Fetch
// verifies the rest while it streams). maxSize 0 means
// DefaultMaxUncompressedSize.
func (r *Reader) VerifyCompressed(ctx context.Context, maxSize int64) error {
	plan, err := r.planZstd(maxSize, 0)
	if err != nil {
		return err
	}
	nothing := func(int64) {}
	for _, d := range slices.Sorted(maps.Keys(plan)) {
		if c := plan[d]; c.err != nil {
			return c.err
		}
	}
	for _, d := range slices.Sorted(maps.Keys(plan)) {
		c := plan[d]
		e, _ := r.blob(d)
		var err error
		if c.hashOnly {
			_, err = io.Copy(io.Discard, r.open(e, d))
		} else {
			err = r.checkZstd(ctx, e, d, *c, nothing)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
