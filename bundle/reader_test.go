package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

var update = flag.Bool("update", false, "rewrite the vectors under testdata/bundles")

const vectorDir = "../testdata/bundles"

// sentinels lists every error of the package; a refusal wraps exactly one.
var sentinels = []error{
	ErrNotFound, ErrInvalidEntry, ErrInvalidPartSize, ErrAbsolutePath, ErrPathTraversal, ErrSymlink,
	ErrHardLink, ErrUnsupportedEntryType, ErrDuplicateEntry, ErrUnexpectedEntry, ErrInvalidTar,
	ErrTruncated, ErrTooManyEntries, integrity.ErrTooLarge, ErrBadLayout, ErrInvalidIndex, integrity.ErrInvalidManifest,
	ErrChecksums, ErrBlobMissing, ErrExtraBlob, integrity.ErrSizeMismatch, integrity.ErrDigestMismatch,
	integrity.ErrUnsupportedMediaType, ErrSelfReference, ErrCycle, ErrDecompressionLimit, ErrBadCompression,
	ErrPartsManifest, ErrPartMissing, ErrPartSize, ErrPartDigest, ErrPartOrder,
}

// matching returns the sentinels err wraps.
func matching(err error) []error {
	var out []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// kit builds the corrupt vectors from a small valid bundle of one pack.
type kit struct {
	t                       testing.TB
	f                       *fixture
	pack, cfg, yaml, script ocispec.Descriptor
	base                    []byte
}

func newKit(t testing.TB) *kit {
	f := newFixture(t)
	k := &kit{t: t, f: f, pack: f.pack("demo", "1.0.0")}
	var blobs []ocispec.Descriptor
	if err := walkStore(context.Background(), f.store, k.pack, &blobs); err != nil {
		t.Fatal(err)
	}
	k.cfg, k.yaml, k.script = blobs[1], blobs[2], blobs[3]
	k.base, _ = writeBundle(t, f, []Entry{{Descriptor: k.pack, Kind: artifact.KindPack, Ref: "demo:1.0.0"}}, WriteOptions{})
	return k
}

func (k *kit) files() []tarFile { return readTarFiles(k.t, k.base) }

func (k *kit) tar(files []tarFile) []byte { return writeTarFiles(k.t, files) }

// bundleOf writes a one-pack bundle of a manifest built from layers.
func (k *kit) bundleOf(opts WriteOptions, layers ...ocispec.Descriptor) ([]byte, ocispec.Descriptor) {
	m := k.f.manifest(artifact.ArtifactTypePack, &k.cfg, nil, layers...)
	b, _ := writeBundle(k.t, k.f, []Entry{{Descriptor: m, Kind: artifact.KindPack, Ref: "demo:1.0.0"}}, opts)
	return b, m
}

// vector is one corrupt bundle, the sentinel it must be refused with and
// the entry the error must name ("" when there is none).
type vector struct {
	name  string
	about string
	want  error
	build func(k *kit) (data []byte, entry string)
}

// foreign names the vectors of foreign content, written with writeAny: want
// is their refusal when opened with openAny, and a strict open (the CLI's)
// refuses them with ErrUnsupportedMediaType.
var (
	foreign  = map[string]bool{"zstd-bomb": true, "zstd-bomb-many-refs": true, "zstd-no-annotation": true, "zstd-wrong-digest": true}
	writeAny = WriteOptions{AllowAnyMediaType: true}
	openAny  = OpenOptions{AllowAnyMediaType: true}
)

func special(name string, typ byte, link string) tarFile {
	h := fileHeader(name, 0)
	h.Typeflag, h.Linkname = typ, link
	if typ == tar.TypeChar {
		h.Devmajor, h.Devminor = 1, 3
	}
	return tarFile{hdr: *h}
}

var vectors = []vector{
	{"blob-flipped", "one byte of a layer flipped (found by Verify)", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.yaml.Digest))
		fs[i].data = flip(fs[i].data)
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"config-flipped", "one byte of the config flipped (found by Verify)", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.cfg.Digest))
		fs[i].data = flip(fs[i].data)
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"manifest-flipped", "one byte of the manifest flipped", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.pack.Digest))
		fs[i].data = flip(fs[i].data)
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"index-flipped", "one byte of index.json flipped (SHA256SUMS disagrees)", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, IndexFile)
		fs[i].data = bytes.Replace(fs[i].data, []byte("demo:1.0.0"), []byte("demo:1.0.1"), 1)
		return k.tar(fs), IndexFile
	}},
	{"truncated", "file cut in the middle of the last blob", ErrTruncated, func(k *kit) ([]byte, string) {
		fs := k.files()
		last := fs[len(fs)-1]
		b := k.tar(fs)
		pad := (int(last.hdr.Size) + 511) / 512 * 512
		return b[:len(b)-1024-pad+len(last.data)/2], last.hdr.Name
	}},
	{"no-end-marker", "file cut after the last entry's data", ErrTruncated, func(k *kit) ([]byte, string) {
		fs := k.files()
		b := k.tar(fs)
		return b[:len(b)-1024], fs[len(fs)-1].hdr.Name
	}},
	{"empty-file", "zero bytes", ErrTruncated, func(k *kit) ([]byte, string) { return nil, "" }},
	{"not-a-tar", "bytes that are not a tar header", ErrInvalidTar, func(k *kit) ([]byte, string) {
		return bytes.Repeat([]byte("stella "), 200), ""
	}},
	{"missing-blob", "a layer and its SHA256SUMS line removed", ErrBlobMissing, func(k *kit) ([]byte, string) {
		fs := k.files()
		fs = slices.Delete(fs, find(k.t, fs, blobPath(k.script.Digest)), find(k.t, fs, blobPath(k.script.Digest))+1)
		return k.tar(reseal(k.t, fs)), blobPath(k.script.Digest)
	}},
	{"extra-blob", "a blob nothing references (listed in SHA256SUMS)", ErrExtraBlob, func(k *kit) ([]byte, string) {
		data := []byte("stray\n")
		p := blobPath(digest.FromBytes(data))
		return k.tar(reseal(k.t, append(k.files(), regular(p, data)))), p
	}},
	{"size-mismatch", "index.json declares the manifest one byte longer", integrity.ErrSizeMismatch, func(k *kit) ([]byte, string) {
		fs := editIndex(k.t, k.files(), func(ix *ocispec.Index) { ix.Manifests[0].Size++ })
		return k.tar(fs), blobPath(k.pack.Digest)
	}},
	{"entry-larger-than-declared", "a layer entry holds a byte more than its descriptor says", integrity.ErrSizeMismatch, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.yaml.Digest))
		fs[i].data = append(fs[i].data, '\n')
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"gigantic-descriptor-size", "a layer descriptor declares 2^62 bytes", integrity.ErrSizeMismatch, func(k *kit) ([]byte, string) {
		var m ocispec.Manifest
		fs := k.files()
		mustUnmarshal(k.t, fs[find(k.t, fs, blobPath(k.pack.Digest))].data, &m)
		m.Layers[0].Size = 1 << 62
		fs, _ = replaceBlob(k.t, fs, k.pack.Digest, mustJSON(k.t, m))
		return k.tar(fs), blobPath(m.Layers[0].Digest)
	}},
	{"gigantic-index-size", "index.json declares a 2^62-byte manifest", integrity.ErrSizeMismatch, func(k *kit) ([]byte, string) {
		fs := editIndex(k.t, k.files(), func(ix *ocispec.Index) { ix.Manifests[0].Size = 1 << 62 })
		return k.tar(fs), blobPath(k.pack.Digest)
	}},
	{"oversized-index", "a tar header declares a 5 MiB index.json", integrity.ErrTooLarge, func(k *kit) ([]byte, string) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range []*tar.Header{fileHeader(LayoutFile, int64(len(layoutContent))), fileHeader(IndexFile, 5<<20)} {
			if err := tw.WriteHeader(h); err != nil {
				k.t.Fatal(err)
			}
			if h.Name == LayoutFile {
				tw.Write([]byte(layoutContent))
			}
		}
		tw.Flush()
		return buf.Bytes(), IndexFile
	}},
	{"unknown-media-type", "a layer of a media type stella does not know", integrity.ErrUnsupportedMediaType, func(k *kit) ([]byte, string) {
		b, m := k.bundleOf(WriteOptions{AllowAnyMediaType: true}, k.f.blob("application/vnd.example.unknown", []byte("?"), nil))
		return b, blobPath(m.Digest)
	}},
	{"index-media-type", "index.json lists a Docker manifest", integrity.ErrUnsupportedMediaType, func(k *kit) ([]byte, string) {
		fs := editIndex(k.t, k.files(), func(ix *ocispec.Index) {
			ix.Manifests[0].MediaType = "application/vnd.docker.distribution.manifest.v2+json"
		})
		return k.tar(fs), IndexFile
	}},
	{"absolute-path", "an entry named /etc/passwd", ErrAbsolutePath, func(k *kit) ([]byte, string) {
		return k.tar(append(k.files(), regular("/etc/passwd", []byte("root:x:0:0\n")))), "/etc/passwd"
	}},
	{"dotdot", "an entry named blobs/../../escape", ErrPathTraversal, func(k *kit) ([]byte, string) {
		return k.tar(append(k.files(), regular("blobs/../../escape", []byte("x")))), "blobs/../../escape"
	}},
	{"symlink", "a blob that is a symbolic link", ErrSymlink, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.yaml.Digest))
		fs[i] = special(fs[i].hdr.Name, tar.TypeSymlink, "/etc/passwd")
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"hardlink", "a blob that is a hard link", ErrHardLink, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.yaml.Digest))
		fs[i] = special(fs[i].hdr.Name, tar.TypeLink, IndexFile)
		return k.tar(fs), fs[i].hdr.Name
	}},
	{"device", "a character device entry", ErrUnsupportedEntryType, func(k *kit) ([]byte, string) {
		return k.tar(append(k.files(), special("null", tar.TypeChar, ""))), "null"
	}},
	{"fifo", "a FIFO entry", ErrUnsupportedEntryType, func(k *kit) ([]byte, string) {
		return k.tar(append(k.files(), special("pipe", tar.TypeFifo, ""))), "pipe"
	}},
	{"duplicate", "the same blob entry twice", ErrDuplicateEntry, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, blobPath(k.yaml.Digest))
		return k.tar(append(fs, fs[i])), fs[i].hdr.Name
	}},
	{"unknown-file", "a file outside the layout", ErrUnexpectedEntry, func(k *kit) ([]byte, string) {
		return k.tar(reseal(k.t, append(k.files(), regular("README.md", []byte("hi\n"))))), "README.md"
	}},
	{"unknown-directory", "a directory outside the layout", ErrUnexpectedEntry, func(k *kit) ([]byte, string) {
		return k.tar(append(k.files(), special("blobs/sha512/", tar.TypeDir, ""))), "blobs/sha512/"
	}},
	{"self-reference", "a manifest listing its own digest as a layer (cannot hash to it: digest mismatch)", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		self := digest.FromString("self")
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: artifact.ArtifactTypePack, Config: ocispec.DescriptorEmptyJSON}
		m.Layers = []ocispec.Descriptor{{MediaType: artifact.MediaTypePackFile, Digest: self, Size: 300}}
		data := mustJSON(k.t, m)
		return k.tar(handmade(k, []tarFile{regular(blobPath(self), data), regular(blobPath(ocispec.DescriptorEmptyJSON.Digest), []byte("{}"))},
			ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: self, Size: int64(len(data)),
				Annotations: map[string]string{artifact.AnnotationKind: artifact.KindPack, artifact.AnnotationRef: "demo:1.0.0", ocispec.AnnotationRefName: "demo:1.0.0"}})), blobPath(self)
	}},
	{"index-cycle", "two image indexes listing each other (cannot hash to them: digest mismatch)", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		a, b := digest.FromString("a"), digest.FromString("b")
		doc := func(other digest.Digest) []byte {
			return mustJSON(k.t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
				Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: other, Size: 253}}})
		}
		da, db := doc(b), doc(a)
		return k.tar(handmade(k, []tarFile{regular(blobPath(a), da), regular(blobPath(b), db)},
			ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: a, Size: int64(len(da)),
				Annotations: map[string]string{artifact.AnnotationKind: artifact.KindPack, artifact.AnnotationRef: "demo:1.0.0", ocispec.AnnotationRefName: "demo:1.0.0"}})), blobPath(a)
	}},
	{"zstd-bomb", "a foreign zstd layer that inflates 4 MiB of zeros against a declared 1 KiB", ErrDecompressionLimit, func(k *kit) ([]byte, string) {
		l := k.f.zstdLayer("bomb", make([]byte, 4<<20), 1024)
		b, _ := k.bundleOf(writeAny, l)
		return b, blobPath(l.Digest)
	}},
	{"zstd-bomb-many-refs", "the zstd-bomb layer named 150 times by one manifest (decompressed once)", ErrDecompressionLimit, func(k *kit) ([]byte, string) {
		l := k.f.zstdLayer("bomb", make([]byte, 4<<20), 1024)
		b, _ := k.bundleOf(writeAny, layersTimes(l, 150)...)
		return b, blobPath(l.Digest)
	}},
	{"zstd-no-annotation", "a zstd layer of a stella type without its uncompressed size and digest", integrity.ErrInvalidManifest, func(k *kit) ([]byte, string) {
		l := k.f.zstdLayerOf(retiredPackZstd, "plain", []byte("hello\n"), -1)
		l.Annotations = nil
		b, _ := k.bundleOf(writeAny, l)
		return b, blobPath(l.Digest)
	}},
	{"zstd-wrong-digest", "a foreign zstd layer whose uncompressed digest annotation is wrong", integrity.ErrDigestMismatch, func(k *kit) ([]byte, string) {
		l := k.f.zstdLayer("plain", []byte("hello\n"), -1)
		l.Annotations[artifact.AnnotationUncompressedDigest] = digest.FromString("other").String()
		b, _ := k.bundleOf(writeAny, l)
		return b, blobPath(l.Digest)
	}},
	{"zstd-pack-layer", "a well-formed pack file layer of the retired zstd type `" + retiredPackZstd + "`", integrity.ErrUnsupportedMediaType, func(k *kit) ([]byte, string) {
		l := k.f.zstdLayerOf(retiredPackZstd, "files/run.sh", []byte("echo stella\n"), -1)
		b, m := k.bundleOf(writeAny, l)
		return b, blobPath(m.Digest)
	}},
	{"sha256sums-wrong", "SHA256SUMS gives a blob another digest than its name", ErrChecksums, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, ChecksumsFile)
		fs[i].data = bytes.Replace(fs[i].data, []byte(k.yaml.Digest.Encoded()+"  "), []byte(digest.FromString("x").Encoded()+"  "), 1)
		return k.tar(fs), blobPath(k.yaml.Digest)
	}},
	{"sha256sums-missing-line", "SHA256SUMS does not list a blob", ErrChecksums, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, ChecksumsFile)
		line := k.yaml.Digest.Encoded() + "  " + blobPath(k.yaml.Digest) + "\n"
		fs[i].data = bytes.Replace(fs[i].data, []byte(line), nil, 1)
		return k.tar(fs), blobPath(k.yaml.Digest)
	}},
	{"sha256sums-extra-line", "SHA256SUMS lists a blob that is not there", ErrChecksums, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, ChecksumsFile)
		x := digest.FromString("absent").Encoded()
		fs[i].data = append([]byte(x+"  "+BlobsDir+x+"\n"), fs[i].data...)
		return k.tar(fs), ChecksumsFile
	}},
	{"sha256sums-missing", "no SHA256SUMS", ErrChecksums, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, ChecksumsFile)
		return k.tar(slices.Delete(fs, i, i+1)), ChecksumsFile
	}},
	{"missing-oci-layout", "no oci-layout", ErrBadLayout, func(k *kit) ([]byte, string) {
		fs := k.files()
		i := find(k.t, fs, LayoutFile)
		return k.tar(reseal(k.t, slices.Delete(fs, i, i+1))), LayoutFile
	}},
	{"layout-version", "oci-layout of version 2.0.0", ErrBadLayout, func(k *kit) ([]byte, string) {
		fs := k.files()
		fs[find(k.t, fs, LayoutFile)].data = []byte(`{"imageLayoutVersion":"2.0.0"}`)
		return k.tar(reseal(k.t, fs)), LayoutFile
	}},
	{"invalid-index", "index.json that is not JSON (listed in SHA256SUMS)", ErrInvalidIndex, func(k *kit) ([]byte, string) {
		fs := k.files()
		fs[find(k.t, fs, IndexFile)].data = []byte(`{"manifests":[`)
		return k.tar(reseal(k.t, fs)), IndexFile
	}},
	{"kind-mismatch", "index.json calls a pack evidence", ErrInvalidIndex, func(k *kit) ([]byte, string) {
		fs := editIndex(k.t, k.files(), func(ix *ocispec.Index) { ix.Manifests[0].Annotations[artifact.AnnotationKind] = artifact.KindEvidence })
		return k.tar(fs), IndexFile
	}},
}

