package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"stellaops.io/stella/backoff"
	"stellaops.io/stella/integrity"
)

// userAgent is sent with every request.
const userAgent = "stella"

// operation is one Push or Pull: its options, its HTTP client and the state
// its retries share. The transport stack of its client is, outermost first:
//
//	auth.Client (credentials, tokens) → retryTransport → guardTransport (Allow,
//	announced sizes) → http.Transport (TLS, no proxy unless Options.Proxy)
//
// Token requests and redirects go through the same stack, so Allow and the
// retry policy see every request.
type operation struct {
	opts   Options
	client *auth.Client

	mu sync.Mutex // serializes Progress

	exhausted atomic.Bool  // a request used up its attempts on a transient failure
	retries   atomic.Int64 // transient failures retried
}

func newOperation(opts Options) (*operation, error) {
	op := &operation{opts: opts.withDefaults()}
	tlsCfg, err := tlsConfig(op.opts)
	if err != nil {
		return nil, err
	}
	base := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   max(2*op.opts.Concurrency, 8),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute, // a registry hashes a large upload before it answers
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}
	if op.opts.Proxy != nil {
		base.Proxy = func(req *http.Request) (*url.URL, error) {
			u, err := op.opts.Proxy(req)
			if err != nil || u == nil {
				return u, err
			}
			if err := op.allow(u.Host); err != nil {
				return nil, err
			}
			return u, nil
		}
	}
	op.client = &auth.Client{
		Client:     &http.Client{Transport: &retryTransport{op: op, base: &guardTransport{op: op, base: base}}},
		Header:     http.Header{"User-Agent": {userAgent}},
		Credential: op.opts.Credential,
		Cache:      auth.NewCache(),
	}
	return op, nil
}

// tlsConfig builds the client TLS configuration: system roots plus CAFile,
// and the client certificate if one is configured.
func tlsConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file %s: %w: %w", opts.CAFile, ErrTLSConfig, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: %w: no PEM certificate in it", opts.CAFile, ErrTLSConfig)
		}
		cfg.RootCAs = pool
	}
	if (opts.ClientCertFile == "") != (opts.ClientKeyFile == "") {
		return nil, fmt.Errorf("%w: a client certificate needs both its certificate and its key file", ErrTLSConfig)
	}
	if opts.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.ClientCertFile, opts.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s (key %s): %w: %w", opts.ClientCertFile, opts.ClientKeyFile, ErrTLSConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// repository returns the oras-go client of ref's repository. Old tag-schema
// referrers indexes are left in place (SkipReferrersGC): sealed registries
// often refuse deletes, and a dangling index is harmless.
func (op *operation) repository(ref Reference) *remote.Repository {
	return &remote.Repository{
		Client:          op.client,
		Reference:       registry.Reference{Registry: ref.Host, Repository: ref.Repository},
		PlainHTTP:       op.opts.PlainHTTP,
		SkipReferrersGC: true,
	}
}

// allow asks Options.Allow about host.
func (op *operation) allow(host string) error {
	if op.opts.Allow == nil {
		return nil
	}
	err := op.opts.Allow(host)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNetworkBlocked):
		return fmt.Errorf("host %s: %w", host, err)
	default:
		return fmt.Errorf("host %s: %w: %w", host, ErrNetworkBlocked, err)
	}
}

func (op *operation) emit(e Event) {
	if op.opts.Progress == nil {
		return
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	op.opts.Progress(e)
}

// backoff is the wait before try attempt+1: Backoff doubled per try, ±10%,
// capped by MaxBackoff, or the registry's Retry-After when it sent one.
func (op *operation) backoff(attempt int, resp *http.Response) time.Duration {
	r := op.opts.Retry
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return min(time.Duration(s)*time.Second, r.MaxBackoff)
		}
	}
	return backoff.Policy{Initial: r.Backoff, Multiplier: 2, Max: r.MaxBackoff, Jitter: 0.1}.Delay(attempt)
}

// retrying reports a retry and waits for it.
func (op *operation) retrying(ctx context.Context, attempt int, wait time.Duration, cause error) error {
	op.retries.Add(1)
	op.emit(Event{Kind: Retrying, Attempt: attempt, Wait: wait, Err: cause})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run calls f until it succeeds, fails for good, or fails transiently once
// too often. A transient failure the transport could not retry (an upload,
// a download cut short) is retried here: f is a copy that skips what already
// arrived. A request that used up its attempts ends it at once.
func (op *operation) run(ctx context.Context, f func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		op.exhausted.Store(false)
		err := f(ctx)
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			return err
		}
		if op.exhausted.Load() || attempt >= op.opts.Retry.Attempts {
			return fmt.Errorf("%w: %w", ErrTransient, err)
		}
		if werr := op.retrying(ctx, attempt+1, op.backoff(attempt, nil), err); werr != nil {
			return werr
		}
	}
}

