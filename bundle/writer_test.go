package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/content/oci"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
)

func TestWriteDeterministic(t *testing.T) {
	f, entries := standard(t)
	a, sa := writeBundle(t, f, entries, WriteOptions{})
	// Same entries, other order and repeated: same bytes.
	b, sb := writeBundle(t, f, []Entry{entries[1], entries[0], entries[1]}, WriteOptions{})
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same entries differ")
	}
	if sa.Digest != digest.FromBytes(a) || sa.Size != int64(len(a)) || sa.Digest != sb.Digest {
		t.Fatalf("summary %v/%d does not describe the file %v/%d", sa.Digest, sa.Size, digest.FromBytes(a), len(a))
	}
	if sa.Blobs != 7 {
		t.Fatalf("blobs = %d, want 7 (2 manifests, 2 configs, 3 layers)", sa.Blobs)
	}

	files := readTarFiles(t, a)
	var names []string
	for _, f := range files {
		h := f.hdr
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" ||
			h.ModTime.Unix() != 0 || h.Format != tar.FormatUSTAR {
			t.Errorf("entry %s: non-canonical header %+v", h.Name, h)
		}
		names = append(names, h.Name)
	}
	if names[0] != LayoutFile || names[1] != IndexFile || names[2] != ChecksumsFile {
		t.Fatalf("entry order %v", names[:3])
	}
	for i := 4; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("blobs not sorted: %s before %s", names[i-1], names[i])
		}
	}
	if got := string(files[0].data); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %s", got)
	}
	wantIndex := `{"manifests":[` +
		`{"annotations":{"io.stellaops.kind":"pack","io.stellaops.ref":"demo:1.0.0","org.opencontainers.image.ref.name":"demo:1.0.0"},` +
		`"artifactType":"application/vnd.stellaops.pack.v1+json","digest":"` + string(entries[1].Descriptor.Digest) + `",` +
		`"mediaType":"application/vnd.oci.image.manifest.v1+json","size":` + itoa(entries[1].Descriptor.Size) + `},` +
		`{"annotations":{"io.stellaops.kind":"signature"},` +
		`"artifactType":"application/vnd.stellaops.pack.signature.v1+json","digest":"` + string(entries[0].Descriptor.Digest) + `",` +
		`"mediaType":"application/vnd.oci.image.manifest.v1+json","size":` + itoa(entries[0].Descriptor.Size) + `}],` +
		`"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}`
	if diff := cmp.Diff(wantIndex, string(files[1].data)); diff != "" {
		t.Fatalf("index.json (-want +got):\n%s", diff)
	}
	sums := strings.Split(strings.TrimSuffix(string(files[2].data), "\n"), "\n")
	if len(sums) != len(files)-1 {
		t.Fatalf("SHA256SUMS has %d lines for %d files", len(sums), len(files)-1)
	}
	for _, f := range files {
		if f.hdr.Name == ChecksumsFile {
			continue
		}
		line := digest.FromBytes(f.data).Encoded() + "  " + f.hdr.Name
		if !strings.Contains(string(files[2].data), line+"\n") {
			t.Errorf("SHA256SUMS lacks %q", line)
		}
	}
	if want := tarSize([]int64{int64(len(files[0].data)), int64(len(files[1].data)), int64(len(files[2].data)), 0, 0, 0, 0, 0, 0, 0}); want > int64(len(a)) {
		t.Fatalf("tarSize underestimates: %d > %d", want, len(a))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestWriteRoundTrip(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	path := filepath.Join(t.TempDir(), "media.stella.tar")
	var calls int
	var last [2]int64
	sum, err := WriteFile(ctx, path, f.store, entries, WriteOptions{Progress: func(done, total int64) { calls++; last = [2]int64{done, total} }})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last[0] != sum.Size || last[1] != sum.Size {
		t.Fatalf("progress: %d calls, last %v, size %d", calls, last, sum.Size)
	}
	r, err := Open(ctx, path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if diff := cmp.Diff(sum.Entries, r.Entries()); diff != "" {
		t.Fatalf("entries (-written +read):\n%s", diff)
	}
	// Every blob of the source graph comes back byte for byte.
	for _, e := range entries {
		var blobs []ocispec.Descriptor
		if err := walkStore(ctx, f.store, e.Descriptor, &blobs); err != nil {
			t.Fatal(err)
		}
		for _, d := range blobs {
			want, err := content.FetchAll(ctx, f.store, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := content.FetchAll(ctx, r, d)
			if err != nil {
				t.Fatalf("fetch %s: %v", d.Digest, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("blob %s differs", d.Digest)
			}
		}
	}
	if d, err := r.Resolve(ctx, "demo:1.0.0"); err != nil || d.Digest != entries[1].Descriptor.Digest {
		t.Fatalf("resolve demo:1.0.0 = %v, %v", d.Digest, err)
	}
	if _, err := r.Resolve(ctx, "demo:2.0.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve unknown ref: %v", err)
	}
	preds, err := r.Predecessors(ctx, entries[1].Descriptor)
	if err != nil || len(preds) != 1 || preds[0].Digest != entries[0].Descriptor.Digest || preds[0].ArtifactType != artifact.ArtifactTypeSignature {
		t.Fatalf("predecessors of the pack = %v, %v; want the signature", preds, err)
	}

	// An oras extended copy from the bundle brings the signature along.
	dst := memory.New()
	if _, err := oras.ExtendedCopy(ctx, r, "demo:1.0.0", dst, "demo:1.0.0", oras.DefaultExtendedCopyOptions); err != nil {
		t.Fatal(err)
	}
	if ok, _ := dst.Exists(ctx, entries[0].Descriptor); !ok {
		t.Fatal("extended copy did not carry the signature")
	}
}

// walkStore lists a manifest and its config and layers.
func walkStore(ctx context.Context, s content.Fetcher, d ocispec.Descriptor, out *[]ocispec.Descriptor) error {
	*out = append(*out, d)
	b, err := content.FetchAll(ctx, s, d)
	if err != nil {
		return err
	}
	n, err := parseManifest(b, d, true)
	if err != nil {
		return err
	}
	*out = append(*out, n.children...)
	return nil
}

func TestWriteRefusesBadSource(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	// A source that serves other bytes for one layer.
	var layer ocispec.Descriptor
	var blobs []ocispec.Descriptor
	if err := walkStore(ctx, f.store, entries[1].Descriptor, &blobs); err != nil {
		t.Fatal(err)
	}
	layer = blobs[2]
	tests := map[string]struct {
		serve []byte
		want  error
	}{
		"flipped": {flip(mustFetch(t, f.store, layer)), integrity.ErrDigestMismatch},
		"short":   {mustFetch(t, f.store, layer)[1:], integrity.ErrSizeMismatch},
		"long":    {append(mustFetch(t, f.store, layer), 'x'), integrity.ErrSizeMismatch},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			src := content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
				if d.Digest == layer.Digest {
					return io.NopCloser(bytes.NewReader(tt.serve)), nil
				}
				return f.store.Fetch(ctx, d)
			})
			path := filepath.Join(t.TempDir(), "b.tar")
			_, err := WriteFile(ctx, path, src, entries, WriteOptions{})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), string(layer.Digest)) {
				t.Fatalf("err = %v, want %v naming %s", err, tt.want, layer.Digest)
			}
			left, _ := os.ReadDir(filepath.Dir(path))
			if len(left) != 0 {
				t.Fatalf("a failed write left %v", left)
			}
			// What was gathered but not yet written when the blob failed
			// (here the whole bundle, less than a chunk) is dropped.
			var got bytes.Buffer
			if _, err := Write(ctx, &got, src, entries, WriteOptions{}); !errors.Is(err, tt.want) {
				t.Fatalf("Write: err = %v, want %v", err, tt.want)
			}
			if got.Len() != 0 {
				t.Fatalf("a failed write sent %d bytes to its writer, want none", got.Len())
			}
		})
	}
}

