package integrity

import (
	"crypto/sha256"
	_ "crypto/sha512" // sha384 and sha512 digests
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Reader reads content and checks it against its descriptor as it streams.
//
// It hashes every byte, never reads more than one byte past the descriptor's
// size, and withholds the read that completes the content: that read returns
// the last bytes together with io.EOF only once the source is known to end
// there and the digest matches. Otherwise it returns no bytes and an error
// wrapping ErrSizeMismatch (content shorter or longer than the size) or
// ErrDigestMismatch, so a consumer never receives a complete, wrong blob. A
// descriptor with a malformed digest, an unavailable algorithm or a negative
// size fails the first read with ErrInvalidDigest. Errors are sticky.
type Reader struct {
	r    io.Reader
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64
	err  error

	// inner, if set, is a Reader of the same descriptor that already
	// checks the content: this one passes its bytes and errors through
	// without hashing them a second time.
	inner *Reader

	// Wrap, if set, is applied to every error the reader returns other than
	// io.EOF, so that the caller names the object (tar entry, registry
	// host, cache blob) in the message.
	Wrap func(error) error
}

// NewReader returns a Reader of the content desc describes, read from r.
//
// If r is itself a fresh Reader (nothing read yet) of the same digest and
// size, the content is not hashed twice: the new Reader passes r's bytes
// and errors through as they are (r's Wrap names the object), which keeps
// the contract since r keeps it. This is how a blob fetched from the cache
// (already checked as it streams) is copied into a bundle, or a bundle's
// blob into the cache, in one hash pass.
func NewReader(r io.Reader, desc ocispec.Descriptor) *Reader {
	v := &Reader{r: r, desc: desc}
	if err := CheckDescriptor(desc); err != nil {
		v.err = err
		return v
	}
	if in, ok := r.(*Reader); ok && in.inner == nil && in.n == 0 && in.err == nil &&
		in.desc.Digest == desc.Digest && in.desc.Size == desc.Size {
		v.inner = in
		return v
	}
	v.h = NewHash(desc.Digest.Algorithm())
	return v
}

// hashed counts the bytes hashed by every Reader and every hash of NewHash
// in this process.
var hashed atomic.Int64

// HashedBytes is the number of bytes hashed so far in this process by
// Readers and by the hashes of NewHash. Tests use it to count the hash
// passes of an operation over its content (a regression in complexity, such
// as a third pass over a bundle, fails them).
func HashedBytes() int64 { return hashed.Load() }

// NewHash returns a hash of alg whose input counts in HashedBytes.
func NewHash(alg digest.Algorithm) hash.Hash {
	return countedHash{alg.Hash()}
}

type countedHash struct{ hash.Hash }

// SHA256Of is the sha256 digest of what h (a sha256 hash) has hashed:
// digest.NewDigest without its fmt.Sprintf, which a build of 10,000
// files paid once per file.
func SHA256Of(h hash.Hash) digest.Digest {
	var sum [sha256.Size]byte
	return SHA256FromSum(h.Sum(sum[:0]))
}

// SHA256FromSum is the sha256 digest of a 32-byte sum.
func SHA256FromSum(sum []byte) digest.Digest {
	b := make([]byte, 0, len("sha256:")+2*len(sum))
	b = append(b, "sha256:"...)
	b = hex.AppendEncode(b, sum)
	return digest.Digest(b)
}

func (c countedHash) Write(p []byte) (int, error) {
	hashed.Add(int64(len(p)))
	return c.Hash.Write(p)
}

// CheckDescriptor checks that content can be verified against desc: a
// well-formed digest of an available algorithm and a size that is not
// negative. It returns an error wrapping ErrInvalidDigest.
func CheckDescriptor(desc ocispec.Descriptor) error {
	if !isSHA256(desc.Digest) {
		if err := desc.Digest.Validate(); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidDigest, desc.Digest, err)
		}
	}
	if desc.Size < 0 {
		return fmt.Errorf("%w: %s: negative size %d", ErrInvalidDigest, desc.Digest, desc.Size)
	}
	return nil
}

// isSHA256 reports a well-formed sha256 digest (64 lowercase hex digits),
// what digest.Digest.Validate accepts for sha256 without its regular
// expression: a pack of many files checks a descriptor per file several
// times over.
func isSHA256(d digest.Digest) bool {
	const prefix = "sha256:"
	s := string(d)
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if !lowerHex[s[i]] {
			return false
		}
	}
	return true
}

// lowerHex holds the lowercase hex digits.
var lowerHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

// Read implements io.Reader with the contract of Reader.
func (v *Reader) Read(p []byte) (int, error) {
	if v.inner != nil {
		return v.inner.Read(p)
	}
	if v.err != nil {
		return 0, v.fail(v.err)
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	if rest := v.desc.Size - v.n; rest > 0 {
		if int64(len(p)) > rest {
			p = p[:rest]
		}
		n, err = v.r.Read(p)
		v.h.Write(p[:n])
		v.n += int64(n)
	}
	switch {
	case v.n == v.desc.Size:
		// The content is complete: release it only if the source ends here
		// and the digest matches.
		if !errors.Is(err, io.EOF) {
			if err != nil {
				return 0, v.fail(err)
			}
			var probe [1]byte
			if m, perr := io.ReadFull(v.r, probe[:]); m > 0 {
				return 0, v.fail(fmt.Errorf("%w: %s: more than the %d bytes expected", ErrSizeMismatch, v.desc.Digest, v.desc.Size))
			} else if !errors.Is(perr, io.EOF) {
				return 0, v.fail(perr)
			}
		}
		var got digest.Digest
		if v.desc.Digest.Algorithm() == digest.SHA256 {
			got = SHA256Of(v.h)
		} else {
			got = digest.NewDigest(v.desc.Digest.Algorithm(), v.h)
		}
		if got != v.desc.Digest {
			return 0, v.fail(fmt.Errorf("%w: expected %s, actual %s", ErrDigestMismatch, v.desc.Digest, got))
		}
		v.err = io.EOF
		return n, io.EOF
	case errors.Is(err, io.EOF):
		return 0, v.fail(fmt.Errorf("%w: %s: expected %d bytes, got %d", ErrSizeMismatch, v.desc.Digest, v.desc.Size, v.n))
	case err != nil:
		return n, v.fail(err)
	}
	return n, nil
}

// fail records err and returns it, wrapped by Wrap.
func (v *Reader) fail(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	v.err = err
	if v.Wrap != nil {
		return v.Wrap(err)
	}
	return err
}

// copyBufs are the buffers of WriteTo.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// WriteTo copies the content to w with a larger buffer than io.Copy's own
// (io.Copy uses it), with the contract of Read: on a mismatch the bytes
// that would complete the content are not written.
func (v *Reader) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var total int64
	for {
		n, err := v.Read(*bp)
		if n > 0 {
			m, werr := w.Write((*bp)[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close closes the source if it is an io.Closer.
func (v *Reader) Close() error {
	if c, ok := v.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// ReadAll reads the whole content desc describes from r into memory,
// refusing (ErrTooLarge) a descriptor larger than limit before reading
// anything, and checks it as Reader does.
func ReadAll(r io.Reader, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if err := CheckDescriptor(desc); err != nil {
		return nil, err
	}
	if desc.Size > limit {
		return nil, fmt.Errorf("%w: %s: %d bytes, limit %d", ErrTooLarge, desc.Digest, desc.Size, limit)
	}
	// One byte of room past the size, so that no read is empty; Reader
	// never fills it.
	b := make([]byte, desc.Size+1)
	v := NewReader(r, desc)
	var n int
	for {
		m, err := v.Read(b[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return b[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}
