package mirror

import (
	"net/http"
	"net/url"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Defaults of Options.
const (
	DefaultConcurrency = 4
	DefaultAttempts    = 5
	DefaultBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// Options say how to reach registries. The zero value reaches a registry
// over HTTPS with the system roots, anonymously, with no network policy.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS (for a registry on loopback).
	PlainHTTP bool
	// CAFile is a PEM file of certificates trusted, besides the system roots,
	// to sign registry certificates (a private CA).
	CAFile string
	// ClientCertFile and ClientKeyFile are a PEM client certificate and its
	// key, presented to registries that ask for one. Both or neither.
	ClientCertFile, ClientKeyFile string
	// Credential returns the credential for a registry host ("host:port");
	// nil means anonymous. The CLI backs it with oras-go's credential stores
	// (~/.docker/config.json, $REGISTRY_AUTH_FILE). Credentials are sent only
	// in Authorization headers and never appear in errors or events.
	Credential auth.CredentialFunc
	// Allow, if set, is asked about every host before any connection to it
	// (registry, token realm, redirect target, proxy). An error refuses the
	// host: the operation fails with an error wrapping ErrNetworkBlocked and
	// no connection is made. The CLI uses it for sealed mode.
	Allow func(host string) error
	// Proxy, if set, chooses the HTTP proxy of each request, as
	// http.Transport.Proxy (the CLI may pass http.ProxyFromEnvironment); the
	// proxy's host is subject to Allow. Nil means no proxy: mirror does not
	// read the environment.
	Proxy func(*http.Request) (*url.URL, error)
	// CheckBlobs (Push) checks every blob under a manifest the registry
	// already has, and sends again one it lacks (a blob deleted from the
	// registry's storage). Without it, a manifest the registry has by
	// digest is trusted as oras does: the distribution spec has a registry
	// refuse a manifest whose blobs it lacks, and its gc keeps the blobs a
	// manifest references; Push then stops there (ADR 0004, 2026-11-28).
	CheckBlobs bool
	// Concurrency is the number of blobs transferred at once (default 4).
	Concurrency int
	// Retry is the policy for transient failures.
	Retry Retry
	// Progress, if set, is called (never concurrently) as content moves.
	Progress func(Event)
	// Trace, if set, is given one line per HTTP exchange (method, URL
	// without its query, status or error, duration) and per decision of
	// Allow; never a header, so never a credential or token.
	Trace func(line string)
}

// Retry is the policy for transient failures: HTTP 5xx (but 501 and 505),
// 429 and 408, connection reset or refused, unexpected end of a response,
// timeouts. A request that can be replayed is retried where it failed; any
// other failure (a blob upload, a download cut short) retries the copy,
// which skips what already arrived. When failures persist, the error wraps
// ErrTransient.
type Retry struct {
	// Attempts is the number of tries of each request, and of each copy,
	// the first included (default 5; 1 disables retries).
	Attempts int
	// Backoff is the wait before the first retry, doubled before each next
	// one (default 250ms), with ±10% jitter; a Retry-After header of the
	// registry is honored.
	Backoff time.Duration
	// MaxBackoff caps each wait (default 5s).
	MaxBackoff time.Duration
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Retry.Attempts <= 0 {
		o.Retry.Attempts = DefaultAttempts
	}
	if o.Retry.Backoff <= 0 {
		o.Retry.Backoff = DefaultBackoff
	}
	if o.Retry.MaxBackoff <= 0 {
		o.Retry.MaxBackoff = DefaultMaxBackoff
	}
	o.Retry.MaxBackoff = max(o.Retry.MaxBackoff, o.Retry.Backoff)
	return o
}

// EventKind is what an Event reports.
type EventKind int

const (
	// ArtifactStarted: the copy of Artifact begins.
	ArtifactStarted EventKind = iota + 1
	// BlobStarted: Blob is being transferred.
	BlobStarted
	// BlobProgress: Done bytes of Blob have been transferred.
	BlobProgress
	// BlobCopied: Blob arrived whole (and verified, on a pull).
	BlobCopied
	// BlobSkipped: Blob was already at the destination and was not sent.
	BlobSkipped
	// ArtifactDone: the copy of Artifact ended (Err set when it failed).
	ArtifactDone
	// Retrying: a transient failure (Err) will be retried after Wait; Attempt
	// is the try about to be made (2 for the first retry).
	Retrying
)

// Event reports progress. It never carries a credential.
type Event struct {
	Kind EventKind
	// Artifact is the manifest being copied (for a push, the artifact given
	// to Push, whose referrers travel with it) and Ref its tag or cache ref.
	Artifact ocispec.Descriptor
	Ref      string
	// Blob is the blob (manifest, config or layer) concerned, with Done of
	// its Total bytes transferred.
	Blob  ocispec.Descriptor
	Done  int64
	Total int64
	// Retrying only.
	Attempt int
	Wait    time.Duration
	// Err is the failure of a Retrying or a failed ArtifactDone event.
	Err error
}

// Status says what a push or pull did with one artifact.
type Status string

const (
	// StatusCopied: the artifact was sent to the registry, or stored in the cache.
	StatusCopied Status = "copied"
	// StatusLinked: the cache held the artifact; this pull added its ref or referrer link.
	StatusLinked Status = "linked"
	// StatusPresent: the artifact was already there with its tag, ref or link.
	StatusPresent Status = "present"
	// StatusFailed: the artifact was refused or failed; nothing was recorded for it.
	StatusFailed Status = "failed"
)

// ArtifactReport is the outcome for one artifact: one given to Push or the
// one pulled, and each referrer that travelled with it.
type ArtifactReport struct {
	Descriptor ocispec.Descriptor // the manifest, with ArtifactType
	Kind       string             // bundle.Kind*, "" for a foreign artifact type
	Ref        string             // tag (push) or cache ref (pull); "" for referrers
	Subject    digest.Digest      // for a referrer, the manifest it refers to
	Status     Status
	Err        error // for StatusFailed
}

// Report says what a push or pull did.
type Report struct {
	Source      string // the reference pulled (Pull)
	Destination string // the reference pushed to (Push)
	// Artifacts: those given to Push (a failed one last) or the one pulled,
	// each followed by the referrers that travelled with it.
	Artifacts []ArtifactReport
	// Ignored lists referrers found at the source that are not stella
	// artifacts, or whose subject is not the manifest they were listed for;
	// they were not pulled.
	Ignored []ocispec.Descriptor
	// Blobs (manifests, configs, layers) and their bytes: sent (push) or
	// written to the cache (pull), and skipped because they were already there.
	BlobsCopied  int
	BytesCopied  int64
	BlobsSkipped int
	BytesSkipped int64
	// Retries is the number of transient failures that were retried.
	Retries int
	// ManifestsTrusted (Push) counts the manifests the registry had whose
	// blobs were not checked (Options.CheckBlobs unset); their graphs are
	// counted in BlobsSkipped. CheckedBlobs says Options.CheckBlobs was set.
	ManifestsTrusted int
	CheckedBlobs     bool
	// ImportIDs are the ids of the cache import records a pull wrote (one
	// per try that stored something).
	ImportIDs []uint64
}
