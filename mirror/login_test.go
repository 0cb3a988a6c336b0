package mirror

import (
	"errors"
	"testing"
)

// TestRegistryHost: what operators paste (URLs, trailing slashes, paths)
// is the registry's host[:port].
func TestRegistryHost(t *testing.T) {
	for in, want := range map[string]string{
		"registry.sealed.local:5000":          "registry.sealed.local:5000",
		"https://registry.sealed.local:5000/": "registry.sealed.local:5000",
		"http://127.0.0.1:5000/v2/":           "127.0.0.1:5000",
		"registry.sealed.local/":              "registry.sealed.local",
		"registry.sealed.local/packs":         "registry.sealed.local",
	} {
		if got, err := RegistryHost(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://host/", "https:///", "user@host"} {
		if _, err := RegistryHost(bad); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("%q: %v, want ErrInvalidReference", bad, err)
		}
	}
}
