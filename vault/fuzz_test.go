package vault

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDecode: decode never panics, and what it accepts re-encodes to the
// same bytes (the canonical-form invariant).
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"format":"stella-vault/v1","keys":{},"secrets":{}}`))
	f.Add([]byte(`{"format":"stella-vault/v1","keys":{},"secrets":{"a":{"created":"2024-01-01T00:00:00Z","meta":{"k":"v"},"scope":"s","updated":"2024-01-01T00:00:00Z","value":"eA=="}}}`))
	f.Add([]byte(`{"format":"stella-vault/v1","keys":{"k":null},"secrets":{"a":null}}`))
	f.Add([]byte(`{"hello":"world"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrNotAVault) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if got := p.encode(); !bytes.Equal(got, data) {
			t.Fatalf("accepted non-canonical payload:\n in %s\nout %s", data, got)
		}
	})
}

// FuzzUnseal: any file content opens or fails with one of the open
// sentinels, never panics.
func FuzzUnseal(f *testing.F) {
	u := testPass("pw")
	path, v := newVault(f, u)
	mustPut(f, v, "a", "alpha-value-0123456789")
	good := readBytes(f, path)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), 'x'))
	f.Add([]byte(ageIntro))
	f.Add([]byte("age-enc"))
	f.Add([]byte("plain text\n"))
	f.Add([]byte{})
	ids, err := u.identities()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := unseal(data, ids)
		if err == nil {
			_, err = decode(plain)
			if err == nil {
				return
			}
		}
		if !errors.Is(err, ErrNotAVault) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrBadPassphrase) && !errors.Is(err, ErrInvalidUnlocker) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"vault:db", "vault:", "vault:a#b", "env:x", "vault:a/b.c_d-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ok := ParseRef(s)
		if ok != (validName(name) == nil && RefPrefix+name == s) {
			t.Fatalf("ParseRef(%q) = %q, %v", s, name, ok)
		}
	})
}

func FuzzPathFromURL(f *testing.F) {
	for _, s := range []string{"file:///a/b", "file://localhost/a", "https://x/y", "file:rel", "file:///a%2fb", "file:///a?b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := PathFromURL(s)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedURL) {
				t.Fatalf("unclassified error %v", err)
			}
			if strings.Contains(err.Error(), s) && len(s) > 8 {
				t.Fatalf("error repeats the url: %v", err)
			}
			return
		}
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Fatalf("PathFromURL(%q) = %q, not a clean absolute path", s, p)
		}
	})
}
