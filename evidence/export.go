package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
)

// PredicateType is the in-toto predicate type of a run statement (the
// stella.ops/packRun@v1 predicate of ADR 0011); its predicate is a
// Predicate.
const PredicateType = "https://stellaops.io/attestations/pack-run/v1"

// Titles of the parts.
const (
	PartPlan      = "plan.json"
	PartInputs    = "inputs.lock.json"
	PartRun       = "run.json"
	PartLog       = "log.ndjson"
	PartLedger    = "approvals/ledger.json"
	PartStatement = "statement.dsse.json"
	// PartBundle names the bundle file itself in a PartError.
	PartBundle = "bundle"
	// PartManifest names the evidence manifest in a PartError.
	PartManifest = "manifest"
	// SubjectPack names the pack manifest among the statement's subjects.
	SubjectPack = "pack"

	outputsPrefix   = "outputs/"
	approvalsPrefix = "approvals/"
)

// Predicate is the signed summary of the run.
type Predicate struct {
	RunID         string        `json:"runId"`
	Tenant        string        `json:"tenant"`
	Pack          plan.PackRef  `json:"pack"`
	PlanHash      digest.Digest `json:"planHash"`
	State         string        `json:"state"`
	Partial       bool          `json:"partial"`
	StellaVersion string        `json:"stellaVersion"`
	Sealed        bool          `json:"sealed"`
}

// RunDoc is the run.json part.
type RunDoc struct {
	RunID       string        `json:"runId"`
	Tenant      string        `json:"tenant"`
	Pack        plan.PackRef  `json:"pack"`
	PlanHash    digest.Digest `json:"planHash"`
	State       string        `json:"state"`
	Partial     bool          `json:"partial"`
	Created     time.Time     `json:"created"`
	Updated     time.Time     `json:"updated"`
	Ended       *time.Time    `json:"ended,omitempty"`
	Failure     *run.Failure  `json:"failure,omitempty"`
	Relaxations []string      `json:"relaxations"`
	Host        Host          `json:"host"`
	Steps       []Step        `json:"steps"`
	Timeline    []run.Event   `json:"timeline"`
	// Expansions are what deferred maps and loops were expanded into at
	// run time (their gates count as the plan's).
	Expansions map[string]plan.Expansion `json:"expansions"`
	// Outputs are the digests of the run's output values (spec.outputs
	// with from): sha256 of each value's canonical JSON.
	Outputs map[string]digest.Digest `json:"outputs"`
	// Files are the files named by spec.outputs[].path.
	Files []File `json:"files"`
}

// Host is what the exporting host says of itself.
type Host struct {
	StellaVersion string `json:"stellaVersion"`
	Sealed        bool   `json:"sealed"`
}

// Step is what evidence keeps of one expanded step.
type Step struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	State     string          `json:"state"`
	Attempts  int             `json:"attempts"`
	Exit      *int            `json:"exit,omitempty"`
	Signal    string          `json:"signal,omitempty"`
	Started   *time.Time      `json:"started,omitempty"`
	Ended     *time.Time      `json:"ended,omitempty"`
	Error     string          `json:"error,omitempty"`
	Gate      *run.GateRecord `json:"gate,omitempty"`
	Isolation *run.Isolation  `json:"isolation,omitempty"`
	Secrets   []run.SecretUse `json:"secrets,omitempty"`
	// Outputs are the digests of the step's outputs: sha256 of each
	// value's canonical JSON.
	Outputs map[string]digest.Digest `json:"outputs"`
}

// File is one file named by spec.outputs[].path: its part, or Missing
// when the run did not produce it.
type File struct {
	Name    string        `json:"name"`
	Path    string        `json:"path"`
	Part    string        `json:"part,omitempty"`
	Digest  digest.Digest `json:"digest,omitempty"`
	Size    int64         `json:"size"`
	Missing bool          `json:"missing,omitempty"`
}

// InputsLock is the inputs.lock.json part: resolved inputs and the secret
// references, never a secret value nor any part of one.
type InputsLock struct {
	PlanHash digest.Digest  `json:"planHash"`
	Inputs   map[string]any `json:"inputs"`
	Secrets  []SecretRef    `json:"secrets"`
}

// SecretRef is a secret's metadata.
type SecretRef struct {
	Name     string   `json:"name"`
	Scope    string   `json:"scope"`
	Source   string   `json:"source"`
	Required bool     `json:"required"`
	Steps    []string `json:"steps"`
}

// Ledger is the approvals/ledger.json part: the contiguous run of ledger
// entries from the first to the last about this run's plan and gates, and
// the head they end at.
type Ledger struct {
	Entries []approve.Entry `json:"entries"`
	Head    Head            `json:"head"`
}

