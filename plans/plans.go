// Package plans keeps saved plans in the cache: the canonical bytes of a
// plan (package plan), stored under the plan's hash with a little metadata
// (the pack ref, the tenant approvals are asked for, the save time, the
// pack manifest's size). `stella pack plan --save` saves them; `stella pack
// plans list|show` and package approve read them.
//
// # Invariants
//
// Only bytes that are exactly the RFC 8785 canonical JSON of a valid plan
// are saved (ParseCanonical), so a saved plan's key is the hash of its
// bytes. A saved plan is never changed: saving it again keeps the first
// record, whatever the new metadata says. Saved plans are never deleted.
// Readers may therefore look a plan up in one transaction and rely on it
// in a later one (package approve does, before its gate transactions).
//
// # Storage
//
// Records live in the cache index (cache.Store.Records). For compatibility
// with caches written before this package existed, when saved plans were
// part of package approve, they stay where they were: bucket "plans" of
// record namespace "approve", the index bucket approve.plans (plan hash →
// JSON record of the plan's metadata). This package reads and writes only
// that bucket of the namespace; package approve keeps its own buckets
// beside it and checks that each plan record decodes when the cache is
// verified (approve.VerifyHook).
//
// The canonical bytes are not in the record: they are a record file of
// the bucket (cache.Records.KeepStaged), named by the plan hash, written
// as they stream out of the plan (a plan of 100,000 steps is 26 MiB of
// JSON, which no step of saving holds whole), made durable before the
// record that names it is written; the record keeps their size. A record
// written by an earlier version holds the bytes inline (field
// "canonical", base64) and reads as before. Get reads the bytes whole and
// checks them again (ParseCanonical): it holds the plan parsed, ~10 times
// its bytes. Walk checks them the same way as they stream (Scan), holding
// what its caller makes of each step; Find and FindCanonical check them
// against their hash as they stream and do not parse them (ADR 0031).
// List reads only records.
package plans

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/plan"
)

// Where saved plans are kept: see the package comment.
const (
	namespace = "approve"
	bucket    = "plans"
)

const (
	// MinHashPrefix is the shortest hash prefix (hex digits) Get accepts.
	MinHashPrefix = 12
	// MaxSize bounds a plan's canonical bytes.
	MaxSize = 32 << 20
)

var (
	// ErrNotFound: no saved plan has that hash (or hash prefix), or the
	// hash given is malformed or too short a prefix.
	ErrNotFound = errors.New("plan not saved in this cache")
	// ErrAmbiguous: a hash prefix matches more than one saved plan.
	ErrAmbiguous = errors.New("plan hash prefix matches several plans")
	// ErrInvalidMeta: the Meta given to Save is malformed (tenant syntax,
	// negative pack size).
	ErrInvalidMeta = errors.New("invalid saved plan metadata")
	// ErrCorrupt: a saved plan record in the cache cannot be decoded, or
	// its bytes are not a canonical plan.
	ErrCorrupt = errors.New("saved plan record is corrupt")
)

// tenantRE is the tenant syntax of the trust store.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Meta describes a plan being saved.
type Meta struct {
	// PackRef is "<name>:<version>" of the planned pack; empty means the
	// plan's own. A value that disagrees with the plan is refused.
	PackRef string
	// Tenant is the tenant approvals of this plan are asked for, unless a
	// request names another; empty for none.
	Tenant string
	// SavedAt is the save time; zero means now. It is kept in UTC, whole
	// seconds.
	SavedAt time.Time
	// PackSize is the size of the pack's manifest (the pack digest's
	// content), which an approval request's subject descriptor needs. The
	// caller knows it when it derived the digest (artifact.Build); zero means
	// unknown, and requests then need the pack in the cache.
	PackSize int64
}

// Saved is a plan saved in the cache.
type Saved struct {
	Hash      digest.Digest
	PackRef   string
	Pack      plan.PackRef
	Tenant    string
	SavedAt   time.Time
	PackSize  int64
	Size      int64           // bytes of the canonical plan
	Approvals []plan.Approval // the plan's approval gates
	// Canonical and Plan are set by Get and Save, not by List;
	// SaveStreamed sets neither, SavePlan sets Plan (the plan it was given).
	Canonical []byte
	Plan      *plan.Plan
}

