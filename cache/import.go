package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/internal/safefile"
)

// Artifact is one manifest to import, with the kind and ref the caller
// gives it. Kind is free-form (pack, approval-request, approval-response,
// evidence, signature). Ref is "<id>:<version>"; it is empty for referrers,
// which are kept by their subject link instead.
type Artifact struct {
	Descriptor ocispec.Descriptor
	Kind       string
	Ref        string
	// WithPrevious binds the artifact to the one before it in Import's
	// list (and so to the whole run of bound artifacts it belongs to, such
	// as a pack followed by the signatures that admitted it): the run is
	// recorded in one index transaction, so all of it becomes visible
	// together or none of it does, and one failure fails it all.
	WithPrevious bool
}

// Status says what an import did with an artifact.
type Status string

const (
	// StatusNew: the artifact was recorded by this import.
	StatusNew Status = "new"
	// StatusLinked: the artifact was already recorded; this import added
	// its ref or its referrer link.
	StatusLinked Status = "linked"
	// StatusPresent: the artifact and its ref were already recorded;
	// nothing was written (missing blob files are written back, though).
	StatusPresent Status = "present"
	// StatusFailed: the artifact failed and nothing was recorded for it.
	StatusFailed Status = "failed"
)

// ImportRecord says when, from where and how an import was verified. The
// caller fills From and Verified; the cache fills ID, Time and Artifacts.
type ImportRecord struct {
	ID        uint64             `json:"id"`
	Time      time.Time          `json:"time"`     // UTC, whole seconds
	From      string             `json:"from"`     // bundle file name, registry ref...
	Verified  []string           `json:"verified"` // checks made, e.g. "sha256 per blob", "signature by key X"
	Artifacts []ImportedArtifact `json:"artifacts"`
}

