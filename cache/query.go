package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// Entry is one artifact of the cache as listed.
type Entry struct {
	Ref        string             // empty for a referrer kept by its subject
	Kind       string             //
	Descriptor ocispec.Descriptor // the manifest, with ArtifactType (List leaves out its annotations)
	Subject    *ocispec.Descriptor
}

// Resolve returns the artifact a ref names, or ErrNotFound.
func (s *Store) Resolve(ctx context.Context, ref string) (Artifact, error) {
	var a Artifact
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var r refRecord
		ok, err := getJSON(tx, bucketRefs, ref, &r)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("ref %s: %w", ref, ErrNotFound)
		}
		var ar artifactRecord
		ok, err = getJSON(tx, bucketArtifacts, string(r.Digest), &ar)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("ref %s: artifact %s missing: %w", ref, r.Digest, ErrIndexCorrupt)
		}
		a = Artifact{Descriptor: ar.descriptor(r.Digest), Kind: ar.Kind, Ref: ref}
		return nil
	})
	return a, err
}

// List returns the artifacts of a kind ("" for all): one entry per ref,
// and one per referrer kept only by its subject, sorted by ref then digest
// (referrers, with no ref, first). Descriptors come without their
// annotations (Resolve has them): a pack's are about 650 bytes of heap,
// 20 MiB for 30,000 packs. It reads the index as a scan, so the pages of
// index.db it reads do not stay resident.
func (s *Store) List(ctx context.Context, kind string) ([]Entry, error) {
	var out []Entry
	err := s.scan(ctx, func(tx *bbolt.Tx, sc *scanner) error {
		return sc.forEach(tx.Bucket(bucketArtifacts), func(k, v []byte) error {
			var ar artifactRecord
			if err := json.Unmarshal(v, &ar); err != nil {
				return fmt.Errorf("artifact %s: %w: %v", k, ErrIndexCorrupt, err)
			}
			if kind != "" && ar.Kind != kind {
				return nil
			}
			e := Entry{Kind: ar.Kind, Subject: ar.Subject, Descriptor: ocispec.Descriptor{
				MediaType: ar.MediaType, Digest: digest.Digest(k), Size: ar.Size, ArtifactType: ar.ArtifactType}}
			if len(ar.Refs) == 0 {
				out = append(out, e)
			}
			for _, r := range ar.Refs {
				e.Ref = r
				out = append(out, e)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Ref, b.Ref); c != 0 {
			return c
		}
		return strings.Compare(string(a.Descriptor.Digest), string(b.Descriptor.Digest))
	})
	return out, err
}

// Referrers returns the artifacts recorded with subject as their subject,
// of one artifactType ("" for all), sorted by digest.
func (s *Store) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		all, err := links(tx, subject)
		for _, d := range all {
			if artifactType == "" || d.ArtifactType == artifactType {
				out = append(out, d)
			}
		}
		return err
	})
	return out, err
}

// Predecessors returns the referrers of node, so the cache is an oras-go
// graph source (oras.ExtendedCopyGraph copies an artifact with them).
func (s *Store) Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return s.Referrers(ctx, node.Digest, "")
}

// Imports returns the import records that recorded the artifact d, oldest
// first. Records outlive the artifact's removal: they are history.
func (s *Store) Imports(ctx context.Context, d digest.Digest) ([]ImportRecord, error) {
	var out []ImportRecord
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		prefix := []byte(string(d) + "\x00")
		c := tx.Bucket(bucketImportsBy).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := k[len(prefix):]
			raw := tx.Bucket(bucketImports).Get(id)
			if raw == nil {
				return fmt.Errorf("import record %x of %s missing: %w", id, d, ErrIndexCorrupt)
			}
			var r ImportRecord
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("import record %x: %w: %v", id, ErrIndexCorrupt, err)
			}
			ec := tx.Bucket(bucketImports).Cursor()
			for k, v := ec.Seek(importEntryKey(binary.BigEndian.Uint64(id), 0)); k != nil && len(k) == 12 && bytes.HasPrefix(k, id); k, v = ec.Next() {
				var a ImportedArtifact
				if err := json.Unmarshal(v, &a); err != nil {
					return fmt.Errorf("import record %x artifact %x: %w: %v", id, k[8:], ErrIndexCorrupt, err)
				}
				r.Artifacts = append(r.Artifacts, a)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Remove removes a ref. When nothing else keeps its artifact, the artifact
// record goes, its blobs' refcounts are decremented, and its referrer
// links go too, with the referrers nothing else keeps (in cascade). Blob
// files stay until gc. ErrNotFound when the ref is not there.
func (s *Store) Remove(ctx context.Context, ref string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		var r refRecord
		ok, err := getJSON(tx, bucketRefs, ref, &r)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("ref %s: %w", ref, ErrNotFound)
		}
		if err := tx.Bucket(bucketRefs).Delete([]byte(ref)); err != nil {
			return err
		}
		return unref(tx, ref, r.Digest)
	})
}

// Usage is the disk use of the cache.
type Usage struct {
	Blobs             int                  `json:"blobs"` // blobs, each digest once
	Bytes             int64                `json:"bytes"` // their bytes on disk, every copy
	IndexBytes        int64                `json:"indexBytes"`
	ByKind            map[string]KindUsage `json:"byKind"`
	UnreferencedBlobs int                  `json:"unreferencedBlobs"` // blobs no artifact needs (gc removes them)
	UnreferencedBytes int64                `json:"unreferencedBytes"`
	LeftoverFiles     int                  `json:"leftoverFiles"` // temp files of interrupted writes
	LeftoverBytes     int64                `json:"leftoverBytes"`
	RecordFiles       int                  `json:"recordFiles"` // record files of namespaces (saved plans), outside blobs/
	RecordBytes       int64                `json:"recordBytes"`
}

