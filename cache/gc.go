package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"

	"stellaops.io/stella/internal/safefile"
)

// GCOptions tune GC.
type GCOptions struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// GCResult says what GC removed (or would remove).
type GCResult struct {
	DryRun        bool
	Removed       []digest.Digest // blobs, sorted
	Blobs         int
	Bytes         int64
	Leftovers     int // temp files of interrupted writes
	LeftoverBytes int64
	// Kept lists unreachable blobs whose recorded refcount is not zero: the
	// index contradicts itself there, so gc leaves them (run verify).
	Kept []digest.Digest
	// Held lists unreachable blobs kept because a running operation (an
	// export, a push) holds them (see Hold); a gc after it ends removes them.
	Held []digest.Digest
	// Holders are the running operations whose holds gc honoured, oldest
	// first.
	Holders []Holder
}

// gcChunk bounds the blobs GC removes in one critical section (the gc
// lock exclusive and one index transaction), so that imports, which take
// the gc lock shared for an instant per batch, never wait long.
const gcChunk = 1024

// GC removes what no ref needs: a mark from every ref and every referrer
// link, following recorded children, then a sweep of blob files and blob
// records not marked (and with a zero refcount), and of leftover temp
// files older than the run.
//
// It runs beside imports and exports without waiting for them. The mark
// and the list of candidates are made without the gc lock, from one read
// transaction of the index. Then, gcChunk candidates at a time, under the
// gc lock held exclusive for that instant and in one index write
// transaction, it reads the holds of running operations (HoldClosure,
// and every import's hold on the blobs of the batch it imports) and
// removes a candidate only if no hold keeps it and its blob record still
// has a zero refcount (an import that recorded it meanwhile raised it):
// the record first, then the file, so an index entry never names a
// removed blob, and an import that counted on a blob GC took finds it
// missing when it records and copies it again. Held blobs are reported in
// Held, their holders in Holders, and kept. A crash leaves only
// unreferenced files, which the next run removes.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	start := s.opts.Now()
	res := GCResult{DryRun: opts.DryRun}

	// Candidates, without the gc lock.
	recorded := map[digest.Digest]int64{} // refcounts of unmarked blob records
	var live map[digest.Digest]bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		live = mark(tx)
		return tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			d := digest.Digest(k)
			if live[d] {
				return nil
			}
			var br blobRecord
			if err := json.Unmarshal(v, &br); err != nil {
				return fmt.Errorf("blob record %s: %w", d, err)
			}
			recorded[d] = br.Refs
			return nil
		})
	})
	if err != nil {
		return GCResult{}, err
	}
	files, err := s.blobFiles(ctx)
	if err != nil {
		return GCResult{}, err
	}
	var cands []gcCandidate
	seen := map[digest.Digest]bool{}
	for _, f := range files {
		if f.digest == "" || live[f.digest] {
			continue // stray files are reported by verify, not removed
		}
		if recorded[f.digest] != 0 {
			res.Kept = append(res.Kept, f.digest)
			continue
		}
		seen[f.digest] = true
		cands = append(cands, gcCandidate{d: f.digest, path: f.path, size: f.size})
	}
	for d, refs := range recorded {
		if refs == 0 && !seen[d] {
			cands = append(cands, gcCandidate{d: d}) // a record with no file
		}
	}
	slices.SortFunc(cands, func(a, b gcCandidate) int { return strings.Compare(string(a.d), string(b.d)) })

	dirs := map[string]bool{}
	holders := map[string]bool{}
	sweep := func(chunk []gcCandidate, tx *bbolt.Tx, holds []holdRecord) error {
		var roots []digest.Digest
		all := false
		for _, h := range holds {
			key := fmt.Sprint(h.PID, h.Since, h.Command)
			if (len(h.Digests) > 0 || h.All) && !holders[key] {
				holders[key] = true
				res.Holders = append(res.Holders, h.Holder)
			}
			roots = append(roots, h.Digests...)
			all = all || h.All
		}
		held := reach(tx, roots)
		blobs := tx.Bucket(bucketBlobs)
		for _, c := range chunk {
			if all || held[c.d] {
				if c.path != "" {
					res.Held = append(res.Held, c.d)
				}
				continue
			}
			var br blobRecord
			if raw := blobs.Get([]byte(c.d)); raw != nil {
				if err := json.Unmarshal(raw, &br); err != nil {
					return fmt.Errorf("blob record %s: %w", c.d, err)
				}
				if br.Refs != 0 {
					continue // recorded by an import since the mark
				}
			}
			if !opts.DryRun {
				if err := blobs.Delete([]byte(c.d)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketChildren).Delete([]byte(c.d)); err != nil {
					return err
				}
			}
			if c.path == "" {
				continue
			}
			if !opts.DryRun {
				if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("gc: blob %s: %w", c.d, err)
				}
				dirs[filepath.Dir(c.path)] = true
			}
			res.Removed = append(res.Removed, c.d)
			res.Blobs++
			res.Bytes += c.size
		}
		return nil
	}
	for i := 0; i == 0 || i < len(cands); i += gcChunk {
		chunk := cands[i:min(i+gcChunk, len(cands))]
		if err := s.gcCritical(ctx, opts.DryRun, func(tx *bbolt.Tx, holds []holdRecord) error {
			return sweep(chunk, tx, holds)
		}); err != nil {
			return res, err
		}
	}
	slices.SortFunc(res.Holders, func(a, b Holder) int { return a.Since.Compare(b.Since) })

	// Leftovers: the gc lock keeps Push from writing at the top of
	// ingest/, and an import's folder is no leftover while its hold lives.
	release, err := s.lockGC(ctx, true)
	if err != nil {
		return res, err
	}
	defer release()
	if _, err := s.liveHolds(); err != nil { // removes the holds of processes that are gone
		return res, err
	}
	left, err := s.leftovers()
	if err != nil {
		return res, err
	}
	for _, l := range left {
		if !l.fi.ModTime().Before(start) {
			continue
		}
		if !opts.DryRun {
			if err := os.RemoveAll(l.path); err != nil {
				return res, fmt.Errorf("gc: leftover %s: %w", l.path, err)
			}
			dirs[filepath.Dir(l.path)] = true
		}
		res.Leftovers++
		res.LeftoverBytes += l.size
	}
	for dir := range dirs {
		if err := safefile.SyncDir(dir); err != nil {
			return res, err
		}
	}
	return res, nil
}

// gcCandidate is a blob GC may remove: a file (path set) or only a record.
type gcCandidate struct {
	d    digest.Digest
	path string
	size int64
}

// gcCritical runs fn under the gc lock held exclusive and in one index
// transaction (read-only for a dry run), with the holds of running
// operations read under that lock.
func (s *Store) gcCritical(ctx context.Context, dryRun bool, fn func(tx *bbolt.Tx, holds []holdRecord) error) error {
	release, err := s.lockGC(ctx, true)
	if err != nil {
		return err
	}
	defer release()
	holds, err := s.liveHolds()
	if err != nil {
		return err
	}
	run := func(tx *bbolt.Tx) error { return fn(tx, holds) }
	if dryRun {
		return s.view(ctx, run)
	}
	return s.update(ctx, run)
}
