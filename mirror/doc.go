// Package mirror moves artifacts between OCI registries and stella's stores.
// It is the only package of stella that talks to the network; everything it
// sends or receives goes through oras-go v2's remote.Repository.
//
// # Model
//
// A registry repository is one more content store, like a bundle file or
// the cache, so mirroring is a graph copy between two of them:
//
//   - Push copies artifacts from any content.ReadOnlyGraphStorage (the
//     cache, an opened bundle file, a pack being built) into a repository,
//     each with its referrers, then tags it.
//   - Pull resolves a reference, reads the manifest to learn its kind,
//     lists its referrers and imports all of them into the cache through
//     cache.Import (or any Importer), each artifact whole or not at all.
//
// References are host[:port]/repository[:tag][@digest] (ParseRef); the host
// is always explicit.
//
// # Verification on the way in
//
// Nothing from a registry is trusted: oras-go's remote Fetch checks only the
// Content-Length and the Docker-Content-Digest header, so Pull hashes every
// blob while it streams and checks it against its descriptor. A registry that
// announces another size is refused before a byte is read; the read that
// completes a blob with the wrong digest fails instead of delivering the last
// bytes; a body cut short or too long fails on size. Those failures wrap
// integrity.ErrSizeMismatch or integrity.ErrDigestMismatch, and the cache hashes
// again as it writes. A tag is only a pointer: the manifest it names is
// fetched by digest and checked. PullOptions.Verify (the signature policy)
// runs before an artifact is recorded; a referrer whose subject was refused
// is refused too, so a refused pack brings nothing into the cache.
//
// # Referrers both ways
//
// A referrer (signature, approval, evidence) is a manifest whose subject is
// another manifest. Push finds them with the source's Predecessors (kept
// only when the manifest's subject is the node) and copies them after their
// subject with oras.ExtendedCopyGraph. oras-go's repository lands a pushed
// manifest with a subject in the registry's referrers API when the registry
// processes subjects (it answers with OCI-Subject), and otherwise maintains
// the sha256-<hex> tag-schema index that oras, crane and cosign read; old
// indexes are left in place (sealed registries often refuse deletes). After
// copying, Push lists the referrers of each subject and sends again any the
// listing lacks. Pull lists referrers the same two ways and follows
// referrers of referrers (8 levels, 1000 referrers at most); referrers that
// are not stella artifacts are reported, not pulled.
//
// An artifact pushed with a subject of its own (a host's run evidence,
// whose subject is its pack) goes beside that subject: the destination must
// hold it (ErrSubjectMissing), so the registry's listing of the pack shows
// every host's evidence. Repository reads that listing back: it resolves a
// pack, lists its referrers of one artifact type and fetches them, every
// blob hashed as it streams; what the content means is for the caller
// (package evidence) to verify.
//
// # Skips, resumption and retries
//
// A blob the destination has is not sent again (HEAD first); a manifest is
// always descended into but sent only when absent, so running an
// interrupted push again sends only what is missing, and a pull skips blobs
// the cache holds. Blobs move Options.Concurrency at a time.
//
// Transient failures (HTTP 5xx but 501 and 505, 429, 408, connection reset
// or refused, unexpected end of a response, timeouts) are retried with
// exponential backoff and jitter, honoring Retry-After: a request that can
// be replayed is retried where it failed; anything else (an upload, a
// download cut short) retries the copy, which skips what already arrived.
// A failure that persists wraps ErrTransient. Integrity failures and
// refusals (401, 403, 404) are never retried.
//
// # Access and sealed mode
//
// Options carry what the CLI resolved: plain HTTP, a private CA, a client
// certificate, a credential function and an Allow policy. Allow is asked
// before every connection, for every host (the registry, a token realm, a
// redirect target, a proxy); a refusal fails the operation with
// ErrNetworkBlocked before any connection to that host. mirror reads no
// environment variable (no proxy unless Options.Proxy), prints nothing and
// never puts a credential in an error or an Event.
package mirror
