package cache

import (
	"bytes"
	"context"
	_ "crypto/sha256" // sha256 digests
	_ "crypto/sha512" // sha512 digests
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/integrity"
	"stellaops.io/stella/internal/safefile"
)

// The Store is an oras-go content storage, and a graph storage whose
// predecessors are the referrers recorded in the index.
var (
	_ content.Storage              = (*Store)(nil)
	_ content.ReadOnlyGraphStorage = (*Store)(nil)
)

const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// blobMode is the mode of blob files (less the umask): content-addressed,
// never rewritten in place.
const blobMode = 0o444

func checkDescriptor(desc ocispec.Descriptor) error {
	if err := integrity.CheckDescriptor(desc); err != nil {
		return fmt.Errorf("descriptor: %w", err)
	}
	return nil
}

func (s *Store) blobPath(d digest.Digest) string {
	return s.path(blobsDir, d.Algorithm().String(), d.Encoded())
}

// Exists reports whether the blob is in the cache: its file is present and
// has the descriptor's size, or a segment lists it with that size. A blob
// file or segment exists only after it was hashed, checked and fsynced.
func (s *Store) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	return s.has(desc.Digest, desc.Size, nil, true, nil)
}

// Fetch opens a blob of the cache (its file, or its entry in a segment). The reader (an integrity.Reader)
// verifies size and digest while it streams: a corrupted blob file ends in
// integrity.ErrDigestMismatch or integrity.ErrSizeMismatch instead of
// io.EOF, and the read that would complete a wrong blob returns none of it.
// A blob that is not there gives ErrNotFound.
func (s *Store) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.openBlob(desc.Digest, desc.Size)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	v := integrity.NewReader(f, desc)
	v.Wrap = func(err error) error { return fmt.Errorf("blob %s: %w", desc.Digest, err) }
	return v, nil
}

// Push writes a blob into the cache: hashed while it streams into a
// temporary file under ingest/, fsynced, checked against the descriptor's
// digest and size (integrity.ErrDigestMismatch, integrity.ErrSizeMismatch;
// the last bytes of a wrong blob are never written), renamed into
// blobs/ and the directory fsynced. Nothing is visible before that. A blob
// already present is not written again. Push holds the gc lock shared while
// it runs; a pushed blob no artifact refers to is removed by the next gc.
func (s *Store) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if err := checkDescriptor(desc); err != nil {
		return err
	}
	release, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer release()
	_, err = s.writeBlob(ctx, desc, r, nil)
	return err
}

// writebackChunk is how much of a blob is written before its writeback to
// disk is started (see startWriteback).
const writebackChunk = 8 << 20

// writeBlob is Push without the lock: the blob is written and made
// durable on its own. It reports whether it wrote the blob (false: already
// present). progress, if set, gets the bytes read.
func (s *Store) writeBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader, progress func(n int64)) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	if ok, err := s.Exists(ctx, desc); err != nil || ok {
		return false, err
	}
	p, err := s.ingestBlob(ctx, s.path(ingestDir), nil, desc, r, progress)
	if err != nil {
		return false, err
	}
	if _, err := s.commitBlobs([]pendingBlob{*p}); err != nil {
		return false, err
	}
	return true, nil
}

// pendingBlob is a blob written, hashed and checked in ingest/, not yet
// durable nor visible: a file of its own (tmp), or an entry of a segment
// being written (seg).
type pendingBlob struct {
	digest digest.Digest
	tmp    string
	seg    *segmentWriter
}

