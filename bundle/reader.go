package bundle

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

// OpenOptions tune Open.
type OpenOptions struct {
	// AllowAnyMediaType accepts foreign OCI content: any config, layer and
	// artifact type. Manifests must still be OCI image manifests or indexes.
	AllowAnyMediaType bool
	// Progress, if set, is called while the parts of a split set are
	// checked by Open, with the bytes hashed so far and the size of the
	// set (not with DeferPartChecks).
	Progress func(done, total int64)
	// DeferPartChecks leaves the sha256 of each part of a split set, and
	// the whole-file sha256, to be checked as the bytes are read rather
	// than by Open in a pass of its own (docs/bundle-format.md §7): Open
	// checks only the parts manifest and the presence and size of each
	// part. Verify then completes the checks before it returns; a caller
	// that does not call Verify must call CheckParts, and act on its
	// error, before it reports success or keeps anything it read.
	DeferPartChecks bool
}

// Reader is an open bundle, read in place (one file or the parts of a
// split set; never unpacked or copied). It is a read-only graph storage of
// oras-go: Fetch verifies digest and size while streaming. A Reader is safe
// for concurrent use.
type Reader struct {
	ra       io.ReaderAt
	closer   io.Closer
	allowAny bool
	lim      limits
	parts    *partCheck // the deferred part checks of a split set, or nil
	name     string     // the path given to Open

	files map[string]tarEntry // oci-layout, index.json, SHA256SUMS
	// blobs locates each blob; an entry's name is empty when it is the
	// blob's own path (blobPath): read it through blob.
	blobs map[digest.Digest]tarEntry
	// nodes are the manifests, without their annotations (annotate reads
	// them again when asked): with the layers' annotations, which a node
	// keeps only for zstd layers, they were most of the memory a bundle of
	// many small packs held for as long as it was open.
	nodes map[digest.Digest]*node
	// entries are index.json's, with nil annotations where they are the
	// ones its kind and ref make (entryAnnotations), as a bundle stella
	// writes has them.
	entries []Entry
	refs    map[string]int // ref → its entry
	// preds are the referrers of each subject, parents the manifests
	// that hold each blob as config, layer or index member (most blobs of
	// a bundle, one parent each: a pointer, not a descriptor, apiece).
	// Predecessors gives both.
	preds   map[digest.Digest][]ocispec.Descriptor // without annotations
	parents map[digest.Digest][]*node

	// decompressions counts the zstd blobs decompressed, so that tests
	// can hold the work to one per distinct blob.
	decompressions atomic.Int64
}

// tarEntry locates the data of one regular file of the tar.
type tarEntry struct {
	name      string // as written in the tar
	off, size int64
	// digest of a blob, held once: the manifests' descriptors of it share
	// it (heldDigest) instead of each holding its own copy.
	digest digest.Digest
}

// heldDigest returns d as the bundle's blob map holds it, or d.
func (r *Reader) heldDigest(d digest.Digest) digest.Digest {
	if e, ok := r.blobs[d]; ok && e.digest != "" {
		return e.digest
	}
	return d
}

// blob returns where the blob d lies, with its name as written in the
// tar. A bundle of many small packs has tens of thousands of blobs: their
// names are kept only when they differ from blobPath (a "./" prefix).
func (r *Reader) blob(d digest.Digest) (tarEntry, bool) {
	e, ok := r.blobs[d]
	if ok && e.name == "" {
		e.name = blobPath(d)
	}
	return e, ok
}

var (
	_ content.ReadOnlyGraphStorage = (*Reader)(nil)
	_ content.Resolver             = (*Reader)(nil)
)

