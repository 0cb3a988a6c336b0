package mirror_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/mirror"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mirror.Reference
	}{
		{"registry.local/packs", mirror.Reference{Host: "registry.local", Repository: "packs"}},
		{"registry.local:5000/stella/packs:1.0.0", mirror.Reference{Host: "registry.local:5000", Repository: "stella/packs", Tag: "1.0.0"}},
		{"127.0.0.1:5000/a/b/c@" + testDigest, mirror.Reference{Host: "127.0.0.1:5000", Repository: "a/b/c", Digest: testDigest}},
		{"[::1]:5000/packs:v1@" + testDigest, mirror.Reference{Host: "[::1]:5000", Repository: "packs", Tag: "v1", Digest: testDigest}},
		{"localhost/my-pack_1.x:Latest_2", mirror.Reference{Host: "localhost", Repository: "my-pack_1.x", Tag: "Latest_2"}},
	} {
		got, err := mirror.ParseRef(tc.in)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseRef(%q) (-want +got):\n%s", tc.in, diff)
		}
		if got.String() != tc.in {
			t.Errorf("ParseRef(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestParseRefRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"packs",                     // no host
		"registry.local",            // no repository
		"registry.local/",           // empty repository
		"/packs",                    // empty host
		"registry.local/Packs",      // uppercase repository
		"registry.local/packs:",     // empty tag
		"registry.local/packs:-bad", // tag starting with -
		"registry.local/packs:" + strings.Repeat("a", 129),
		"registry.local/packs@sha256:abc",    // short digest
		"registry.local/packs@md5:0123",      // unknown algorithm
		"https://registry.local/packs:1.0",   // scheme
		"user:pw@registry.local/packs:1.0",   // credentials
		"registry.local:port/packs",          // bad port
		"registry.local/packs//x",            // empty path component
		"registry.local/packs:1.0:2.0",       // colon in the repository part
		strings.Repeat("a", 5000) + "/packs", // too long
	} {
		if _, err := mirror.ParseRef(in); !errors.Is(err, mirror.ErrInvalidReference) {
			t.Errorf("ParseRef(%q) = %v; want ErrInvalidReference", in, err)
		}
	}
}

// ParseRef never panics, and what it accepts prints back to itself.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"registry.local:5000/stella/packs:1.0.0", "h/r@" + testDigest, "h/r:t@" + testDigest, "a@b/c", "h/r:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := mirror.ParseRef(s)
		if err != nil {
			if !errors.Is(err, mirror.ErrInvalidReference) {
				t.Fatalf("ParseRef(%q): %v does not wrap ErrInvalidReference", s, err)
			}
			return
		}
		again, err := mirror.ParseRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("ParseRef(%q) = %+v, which prints as %q and parses to %+v, %v", s, ref, ref.String(), again, err)
		}
	})
}
