package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/integrity"
)

// Segments keep small blobs together in one file each (ADR 0030): a
// pack of 10,000 small files is one file in the cache, not 10,000 inodes
// created, renamed and looked up. A segment is content-addressed like a
// blob file and written the same way: in an ingest folder, made durable,
// then renamed into segments/ and the folder fsynced; the index names a
// blob only once the segment holding it is durable. The index does not
// say where a blob is: a blob is in the cache when its file is in
// blobs/<alg>/ or a segment lists it.
//
// Layout of segments/<name>.seg, every number big-endian:
//
//	data     the blobs, one after another
//	entries  n × 48 bytes, sorted by digest: sha256 (32), offset (8), size (8)
//	footer   48 bytes: sha256 of the entries (32), n (8), segmentMagic (8)
//
// name is the hex sha256 of the entries: it binds every blob's digest,
// place and size, and each blob's bytes are bound by its digest.
const (
	segmentsDir    = "segments"
	segmentExt     = ".seg"
	segmentMagic   = "STLASEG1"
	segEntrySize   = 48
	segFooterSize  = 48
	segmentBlobMax = 64 << 10 // blobs up to this size go into a segment
	// segmentMin is the fewest small blobs a commit writes as a segment;
	// fewer are written as blob files of their own.
	segmentMin = 32
	// segmentMaxEntries bounds the entries a segment file may claim, so a
	// damaged footer cannot make a reader allocate without limit.
	segmentMaxEntries = 1 << 22
)

// segEntry is one blob of a segment.
type segEntry struct {
	sum       [32]byte
	off, size int64
}

func (e segEntry) digest() digest.Digest {
	return integrity.SHA256FromSum(e.sum[:])
}

// segmentable reports whether a blob of this descriptor goes into a
// segment when written.
func segmentable(d digest.Digest, size int64) bool {
	return size <= segmentBlobMax && d.Algorithm() == digest.SHA256
}

func digestSum(d digest.Digest) ([32]byte, bool) {
	var sum [32]byte
	if d.Algorithm() != digest.SHA256 {
		return sum, false
	}
	n, err := hex.Decode(sum[:], []byte(d.Encoded()))
	return sum, err == nil && n == 32
}

// segmentWriter appends small blobs, already hashed and checked, to one
// temporary file in an ingest folder. Its methods may be called
// concurrently.
type segmentWriter struct {
	dir string

	mu      sync.Mutex
	f       *os.File
	tmp     string
	off     int64  // bytes appended, buffered ones included
	buf     []byte // appended, not yet written to f
	entries map[digest.Digest]segEntry
	sealed  bool // renamed into segments/: no more blobs

	// A full buffer is written by the add that filled it, at its place
	// in the file and outside mu, so the other adds go on meanwhile.
	writing sync.WaitGroup // such writes under way
	wmu     sync.Mutex     // guards werr and spare, never held with mu waited for
	werr    error          // the first such write that failed
	spare   [][]byte       // buffers written, to be filled again
}

// segmentBuffer is how much a segment writer gathers before a write: a
// pack of many small files makes a write call per megabyte, not per file.
const segmentBuffer = 1 << 20

