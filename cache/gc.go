package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
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
	DryRun  bool
	Removed []digest.Digest // blobs, sorted, each once
	Blobs   int             // len(Removed)
	// Bytes is what the removals freed: a blob held both as a file and in
	// a segment counts once in Blobs and twice here.
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
	segs := map[string]*gcSegment{}
	for _, f := range files {
		if f.seg {
			sg := segs[f.path]
			if sg == nil {
				sg = &gcSegment{path: f.path}
				segs[f.path] = sg
			}
			sg.entries++
			switch {
			case live[f.digest]:
			case recorded[f.digest] != 0:
				res.Kept = append(res.Kept, f.digest)
			default:
				seen[f.digest] = true
				sg.dead = append(sg.dead, gcCandidate{d: f.digest, size: f.size})
			}
			continue
		}
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
		held, all := heldBy(tx, holds, &res, holders)
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
	for _, path := range slices.Sorted(maps.Keys(segs)) {
		if sg := segs[path]; len(sg.dead) > 0 {
			if err := s.gcSegment(ctx, opts.DryRun, sg, &res, holders); err != nil {
				return res, err
			}
		}
	}
	slices.SortFunc(res.Holders, func(a, b Holder) int { return a.Since.Compare(b.Since) })
	slices.SortFunc(res.Removed, func(a, b digest.Digest) int { return strings.Compare(string(a), string(b)) })
	res.Removed = slices.Compact(res.Removed) // a file and a segment's copy
	res.Blobs = len(res.Removed)

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

// heldBy marks what the holds of running operations keep (all: a hold on
// the whole cache) and adds their holders to res once each.
func heldBy(tx *bbolt.Tx, holds []holdRecord, res *GCResult, holders map[string]bool) (held map[digest.Digest]bool, all bool) {
	var roots []digest.Digest
	for _, h := range holds {
		key := fmt.Sprint(h.PID, h.Since, h.Command)
		if (len(h.Digests) > 0 || h.All) && !holders[key] {
			holders[key] = true
			res.Holders = append(res.Holders, h.Holder)
		}
		roots = append(roots, h.Digests...)
		all = all || h.All
	}
	return reach(tx, roots), all
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

// gcSegment is a segment with blobs GC may remove.
type gcSegment struct {
	path    string
	entries int
	dead    []gcCandidate
}

// gcSegment removes the dead blobs of a segment. When some of its blobs
// are still needed, they are first written into a new segment, made
// durable and renamed into segments/ (compaction, without the gc lock);
// then, under the gc lock and in one index transaction, the dead blobs are
// checked again as GC checks blob files (no hold keeps them, no import
// recorded them since the mark), their records deleted and the old
// segment removed, only if the new one is there. If one of them turned out
// needed, the old segment stays whole and the new one, if this run made
// it, is removed again.
func (s *Store) gcSegment(ctx context.Context, dryRun bool, sg *gcSegment, res *GCResult, holders map[string]bool) error {
	var next string // the segment of the blobs kept, when some are
	made := false
	if !dryRun && len(sg.dead) < sg.entries {
		// A dead blob some running operation holds (cache verify holds
		// everything) keeps the segment as it is: no rewrite to undo.
		held, err := s.segmentHeld(ctx, sg, res, holders)
		if err != nil {
			return err
		}
		if len(held) > 0 {
			res.Held = append(res.Held, held...)
			return nil
		}
		var ok bool
		next, made, ok, err = s.compactSegment(ctx, sg)
		if err != nil {
			return err
		}
		if s.afterCompact != nil {
			s.afterCompact(next, made)
		}
		if !ok {
			return nil // a blob to keep does not check out: left to cache verify
		}
	}
	return s.gcCritical(ctx, dryRun, func(tx *bbolt.Tx, holds []holdRecord) error {
		held, all := heldBy(tx, holds, res, holders)
		blobs := tx.Bucket(bucketBlobs)
		needed := false
		for _, c := range sg.dead {
			if all || held[c.d] {
				res.Held = append(res.Held, c.d)
				needed = true
				continue
			}
			if raw := blobs.Get([]byte(c.d)); raw != nil {
				var br blobRecord
				if err := json.Unmarshal(raw, &br); err != nil {
					return fmt.Errorf("blob record %s: %w", c.d, err)
				}
				needed = needed || br.Refs != 0
			}
		}
		switch {
		case len(sg.dead) == sg.entries, dryRun:
		case next == "":
			needed = true // its other blobs are nowhere else
		default:
			if _, err := os.Stat(next); err != nil {
				needed = true // another gc took it away: keep the old one
			}
		}
		if needed {
			// The new segment goes again unless the old one is gone: then
			// another gc removed it, counting on this copy of the blobs
			// it kept.
			if _, err := os.Stat(sg.path); made && err == nil {
				if err := os.Remove(next); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("gc: segment %s: %w", next, err)
				}
			}
			return nil
		}
		for _, c := range sg.dead {
			if !dryRun {
				if err := blobs.Delete([]byte(c.d)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketChildren).Delete([]byte(c.d)); err != nil {
					return err
				}
			}
			res.Removed = append(res.Removed, c.d)
			res.Blobs++
			res.Bytes += c.size
		}
		if dryRun {
			return nil
		}
		if err := os.Remove(sg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("gc: segment %s: %w", sg.path, err)
		}
		return s.syncDir(filepath.Dir(sg.path))
	})
}

// compactSegment writes the blobs of sg that are not dead into a new
// segment, re-hashing each as it is copied, makes it durable and renames
// it into segments/, unless a segment of that name is there already. It
// returns the new segment's path and whether this call made it; ok is
// false when a blob to keep does not match its digest.
func (s *Store) compactSegment(ctx context.Context, sg *gcSegment) (path string, made, ok bool, err error) {
	old, err := readSegment(sg.path)
	if err != nil {
		return "", false, false, nil // damaged or gone: left to cache verify
	}
	dead := make(map[digest.Digest]bool, len(sg.dead))
	for _, c := range sg.dead {
		dead[c.d] = true
	}
	src, err := os.Open(sg.path)
	if err != nil {
		return "", false, false, nil
	}
	defer src.Close()
	// Written in a folder of its own hold, as an import writes: another
	// gc's sweep of leftovers leaves it alone.
	h, err := s.holdWrites(ctx)
	if err != nil {
		return "", false, false, fmt.Errorf("gc: %w", err)
	}
	defer h.Release()
	f, err := createIngest(h.ingest, "segment")
	if err != nil {
		return "", false, false, fmt.Errorf("gc: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if !made {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	var out []segEntry
	var off int64
	for _, e := range old.entries {
		d := e.digest()
		if dead[d] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return "", false, false, err
		}
		h := digest.SHA256.Hash()
		if _, err := io.Copy(io.MultiWriter(f, h), io.NewSectionReader(src, e.off, e.size)); err != nil {
			return "", false, false, fmt.Errorf("gc: segment %s: %w", sg.path, err)
		}
		if digest.NewDigest(digest.SHA256, h) != d {
			return "", false, false, nil
		}
		out = append(out, segEntry{sum: e.sum, off: off, size: e.size})
		off += e.size
	}
	name, err := writeSegmentTail(f, off, out)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		s.syncs.Add(1)
		err = f.Close()
	}
	if err != nil {
		return "", false, false, fmt.Errorf("gc: segment %s: %w", tmp, err)
	}
	path = filepath.Join(filepath.Dir(sg.path), name+segmentExt)
	if _, err := os.Stat(path); err == nil {
		return path, false, true, nil // the same blobs, already a segment
	}
	if err := renameBlob(tmp, path); err != nil {
		return "", false, false, fmt.Errorf("gc: segment %s: %w", path, err)
	}
	made = true
	if err := s.syncDir(filepath.Dir(path)); err != nil {
		return "", true, false, err
	}
	return path, true, true, nil
}

// segmentHeld returns the dead blobs of sg a running operation holds now,
// with its holder added to res (read without the gc lock: the locked
// check after a rewrite decides; this one only spares a rewrite bound to
// be undone).
func (s *Store) segmentHeld(ctx context.Context, sg *gcSegment, res *GCResult, holders map[string]bool) ([]digest.Digest, error) {
	holds, err := s.liveHolds()
	if err != nil || len(holds) == 0 {
		return nil, err
	}
	var out []digest.Digest
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		held, all := heldBy(tx, holds, res, holders)
		for _, c := range sg.dead {
			if all || held[c.d] {
				out = append(out, c.d)
			}
		}
		return nil
	})
	return out, err
}