// Open opens the bundle at path: a bundle file, or a split set named by its
// parts manifest (path.parts.json), one of its parts (path.001) or the
// bundle's name when only the parts exist. The parts of a split set are
// checked first (presence, size, sha256, order), or, with DeferPartChecks,
// presence and size first and the rest as the set is read (CheckParts).
// Open then scans the tar
// headers without reading blob data, checks the layout, SHA256SUMS,
// index.json and every manifest (hashed before it is parsed), and refuses
// anything else: see the errors of this package. Blob contents are checked
// by Fetch as they stream and by Verify.
func Open(ctx context.Context, path string, opts OpenOptions) (*Reader, error) {
	base, split, err := locate(path)
	if err != nil {
		return nil, fmt.Errorf("bundle file %s: %w", path, fileErr(err))
	}
	var (
		ra     io.ReaderAt
		closer io.Closer
		size   int64
		pc     *partCheck
	)
	if split {
		var mr *multiReaderAt
		if opts.DeferPartChecks {
			mr, pc, err = openPartsDeferred(ctx, base, opts.Progress)
		} else {
			mr, err = openParts(ctx, base, opts.Progress)
		}
		if err != nil {
			return nil, fmt.Errorf("open bundle %s: %w", path, err)
		}
		ra, closer, size = mr, mr, mr.size
	} else {
		fi, err := os.Stat(base)
		if err != nil {
			return nil, fmt.Errorf("bundle file %s: %w", path, fileErr(err))
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("bundle file %s: %w", path, ErrIsFolder)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("open bundle %s: %w: not a regular file", path, ErrInvalidTar)
		}
		f, err := os.Open(base)
		if err != nil {
			return nil, fmt.Errorf("bundle file %s: %w", path, fileErr(err))
		}
		ra, closer, size = f, f, fi.Size()
	}
	r, err := load(ctx, ra, size, opts.AllowAnyMediaType, defaultLimits)
	if err != nil && pc != nil {
		// A damaged or misplaced part explains a refusal best: the parts
		// are checked now, and the first bad one is reported instead.
		if perr := pc.check(ctx); perr != nil {
			err = perr
		}
	}
	if err != nil {
		closer.Close()
		return nil, fmt.Errorf("open bundle %s: %w", path, err)
	}
	if pc != nil {
		// From here on, what is read through the set feeds its part
		// checks (the reads of load above are headers and small files,
		// out of order: they are not).
		ra.(*multiReaderAt).check = pc
		r.parts = pc
	}
	r.closer = closer
	r.name = path
	return r, nil
}

// CheckParts completes the part checks of a split set opened with
// DeferPartChecks: it reads, in order, whatever the reads so far have not
// covered, then compares each part's sha256 with the parts manifest and
// the whole-file sha256, and returns the first problem in part order
// (ErrPartDigest, ErrPartOrder, then ErrPartsManifest), naming the part,
// as Open would have. It runs once; later and concurrent calls return the
// same result. It returns nil for a bundle file and for a split set
// checked by Open.
func (r *Reader) CheckParts(ctx context.Context) error {
	if r.parts == nil {
		return nil
	}
	if err := r.parts.check(ctx); err != nil {
		return fmt.Errorf("check parts of bundle %s: %w", r.name, err)
	}
	return nil
}

// fileErr is the cause of a failed stat or open without the system call
// and path that the caller names already ("file not found", "permission
// denied"), still matching fs.ErrNotExist and fs.ErrPermission.
func fileErr(err error) error {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case errors.Is(pe.Err, fs.ErrNotExist):
		return fileCause{msg: "file not found", is: fs.ErrNotExist}
	case errors.Is(pe.Err, fs.ErrPermission):
		return fileCause{msg: "permission denied", is: fs.ErrPermission}
	}
	return pe.Err
}

type fileCause struct {
	msg string
	is  error
}

func (c fileCause) Error() string        { return c.msg }
func (c fileCause) Is(target error) bool { return target == c.is }

// Close releases the bundle's files.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

// Entries returns the artifacts listed in index.json, in its order.
func (r *Reader) Entries() []Entry {
	out := slices.Clone(r.entries)
	for i := range out {
		out[i].Descriptor = r.entryDescriptor(out[i])
	}
	return out
}

// entryDescriptor is an entry's descriptor as index.json lists it, with
// annotations the caller may change.
func (r *Reader) entryDescriptor(e Entry) ocispec.Descriptor {
	d := e.Descriptor
	if d.Annotations == nil {
		d.Annotations = entryAnnotations(e.Kind, e.Ref)
	} else {
		d.Annotations = maps.Clone(d.Annotations)
	}
	return d
}

// entryAnnotations are the annotations stella writes on an index.json
// entry of kind and ref (indexEntry).
func entryAnnotations(kind, ref string) map[string]string {
	a := map[string]string{artifact.AnnotationKind: kind}
	if ref != "" {
		a[artifact.AnnotationRef] = ref
		a[ocispec.AnnotationRefName] = ref
	}
	return a
}