// writeChunk writes b, a full buffer, at off (the add that filled it,
// outside mu) and starts its writeback: as for a large blob
// (writeIngest), the batch's sync finds most of the segment on its way to
// disk already. A failure is kept, for flush and seal to report too.
func (w *segmentWriter) writeChunk(b []byte, off int64) error {
	defer w.writing.Done()
	if chunkWriting != nil {
		chunkWriting()
	}
	_, err := w.f.WriteAt(b, off)
	if err == nil {
		startWriteback(w.f, off, int64(len(b)))
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err != nil {
		// The bytes lost are the blobs added before, not only the one
		// whose add wrote them: the segment is lost.
		err = fmt.Errorf("segment: the %d bytes at %d: %w", len(b), off, err)
		if w.werr == nil {
			w.werr = err
		}
		return err
	}
	if len(w.spare) < 2 {
		w.spare = append(w.spare, b[:0])
	}
	return nil
}

// chunkWriting, when a test sets it, is called before each chunk an add
// writes.
var chunkWriting func()

// flush writes the buffered bytes and waits for the chunks adds are
// writing; it reports any of their failures. The caller holds w.mu.
func (w *segmentWriter) flush() error {
	if len(w.buf) > 0 {
		if _, err := w.f.WriteAt(w.buf, w.off-int64(len(w.buf))); err != nil {
			return fmt.Errorf("write %s: %w", w.tmp, err)
		}
		w.buf = w.buf[:0]
	}
	w.writing.Wait()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.werr
}

func newSegmentWriter(dir string) *segmentWriter {
	return &segmentWriter{dir: dir, entries: map[digest.Digest]segEntry{}}
}

// errSegmentSealed: a blob was added to a segment already committed.
var errSegmentSealed = errors.New("segment already committed")

// add appends blob d's bytes; a blob already there is not written twice.
func (w *segmentWriter) add(d digest.Digest, b []byte) error {
	sum, ok := digestSum(d)
	if !ok {
		return fmt.Errorf("blob %s: not a sha256 digest", d)
	}
	full, at, err := w.append(d, sum, b)
	if err != nil || full == nil {
		return err
	}
	return w.writeChunk(full, at)
}

// append adds b to the buffer, under mu; when that filled a buffer, it
// hands it back, with its place in the file, for the caller to write
// (writeChunk).
func (w *segmentWriter) append(d digest.Digest, sum [32]byte, b []byte) (full []byte, at int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed {
		return nil, 0, errSegmentSealed
	}
	w.wmu.Lock()
	failed := w.werr
	w.wmu.Unlock()
	if failed != nil {
		return nil, 0, failed // a chunk was lost: nothing more is written
	}
	if _, dup := w.entries[d]; dup {
		return nil, 0, nil
	}
	if w.f == nil {
		f, err := createIngest(w.dir, "segment")
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s: %w", d, err)
		}
		w.f, w.tmp = f, f.Name()
	}
	if len(w.buf) > 0 && len(w.buf)+len(b) > segmentBuffer {
		full, at = w.buf, w.off-int64(len(w.buf))
		w.buf = nil
		w.writing.Add(1)
	}
	if w.buf == nil {
		w.wmu.Lock()
		if n := len(w.spare); n > 0 {
			w.buf, w.spare = w.spare[n-1], w.spare[:n-1]
		}
		w.wmu.Unlock()
		if w.buf == nil {
			w.buf = make([]byte, 0, segmentBuffer)
		}
	}
	w.buf = append(w.buf, b...)
	w.entries[d] = segEntry{sum: sum, off: w.off, size: int64(len(b))}
	w.off += int64(len(b))
	return full, at, nil
}

// read returns the bytes of blob d as written.
func (w *segmentWriter) read(d digest.Digest) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.entries[d]
	if !ok || w.f == nil || w.sealed {
		return nil, fmt.Errorf("blob %s: not in segment %s", d, w.tmp)
	}
	if err := w.flush(); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	b := make([]byte, e.size)
	if _, err := w.f.ReadAt(b, e.off); err != nil {
		return nil, fmt.Errorf("blob %s: read %s: %w", d, w.tmp, err)
	}
	return b, nil
}

// segmentBlobFile writes blob d of segment writer w into a temporary file
// of its own in w's folder, as ingestBlob would have (unsynced), and
// returns its path; what names it in errors.
func (s *Store) segmentBlobFile(ctx context.Context, w *segmentWriter, d digest.Digest, what string) (string, error) {
	b, err := w.read(d)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	tmp, _, err := s.writeIngest(ctx, w.dir, d.Encoded(), what, bytes.NewReader(b), nil)
	return tmp, err
}

// discard closes and removes the file unless it was committed.
func (w *segmentWriter) discard() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil || w.sealed {
		return nil
	}
	w.writing.Wait()
	_ = w.f.Close()
	w.sealed = true
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// pendingSegment is a segment written and closed in ingest/, not yet
// durable nor visible.
type pendingSegment struct {
	tmp, name string
	n         int
}