// record is the stored form of a saved plan. Its JSON is the on-disk
// format of approve.plans: do not rename fields.
type record struct {
	PackRef   string          `json:"packRef"`
	Pack      plan.PackRef    `json:"pack"`
	Tenant    string          `json:"tenant"`
	SavedAt   time.Time       `json:"savedAt"`
	PackSize  int64           `json:"packSize"`
	Approvals []plan.Approval `json:"approvals"`
	// Canonical holds the bytes inline: records of earlier versions.
	Canonical []byte `json:"canonical,omitempty"`
	// Size is set, and Canonical empty, when the bytes are the record
	// file of the plan hash (see the package comment).
	Size int64 `json:"size,omitempty"`
}

// inFile reports a record whose bytes are in its record file.
func (r *record) inFile() bool { return r.Canonical == nil && r.Size > 0 }

func (r *record) size() int64 {
	if r.inFile() {
		return r.Size
	}
	return int64(len(r.Canonical))
}

func (r *record) saved(h digest.Digest) *Saved {
	return &Saved{Hash: h, PackRef: r.PackRef, Pack: r.Pack, Tenant: r.Tenant, SavedAt: r.SavedAt,
		PackSize: r.PackSize, Size: r.size(), Approvals: slices.Clone(r.Approvals)}
}

// ParseCanonical parses plan bytes that must be exactly the canonical JSON
// of a plan: at most MaxSize bytes, plan.Parse accepts them, its steps
// nest less than plan.MaxStepDepth levels deep, re-encoding
// the parsed plan gives the same bytes (so they are RFC 8785 canonical:
// the encoding is), and the pack digest is a sha256 digest. It returns the
// plan and its hash; every refusal wraps plan.ErrInvalid. It holds the
// bytes and their parse, not a second copy or tree of either.
func ParseCanonical(b []byte) (*plan.Plan, digest.Digest, error) {
	if len(b) > MaxSize {
		return nil, "", fmt.Errorf("plan of %d bytes exceeds %d: %w", len(b), MaxSize, plan.ErrInvalid)
	}
	pl, err := plan.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, "", err
	}
	if err := plan.CheckDepth(pl); err != nil {
		return nil, "", err
	}
	h := plan.HashBytes(b)
	same := &sameWriter{want: b}
	if err := pl.WriteCanonical(same); err != nil || !same.equal() {
		return nil, "", fmt.Errorf("plan %s: %w: bytes are not the canonical JSON of the plan they decode to (RFC 8785)", h, plan.ErrInvalid)
	}
	if err := integrity.CheckSHA256(pl.Pack.Digest); err != nil {
		return nil, "", fmt.Errorf("plan %s: %w: pack digest: %v", h, plan.ErrInvalid, err)
	}
	return pl, h, nil
}

// sameWriter compares what is written to it with want.
type sameWriter struct {
	want []byte
	n    int
	diff bool
}

func (w *sameWriter) Write(p []byte) (int, error) {
	if !w.diff && (len(p) > len(w.want)-w.n || !bytes.Equal(p, w.want[w.n:w.n+len(p)])) {
		w.diff = true
	}
	w.n += len(p)
	return len(p), nil
}

// equal reports whether exactly want was written.
func (w *sameWriter) equal() bool { return !w.diff && w.n == len(w.want) }

// Save stores the canonical plan bytes in the cache under their hash.
// Bytes that are not exactly a canonical plan, and a PackRef of another
// pack, are refused (plan.ErrInvalid); malformed metadata with
// ErrInvalidMeta. Saving a plan already saved changes nothing and returns
// the saved record. It holds the plan twice (the bytes and their parse):
// SaveStreamed and SavePlan save a plan being built without holding its
// bytes.
func Save(ctx context.Context, st *cache.Store, canonical []byte, meta Meta) (*Saved, error) {
	pl, h, err := ParseCanonical(canonical)
	if err != nil {
		return nil, err
	}
	rec, err := newRecord("plan "+string(h), pl.Pack, pl.Approvals, meta)
	if err != nil {
		return nil, err
	}
	_, rec, _, err = store(ctx, st, rec, func(w io.Writer) error {
		_, err := w.Write(canonical)
		return err
	})
	if err != nil {
		return nil, err
	}
	sp := rec.saved(h)
	sp.Size = int64(len(canonical))
	sp.Canonical = slices.Clone(canonical)
	sp.Plan = pl
	return sp, nil
}

