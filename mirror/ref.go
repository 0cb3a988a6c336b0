package mirror

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// maxRefLength bounds what ParseRef reads.
const maxRefLength = 4096

// Reference names a repository of a registry, and optionally a tag and a
// digest in it: host[:port]/repository[:tag][@digest].
type Reference struct {
	Host       string        // registry host, with its port if any ("registry.local:5000")
	Repository string        // repository path ("stella/packs")
	Tag        string        // "" when absent
	Digest     digest.Digest // "" when absent
}

// ParseRef parses host[:port]/repository[:tag][@digest]. The host is always
// explicit (there is no default registry); a scheme or credentials in the
// reference are refused, without echoing the input, so a pasted URL with a
// password never reaches an error message. Errors wrap ErrInvalidReference.
func ParseRef(s string) (Reference, error) {
	if len(s) > maxRefLength {
		return Reference{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidReference, maxRefLength)
	}
	host, rest, ok := strings.Cut(s, "/")
	if strings.Contains(host, "@") {
		return Reference{}, fmt.Errorf("%w: credentials in a reference are not accepted; use a credential store", ErrInvalidReference)
	}
	if strings.Contains(s, "://") {
		return Reference{}, fmt.Errorf("%w: give host[:port]/repository, without a scheme", ErrInvalidReference)
	}
	if !ok || host == "" || rest == "" {
		return Reference{}, fmt.Errorf("reference %q: %w: want host[:port]/repository[:tag][@digest]", s, ErrInvalidReference)
	}
	r := Reference{Host: host}
	if name, d, ok := strings.Cut(rest, "@"); ok {
		dg, err := digest.Parse(d)
		if err != nil {
			return Reference{}, fmt.Errorf("reference %q: %w: digest: %v", s, ErrInvalidReference, err)
		}
		r.Digest, rest = dg, name
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		r.Tag, rest = rest[i+1:], rest[:i]
		if r.Tag == "" {
			return Reference{}, fmt.Errorf("reference %q: %w: empty tag", s, ErrInvalidReference)
		}
	}
	r.Repository = rest
	if err := r.validate(); err != nil {
		return Reference{}, fmt.Errorf("reference %q: %w", s, err)
	}
	return r, nil
}

// validate checks each part with oras-go's rules (the distribution spec's grammar).
func (r Reference) validate() error {
	ref := registry.Reference{Registry: r.Host, Repository: r.Repository}
	if err := ref.ValidateRegistry(); err != nil {
		return fmt.Errorf("%w: host %q", ErrInvalidReference, r.Host)
	}
	if err := ref.ValidateRepository(); err != nil {
		return fmt.Errorf("%w: repository %q (lowercase letters, digits and . _ - / separators)", ErrInvalidReference, r.Repository)
	}
	if r.Tag != "" {
		if err := checkTag(r.Tag); err != nil {
			return err
		}
	}
	if r.Digest != "" {
		if err := r.Digest.Validate(); err != nil {
			return fmt.Errorf("%w: digest %q: %v", ErrInvalidReference, r.Digest, err)
		}
	}
	return nil
}

// checkTag accepts a tag of the distribution spec: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func checkTag(tag string) error {
	ref := registry.Reference{Reference: tag}
	if err := ref.ValidateReferenceAsTag(); err != nil {
		return fmt.Errorf("%w: tag %q (letters, digits, _ . -; at most 128)", ErrInvalidReference, tag)
	}
	return nil
}

// Name is host/repository.
func (r Reference) Name() string { return r.Host + "/" + r.Repository }

// String is the reference as ParseRef reads it.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}