// ingestBlob writes a blob into a temporary file in dir (ingest/ or an
// import's folder in it), hashed while it streams and checked against the
// descriptor's digest and size (the last bytes of a wrong blob are never
// written); a small blob goes into seg instead, when set, once read whole
// and checked. It neither fsyncs nor renames: commitBlobs makes a set of
// pending blobs durable together, then visible. The caller has checked
// that the blob is not present (Exists, which checks the descriptor too).
func (s *Store) ingestBlob(ctx context.Context, dir string, seg *segmentWriter, desc ocispec.Descriptor, r io.Reader, progress func(n int64)) (*pendingBlob, error) {
	// The reader reads at most one byte more than expected: enough to know
	// the source is too long, without letting it fill the disk.
	vr := integrity.NewReader(r, desc)
	vr.Wrap = func(err error) error { return fmt.Errorf("blob %s: %w", desc.Digest, err) }
	if seg != nil && segmentable(desc.Digest, desc.Size) {
		var b bytes.Buffer
		b.Grow(int(desc.Size) + 1)
		if _, err := b.ReadFrom(vr); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(int64(b.Len()))
		}
		if err := seg.add(desc.Digest, b.Bytes()); err != nil {
			return nil, err
		}
		return &pendingBlob{digest: desc.Digest, seg: seg}, nil
	}
	tmp, _, err := s.writeIngest(ctx, dir, desc.Digest.Encoded(), "blob "+string(desc.Digest), vr, progress)
	if err != nil {
		return nil, err
	}
	return &pendingBlob{digest: desc.Digest, tmp: tmp}, nil
}

// writeIngest copies r to its end into a new temporary file in dir
// (ingest/ or an import's or a stage's folder in it; named after name), starting the writeback of every writebackChunk, and
// returns the file's path and the bytes written. It neither fsyncs nor
// renames; on failure the file is removed. what names the content in
// errors.
func (s *Store) writeIngest(ctx context.Context, dir, name, what string, r io.Reader, progress func(n int64)) (string, int64, error) {
	f, err := createIngest(dir, name)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", what, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n, flushed int64
	for {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			if _, err := f.Write(buf[:m]); err != nil {
				return "", 0, fmt.Errorf("%s: write %s: %w", what, tmp, err)
			}
			n += int64(m)
			if n-flushed >= writebackChunk {
				startWriteback(f, flushed, n-flushed)
				flushed = n
			}
			if progress != nil {
				progress(int64(m))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", 0, rerr
		}
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("%s: close %s: %w", what, tmp, err)
	}
	done = true
	return tmp, n, nil
}

// createIngest creates a new temporary file for a blob in dir, with the
// mode of blob files from the start (the file is open for writing all the
// same), so that no chmod is needed per blob.
func createIngest(dir, base string) (*os.File, error) {
	for range 10 {
		name := filepath.Join(dir, safefile.TempPrefix+base+"-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := openNew(name, blobMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many names taken", dir)
}

// sizeMismatch is a blob whose file or entry has the wrong size.
func sizeMismatch(want, got int64) error {
	return fmt.Errorf("%w: expected %d bytes, file has %d", integrity.ErrSizeMismatch, want, got)
}

// syncEachMax is the number of pending blobs up to which commitBlobs
// fsyncs each file; above it, one syncfs(2) of the cache's file system
// costs less than a journal commit per file.
const syncEachMax = 8

// commitBlobs makes pending blobs durable, then visible: the segments
// their small blobs went into are sealed (sealSegments), every file is
// flushed (each fsynced, or the file system synced at once), then each
// blob file is renamed into blobs/ and each segment into segments/, and
// every directory renamed into is fsynced, with the directories in also.
// Only then may the index name them. It returns the paths of the
// segments it committed. On failure the temporary files not yet renamed
// are removed.
func (s *Store) commitBlobs(ps []pendingBlob, also ...string) (segs []string, err error) {
	loose, sealed, err := s.sealSegments(ps)
	if err != nil {
		return nil, err
	}
	renamed, renamedSegs := 0, 0
	defer func() {
		if err != nil {
			for _, p := range loose[renamed:] {
				_ = os.Remove(p.tmp)
			}
			for _, p := range sealed[renamedSegs:] {
				_ = os.Remove(p.tmp)
			}
			segs = nil
		}
	}()
	files := make([]syncFile, 0, len(loose)+len(sealed))
	for _, p := range loose {
		files = append(files, syncFile{p.tmp, "blob " + string(p.digest)})
	}
	for _, p := range sealed {
		files = append(files, syncFile{p.tmp, "segment " + p.name})
	}
	if err := s.syncPending(files); err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for _, d := range also {
		dirs[d] = false
	}
	for _, p := range loose {
		final := s.blobPath(p.digest)
		dir := filepath.Dir(final)
		if made, ok := dirs[dir]; !ok || !made {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("blob %s: %w", p.digest, err)
			}
			dirs[dir] = true
		}
		if err := renameBlob(p.tmp, final); err != nil {
			return nil, fmt.Errorf("blob %s: %w", p.digest, err)
		}
		renamed++
	}
	if len(sealed) > 0 {
		dir := s.path(segmentsDir)
		parents, err := mkdirSynced(s.root, dir)
		if err != nil {
			return nil, fmt.Errorf("cache segments: %w", err)
		}
		dirs[dir] = true
		for _, p := range parents {
			dirs[p] = true // the root, which gains segments/
		}
		for _, p := range sealed {
			final := filepath.Join(dir, p.name+segmentExt)
			if err := renameBlob(p.tmp, final); err != nil {
				return nil, fmt.Errorf("segment %s: %w", p.name, err)
			}
			renamedSegs++
			segs = append(segs, final)
		}
	}
	// This process knows its own segments at once, whatever the folder's
	// time says (a file system may keep it in whole seconds).
	s.knowSegments(segs)
	for dir, made := range dirs {
		if err := s.syncDir(dir); err != nil && (made || !errors.Is(err, fs.ErrNotExist)) {
			return nil, err
		}
	}
	return segs, nil
}