// SaveStreamed saves the plan `stella pack plan` builds
// (plan.BuildStreamed) as Save saves its canonical bytes, written into the
// cache as they stream out of the plan (plan.Streamed.WriteCanonical) and
// hashed as they are written: neither the bytes nor the expanded steps are
// held. The bytes are canonical by construction (package plan holds
// WriteCanonical equal to canonical.Marshal), and Get checks them again
// whole when it reads them. Refusals are Save's: a PackRef of another
// pack, a pack digest that is not sha256, or more than MaxSize bytes
// (plan.ErrInvalid), malformed metadata (ErrInvalidMeta). The result has
// neither Canonical nor Plan.
func SaveStreamed(ctx context.Context, st *cache.Store, pl *plan.Streamed, meta Meta) (*Saved, error) {
	return saveWritten(ctx, st, pl.Pack(), pl.Approvals(), pl.WriteCanonical, meta)
}

// SavePlan is SaveStreamed for a plan held whole (plan.Build: `stella pack
// run` saves the plan it runs). The result's Plan is pl.
func SavePlan(ctx context.Context, st *cache.Store, pl *plan.Plan, meta Meta) (*Saved, error) {
	sp, err := saveWritten(ctx, st, pl.Pack, pl.Approvals, pl.WriteCanonical, meta)
	if err != nil {
		return nil, err
	}
	sp.Plan = pl
	return sp, nil
}

func saveWritten(ctx context.Context, st *cache.Store, pack plan.PackRef, approvals []plan.Approval, write func(io.Writer) error, meta Meta) (*Saved, error) {
	if err := integrity.CheckSHA256(pack.Digest); err != nil {
		return nil, fmt.Errorf("plan of %s:%s: %w: pack digest: %v", pack.Name, pack.Version, plan.ErrInvalid, err)
	}
	rec, err := newRecord("plan of "+pack.Name+":"+pack.Version, pack, approvals, meta)
	if err != nil {
		return nil, err
	}
	h, rec, n, err := store(ctx, st, rec, func(w io.Writer) error {
		return write(&limitWriter{w: w, n: MaxSize})
	})
	if err != nil {
		return nil, err
	}
	sp := rec.saved(h)
	sp.Size = n
	return sp, nil
}

// store saves the plan whose canonical bytes write writes, with the
// metadata of rec, and returns its hash, its record and its size. The bytes are
// staged in the cache (hashed as they are written), the saved record of
// that hash read: one written by an earlier version (bytes inline) is
// kept as it is. Otherwise the staged bytes become the record file of the
// hash, durable before the record is written, and the record is written
// unless a save meanwhile wrote one, which is kept. A saved record whose
// record file is missing (damage) gets it back this way.
func store(ctx context.Context, st *cache.Store, rec record, write func(io.Writer) error) (digest.Digest, record, int64, error) {
	stage, err := st.Stage(ctx)
	if err != nil {
		return "", record{}, 0, err
	}
	defer stage.Close()
	h, n, err := stageWritten(ctx, stage, write)
	if err != nil {
		return "", record{}, 0, err
	}
	recs := st.Records(namespace)
	var head recordHead
	var found bool
	if err := recs.View(ctx, func(tx cache.RecordTx) error {
		found, err = getHead(tx, string(h), &head)
		return err
	}); err != nil {
		return "", record{}, 0, err
	}
	if found && head.Canonical.n > 0 {
		return h, head.record, n, nil
	}
	if err := recs.KeepStaged(ctx, stage, bucket, h, n); err != nil {
		return "", record{}, 0, err
	}
	rec.Size = n
	err = recs.Update(ctx, func(tx cache.RecordTx) error {
		var old recordHead
		found, err := getHead(tx, string(h), &old)
		if err != nil {
			return err
		}
		if found {
			rec = old.record
			return nil
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return tx.Put(bucket, []byte(h), raw)
	})
	if err != nil {
		return "", record{}, 0, err
	}
	return h, rec, n, nil
}

// stageWritten stages what write writes, read through a pipe, and returns
// its digest and size. An error of write is returned as it is.
func stageWritten(ctx context.Context, stage *cache.Stage, write func(io.Writer) error) (digest.Digest, int64, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(write(pw)) // nil: the reader sees io.EOF
	}()
	d, n, err := stage.Add(ctx, "plan", pr)
	// Unblocks write when Add stopped reading early.
	pr.CloseWithError(errStaged)
	<-done
	return d, n, err
}