// ImportedArtifact is one artifact of an import record.
type ImportedArtifact struct {
	Ref          string        `json:"ref,omitempty"`
	Kind         string        `json:"kind"`
	Digest       digest.Digest `json:"digest"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Status       Status        `json:"status"`
}

// ImportOptions tune Import.
type ImportOptions struct {
	// Replace lets a ref that points to another digest be moved.
	Replace bool
	// Concurrency is the number of blobs copied at once (default 3, at most 4).
	Concurrency int
	// Progress, if set, is called (never concurrently) as the import goes.
	Progress func(Progress)
	// Verify, if set, is called for each artifact after all its blobs are
	// durable in the cache and before anything is recorded; fetcher reads
	// the cache. An error refuses the artifact: nothing is recorded for it.
	Verify func(ctx context.Context, a Artifact, fetcher content.Fetcher) error
	// Stage, if set, holds blobs already written to the ingest area and
	// hashed (Store.Stage): a blob of an artifact staged there is taken
	// from it instead of fetched from the source, and made durable and
	// recorded like the others. Blobs the import does not take stay
	// staged until Stage.Close.
	Stage *Stage
}

// ProgressEvent is the kind of a Progress report.
type ProgressEvent int

const (
	ArtifactStarted ProgressEvent = iota + 1
	BlobStarted                   // Blob is being copied
	BlobBytes                     // BlobBytes of Blob copied so far
	BlobDone                      // Blob is written and checked (durable before its artifact is verified)
	BlobSkipped                   // Blob was already in the cache
	ArtifactDone                  // Status is final (Err set when failed)
)

// Progress reports an import's progress.
type Progress struct {
	Event         ProgressEvent
	Index         int // position of the artifact in Import's list
	Artifact      Artifact
	Blob          ocispec.Descriptor // for blob events
	BlobBytes     int64              // bytes of Blob copied so far
	ArtifactBytes int64              // bytes of the artifact's graph copied or skipped so far
	ArtifactTotal int64              // bytes of the artifact's graph (0 when already present)
	Status        Status             // for ArtifactDone
	Err           error              // for ArtifactDone of a failed artifact
}

// ImportResult says what an import did, artifact by artifact.
type ImportResult struct {
	Record       ImportRecord // as recorded; ID 0 when nothing was recorded
	Artifacts    []ArtifactResult
	BlobsWritten int
	BytesWritten int64
	BlobsSkipped int
	BytesSkipped int64
}

// ArtifactResult is the outcome for one artifact. Artifact.Descriptor has
// its ArtifactType filled from the manifest.
type ArtifactResult struct {
	Artifact     Artifact
	Status       Status
	Err          error
	BlobsWritten int
	BytesWritten int64
	// BlobsSkipped are the blobs of its graph already in the cache: every
	// one of an artifact already there, or those its copy found present.
	BlobsSkipped int
	BytesSkipped int64
}

// Import copies artifacts from src into the cache, each all or nothing:
// its whole graph (manifest, config, layers; blobs already present are
// skipped) is made durable, then opts.Verify runs, then one index
// transaction records the ref, blob refcounts, manifest children, the
// referrer link to its subject and the import record. Artifacts go a batch
// at a time (see batch): the blobs of a batch are made durable together
// and the batch is recorded in one transaction, so the syncs and
// transactions of an import do not grow with its files and artifacts.
// Import does not hold the gc lock while it runs: it holds (see holdWrites)
// every blob of the batch it imports, so a GC running at the same time
// removes nothing it found present, wrote or is verifying, and no blob it
// is writing in its own ingest folder.
//
// Artifacts bound by WithPrevious are copied and verified one after the
// other, then recorded in one index transaction: a crash or a failure
// anywhere leaves none of them recorded.
//
// An artifact that fails is not recorded; the others still are. When any
// failed, the error joins the failures (each naming its artifact) and the
// result tells which. ErrRefConflict: the ref names another digest and
// opts.Replace is false. ErrInvalidArtifact: malformed input (checked
// before anything is copied).
func (s *Store) Import(ctx context.Context, src content.ReadOnlyStorage, artifacts []Artifact, rec ImportRecord, opts ImportOptions) (ImportResult, error) {
	for i, a := range artifacts {
		if err := checkArtifact(a); err != nil {
			return ImportResult{}, err
		}
		if i == 0 && a.WithPrevious {
			return ImportResult{}, fmt.Errorf("artifact %s: %w: bound to a previous artifact, but it is the first", describe(a), ErrInvalidArtifact)
		}
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 3
	}
	opts.Concurrency = min(opts.Concurrency, 4)
	hold, err := s.holdWrites(ctx)
	if err != nil {
		return ImportResult{}, err
	}
	defer hold.Release()

	rec.ID = 0
	rec.Time = s.now().Truncate(time.Second)
	rec.Artifacts = nil
	rec.Verified = slices.Clone(rec.Verified)
	im := &importer{s: s, src: src, opts: opts, rec: rec, hold: hold}
	results := make([]ArtifactResult, len(artifacts))
	var batch []*group
	for i := 0; i < len(artifacts); {
		j := i + 1
		for j < len(artifacts) && artifacts[j].WithPrevious {
			j++
		}
		g := &group{}
		for k := i; k < j; k++ {
			results[k] = ArtifactResult{Artifact: artifacts[k]}
			g.ms = append(g.ms, &member{i: k, res: &results[k]})
		}
		batch = append(batch, g)
		if len(batch) == maxBatchGroups || j == len(artifacts) {
			im.batch(ctx, batch, 0)
			batch = nil
		}
		i = j
	}
	res := ImportResult{}
	if len(results) > 0 {
		res.Artifacts = results // not copied: 10,000 results are MiBs
	}
	var errs []error
	for _, ar := range results {
		res.BlobsWritten += ar.BlobsWritten
		res.BytesWritten += ar.BytesWritten
		res.BlobsSkipped += ar.BlobsSkipped
		res.BytesSkipped += ar.BytesSkipped
		if ar.Err != nil {
			errs = append(errs, fmt.Errorf("artifact %s: %w", describe(ar.Artifact), ar.Err))
		}
	}
	res.Record = im.rec
	return res, errors.Join(errs...)
}

func describe(a Artifact) string {
	if a.Ref != "" {
		return fmt.Sprintf("%s %s (%s)", a.Kind, a.Ref, a.Descriptor.Digest)
	}
	return fmt.Sprintf("%s %s", a.Kind, a.Descriptor.Digest)
}

func checkArtifact(a Artifact) error {
	if err := checkDescriptor(a.Descriptor); err != nil {
		return fmt.Errorf("artifact %s: %w", describe(a), err)
	}
	if !isManifest(a.Descriptor.MediaType) {
		return fmt.Errorf("artifact %s: %w: media type %q is not a manifest", describe(a), ErrInvalidArtifact, a.Descriptor.MediaType)
	}
	if a.Kind == "" || strings.ContainsAny(a.Kind, " \t\r\n\x00") {
		return fmt.Errorf("artifact %s: %w: kind %q", describe(a), ErrInvalidArtifact, a.Kind)
	}
	if a.Ref != "" {
		if err := checkRef(a.Ref); err != nil {
			return fmt.Errorf("artifact %s: %w", describe(a), err)
		}
	}
	return nil
}

// checkRef accepts "<id>:<version>" with no blanks or control characters.
func checkRef(ref string) error {
	i := strings.LastIndexByte(ref, ':')
	if i <= 0 || i == len(ref)-1 || len(ref) > 255 ||
		strings.ContainsFunc(ref, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("ref %q: %w: want <id>:<version>", ref, ErrInvalidArtifact)
	}
	return nil
}

// importer carries one Import call.
type importer struct {
	s    *Store
	src  content.ReadOnlyStorage
	opts ImportOptions
	rec  ImportRecord
	// hold keeps from GC what the batch being imported uses; its ingest
	// folder receives the batch's blobs.
	hold *Hold

	mu         sync.Mutex             // serializes Progress and guards the counters and pending blobs
	pending    []pendingBlob          // blobs the batch wrote, not yet durable
	pendingSet map[digest.Digest]bool // their digests
	// seg receives the batch's small blobs; segs are the segments its
	// commit renamed into segments/.
	seg  *segmentWriter
	segs []string
	// confirmed: segments seen present in the record transaction;
	// copyConfirmed: in the batch's copy (see present).
	confirmed, copyConfirmed map[string]bool
	// listed: the blob files, when the batch listed them (see present).
	listed blobNames
}

// listBlobsFrom is how many blobs a batch looks for before it lists the
// blob files instead of looking each up.
const listBlobsFrom = 64

func (im *importer) emit(p Progress) {
	if im.opts.Progress == nil {
		return
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	im.opts.Progress(p)
}

// member is one artifact of a group being imported.
type member struct {
	i       int // position in Import's list
	res     *ArtifactResult
	present bool            // already recorded with its ref and link: nothing to record
	nodes   []digest.Digest // its graph, when present
	g       *graph          // when not present
	created []digest.Digest
}

// group is a run of artifacts bound by WithPrevious (often just one),
// recorded all together or not at all.
type group struct {
	ms       []*member
	err      error // set when the group failed
	failed   int   // the member that failed, -1 when its recording did
	vanished error // a blob it counted as present vanished before it was recorded
	reported bool  // its members' ArtifactDone went out
}

func (g *group) fail(k int, err error) {
	if g.err == nil {
		g.failed, g.err = k, err
	}
}

// maxBatchGroups bounds the groups imported in one batch: copied without a
// sync each, made durable together, then recorded in one transaction.
const maxBatchGroups = 256

// batch imports groups in four steps, so an import costs what its bytes
// cost rather than a sync per file and a transaction per artifact: every
// blob is written to ingest/ (none fsynced), then all are made durable at
// once and renamed into blobs/ (commitBlobs), then each artifact is
// verified, then one index transaction records every group that has not
// failed. A group that fails in that transaction is left out and the
// transaction run again without it, so each group stays all or nothing;
// the blob files created for failed groups are removed again unless the
// index names them. The index never names a blob before it is durable.
func (im *importer) batch(ctx context.Context, gs []*group, attempt int) {
	im.pending, im.pendingSet = nil, map[digest.Digest]bool{}
	im.seg, im.segs = newSegmentWriter(im.hold.ingest), nil
	if attempt == 0 {
		im.prepare(ctx, gs)
	}
	im.holdBatch(ctx, gs)
	// Segments seen now hold blobs this batch holds: gc keeps them, so
	// one look at each serves the whole copy.
	im.copyConfirmed = map[string]bool{}
	if err := im.s.refreshSegments(); err != nil {
		for _, g := range gs {
			g.fail(0, err)
		}
	}
	// Many blobs to look for: the blob files are listed once instead of
	// looked up one by one, when there are not many more of them (after
	// the holds: gc removes none of the blobs the batch holds).
	im.listed = nil
	looks := 0
	for _, g := range gs {
		for _, m := range g.ms {
			if g.err == nil && !m.present {
				looks += len(m.g.nodes)
			}
		}
	}
	if looks >= listBlobsFrom {
		im.listed = im.s.listBlobNames(4 * looks)
	}
	algs := map[digest.Algorithm]bool{}
	for _, g := range gs {
		for k, m := range g.ms {
			if g.err != nil || m.present {
				continue
			}
			for _, n := range m.g.nodes {
				algs[n.Digest.Algorithm()] = true
			}
			if err := im.copy(ctx, m.i, m.res, m.g, &m.created); err != nil {
				g.fail(k, err)
			}
		}
	}
	// A blob skipped as present may have been renamed by a process killed
	// before its directory fsync: its directory is fsynced too, before the
	// index names it.
	var dirs []string
	for alg := range algs {
		dirs = append(dirs, im.s.path(blobsDir, alg.String()))
	}
	// What the records will need of each graph is encoded while the
	// blobs are made durable: the sync waits on the disk, not the CPU.
	var encoding sync.WaitGroup
	for _, g := range gs {
		for _, m := range g.ms {
			if g.err == nil && !m.present {
				encoding.Go(m.g.encodeRecords)
			}
		}
	}
	segs, err := im.s.commitBlobs(im.pending, dirs...)
	encoding.Wait()
	if err != nil {
		for _, g := range gs {
			if g.err == nil && slices.ContainsFunc(g.ms, func(m *member) bool { return !m.present }) {
				g.fail(-1, err)
			}
		}
	}
	im.segs = segs
	if err := im.seg.discard(); err != nil {
		for _, g := range gs {
			if g.err == nil {
				g.fail(-1, err)
			}
		}
	}
	im.pending, im.pendingSet = nil, nil
	// A group that failed is reported at once, so the Verify hook of a
	// later artifact (a referrer whose subject failed) knows it.
	for _, g := range gs {
		if g.err != nil {
			im.settle(g)
		}
	}
	for todo := gs; len(todo) > 0; {
		for _, g := range todo {
			for k, m := range g.ms {
				if g.err != nil || (m.present && attempt > 0) {
					continue
				}
				if err := im.verify(ctx, m.res.Artifact); err != nil {
					g.fail(k, err)
					im.settle(g)
				}
			}
		}
		// Groups after one that failed to record are verified again
		// once its failure is reported, then recorded.
		todo = im.recordBatch(ctx, todo)
		for _, g := range gs {
			if g.err != nil && !g.reported {
				im.settle(g)
			}
		}
	}

	var created []digest.Digest
	var again []*group
	for _, g := range gs {
		switch {
		case g.vanished != nil && attempt < 2:
			// Another process rolled back a blob this copy found
			// present: copy it again.
			g.vanished = nil
			again = append(again, g)
		case g.vanished != nil:
			g.fail(-1, g.vanished)
			fallthrough
		case g.err != nil:
			for _, m := range g.ms {
				created = append(created, m.created...)
			}
		}
	}
	if err := im.rollback(ctx, created); err != nil {
		for _, g := range gs {
			if g.err != nil {
				g.err = errors.Join(g.err, err)
				g.setResults()
			}
		}
	}
	if len(again) > 0 {
		im.batch(ctx, again, attempt+1)
	}
	for _, g := range gs {
		if !g.reported && !slices.Contains(again, g) { // a group run again is reported by that run
			im.settle(g)
		}
	}
}

// setResults sets the status and error of each member of a failed group.
func (g *group) setResults() {
	if g.err == nil {
		return
	}
	for k, m := range g.ms {
		m.res.Status, m.res.Err = StatusFailed, g.err
		if g.failed >= 0 && k != g.failed {
			m.res.Err = fmt.Errorf("not recorded: it is recorded together with %s, which failed: %w", describe(g.ms[g.failed].res.Artifact), g.err)
		}
	}
}

// settle reports a group's members done, with their final status.
func (im *importer) settle(g *group) {
	g.setResults()
	g.reported = true
	for _, m := range g.ms {
		im.emit(Progress{Event: ArtifactDone, Index: m.i, Artifact: m.res.Artifact, Status: m.res.Status, Err: m.res.Err})
	}
}

// holdBatch names every blob of the batch's graphs in the import's hold
// before any of them is looked for in the cache, copied or verified: a GC
// running meanwhile keeps them (the blobs found present, those written and
// not yet recorded) until the import ends. A hold that cannot be written
// fails the batch.
func (im *importer) holdBatch(ctx context.Context, gs []*group) {
	var ds []digest.Digest
	for _, g := range gs {
		if g.err != nil {
			continue
		}
		for _, m := range g.ms {
			if m.present {
				ds = append(ds, m.nodes...)
				continue
			}
			if m.g != nil {
				for _, n := range m.g.nodes {
					ds = append(ds, n.Digest)
				}
			}
		}
	}
	if err := im.s.setHold(ctx, im.hold, ds); err != nil {
		for _, g := range gs {
			g.fail(0, err)
		}
	}
}

// precheck is what the index says of an artifact before its copy.
type precheck struct {
	recorded     bool // recorded with its ref and link
	artifactType string
	nodes        []ocispec.Descriptor // its graph, when recorded
	err          error
}

// prepare reads what each artifact needs before its copy, in one index
// transaction for the batch: whether it is already there, and otherwise
// its graph. A member that fails fails its group.
func (im *importer) prepare(ctx context.Context, gs []*group) {
	for _, g := range gs {
		for _, m := range g.ms {
			im.emit(Progress{Event: ArtifactStarted, Index: m.i, Artifact: m.res.Artifact})
		}
	}
	pre := map[*member]*precheck{}
	err := im.s.view(ctx, func(tx *bbolt.Tx) error {
		for _, g := range gs {
			for _, m := range g.ms {
				pre[m] = im.precheckTx(tx, m.res.Artifact)
			}
		}
		return nil
	})
	for _, g := range gs {
		for k, m := range g.ms {
			if g.err != nil {
				break
			}
			if err != nil {
				g.fail(k, err)
				break
			}
			if err := im.prepareMember(ctx, m, pre[m]); err != nil {
				g.fail(k, err)
			}
		}
	}
}

func (im *importer) prepareMember(ctx context.Context, m *member, p *precheck) error {
	if p.err != nil {
		return p.err
	}
	a := m.res.Artifact
	if p.recorded {
		present := true
		for _, n := range p.nodes {
			ok, err := im.s.Exists(ctx, n)
			if err != nil {
				return err
			}
			if !ok {
				present = false // a blob file is gone: copy again
				break
			}
		}
		if present {
			for _, n := range p.nodes {
				m.nodes = append(m.nodes, n.Digest)
				// Its blobs are in the cache already: what a re-import
				// reports as present, as a copy reports each blob it skips.
				m.res.BlobsSkipped++
				m.res.BytesSkipped += n.Size
			}
			m.present = true
			m.res.Status = StatusPresent
			m.res.Artifact.Descriptor.ArtifactType = p.artifactType
			return nil
		}
	}
	g, err := walk(ctx, im.src, a.Descriptor)
	if err != nil {
		return err
	}
	m.res.Artifact.Descriptor.ArtifactType = g.info.artifactType
	if a.Ref == "" && g.info.subject == nil {
		return fmt.Errorf("manifest %s: %w: no ref and no subject would keep it", a.Descriptor.Digest, ErrInvalidArtifact)
	}
	m.g = g
	return nil
}

// precheckTx says whether the artifact is already recorded with its ref
// and link (and then which blobs its graph has), and fails early on a ref
// conflict.
func (im *importer) precheckTx(tx *bbolt.Tx, a Artifact) *precheck {
	p := &precheck{}
	p.err = func() error {
		if a.Ref != "" && !im.opts.Replace {
			var r refRecord
			ok, err := getJSON(tx, bucketRefs, a.Ref, &r)
			if err != nil {
				return err
			}
			if ok && r.Digest != a.Descriptor.Digest {
				return refConflict(a.Ref, r.Digest, a.Descriptor.Digest)
			}
		}
		var ar artifactRecord
		ok, err := getJSON(tx, bucketArtifacts, string(a.Descriptor.Digest), &ar)
		if err != nil || !ok {
			return err
		}
		p.artifactType = ar.ArtifactType
		if a.Ref != "" && !slices.Contains(ar.Refs, a.Ref) {
			return nil
		}
		if ar.Subject != nil && !hasLink(tx, ar.Subject.Digest, a.Descriptor.Digest) {
			return nil
		}
		ds, err := graphNodes(tx, a.Descriptor.Digest)
		if err != nil {
			return err
		}
		for _, d := range ds {
			var br blobRecord
			if _, err := getJSON(tx, bucketBlobs, string(d), &br); err != nil {
				return err
			}
			p.nodes = append(p.nodes, ocispec.Descriptor{Digest: d, Size: br.Size, MediaType: br.MediaType})
		}
		p.recorded = true
		return nil
	}()
	return p
}

func refConflict(ref string, have, want digest.Digest) error {
	return fmt.Errorf("ref %s points to %s, not %s: %w", ref, have, want, ErrRefConflict)
}

// errBlobVanished: a blob file counted as present disappeared before the
// index named it (a concurrent import rolled it back).
var errBlobVanished = errors.New("blob file vanished before it was recorded")

// rollback removes blob files created by a failed import that no index
// record names, and the segments its batch committed of which no index
// record names any blob (a segment shared with groups that were recorded
// stays; gc removes what no record needs). It runs inside an index write
// transaction, which excludes every other index change, so no concurrent
// import can record one of these blobs meanwhile; one that counted it as
// present finds it missing when it records, and copies it again.
func (im *importer) rollback(ctx context.Context, created []digest.Digest) error {
	if len(created) == 0 {
		return nil
	}
	return im.s.update(context.WithoutCancel(ctx), func(tx *bbolt.Tx) error {
		blobs := tx.Bucket(bucketBlobs)
		dirs := map[string]bool{}
		for _, d := range created {
			if blobs.Get([]byte(d)) != nil {
				continue
			}
			p := im.s.blobPath(d)
			err := os.Remove(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // in a segment, or never renamed
			}
			if err != nil {
				return err
			}
			dirs[filepath.Dir(p)] = true
		}
		for _, p := range im.segs {
			sg, err := readSegment(p)
			if err != nil {
				continue // not ours to judge: cache verify reports it
			}
			if slices.ContainsFunc(sg.entries, func(e segEntry) bool { return blobs.Get([]byte(e.digest())) != nil }) {
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			dirs[filepath.Dir(p)] = true
		}
		for dir := range dirs {
			if err := safefile.SyncDir(dir); err != nil {
				return err
			}
		}
		return nil
	})
}

func (im *importer) verify(ctx context.Context, a Artifact) error {
	if im.opts.Verify == nil {
		return nil
	}
	if err := im.opts.Verify(ctx, a, im.s); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// copy makes every blob of the graph durable in the cache, as
// oras.CopyGraph would (children before parents, Concurrency blobs at a
// time, blobs already present skipped), over the same content interfaces.
// (The oras root package pulls in net/http, which offline packages must not.)
func (im *importer) copy(ctx context.Context, i int, res *ArtifactResult, g *graph, created *[]digest.Digest) error {
	t := &tracker{im: im, i: i, a: res.Artifact, total: g.size, counted: map[digest.Digest]int64{},
		lastReport: map[digest.Digest]int64{}}
	defer func() {
		res.BlobsWritten, res.BytesWritten = t.written, t.writtenBytes
		res.BlobsSkipped, res.BytesSkipped = t.skipped, t.skippedBytes
		*created = append(*created, t.writtenDigests...)
	}()

	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(im.opts.Concurrency)
	var localErr error
	for _, n := range g.nodes {
		if _, isManifest := g.manifests[n.Digest]; isManifest {
			continue
		}
		// Blobs present or staged need no I/O of their own: handled here,
		// without a goroutine each (a build of 10,000 files).
		done, err := im.copyLocal(gctx, t, n)
		if err != nil {
			localErr = err
			break
		}
		if !done {
			eg.Go(func() error { return im.fetchNode(gctx, t, g, n) })
		}
	}
	if err := errors.Join(eg.Wait(), localErr); err != nil {
		return err
	}
	for _, m := range g.postOrder() {
		if err := im.copyNode(ctx, t, g, m); err != nil {
			return err
		}
	}
	return nil
}

// copyNode copies one blob from the source unless the cache has it.
func (im *importer) copyNode(ctx context.Context, t *tracker, g *graph, desc ocispec.Descriptor) error {
	done, err := im.copyLocal(ctx, t, desc)
	if err != nil || done {
		return err
	}
	return im.fetchNode(ctx, t, g, desc)
}

// copyLocal does what copyNode does for a blob that needs no copy from
// the source: present in the cache (or written by this batch), or staged.
// It reports false, having done nothing, for any other.
func (im *importer) copyLocal(ctx context.Context, t *tracker, desc ocispec.Descriptor) (bool, error) {
	im.mu.Lock()
	ok := im.pendingSet[desc.Digest] // written by this batch, not yet visible
	im.mu.Unlock()
	if !ok {
		var err error
		if ok, err = im.s.present(desc, im.copyConfirmed, im.listed); err != nil {
			return false, err
		}
	}
	if ok {
		t.skip(desc)
		return true, nil
	}
	if p, ok := im.opts.Stage.take(desc.Digest, desc.Size); ok {
		// Written and hashed when it was staged, in the one read of its
		// source: made durable with the batch like any other.
		im.addPending(p)
		t.staged(desc)
		return true, nil
	}
	return false, nil
}

// fetchNode copies one blob the cache does not have from the source.
func (im *importer) fetchNode(ctx context.Context, t *tracker, g *graph, desc ocispec.Descriptor) error {
	t.event(BlobStarted, desc, 0)
	var r io.Reader
	if b, isManifest := g.manifests[desc.Digest]; isManifest {
		r = bytes.NewReader(b) // read and verified by walk
	} else {
		rc, err := im.src.Fetch(ctx, desc)
		if err != nil {
			return fmt.Errorf("blob %s: fetch from source: %w", desc.Digest, err)
		}
		defer rc.Close()
		r = rc
	}
	p, err := im.s.ingestBlob(ctx, im.hold.ingest, im.seg, desc, r, func(n int64) { t.bytes(desc, n) })
	if err != nil {
		if title := desc.Annotations[ocispec.AnnotationTitle]; title != "" {
			// Which file of the artifact, for the operator (a pack's).
			return fmt.Errorf("file %q: %w", title, err)
		}
		return err
	}
	im.addPending(*p)
	t.wrote(desc)
	t.done(desc)
	return nil
}

// addPending adds a blob written to ingest/ to the batch's pending blobs.
func (im *importer) addPending(p pendingBlob) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.pending = append(im.pending, p)
	im.pendingSet[p.digest] = true
}

// errGroupFailed stops a batch's transaction when one of its groups fails.
var errGroupFailed = errors.New("group failed")

// recordBatch is the one index transaction of a batch: the groups that
// have not failed are recorded in it, each all or nothing. When one fails
// to record, it is marked failed (or vanished), the groups before it are
// recorded without it, and the groups after it are returned unrecorded, to
// be verified again once its failure is reported (a referrer's Verify
// hook may depend on it). It sets each recorded member's status.
func (im *importer) recordBatch(ctx context.Context, gs []*group) (rest []*group) {
	var todo []*group
	for _, g := range gs {
		if g.err == nil && g.vanished == nil && slices.ContainsFunc(g.ms, func(m *member) bool { return !m.present }) {
			todo = append(todo, g)
		}
	}
	for len(todo) > 0 {
		var rec ImportRecord
		bad := -1
		var badErr error
		statuses := map[*member]Status{}
		err := im.s.update(ctx, func(tx *bbolt.Tx) error {
			rec, bad, badErr = im.rec, -1, nil // the transaction may run again
			im.confirmed = map[string]bool{}
			// Segments committed by this batch, or known to this process
			// (a blob found present may be in one): the records may name
			// blobs kept in segments.
			if len(im.segs) > 0 || im.s.knowsSegments() {
				if err := markSegmentedTx(tx); err != nil {
					return err
				}
			}
			// The import record's keys (id, then id and entry number)
			// only ever grow: its leaf pages are filled whole, not split
			// half full as for keys that land anywhere, which halves the
			// record's share of index.db, whose pages count in the RSS
			// of every process that maps them.
			if b := tx.Bucket(bucketImports); b != nil {
				b.FillPercent = 1.0
			}
			for p, g := range todo {
				for _, m := range g.ms {
					statuses[m] = StatusPresent
					if m.present {
						continue
					}
					st, err := im.recordTx(tx, m.res.Artifact, m.g, &rec)
					if err != nil {
						bad, badErr = p, err
						return errGroupFailed
					}
					statuses[m] = st
				}
			}
			return nil
		})
		if bad >= 0 && errors.Is(err, errGroupFailed) {
			if errors.Is(badErr, errBlobVanished) {
				todo[bad].vanished = badErr
			} else {
				todo[bad].fail(-1, badErr)
			}
			rest = append(slices.Clone(todo[bad+1:]), rest...)
			todo = todo[:bad]
			continue
		}
		if err != nil {
			for _, g := range todo {
				g.fail(-1, err)
			}
			return rest
		}
		for m, st := range statuses {
			m.res.Status = st
		}
		im.rec = rec
		return rest
	}
	return rest
}

// recordTx records one artifact in tx and adds it to rec, which gets its
// ID from the first artifact recorded; it returns the artifact's status.
func (im *importer) recordTx(tx *bbolt.Tx, a Artifact, g *graph, rec *ImportRecord) (Status, error) {
	d := a.Descriptor.Digest
	status := StatusPresent
	if a.Ref != "" {
		var r refRecord
		ok, err := getJSON(tx, bucketRefs, a.Ref, &r)
		if err != nil {
			return StatusFailed, err
		}
		if ok && r.Digest != d {
			if !im.opts.Replace {
				return StatusFailed, refConflict(a.Ref, r.Digest, d)
			}
			if err := tx.Bucket(bucketRefs).Delete([]byte(a.Ref)); err != nil {
				return StatusFailed, err
			}
			if err := unref(tx, a.Ref, r.Digest); err != nil {
				return StatusFailed, err
			}
		}
	}
	var ar artifactRecord
	ok, err := getJSON(tx, bucketArtifacts, string(d), &ar)
	if err != nil {
		return StatusFailed, err
	}
	if !ok {
		// In the order of their keys: bbolt inserts a key into its node's
		// sorted slice, so keys put in random order shift half the node
		// each time, O(n²) for the n blobs of a pack of many files in a
		// new cache; in key order each lands at the end.
		nodes := g.byDigest()
		// Under the index lock: every blob the record will name must
		// still be there (see rollback).
		for _, n := range nodes {
			// Any size: the record's check is that the blob is there.
			ok, err := im.s.has(n.Digest, -1, im.confirmed, true, nil)
			if err != nil {
				return StatusFailed, err
			}
			if !ok {
				return StatusFailed, fmt.Errorf("blob %s: %w", n.Digest, errBlobVanished)
			}
		}
		status = StatusNew
		ar = artifactRecord{MediaType: g.root.MediaType, ArtifactType: g.info.artifactType,
			Size: g.root.Size, Kind: a.Kind, Subject: g.info.subject, Annotations: g.info.annotations}
		for _, n := range nodes {
			var br blobRecord
			if _, err := getJSON(tx, bucketBlobs, string(n.Digest), &br); err != nil {
				return StatusFailed, err
			}
			br.Size, br.MediaType = n.Size, n.MediaType
			br.Refs++
			if err := tx.Bucket(bucketBlobs).Put([]byte(n.Digest), br.appendJSON(nil)); err != nil {
				return StatusFailed, err
			}
			if _, isManifest := g.children[n.Digest]; isManifest {
				raw, err := g.childrenJSON(n.Digest)
				if err != nil {
					return StatusFailed, err
				}
				if err := tx.Bucket(bucketChildren).Put([]byte(n.Digest), raw); err != nil {
					return StatusFailed, err
				}
			}
		}
	}
	if a.Ref != "" && !slices.Contains(ar.Refs, a.Ref) {
		ar.Refs = append(ar.Refs, a.Ref)
		slices.Sort(ar.Refs)
		if err := putJSON(tx, bucketRefs, a.Ref, refRecord{Digest: d}); err != nil {
			return StatusFailed, err
		}
		if status == StatusPresent {
			status = StatusLinked
		}
	}
	if ar.Subject != nil && !hasLink(tx, ar.Subject.Digest, d) {
		if err := putJSON(tx, bucketReferrers, string(linkKey(ar.Subject.Digest, d)), ar.descriptor(d)); err != nil {
			return StatusFailed, err
		}
		if status == StatusPresent {
			status = StatusLinked
		}
	}
	if status == StatusPresent {
		return status, nil // raced with an identical import: nothing to add
	}
	if err := putJSON(tx, bucketArtifacts, string(d), ar); err != nil {
		return StatusFailed, err
	}
	// The record's header is written once, by its first artifact; each
	// artifact adds its own entry, so an import of n artifacts writes O(n)
	// bytes of record, not the whole growing record n times.
	if rec.ID == 0 {
		id, err := tx.Bucket(bucketImports).NextSequence()
		if err != nil {
			return StatusFailed, err
		}
		rec.ID = id
		header := *rec
		header.Artifacts = nil
		if err := im.putRecord(tx, idKey(rec.ID), header); err != nil {
			return StatusFailed, err
		}
	}
	ia := ImportedArtifact{Ref: a.Ref, Kind: a.Kind, Digest: d, ArtifactType: ar.ArtifactType, Status: status}
	if err := im.putRecord(tx, importEntryKey(rec.ID, len(rec.Artifacts)), ia); err != nil {
		return StatusFailed, err
	}
	// Appending in place is safe: im.rec is replaced only when the
	// transaction commits (a transaction run again starts from im.rec and
	// overwrites the same entries), and nothing else holds the backing array.
	rec.Artifacts = append(rec.Artifacts, ia)
	return status, tx.Bucket(bucketImportsBy).Put(append([]byte(string(d)+"\x00"), idKey(rec.ID)...), []byte{})
}

// putRecord writes one key of an import record and counts its bytes.
func (im *importer) putRecord(tx *bbolt.Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	im.s.recordBytes.Add(int64(len(b)))
	return tx.Bucket(bucketImports).Put(key, b)
}

// tracker turns the copy's steps into Progress and counters. It shares
// the importer's mutex, so reports go out one at a time and in order.
type tracker struct {
	im    *importer
	i     int
	a     Artifact
	total int64

	counted        map[digest.Digest]int64 // bytes reported per blob
	lastReport     map[digest.Digest]int64
	doneBytes      int64
	written        int
	writtenBytes   int64
	writtenDigests []digest.Digest // blob files this copy created
	skipped        int
	skippedBytes   int64
}

const reportEvery = 256 << 10

// emitLocked reports an event; the caller holds im.mu.
func (t *tracker) emitLocked(ev ProgressEvent, desc ocispec.Descriptor, blobBytes int64) {
	if t.im.opts.Progress != nil {
		t.im.opts.Progress(Progress{Event: ev, Index: t.i, Artifact: t.a, Blob: desc, BlobBytes: blobBytes,
			ArtifactBytes: t.doneBytes, ArtifactTotal: t.total})
	}
}

func (t *tracker) event(ev ProgressEvent, desc ocispec.Descriptor, blobBytes int64) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.emitLocked(ev, desc, blobBytes)
}

func (t *tracker) bytes(desc ocispec.Descriptor, n int64) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.counted[desc.Digest] += n
	t.doneBytes += n
	c := t.counted[desc.Digest]
	if c-t.lastReport[desc.Digest] >= reportEvery || c == desc.Size {
		t.lastReport[desc.Digest] = c
		t.emitLocked(BlobBytes, desc, c)
	}
}

func (t *tracker) wrote(desc ocispec.Descriptor) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.written++
	t.writtenBytes += desc.Size
	t.writtenDigests = append(t.writtenDigests, desc.Digest)
}

func (t *tracker) done(desc ocispec.Descriptor) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.doneBytes += desc.Size - t.counted[desc.Digest]
	t.counted[desc.Digest] = desc.Size
	t.emitLocked(BlobDone, desc, desc.Size)
}

// staged is event, bytes, wrote and done of a blob taken whole from the
// stage, under one lock: the same reports, without a blob's own counters.
func (t *tracker) staged(desc ocispec.Descriptor) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.emitLocked(BlobStarted, desc, 0)
	t.doneBytes += desc.Size
	t.emitLocked(BlobBytes, desc, desc.Size)
	t.written++
	t.writtenBytes += desc.Size
	t.writtenDigests = append(t.writtenDigests, desc.Digest)
	t.emitLocked(BlobDone, desc, desc.Size)
}

func (t *tracker) skip(desc ocispec.Descriptor) {
	t.im.mu.Lock()
	defer t.im.mu.Unlock()
	t.doneBytes += desc.Size
	t.skipped++
	t.skippedBytes += desc.Size
	t.emitLocked(BlobSkipped, desc, desc.Size)
}
