package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
)

// PackFS presents the files of a pack artifact as a read-only file system,
// so a pack kept in the cache or a bundle is loaded, validated and planned
// exactly like a folder. manifest is the pack's manifest bytes (already
// verified against its digest by the caller's store). Files are fetched only
// when opened, and every Fetch of a verifying store checks them as they stream.
func PackFS(ctx context.Context, src content.Fetcher, manifest []byte) (fs.FS, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("pack manifest: %w: %v", integrity.ErrInvalidManifest, err)
	}
	if m.ArtifactType != ArtifactTypePack {
		return nil, fmt.Errorf("artifact type %q is not a pack: %w", m.ArtifactType, integrity.ErrUnsupportedMediaType)
	}
	p, err := indexFiles(m.Layers)
	if err != nil {
		return nil, err
	}
	p.ctx, p.src = ctx, src
	return p, nil
}

// CheckTitles applies the rule of pack file paths (pack.CheckFilePath) to
// the titles of a pack manifest's file layers, and refuses a title given
// twice or used both as a file and as a folder: what `stella pack build`
// cannot produce. The error wraps ErrUnsafeTitle (and so
// integrity.ErrInvalidManifest).
func CheckTitles(layers []ocispec.Descriptor) error {
	_, err := indexFiles(layers)
	return err
}

// ErrUnsafeTitle: a pack layer's title is not a path `stella pack build`
// could have recorded (it escapes the pack, is absolute, has a backslash,
// hides an element, is given twice, or is both a file and a folder).
var ErrUnsafeTitle = fmt.Errorf("pack file title stella would not build: %w", integrity.ErrInvalidManifest)

// indexFiles maps the titles of the file layers to their layers and
// folders to their entries, under the title rule.
func indexFiles(layers []ocispec.Descriptor) (*packFS, error) {
	p := &packFS{files: map[string]ocispec.Descriptor{}, dirs: map[string]map[string]bool{".": {}}}
	for _, l := range layers {
		if l.MediaType != MediaTypePackFile {
			return nil, fmt.Errorf("pack layer %s has media type %q: %w", l.Digest, l.MediaType, integrity.ErrUnsupportedMediaType)
		}
		name := l.Annotations[AnnotationTitle]
		if err := pack.CheckFilePath(name); err != nil {
			return nil, fmt.Errorf("pack layer %s: %v: %w", l.Digest, err, ErrUnsafeTitle)
		}
		if _, dup := p.files[name]; dup {
			return nil, fmt.Errorf("pack layer title %q appears twice: %w", name, ErrUnsafeTitle)
		}
		if _, isDir := p.dirs[name]; isDir {
			return nil, fmt.Errorf("pack layer title %q is also a folder: %w", name, ErrUnsafeTitle)
		}
		p.files[name] = l
		for child, dir := name, path.Dir(name); ; child, dir = dir, path.Dir(dir) {
			if _, isFile := p.files[dir]; isFile && dir != name {
				return nil, fmt.Errorf("pack layer title %q is also a folder: %w", dir, ErrUnsafeTitle)
			}
			if p.dirs[dir] == nil {
				p.dirs[dir] = map[string]bool{}
			}
			p.dirs[dir][path.Base(child)] = true
			if dir == "." {
				break
			}
		}
	}
	return p, nil
}

type packFS struct {
	ctx   context.Context
	src   content.Fetcher
	files map[string]ocispec.Descriptor
	dirs  map[string]map[string]bool // folder → names of its entries
}

func (p *packFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if d, ok := p.files[name]; ok {
		rc, err := p.src.Fetch(p.ctx, d)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &packFile{rc: rc, info: p.info(name)}, nil
	}
	if _, ok := p.dirs[name]; ok {
		return &packDir{info: p.info(name), entries: p.entries(name)}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (p *packFS) info(name string) fileInfo {
	if d, ok := p.files[name]; ok {
		mode := fs.FileMode(0o644)
		if m, err := strconv.ParseUint(d.Annotations[AnnotationFileMode], 8, 32); err == nil && m&0o111 != 0 {
			mode = 0o755
		}
		return fileInfo{name: path.Base(name), size: d.Size, mode: mode}
	}
	return fileInfo{name: path.Base(name), mode: fs.ModeDir | 0o755}
}

func (p *packFS) entries(dir string) []fs.DirEntry {
	names := make([]string, 0, len(p.dirs[dir]))
	for n := range p.dirs[dir] {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		out = append(out, fs.FileInfoToDirEntry(p.info(path.Join(dir, n))))
	}
	return out
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

type packFile struct {
	rc   io.ReadCloser
	info fileInfo
}

func (f *packFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *packFile) Read(b []byte) (int, error) { return f.rc.Read(b) }
func (f *packFile) Close() error               { return f.rc.Close() }

type packDir struct {
	info    fileInfo
	entries []fs.DirEntry
	off     int
}

func (d *packDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *packDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}
func (d *packDir) Close() error { return nil }

func (d *packDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.off += n
	return rest[:n], nil
}