// seal makes a pending segment of the blobs ds of w. When ds are all of
// w's blobs, w's own file gets the entries and footer and w takes no more
// blobs; otherwise those blobs are copied into a new file in w's folder,
// and w stays as it is (a Stage's other blobs may still be taken).
func (w *segmentWriter) seal(ds []digest.Digest) (pendingSegment, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed || w.f == nil {
		return pendingSegment{}, errSegmentSealed
	}
	if err := w.flush(); err != nil {
		return pendingSegment{}, err
	}
	w.buf = nil
	es := make([]segEntry, 0, len(ds))
	for _, d := range ds {
		e, ok := w.entries[d]
		if !ok {
			return pendingSegment{}, fmt.Errorf("blob %s: not in segment %s", d, w.tmp)
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b segEntry) int { return bytes.Compare(a.sum[:], b.sum[:]) })
	es = slices.CompactFunc(es, func(a, b segEntry) bool { return a.sum == b.sum })
	if len(es) == len(w.entries) {
		name, err := writeSegmentTail(w.f, w.off, es)
		if err == nil {
			err = w.f.Close()
		}
		if err != nil {
			return pendingSegment{}, fmt.Errorf("segment %s: %w", w.tmp, err)
		}
		w.sealed = true
		return pendingSegment{tmp: w.tmp, name: name, n: len(es)}, nil
	}
	f, err := createIngest(w.dir, "segment")
	if err != nil {
		return pendingSegment{}, err
	}
	tmp := f.Name()
	fail := func(err error) (pendingSegment, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return pendingSegment{}, fmt.Errorf("segment %s: %w", tmp, err)
	}
	var off int64
	out := make([]segEntry, len(es))
	for i, e := range es {
		if _, err := io.Copy(f, io.NewSectionReader(w.f, e.off, e.size)); err != nil {
			return fail(err)
		}
		out[i] = segEntry{sum: e.sum, off: off, size: e.size}
		off += e.size
	}
	name, err := writeSegmentTail(f, off, out)
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	return pendingSegment{tmp: tmp, name: name, n: len(out)}, nil
}

// writeSegmentTail writes the entries and footer of a segment at off and
// returns the segment's name.
func writeSegmentTail(f *os.File, off int64, es []segEntry) (string, error) {
	tail := make([]byte, 0, len(es)*segEntrySize+segFooterSize)
	for _, e := range es {
		tail = append(tail, e.sum[:]...)
		tail = binary.BigEndian.AppendUint64(tail, uint64(e.off))
		tail = binary.BigEndian.AppendUint64(tail, uint64(e.size))
	}
	sum := sha256.Sum256(tail)
	tail = append(tail, sum[:]...)
	tail = binary.BigEndian.AppendUint64(tail, uint64(len(es)))
	tail = append(tail, segmentMagic...)
	if _, err := f.WriteAt(tail, off); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}

// errSegmentDamaged: a segment's entries or footer do not check out.
var errSegmentDamaged = errors.New("segment damaged")

// segment is a committed segment's entries, sorted by digest.
type segment struct {
	name, path string
	entries    []segEntry
	// f, once a blob was read from it, stays open for the next reads
	// (ReadAt: shared by readers). A segment gc removes meanwhile is
	// still read whole from it, and every read is checked by digest.
	f *os.File
}

// forget drops segment name from what this process knows of segments/.
// Its open file is not closed here: a reader may still be reading a held
// blob from it (gc rewrote the segment without the blobs no one needs
// and removed it); the runtime closes it once no reader holds it. The
// caller holds x.mu.
func (x *segmentIndex) forget(name string) {
	delete(x.byName, name)
}

// find returns the entry of sum.
func (sg *segment) find(sum [32]byte) (segEntry, bool) {
	i, ok := slices.BinarySearchFunc(sg.entries, sum, func(e segEntry, t [32]byte) int { return bytes.Compare(e.sum[:], t[:]) })
	if !ok {
		return segEntry{}, false
	}
	return sg.entries[i], true
}