// Fetch returns the content of target. The reader hashes what it returns;
// the read that completes the content fails with integrity.ErrDigestMismatch (or
// integrity.ErrSizeMismatch) instead of returning bytes that disagree with target, so
// a consumer never gets a complete, wrong blob. A digest absent from the
// bundle gives ErrNotFound.
func (r *Reader) Fetch(ctx context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	e, ok := r.blob(target.Digest)
	if !ok {
		return nil, fmt.Errorf("%s: %w", target.Digest, ErrNotFound)
	}
	if target.Size != e.size {
		return nil, entryErr(e.name, integrity.ErrSizeMismatch, "descriptor says %d bytes, bundle holds %d", target.Size, e.size)
	}
	return r.open(e, target.Digest), nil
}

// FetchUnverified returns the bytes the bundle holds for target without
// hashing them. It is for a consumer that checks digest and size itself as it
// reads — the cache does, for every blob it writes — so that an import hashes
// each blob once instead of twice. Everyone else uses Fetch.
func (r *Reader) FetchUnverified(ctx context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	e, ok := r.blob(target.Digest)
	if !ok {
		return nil, fmt.Errorf("%s: %w", target.Digest, ErrNotFound)
	}
	if target.Size != e.size {
		return nil, entryErr(e.name, integrity.ErrSizeMismatch, "descriptor says %d bytes, bundle holds %d", target.Size, e.size)
	}
	return io.NopCloser(io.NewSectionReader(r.ra, e.off, e.size)), nil
}

// open returns a verifying reader of the blob d held in e; its errors name
// the entry.
func (r *Reader) open(e tarEntry, d digest.Digest) *integrity.Reader {
	v := integrity.NewReader(io.NewSectionReader(r.ra, e.off, e.size), ocispec.Descriptor{Digest: d, Size: e.size})
	v.Wrap = func(err error) error { return &EntryError{Path: e.name, Err: err} }
	return v
}

// Exists says whether the bundle holds target (same digest and size).
func (r *Reader) Exists(ctx context.Context, target ocispec.Descriptor) (bool, error) {
	e, ok := r.blob(target.Digest)
	return ok && e.size == target.Size, nil
}

// Predecessors returns the manifests of the bundle that point at node, as
// subject (referrers), config, layer or index member, sorted by digest; nil
// if there are none. The descriptors carry the manifests' artifactType and
// annotations, as the referrers API shows them.
func (r *Reader) Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	out := slices.Clone(r.preds[node.Digest])
	for _, n := range r.parents[node.Digest] {
		out = append(out, n.desc)
	}
	if len(r.parents[node.Digest]) > 0 && len(r.preds[node.Digest]) > 0 {
		sortCompact(&out)
	}
	for i := range out {
		var err error
		if out[i], err = r.annotate(out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// annotate returns the descriptor d of a manifest of the bundle with the
// manifest's annotations, which the reader does not keep: it reads the
// manifest again, checked against its digest as when the bundle was opened.
func (r *Reader) annotate(d ocispec.Descriptor) (ocispec.Descriptor, error) {
	if n, ok := r.nodes[d.Digest]; !ok || !n.annotated {
		return d, nil
	}
	b, err := r.readManifest(d, r.lim)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		e, _ := r.blob(d.Digest)
		return ocispec.Descriptor{}, &EntryError{Path: e.name, Err: fmt.Errorf("%w: %v", integrity.ErrInvalidManifest, err)}
	}
	d.Annotations = m.Annotations
	return d, nil
}

// Resolve returns the descriptor of an entry by its ref ("<id>:<version>")
// or of any manifest or blob by its digest. Unknown references give
// ErrNotFound.
func (r *Reader) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	if i, ok := r.refs[reference]; ok {
		return r.entryDescriptor(r.entries[i]), nil
	}
	d := digest.Digest(reference)
	if n, ok := r.nodes[d]; ok {
		d, err := r.annotate(n.desc)
		return plain(d), err
	}
	if e, ok := r.blob(d); ok {
		return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: e.size}, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%s: %w", reference, ErrNotFound)
}