// handmade assembles a bundle around blobs and one index entry.
func handmade(k *kit, blobs []tarFile, entry ocispec.Descriptor) []tarFile {
	ix := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{entry}}
	fs := []tarFile{regular(LayoutFile, []byte(layoutContent)), regular(IndexFile, mustJSON(k.t, ix)), regular(ChecksumsFile, nil)}
	fs = append(fs, blobs...)
	// SHA256SUMS lists each blob by its name, as a writer would have.
	var sums []string
	for _, f := range fs[3:] {
		sums = append(sums, strings.TrimPrefix(f.hdr.Name, BlobsDir)+"  "+f.hdr.Name+"\n")
	}
	for _, f := range fs[:2] {
		sums = append(sums, digest.FromBytes(f.data).Encoded()+"  "+f.hdr.Name+"\n")
	}
	fs[2].data = []byte(strings.Join(sums, ""))
	return fs
}

func mustUnmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// openAndVerify opens a vector and, if that succeeds, verifies it.
func openAndVerify(t testing.TB, path string, opts ...OpenOptions) error {
	t.Helper()
	var o OpenOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	r, err := Open(context.Background(), path, o)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = r.Verify(context.Background(), VerifyOptions{})
	return err
}

// checkRefusal asserts err wraps want and no other sentinel, and names entry.
func checkRefusal(t testing.TB, err, want error, entry string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if m := matching(err); len(m) != 1 {
		t.Fatalf("err = %v matches %d sentinels %v, want exactly %v", err, len(m), m, want)
	}
	if entry == "" {
		return
	}
	var ee *EntryError
	var pe *PartError
	switch {
	case errors.As(err, &ee):
		if ee.Path != entry {
			t.Fatalf("err names entry %q, want %q: %v", ee.Path, entry, err)
		}
	case errors.As(err, &pe):
		if pe.Name != entry {
			t.Fatalf("err names part %q, want %q: %v", pe.Name, entry, err)
		}
	default:
		t.Fatalf("err = %v carries no entry, want %q", err, entry)
	}
	if !strings.Contains(err.Error(), entry) {
		t.Fatalf("message %q does not name %q", err, entry)
	}
}

