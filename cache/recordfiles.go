package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/integrity"
)

// recordsDir holds the record files of every namespace (see
// Records.KeepStaged).
const recordsDir = "records"

// Record files are content a namespace keeps beside its records when it
// is too large to be held whole as a record value: package plans keeps a
// saved plan's canonical JSON there (26 MiB at 100,000 steps). A record
// file is named by its digest, under the bucket whose records name it:
//
//	root/records/<namespace>.<bucket>/<algorithm>/<encoded>
//
// It is written as a staged blob (Stage.Add: hashed as it streams into
// the ingest folder of the stage's hold, where gc leaves it alone and a
// crash leaves a leftover gc removes), then made durable and renamed into
// place by KeepStaged, before the namespace writes the record that names
// it. Record files are never removed: GC and Verify look only at blobs/,
// so a record file is kept as long as the cache, and the namespace that
// reads it checks it (OpenFile verifies digest and size as it streams).
// Files are content-addressed and read-only (mode 0444): writing the same
// content again replaces a file with the same bytes.

// recordFilePath is where the record file d of bucket lives.
func (r *Records) recordFilePath(bucket string, d digest.Digest) string {
	if !namespaceRE.MatchString(bucket) {
		panic(fmt.Sprintf("cache: invalid record bucket %q", bucket))
	}
	return r.s.path(recordsDir, r.ns+"."+bucket, d.Algorithm().String(), d.Encoded())
}

// KeepStaged makes the blob d of size bytes, staged in st, a record file
// of bucket: it is flushed to disk, renamed to its place and its
// directory (with any directory created for it) fsynced, so a record
// written after KeepStaged returns never names a file that is not
// durable. The stage no longer holds the blob afterwards. ErrNotFound:
// st holds no blob d of that size.
func (r *Records) KeepStaged(ctx context.Context, st *Stage, bucket string, d digest.Digest, size int64) error {
	if err := integrity.CheckDescriptor(ocispec.Descriptor{Digest: d, Size: size}); err != nil {
		return fmt.Errorf("record file: %w", err)
	}
	final := r.recordFilePath(bucket, d)
	if err := ctx.Err(); err != nil {
		return err
	}
	p, ok := st.take(d, size)
	if !ok {
		return fmt.Errorf("record file %s: staged blob of %d bytes: %w", d, size, ErrNotFound)
	}
	if p.seg != nil {
		// Staged into the stage's segment (small): a record file is a
		// file of its own.
		var err error
		if p.tmp, err = r.s.segmentBlobFile(ctx, p.seg, d, "record file "+string(d)); err != nil {
			return err
		}
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(p.tmp)
		}
	}()
	f, err := os.Open(p.tmp)
	if err != nil {
		return fmt.Errorf("record file %s: %w", d, err)
	}
	r.s.syncs.Add(1)
	err = f.Sync()
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("record file %s: sync %s: %w", d, p.tmp, err)
	}
	made, err := mkdirSynced(r.s.root, filepath.Dir(final))
	if err != nil {
		return fmt.Errorf("record file %s: %w", d, err)
	}
	if err := renameBlob(p.tmp, final); err != nil {
		return fmt.Errorf("record file %s: %w", d, err)
	}
	done = true
	for _, dir := range append([]string{filepath.Dir(final)}, made...) {
		if err := r.s.syncDir(dir); err != nil {
			return fmt.Errorf("record file %s: %w", d, err)
		}
	}
	return nil
}

// mkdirSynced creates dir and its missing parents below root, and
// returns the parents of the directories it created, whose entries must
// be fsynced for them to last.
func mkdirSynced(root, dir string) ([]string, error) {
	var missing []string
	for d := dir; d != root && len(d) > len(root); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	parents := make([]string, 0, len(missing))
	for _, d := range missing {
		parents = append(parents, filepath.Dir(d))
	}
	return parents, nil
}

// OpenFile opens the record file d of bucket. The reader (an
// integrity.Reader) verifies size and digest while it streams: a damaged
// file ends in integrity.ErrDigestMismatch or integrity.ErrSizeMismatch
// instead of io.EOF. ErrNotFound: there is no such file.
func (r *Records) OpenFile(ctx context.Context, bucket string, d digest.Digest, size int64) (io.ReadCloser, error) {
	desc := ocispec.Descriptor{Digest: d, Size: size}
	if err := integrity.CheckDescriptor(desc); err != nil {
		return nil, fmt.Errorf("record file: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := r.recordFilePath(bucket, d)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("record file %s: %w", r.s.rel(path), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("record file %s: %w", r.s.rel(path), err)
	}
	v := integrity.NewReader(f, desc)
	v.Wrap = func(err error) error { return fmt.Errorf("record file %s: %w", r.s.rel(path), err) }
	return v, nil
}

// recordFiles counts the record files of every namespace and their bytes.
func (s *Store) recordFiles() (files int, bytes int64, err error) {
	err = filepath.WalkDir(s.path(recordsDir), func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no records yet, or removed meanwhile
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("cache record files: %w", err)
	}
	return files, bytes, nil
}