// errStaged ends a write into a stage that stopped reading.
var errStaged = errors.New("plan staging stopped")

// limitWriter refuses to write more than n bytes in all.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("plan of more than %d bytes: %w", MaxSize, plan.ErrInvalid)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// newRecord checks meta against the plan's pack and makes the record of
// a plan to save; what names the plan in errors.
func newRecord(what string, pack plan.PackRef, approvals []plan.Approval, meta Meta) (record, error) {
	own := pack.Name + ":" + pack.Version
	if meta.PackRef == "" {
		meta.PackRef = own
	}
	if meta.PackRef != own {
		return record{}, fmt.Errorf("%s is of pack %s, not %s: %w", what, own, meta.PackRef, plan.ErrInvalid)
	}
	if meta.Tenant != "" && !tenantRE.MatchString(meta.Tenant) {
		return record{}, fmt.Errorf("tenant %q: %w: letters, digits, '.', '_' and '-', at most 128", meta.Tenant, ErrInvalidMeta)
	}
	if meta.PackSize < 0 {
		return record{}, fmt.Errorf("pack size %d: %w", meta.PackSize, ErrInvalidMeta)
	}
	savedAt := meta.SavedAt
	if savedAt.IsZero() {
		savedAt = time.Now()
	}
	return record{PackRef: meta.PackRef, Pack: pack, Tenant: meta.Tenant, SavedAt: savedAt.UTC().Truncate(time.Second),
		PackSize: meta.PackSize, Approvals: approvals}, nil
}

// List returns the saved plans, sorted by pack ref, then save time, then
// hash. Canonical and Plan are not set. ErrCorrupt: a record cannot be
// decoded.
func List(ctx context.Context, st *cache.Store) ([]Saved, error) {
	var out []Saved
	err := st.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		return tx.ForEach(bucket, nil, func(k, _ []byte) error {
			var r record
			if _, err := get(tx, string(k), &r); err != nil {
				return err
			}
			out = append(out, *r.saved(digest.Digest(k)))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Saved) int {
		if c := strings.Compare(a.PackRef, b.PackRef); c != 0 {
			return c
		}
		if c := a.SavedAt.Compare(b.SavedAt); c != 0 {
			return c
		}
		return strings.Compare(string(a.Hash), string(b.Hash))
	})
	return out, nil
}

// Get returns the saved plan with hash h: a full "sha256:<hex>" hash, or a
// unique prefix of at least MinHashPrefix lowercase hex digits (with or
// without "sha256:"), with Canonical and Plan set. ErrNotFound names the
// hash; ErrAmbiguous a prefix that matches several plans; ErrCorrupt a
// record that cannot be decoded or whose bytes are not a canonical plan.
// It holds the plan twice (its bytes and their parse: ~20 times the bytes
// for a plan of many steps); Find does not.
func Get(ctx context.Context, st *cache.Store, h string) (*Saved, error) {
	sp, r, err := lookup(ctx, st, h)
	if err != nil {
		return nil, err
	}
	sp.Canonical = slices.Clone(r.Canonical)
	if r.inFile() {
		if sp.Canonical, err = readFile(ctx, st, sp.Hash, r.Size); err != nil {
			return nil, fmt.Errorf("saved plan %s: %w: %v", sp.Hash, ErrCorrupt, err)
		}
	}
	pl, _, err := ParseCanonical(sp.Canonical)
	if err != nil {
		return nil, fmt.Errorf("saved plan %s: %w: %w", sp.Hash, ErrCorrupt, err)
	}
	sp.Plan = pl
	return sp, nil
}

// Find returns the saved plan with hash h as Get does, with what its
// record holds (Canonical and Plan are not set), after reading its bytes
// through once, checked against the hash and size and not held: for
// callers that need the plan's gates, pack and tenant and not its steps,
// at any size of plan. The bytes were checked to be a canonical plan when
// they were saved (Save, SaveStreamed); a record of an earlier version,
// whose bytes are inline, is checked as Get checks it. Its errors are
// Get's.
func Find(ctx context.Context, st *cache.Store, h string) (*Saved, error) {
	return find(ctx, st, h, false)
}

