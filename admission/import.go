package admission

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
)

// Report is the outcome of an admitted import.
type Report struct {
	// Admission is the decision made before anything was written.
	Admission Admission
	// Import is what the cache did with the admitted artifacts (empty when
	// none was admitted).
	Import cache.ImportResult
	// Packs are the refs of the packs now in the cache.
	Packs []string
}

// Failure is the first per-artifact failure: a refusal, or an artifact
// the cache could not store. Nil when everything entered.
func (r Report) Failure() error {
	if err := r.Admission.Err(); err != nil {
		return err
	}
	for _, a := range r.Import.Artifacts {
		if a.Err != nil {
			return a.Err
		}
	}
	return nil
}

// Import stores the artifacts ad admitted from src in one import (one
// import record): artifacts with refs first, then each referrer after its
// subject. A referrer whose subject was refused or failed — directly or
// through another referrer — is refused too (ErrSubjectRefused), so a
// refused pack never leaves its signature, nor a refused request its
// response, behind. An admitted pack and the valid signatures that let it
// in are recorded in one cache transaction (cache.Artifact.WithPrevious):
// a crash or a failure leaves both or neither. The record's Verified lines
// are ad.Verified.
func Import(ctx context.Context, st *cache.Store, src content.ReadOnlyStorage, ad Admission, rec cache.ImportRecord, opts cache.ImportOptions) (Report, error) {
	rep := Report{Admission: ad}
	admitted := ad.Admitted()
	if len(admitted) == 0 {
		return rep, nil
	}
	bad := ad.refusedSet()
	progress := opts.Progress
	opts.Progress = func(p cache.Progress) {
		if p.Event == cache.ArtifactDone && p.Status == cache.StatusFailed {
			bad[p.Artifact.Descriptor.Digest] = true
		}
		if progress != nil {
			progress(p)
		}
	}
	verify := opts.Verify
	opts.Verify = func(ctx context.Context, a cache.Artifact, f content.Fetcher) error {
		// With nothing refused or failed, no subject can be: the manifest
		// (10,000 layers for a pack of as many files) is not read again.
		if len(bad) == 0 {
			return verifyNext(ctx, verify, a, f)
		}
		if sub := subjectOf(ctx, f, a.Descriptor).Digest; sub != "" && bad[sub] {
			return fmt.Errorf("%s %s not imported: its subject %s failed or was refused: %w", a.Kind, a.Descriptor.Digest, sub, ErrSubjectRefused)
		}
		return verifyNext(ctx, verify, a, f)
	}
	rec.Verified = ad.Verified
	res, err := st.Import(ctx, src, bindSignatures(orderBySubject(ctx, src, admitted), ad), rec, opts)
	rep.Import = res
	for _, a := range res.Artifacts {
		if a.Err == nil && a.Artifact.Kind == artifact.KindPack {
			rep.Packs = append(rep.Packs, a.Artifact.Ref)
		}
	}
	return rep, err
}

// verifyNext runs the caller's Verify hook, if any.
func verifyNext(ctx context.Context, verify func(context.Context, cache.Artifact, content.Fetcher) error, a cache.Artifact, f content.Fetcher) error {
	if verify == nil {
		return nil
	}
	return verify(ctx, a, f)
}

// ImportBundle imports an opened bundle file (or split set) into the cache
// under the policy: compressed layers are decompressed (bounded) first so a
// bomb never enters; every pack is admitted before anything is written;
// then one import in which each blob is hashed exactly once, by the cache as
// it writes it (which refuses a blob whose digest or size disagrees), so the
// bundle's own verifying reader is not needed on that path. from names the
// bundle in the import record.
func ImportBundle(ctx context.Context, st *cache.Store, r *bundle.Reader, p Policy, from string, opts cache.ImportOptions) (Report, error) {
	if err := r.VerifyCompressed(ctx, 0); err != nil {
		return Report{}, err
	}
	ad, err := p.Admit(ctx, r, Entries(r), "SHA256SUMS and tar structure", VerifiedStreamed)
	if err != nil {
		return Report{}, err
	}
	rep, err := Import(ctx, st, hashedOnce{r}, ad, cache.ImportRecord{From: from}, opts)
	// Say what the copy did, rather than claim every blob checked out.
	streamed := ""
	switch {
	case slices.ContainsFunc(rep.Import.Artifacts, func(a cache.ArtifactResult) bool { return a.Status == cache.StatusFailed }):
		streamed = VerifiedStreamedFailed
	case rep.Import.BlobsWritten == 0:
		streamed = VerifiedNothingRead
	}
	if i := slices.Index(rep.Import.Record.Verified, VerifiedStreamed); i >= 0 && streamed != "" {
		v := slices.Clone(rep.Import.Record.Verified)
		v[i] = streamed
		rep.Import.Record.Verified = v
	}
	return rep, err
}

