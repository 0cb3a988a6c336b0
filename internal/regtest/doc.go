// Package regtest starts real OCI registries on loopback for the tests of other packages.
//
// It is test-only: nothing outside _test.go files may import it, but for its command
// cmd/buildtools (`make tools`), which builds the tools below before any test runs. Every
// helper takes a testing.TB, fails the test itself on error and registers a t.Cleanup
// that stops what it started, so a test never leaves a registry process or a listener
// behind.
//
// Three registries are offered:
//
//   - [Start] runs the distribution v3 registry (github.com/distribution/distribution/v3,
//     the upstream of the registry most sites run) as a child process with its own config
//     in t.TempDir(): filesystem storage exposed as [Registry.StorageDir] so tamper tests
//     can alter blobs on disk, deletes enabled, no redirects, listening on 127.0.0.1 only,
//     optionally with TLS (a throwaway CA generated per registry) and htpasswd basic auth.
//     It has no referrers API, so clients use the sha256-<hex> tag fallback.
//   - [Start] with [Options.Binary] set to [Debian] runs Debian's docker-registry
//     (distribution 2.8, the classic registry sealed sites run) with the same config.
//   - [StartReferrers] runs olareg as a child process with memory storage: the registry
//     with the native OCI 1.1 referrers API. (Not in-process: olareg costs a bcrypt hash
//     at init in every process of a test binary that links it.)
//
// # The distribution binary
//
// [Binary] returns the registry executable. The environment variable
// STELLA_TEST_REGISTRY_BIN names one to use as is. Otherwise the binary is built once per
// machine from the separate tools module (tools/go.mod of this repository, so the ~100
// modules it needs stay out of the main go.mod) with
//
//	go build -modfile=<repo>/tools/go.mod -o <cache>/registry github.com/distribution/distribution/v3/cmd/registry
//
// into <cache> = os.UserCacheDir()/stella-test/distribution-<version>/, where <version> is
// the distribution version pinned in tools/go.mod. Test binaries of several packages run
// in parallel processes, so the build holds a file lock (gofrs/flock) in that directory
// and writes to a temporary name renamed into place: a process either finds the finished
// binary or waits for the one building it. The first build takes about 80 seconds; later
// calls only stat the file.
//
// [Tool] builds the other tools declared in tools/go.mod (oras, crane, cosign, olareg) the same
// way, into <cache>/<name>-<version>/. [CachedTools] lists every one of them at those
// paths, and `make tools` (cmd/buildtools, which `make test` runs first) builds them all
// with a line of progress each, so no build runs against a test's timeout: cosign alone
// takes minutes on a cold cache.
//
// # Authentication
//
// Distribution does not refuse htpasswd authentication over plain HTTP (its documentation
// only says it must be used under TLS), so [Options.Username] works with or without
// [Options.TLS]. Password hashes use bcrypt's minimum cost to keep authenticated requests
// fast; the credentials are throwaway.
package regtest
