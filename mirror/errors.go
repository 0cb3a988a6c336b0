package mirror

import "errors"

// Errors of mirror. Integrity failures of content fetched from a registry
// wrap integrity.ErrDigestMismatch or integrity.ErrSizeMismatch (the same checks the
// cache makes on its side); failures of the source of a push are the
// source's own errors (bundle, cache).
var (
	// ErrInvalidReference: a registry reference is not host[:port]/repository[:tag][@digest],
	// or names something that cannot be the target of the operation (a push to a digest,
	// a pull without tag or digest, one tag for two artifacts).
	ErrInvalidReference = errors.New("invalid registry reference")
	// ErrNetworkBlocked: Options.Allow refused a host; no connection was made to it.
	ErrNetworkBlocked = errors.New("network access blocked by policy")
	// ErrTransient: a failure that may pass (HTTP 5xx, 429, 408, connection reset or
	// refused, timeout) persisted through every retry.
	ErrTransient = errors.New("transient registry failure persisted after retries")
	// ErrUnauthorized: the registry refused the credentials or denied access (HTTP 401, 403).
	ErrUnauthorized = errors.New("registry refused access")
	// ErrNotFound: the reference, a manifest or a blob it needs is not in the registry.
	ErrNotFound = errors.New("not found in registry")
	// ErrUnsupportedArtifact: the manifest pulled is not a stella artifact (an OCI image
	// manifest whose artifactType is one of the bundle package's artifact types).
	ErrUnsupportedArtifact = errors.New("not a stella artifact")
	// ErrTooManyReferrers: an artifact has more referrers (in total, recursively) than
	// mirror follows.
	ErrTooManyReferrers = errors.New("too many referrers")
	// ErrSubjectMissing: an artifact pushed with a subject (evidence of a pack) names a
	// manifest the destination repository does not hold; nothing was sent.
	ErrSubjectMissing = errors.New("subject not in the destination repository")
	// ErrTLSConfig: the CA file or the client certificate and key cannot be used.
	ErrTLSConfig = errors.New("invalid TLS configuration")
	// ErrUntrustedCertificate: the registry's certificate did not verify against the
	// system roots and the configured CA file.
	ErrUntrustedCertificate = errors.New("registry certificate not trusted")
	// ErrPlainHTTPRegistry: stella spoke HTTPS and the registry answered in plain HTTP.
	ErrPlainHTTPRegistry = errors.New("the registry talks plain HTTP, not HTTPS")
	// ErrTLSRegistry: stella spoke plain HTTP (--plain-http) to a registry that talks HTTPS.
	ErrTLSRegistry = errors.New("the registry talks HTTPS, not plain HTTP")
	// ErrUnreachable: the registry's host name does not resolve, or no route
	// leads to it; no request reached a registry.
	ErrUnreachable = errors.New("registry host cannot be reached")
)

// schemeError is a registry answering in the other protocol, or not
// reached at all: its message names the registry, not Go's transport text
// (kept for errors.Is).
type schemeError struct {
	kind error // ErrPlainHTTPRegistry, ErrTLSRegistry or ErrUnreachable
	host string
	err  error
	why  string // optional: what was found, in the operator's words
}

func (e *schemeError) Error() string {
	if e.why != "" {
		return e.host + ": " + e.kind.Error() + ": " + e.why
	}
	return e.host + ": " + e.kind.Error()
}

func (e *schemeError) Unwrap() []error { return []error{e.kind, e.err} }