// FindCanonical is Find with Canonical set: the plan's bytes, checked
// against the hash and size, not parsed again (see Find). For callers
// that pass the bytes on, as an approval request does.
func FindCanonical(ctx context.Context, st *cache.Store, h string) (*Saved, error) {
	return find(ctx, st, h, true)
}

func find(ctx context.Context, st *cache.Store, h string, keep bool) (*Saved, error) {
	sp, r, err := lookup(ctx, st, h)
	if err != nil {
		return nil, err
	}
	if !r.inFile() {
		if _, _, err := ParseCanonical(r.Canonical); err != nil {
			return nil, fmt.Errorf("saved plan %s: %w: %w", sp.Hash, ErrCorrupt, err)
		}
		if keep {
			sp.Canonical = slices.Clone(r.Canonical)
		}
		return sp, nil
	}
	if keep {
		sp.Canonical, err = readFile(ctx, st, sp.Hash, r.Size)
	} else {
		var rc io.ReadCloser
		if rc, err = openFile(ctx, st, sp.Hash, r.Size); err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("saved plan %s: %w: %v", sp.Hash, ErrCorrupt, err)
	}
	return sp, nil
}

// lookup finds the record of plan h (see Get) and returns it with the
// Saved it describes, without the plan's bytes.
func lookup(ctx context.Context, st *cache.Store, h string) (*Saved, record, error) {
	hex := strings.TrimPrefix(h, string(digest.SHA256)+":")
	if len(hex) < MinHashPrefix || len(hex) > 64 || !integrity.IsLowerHex(hex) {
		return nil, record{}, fmt.Errorf("plan %q: %w (give the plan hash or at least %d of its lowercase hex digits)", h, ErrNotFound, MinHashPrefix)
	}
	prefix := []byte(string(digest.SHA256) + ":" + hex)
	var sp *Saved
	var r record
	err := st.Records(namespace).View(ctx, func(tx cache.RecordTx) error {
		var found []string
		if err := tx.ForEach(bucket, prefix, func(k, _ []byte) error {
			found = append(found, string(k))
			return nil
		}); err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("plan %s: %w", h, ErrNotFound)
		case 1:
		default:
			return fmt.Errorf("plan %s: %w: %s", h, ErrAmbiguous, strings.Join(found, ", "))
		}
		if _, err := get(tx, found[0], &r); err != nil {
			return err
		}
		sp = r.saved(digest.Digest(found[0]))
		return nil
	})
	if err != nil {
		return nil, record{}, err
	}
	return sp, r, nil
}

// readFile reads the record file of plan h, size bytes, checked against
// its hash and size as it is read.
func readFile(ctx context.Context, st *cache.Store, h digest.Digest, size int64) ([]byte, error) {
	rc, err := openFile(ctx, st, h, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return integrity.ReadAll(rc, ocispec.Descriptor{Digest: h, Size: size}, MaxSize)
}

// openFile opens the record file of plan h, size bytes, checked against
// its hash and size as it is read (the last read fails when they differ).
func openFile(ctx context.Context, st *cache.Store, h digest.Digest, size int64) (io.ReadCloser, error) {
	if size > MaxSize {
		return nil, fmt.Errorf("record of %d bytes exceeds %d", size, MaxSize)
	}
	return st.Records(namespace).OpenFile(ctx, bucket, h, size)
}

// recordHead is a record read without its inline bytes (a record of an
// earlier version): only their size is kept, in Canonical and in
// record.Size, so that saving a plan saved that way again does not hold
// them.
type recordHead struct {
	record
	Canonical inlineSize `json:"canonical"`
}

// inlineSize is the size of inline bytes (base64 in a JSON string),
// decoded as a stream to count and check them without holding them.
type inlineSize struct{ n int64 }

func (s *inlineSize) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' || bytes.IndexByte(b[1:len(b)-1], '\\') >= 0 {
		return errors.New("canonical: not a base64 string")
	}
	n, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b[1:len(b)-1])))
	if err != nil {
		return fmt.Errorf("canonical: %v", err)
	}
	s.n = n
	return nil
}

// getHead is get into a recordHead.
func getHead(tx cache.RecordTx, key string, r *recordHead) (bool, error) {
	raw := tx.Get(bucket, []byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, r); err != nil {
		return false, fmt.Errorf("record %s.%s/%s: %w: %v", namespace, bucket, key, ErrCorrupt, err)
	}
	if r.Canonical.n > 0 {
		r.record.Size = 0
	}
	return true, nil
}