// readSegment reads and checks a segment's entries: the footer's magic
// and count, the entries' sha256 against the footer and the file's name,
// their order, and that every blob lies within the data.
func readSegment(path string) (*segment, error) {
	name, ok := strings.CutSuffix(filepath.Base(path), segmentExt)
	if !ok {
		return nil, fmt.Errorf("%s: %w: not a %s file", path, errSegmentDamaged, segmentExt)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", path, errSegmentDamaged, fmt.Sprintf(format, args...))
	}
	size := fi.Size()
	if size < segFooterSize {
		return nil, damaged("%d bytes, shorter than its footer", size)
	}
	var foot [segFooterSize]byte
	if _, err := f.ReadAt(foot[:], size-segFooterSize); err != nil {
		return nil, err
	}
	if string(foot[40:]) != segmentMagic {
		return nil, damaged("no segment footer")
	}
	n := binary.BigEndian.Uint64(foot[32:40])
	if n == 0 || n > segmentMaxEntries || int64(n)*segEntrySize > size-segFooterSize {
		return nil, damaged("footer claims %d entries", n)
	}
	dataEnd := size - segFooterSize - int64(n)*segEntrySize
	raw := make([]byte, int64(n)*segEntrySize)
	if _, err := f.ReadAt(raw, dataEnd); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if !bytes.Equal(sum[:], foot[:32]) {
		return nil, damaged("entries do not match the footer's sha256")
	}
	if hex.EncodeToString(sum[:]) != name {
		return nil, damaged("entries' sha256 is %x, not its name", sum)
	}
	sg := &segment{name: name, path: path, entries: make([]segEntry, n)}
	for i := range sg.entries {
		b := raw[i*segEntrySize:]
		e := segEntry{off: int64(binary.BigEndian.Uint64(b[32:40])), size: int64(binary.BigEndian.Uint64(b[40:48]))}
		copy(e.sum[:], b[:32])
		if e.off < 0 || e.size < 0 || e.off > dataEnd || e.size > dataEnd-e.off {
			return nil, damaged("entry %d lies outside the data", i)
		}
		if i > 0 && bytes.Compare(sg.entries[i-1].sum[:], e.sum[:]) >= 0 {
			return nil, damaged("entries out of order at %d", i)
		}
		sg.entries[i] = e
	}
	return sg, nil
}

// segmentIndex is what this process knows of segments/: the entries of
// every segment it has read. A blob found in it is checked to still be
// there (its segment file exists) before it is reported present; a blob
// not found makes it list the folder again when the folder changed, or
// when the last listing was taken within segmentTick of the folder's last
// change (two changes in one tick of the file system's clock leave one
// time).
type segmentIndex struct {
	mu       sync.Mutex
	listed   bool
	modTime  time.Time           // of segments/ when last listed
	listedAt time.Time           // when it was listed
	byName   map[string]*segment // nil value: damaged, skipped
}

// segmentTick bounds the resolution of a folder's modification time
// (the kernel's coarse clock, a scheduler tick).
const segmentTick = 100 * time.Millisecond

// coarseTick is the resolution assumed of a folder's time with no
// fraction of a second (ext2/3, FAT, some network file systems).
const coarseTick = 2 * time.Second

// knowsSegments reports whether this process has read any segment.
func (s *Store) knowsSegments() bool {
	s.segments.mu.Lock()
	defer s.segments.mu.Unlock()
	return len(s.segments.byName) > 0
}

// knowSegments adds segments this process just committed to what it
// knows of segments/.
func (s *Store) knowSegments(paths []string) {
	if len(paths) == 0 {
		return
	}
	x := &s.segments
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byName == nil {
		x.byName = map[string]*segment{}
	}
	for _, p := range paths {
		if sg, err := readSegment(p); err == nil {
			x.byName[sg.name] = sg
		}
	}
}

// locateIn finds blob d in a segment: the segment's path and the entry.
// A segment path in confirmed was seen there within
// the caller's index transaction (which gc, removing segments in its own,
// excludes) and is not looked up again; found ones are added. When
// relist is false a blob not among the segments already read is reported
// absent without listing segments/.
func (s *Store) locateIn(d digest.Digest, confirmed map[string]bool, relist bool) (string, segEntry, bool, error) {
	sum, ok := digestSum(d)
	if !ok {
		return "", segEntry{}, false, nil
	}
	var path string
	var entry segEntry
	ok, err := s.searchSegments(sum, relist, func(sg *segment, e segEntry) (bool, error) {
		if !confirmed[sg.path] {
			if _, err := os.Stat(sg.path); err != nil {
				return false, err
			}
			if confirmed != nil {
				confirmed[sg.path] = true
			}
		}
		path, entry = sg.path, e
		return true, nil
	})
	return path, entry, ok, err
}

// searchSegments looks for sum among the segments this process knows and
// calls use with the first that lists it; use returns fs.ErrNotExist (or
// an error wrapping it) when the segment is gone: it is forgotten and the
// search goes on. A blob not found makes it list segments/ again (when
// relist is set and the folder changed) and look once more. The caller
// must not hold s.segments.mu.
func (s *Store) searchSegments(sum [32]byte, relist bool, use func(sg *segment, e segEntry) (bool, error)) (bool, error) {
	x := &s.segments
	x.mu.Lock()
	defer x.mu.Unlock()
	for range 2 {
		for name, sg := range x.byName {
			if sg == nil {
				continue
			}
			e, ok := sg.find(sum)
			if !ok {
				continue
			}
			found, err := use(sg, e)
			if errors.Is(err, fs.ErrNotExist) {
				x.forget(name) // removed by gc
				x.listed = false
				continue
			}
			if err != nil || found {
				return found, err
			}
		}
		if !relist {
			break
		}
		changed, err := s.relistSegments()
		if err != nil || !changed {
			return false, err
		}
	}
	return false, nil
}