func mustFetch(t testing.TB, s content.Fetcher, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.FetchAll(context.Background(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flip(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x01
	return b
}

func TestWriteRefusesBadEntries(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	pack, sig := entries[1], entries[0]
	blobs := []ocispec.Descriptor{}
	if err := walkStore(ctx, f.store, pack.Descriptor, &blobs); err != nil {
		t.Fatal(err)
	}
	other := f.pack("other", "2.0.0")
	tests := map[string][]Entry{
		"none":            nil,
		"unknown kind":    {{Descriptor: pack.Descriptor, Kind: "image", Ref: "demo:1.0.0"}},
		"wrong kind":      {{Descriptor: pack.Descriptor, Kind: artifact.KindEvidence, Ref: "demo:1.0.0"}},
		"bad ref":         {{Descriptor: pack.Descriptor, Kind: artifact.KindPack, Ref: "demo"}},
		"no ref":          {{Descriptor: pack.Descriptor, Kind: artifact.KindPack}},
		"not a manifest":  {{Descriptor: blobs[1], Kind: artifact.KindPack, Ref: "demo:1.0.0"}},
		"ref on two":      {pack, {Descriptor: other, Kind: artifact.KindPack, Ref: "demo:1.0.0"}},
		"signature alone": {{Descriptor: sig.Descriptor, Kind: artifact.KindPack, Ref: "x:1"}},
	}
	for name, es := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Write(ctx, io.Discard, f.store, es, WriteOptions{})
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("err = %v, want ErrInvalidEntry", err)
			}
		})
	}
	// A foreign layer type needs the option, on both sides.
	foreign := f.manifest(artifact.ArtifactTypePack, nil, nil, f.blob("application/vnd.example.thing", []byte("x"), nil))
	es := []Entry{{Descriptor: foreign, Kind: artifact.KindPack, Ref: "foreign:1"}}
	if _, err := Write(ctx, io.Discard, f.store, es, WriteOptions{}); !errors.Is(err, integrity.ErrUnsupportedMediaType) {
		t.Fatalf("foreign layer: err = %v, want integrity.ErrUnsupportedMediaType", err)
	}
	path := filepath.Join(t.TempDir(), "foreign.tar")
	if _, err := WriteFile(ctx, path, f.store, es, WriteOptions{AllowAnyMediaType: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, OpenOptions{}); !errors.Is(err, integrity.ErrUnsupportedMediaType) {
		t.Fatalf("strict open of foreign content: err = %v", err)
	}
	r, err := Open(ctx, path, OpenOptions{AllowAnyMediaType: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Verify(ctx, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestWriteCancelled(t *testing.T) {
	f, entries := standard(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := filepath.Join(t.TempDir(), "b.tar")
	if _, err := WriteFile(ctx, path, f.store, entries, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a cancelled write left a file")
	}
}

// The bundle is a layout that plain tools check: tar -x and sha256sum -c.
func TestInteropSHA256SUMS(t *testing.T) {
	for _, tool := range []string{"tar", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	f, entries := standard(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "b.tar")
	if _, err := WriteFile(context.Background(), path, f.store, entries, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, b)
		}
		return string(b)
	}
	run(out, "tar", "-xf", path)
	got := run(out, "sha256sum", "--strict", "-c", ChecksumsFile)
	if n := strings.Count(got, ": OK\n"); n != 9 {
		t.Fatalf("sha256sum checked %d files, want 9:\n%s", n, got)
	}
	// And a flipped byte is caught by the same command.
	blob := filepath.Join(out, BlobsDir, entries[1].Descriptor.Digest.Encoded())
	b, _ := os.ReadFile(blob)
	if err := os.WriteFile(blob, flip(b), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "--quiet", "-c", ChecksumsFile)
	cmd.Dir = out
	if err := cmd.Run(); err == nil {
		t.Fatal("sha256sum -c accepted a flipped byte")
	}
}

// oras-go reads the bundle as an OCI layout tar and resolves its ref.
func TestInteropOrasTar(t *testing.T) {
	ctx := context.Background()
	f, entries := standard(t)
	path := filepath.Join(t.TempDir(), "b.tar")
	if _, err := WriteFile(ctx, path, f.store, entries, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := oci.NewFromTar(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Resolve(ctx, "demo:1.0.0")
	if err != nil || d.Digest != entries[1].Descriptor.Digest {
		t.Fatalf("resolve = %v, %v", d.Digest, err)
	}
	dst := memory.New()
	if _, err := oras.ExtendedCopy(ctx, s, "demo:1.0.0", dst, "demo:1.0.0", oras.DefaultExtendedCopyOptions); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if ok, _ := dst.Exists(ctx, e.Descriptor); !ok {
			t.Fatalf("oras copy lacks %s", e.Descriptor.Digest)
		}
	}
}

// failAfter accepts n bytes, then fails every write with errFull.
type failAfter struct {
	n     int
	calls int
}

var errFull = errors.New("no space left on the test's medium")

func (f *failAfter) Write(p []byte) (int, error) {
	f.calls++
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

// TestWriteFailsWithItsWriter: the bundle is written, and hashed, behind
// the reads (writeBehind): a writer that fails part way fails the write
// with its own error, wherever it fails, and no write reaches it after.
func TestWriteFailsWithItsWriter(t *testing.T) {
	f, entries := standard(t)
	whole, _ := writeBundle(t, f, entries, WriteOptions{})
	for _, at := range []int{0, 1, 511, 1024, len(whole) / 2, len(whole) - 1} {
		w := &failAfter{n: at}
		if _, err := Write(context.Background(), w, f.store, entries, WriteOptions{}); !errors.Is(err, errFull) {
			t.Fatalf("writer failing after %d of %d bytes: err = %v, want its error", at, len(whole), err)
		}
		if w.calls != 1 {
			t.Errorf("writer failing after %d bytes: %d writes, want none after the one that failed", at, w.calls)
		}
	}
}

// TestWriteBehind: what a writeBehind is given, in writes of every size,
// reaches its writer in order and is hashed; close may be called again.
func TestWriteBehind(t *testing.T) {
	var want bytes.Buffer
	var got bytes.Buffer
	b := newWriteBehind(&got, sha256.New())
	sizes := []int{1, 100, writeBehindChunk - 1, writeBehindChunk, writeBehindChunk + 1, 2*writeBehindChunk + 5, 3, 4096, 7}
	for i := range 3 * len(sizes) {
		p := bytes.Repeat([]byte{byte(i)}, sizes[i%len(sizes)])
		want.Write(p)
		if n, err := b.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := b.close(); err != nil || b.close() != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("%d bytes written, want %d, the same", got.Len(), want.Len())
	}
	if sum := sha256.Sum256(want.Bytes()); !bytes.Equal(b.h.Sum(nil), sum[:]) {
		t.Fatal("the hash is not the bytes'")
	}
}
