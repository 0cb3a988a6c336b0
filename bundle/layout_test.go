package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"stellaops.io/stella/artifact"
)

// fixedCreated keeps oras.PackManifest deterministic.
const fixedCreated = "2024-01-01T00:00:00Z"

// fixture is a memory store holding test artifacts.
type fixture struct {
	t     testing.TB
	store *memory.Store
}

func newFixture(t testing.TB) *fixture { return &fixture{t: t, store: memory.New()} }

// blob pushes data and returns its descriptor.
func (f *fixture) blob(mediaType string, data []byte, annotations map[string]string) ocispec.Descriptor {
	f.t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data)), Annotations: annotations}
	if ok, _ := f.store.Exists(context.Background(), d); !ok {
		if err := f.store.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
			f.t.Fatal(err)
		}
	}
	return d
}

// Media types of zstd layers in the tests. Strict bundles hold no zstd
// layer: foreignZstd is someone else's type, carried with
// AllowAnyMediaType; retiredPackZstd is the zstd pack file type stella once
// declared and never wrote, refused by strict bundles like any unknown type.
const (
	foreignZstd     = "application/vnd.example.file.v1+zstd"
	retiredPackZstd = "application/vnd.stellaops.pack.file.v1+zstd"
)

// zstdLayer pushes a foreign zstd layer of plain with its annotations;
// declared overrides the uncompressed size annotation when >= 0.
func (f *fixture) zstdLayer(title string, plain []byte, declared int64) ocispec.Descriptor {
	f.t.Helper()
	return f.zstdLayerOf(foreignZstd, title, plain, declared)
}

// zstdLayerOf is zstdLayer with another media type.
func (f *fixture) zstdLayerOf(mediaType, title string, plain []byte, declared int64) ocispec.Descriptor {
	f.t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.t.Fatal(err)
	}
	defer enc.Close()
	size := int64(len(plain))
	if declared >= 0 {
		size = declared
	}
	return f.blob(mediaType, enc.EncodeAll(plain, nil), map[string]string{
		artifact.AnnotationTitle:              title,
		artifact.AnnotationUncompressedSize:   strconv.FormatInt(size, 10),
		artifact.AnnotationUncompressedDigest: digest.FromBytes(plain).String(),
	})
}

// manifest packs an image manifest with a fixed creation time.
func (f *fixture) manifest(artifactType string, config *ocispec.Descriptor, subject *ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
	f.t.Helper()
	return f.manifestAnnotated(artifactType, config, subject, nil, layers...)
}