// Head names the last ledger entry carried.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// OutputFile is a file named by spec.outputs[].path, as read from the
// run's work folder (Data nil and Missing when it is not there).
type OutputFile struct {
	Name    string
	Path    string
	Data    []byte
	Missing bool
}

// Input is everything Build needs; the caller gathers it from the cache
// and the run's folder.
type Input struct {
	Record *run.Record
	// Live: a runner holds the run's lock.
	Live bool
	// Partial allows a run in progress; the evidence then says it is partial.
	Partial bool
	// Plan is the run's canonical plan; it must hash to the run's plan hash.
	Plan []byte
	// Pack is the pack manifest's descriptor (the artifact's subject).
	Pack ocispec.Descriptor
	// Log is the run's log, redacted as stored, long records filled in.
	Log     []run.Line
	Outputs []OutputFile
	// Approvals are the decisions accepted for the run's gates.
	Approvals []approve.Recorded
	// Ledger is the whole approvals ledger, in order; Build keeps the
	// entries from the first to the last about this run's plan.
	Ledger        []approve.Entry
	StellaVersion string
	Sealed        bool
	Signer        *keys.Pair
}

// Part is one part of built evidence.
type Part struct {
	Title     string
	MediaType string
	Data      []byte
}

// Evidence is built evidence, held in memory until it is written.
type Evidence struct {
	Predicate Predicate
	Parts     []Part // in layer order, the statement last
	Pack      ocispec.Descriptor
	Created   time.Time
}

// Build assembles and signs the evidence of a run. It refuses a run in
// progress (ErrRunInProgress) unless in.Partial, a plan that does not
// hash to the run's plan hash (plan.ErrHashMismatch), and a missing signer.
func Build(ctx context.Context, in Input) (*Evidence, error) {
	rec := in.Record
	if rec == nil || in.Signer == nil {
		return nil, fmt.Errorf("evidence: a run record and a signer are required")
	}
	partial := in.Live || !run.Terminal(rec.State)
	if partial && !in.Partial {
		return nil, fmt.Errorf("run %s is %s: %w", rec.ID, stateNote(rec.State, in.Live), ErrRunInProgress)
	}
	pl, h, err := plan.Parse(in.Plan)
	if err != nil {
		return nil, err
	}
	if h != rec.PlanHash {
		return nil, fmt.Errorf("plan of run %s hashes to %s, the run records %s: %w", rec.ID, h, rec.PlanHash, plan.ErrHashMismatch)
	}
	if in.Pack.Digest != rec.Pack.Digest || in.Pack.Size <= 0 {
		return nil, fmt.Errorf("pack manifest %s (%d bytes) is not the run's pack %s: %w", in.Pack.Digest, in.Pack.Size, rec.Pack.Digest, ErrInconsistent)
	}

	ev := &Evidence{Pack: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: in.Pack.Digest, Size: in.Pack.Size}}
	ev.Created = rec.Updated.UTC()
	if rec.Ended != nil {
		ev.Created = rec.Ended.UTC()
	}
	add := func(title, mt string, data []byte) {
		ev.Parts = append(ev.Parts, Part{Title: title, MediaType: mt, Data: data})
	}
	addJSON := func(title, mt string, v any) error {
		b, err := canonical.Marshal(v)
		if err != nil {
			return fmt.Errorf("evidence %s: %w", title, err)
		}
		add(title, mt, b)
		return nil
	}

	add(PartPlan, artifact.MediaTypePlan, in.Plan)

	lock := InputsLock{PlanHash: h, Inputs: orEmptyMap(rec.Inputs), Secrets: []SecretRef{}}
	for _, s := range pl.Secrets {
		lock.Secrets = append(lock.Secrets, SecretRef{Name: s.Name, Scope: s.Scope, Source: s.Source, Required: s.Required, Steps: orEmptyList(s.Steps)})
	}
	if err := addJSON(PartInputs, artifact.MediaTypeEvidenceInputs, lock); err != nil {
		return nil, err
	}

	doc, err := runDoc(rec, partial, in)
	if err != nil {
		return nil, err
	}
	files := doc.Files
	if err := addJSON(PartRun, artifact.MediaTypeEvidenceRun, doc); err != nil {
		return nil, err
	}

	var log []byte
	for i := range in.Log {
		l := in.Log[i]
		if l.Data != nil {
			return nil, fmt.Errorf("log record %d of run %s: text not filled in from log.data: %w", i+1, rec.ID, ErrInvalid)
		}
		log = append(l.AppendJSON(log), '\n')
	}
	add(PartLog, artifact.MediaTypeEvidenceLog, log)

	for i, f := range files {
		if !f.Missing {
			add(f.Part, artifact.MediaTypeEvidenceOutput, in.Outputs[i].Data)
		}
	}

	apps := sortedApprovals(in.Approvals)
	for i, a := range apps {
		add(fmt.Sprintf("%s%03d.dsse.json", approvalsPrefix, i+1), artifact.MediaTypeDSSE, a.Envelope)
	}
	if err := addJSON(PartLedger, artifact.MediaTypeEvidenceLedger, ledgerRange(in.Ledger, rec, Gates(pl, rec.Expansions))); err != nil {
		return nil, err
	}

	ev.Predicate = Predicate{RunID: rec.ID, Tenant: rec.Tenant, Pack: rec.Pack, PlanHash: rec.PlanHash, State: rec.State,
		Partial: partial, StellaVersion: in.StellaVersion, Sealed: in.Sealed}
	subjects := []keys.Subject{}
	sub, err := keys.NewSubject(SubjectPack, ev.Pack.Digest)
	if err != nil {
		return nil, err
	}
	subjects = append(subjects, sub)
	for _, p := range ev.Parts {
		sub, err := keys.NewSubject(p.Title, digest.FromBytes(p.Data))
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, sub)
	}
	st, err := keys.NewStatement(PredicateType, ev.Predicate, subjects...)
	if err != nil {
		return nil, err
	}
	env, err := in.Signer.SignStatement(ctx, st)
	if err != nil {
		return nil, err
	}
	add(PartStatement, artifact.MediaTypeDSSE, env)
	return ev, nil
}

