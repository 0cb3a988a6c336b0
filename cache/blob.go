package cache

import (
	"context"
	_ "crypto/sha256" // sha256 digests
	_ "crypto/sha512" // sha512 digests
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

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

// blobMode is the mode of blob files: content-addressed, never rewritten in place.
const blobMode = 0o444

func checkDescriptor(desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor %q: %w: %v", desc.Digest, ErrInvalidDigest, err)
	}
	if desc.Size < 0 {
		return fmt.Errorf("descriptor %s: %w: negative size %d", desc.Digest, ErrInvalidDigest, desc.Size)
	}
	return nil
}

func (s *Store) blobPath(d digest.Digest) string {
	return s.path(blobsDir, d.Algorithm().String(), d.Encoded())
}

// Exists reports whether the blob is in the cache: its file is present and
// has the descriptor's size. A blob file exists only after it was hashed,
// checked and fsynced.
func (s *Store) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	fi, err := os.Stat(s.blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return fi.Mode().IsRegular() && fi.Size() == desc.Size, nil
}

// Fetch opens a blob of the cache. The reader verifies size and digest
// while it streams: a corrupted blob file ends in ErrDigestMismatch or
// ErrSizeMismatch instead of io.EOF, so bad bytes never pass unnoticed.
// A blob that is not there gives ErrNotFound.
func (s *Store) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if fi.Size() != desc.Size {
		_ = f.Close()
		return nil, fmt.Errorf("blob %s: %w: expected %d bytes, file has %d",
			desc.Digest, ErrSizeMismatch, desc.Size, fi.Size())
	}
	return &verifyReader{r: f, c: f, desc: desc, h: desc.Digest.Algorithm().Hash()}, nil
}

// verifyReader hashes what it reads and turns the end of the stream into
// an error when size or digest disagree with the descriptor.
type verifyReader struct {
	r    io.Reader
	c    io.Closer
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64
	err  error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.desc.Size {
		v.err = fmt.Errorf("blob %s: %w: expected %d bytes, read more", v.desc.Digest, ErrSizeMismatch, v.desc.Size)
		return n, v.err
	}
	if err == io.EOF {
		err = v.check()
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifyReader) check() error {
	if v.n != v.desc.Size {
		return fmt.Errorf("blob %s: %w: expected %d bytes, read %d", v.desc.Digest, ErrSizeMismatch, v.desc.Size, v.n)
	}
	if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
		return fmt.Errorf("blob %s: %w: content hashes to %s", v.desc.Digest, ErrDigestMismatch, got)
	}
	return io.EOF
}

// WriteTo streams with a large buffer (io.Copy uses it).
func (v *verifyReader) WriteTo(w io.Writer) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := v.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (v *verifyReader) Close() error { return v.c.Close() }

// Push writes a blob into the cache: hashed while it streams into a
// temporary file under ingest/, fsynced, checked against the descriptor's
// digest and size (ErrDigestMismatch, ErrSizeMismatch), renamed into
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

// writeBlob is Push without the lock; it reports whether it wrote the
// blob (false: already present). progress, if set, gets the bytes read.
func (s *Store) writeBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader, progress func(n int64)) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	if ok, err := s.Exists(ctx, desc); err != nil || ok {
		return false, err
	}
	final := s.blobPath(desc.Digest)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	f, err := os.CreateTemp(s.path(ingestDir), safefile.TempPrefix+desc.Digest.Encoded()+"-*")
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	h := desc.Digest.Algorithm().Hash()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	// Read at most one byte more than expected: enough to know it is too
	// long, without letting a bad source fill the disk.
	lr := io.LimitReader(r, desc.Size+1)
	var n, flushed int64
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		m, rerr := lr.Read(buf)
		if m > 0 {
			h.Write(buf[:m])
			if _, err := f.Write(buf[:m]); err != nil {
				return false, fmt.Errorf("blob %s: write %s: %w", desc.Digest, tmp, err)
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
			return false, fmt.Errorf("blob %s: read: %w", desc.Digest, rerr)
		}
	}
	if n != desc.Size {
		if n > desc.Size {
			return false, fmt.Errorf("blob %s: %w: expected %d bytes, got more", desc.Digest, ErrSizeMismatch, desc.Size)
		}
		return false, fmt.Errorf("blob %s: %w: expected %d bytes, got %d", desc.Digest, ErrSizeMismatch, desc.Size, n)
	}
	if got := digest.NewDigest(desc.Digest.Algorithm(), h); got != desc.Digest {
		return false, fmt.Errorf("blob %s: %w: content hashes to %s", desc.Digest, ErrDigestMismatch, got)
	}
	if err := f.Chmod(blobMode); err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("blob %s: sync %s: %w", desc.Digest, tmp, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("blob %s: close %s: %w", desc.Digest, tmp, err)
	}
	done = true
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := safefile.SyncDir(dir); err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return true, nil
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
