// Package bundle reads and writes stella's bundle files.
//
// An artifact (package artifact: a pack, an approval request or response,
// evidence, a signature) is one OCI image manifest with its config and
// layers. A bundle file carries artifacts across an air gap: a plain POSIX
// tar of an OCI image layout (oci-layout, index.json, SHA256SUMS,
// blobs/sha256/<hex>) that other OCI tools can read and that
// `sha256sum -c SHA256SUMS` checks once extracted.
// docs/bundle-format.md is the normative description.
//
// Writing (Write, WriteFile, WriteSplit) is deterministic: the same entries
// and content give byte-identical files (sorted entries, canonical JSON,
// fixed tar headers). Blobs stream from a content.Fetcher and are hashed on
// the way; nothing is written to a final path until it is complete.
//
// Reading (Open) never unpacks and never copies: it scans the tar headers,
// seeking past the data, and serves each blob from its offset in the file,
// or in the parts of a split set, whose sizes and digests it checks first,
// or (DeferPartChecks) whose sizes it checks first and whose digests it
// checks from the bytes the caller's own pass reads (docs/adr/0024).
// Open trusts nothing it reads: names, entry types, sizes, index.json and
// every manifest are checked (manifest bytes are hashed before they are
// parsed, and no allocation is sized from a number in the file beyond fixed
// limits), and anything unexpected is refused with a sentinel error naming
// the entry. Blob contents are hashed while they stream out of Fetch and
// re-hashed by Verify, which also bounds and checks zstd layers.
//
// A *Reader is an oras-go content.ReadOnlyGraphStorage, so importing or
// mirroring a bundle is an oras graph copy from it.
package bundle