// TestGenerateVectors builds the vectors under testdata/bundles. With
// -update it writes them; without, it checks the committed ones are what
// the current code writes (which also pins the writer's determinism).
func TestGenerateVectors(t *testing.T) {
	files := map[string][]byte{}
	f, entries := standard(t)
	valid, _ := writeBundle(t, f, entries, WriteOptions{})
	files["valid.stella.tar"] = valid
	files["valid-retarred.tar"] = retarred(t, valid)
	k := newKit(t)
	var readme strings.Builder
	readme.WriteString("# Bundle vectors\n\nGenerated by `go test ./bundle -run TestGenerateVectors -update`; checked by\n" +
		"`TestCorruptVectors` and `TestSplitVectors`. Do not edit by hand.\n\n" +
		"- `valid.stella.tar`: a pack (`demo:1.0.0`) and its signature referrer.\n" +
		"- `valid-retarred.tar`: the same layout as `tar -C dir -cf x.tar .` writes it (`./` names, directory entries); accepted.\n\n" +
		"| corrupt vector | refused with | what is wrong |\n|---|---|---|\n")
	for _, v := range vectors {
		data, _ := v.build(k)
		if len(data) > 64<<10 {
			t.Fatalf("vector %s is %d bytes; keep vectors small", v.name, len(data))
		}
		files["corrupt/"+v.name+".tar"] = data
		if foreign[v.name] {
			// The table gives what a strict open (and so stella's CLI) says.
			fmt.Fprintf(&readme, "| `corrupt/%s.tar` | `%s` | %s; with AllowAnyMediaType, `%s` (found by Verify) |\n",
				v.name, sentinelName(integrity.ErrUnsupportedMediaType), v.about, sentinelName(v.want))
			continue
		}
		fmt.Fprintf(&readme, "| `corrupt/%s.tar` | `%s` | %s |\n", v.name, sentinelName(v.want), v.about)
	}
	readme.WriteString("\n| split set (`split/<case>/b.tar.*`) | refused with | what is wrong |\n|---|---|---|\n")
	for _, sv := range splitVectors {
		for name, data := range sv.build(t, valid) {
			files["split/"+sv.name+"/"+name] = data
		}
		want := "accepted"
		if sv.want != nil {
			want = "`" + sentinelName(sv.want) + "`"
		}
		fmt.Fprintf(&readme, "| `split/%s` | %s | %s |\n", sv.name, want, sv.about)
	}
	files["README.md"] = []byte(readme.String())

	if *update {
		if err := os.RemoveAll(vectorDir); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			p := filepath.Join(vectorDir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var committed []string
	filepath.WalkDir(vectorDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(vectorDir, p)
			committed = append(committed, filepath.ToSlash(rel))
		}
		return nil
	})
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s is stale or missing; run go test ./bundle -run TestGenerateVectors -update", name)
		}
	}
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is not generated any more; run with -update", name)
		}
	}
}