// sealSegments splits pending blobs into blob files and segments: the
// small blobs of each segment writer become one segment, or, when fewer
// than segmentMin, blob files of their own (read back from the writer's
// file, still in the page cache), so a small import keeps one file per
// blob.
func (s *Store) sealSegments(ps []pendingBlob) (loose []pendingBlob, sealed []pendingSegment, err error) {
	defer func() {
		if err != nil {
			for _, p := range loose {
				_ = os.Remove(p.tmp)
			}
			for _, p := range sealed {
				_ = os.Remove(p.tmp)
			}
			loose, sealed = nil, nil
		}
	}()
	var writers []*segmentWriter
	byWriter := map[*segmentWriter][]digest.Digest{}
	for _, p := range ps {
		if p.seg == nil {
			loose = append(loose, p)
			continue
		}
		if byWriter[p.seg] == nil {
			writers = append(writers, p.seg)
		}
		byWriter[p.seg] = append(byWriter[p.seg], p.digest)
	}
	for _, w := range writers {
		ds := byWriter[w]
		if len(ds) >= segmentMin {
			p, err := w.seal(ds)
			if err != nil {
				return loose, sealed, err
			}
			sealed = append(sealed, p)
			continue
		}
		for _, d := range ds {
			tmp, err := s.segmentBlobFile(context.Background(), w, d, "blob "+string(d))
			if err != nil {
				return loose, sealed, err
			}
			loose = append(loose, pendingBlob{digest: d, tmp: tmp})
		}
	}
	return loose, sealed, nil
}

// syncFile is a file to flush, and what it holds (for errors).
type syncFile struct{ path, what string }

// syncPending flushes the data of pending files to disk.
func (s *Store) syncPending(files []syncFile) error {
	if len(files) == 0 {
		return nil
	}
	if len(files) > syncEachMax {
		ok, err := syncFS(s.path(ingestDir))
		if ok {
			s.syncs.Add(1)
			if err != nil {
				return fmt.Errorf("sync %d files in %s: %w", len(files), s.path(ingestDir), err)
			}
			return nil
		}
	}
	for _, p := range files {
		f, err := os.Open(p.path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		s.syncs.Add(1)
		err = f.Sync()
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("%s: sync %s: %w", p.what, p.path, err)
		}
	}
	return nil
}

// syncDir fsyncs a directory of the cache and counts it.
func (s *Store) syncDir(dir string) error {
	s.syncs.Add(1)
	return safefile.SyncDir(dir)
}

// hashFile re-hashes a blob file with the algorithm of d.
func hashFile(ctx context.Context, path string, alg digest.Algorithm) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := alg.Hash()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		m, err := f.Read(*bp)
		h.Write((*bp)[:m])
		n += int64(m)
		if err == io.EOF {
			return digest.NewDigest(alg, h), n, nil
		}
		if err != nil {
			return "", n, err
		}
	}
}

// tempPrefix starts the names of temp files: blobs being written in
// ingest/, side files being replaced at the root.
const tempPrefix = safefile.TempPrefix
