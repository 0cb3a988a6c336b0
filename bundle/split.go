package bundle

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/internal/safefile"
)

// PartsSuffix ends the name of the parts manifest of a split bundle:
// media.stella.tar is split into media.stella.tar.001, .002, … and
// media.stella.tar.parts.json.
const PartsSuffix = ".parts.json"

const (
	partsVersion         = 1
	maxParts             = 999 // part names have three digits
	maxPartsManifestSize = 1 << 20
)

// Part is one volume of a split bundle, as listed in its parts manifest.
type Part struct {
	Name   string `json:"name"`   // base name: <bundle name>.NNN
	Index  int    `json:"index"`  // 1-based
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // lowercase hex
}

// partsManifest is the content of <bundle>.parts.json (RFC 8785 canonical
// JSON). Name is the base name of the whole bundle; concatenating the parts
// in index order gives Size bytes hashing to SHA256.
type partsManifest struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Parts   []Part `json:"parts"`
}

func partName(base string, index int) string { return fmt.Sprintf("%s.%03d", base, index) }

// WriteSplit writes a bundle as parts of at most partSize bytes:
// path.001, path.002, … each written atomically, then the parts manifest
// path.parts.json, written last. Any parts manifest already at that path is
// removed first, so an old manifest never describes new parts. On failure
// the parts written so far are removed, with the parts of an earlier set
// of the same name that follow them; on success, stale parts numbered
// after the last one (left by an earlier, larger split) are removed.
func WriteSplit(ctx context.Context, path string, partSize int64, src content.Fetcher, entries []Entry, opts WriteOptions) (Summary, error) {
	if partSize <= 0 {
		return Summary{}, fmt.Errorf("%w: %d", ErrInvalidPartSize, partSize)
	}
	l, err := planLayout(ctx, src, entries, opts.AllowAnyMediaType)
	if err != nil {
		return Summary{}, err
	}
	if n := (l.size() + partSize - 1) / partSize; n > maxParts {
		return Summary{}, fmt.Errorf("%w: %d bytes in parts of %d would need %d parts, at most %d", ErrInvalidPartSize, l.size(), partSize, n, maxParts)
	}
	manifestPath := path + PartsSuffix
	if err := os.Remove(manifestPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Summary{}, err
	}
	sw := &splitWriter{base: path, partSize: partSize}
	sum, err := l.write(ctx, sw, src, opts.Progress)
	if err == nil {
		err = sw.finish()
	}
	if err != nil {
		sw.abort()
		return Summary{}, err
	}
	m := partsManifest{
		Version: partsVersion,
		Name:    filepath.Base(path),
		Size:    sum.Size,
		SHA256:  sum.Digest.Encoded(),
		Parts:   sw.parts,
	}
	b, err := encodeParts(m)
	if err != nil {
		sw.abort()
		return Summary{}, err
	}
	if err := safefile.WriteBytes(manifestPath, b, 0o644); err != nil {
		sw.abort()
		return Summary{}, err
	}
	for i := len(sw.parts) + 1; i <= maxParts; i++ {
		if os.Remove(partName(path, i)) != nil {
			break
		}
	}
	sum.Parts = sw.parts
	return sum, nil
}

// size is the size of the bundle file of this plan.
func (l *layoutPlan) size() int64 {
	sizes := []int64{int64(len(layoutContent)), int64(len(l.index)), int64(len(l.sums))}
	for _, d := range l.blobs {
		sizes = append(sizes, d.Size)
	}
	return tarSize(sizes)
}

func encodeParts(m partsManifest) ([]byte, error) {
	return canonical.Marshal(m)
}

// splitWriter cuts a stream into atomically written parts.
type splitWriter struct {
	base     string
	partSize int64
	cur      *safefile.File
	curN     int64
	curHash  hash.Hash
	parts    []Part
}