func sentinelName(err error) string {
	for _, name := range sentinelNames {
		if name.err == err {
			return name.name
		}
	}
	return err.Error()
}

var sentinelNames = []struct {
	name string
	err  error
}{
	{"ErrAbsolutePath", ErrAbsolutePath}, {"ErrPathTraversal", ErrPathTraversal}, {"ErrSymlink", ErrSymlink},
	{"ErrHardLink", ErrHardLink}, {"ErrUnsupportedEntryType", ErrUnsupportedEntryType},
	{"ErrDuplicateEntry", ErrDuplicateEntry}, {"ErrUnexpectedEntry", ErrUnexpectedEntry},
	{"ErrInvalidTar", ErrInvalidTar}, {"ErrTruncated", ErrTruncated}, {"ErrTooLarge", integrity.ErrTooLarge},
	{"ErrBadLayout", ErrBadLayout}, {"ErrInvalidIndex", ErrInvalidIndex}, {"ErrInvalidManifest", integrity.ErrInvalidManifest},
	{"ErrChecksums", ErrChecksums}, {"ErrBlobMissing", ErrBlobMissing}, {"ErrExtraBlob", ErrExtraBlob},
	{"ErrSizeMismatch", integrity.ErrSizeMismatch}, {"ErrDigestMismatch", integrity.ErrDigestMismatch},
	{"ErrUnsupportedMediaType", integrity.ErrUnsupportedMediaType}, {"ErrDecompressionLimit", ErrDecompressionLimit},
	{"ErrPartsManifest", ErrPartsManifest}, {"ErrPartMissing", ErrPartMissing}, {"ErrPartSize", ErrPartSize},
	{"ErrPartDigest", ErrPartDigest}, {"ErrPartOrder", ErrPartOrder},
}