// KindUsage is the use of one kind. A blob shared by artifacts of two
// kinds counts in both, so kinds may add up to more than the total.
type KindUsage struct {
	Artifacts int   `json:"artifacts"`
	Blobs     int   `json:"blobs"`
	Bytes     int64 `json:"bytes"`
}

// Du measures the cache: blob files, bytes by kind, unreferenced bytes,
// leftovers and record files. It takes no lock; figures are a snapshot.
func (s *Store) Du(ctx context.Context) (Usage, error) {
	u := Usage{ByKind: map[string]KindUsage{}}
	var live map[digest.Digest]bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		live = mark(tx)
		kinds := map[string]map[digest.Digest]int64{}
		return tx.Bucket(bucketArtifacts).ForEach(func(k, v []byte) error {
			var ar artifactRecord
			if err := json.Unmarshal(v, &ar); err != nil {
				return fmt.Errorf("artifact %s: %w: %v", k, ErrIndexCorrupt, err)
			}
			nodes, err := graphNodes(tx, digest.Digest(k))
			if err != nil {
				return err
			}
			if kinds[ar.Kind] == nil {
				kinds[ar.Kind] = map[digest.Digest]int64{}
			}
			ku := u.ByKind[ar.Kind]
			ku.Artifacts++
			for _, n := range nodes {
				if _, seen := kinds[ar.Kind][n]; seen {
					continue
				}
				var br blobRecord
				if _, err := getJSON(tx, bucketBlobs, string(n), &br); err != nil {
					return err
				}
				kinds[ar.Kind][n] = br.Size
				ku.Blobs++
				ku.Bytes += br.Size
			}
			u.ByKind[ar.Kind] = ku
			return nil
		})
	})
	if err != nil {
		return Usage{}, err
	}
	if fi, err := os.Stat(s.path(indexFile)); err == nil {
		u.IndexBytes = diskBytes(fi)
	}
	files, err := s.blobFiles(ctx)
	if err != nil {
		return Usage{}, err
	}
	// A blob held twice (as a file and in a segment) counts once in the
	// blob counts and twice in the bytes, which is what the disk holds.
	counted := make(map[digest.Digest]bool, len(files))
	for _, f := range files {
		first := f.digest == "" || !counted[f.digest]
		counted[f.digest] = true
		u.Bytes += f.size
		if first {
			u.Blobs++
		}
		if !live[f.digest] {
			u.UnreferencedBytes += f.size
			if first {
				u.UnreferencedBlobs++
			}
		}
	}
	left, err := s.leftovers()
	if err != nil {
		return Usage{}, err
	}
	for _, l := range left {
		u.LeftoverFiles++
		u.LeftoverBytes += l.size
	}
	if u.RecordFiles, u.RecordBytes, err = s.recordFiles(); err != nil {
		return Usage{}, err
	}
	return u, nil
}

// file is a file found under the root, or a blob's entry in a segment.
type file struct {
	path   string
	digest digest.Digest // for blob files with a valid name
	size   int64
	fi     fs.FileInfo
	// seg: the blob lies at off in the segment file path.
	seg bool
	off int64
	// damaged: path is a segment whose entries cannot be read.
	damaged error
}

// blobFiles lists blobs/<algorithm>/<encoded>, sorted by path, then every
// entry of every segment. Files whose name is not a valid digest are
// returned with an empty digest.
func (s *Store) blobFiles(ctx context.Context) ([]file, error) {
	var out []file
	algs, err := os.ReadDir(s.path(blobsDir))
	if err != nil {
		return nil, fmt.Errorf("cache blobs: %w", err)
	}
	for _, alg := range algs {
		dir := s.path(blobsDir, alg.Name())
		if !alg.IsDir() {
			out = append(out, file{path: dir})
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("cache blobs: %w", err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			f := file{path: filepath.Join(dir, e.Name())}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("cache blobs: %w", err)
			}
			f.size = fi.Size() // not fi: held for 100,000 files, it is tens of MiB
			if d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name()); fi.Mode().IsRegular() && d.Validate() == nil {
				f.digest = d
			}
			out = append(out, f)
		}
	}
	return out, s.listSegments(ctx, func(f file) { out = append(out, f) })
}

// leftovers lists temp files of interrupted writes: everything in ingest/
// but the folders of running imports (see holdWrites), and files with the
// safefile temp prefix at the root. A folder of an import that is gone is
// one leftover, its size the sum of its files.
func (s *Store) leftovers() ([]file, error) {
	var out []file
	for _, dir := range []string{s.path(ingestDir), s.root} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("cache leftovers: %w", err)
		}
		for _, e := range ents {
			if dir == s.root && !strings.HasPrefix(e.Name(), tempPrefix) {
				continue
			}
			if e.IsDir() && dir != s.root && s.holdLive(e.Name()) {
				continue // a running import writes there
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			f := file{path: filepath.Join(dir, e.Name()), size: fi.Size(), fi: fi}
			if e.IsDir() {
				f.size = 0
				if sub, err := os.ReadDir(f.path); err == nil {
					for _, e := range sub {
						if fi, err := e.Info(); err == nil {
							f.size += fi.Size()
						}
					}
				}
			}
			out = append(out, f)
		}
	}
	return out, nil
}