// retryTransport retries requests that failed transiently and can be
// replayed (no body, or a body with GetBody).
type retryTransport struct {
	op   *operation
	base http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		resp, err := t.base.RoundTrip(req)
		if !retryable(resp, err) || ctx.Err() != nil {
			return resp, err
		}
		if attempt >= t.op.opts.Retry.Attempts {
			t.op.exhausted.Store(true)
			return resp, err
		}
		next := req.Clone(ctx)
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err // not replayable: operation.run retries the copy
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return resp, err
			}
			next.Body = body
		}
		wait := t.op.backoff(attempt, resp)
		cause := err
		if resp != nil {
			cause = fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), resp.Status)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
		}
		if werr := t.op.retrying(ctx, attempt+1, wait, cause); werr != nil {
			return nil, werr
		}
		req = next
	}
}

// retryable says whether a round trip failed transiently.
func retryable(resp *http.Response, err error) bool {
	if err != nil {
		return isTransient(err)
	}
	return transientStatus(resp.StatusCode)
}

func transientStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return false
	default:
		return code >= 500
	}
}

// isTransient classifies an error of a request or a copy.
func isTransient(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrNetworkBlocked), errors.Is(err, ErrTransient),
		errors.Is(err, integrity.ErrDigestMismatch), errors.Is(err, integrity.ErrSizeMismatch):
		return false
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return transientStatus(resp.StatusCode)
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// guardTransport asks Allow before every request and checks the size a
// registry announces for a verified fetch (see expect) before any byte of
// the body is read.
type guardTransport struct {
	op   *operation
	base http.RoundTripper
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	trace := t.op.opts.Trace
	where := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
	if err := t.op.allow(req.URL.Host); err != nil {
		if trace != nil {
			trace(fmt.Sprintf("refused %s %s: %v", req.Method, where, err))
		}
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if trace != nil {
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			trace(fmt.Sprintf("%s %s: %v (%v)", req.Method, where, err, took))
		} else {
			trace(fmt.Sprintf("%s %s: %s (%v)", req.Method, where, resp.Status, took))
		}
	}
	if err != nil {
		return nil, err
	}
	if e, ok := req.Context().Value(expectKey{}).(expectation); ok && req.Method == http.MethodGet &&
		resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 && resp.ContentLength != e.size &&
		strings.HasSuffix(req.URL.Path, "/"+e.digest.String()) {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("blob %s from %s: %w: the registry announces %d bytes, the descriptor says %d",
			e.digest, req.URL.Host, integrity.ErrSizeMismatch, resp.ContentLength, e.size)
	}
	return resp, nil
}

// expectation is the blob a fetch expects, carried in its context.
type expectation struct {
	digest digest.Digest
	size   int64
}

type expectKey struct{}

// talksTLS reports whether host completes a TLS handshake: only to tell an
// operator who used --plain-http that the registry wants HTTPS. No data is
// sent and the certificate is not judged (that is not what is asked).
func talksTLS(host string) bool {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // protocol detection only
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// registryHost is the host err's request went to, or "the registry".
func registryHost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
			return u.Host
		}
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && resp.URL != nil {
		return resp.URL.Host
	}
	return "the registry"
}

// classify adds the sentinel an operator needs to a final error.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrTransient) || errors.Is(err, ErrNetworkBlocked) {
		return err
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		// The registry asks for basic auth and no credential is stored for it.
		return fmt.Errorf("%w (no credential stored for this registry): %w", ErrUnauthorized, err)
	}
	// The other protocol: net/http and the registry say so only in text.
	switch msg := err.Error(); {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return &schemeError{kind: ErrPlainHTTPRegistry, host: registryHost(err), err: err}
	case strings.Contains(msg, "Client sent an HTTP request to an HTTPS server"),
		strings.Contains(msg, "The plain HTTP request was sent to HTTPS port"):
		return &schemeError{kind: ErrTLSRegistry, host: registryHost(err), err: err}
	}
	var bad *errcode.ErrorResponse
	if errors.As(err, &bad) && bad.StatusCode == http.StatusBadRequest && bad.URL != nil && bad.URL.Scheme == "http" && talksTLS(bad.URL.Host) {
		// A TLS server answers plain HTTP with 400 (and no body to a HEAD).
		return &schemeError{kind: ErrTLSRegistry, host: bad.URL.Host, err: err}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return &schemeError{kind: ErrUnreachable, host: registryHost(err), err: err, why: "name " + dns.Name + " does not resolve"}
	}
	if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return &schemeError{kind: ErrUnreachable, host: registryHost(err), err: err, why: "no route to it"}
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) {
		return fmt.Errorf("%w: %w", ErrUntrustedCertificate, err)
	}
	return err
}
