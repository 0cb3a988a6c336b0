package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/integrity"
)

// Stage holds blobs written into the cache's ingest area before anyone
// knew their digests: each is hashed while it is written, in the one read
// of its source, and named by the digest that read computed. A staged blob
// is neither durable nor visible; an Import given the Stage
// (ImportOptions.Stage) takes the blobs its artifacts name from it instead
// of fetching them from its source, and makes them durable and visible
// exactly as the blobs it copies itself: with the rest of its batch (one
// sync), renamed into blobs/, recorded in the index only once durable.
// This is how `stella pack build` reads each file of a pack once (ADR
// 0023).
//
// A Stage writes into the ingest folder of its own hold, as an import does
// (holdWrites, ADR 0025): gc runs beside it and removes no file of a live
// hold's folder, and the gc lock is held only for the instant the hold is
// written. An import given the Stage holds every blob it takes before it
// renames it into blobs/. What a crash leaves is a folder whose hold is
// gone, which the next gc removes like any other leftover. Its methods may
// be called concurrently.
type Stage struct {
	s    *Store
	hold *Hold

	mu     sync.Mutex
	closed bool
	blobs  map[digest.Digest]stagedBlob
	seg    *segmentWriter   // receives small content (ADR 0030)
	segs   []*segmentWriter // every writer it had, discarded by Close
}

// stagedBlob is a staged file (tmp) or an entry of a segment writer.
type stagedBlob struct {
	tmp  string
	seg  *segmentWriter
	size int64
}

// Stage starts staging blobs into the cache. Close must be called.
func (s *Store) Stage(ctx context.Context) (*Stage, error) {
	h, err := s.holdWrites(ctx)
	if err != nil {
		return nil, err
	}
	seg := newSegmentWriter(h.ingest)
	return &Stage{s: s, hold: h, blobs: map[digest.Digest]stagedBlob{}, seg: seg, segs: []*segmentWriter{seg}}, nil
}

// errStageClosed: a blob was added to a Stage after Close.
var errStageClosed = errors.New("cache stage is closed")

// Add writes r, read to its end, into the ingest area while hashing it
// with sha256, and returns the digest and size of what it read (and
// wrote): the one read of r. what names the content in errors (a file's
// path). Content already staged is not kept twice.
func (st *Stage) Add(ctx context.Context, what string, r io.Reader) (digest.Digest, int64, error) {
	st.mu.Lock()
	closed := st.closed
	st.mu.Unlock()
	if closed {
		return "", 0, fmt.Errorf("%s: %w", what, errStageClosed)
	}
	h := integrity.NewHash(digest.SHA256)
	// Content up to segmentBlobMax goes into the stage's segment; the
	// first read tells which.
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	head := (*bp)[:segmentBlobMax+1]
	m, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		h.Write(head[:m])
		d := integrity.SHA256Of(h)
		return d, int64(m), st.addSmall(what, d, head[:m])
	case err != nil:
		return "", 0, fmt.Errorf("%s: %w", what, err)
	}
	tmp, n, err := st.s.writeIngest(ctx, st.hold.ingest, "stage", what, io.TeeReader(io.MultiReader(bytes.NewReader(head), r), h), nil)
	if err != nil {
		return "", 0, err
	}
	d := integrity.SHA256Of(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	_, dup := st.blobs[d]
	if dup || st.closed {
		_ = os.Remove(tmp)
		if st.closed {
			return "", 0, fmt.Errorf("%s: %w", what, errStageClosed)
		}
		return d, n, nil
	}
	st.blobs[d] = stagedBlob{tmp: tmp, size: n}
	return d, n, nil
}

// addSmall appends content b of digest d to the stage's segment writer,
// starting a new writer when an import has committed the last one.
func (st *Stage) addSmall(what string, d digest.Digest, b []byte) error {
	st.mu.Lock()
	if _, dup := st.blobs[d]; dup || st.closed {
		st.mu.Unlock()
		if st.closed {
			return fmt.Errorf("%s: %w", what, errStageClosed)
		}
		return nil
	}
	w := st.seg
	st.mu.Unlock()
	// The writer has its own lock: the stage's is not held while the
	// bytes are copied.
	for {
		err := w.add(d, b)
		if errors.Is(err, errSegmentSealed) {
			st.mu.Lock()
			if st.seg == w && !st.closed {
				st.seg = newSegmentWriter(st.hold.ingest)
				st.segs = append(st.segs, st.seg)
			}
			w = st.seg
			closed := st.closed
			st.mu.Unlock()
			if closed {
				return fmt.Errorf("%s: %w", what, errStageClosed)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		break
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, dup := st.blobs[d]; !dup && !st.closed {
		st.blobs[d] = stagedBlob{seg: w, size: int64(len(b))}
	}
	return nil
}

// take hands the staged blob d of size size to an import, which then owns
// its file; ok is false when d is not staged (or with another size).
func (st *Stage) take(d digest.Digest, size int64) (pendingBlob, bool) {
	if st == nil {
		return pendingBlob{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	b, ok := st.blobs[d]
	if !ok || b.size != size {
		return pendingBlob{}, false
	}
	delete(st.blobs, d)
	return pendingBlob{digest: d, tmp: b.tmp, seg: b.seg}, true
}

// Close removes the staged blobs no import took (already in the cache, or
// the build failed) and releases the stage's hold, with its ingest folder.
// It may be called again.
func (st *Stage) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	var errs []error
	for d, b := range st.blobs {
		if b.seg != nil {
			continue
		}
		if err := os.Remove(b.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("staged blob %s: %w", d, err))
		}
	}
	for _, w := range st.segs {
		if err := w.discard(); err != nil {
			errs = append(errs, fmt.Errorf("staged segment: %w", err))
		}
	}
	st.blobs = nil
	st.hold.Release()
	return errors.Join(errs...)
}