// refreshSegments lists segments/ again if it changed, so that lookups
// without a listing of their own (present) know the segments committed so
// far.
func (s *Store) refreshSegments() error {
	s.segments.mu.Lock()
	defer s.segments.mu.Unlock()
	_, err := s.relistSegments()
	return err
}

// present is Exists for an import's copy, which refreshed its view of
// segments/ when its batch began (refreshSegments): segments are not
// listed again, and a segment found is checked once per confirmed map. A
// segment committed by another process since is missed, and its blob
// written again: harmless, as for any content-addressed write.
func (s *Store) present(desc ocispec.Descriptor, confirmed map[string]bool, listed blobNames) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	return s.has(desc.Digest, desc.Size, confirmed, false, listed)
}

// blobNames are the names of the sha256 blob files, listed at once
// (listBlobNames); nil when not listed.
type blobNames map[string]struct{}

// may reports whether blob d may be a blob file: listed, or not known.
func (n blobNames) may(d digest.Digest) bool {
	if n == nil || d.Algorithm() != digest.SHA256 {
		return true
	}
	_, ok := n[d.Encoded()]
	return ok
}

// listBlobNames lists blobs/sha256 when it holds at most max names, and
// returns nil otherwise (or on any error). An import that is to look for
// many blobs lists them once: a blob looked for as a file costs a path
// lookup (~4 µs when it is not there, as in a build of new files), a name
// read from the folder a fraction of that. A blob file created after the
// listing is missed, and written again: the same bytes, harmless.
func (s *Store) listBlobNames(max int) blobNames {
	f, err := os.Open(s.path(blobsDir, "sha256"))
	if err != nil {
		return nil
	}
	defer f.Close()
	names := blobNames{}
	for {
		batch, err := f.Readdirnames(1024)
		for _, n := range batch {
			names[n] = struct{}{}
		}
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil || len(names) > max {
			return nil
		}
	}
}

// has reports whether blob d is in the cache with size bytes (any size
// when negative): listed by a segment, whose file is checked to be there
// (once per confirmed map, see locateIn), or as a blob file. A blob that
// may be in a segment is looked for among the segments already read
// first, which for a pack of many files saves a lookup a file; when
// relist is set, a blob found nowhere makes segments/ be listed again if
// it changed. With listed (the blob files, listed at once), a blob not
// among them is not looked up as a file.
func (s *Store) has(d digest.Digest, size int64, confirmed map[string]bool, relist bool, listed blobNames) (bool, error) {
	sized := func(n int64) bool { return size < 0 || n == size }
	if segmentable(d, size) {
		_, e, ok, err := s.locateIn(d, confirmed, false)
		if err != nil || ok {
			return ok && sized(e.size), wrapBlob(d, err)
		}
	}
	if !listed.may(d) {
		return false, nil
	}
	n, regular, err := s.statBlobFile(d)
	if err == nil {
		return regular && sized(n), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, wrapBlob(d, err)
	}
	if !relist {
		return false, nil
	}
	_, e, ok, err := s.locateIn(d, confirmed, true)
	return ok && sized(e.size), wrapBlob(d, err)
}

// wrapBlob names blob d in err, if any.
func wrapBlob(d digest.Digest, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("blob %s: %w", d, err)
}

// relistSegments reads segments/ again if it changed since it was last
// listed, loading the segments not yet known and forgetting those gone.
// The caller holds s.segments.mu.
func (s *Store) relistSegments() (bool, error) {
	x := &s.segments
	dir := s.path(segmentsDir)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cache segments: %w", err)
	}
	// The folder's time changes with each segment renamed in or removed,
	// but only by the file system's clock tick: a listing taken within
	// segmentTick of that time may have missed a change in the same tick.
	tick := segmentTick
	if fi.ModTime().Nanosecond() == 0 {
		tick = coarseTick // a file system that keeps whole seconds (or two)
	}
	if x.listed && fi.ModTime().Equal(x.modTime) && x.listedAt.Sub(x.modTime) > tick {
		return false, nil
	}
	listedAt := time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("cache segments: %w", err)
	}
	if x.byName == nil {
		x.byName = map[string]*segment{}
	}
	seen := make(map[string]bool, len(ents))
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		seen[name] = true
		if _, known := x.byName[name]; known {
			continue
		}
		sg, err := readSegment(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil && !errors.Is(err, errSegmentDamaged) {
			return false, err
		}
		x.byName[name] = sg // nil when damaged: cache verify reports it
	}
	for name := range x.byName {
		if !seen[name] {
			x.forget(name)
		}
	}
	x.listed, x.modTime, x.listedAt = true, fi.ModTime(), listedAt
	return true, nil
}

