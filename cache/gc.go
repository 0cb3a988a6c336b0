package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

// GC removes what no ref needs: a mark from every ref and every referrer
// link, following recorded children, then a sweep of blob files and blob
// records not marked (and with a zero refcount), and of leftover temp
// files older than the run. It holds the gc lock exclusive, so no import
// or push is in flight while it runs, and it removes nothing a running
// operation holds (HoldClosure): those blobs are reported in Held, their
// holders in Holders, and kept. Index records go first, then files:
// a crash in between leaves only unreferenced files, which the next run
// removes.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	start := s.opts.Now()
	release, err := s.lockGC(ctx, true)
	if err != nil {
		return GCResult{}, err
	}
	defer release()

	res := GCResult{DryRun: opts.DryRun}
	holds, err := s.liveHolds()
	if err != nil {
		return GCResult{}, err
	}
	var roots []digest.Digest
	for _, h := range holds {
		res.Holders = append(res.Holders, h.Holder)
		roots = append(roots, h.Digests...)
	}
	var live, held map[digest.Digest]bool
	recorded := map[digest.Digest]int64{} // refcounts of blob records
	sweep := func(tx *bbolt.Tx) error {
		live, held = markHeld(tx, roots)
		blobs := tx.Bucket(bucketBlobs)
		var drop [][]byte
		err := blobs.ForEach(func(k, v []byte) error {
			d := digest.Digest(k)
			var br blobRecord
			ok, err := getJSON(tx, bucketBlobs, string(k), &br)
			if err != nil || !ok {
				return err
			}
			recorded[d] = br.Refs
			if !live[d] && !held[d] && br.Refs == 0 {
				drop = append(drop, k)
			}
			return nil
		})
		if err != nil || opts.DryRun {
			return err
		}
		for _, k := range drop {
			if err := blobs.Delete(k); err != nil {
				return err
			}
			if err := tx.Bucket(bucketChildren).Delete(k); err != nil {
				return err
			}
		}
		return nil
	}
	if opts.DryRun {
		err = s.view(ctx, sweep)
	} else {
		err = s.update(ctx, sweep)
	}
	if err != nil {
		return GCResult{}, err
	}

	files, err := s.blobFiles(ctx)
	if err != nil {
		return GCResult{}, err
	}
	dirs := map[string]bool{}
	for _, f := range files {
		if f.digest == "" || live[f.digest] {
			continue // stray files are reported by verify, not removed
		}
		if held[f.digest] {
			res.Held = append(res.Held, f.digest)
			continue
		}
		if recorded[f.digest] != 0 {
			res.Kept = append(res.Kept, f.digest)
			continue
		}
		if !opts.DryRun {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("gc: blob %s: %w", f.digest, err)
			}
			dirs[filepath.Dir(f.path)] = true
		}
		res.Removed = append(res.Removed, f.digest)
		res.Blobs++
		res.Bytes += f.size
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
