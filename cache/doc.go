// Package cache is the local store every stella command reads: the
// artifacts (packs, approval requests and responses, evidence, signatures)
// under <home>/packs, as content-addressed blobs plus a bbolt index.
//
// # Model
//
// Content is OCI: an artifact is a manifest with its config and layers (its
// graph); referrers (signatures, responses, evidence) point at their
// subject through the manifest's subject field. Content moves in and out
// through oras-go's content interfaces: the Store is a content.Storage
// (Fetch, Push, Exists) and a read-only graph storage whose Predecessors
// are the referrers recorded in the index, and Import copies artifacts
// from any content.ReadOnlyStorage (an opened bundle, a registry, a pack
// being built). Import walks and copies the graph itself, the way
// oras.CopyGraph does (children before parents, a few blobs at a time,
// blobs already present skipped): oras-go's root package pulls in net/http,
// which this offline package must not import.
//
// An artifact is kept by its refs ("<id>:<version>") or, for a referrer,
// by its referrer link (subject → referrer), which is recorded whether or
// not the subject is in the cache. Removing the last ref of an artifact
// removes it, its links and, in cascade, the referrers nothing else keeps;
// gc then removes the blobs nothing needs.
//
// # Layout
//
//	root/index.db              bbolt index
//	root/index.db.holder       who holds the index lock (while held)
//	root/gc.lock               gc lock (gofrs/flock)
//	root/gc.lock.holder        who holds the gc lock exclusively (while held)
//	root/holds/<pid>-<rnd>.hold  a running operation's hold (see Hold), or a shared gc lock holder
//	root/blobs/<alg>/<hex>     blob files, mode 0444, named by digest
//	root/segments/<hex>.seg    small blobs kept together, mode 0444, named by the sha256 of their table (ADR 0030)
//	root/ingest/.stella-tmp-*  blobs being written by Push (leftovers after a crash)
//	root/ingest/<pid>-<rnd>/   blobs being written by a running import (see Holds)
//	root/records/<ns>.<bucket>/<alg>/<hex>  record files of a namespace, mode 0444, named by digest (see Records.KeepStaged)
//
// # Index buckets
//
// Every top-level bucket whose name starts with "cache." is reserved to
// this package. Other packages keep their own records in a namespace of
// their own (Store.Records: bucket <name> of namespace <ns> is the
// top-level bucket "<ns>.<name>"), never touching the index directly, and
// add their checks to Verify with a VerifyHook.
//
//	cache.meta               "version" → index version
//	cache.refs               ref → {digest}
//	cache.artifacts          manifest digest → {mediaType, artifactType, size, kind, refs, subject, annotations}
//	cache.blobs              digest → {size, mediaType, refs}: every node of every recorded graph
//	cache.children           manifest digest → its children (config and layers, or index manifests)
//	cache.referrers          subject digest "\x00" referrer digest → referrer descriptor
//	cache.imports            big-endian id → import record {time, from, verified, artifacts}
//	cache.imports.by-digest  digest "\x00" big-endian id → empty
//
// The refcount of a blob is the number of recorded artifacts whose graph
// contains it, each counted once.
//
// # Invariants
//
//   - A blob is visible (its file exists under blobs/, or a segment under
//     segments/ lists it) only after its
//     content was hashed while written to ingest/, checked against the
//     descriptor's digest and size, made durable, renamed, and the directory
//     fsynced. Files are content-addressed: concurrent writers of the same
//     blob are harmless. Every Fetch verifies again while it streams.
//   - The index changes only after every blob it will name is durable: an
//     import copies a batch of artifacts (up to 256 groups) to ingest/,
//     makes all their blobs durable at once (one syncfs(2) of the file
//     system, or an fsync each when few), renames them and fsyncs each blob
//     directory once, runs the Verify hook, then records the batch in one
//     transaction, each group of it all or nothing. A killed process leaves
//     at most unreferenced blob files and ingest leftovers, which gc removes.
//     Blobs staged before their digest was known (Stage, the one read of a
//     pack build) are hashed while written to the ingest folder of the
//     stage's hold and named by that digest; an import takes them as
//     pending blobs of its batch, so they become durable, visible and
//     recorded exactly as copied ones.
//   - Small blobs of a batch (segmentable, at least segmentMin of them) go
//     into one segment instead of a file each: written without a sync,
//     made durable with the batch, renamed into segments/ and the folder
//     fsynced, like a blob file. The index does not record where a blob
//     is; gc removes a segment none of whose blobs is needed and rewrites
//     one some of whose blobs are (see gcSegment).
//   - Artifacts bound by WithPrevious (a pack and the signatures that
//     admitted it) are recorded in one transaction: all become visible
//     together, or none does, whether one fails or the process is killed.
//   - An artifact record exists exactly while a ref or a referrer link keeps
//     it; refcounts equal a mark from all artifact records.
//
// # Locks
//
// The bbolt file lock is held only around each transaction (open → txn →
// close), never while blobs stream, so long imports do not block other
// processes; bbolt's Options.Timeout bounds each wait. Push and Verify hold
// root/gc.lock shared for their duration; an import and a Stage take it
// shared only for instants (to write their holds), and GC exclusive only for its short
// critical sections (see Holds). A process that takes an exclusive lock writes its pid, the
// Options.Holder string and the time to a side file; one that gives up
// after Options.LockTimeout fails with a *LockError (ErrLocked) naming it.
// Side files are advisory, replaced by rename but not fsynced, and removed
// on release; one left by a killed process names no one (its pid is gone).
// A shared holder of the gc lock writes itself down in a hold file with no
// digests, so a GC that gives up names the oldest and counts the others.
// Waits poll every 50ms, with no queue: a lock released and retaken at
// once, forever, starves waiters. A Store holds no lock between calls
// and needs no Close; the only files it keeps open are read-only handles
// (blobs/sha256, and each segment it read a blob from, dropped when gc
// removes the segment), which the runtime closes once unreachable.
//
// # Memory
//
// bbolt maps index.db, and every page a transaction reads counts in the
// process's RSS until the transaction ends: 131 MiB for a cache of 30,000
// small packs. A long read-only pass (List, Verify) reads the index as a
// scan (Store.scan), which drops the pages read so far from the resident
// set every 128 KiB of records (on Linux; elsewhere the pages stay), so
// its RSS does not grow with the index. Verify holds what it cross-checks
// as ids in slices, not as digest strings in maps, and hashes blob files
// as it lists them.
//
// # Holds
//
// An operation that reads the cache for long without writing it (an
// export, a push) does not hold the gc lock while it reads: it takes a
// Hold (HoldClosure). Under the gc lock held shared it resolves its refs
// and writes root/holds/<pid>-<random>.hold naming its pid, command, start
// and the manifests it will read, and it keeps an exclusive flock on that
// file until it ends. An import holds too (holdWrites): it writes its
// blobs in root/ingest/<pid>-<random>/, and before a batch looks for,
// copies or verifies any blob it rewrites its hold, under the gc lock
// held shared for an instant, with every blob digest of the batch's
// graphs.
//
// GC marks from the index in a read transaction without the gc lock and
// lists candidates (unmarked, refcount zero). It then removes them
// gcChunk at a time, each chunk under the gc lock exclusive and in one
// index write transaction: it reads the live holds, marks every held
// digest with everything the index records it references, and removes a
// candidate only when no hold reaches it and its blob record still has a
// zero refcount, keeping and reporting the held ones (GCResult.Held, and
// their holders). An import that finds a blob GC took before its hold was
// written finds it missing and copies it; one that records a blob raises
// its refcount in a transaction GC's excludes, and checks under the index
// lock that every blob it names exists. A hold file GC can lock belongs to
// a process that died: GC removes it and honours nothing in it, and its
// ingest folder is a leftover. So a GC never removes a blob an export was
// promised or an import uses, waits for neither, and a killed one holds
// nothing.
package cache