// retarred rewrites a bundle the way tar -C dir -cf x.tar . would: "./"
// names and directory entries.
func retarred(t testing.TB, b []byte) []byte {
	fs := readTarFiles(t, b)
	out := []tarFile{special("./", tar.TypeDir, ""), special("./blobs/", tar.TypeDir, ""), special("./blobs/sha256/", tar.TypeDir, "")}
	for _, f := range fs {
		f.hdr.Name = "./" + f.hdr.Name
		out = append(out, f)
	}
	return writeTarFiles(t, out)
}

func TestValidVectors(t *testing.T) {
	ctx := context.Background()
	_, entries := standard(t)
	for _, name := range []string{"valid.stella.tar", "valid-retarred.tar"} {
		t.Run(name, func(t *testing.T) {
			r, err := Open(ctx, filepath.Join(vectorDir, name), OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got []string
			for _, e := range r.Entries() {
				got = append(got, e.Kind+" "+e.Ref+" "+string(e.Descriptor.Digest))
			}
			want := []string{
				"pack demo:1.0.0 " + string(entries[1].Descriptor.Digest),
				"signature  " + string(entries[0].Descriptor.Digest),
			}
			if !slices.Equal(got, want) {
				t.Fatalf("entries = %q, want %q", got, want)
			}
			rep, err := r.Verify(ctx, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Blobs != 7 || len(rep.Entries) != 2 || rep.Entries[0].Blobs != 4 || rep.Entries[1].Blobs != 3 {
				t.Fatalf("report = %+v", rep)
			}
		})
	}
}

func TestCorruptVectors(t *testing.T) {
	k := newKit(t)
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			_, entry := v.build(k)
			path := filepath.Join(vectorDir, "corrupt", v.name+".tar")
			if foreign[v.name] {
				checkRefusal(t, openAndVerify(t, path), integrity.ErrUnsupportedMediaType, "")
				checkRefusal(t, openAndVerify(t, path, openAny), v.want, entry)
				return
			}
			checkRefusal(t, openAndVerify(t, path), v.want, entry)
		})
	}
}