// openBlob opens blob d of size size wherever it is: its file in blobs/
// or its entry in a segment (looked for first when the blob is small
// enough to be in one). It returns fs.ErrNotExist when neither has it, and
// checks the size (unless negative: unknown), not the content (see
// Fetch).
func (s *Store) openBlob(d digest.Digest, size int64) (io.ReadCloser, error) {
	if size >= 0 && segmentable(d, size) {
		r, n, ok, err := s.segmentReader(d)
		if err != nil || ok {
			if err == nil && n != size {
				return nil, sizeMismatch(size, n)
			}
			return r, err
		}
	}
	f, err := os.Open(s.blobPath(d))
	if err == nil {
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if size >= 0 && fi.Size() != size {
			_ = f.Close()
			return nil, sizeMismatch(size, fi.Size())
		}
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	r, n, ok, err := s.segmentReader(d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fs.ErrNotExist
	}
	if size >= 0 && n != size {
		return nil, sizeMismatch(size, n)
	}
	return r, nil
}

// segmentReader reads blob d from the segment that lists it, through the
// segment's file kept open (segment.f); the reader's Close leaves it open.
func (s *Store) segmentReader(d digest.Digest) (io.ReadCloser, int64, bool, error) {
	sum, ok := digestSum(d)
	if !ok {
		return nil, 0, false, nil
	}
	var r io.ReadCloser
	var n int64
	ok, err := s.searchSegments(sum, true, func(sg *segment, e segEntry) (bool, error) {
		if sg.f != nil {
			// Still there? One removed by gc is dropped (its file is
			// closed by the runtime once no reader holds it).
			if _, err := os.Stat(sg.path); errors.Is(err, fs.ErrNotExist) {
				return false, err
			}
		} else {
			f, err := os.Open(sg.path)
			if err != nil {
				return false, err
			}
			sg.f = f
		}
		r, n = io.NopCloser(io.NewSectionReader(sg.f, e.off, e.size)), e.size
		return true, nil
	})
	return r, n, ok, err
}

// readBlob reads blob d of size size whole, from its file or segment,
// unchecked.
func (s *Store) readBlob(d digest.Digest, size int64) ([]byte, error) {
	r, err := s.openBlob(d, size)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// segmentReader hashes blobs of segments, keeping the last segment file
// open: cache verify reads a segment's entries one after another.
type segmentReader struct {
	f *os.File
}

func (sr *segmentReader) close() {
	if sr.f != nil {
		_ = sr.f.Close()
		sr.f = nil
	}
}

// hash re-hashes the entry f of a segment with the algorithm of its digest.
func (sr *segmentReader) hash(ctx context.Context, f file) (digest.Digest, error) {
	if sr.f == nil || sr.f.Name() != f.path {
		sr.close()
		fh, err := os.Open(f.path)
		if err != nil {
			return "", err
		}
		sr.f = fh
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	h := f.digest.Algorithm().Hash()
	if _, err := io.Copy(h, io.NewSectionReader(sr.f, f.off, f.size)); err != nil {
		return "", err
	}
	return digest.NewDigest(f.digest.Algorithm(), h), nil
}

// listSegments calls fn for every entry of every segment in segments/
// (path the segment, seg set), for a file there that is not a segment
// (empty digest), and for a segment that cannot be read (damaged set).
func (s *Store) listSegments(ctx context.Context, fn func(file)) error {
	dir := s.path(segmentsDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache segments: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(dir, e.Name())
		if !strings.HasSuffix(e.Name(), segmentExt) || !e.Type().IsRegular() {
			fn(file{path: path})
			continue
		}
		sg, err := readSegment(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			fn(file{path: path, damaged: err})
			continue
		}
		for _, se := range sg.entries {
			fn(file{path: path, digest: se.digest(), size: se.size, seg: true, off: se.off})
		}
	}
	return nil
}