func (s *splitWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if s.cur == nil {
			if len(s.parts) == maxParts {
				return written, fmt.Errorf("%w: more than %d parts", ErrInvalidPartSize, maxParts)
			}
			f, err := safefile.Create(partName(s.base, len(s.parts)+1), 0o644)
			if err != nil {
				return written, err
			}
			s.cur, s.curN, s.curHash = f, 0, integrity.NewHash(digest.SHA256)
		}
		n := int(min(int64(len(p)), s.partSize-s.curN))
		m, err := s.cur.Write(p[:n])
		s.curHash.Write(p[:m])
		s.curN += int64(m)
		written += m
		p = p[m:]
		if err != nil {
			return written, err
		}
		if s.curN == s.partSize {
			if err := s.commit(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (s *splitWriter) commit() error {
	idx := len(s.parts) + 1
	f := s.cur
	s.cur = nil
	if err := f.Commit(); err != nil {
		return err
	}
	s.parts = append(s.parts, Part{
		Name:   filepath.Base(partName(s.base, idx)),
		Index:  idx,
		Size:   s.curN,
		SHA256: hex.EncodeToString(s.curHash.Sum(nil)),
	})
	return nil
}

func (s *splitWriter) finish() error {
	if s.cur != nil && s.curN > 0 {
		return s.commit()
	}
	return nil
}

// abort removes the current and the committed parts of this write, and
// the parts of an earlier set under the same name that follow them (that
// set's manifest is already gone, so they are of no use).
func (s *splitWriter) abort() {
	if s.cur != nil {
		s.cur.Abort()
		s.cur = nil
	}
	for i := 1; i <= maxParts; i++ {
		if os.Remove(partName(s.base, i)) != nil && i > len(s.parts) {
			break
		}
	}
	_ = safefile.SyncDir(filepath.Dir(s.base))
}

// parseParts parses and checks a parts manifest. It never allocates more
// than the input's size and bounds the part count.
func parseParts(b []byte) (*partsManifest, error) {
	if len(b) > maxPartsManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPartsManifest, len(b), maxPartsManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m partsManifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPartsManifest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrPartsManifest)
	}
	if m.Version != partsVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrPartsManifest, m.Version, partsVersion)
	}
	if err := checkBaseName(m.Name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPartsManifest, err)
	}
	if !isLowerHex64(m.SHA256) {
		return nil, fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrPartsManifest, m.SHA256)
	}
	if len(m.Parts) == 0 || len(m.Parts) > maxParts {
		return nil, fmt.Errorf("%w: %d parts, want 1 to %d", ErrPartsManifest, len(m.Parts), maxParts)
	}
	var total int64
	for i, p := range m.Parts {
		if p.Index != i+1 {
			return nil, fmt.Errorf("%w: part %d has index %d", ErrPartsManifest, i+1, p.Index)
		}
		if want := partName(m.Name, p.Index); p.Name != want {
			return nil, fmt.Errorf("%w: part %03d is named %q, want %q", ErrPartsManifest, p.Index, p.Name, want)
		}
		if p.Size <= 0 || p.Size > m.Size-total {
			return nil, fmt.Errorf("%w: part %03d: size %d does not fit the total %d", ErrPartsManifest, p.Index, p.Size, m.Size)
		}
		if !isLowerHex64(p.SHA256) {
			return nil, fmt.Errorf("%w: part %03d: sha256 %q is not 64 lowercase hex digits", ErrPartsManifest, p.Index, p.SHA256)
		}
		total += p.Size
	}
	if total != m.Size {
		return nil, fmt.Errorf("%w: parts add up to %d bytes, total says %d", ErrPartsManifest, total, m.Size)
	}
	return &m, nil
}

// checkBaseName accepts a plain file name: no directory, no control bytes.
func checkBaseName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("name %q is not a plain file name", name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < ' ' || name[i] == 0x7f {
			return fmt.Errorf("name %q has control characters", name)
		}
	}
	return nil
}