func TestOpenLimits(t *testing.T) {
	ctx := context.Background()
	k := newKit(t)
	tests := map[string]struct {
		lim  limits
		want error
	}{
		"entries":   {limits{entries: 3, manifest: integrity.MaxManifestSize, checksums: 1 << 20, depth: 8, index: 10}, ErrTooManyEntries},
		"index":     {limits{entries: 100, manifest: 64, checksums: 1 << 20, depth: 8, index: 10}, integrity.ErrTooLarge},
		"checksums": {limits{entries: 100, manifest: integrity.MaxManifestSize, checksums: 64, depth: 8, index: 10}, integrity.ErrTooLarge},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := load(ctx, bytes.NewReader(k.base), int64(len(k.base)), false, tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A manifest over the limit, with index.json under it.
	big := bytes.Repeat([]byte(" "), 2000)
	fs := k.files()
	i := find(t, fs, blobPath(k.pack.Digest))
	m := append(bytes.Clone(fs[i].data[:len(fs[i].data)-1]), append(big, '}')...)
	fs, _ = replaceBlob(t, fs, k.pack.Digest, m)
	b := writeTarFiles(t, fs)
	_, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, limits{entries: 100, manifest: 1500, checksums: 1 << 20, depth: 8, index: 10})
	if !errors.Is(err, integrity.ErrTooLarge) {
		t.Fatalf("big manifest: err = %v, want integrity.ErrTooLarge", err)
	}
	if _, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, defaultLimits); err != nil {
		t.Fatalf("the same manifest under the default limit: %v", err)
	}
}

