package integrity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingSource counts the bytes read of it.
type countingSource struct {
	r    io.Reader
	read int
}

func (c *countingSource) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func TestReader(t *testing.T) {
	data := []byte("the content of a blob, long enough to be read in pieces")
	last := bytes.Clone(data)
	last[len(last)-1] ^= 1
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	tests := []struct {
		name    string
		src     []byte
		desc    ocispec.Descriptor
		chunk   int // read size; 0 means 4 KiB
		oneByte bool
		want    error
	}{
		{name: "exact", src: data, desc: desc},
		{name: "exact, 1-byte reads", src: data, desc: desc, chunk: 1},
		{name: "exact, source reads 1 byte at a time", src: data, desc: desc, oneByte: true},
		{name: "empty", src: nil, desc: ocispec.Descriptor{Digest: digest.FromBytes(nil)}},
		{name: "short", src: data[:len(data)-1], desc: desc, want: ErrSizeMismatch},
		{name: "short, 1-byte reads", src: data[:len(data)-1], desc: desc, chunk: 1, want: ErrSizeMismatch},
		{name: "empty source", src: nil, desc: desc, want: ErrSizeMismatch},
		{name: "long", src: append(bytes.Clone(data), 'x'), desc: desc, want: ErrSizeMismatch},
		{name: "long, 1-byte reads", src: append(bytes.Clone(data), 'x'), desc: desc, chunk: 1, want: ErrSizeMismatch},
		{name: "long, empty expected", src: []byte("x"), desc: ocispec.Descriptor{Digest: digest.FromBytes(nil)}, want: ErrSizeMismatch},
		{name: "much longer", src: bytes.Repeat(data, 1000), desc: desc, want: ErrSizeMismatch},
		{name: "wrong digest", src: bytes.ToUpper(data), desc: desc, want: ErrDigestMismatch},
		{name: "wrong digest at the last byte", src: last, desc: desc, want: ErrDigestMismatch},
		{name: "wrong digest at the last byte, 1-byte reads", src: last, desc: desc, chunk: 1, want: ErrDigestMismatch},
		{name: "wrong digest, source reads 1 byte at a time", src: last, desc: desc, oneByte: true, want: ErrDigestMismatch},
		{name: "sha512", src: data, desc: ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data), Size: int64(len(data))}},
		{name: "invalid digest algorithm", src: data, desc: ocispec.Descriptor{Digest: "md5:" + digest.Digest(strings.Repeat("0", 32)), Size: int64(len(data))}, want: ErrInvalidDigest},
		{name: "malformed digest", src: data, desc: ocispec.Descriptor{Digest: "sha256:xyz", Size: int64(len(data))}, want: ErrInvalidDigest},
		{name: "negative size", src: data, desc: ocispec.Descriptor{Digest: desc.Digest, Size: -1}, want: ErrInvalidDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingSource{r: bytes.NewReader(tt.src)}
			var r io.Reader = src
			if tt.oneByte {
				r = iotest.OneByteReader(src)
			}
			v := NewReader(r, tt.desc)
			v.Wrap = func(err error) error { return fmt.Errorf("blob x: %w", err) }
			chunk := tt.chunk
			if chunk == 0 {
				chunk = 4096
			}
			var got []byte
			var err error
			buf := make([]byte, chunk)
			for {
				var n int
				n, err = v.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if tt.want == nil {
				if err != io.EOF || !bytes.Equal(got, tt.src) {
					t.Fatalf("read %d bytes, err %v; want all %d and io.EOF", len(got), err, len(tt.src))
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), "blob x: ") {
				t.Fatalf("err = %v, want %v wrapped by Wrap", err, tt.want)
			}
			// The content is never released whole: the bytes returned
			// stop short of the declared size.
			if int64(len(got)) >= tt.desc.Size && tt.desc.Size > 0 {
				t.Fatalf("returned %d bytes of %d before failing", len(got), tt.desc.Size)
			}
			if len(tt.desc.Digest) > 0 && tt.desc.Size >= 0 && int64(src.read) > tt.desc.Size+1 {
				t.Fatalf("read %d bytes of the source, more than size+1 (%d)", src.read, tt.desc.Size+1)
			}
			if n, again := v.Read(buf); n != 0 || !errors.Is(again, tt.want) {
				t.Fatalf("after failing: %d, %v; want the same error again", n, again)
			}
		})
	}
}

// A source that fails after the last byte fails the read instead of
// completing it.
func TestReaderSourceErrorAfterContent(t *testing.T) {
	data := []byte("abc")
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	v := NewReader(src, ocispec.Descriptor{Digest: digest.FromBytes(data), Size: 3})
	b, err := io.ReadAll(v)
	if !errors.Is(err, boom) || len(b) == 3 {
		t.Fatalf("read %q, err %v; want %v and not the whole content", b, err, boom)
	}
}