// manifestAnnotated is manifest with more manifest annotations (a pack's
// io.stellaops.ref, which importers check against the bundle's index).
func (f *fixture) manifestAnnotated(artifactType string, config *ocispec.Descriptor, subject *ocispec.Descriptor, ann map[string]string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	f.t.Helper()
	annotations := map[string]string{artifact.AnnotationCreated: fixedCreated}
	for k, v := range ann {
		annotations[k] = v
	}
	d, err := oras.PackManifest(context.Background(), f.store, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		Subject:             subject,
		Layers:              layers,
		ConfigDescriptor:    config,
		ManifestAnnotations: annotations,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// pack adds a small pack (config, a plain and a zstd file) and returns its
// manifest descriptor.
func (f *fixture) pack(id, version string) ocispec.Descriptor {
	f.t.Helper()
	cfg := f.blob(artifact.MediaTypePackConfig, []byte(`{"id":"`+id+`","version":"`+version+`"}`), nil)
	yaml := f.blob(artifact.MediaTypePackFile, []byte("apiVersion: stellaops.io/pack.v1\nkind: TaskPack\nmetadata:\n  name: "+id+"\n"), map[string]string{artifact.AnnotationTitle: "pack.yaml"})
	script := f.blob(artifact.MediaTypePackFile, bytes.Repeat([]byte("echo stella\n"), 40), map[string]string{artifact.AnnotationTitle: "files/run.sh"})
	return f.manifestAnnotated(artifact.ArtifactTypePack, &cfg, nil, map[string]string{artifact.AnnotationRef: id + ":" + version}, yaml, script)
}

// signature adds a signature referrer of subject.
func (f *fixture) signature(subject ocispec.Descriptor) ocispec.Descriptor {
	f.t.Helper()
	env := f.blob(artifact.MediaTypeDSSE, []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"test","sig":"AAAA"}]}`), nil)
	return f.manifest(artifact.ArtifactTypeSignature, nil, &subject, env)
}

// standard is the fixture of the valid vector: a pack and its signature.
func standard(t testing.TB) (*fixture, []Entry) {
	f := newFixture(t)
	p := f.pack("demo", "1.0.0")
	s := f.signature(p)
	return f, []Entry{
		{Descriptor: s, Kind: artifact.KindSignature},
		{Descriptor: p, Kind: artifact.KindPack, Ref: "demo:1.0.0"},
	}
}

// writeBundle writes entries of f to memory.
func writeBundle(t testing.TB, f *fixture, entries []Entry, opts WriteOptions) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := Write(context.Background(), &buf, f.store, entries, opts)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

// tarFile is one entry of a hand-made tar.
type tarFile struct {
	hdr  tar.Header
	data []byte
}

func readTarFiles(t testing.TB, b []byte) []tarFile {
	t.Helper()
	var files []tarFile
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, tarFile{hdr: *h, data: data})
	}
}

func writeTarFiles(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		if h.Typeflag == tar.TypeReg || h.Typeflag == 0 {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func regular(name string, data []byte) tarFile {
	return tarFile{hdr: *fileHeader(name, int64(len(data))), data: data}
}

// find returns the index of the entry named name.
func find(t testing.TB, files []tarFile, name string) int {
	t.Helper()
	for i, f := range files {
		if f.hdr.Name == name {
			return i
		}
	}
	t.Fatalf("no entry %s", name)
	return -1
}

// reseal rewrites SHA256SUMS so that it agrees with the files present.
func reseal(t testing.TB, files []tarFile) []tarFile {
	t.Helper()
	var lines []string
	for _, f := range files {
		if f.hdr.Typeflag != tar.TypeReg || f.hdr.Name == ChecksumsFile {
			continue
		}
		lines = append(lines, digest.FromBytes(f.data).Encoded()+"  "+f.hdr.Name+"\n")
	}
	sortStrings(lines)
	i := find(t, files, ChecksumsFile)
	files[i].data = []byte(strings.Join(lines, ""))
	return files
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && strings.Split(s[j], "  ")[1] < strings.Split(s[j-1], "  ")[1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// editIndex rewrites index.json through fn and reseals.
func editIndex(t testing.TB, files []tarFile, fn func(*ocispec.Index)) []tarFile {
	t.Helper()
	i := find(t, files, IndexFile)
	var ix ocispec.Index
	if err := json.Unmarshal(files[i].data, &ix); err != nil {
		t.Fatal(err)
	}
	fn(&ix)
	b, err := json.Marshal(ix)
	if err != nil {
		t.Fatal(err)
	}
	files[i].data = b
	return reseal(t, files)
}

// replaceBlob swaps the blob old for data, pointing index.json entries
// that named old at the new blob, and reseals.
func replaceBlob(t testing.TB, files []tarFile, old digest.Digest, data []byte) ([]tarFile, digest.Digest) {
	t.Helper()
	nd := digest.FromBytes(data)
	i := find(t, files, blobPath(old))
	files[i] = regular(blobPath(nd), data)
	files = editIndex(t, files, func(ix *ocispec.Index) {
		for j, m := range ix.Manifests {
			if m.Digest == old {
				ix.Manifests[j].Digest, ix.Manifests[j].Size = nd, int64(len(data))
			}
		}
	})
	return files, nd
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCleanName(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		want string
		kind entryKind
		err  error
	}{
		{"oci-layout", "oci-layout", entryLayout, nil},
		{"./index.json", "index.json", entryIndex, nil},
		{"SHA256SUMS", "SHA256SUMS", entryChecksums, nil},
		{"blobs/sha256/" + hex, "blobs/sha256/" + hex, entryBlob, nil},
		{"./blobs/sha256/" + hex, "blobs/sha256/" + hex, entryBlob, nil},
		{"blobs/sha256/" + strings.ToUpper(hex), "", entryOther, nil},
		{"blobs/sha512/" + hex, "", entryOther, nil},
		{"blobs/", "blobs", entryDir, nil},
		{"./", ".", entryDir, nil},
		{"README", "README", entryOther, nil},
		{"", "", entryOther, nil},
		{"/etc/passwd", "", entryOther, ErrAbsolutePath},
		{`\evil`, "", entryOther, ErrAbsolutePath},
		{"C:evil", "", entryOther, ErrAbsolutePath},
		{"blobs/../../x", "", entryOther, ErrPathTraversal},
		{`blobs\..\x`, "", entryOther, ErrPathTraversal},
		{"..", "", entryOther, ErrPathTraversal},
	}
	for _, tt := range tests {
		got, kind, err := cleanName(tt.name)
		if !errors.Is(err, tt.err) || kind != tt.kind || (tt.err == nil && tt.kind != entryOther && got != tt.want) {
			t.Errorf("cleanName(%q) = %q, %v, %v; want %q, %v, %v", tt.name, got, kind, err, tt.want, tt.kind, tt.err)
		}
	}
}

func TestCheckRef(t *testing.T) {
	for ref, ok := range map[string]bool{
		"demo:1.0.0":                    true,
		"org/team/demo:1.0.0+build":     true,
		"demo":                          false,
		":1.0":                          false,
		"demo:":                         false,
		"de mo:1":                       false,
		"demo:1\n":                      false,
		strings.Repeat("a", 300) + ":1": false,
	} {
		if err := checkRef(ref); (err == nil) != ok {
			t.Errorf("checkRef(%q) = %v, want ok=%v", ref, err, ok)
		}
	}
}

// Self-references and cycles cannot be built with valid digests (content
// cannot contain its own hash), so the vectors for them fail earlier with
// integrity.ErrDigestMismatch. These tests exercise the structural checks behind
// that, on content whose digest is not checked.
func TestParseManifestSelfReference(t *testing.T) {
	self := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("self"), Size: 1}
	cfg := ocispec.DescriptorEmptyJSON
	tests := map[string]any{
		"config": ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: artifact.MediaTypeEmptyJSON, Digest: self.Digest, Size: 2}},
		"layer": ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cfg, Layers: []ocispec.Descriptor{{MediaType: artifact.MediaTypePackFile, Digest: self.Digest, Size: 1}}},
		"subject": ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cfg, Subject: &self},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseManifest(mustJSON(t, m), self, false)
			if !errors.Is(err, ErrSelfReference) {
				t.Fatalf("err = %v, want ErrSelfReference", err)
			}
		})
	}
	ix := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("ix"), Size: 1}}}
	selfIx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("ix"), Size: 1}
	if _, err := parseManifest(mustJSON(t, ix), selfIx, false); !errors.Is(err, ErrSelfReference) {
		t.Fatalf("index listing itself: err = %v, want ErrSelfReference", err)
	}
}

func TestGraphCycle(t *testing.T) {
	a := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("a"), Size: 10}
	b := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("b"), Size: 10}
	docs := map[digest.Digest][]byte{
		a.Digest: mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{b}}),
		b.Digest: mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{a}}),
	}
	r := &Reader{
		blobs: map[digest.Digest]tarEntry{a.Digest: {name: blobPath(a.Digest), size: 10}, b.Digest: {name: blobPath(b.Digest), size: 10}},
		nodes: map[digest.Digest]*node{},
		preds: map[digest.Digest][]ocispec.Descriptor{},
	}
	g := &graph{r: r, lim: defaultLimits, referenced: map[digest.Digest]bool{},
		load: func(d ocispec.Descriptor, _ limits) ([]byte, error) { return docs[d.Digest], nil }}
	_, err := g.walk(a, nil)
	var ee *EntryError
	if !errors.Is(err, ErrCycle) || !errors.As(err, &ee) || ee.Path != blobPath(a.Digest) {
		t.Fatalf("err = %v, want ErrCycle at %s", err, blobPath(a.Digest))
	}
}

func TestFileHeader(t *testing.T) {
	h := fileHeader("index.json", 10)
	if h.Format != tar.FormatUSTAR || h.Mode != 0o644 || h.Uid != 0 || h.Uname != "" || !h.ModTime.Equal(h.ModTime.UTC()) || h.ModTime.Unix() != 0 {
		t.Fatalf("header = %+v", h)
	}
	if fileHeader("big", maxUSTARSize+1).Format != tar.FormatPAX {
		t.Fatal("a size beyond USTAR must use PAX")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(fileHeader("big", 1<<34)); err != nil {
		t.Fatalf("PAX header: %v", err)
	}
	if got, want := int64(buf.Len()), tarSize([]int64{1 << 34})-1024-(1<<34); got != want {
		t.Fatalf("PAX header takes %d bytes, tarSize assumes %d", got, want)
	}
}

func ExampleEntryError() {
	err := fmt.Errorf("open bundle b.tar: %w", entryErr("blobs/sha256/ab", ErrBlobMissing, "layer of manifest x"))
	var ee *EntryError
	fmt.Println(errors.As(err, &ee), ee.Path, errors.Is(err, ErrBlobMissing))
	// Output: true blobs/sha256/ab true
}

func TestHolds(t *testing.T) {
	e := func(kind string) Entry { return Entry{Kind: kind} }
	for _, c := range []struct {
		entries []Entry
		want    string
	}{
		{nil, "nothing"},
		{[]Entry{e("pack")}, "1 pack"},
		{[]Entry{e("pack"), e("signature"), e("pack")}, "2 packs and 1 signature"},
		{[]Entry{e("signature"), e("evidence"), e("pack"), e("")}, "1 evidence, 1 pack, 1 signature and 1 unnamed artifact"},
	} {
		if got := Holds(c.entries); got != c.want {
			t.Errorf("Holds(%v) = %q, want %q", c.entries, got, c.want)
		}
	}
}
