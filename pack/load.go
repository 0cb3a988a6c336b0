package pack

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/sync/errgroup"

	"stellaops.io/stella/integrity"
)

// Pack is a loaded, validated task pack: its manifest and every file of its
// folder, with digests. It never carries a host path into anything derived
// from it; Dir is for reading files only.
type Pack struct {
	Manifest *Manifest
	// Files holds every file of the pack, pack.yaml included, sorted by Path.
	Files []File
	fsys  fs.FS
	// positions locates pack.yaml's document paths, for problems found
	// after loading (ApproverRoleProblems).
	positions map[string]pos
	// schemas holds the compiled JSON Schema of each input that names one.
	schemas map[string]*jsonschema.Schema
}

// File is one regular file of a pack.
type File struct {
	Path   string        `json:"path"` // slash-separated, relative to the pack root
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
	Mode   fs.FileMode   `json:"mode"` // 0644 or 0755
}

// Limits on pack contents.
const (
	// MaxFiles is the most files a pack holds besides pack.yaml
	// (ErrTooManyFiles).
	MaxFiles = 10000
)

// ID returns "<name>:<version>".
func (p *Pack) ID() string { return p.Manifest.Metadata.Name + ":" + p.Manifest.Metadata.Version }

// Open opens a file of the pack by its slash path.
func (p *Pack) Open(name string) (fs.File, error) { return p.fsys.Open(name) }

// LoadDir loads and validates the pack in a host folder.
func LoadDir(dir string) (*Pack, error) { return LoadDirWith(dir, LoadOptions{}) }

// LoadDirWith is LoadDir with options.
func LoadDirWith(dir string, opts LoadOptions) (*Pack, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pack folder %s: %w", dir, ErrNotFound)
		}
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder: %w", dir, ErrNotFound)
	}
	return LoadWith(openDir(dir), opts)
}

// Load loads and validates the pack whose root is fsys: every problem of
// pack.yaml, its schemas and its step graph is reported at once in a
// *ValidationError wrapping ErrManifestInvalid. Each file is read once and
// must not change while it is read (ErrFileChanged).
func Load(fsys fs.FS) (*Pack, error) { return LoadWith(fsys, LoadOptions{}) }

// LoadWith is Load with options.
func LoadWith(fsys fs.FS, opts LoadOptions) (*Pack, error) {
	raw, err := readLimited(fsys, ManifestFile, MaxManifestSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", ManifestFile, ErrNotFound)
		}
		return nil, err
	}
	m, decoded, err := parse(ManifestFile, raw)
	if err != nil {
		return nil, err
	}
	files, err := walkFiles(fsys, opts.Progress != nil)
	if err != nil {
		return nil, err
	}
	p := &Pack{Manifest: m, Files: files, fsys: fsys, schemas: map[string]*jsonschema.Schema{}, positions: decoded.index}
	// Check the meaning of what decoded too, so every problem is reported
	// at once; drop findings about values that failed to decode, which
	// would only repeat the decoding problem.
	ps := &problems{file: ManifestFile, index: decoded.index}
	validate(p, ps)
	all := decoded.list
	for _, sp := range ps.list {
		if !underAny(sp.Path, decoded.list) {
			all = append(all, sp)
		}
	}
	decoded.list = all
	if err := decoded.err(ErrManifestInvalid); err != nil {
		return nil, err
	}
	// Files are read only once the pack is valid: a build reads them into
	// the cache (opts.Read), so an invalid pack writes nothing.
	var add func(n int64)
	if opts.Progress != nil {
		var total int64
		for _, f := range p.Files {
			total += f.Size
		}
		var done atomic.Int64
		add = func(n int64) { opts.Progress(done.Add(n), total) }
	}
	// Concurrency readers take the files in turn (a goroutine each, not
	// one a file: 10,000 files would be 10,000 goroutines started and
	// waited for one after the other); the first error stops them all.
	var next atomic.Int64
	var eg errgroup.Group
	for range min(max(opts.Concurrency, 1), len(p.Files)) {
		eg.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(p.Files) {
					return nil
				}
				f := &p.Files[i]
				err := readFile(fsys, f, opts.Read, add)
				if err == nil && f.Path == ManifestFile && f.Digest != digest.FromBytes(raw) {
					err = fmt.Errorf("%s: %w: it changed between its parse and its read", ManifestFile, ErrFileChanged)
				}
				if err != nil {
					next.Store(int64(len(p.Files))) // read no more
					return err
				}
			}
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return p, nil
}

// underAny reports whether path is at or below the path of any problem.
func underAny(path string, list []Problem) bool {
	for _, p := range list {
		if p.Path == "" {
			continue
		}
		if path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if errors.Is(err, syscall.ELOOP) { // opened without following a symlink (dirFS)
		return nil, fmt.Errorf("%s is a symlink, not a regular file: %w", name, ErrUnsafePath)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not a regular file: %w", name, typeName(st.Mode().Type()), ErrUnsafePath)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", name, limit, ErrManifestInvalid)
	}
	return b, nil
}

// CheckFilePath is the one rule for the path of a file in a pack, as
// `stella pack build` records it (the title of its layer) and as every
// import requires it: relative and slash-separated with no "." or ".."
// element (fs.ValidPath), no backslash, and no hidden element (a name
// starting with ".", which a build skips). It returns nil or says what is
// wrong with p.
func CheckFilePath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("file path %q: empty", p)
	case strings.Contains(p, "\\"):
		return fmt.Errorf("file path %q: backslash (paths are slash-separated)", p)
	case !fs.ValidPath(p):
		return fmt.Errorf("file path %q: not a clean relative path inside the pack", p)
	}
	for _, el := range strings.Split(p, "/") {
		if strings.HasPrefix(el, ".") {
			return fmt.Errorf("file path %q: hidden element %q", p, el)
		}
	}
	return nil
}

// walkFiles lists every regular file by the type its folder gives (no
// stat a file), with its size only when sizes is set (a progress bar's
// total); Load reads them (readFile, which takes size and mode from the
// open file) once the pack is valid. Hidden entries (a name starting with
// ".") are skipped; symlinks and special files are refused.
func walkFiles(fsys fs.FS, sizes bool) ([]File, error) {
	var files []File
	data := 0 // files other than pack.yaml
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if err := CheckFilePath(p); err != nil {
			return fmt.Errorf("%w: %w", err, ErrUnsafePath)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is a %s, not a regular file: %w", p, typeName(d.Type()), ErrUnsafePath)
		}
		if p != ManifestFile {
			if data >= MaxFiles {
				return fmt.Errorf("more than %d files besides %s: %w", MaxFiles, ManifestFile, ErrTooManyFiles)
			}
			data++
		}
		f := File{Path: p}
		if sizes {
			info, err := d.Info()
			if err != nil {
				return err
			}
			f.Size = info.Size()
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "folder"
	}
	return "special file"
}

func hashFile(fsys fs.FS, name string) (digest.Digest, int64, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := integrity.NewHash(digest.SHA256)
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", name, err)
	}
	return integrity.SHA256Of(h), n, nil
}

// File returns the pack file at slash path name.
func (p *Pack) File(name string) (File, bool) {
	name = path.Clean(name)
	i := sort.Search(len(p.Files), func(i int) bool { return p.Files[i].Path >= name })
	if i < len(p.Files) && p.Files[i].Path == name {
		return p.Files[i], true
	}
	return File{}, false
}