// load checks the tar in ra and builds the Reader.
func load(ctx context.Context, ra io.ReaderAt, size int64, allowAny bool, lim limits) (*Reader, error) {
	r := &Reader{
		ra:       ra,
		allowAny: allowAny,
		lim:      lim,
		files:    map[string]tarEntry{},
		blobs:    map[digest.Digest]tarEntry{},
		nodes:    map[digest.Digest]*node{},
		refs:     map[string]int{},
		preds:    map[digest.Digest][]ocispec.Descriptor{},
	}
	if err := r.scan(ctx, size, lim); err != nil {
		return nil, err
	}
	if err := r.checkFiles(lim); err != nil {
		return nil, err
	}
	if err := r.loadIndex(lim); err != nil {
		return nil, err
	}
	g := &graph{r: r, lim: lim, referenced: map[digest.Digest]bool{}, load: r.readManifest, strings: map[string]string{}}
	for _, e := range r.entries {
		n, err := g.walk(e.Descriptor, nil)
		if err != nil {
			return nil, err
		}
		if err := n.checkKind(e.Kind); err != nil {
			return nil, entryErr(IndexFile, ErrInvalidIndex, "%s: %v", e.Descriptor.Digest, err)
		}
		if e.Ref == "" && n.subject == nil {
			return nil, entryErr(IndexFile, ErrInvalidIndex, "%s: no ref and no subject", e.Descriptor.Digest)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(r.blobs)) {
		if !g.referenced[d] {
			return nil, entryErr(blobPath(d), ErrExtraBlob, "")
		}
	}
	for d, ps := range r.preds {
		sortCompact(&ps)
		r.preds[d] = ps
	}
	for d, ps := range r.parents {
		if len(ps) > 1 {
			slices.SortFunc(ps, func(a, b *node) int { return strings.Compare(string(a.desc.Digest), string(b.desc.Digest)) })
			r.parents[d] = slices.CompactFunc(ps, func(a, b *node) bool { return a == b })
		}
	}
	return r, nil
}

// sortCompact sorts descriptors by digest and keeps one of each digest.
func sortCompact(ds *[]ocispec.Descriptor) {
	slices.SortFunc(*ds, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	*ds = slices.CompactFunc(*ds, func(a, b ocispec.Descriptor) bool { return a.Digest == b.Digest })
}

// compressedAs names the compression a file's first bytes announce (gzip,
// zstd, xz, bzip2, zip), with a command that undoes it, or "" for none: a
// bundle compressed for the trip is a common mistake, and its tar error
// would not say so.
func compressedAs(ra io.ReaderAt) (kind, how string) {
	var b [6]byte
	n, _ := ra.ReadAt(b[:], 0)
	for _, m := range []struct{ magic, kind, how string }{
		{"\x1f\x8b", "gzip", "gunzip -k FILE"},
		{"\x28\xb5\x2f\xfd", "zstd", "zstd -d FILE"},
		{"\xfd7zXZ\x00", "xz", "xz -dk FILE"},
		{"BZh", "bzip2", "bunzip2 -k FILE"},
		{"PK\x03\x04", "zip", "unzip FILE"},
	} {
		if n >= len(m.magic) && string(b[:len(m.magic)]) == m.magic {
			return m.kind, m.how
		}
	}
	return "", ""
}

// scan reads the tar headers, seeking past the data, and records where each
// file's data lies. It refuses everything that is not a regular file of the
// layout.
func (r *Reader) scan(ctx context.Context, size int64, lim limits) error {
	sr := io.NewSectionReader(r.ra, 0, size)
	tr := tar.NewReader(sr)
	var (
		count int
		end   int64  // offset after the last entry's padded data
		last  string // name of the last entry, for errors
	)
	// fail names the last entry read, where the tar went wrong; at the
	// start, it says what the file looks like instead, when it knows.
	fail := func(sentinel error, format string, args ...any) error {
		if last == "" {
			if kind, how := compressedAs(r.ra); kind != "" {
				return fmt.Errorf("%w: at the start: the file is %s-compressed, not a tar: decompress it first (%s)", ErrInvalidTar, kind, how)
			}
			if size < 512 {
				return fmt.Errorf("%w: at the start: the file has %d bytes, less than one tar header (512): not a bundle, or cut short", ErrTruncated, size)
			}
			return fmt.Errorf("%w: at the start: %s", sentinel, fmt.Sprintf(format, args...))
		}
		return entryErr(last, sentinel, "after this entry: "+format, args...)
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			pos, _ := sr.Seek(0, io.SeekCurrent)
			if pos-end < 1024 {
				return fail(ErrTruncated, "no end-of-archive marker")
			}
			return nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fail(ErrTruncated, "%v", err)
		}
		if err != nil && !(hdr != nil && errors.Is(err, tar.ErrInsecurePath)) {
			return fail(ErrInvalidTar, "%v", err)
		}
		if count++; count > lim.entries {
			return fmt.Errorf("%w: more than %d", ErrTooManyEntries, lim.entries)
		}
		if count%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		name, kind, err := cleanName(hdr.Name)
		if err != nil {
			return &EntryError{Path: hdr.Name, Err: err}
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeDir:
			if kind != entryDir || hdr.Size != 0 {
				return entryErr(hdr.Name, ErrUnexpectedEntry, "directory")
			}
			last = hdr.Name
			continue
		case tar.TypeSymlink:
			return entryErr(hdr.Name, ErrSymlink, "to %q", hdr.Linkname)
		case tar.TypeLink:
			return entryErr(hdr.Name, ErrHardLink, "to %q", hdr.Linkname)
		default:
			return entryErr(hdr.Name, ErrUnsupportedEntryType, "type flag %q", hdr.Typeflag)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return entryErr(hdr.Name, ErrUnsupportedEntryType, "sparse file")
			}
		}
		if kind == entryOther || kind == entryDir {
			return entryErr(hdr.Name, ErrUnexpectedEntry, "")
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		switch limit := int64(-1); kind {
		case entryLayout:
			limit = maxLayoutSize
			fallthrough
		case entryIndex:
			if limit < 0 {
				limit = lim.manifest
			}
			fallthrough
		case entryChecksums:
			if limit < 0 {
				limit = lim.checksums
			}
			if hdr.Size > limit {
				return entryErr(hdr.Name, integrity.ErrTooLarge, "%d bytes, limit %d", hdr.Size, limit)
			}
		}
		if hdr.Size > size-pos {
			return entryErr(hdr.Name, ErrTruncated, "declares %d bytes, only %d remain", hdr.Size, size-pos)
		}
		e := tarEntry{name: hdr.Name, off: pos, size: hdr.Size}
		if kind == entryBlob {
			d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(name, BlobsDir))
			if _, dup := r.blobs[d]; dup {
				return entryErr(hdr.Name, ErrDuplicateEntry, "")
			}
			if hdr.Name == blobPath(d) {
				e.name = "" // blob restores it
			}
			e.digest = d
			r.blobs[d] = e
		} else {
			if _, dup := r.files[name]; dup {
				return entryErr(hdr.Name, ErrDuplicateEntry, "")
			}
			r.files[name] = e
		}
		end = pos + (hdr.Size+511)/512*512
		last = hdr.Name
	}
}