// locate says whether path names a split set and, if so, returns the path
// of the whole bundle (the parts' common prefix). path may be the bundle
// file, its parts manifest, one of its parts, or the bundle's name when
// only parts exist.
func locate(path string) (base string, split bool, err error) {
	if b, ok := strings.CutSuffix(path, PartsSuffix); ok && b != "" {
		return b, true, nil
	}
	if n := len(path); n > 4 && path[n-4] == '.' && isDigits(path[n-3:]) {
		base := path[:n-4]
		if _, err := os.Stat(base + PartsSuffix); err != nil {
			return "", false, &EntryError{Path: filepath.Base(base + PartsSuffix), Err: fmt.Errorf("%w: %v (it must be beside the parts)", ErrPartsManifest, fileErr(err))}
		}
		return base, true, nil
	}
	if _, err := os.Stat(path); err == nil {
		return path, false, nil
	} else if _, err2 := os.Stat(path + PartsSuffix); err2 == nil {
		return path, true, nil
	} else {
		return "", false, err
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// openParts checks a split set against its parts manifest, part by part
// (presence, size, sha256, order) and as a whole, and returns a ReaderAt
// over the concatenation that reads the parts in place.
func openParts(ctx context.Context, base string, progress func(done, total int64)) (*multiReaderAt, error) {
	m, manifestName, err := readPartsManifest(base)
	if err != nil {
		return nil, err
	}
	dir, name := filepath.Dir(base), filepath.Base(base)
	mr := &multiReaderAt{size: m.Size}
	ok := false
	defer func() {
		if !ok {
			mr.Close()
		}
	}()
	// The whole-file sha256 is computed by its own goroutine from the
	// chunks each part's hash has read: the two hashes run side by side
	// and the parts are read once.
	whole := newPipedHash(integrity.NewHash(digest.SHA256))
	defer whole.close()
	var done int64
	for i, p := range m.Parts {
		pname := partName(name, p.Index)
		perr := func(sentinel error, format string, args ...any) error {
			return &PartError{Index: p.Index, Name: pname, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
		}
		fi, err := os.Stat(filepath.Join(dir, pname))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, perr(ErrPartMissing, "not found next to %s", manifestName)
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, perr(ErrPartMissing, "not a regular file")
		}
		f, err := os.Open(filepath.Join(dir, pname))
		if err != nil {
			return nil, err
		}
		mr.parts = append(mr.parts, partFile{f: f, off: mr.used, size: p.Size})
		mr.used += p.Size
		h := integrity.NewHash(digest.SHA256)
		toWhole := fi.Size() == p.Size
		if !toWhole && !sizeOfOther(m, i, fi.Size()) {
			return nil, perr(ErrPartSize, "%d bytes, the parts manifest says %d%s", fi.Size(), p.Size, truncatedHint(fi.Size(), p.Size))
		}
		n, err := whole.copy(ctx, h, f, toWhole, func(k int64) {
			done += k
			if progress != nil {
				progress(done, m.Size)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", pname, err)
		}
		got := hex.EncodeToString(h.Sum(nil))
		if got != p.SHA256 || n != p.Size {
			for j, q := range m.Parts {
				if j != i && q.SHA256 == got && q.Size == n {
					return nil, perr(ErrPartOrder, "part %03d holds the content of part %03d", p.Index, q.Index)
				}
			}
			if n != p.Size {
				return nil, perr(ErrPartSize, "%d bytes, the parts manifest says %d%s", n, p.Size, truncatedHint(n, p.Size))
			}
			return nil, perr(ErrPartDigest, "sha256 %s, the parts manifest says %s", got, p.SHA256)
		}
	}
	if got := hex.EncodeToString(whole.sum()); got != m.SHA256 {
		return nil, &EntryError{Path: manifestName, Err: fmt.Errorf("%w: the parts hash to %s, the whole-file sha256 says %s", ErrPartsManifest, got, m.SHA256)}
	}
	ok = true
	return mr, nil
}

// readPartsManifest reads and parses the parts manifest of the split set
// base, and returns it with its file name.
func readPartsManifest(base string) (*partsManifest, string, error) {
	manifestName := filepath.Base(base + PartsSuffix)
	b, err := readSmallFile(base+PartsSuffix, maxPartsManifestSize)
	if err != nil {
		return nil, manifestName, &EntryError{Path: manifestName, Err: fmt.Errorf("%w: %v", ErrPartsManifest, err)}
	}
	m, err := parseParts(b)
	if err != nil {
		return nil, manifestName, &EntryError{Path: manifestName, Err: err}
	}
	return m, manifestName, nil
}

// openPartsDeferred opens a split set whose parts' sha256 and whole-file
// sha256 are to be checked as its bytes are read (see partCheck): here
// only the parts manifest and each part's presence and size are checked.
// When a part is absent or of another size, it checks the set as
// openParts does instead, which reports the first problem in part order,
// and returns no partCheck.
func openPartsDeferred(ctx context.Context, base string, progress func(done, total int64)) (*multiReaderAt, *partCheck, error) {
	m, manifestName, err := readPartsManifest(base)
	if err != nil {
		return nil, nil, err
	}
	dir, name := filepath.Dir(base), filepath.Base(base)
	for _, p := range m.Parts {
		fi, err := os.Stat(filepath.Join(dir, partName(name, p.Index)))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != p.Size {
			mr, err := openParts(ctx, base, progress)
			return mr, nil, err
		}
	}
	mr := &multiReaderAt{size: m.Size}
	for _, p := range m.Parts {
		f, err := os.Open(filepath.Join(dir, partName(name, p.Index)))
		if err != nil {
			mr.Close()
			return nil, nil, err
		}
		mr.parts = append(mr.parts, partFile{f: f, off: mr.used, size: p.Size})
		mr.used += p.Size
	}
	return mr, newPartCheck(m, mr, name, manifestName), nil
}

func sizeOfOther(m *partsManifest, i int, size int64) bool {
	for j, q := range m.Parts {
		if j != i && q.Size == size {
			return true
		}
	}
	return false
}

func truncatedHint(have, want int64) string {
	if have < want {
		return " (truncated)"
	}
	return ""
}

// pipedHash is a hash fed by its own goroutine, so that it runs beside
// the hash of the goroutine that reads.
type pipedHash struct {
	h    hash.Hash
	in   chan []byte // chunks to hash
	free chan []byte // buffers to read into
	done chan struct{}
	once sync.Once
}

const (
	pipeBuffers = 3
	pipeChunk   = 1 << 20
)

func newPipedHash(h hash.Hash) *pipedHash {
	p := &pipedHash{h: h, in: make(chan []byte, pipeBuffers), free: make(chan []byte, pipeBuffers), done: make(chan struct{})}
	for range pipeBuffers {
		p.free <- make([]byte, pipeChunk)
	}
	go func() {
		defer close(p.done)
		for b := range p.in {
			p.h.Write(b) // hashes never fail
			p.free <- b[:cap(b)]
		}
	}()
	return p
}

// copy reads r to its end with context checks, hashes it into h, passes
// it to the piped hash too if toPipe, and reports each chunk.
func (p *pipedHash) copy(ctx context.Context, h hash.Hash, r io.Reader, toPipe bool, report func(int64)) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		buf := <-p.free
		k, err := r.Read(buf)
		partsRead.Add(int64(k))
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			report(int64(k))
		}
		if k > 0 && toPipe {
			p.in <- buf[:k]
		} else {
			p.free <- buf
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// close stops the goroutine once everything sent is hashed; it is
// idempotent.
func (p *pipedHash) close() {
	p.once.Do(func() { close(p.in) })
	<-p.done
}

// sum closes the pipe and returns the hash of everything piped.
func (p *pipedHash) sum() []byte {
	p.close()
	return p.h.Sum(nil)
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// multiReaderAt reads the concatenation of the parts of a split set. When
// its parts' sha256 are checked as they are read, check is set.
type multiReaderAt struct {
	parts []partFile
	used  int64 // offset after the last part added
	size  int64
	check *partCheck
}

type partFile struct {
	f         *os.File
	off, size int64
}

func (m *multiReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.readAt(p, off)
	if m.check != nil && n > 0 {
		m.check.feed(p[:n], off)
	}
	return n, err
}

// readAt reads the parts, as ReadAt without the part check.
func (m *multiReaderAt) readAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= m.size {
		return 0, io.EOF
	}
	i := sort.Search(len(m.parts), func(i int) bool { return m.parts[i].off+m.parts[i].size > off })
	n := 0
	for n < len(p) && i < len(m.parts) {
		pf := m.parts[i]
		po := off + int64(n) - pf.off
		k := int(min(int64(len(p)-n), pf.size-po))
		got, err := pf.f.ReadAt(p[n:n+k], po)
		partsRead.Add(int64(got))
		n += got
		if got < k {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the part shrank after it was checked
			}
			return n, err
		}
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *multiReaderAt) Close() error {
	if m.check != nil {
		m.check.stop()
	}
	var errs []error
	for _, p := range m.parts {
		errs = append(errs, p.f.Close())
	}
	m.parts = nil
	return errors.Join(errs...)
}

// copyBuffer copies with context checks and reports each chunk.
func copyBuffer(ctx context.Context, w io.Writer, r io.Reader, buf []byte, report func(int64)) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if k > 0 {
			w.Write(buf[:k]) // hashes never fail
			n += int64(k)
			report(int64(k))
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
