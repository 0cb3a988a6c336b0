package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/trust"
)

// VerifyOptions are the inputs of Verify.
type VerifyOptions struct {
	// Trust holds the runner keys (role trust.RoleRun) and the approvers'
	// keys (the gates' roles); required.
	Trust *trust.Store
}

// Report is what Verify checked. Its JSON is `stella pack evidence verify
// --output json` (docs/output.md).
type Report struct {
	File      string          `json:"file"`
	Verified  bool            `json:"verified"`
	Evidence  digest.Digest   `json:"evidence,omitempty"` // the evidence manifest
	Run       *Predicate      `json:"run,omitempty"`      // the signed summary, once the signature verified
	Signer    *Signer         `json:"signer,omitempty"`
	Parts     []PartInfo      `json:"parts"`
	Approvals []ApprovalCheck `json:"approvals"`
	Ledger    *Head           `json:"ledgerHead,omitempty"`
	Checks    []Check         `json:"checks"`
	Failure   *Failure        `json:"failure,omitempty"`
}

// Signer is the trusted key that signed the run statement.
type Signer struct {
	KeyName string `json:"keyName"`
	KeyID   string `json:"keyId"`
}

// PartInfo is one part of the evidence.
type PartInfo struct {
	Name      string        `json:"name"`
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

// ApprovalCheck is one verified approval envelope.
type ApprovalCheck struct {
	Part     string        `json:"part"`
	Gate     string        `json:"gate"`
	Decision string        `json:"decision"`
	KeyName  string        `json:"keyName"`
	KeyID    string        `json:"keyId"`
	Request  digest.Digest `json:"request"`
	LedgerAt uint64        `json:"ledgerSeq"`
}

// Check is one check that passed.
type Check struct {
	Part  string `json:"part"`
	Check string `json:"check"`
}

// Failure is the first check that failed. Code is left for the caller
// (the CLI's error table).
type Failure struct {
	Part    string `json:"part"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// maxPartSize bounds a JSON part read into memory.
const maxPartSize = MaxOutputSize

// Verify checks the evidence bundle file at path (or split set) offline,
// with only opts.Trust, in the order the package comment gives. It returns
// the report of every check made and, at the first failure, a *PartError
// naming the part (the report's Failure says the same).
func Verify(ctx context.Context, path string, opts VerifyOptions) (*Report, error) {
	return verify(path, opts, func(v *verifier) error { return v.runBundle(ctx, path) })
}

// VerifyArtifact checks the evidence manifest desc read from src (a
// registry repository, a layout) exactly as Verify checks a bundle file,
// but for the bundle's own checks: the manifest and every part are read
// from src and checked against their digest and size here, whatever src
// checks itself. name is the report's File (the registry reference). When
// subject is set the evidence must be of that pack manifest (ErrInvalid,
// part "manifest"), so evidence listed under one pack cannot pass for
// another's.
func VerifyArtifact(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor, name string, subject digest.Digest, opts VerifyOptions) (*Report, error) {
	return verify(name, opts, func(v *verifier) error {
		if err := v.readParts(ctx, src, desc); err != nil {
			return err
		}
		if subject != "" && v.subject.Digest != subject {
			return partErr(PartManifest, fmt.Errorf("%w: evidence of pack %s listed under pack %s", ErrInvalid, v.subject.Digest, subject))
		}
		v.ok(PartManifest, "sha256 and size of the manifest and of the statement as read from %s", name)
		if err := v.readSigned(ctx); err != nil {
			return err
		}
		return v.checks(ctx)
	})
}

func verify(name string, opts VerifyOptions, run func(*verifier) error) (*Report, error) {
	rep := &Report{File: name, Parts: []PartInfo{}, Approvals: []ApprovalCheck{}, Checks: []Check{}}
	if opts.Trust == nil {
		return rep, fmt.Errorf("evidence verify: a trust store is required")
	}
	v := verifier{rep: rep, trust: opts.Trust}
	if err := run(&v); err != nil {
		var pe *PartError
		if !errors.As(err, &pe) {
			err = partErr(PartBundle, err)
			errors.As(err, &pe)
		}
		rep.Failure = &Failure{Part: pe.Part, Message: err.Error()}
		return rep, err
	}
	rep.Verified = true
	return rep, nil
}

type verifier struct {
	rep   *Report
	trust *trust.Store

	src       content.Fetcher
	subject   ocispec.Descriptor
	layers    []ocispec.Descriptor
	parts     map[string][]byte
	pred      Predicate
	statement *keys.Statement
	plan      *plan.Plan
	hash      digest.Digest
	ledger    Ledger
}

func (v *verifier) ok(part, format string, args ...any) {
	v.rep.Checks = append(v.rep.Checks, Check{Part: part, Check: fmt.Sprintf(format, args...)})
}

func (v *verifier) runBundle(ctx context.Context, path string) error {
	r, err := bundle.Open(ctx, path, bundle.OpenOptions{})
	if err != nil {
		return partErr(PartBundle, err)
	}
	defer r.Close()
	entries := r.Entries()
	if len(entries) != 1 || entries[0].Kind != artifact.KindEvidence {
		return partErr(PartBundle, fmt.Errorf("%w: want exactly one evidence artifact, the bundle holds %s", ErrInvalid, bundle.Holds(entries)))
	}
	if err := v.readParts(ctx, r, entries[0].Descriptor); err != nil {
		return err
	}
	if err := v.readSigned(ctx); err != nil {
		return err
	}
	if _, err := r.Verify(ctx, bundle.VerifyOptions{}); err != nil {
		return partErr(PartBundle, err)
	}
	v.ok(PartBundle, "oci-layout, index.json, SHA256SUMS and the sha256 and size of every blob")
	return v.checks(ctx)
}

// checks are the checks after the parts were read, in order.
func (v *verifier) checks(ctx context.Context) error {
	for _, step := range []func(context.Context) error{v.checkPlan, v.checkRun, v.checkInputs, v.checkLog, v.checkLedger, v.checkApprovals} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readParts reads the manifest, checks the artifact's shape and reads the
// statement, checked against its digest and size; readRest reads the other
// parts once the statement verified and named them.
func (v *verifier) readParts(ctx context.Context, r content.Fetcher, desc ocispec.Descriptor) error {
	const manifestPart = PartManifest
	v.rep.Evidence = desc.Digest
	mb, err := fetch(ctx, r, desc, integrity.MaxManifestSize)
	if err != nil {
		return partErr(manifestPart, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return partErr(manifestPart, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	bad := func(format string, args ...any) error {
		return partErr(manifestPart, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...)))
	}
	// The manifest says which blob is which part and nothing signs it: it
	// must read one way only, so it is exactly what Build writes (no name
	// twice, none in another case, none unknown, for another parser to
	// read other layers from).
	if again, err := json.Marshal(m); err != nil || !bytes.Equal(again, mb) {
		return bad("not in the encoding evidence is written in (a name doubled, unknown or in another case)")
	}
	switch {
	case m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest:
		return bad("not an OCI image manifest")
	case m.ArtifactType != artifact.ArtifactTypeEvidence:
		return bad("artifactType %q", m.ArtifactType)
	case m.Config.Digest != ocispec.DescriptorEmptyJSON.Digest:
		return bad("config is not the OCI empty JSON")
	case m.Subject == nil || m.Subject.MediaType != ocispec.MediaTypeImageManifest || integrity.CheckSHA256(m.Subject.Digest) != nil:
		return bad("subject must be the pack's OCI image manifest")
	}
	v.subject = *m.Subject
	v.layers = m.Layers
	v.parts = map[string][]byte{}
	titles := map[string]bool{}
	for i, l := range m.Layers {
		title := l.Annotations[artifact.AnnotationTitle]
		if title == "" {
			return bad("layer %d has no title", i)
		}
		if titles[title] {
			return bad("part %s appears twice", title)
		}
		titles[title] = true
		if want := partMediaType(title); want == "" || want != l.MediaType {
			return bad("part %s of media type %q is not an evidence part", title, l.MediaType)
		}
		if !fs.ValidPath(title) {
			return bad("part %s is not a clean relative path", title)
		}
		v.rep.Parts = append(v.rep.Parts, PartInfo{Name: title, MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	for _, need := range []string{PartPlan, PartInputs, PartRun, PartLog, PartLedger, PartStatement} {
		if !titles[need] {
			return partErr(need, fmt.Errorf("%w: part missing", ErrInvalid))
		}
	}
	if last := m.Layers[len(m.Layers)-1].Annotations[artifact.AnnotationTitle]; last != PartStatement {
		return bad("the statement must be the last part")
	}
	// Only the statement: no other part is read before the signature and
	// every part's digest are checked against it (readRest), so one large
	// blob named under many titles the runner did not sign is never read.
	b, err := fetch(ctx, r, m.Layers[len(m.Layers)-1], keys.MaxEnvelopeSize)
	if err != nil {
		return partErr(PartStatement, err)
	}
	v.parts[PartStatement] = b
	v.src = r
	return nil
}

// readSigned checks the statement's signature and subjects, then reads the
// other parts it names.
func (v *verifier) readSigned(ctx context.Context) error {
	for _, step := range []func(context.Context) error{v.signature, v.subjects, v.readRest} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readRest reads every part but the statement, each checked against its
// digest and size as it is read, once the statement named them all.
func (v *verifier) readRest(ctx context.Context) error {
	rest := v.layers[:len(v.layers)-1]
	for _, l := range rest {
		title := l.Annotations[artifact.AnnotationTitle]
		b, err := fetch(ctx, v.src, l, maxPartSize)
		if err != nil {
			return partErr(title, err)
		}
		v.parts[title] = b
	}
	v.ok(PartManifest, "sha256 and size of the %d other parts as read", len(rest))
	return nil
}

// partMediaType is the media type a part of that title must have.
func partMediaType(title string) string {
	switch {
	case title == PartPlan:
		return artifact.MediaTypePlan
	case title == PartInputs:
		return artifact.MediaTypeEvidenceInputs
	case title == PartRun:
		return artifact.MediaTypeEvidenceRun
	case title == PartLog:
		return artifact.MediaTypeEvidenceLog
	case title == PartLedger:
		return artifact.MediaTypeEvidenceLedger
	case title == PartStatement, isApprovalPart(title):
		return artifact.MediaTypeDSSE
	case isOutputPart(title):
		return artifact.MediaTypeEvidenceOutput
	}
	return ""
}

// fetch reads a blob whole from r and checks its size and digest here,
// whatever r checks itself.
func fetch(ctx context.Context, r content.Fetcher, d ocispec.Descriptor, limit int64) ([]byte, error) {
	if d.Size < 0 || d.Size > limit {
		return nil, fmt.Errorf("blob %s of %d bytes exceeds %d: %w", d.Digest, d.Size, limit, integrity.ErrTooLarge)
	}
	rc, err := r.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return integrity.ReadAll(rc, d, limit)
}

// signature verifies the run statement with a trusted key holding
// Packs.Run for the tenant the statement names.
func (v *verifier) signature(ctx context.Context) error {
	env := v.parts[PartStatement]
	st, _, err := keys.OpenEnvelope(env)
	if err != nil {
		return partErr(PartStatement, err)
	}
	var claimed Predicate
	if err := st.DecodePredicate(&claimed); err != nil {
		return partErr(PartStatement, err)
	}
	ver, err := v.trust.Verify(ctx, env, trust.Requirement{Subject: v.subject.Digest, PredicateType: PredicateType,
		Role: trust.RoleRun, Tenant: claimed.Tenant})
	if err != nil {
		return partErr(PartStatement, err)
	}
	if err := ver.Statement.DecodePredicate(&v.pred); err != nil {
		return partErr(PartStatement, err)
	}
	v.statement = ver.Statement
	v.rep.Run = &v.pred
	v.rep.Signer = &Signer{KeyName: ver.KeyName, KeyID: ver.KeyID}
	v.ok(PartStatement, "DSSE signature by trusted key %q (%s) holding %s for tenant %q", ver.KeyName, ver.KeyID, trust.RoleRun, v.pred.Tenant)
	return nil
}

// subjects checks that the statement names the pack and exactly the
// other parts, each with its digest.
func (v *verifier) subjects(context.Context) error {
	named := map[string]string{}
	for _, s := range v.statement.Subject {
		if _, dup := named[s.Name]; dup {
			return partErr(PartStatement, fmt.Errorf("%w: subject %s named twice", ErrInvalid, s.Name))
		}
		named[s.Name] = s.Digest[string(digest.SHA256)]
	}
	if named[SubjectPack] != v.subject.Digest.Encoded() {
		return partErr(SubjectPack, fmt.Errorf("%w: the artifact's subject is %s, the statement names sha256:%s", ErrPartAltered, v.subject.Digest, named[SubjectPack]))
	}
	for _, l := range v.layers {
		title := l.Annotations[artifact.AnnotationTitle]
		if title == PartStatement {
			continue
		}
		want, ok := named[title]
		if !ok {
			return partErr(title, fmt.Errorf("%w: the statement does not name it", ErrPartAltered))
		}
		if want != l.Digest.Encoded() {
			return partErr(title, fmt.Errorf("%w: it is %s, the statement names sha256:%s", ErrPartAltered, l.Digest, want))
		}
		delete(named, title)
	}
	delete(named, SubjectPack)
	for name := range named {
		return partErr(name, fmt.Errorf("%w: the statement names it, the evidence does not hold it", ErrPartAltered))
	}
	v.ok(PartStatement, "the pack %s and the digest of every one of %d parts", v.subject.Digest, len(v.layers)-1)
	return nil
}

func (v *verifier) inconsistent(part, format string, args ...any) error {
	return partErr(part, fmt.Errorf("%w: %s", ErrInconsistent, fmt.Sprintf(format, args...)))
}

func (v *verifier) checkPlan(context.Context) error {
	pl, h, err := plan.Parse(v.parts[PartPlan])
	if err != nil {
		return partErr(PartPlan, fmt.Errorf("%w: %w", ErrInconsistent, err))
	}
	if h != v.pred.PlanHash {
		return v.inconsistent(PartPlan, "the plan hashes to %s, the run records %s", h, v.pred.PlanHash)
	}
	if pl.Pack != v.pred.Pack || pl.Pack.Digest != v.subject.Digest {
		return v.inconsistent(PartPlan, "the plan is of pack %s, the evidence of %s", pl.Pack.Digest, v.subject.Digest)
	}
	v.plan, v.hash = pl, h
	v.ok(PartPlan, "plan hash recomputed from the plan: %s", h)
	return nil
}

// decodeStrict decodes a JSON part refusing unknown fields.
func decodeStrict(b []byte, x any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(x); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

func (v *verifier) checkRun(context.Context) error {
	var doc RunDoc
	if err := decodeStrict(v.parts[PartRun], &doc); err != nil {
		return partErr(PartRun, err)
	}
	p := v.pred
	if doc.RunID != p.RunID || doc.Tenant != p.Tenant || doc.Pack != p.Pack || doc.PlanHash != p.PlanHash ||
		doc.State != p.State || doc.Partial != p.Partial || doc.Host.StellaVersion != p.StellaVersion || doc.Host.Sealed != p.Sealed {
		return v.inconsistent(PartRun, "run, tenant, pack, plan hash, state or host differ from the signed statement")
	}
	files := map[string]bool{}
	for _, f := range doc.Files {
		if f.Missing {
			continue
		}
		b, ok := v.parts[f.Part]
		if !ok || f.Part != outputsPrefix+f.Path {
			return v.inconsistent(PartRun, "output %s at %s names part %q, the evidence holds no part %s%s", f.Name, f.Path, f.Part, outputsPrefix, f.Path)
		}
		if digest.FromBytes(b) != f.Digest || int64(len(b)) != f.Size {
			return partErr(f.Part, fmt.Errorf("%w: run.json records %s", ErrInconsistent, f.Digest))
		}
		files[f.Part] = true
	}
	for title := range v.parts {
		if isOutputPart(title) && !files[title] {
			return v.inconsistent(title, "run.json does not list it as an output file")
		}
	}
	v.ok(PartRun, "run %s (%s%s) agrees with the statement; %d output file(s) listed", p.RunID, p.State, partialNote(p.Partial), len(files))
	return nil
}

func partialNote(partial bool) string {
	if partial {
		return ", PARTIAL"
	}
	return ""
}

func (v *verifier) checkInputs(context.Context) error {
	var lock InputsLock
	if err := decodeStrict(v.parts[PartInputs], &lock); err != nil {
		return partErr(PartInputs, err)
	}
	if lock.PlanHash != v.hash {
		return v.inconsistent(PartInputs, "locked for plan %s, the run's is %s", lock.PlanHash, v.hash)
	}
	a, err1 := canonical.Marshal(lock.Inputs)
	b, err2 := canonical.Marshal(orEmptyMap(v.plan.Inputs))
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		return v.inconsistent(PartInputs, "the inputs differ from the plan's")
	}
	if len(lock.Secrets) != len(v.plan.Secrets) {
		return v.inconsistent(PartInputs, "%d secret references, the plan has %d", len(lock.Secrets), len(v.plan.Secrets))
	}
	for i, s := range v.plan.Secrets {
		l := lock.Secrets[i]
		if l.Name != s.Name || l.Source != s.Source || l.Scope != s.Scope {
			return v.inconsistent(PartInputs, "secret %s differs from the plan's reference", l.Name)
		}
	}
	v.ok(PartInputs, "inputs and %d secret reference(s) (metadata only) match the plan", len(lock.Secrets))
	return nil
}

func (v *verifier) checkLog(context.Context) error {
	b := v.parts[PartLog]
	n := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return partErr(PartLog, fmt.Errorf("%w: last record has no newline", ErrInvalid))
		}
		n++
		var l run.Line
		if err := decodeStrict(b[:i], &l); err != nil {
			return partErr(PartLog, fmt.Errorf("record %d: %w", n, err))
		}
		if l.RunID != v.pred.RunID || l.Tenant != v.pred.Tenant || l.Data != nil {
			return v.inconsistent(PartLog, "record %d is of run %s, tenant %s", n, l.RunID, l.Tenant)
		}
		b = b[i+1:]
	}
	v.ok(PartLog, "%d log record(s) of run %s", n, v.pred.RunID)
	return nil
}

func (v *verifier) checkLedger(context.Context) error {
	var l Ledger
	if err := decodeStrict(v.parts[PartLedger], &l); err != nil {
		return partErr(PartLedger, err)
	}
	broken := func(format string, args ...any) error {
		return partErr(PartLedger, fmt.Errorf("%w: %s", ErrLedgerBroken, fmt.Sprintf(format, args...)))
	}
	for i, e := range l.Entries {
		if h, err := e.ComputeHash(); err != nil || h != e.Hash {
			return broken("entry %d does not hash to its hash", e.Seq)
		}
		if i > 0 {
			prev := l.Entries[i-1]
			if e.Seq != prev.Seq+1 {
				return broken("entry %d follows entry %d", e.Seq, prev.Seq)
			}
			if e.Prev != prev.Hash {
				return broken("entry %d does not chain to entry %d", e.Seq, prev.Seq)
			}
		}
	}
	var head Head
	if n := len(l.Entries); n > 0 {
		head = Head{Seq: l.Entries[n-1].Seq, Hash: l.Entries[n-1].Hash}
	}
	if l.Head != head {
		return broken("head is entry %d %s, the entries end at %d %s", l.Head.Seq, l.Head.Hash, head.Seq, head.Hash)
	}
	v.ledger = l
	if head.Seq > 0 {
		v.rep.Ledger = &head
	}
	v.ok(PartLedger, "%d ledger entries hash-chained to head %d", len(l.Entries), head.Seq)
	return nil
}

func (v *verifier) checkApprovals(ctx context.Context) error {
	var doc RunDoc
	_ = json.Unmarshal(v.parts[PartRun], &doc) // checked by checkRun
	gates := map[string]plan.Approval{}
	for _, a := range Gates(v.plan, doc.Expansions) {
		// An expansion (run.json, the runner's word) adds gates; it never
		// replaces the plan's, which the approvers' plan hash binds.
		if _, dup := gates[a.Gate]; dup {
			return v.inconsistent(PartRun, "gate %s is listed twice among the plan's and the expansions' gates", a.Gate)
		}
		gates[a.Gate] = a
	}
	approvers := map[string]map[string]bool{} // gate → approving key ids
	for _, l := range v.layers {
		title := l.Annotations[artifact.AnnotationTitle]
		if !isApprovalPart(title) {
			continue
		}
		env := v.parts[title]
		p, _, _, err := approve.ParseResponse(env)
		if err != nil {
			return partErr(title, err)
		}
		mismatch := func(format string, args ...any) error {
			return partErr(title, fmt.Errorf("%w: %s", ErrApprovalMismatch, fmt.Sprintf(format, args...)))
		}
		a, ok := gates[p.Gate]
		if !ok {
			return mismatch("it approves gate %q, which the plan does not have", p.Gate)
		}
		// Which roles approve is the verifying site's policy, not the pack's.
		if err := v.trust.CheckApproverRole(a.Role); err != nil {
			return partErr(title, fmt.Errorf("gate %s: %w", p.Gate, err))
		}
		ver, err := v.trust.Verify(ctx, env, trust.Requirement{Subject: p.RequestDigest,
			PredicateType: approve.PredicateApprovalDecision, Role: a.Role, Tenant: v.pred.Tenant})
		if err != nil {
			return partErr(title, err)
		}
		switch {
		case p.PlanHash != v.hash:
			return mismatch("it is bound to plan %s, the run's is %s", p.PlanHash, v.hash)
		case p.Tenant != v.pred.Tenant:
			return mismatch("it is for tenant %q, the run's is %q", p.Tenant, v.pred.Tenant)
		case p.ApproverKeyID != ver.KeyID:
			return mismatch("it names key %s, signed by %s", p.ApproverKeyID, ver.KeyID)
		}
		seq := uint64(0)
		for _, e := range v.ledger.Entries {
			if e.Event == approve.EventDecision && e.RequestDigest == p.RequestDigest && e.KeyID == ver.KeyID &&
				e.Decision == string(p.Decision) && e.Gate == p.Gate && e.PlanHash == p.PlanHash && e.Tenant == p.Tenant {
				seq = e.Seq
				break
			}
		}
		if seq == 0 {
			return mismatch("no decision entry of the ledger records it")
		}
		if p.Decision == approve.Approve {
			if approvers[p.Gate] == nil {
				approvers[p.Gate] = map[string]bool{}
			}
			approvers[p.Gate][ver.KeyID] = true
		}
		v.rep.Approvals = append(v.rep.Approvals, ApprovalCheck{Part: title, Gate: p.Gate, Decision: string(p.Decision),
			KeyName: ver.KeyName, KeyID: ver.KeyID, Request: p.RequestDigest, LedgerAt: seq})
		v.ok(title, "%s of gate %s by trusted key %q holding %s, bound to plan %s, recorded at ledger entry %d",
			p.Decision, p.Gate, ver.KeyName, a.Role, v.hash, seq)
	}
	for _, s := range doc.Steps {
		// A gate step succeeds only when its gate is approved (package run),
		// whatever its gate record says.
		if s.State != run.Succeeded && (s.Gate == nil || s.Gate.State != run.GateApproved) {
			continue
		}
		a, ok := gates[s.ID]
		if !ok {
			continue
		}
		if n := len(approvers[s.ID]); n < a.MinApprovers {
			return partErr(PartRun, fmt.Errorf("%w: gate %s passed with %d approval(s) carried, it needs %d", ErrApprovalMismatch, s.ID, n, a.MinApprovers))
		}
		v.ok(PartRun, "gate %s passed with %d distinct approver(s) of %d needed", s.ID, len(approvers[s.ID]), a.MinApprovers)
	}
	return nil
}