func stateNote(state string, live bool) string {
	if live {
		return state + " (its runner is alive)"
	}
	return state
}

// runDoc is the run.json of rec, with the output files' parts and digests.
func runDoc(rec *run.Record, partial bool, in Input) (*RunDoc, error) {
	doc := &RunDoc{RunID: rec.ID, Tenant: rec.Tenant, Pack: rec.Pack, PlanHash: rec.PlanHash, State: rec.State,
		Partial: partial, Created: rec.Created.UTC(), Updated: rec.Updated.UTC(), Ended: utcPtr(rec.Ended),
		Failure: rec.Failure, Relaxations: orEmptyList(rec.Relaxations),
		Host:       Host{StellaVersion: in.StellaVersion, Sealed: in.Sealed},
		Steps:      []Step{},
		Timeline:   orEmptyEvents(rec.Timeline),
		Expansions: rec.Expansions,
		Files:      []File{},
	}
	if doc.Expansions == nil {
		doc.Expansions = map[string]plan.Expansion{}
	}
	var err error
	if doc.Outputs, err = valueDigests(rec.Outputs); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(rec.Steps))
	for id := range rec.Steps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := rec.Steps[id]
		outs, err := valueDigests(s.Outputs)
		if err != nil {
			return nil, err
		}
		doc.Steps = append(doc.Steps, Step{ID: s.ID, Kind: s.Kind, State: s.State, Attempts: s.Attempts, Exit: s.Exit,
			Signal: s.Signal, Started: utcPtr(s.Started), Ended: utcPtr(s.Ended), Error: s.Error, Gate: s.Gate,
			Isolation: s.Isolation, Secrets: s.Secrets, Outputs: outs})
	}
	seen := map[string]bool{}
	for _, f := range in.Outputs {
		if !fs.ValidPath(f.Path) || f.Path == "." {
			return nil, fmt.Errorf("output %s: path %q is not a relative path inside the work folder: %w", f.Name, f.Path, ErrOutputInvalid)
		}
		part := outputsPrefix + f.Path
		if seen[part] {
			return nil, fmt.Errorf("output %s: path %s named twice: %w", f.Name, f.Path, ErrOutputInvalid)
		}
		seen[part] = true
		df := File{Name: f.Name, Path: f.Path, Missing: f.Missing}
		if !f.Missing {
			df.Part, df.Digest, df.Size = part, digest.FromBytes(f.Data), int64(len(f.Data))
		}
		doc.Files = append(doc.Files, df)
	}
	return doc, nil
}

// valueDigests maps each name to the sha256 of its value's canonical JSON.
func valueDigests(m map[string]any) (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	for k, v := range m {
		b, err := canonical.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", k, err)
		}
		out[k] = digest.FromBytes(b)
	}
	return out, nil
}

// sortedApprovals orders decisions by gate, then as accepted.
func sortedApprovals(in []approve.Recorded) []approve.Recorded {
	out := append([]approve.Recorded(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Gate != out[j].Gate {
			return out[i].Gate < out[j].Gate
		}
		if !out[i].Imported.Equal(out[j].Imported) {
			return out[i].Imported.Before(out[j].Imported)
		}
		return out[i].Response < out[j].Response
	})
	return out
}