// get reads the record of key; a missing bucket or key is (false, nil).
func get(tx cache.RecordTx, key string, r *record) (bool, error) {
	raw := tx.Get(bucket, []byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, r); err != nil {
		return false, fmt.Errorf("record %s.%s/%s: %w: %v", namespace, bucket, key, ErrCorrupt, err)
	}
	return true, nil
}

// Scan reads the bytes of plan want from r with plan.Scan, without
// holding its steps, and checks them as ParseCanonical checks bytes held
// whole: refusals wrap plan.ErrInvalid. The caller checks that the bytes
// r gives hash to want (an integrity.Reader does, at its end); Scan checks
// that the plan they decode to has that hash too, so the bytes are
// exactly its canonical JSON. What emit is given is the plan's only when
// Scan returns no error (and the caller's check passes).
func Scan[T any](r io.Reader, want digest.Digest, visit func(s *plan.Step, depth int) T, emit func(T)) (*plan.Plan, error) {
	pl, h, err := plan.Scan(r, visit, emit)
	if err != nil {
		return nil, err
	}
	if h != want {
		return nil, fmt.Errorf("plan %s: %w: bytes are not the canonical JSON of the plan they decode to (RFC 8785)", want, plan.ErrInvalid)
	}
	if err := integrity.CheckSHA256(pl.Pack.Digest); err != nil {
		return nil, fmt.Errorf("plan %s: %w: pack digest: %v", want, plan.ErrInvalid, err)
	}
	return pl, nil
}

// Walk returns the saved plan with hash h as Find does, and reads its
// bytes once with Scan, checking them as Get does without holding them
// or its steps: the plan without its steps (Steps is nil) is returned
// beside the record, and each step is visited and emitted as plan.Scan
// says. What emit is given is the saved plan's only when Walk returns no
// error. Its errors are Get's.
func Walk[T any](ctx context.Context, st *cache.Store, h string, visit func(s *plan.Step, depth int) T, emit func(T)) (*Saved, *plan.Plan, error) {
	sp, r, err := lookup(ctx, st, h)
	if err != nil {
		return nil, nil, err
	}
	var rc io.ReadCloser = io.NopCloser(bytes.NewReader(r.Canonical))
	if r.inFile() {
		if rc, err = openFile(ctx, st, sp.Hash, r.Size); err != nil {
			return nil, nil, fmt.Errorf("saved plan %s: %w: %v", sp.Hash, ErrCorrupt, err)
		}
	} else if len(r.Canonical) > MaxSize || plan.HashBytes(r.Canonical) != sp.Hash {
		return nil, nil, fmt.Errorf("saved plan %s: %w: %d bytes hashing to %s", sp.Hash, ErrCorrupt, len(r.Canonical), plan.HashBytes(r.Canonical))
	}
	defer rc.Close()
	pl, err := Scan(rc, sp.Hash, visit, emit)
	// The rest: nothing, if the bytes are the plan. Reading to the end
	// checks that they hash to it: bytes that do not are reported as
	// such, whatever Scan made of them.
	if _, cerr := io.Copy(io.Discard, rc); cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("saved plan %s: %w: %w", sp.Hash, ErrCorrupt, err)
	}
	return sp, pl, nil
}

// WriteCanonical writes the bytes of saved plan sp (from Find or Walk) to
// w, checked against its hash and size as they are read: the last write
// is followed by an error when they differ.
func WriteCanonical(ctx context.Context, st *cache.Store, sp *Saved, w io.Writer) error {
	sp2, r, err := lookup(ctx, st, sp.Hash.String())
	if err != nil {
		return err
	}
	if !r.inFile() {
		if plan.HashBytes(r.Canonical) != sp2.Hash {
			return fmt.Errorf("saved plan %s: %w: its bytes hash to %s", sp2.Hash, ErrCorrupt, plan.HashBytes(r.Canonical))
		}
		_, err := w.Write(r.Canonical)
		return err
	}
	rc, err := openFile(ctx, st, sp2.Hash, r.Size)
	if err != nil {
		return fmt.Errorf("saved plan %s: %w: %v", sp2.Hash, ErrCorrupt, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("saved plan %s: %w", sp2.Hash, err)
	}
	return nil
}