// readFile reads a small file of the tar (its size is already bounded).
func (r *Reader) readFile(e tarEntry) ([]byte, error) {
	b := make([]byte, e.size)
	if _, err := r.ra.ReadAt(b, e.off); err != nil {
		return nil, entryErr(e.name, ErrTruncated, "%v", err)
	}
	return b, nil
}

// checkFiles checks oci-layout and SHA256SUMS, and index.json against it.
func (r *Reader) checkFiles(lim limits) error {
	le, ok := r.files[LayoutFile]
	if !ok {
		return entryErr(LayoutFile, ErrBadLayout, "missing")
	}
	ie, ok := r.files[IndexFile]
	if !ok {
		return entryErr(IndexFile, ErrInvalidIndex, "missing")
	}
	se, ok := r.files[ChecksumsFile]
	if !ok {
		return entryErr(ChecksumsFile, ErrChecksums, "missing")
	}
	sums, err := r.readChecksums(se)
	if err != nil {
		return err
	}
	for _, e := range []tarEntry{le, ie} {
		b, err := r.readFile(e)
		if err != nil {
			return err
		}
		if got := digest.FromBytes(b).Encoded(); got != sums[e.name] {
			return entryErr(e.name, integrity.ErrDigestMismatch, "SHA256SUMS says %s, actual %s", sums[e.name], got)
		}
		if e == le {
			var l ocispec.ImageLayout
			if err := json.Unmarshal(b, &l); err != nil {
				return entryErr(e.name, ErrBadLayout, "%v", err)
			}
			if l.Version != ocispec.ImageLayoutVersion {
				return entryErr(e.name, ErrBadLayout, "imageLayoutVersion %q, want %q", l.Version, ocispec.ImageLayoutVersion)
			}
		}
	}
	return nil
}