func TestFetchVerifies(t *testing.T) {
	ctx := context.Background()
	k := newKit(t)
	fs := k.files()
	i := find(t, fs, blobPath(k.yaml.Digest))
	fs[i].data = flip(fs[i].data)
	b := writeTarFiles(t, fs)
	r, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	// Reading exactly Size bytes (as io.ReadFull does) still sees the error.
	rc, err := r.Fetch(ctx, k.yaml)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, k.yaml.Size)
	if _, err := io.ReadFull(rc, buf); !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("ReadFull of a flipped blob: err = %v, want integrity.ErrDigestMismatch", err)
	}
	if _, err := content.FetchAll(ctx, r, k.yaml); !errors.Is(err, integrity.ErrDigestMismatch) {
		t.Fatalf("FetchAll: %v", err)
	}
	wrong := k.yaml
	wrong.Size++
	if _, err := r.Fetch(ctx, wrong); !errors.Is(err, integrity.ErrSizeMismatch) {
		t.Fatalf("wrong size: %v", err)
	}
	if ok, _ := r.Exists(ctx, wrong); ok {
		t.Fatal("Exists with the wrong size")
	}
	absent := ocispec.Descriptor{Digest: digest.FromString("absent"), Size: 1}
	if _, err := r.Fetch(ctx, absent); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	if got, _ := content.FetchAll(ctx, r, k.cfg); !bytes.Equal(got, mustFetch(t, k.f.store, k.cfg)) {
		t.Fatal("an intact blob differs")
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "absent.tar"), OpenOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not exist", err)
	}
}

