package mirror

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// RegistryHost is the host[:port] an operator means by arg: a bare host,
// or what a browser or another tool shows (https://host/, http://host:5000/v2/).
func RegistryHost(arg string) (string, error) {
	s := strings.TrimSpace(arg)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return "", fmt.Errorf("%w: %q: expected a registry host[:port] or https://host[:port]/", ErrInvalidReference, arg)
		}
		s = u.Host
	}
	s = strings.TrimSuffix(s, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	if s == "" || strings.ContainsAny(s, " @") {
		return "", fmt.Errorf("%w: %q: expected a registry host[:port]", ErrInvalidReference, arg)
	}
	return s, nil
}

// CheckLogin asks the registry at host whether it accepts cred (its API
// root, /v2/, with the credential), so that a wrong password is found
// before it is stored. A registry that asks for no credential accepts any.
func CheckLogin(ctx context.Context, host string, cred auth.Credential, opts Options) error {
	opts.Credential = auth.StaticCredential(host, cred)
	op, err := newOperation(opts)
	if err != nil {
		return err
	}
	if err := op.allow(host); err != nil {
		return fmt.Errorf("log in to %s: %w", host, err)
	}
	reg := &remote.Registry{RepositoryOptions: remote.RepositoryOptions{Client: op.client, Reference: registry.Reference{Registry: host}, PlainHTTP: op.opts.PlainHTTP}}
	if err := op.run(ctx, reg.Ping); err != nil {
		return classify(fmt.Errorf("log in to %s: %w", host, err))
	}
	return nil
}
