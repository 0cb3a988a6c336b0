package admission

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/signature"
)

// Admission is the decision on a set of artifacts before any is stored.
type Admission struct {
	// Verdicts, in the order of the entries given.
	Verdicts []Verdict
	// Verified is what the import record says was checked: the caller's own
	// lines first, then each admitted pack's signatures, then the policy.
	Verified []string
}

// Admitted returns the artifacts let in.
func (ad Admission) Admitted() []cache.Artifact {
	var out []cache.Artifact
	for _, v := range ad.Verdicts {
		if v.Err == nil {
			out = append(out, v.Artifact)
		}
	}
	return out
}

// Refused returns the verdicts that refused an artifact.
func (ad Admission) Refused() []Verdict {
	var out []Verdict
	for _, v := range ad.Verdicts {
		if v.Err != nil {
			out = append(out, v)
		}
	}
	return out
}

// Err returns the first refusal, or nil.
func (ad Admission) Err() error {
	for _, v := range ad.Verdicts {
		if v.Err != nil {
			return v.Err
		}
	}
	return nil
}

// Admit decides every artifact of src before anything is written: each
// pack is checked against the name its entry gives it (Check). verified are
// the checks the source already made (its checksums, the hashing of every
// blob while it streams), placed first in Admission.Verified.
func (p Policy) Admit(ctx context.Context, src signature.Referrers, entries []cache.Artifact, verified ...string) (Admission, error) {
	ad := Admission{Verified: append([]string(nil), verified...)}
	for _, e := range entries {
		v, err := p.Check(ctx, src, e, Claim{})
		if err != nil {
			return ad, err
		}
		ad.Verdicts = append(ad.Verdicts, v)
		ad.Verified = append(ad.Verified, v.Verified...)
	}
	if d := p.Describe(); d != "" {
		ad.Verified = append(ad.Verified, d)
	}
	return ad, nil
}

// Hook is the per-artifact check of an import whose artifacts are judged as
// they arrive (a pull from a registry: cache.ImportOptions.Verify, through
// mirror.PullOptions.Verify). claim is the name the source gives the pack it
// was asked for; the fetcher handed to the hook must list referrers
// (signature.Referrers) so signatures can be read before they are stored.
// Verified lines accumulate in the returned *Log.
func (p Policy) Hook(claim Claim) (func(ctx context.Context, a cache.Artifact, f content.Fetcher) error, *Log) {
	log := &Log{}
	return func(ctx context.Context, a cache.Artifact, f content.Fetcher) error {
		refs, ok := f.(signature.Referrers)
		if !ok {
			refs = noReferrers{f}
		}
		v, err := p.Check(ctx, refs, a, claim)
		if err != nil {
			return err
		}
		log.add(v)
		return v.Err
	}, log
}

// Log collects the verdicts of a Hook; it is safe for concurrent use.
type Log struct {
	mu       sync.Mutex
	verdicts []Verdict
}

func (l *Log) add(v Verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.verdicts = append(l.verdicts, v)
}

// Verified returns the lines of every admitted artifact's checks.
func (l *Log) Verified() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, v := range l.verdicts {
		if v.Err == nil {
			out = append(out, v.Verified...)
		}
	}
	return out
}

// noReferrers is a fetcher that lists no referrers: every pack read through
// it is unsigned.
type noReferrers struct{ content.Fetcher }

func (noReferrers) Predecessors(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return nil, nil
}

// refusedSet is the digests refused by ad and not admitted under another
// entry (a pack a bundle lists twice, once under a ref its manifest does
// not carry, is refused under that ref only; its signatures go with the
// entry admitted).
func (ad Admission) refusedSet() map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	for _, v := range ad.Refused() {
		out[v.Artifact.Descriptor.Digest] = true
	}
	for _, a := range ad.Admitted() {
		delete(out, a.Descriptor.Digest)
	}
	return out
}