// FuzzOpen feeds arbitrary bytes to Open (and Verify and Fetch when it
// accepts them). Every refusal must wrap one of the package's errors.
func FuzzOpen(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(vectorDir, "*.tar"))
	more, _ := filepath.Glob(filepath.Join(vectorDir, "corrupt", "*.tar"))
	for _, p := range append(seeds, more...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		tmp, err := os.CreateTemp(dir, "fuzz-*.tar")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(b); err != nil {
			t.Fatal(err)
		}
		tmp.Close()
		ctx := context.Background()
		r, err := Open(ctx, tmp.Name(), OpenOptions{})
		if err != nil {
			if len(matching(err)) == 0 {
				t.Fatalf("refusal without a sentinel: %v", err)
			}
			return
		}
		defer r.Close()
		if len(r.Entries()) == 0 {
			t.Fatal("opened a bundle without entries")
		}
		if _, err := r.Verify(ctx, VerifyOptions{MaxUncompressedSize: 1 << 20}); err != nil && len(matching(err)) == 0 {
			t.Fatalf("verify failure without a sentinel: %v", err)
		}
		for _, e := range r.Entries() {
			if _, err := content.FetchAll(ctx, r, e.Descriptor); err != nil && len(matching(err)) == 0 {
				t.Fatalf("fetch failure without a sentinel: %v", err)
			}
		}
	})
}

// FuzzIndex reaches the index.json and graph checks that FuzzOpen rarely
// gets past SHA256SUMS: arbitrary index.json bytes in the valid bundle,
// with SHA256SUMS rewritten to agree.
func FuzzIndex(f *testing.F) {
	valid, err := os.ReadFile(filepath.Join(vectorDir, "valid.stella.tar"))
	if err != nil {
		f.Fatal(err)
	}
	files := readTarFiles(f, valid)
	ix := files[find(f, files, IndexFile)].data
	f.Add(ix)
	f.Add(bytes.Replace(ix, []byte(`"size":`), []byte(`"size":1`), 1))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := readTarFiles(t, valid)
		fs[find(t, fs, IndexFile)].data = b
		data := writeTarFiles(t, reseal(t, fs))
		r, err := load(context.Background(), bytes.NewReader(data), int64(len(data)), false, defaultLimits)
		if err != nil {
			if len(matching(err)) == 0 {
				t.Fatalf("refusal without a sentinel: %v", err)
			}
			return
		}
		for _, e := range r.Entries() {
			if _, ok := r.nodes[e.Descriptor.Digest]; !ok || !kinds[e.Kind] {
				t.Fatalf("accepted entry %+v without a checked manifest", e)
			}
		}
	})
}

// FuzzManifest feeds arbitrary manifest bytes to the manifest checks.
func FuzzManifest(f *testing.F) {
	k := newKit(f)
	f.Add(mustFetch(f, k.f.store, k.pack), false)
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":1}]}`), true)
	f.Fuzz(func(t *testing.T, b []byte, index bool) {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if index {
			d.MediaType = ocispec.MediaTypeImageIndex
		}
		n, err := parseManifest(b, d, false)
		if err != nil {
			if len(matching(err)) == 0 {
				t.Fatalf("refusal without a sentinel: %v", err)
			}
			return
		}
		for _, c := range n.children {
			if c.Digest == d.Digest || c.Size < 0 {
				t.Fatalf("accepted child %+v", c)
			}
			if _, err := parseDigest(c.Digest); err != nil {
				t.Fatalf("accepted child digest %q", c.Digest)
			}
		}
	})
}