// readChecksums parses SHA256SUMS ("<hex>  <path>" lines) and checks that
// it lists every other file exactly once, with each blob's own name.
// It returns the sums of the non-blob files, keyed by their tar names.
func (r *Reader) readChecksums(se tarEntry) (map[string]string, error) {
	sc := bufio.NewScanner(io.NewSectionReader(r.ra, se.off, se.size))
	sc.Buffer(make([]byte, 0, 512), 512)
	listed := map[string]bool{}
	out := map[string]string{}
	for line := 1; sc.Scan(); line++ {
		sum, p, ok := strings.Cut(sc.Text(), "  ")
		if !ok || !isLowerHex64(sum) {
			return nil, entryErr(se.name, ErrChecksums, "line %d is not \"<sha256 hex>  <path>\"", line)
		}
		name, kind, err := cleanName(p)
		if err != nil || kind == entryChecksums || kind == entryOther || kind == entryDir {
			return nil, entryErr(se.name, ErrChecksums, "line %d lists %q, not a file of the layout", line, p)
		}
		if listed[name] {
			return nil, entryErr(se.name, ErrChecksums, "lists %q twice", p)
		}
		listed[name] = true
		if kind == entryBlob {
			hex := strings.TrimPrefix(name, BlobsDir)
			e, ok := r.blob(digest.NewDigestFromEncoded(digest.SHA256, hex))
			if !ok {
				return nil, entryErr(se.name, ErrChecksums, "lists %q, which is not in the bundle", p)
			}
			if sum != hex {
				return nil, entryErr(e.name, ErrChecksums, "SHA256SUMS says %s", sum)
			}
			continue
		}
		e, ok := r.files[name]
		if !ok {
			return nil, entryErr(se.name, ErrChecksums, "lists %q, which is not in the bundle", p)
		}
		out[e.name] = sum
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, entryErr(se.name, ErrChecksums, "line longer than 512 bytes")
		}
		return nil, entryErr(se.name, ErrTruncated, "%v", err)
	}
	for _, name := range []string{LayoutFile, IndexFile} {
		if !listed[name] {
			return nil, entryErr(r.files[name].name, ErrChecksums, "not listed in SHA256SUMS")
		}
	}
	for _, d := range slices.Sorted(maps.Keys(r.blobs)) {
		if !listed[blobPath(d)] {
			e, _ := r.blob(d)
			return nil, entryErr(e.name, ErrChecksums, "not listed in SHA256SUMS")
		}
	}
	return out, nil
}

// loadIndex parses index.json (already checked against SHA256SUMS) into
// the bundle's entries.
func (r *Reader) loadIndex(lim limits) error {
	ie := r.files[IndexFile]
	b, err := r.readFile(ie)
	if err != nil {
		return err
	}
	bad := func(format string, args ...any) error { return entryErr(ie.name, ErrInvalidIndex, format, args...) }
	var ix ocispec.Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return bad("%v", err)
	}
	if ix.SchemaVersion != 2 {
		return bad("schemaVersion %d, want 2", ix.SchemaVersion)
	}
	if ix.MediaType != ocispec.MediaTypeImageIndex {
		return bad("mediaType %q, want %q", ix.MediaType, ocispec.MediaTypeImageIndex)
	}
	if len(ix.Manifests) == 0 {
		return bad("lists no artifacts")
	}
	if len(ix.Manifests) > lim.index {
		return entryErr(ie.name, ErrTooManyEntries, "lists %d artifacts, limit %d (MaxIndexEntries)", len(ix.Manifests), lim.index)
	}
	type key struct {
		d   digest.Digest
		ref string
	}
	seen := map[key]bool{}
	for i, d := range ix.Manifests {
		if !isManifestType(d.MediaType) {
			return entryErr(ie.name, integrity.ErrUnsupportedMediaType, "manifest %d: %q", i, d.MediaType)
		}
		if _, err := parseDigest(d.Digest); err != nil {
			return bad("manifest %d: %v", i, err)
		}
		kind, ref := d.Annotations[artifact.AnnotationKind], d.Annotations[artifact.AnnotationRef]
		if !kinds[kind] {
			return bad("manifest %d (%s): kind %q", i, d.Digest, kind)
		}
		if ref != "" {
			if err := checkRef(ref); err != nil {
				return bad("manifest %d (%s): %v", i, d.Digest, err)
			}
			if old, ok := r.refs[ref]; ok && r.entries[old].Descriptor.Digest != d.Digest {
				return bad("ref %s names both %s and %s", ref, r.entries[old].Descriptor.Digest, d.Digest)
			}
			if _, ok := r.refs[ref]; !ok {
				r.refs[ref] = len(r.entries)
			}
		}
		if name := d.Annotations[ocispec.AnnotationRefName]; name != ref {
			return bad("manifest %d (%s): %s %q differs from %s %q", i, d.Digest, ocispec.AnnotationRefName, name, artifact.AnnotationRef, ref)
		}
		if seen[key{d.Digest, ref}] {
			return bad("manifest %s listed twice", d.Digest)
		}
		seen[key{d.Digest, ref}] = true
		d.Digest = r.heldDigest(d.Digest)
		if maps.Equal(d.Annotations, entryAnnotations(kind, ref)) {
			d.Annotations = nil // entryDescriptor makes them again
		}
		r.entries = append(r.entries, Entry{Descriptor: d, Kind: kind, Ref: ref})
	}
	return nil
}