func TestReadAll(t *testing.T) {
	data := []byte(`{"schemaVersion":2}`)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	b, err := ReadAll(bytes.NewReader(data), desc, 100)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if b, err := ReadAll(bytes.NewReader(nil), ocispec.Descriptor{Digest: digest.FromBytes(nil)}, 100); err != nil || len(b) != 0 {
		t.Fatalf("empty: %q, %v", b, err)
	}
	src := &countingSource{r: bytes.NewReader(data)}
	if _, err := ReadAll(src, desc, 10); !errors.Is(err, ErrTooLarge) || src.read != 0 {
		t.Fatalf("over the limit: %v after reading %d bytes; want ErrTooLarge before reading", err, src.read)
	}
	if _, err := ReadAll(bytes.NewReader(bytes.ToUpper(data)), desc, 100); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("altered: %v, want ErrDigestMismatch", err)
	}
	if _, err := ReadAll(bytes.NewReader(data[1:]), desc, 100); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("short: %v, want ErrSizeMismatch", err)
	}
}

func TestReaderWriteTo(t *testing.T) {
	data := bytes.Repeat([]byte("stella "), 400<<10)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	var out bytes.Buffer
	if n, err := io.Copy(&out, NewReader(bytes.NewReader(data), desc)); err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("copy: %d, %v", n, err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	out.Reset()
	if n, err := io.Copy(&out, NewReader(bytes.NewReader(bad), desc)); !errors.Is(err, ErrDigestMismatch) || n >= int64(len(data)) {
		t.Fatalf("copy of altered content: wrote %d bytes, %v; want less than all and ErrDigestMismatch", n, err)
	}
}

// TestReaderOverReaderHashesOnce: a Reader over a fresh Reader of the same
// descriptor hashes nothing itself and still refuses wrong content (the
// inner reader's check); over a Reader of another descriptor, or one
// already read from, it checks on its own.
func TestReaderOverReaderHashesOnce(t *testing.T) {
	good := []byte("the content of a blob")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(good), Size: int64(len(good))}

	before := HashedBytes()
	got, err := io.ReadAll(NewReader(NewReader(bytes.NewReader(good), desc), desc))
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read %q, %v: want the content", got, err)
	}
	if n := HashedBytes() - before; n != int64(len(good)) {
		t.Fatalf("hashed %d bytes, want %d (one pass)", n, len(good))
	}

	bad := []byte("the content of a blub")
	got, err = io.ReadAll(NewReader(NewReader(bytes.NewReader(bad), desc), desc))
	if !errors.Is(err, ErrDigestMismatch) || len(got) == len(bad) {
		t.Fatalf("wrong content through two readers: read %d bytes, %v: want ErrDigestMismatch and not all of it", len(got), err)
	}

	// An inner reader already read from would let the outer see only the
	// rest: the outer must check the whole content itself.
	inner := NewReader(bytes.NewReader(good), desc)
	if _, err := inner.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(NewReader(inner, desc)); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("outer over a partly read inner: %v, want ErrSizeMismatch", err)
	}

	// Another descriptor: both check.
	other := ocispec.Descriptor{Digest: digest.FromBytes(bad), Size: int64(len(bad))}
	if _, err := io.ReadAll(NewReader(NewReader(bytes.NewReader(good), desc), other)); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("outer of another digest: %v, want ErrDigestMismatch", err)
	}
}

// TestCheckDescriptorSHA256: the check of sha256 digests without a regular
// expression accepts exactly what digest.Digest.Validate accepts.
func TestCheckDescriptorSHA256(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, d := range []digest.Digest{
		digest.Digest("sha256:" + hex),
		digest.FromString("x"),
		digest.Digest("sha256:" + strings.ToUpper(hex)),
		digest.Digest("sha256:" + hex[:63]),
		digest.Digest("sha256:" + hex + "0"),
		digest.Digest("sha256:" + hex[:63] + "g"),
		digest.Digest("sha256:" + hex[:63] + "/"),
		digest.Digest("sha256:" + hex[:63] + ":"),
		digest.Digest("sha256:" + hex[:63] + "`"),
		digest.Digest("sha256-" + hex),
		digest.Digest("SHA256:" + hex),
		digest.Digest("sha512:" + hex + hex),
		digest.Digest("sha256:"),
		"",
	} {
		want := d.Validate() == nil
		if sha256 := strings.HasPrefix(string(d), "sha256:"); isSHA256(d) != (sha256 && want) {
			t.Errorf("%q: isSHA256 says %v, Validate says %v", d, isSHA256(d), want)
		}
		err := CheckDescriptor(ocispec.Descriptor{Digest: d, Size: 1})
		if (err == nil) != want || (err != nil && !errors.Is(err, ErrInvalidDigest)) {
			t.Errorf("%q: CheckDescriptor: %v, Validate: %v", d, err, d.Validate())
		}
	}
}

// SHA256Of and SHA256FromSum give go-digest's digest.
func TestSHA256Of(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("x"), make([]byte, 100000)} {
		h := NewHash(digest.SHA256)
		h.Write(b)
		if got, want := SHA256Of(h), digest.FromBytes(b); got != want || got.Validate() != nil {
			t.Errorf("SHA256Of = %s, want %s", got, want)
		}
	}
}