// Gates are the approval gates of a run: the plan's, and those of the
// deferred maps and loops it expanded, in the order of the expanded steps'
// ids.
func Gates(pl *plan.Plan, exps map[string]plan.Expansion) []plan.Approval {
	out := append([]plan.Approval(nil), pl.Approvals...)
	ids := make([]string, 0, len(exps))
	for id := range exps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		out = append(out, exps[id].Approvals...)
	}
	return out
}

// ledgerRange keeps the entries from the first to the last about the
// run's tenant, plan hash and gates.
func ledgerRange(all []approve.Entry, rec *run.Record, approvals []plan.Approval) Ledger {
	gates := map[string]bool{}
	for _, a := range approvals {
		gates[a.Gate] = true
	}
	first, last := -1, -1
	for i, e := range all {
		if e.Tenant == rec.Tenant && e.PlanHash == rec.PlanHash && gates[e.Gate] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	l := Ledger{Entries: []approve.Entry{}}
	if first < 0 {
		return l
	}
	l.Entries = append(l.Entries, all[first:last+1]...)
	l.Head = Head{Seq: all[last].Seq, Hash: all[last].Hash}
	return l
}

// manifest returns the evidence manifest and an in-memory store of it and
// its blobs.
func (ev *Evidence) manifest() (ocispec.Descriptor, artifact.Blobs, error) {
	src := artifact.Blobs{}
	cfg := ocispec.DescriptorEmptyJSON
	cfg = ocispec.Descriptor{MediaType: cfg.MediaType, Digest: cfg.Digest, Size: cfg.Size}
	src[cfg.Digest] = []byte("{}")
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypeEvidence,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{},
		Subject:      &ev.Pack,
		Annotations: map[string]string{
			artifact.AnnotationCreated: ev.Created.UTC().Format(time.RFC3339),
		},
	}
	for _, p := range ev.Parts {
		d := src.Add(p.MediaType, p.Data)
		d.Annotations = map[string]string{artifact.AnnotationTitle: p.Title}
		m.Layers = append(m.Layers, d)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc := src.Add(ocispec.MediaTypeImageManifest, mb)
	desc.ArtifactType = artifact.ArtifactTypeEvidence
	return desc, src, nil
}

// Descriptor is the evidence manifest's descriptor.
func (ev *Evidence) Descriptor() (ocispec.Descriptor, error) {
	d, _, err := ev.manifest()
	return d, err
}

// Storage is the evidence as a read-only content store (its manifest,
// config and parts; Predecessors names the manifest as its blobs'), for
// pushing it to a registry (mirror.Push), and the manifest's descriptor.
func (ev *Evidence) Storage(ctx context.Context) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	desc, src, err := ev.manifest()
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src[desc.Digest], &m); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	st := memory.New()
	// The store keys content by media type too: each blob as the manifest
	// names it, the manifest last.
	for _, d := range append(append([]ocispec.Descriptor{m.Config}, m.Layers...), desc) {
		if ok, err := st.Exists(ctx, d); err != nil || ok {
			continue
		}
		if err := st.Push(ctx, d, bytes.NewReader(src[d.Digest])); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
	}
	return desc, st, nil
}

// Write writes the evidence as a bundle file at path (package bundle:
// atomic, deterministic), split into volumes of at most split bytes when
// split > 0.
func (ev *Evidence) Write(ctx context.Context, path string, split int64, progress func(done, total int64)) (bundle.Summary, error) {
	desc, src, err := ev.manifest()
	if err != nil {
		return bundle.Summary{}, err
	}
	entries := []bundle.Entry{{Descriptor: desc, Kind: artifact.KindEvidence}}
	opts := bundle.WriteOptions{Progress: progress}
	if split > 0 {
		return bundle.WriteSplit(ctx, path, split, src, entries, opts)
	}
	return bundle.WriteFile(ctx, path, src, entries, opts)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func orEmptyEvents(l []run.Event) []run.Event {
	out := make([]run.Event, len(l))
	for i, e := range l {
		e.Time = e.Time.UTC()
		out[i] = e
	}
	return out
}

// isOutputPart reports whether title names an output file's part.
func isOutputPart(title string) bool { return strings.HasPrefix(title, outputsPrefix) }

// isApprovalPart reports whether title names an approval envelope.
func isApprovalPart(title string) bool {
	return strings.HasPrefix(title, approvalsPrefix) && strings.HasSuffix(title, ".dsse.json")
}