// Verified lines of a bundle import: blobs were hashed as they streamed
// into the cache; or none was read because the cache held every one; or
// an artifact failed (a blob that did not check out, or a write), and
// only what entered the cache was checked whole.
const (
	VerifiedStreamed       = "sha256 and size of every blob while it streamed"
	VerifiedNothingRead    = "no blob read from the bundle: every blob of the artifacts admitted was already in the cache"
	VerifiedStreamedFailed = "sha256 and size of every blob that entered the cache, while it streamed; an artifact failed (above), and nothing of it entered"
)

// bindSignatures moves the valid signatures of each admitted pack (its
// verdict's) right after the pack's first entry, bound to it, so they are
// recorded with it in one transaction.
func bindSignatures(arts []cache.Artifact, ad Admission) []cache.Artifact {
	valid := map[digest.Digest]map[digest.Digest]bool{} // pack → its valid signatures
	for _, v := range ad.Verdicts {
		if v.Err != nil || v.Artifact.Kind != artifact.KindPack {
			continue
		}
		for _, r := range v.Signatures {
			if r.Valid {
				if valid[v.Artifact.Descriptor.Digest] == nil {
					valid[v.Artifact.Descriptor.Digest] = map[digest.Digest]bool{}
				}
				valid[v.Artifact.Descriptor.Digest][r.Digest] = true
			}
		}
	}
	bound := map[digest.Digest]bool{}
	for _, sigs := range valid {
		for d := range sigs {
			bound[d] = true
		}
	}
	out := make([]cache.Artifact, 0, len(arts))
	placed := map[digest.Digest]bool{}
	for _, a := range arts {
		if a.Kind == artifact.KindSignature && bound[a.Descriptor.Digest] {
			continue // placed after its pack
		}
		out = append(out, a)
		sigs := valid[a.Descriptor.Digest]
		if a.Kind != artifact.KindPack || len(sigs) == 0 || placed[a.Descriptor.Digest] {
			continue
		}
		placed[a.Descriptor.Digest] = true
		for _, s := range arts {
			if s.Kind == artifact.KindSignature && sigs[s.Descriptor.Digest] {
				s.WithPrevious = true
				out = append(out, s)
			}
		}
	}
	return out
}

// Entries lists a bundle's artifacts as cache artifacts.
func Entries(r *bundle.Reader) []cache.Artifact {
	var out []cache.Artifact
	for _, e := range r.Entries() {
		out = append(out, cache.Artifact{Descriptor: e.Descriptor, Kind: e.Kind, Ref: e.Ref})
	}
	return out
}

// hashedOnce reads a bundle without its verifying reader, for a destination
// that verifies every blob itself (the cache).
type hashedOnce struct{ *bundle.Reader }

func (h hashedOnce) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return h.FetchUnverified(ctx, d)
}

// orderBySubject puts artifacts with refs first, then each referrer after
// the artifact it points at, if that is among arts; referrers otherwise
// keep their order. It reads each referrer's manifest once and takes time
// linear in len(arts), whatever the chains of referrers (a pass per link of
// a chain made it quadratic). Referrers caught in a cycle, which cannot
// hash, come last in their order.
func orderBySubject(ctx context.Context, src content.Fetcher, arts []cache.Artifact) []cache.Artifact {
	var out, pending []cache.Artifact
	for _, a := range arts {
		if a.Ref != "" {
			out = append(out, a)
		} else {
			pending = append(pending, a)
		}
	}
	at := make(map[digest.Digest]int, len(pending)) // referrer → its index in pending
	for i, a := range pending {
		at[a.Descriptor.Digest] = i
	}
	// waiters[i]: the referrers whose subject is pending[i], in order.
	waiters := make([][]int, len(pending))
	var ready []int
	for i, a := range pending {
		if j, ok := at[subjectOf(ctx, src, a.Descriptor).Digest]; ok && j != i {
			waiters[j] = append(waiters[j], i)
		} else {
			ready = append(ready, i)
		}
	}
	placed := make([]bool, len(pending))
	var stack []int
	for _, r := range ready {
		// Depth first: a referrer right after its subject, each once.
		stack = append(stack[:0], r)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			placed[i] = true
			out = append(out, pending[i])
			for k := len(waiters[i]) - 1; k >= 0; k-- {
				stack = append(stack, waiters[i][k])
			}
		}
	}
	for i, a := range pending {
		if !placed[i] {
			out = append(out, a)
		}
	}
	return out
}