// readManifest reads the manifest d from the tar, bounded by the limits,
// and checks its size and digest before anyone parses it.
func (r *Reader) readManifest(d ocispec.Descriptor, lim limits) ([]byte, error) {
	e, _ := r.blob(d.Digest)
	b, err := integrity.ReadAll(io.NewSectionReader(r.ra, e.off, e.size), ocispec.Descriptor{Digest: d.Digest, Size: e.size}, lim.manifest)
	if err != nil {
		return nil, &EntryError{Path: e.name, Err: err}
	}
	return b, nil
}

// graph walks the manifests of a bundle from index.json, checking that
// every referenced blob is present with its declared size.
type graph struct {
	r          *Reader
	lim        limits
	referenced map[digest.Digest]bool
	load       func(ocispec.Descriptor, limits) ([]byte, error)
	strings    map[string]string // media and artifact types, held once
}

// intern returns s, held once for the whole graph.
func (g *graph) intern(s string) string {
	if g.strings == nil {
		return s
	}
	if v, ok := g.strings[s]; ok {
		return v
	}
	g.strings[s] = s
	return s
}

func (g *graph) walk(d ocispec.Descriptor, stack []digest.Digest) (*node, error) {
	r := g.r
	p := blobPath(d.Digest)
	if slices.Contains(stack, d.Digest) {
		return nil, entryErr(p, ErrCycle, "index %s lists it again", stack[len(stack)-1])
	}
	if len(stack) > g.lim.depth {
		return nil, entryErr(p, integrity.ErrInvalidManifest, "indexes nested deeper than %d", g.lim.depth)
	}
	if err := g.blob(d, "manifest"); err != nil {
		return nil, err
	}
	if n, ok := r.nodes[d.Digest]; ok {
		return n, nil
	}
	b, err := g.load(d, g.lim)
	if err != nil {
		return nil, err
	}
	n, err := parseManifest(b, d, r.allowAny)
	if err != nil {
		return nil, &EntryError{Path: p, Err: err}
	}
	n.annotated, n.desc.Annotations = n.desc.Annotations != nil, nil
	n.desc.ArtifactType, n.typ = g.intern(n.desc.ArtifactType), g.intern(n.typ)
	n.desc.Digest = r.heldDigest(n.desc.Digest)
	for i := range n.children {
		n.children[i].MediaType = g.intern(n.children[i].MediaType)
		n.children[i].Digest = r.heldDigest(n.children[i].Digest)
	}
	if n.subject != nil {
		n.subject.Digest = r.heldDigest(n.subject.Digest)
	}
	r.nodes[n.desc.Digest] = n
	for _, c := range n.children {
		if n.index {
			if _, err := g.walk(c, append(stack, d.Digest)); err != nil {
				return nil, err
			}
		} else if err := g.blob(c, "blob of manifest "+string(d.Digest)); err != nil {
			return nil, err
		}
		if r.parents == nil {
			r.parents = map[digest.Digest][]*node{}
		}
		r.parents[c.Digest] = append(r.parents[c.Digest], n)
	}
	if n.subject != nil {
		r.preds[n.subject.Digest] = append(r.preds[n.subject.Digest], n.desc)
	}
	return n, nil
}

// blob checks that d is in the bundle with its declared size.
func (g *graph) blob(d ocispec.Descriptor, role string) error {
	e, ok := g.r.blob(d.Digest)
	if !ok {
		return entryErr(blobPath(d.Digest), ErrBlobMissing, "%s", role)
	}
	if e.size != d.Size {
		return entryErr(e.name, integrity.ErrSizeMismatch, "%s: descriptor says %d bytes, bundle holds %d", role, d.Size, e.size)
	}
	g.referenced[d.Digest] = true
	return nil
}
