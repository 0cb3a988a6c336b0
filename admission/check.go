package admission

import (
	"context"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/signature"
)

// Claim is the name a source gives a pack: a bundle's index.json entry, or
// a registry's repository (its last element) and tag. An empty Version
// claims no version (a pull by digest, where the digest binds the content).
type Claim struct {
	Name    string
	Version string
}

// ClaimOf reads "<name>:<version>" as a claim.
func ClaimOf(ref string) Claim {
	if i := strings.LastIndex(ref, ":"); i >= 0 {
		return Claim{Name: ref[:i], Version: ref[i+1:]}
	}
	return Claim{Name: ref}
}

func (c Claim) String() string {
	if c.Version == "" {
		return c.Name
	}
	return c.Name + ":" + c.Version
}

// Verdict is the decision on one artifact.
type Verdict struct {
	Artifact cache.Artifact
	// Err is nil when the artifact was admitted; otherwise it says why not
	// (ErrRefMismatch, ErrPackLayout, signature.ErrRejected, ...).
	Err error
	// Signatures holds the check of each signature of a pack (none when the
	// mode is Skip).
	Signatures []signature.Result
	// Verified lines for the import record ("<ref>: signature by <key> (<id>)").
	Verified []string
}

// Check decides one artifact read from src. claim is the name the source
// gives it (zero Claim: use the artifact's own Ref). Packs are judged in
// full; an artifact of another kind is admitted when its ref, if any, is
// in its kind's namespace (CheckRef), and enters with its subject (Import).
// The error return is for failures that judge nothing (a cancelled
// context); a refusal is in the verdict.
func (p Policy) Check(ctx context.Context, src signature.Referrers, a cache.Artifact, claim Claim) (Verdict, error) {
	v := Verdict{Artifact: a}
	if a.Kind != artifact.KindPack {
		v.Err = CheckRef(a.Kind, a.Ref)
		return v, nil
	}
	if claim == (Claim{}) {
		claim = ClaimOf(a.Ref)
	}
	if err := checkPackManifest(ctx, src, a, claim); err != nil {
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		v.Err = err
		return v, nil
	}
	if p.Mode == Skip {
		return v, nil
	}
	if p.Trust == nil {
		return v, fmt.Errorf("admission of %s: signature policy without a trust store", a.Ref)
	}
	res, err := signature.Verify(ctx, src, a.Descriptor, p.Trust, signature.Requirement{Role: p.role(), Tenant: p.Tenant})
	if err != nil {
		return v, err
	}
	v.Signatures = res
	for _, r := range res {
		if r.Valid {
			v.Verified = append(v.Verified, fmt.Sprintf("%s%s%s (%s)", a.Ref, lineSigned, r.KeyName, r.KeyID))
		}
	}
	if p.Mode == Require {
		if err := signature.Require(a.Ref, res); err != nil {
			v.Err, v.Verified = err, nil
			return v, nil
		}
	}
	if len(v.Verified) == 0 {
		v.Verified = []string{a.Ref + lineUnsigned}
	}
	return v, nil
}

// The verified lines of one pack's verdict: "<ref>: signature by <key>
// (<id>)", or "<ref>: no valid signature (not required)".
const (
	lineSigned   = ": signature by "
	lineUnsigned = ": no valid signature (not required)"
)

// VerdictRef says whether a Verified line is one pack's verdict, and
// which pack's: the other lines (the source's checks, the policy) are
// about a whole import. It lets one pack's view of an import record show
// its own verdicts only.
func VerdictRef(line string) (ref string, ok bool) {
	if ref, ok := strings.CutSuffix(line, lineUnsigned); ok && ref != "" {
		return ref, true
	}
	if i := strings.Index(line, lineSigned); i > 0 {
		return line[:i], true
	}
	return "", false
}

// CheckRef is the rule of names by kind: only a pack may carry a pack's
// name, <name>:<version> with a semantic version, which its signed
// manifest binds (Check). Any other kind's ref must be "<kind>:<id>" where
// <id> is not a version (an approval request's "approval-request:<nonce>"),
// so that no unsigned artifact can take the name a signed pack will need.
// An empty ref (a referrer, kept by its subject) is always fine.
func CheckRef(kind, ref string) error {
	if ref == "" || kind == artifact.KindPack {
		return nil
	}
	if c := ClaimOf(ref); c.Name != kind || pack.ValidRef(ref) {
		return fmt.Errorf("%s artifact named %s: refs of its kind are %s:<id>, never a pack's <name>:<version>: %w", kind, ref, kind, ErrRefNamespace)
	}
	return nil
}

// checkPackManifest binds a pack to its manifest: the name the source gives
// it (only checksummed, or only a registry's say-so, never signed) must be
// the manifest's own io.stellaops.ref, and the layers must be the plain
// files stella builds, titled with paths `stella pack build` can produce
// (artifact.CheckTitles).
func checkPackManifest(ctx context.Context, src content.Fetcher, a cache.Artifact, claim Claim) error {
	m, err := fetchManifest(ctx, src, a.Descriptor)
	if err != nil {
		return fmt.Errorf("pack %s: %w", a.Ref, err)
	}
	got := ClaimOf(m.Annotations[artifact.AnnotationRef])
	if got.Name != claim.Name || (claim.Version != "" && got.Version != claim.Version) {
		return fmt.Errorf("the source names %s %q, but its manifest names it %q: %w", a.Descriptor.Digest, claim.String(), got.String(), ErrRefMismatch)
	}
	if m.Config.MediaType != artifact.MediaTypePackConfig {
		return fmt.Errorf("pack %s: config of media type %q: %w", a.Ref, m.Config.MediaType, ErrPackLayout)
	}
	for _, l := range m.Layers {
		if l.MediaType != artifact.MediaTypePackFile {
			return fmt.Errorf("pack %s: layer %s of media type %q (packs hold plain file layers): %w", a.Ref, l.Digest, l.MediaType, ErrPackLayout)
		}
	}
	if err := artifact.CheckTitles(m.Layers); err != nil {
		return fmt.Errorf("pack %s: %w", a.Ref, err)
	}
	return nil
}

// fetchManifest reads a manifest (bounded, hashed) and parses it with the
// one manifest parser.
func fetchManifest(ctx context.Context, src content.Fetcher, d ocispec.Descriptor) (*integrity.Manifest, error) {
	if d.Size > integrity.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s of %d bytes: %w", d.Digest, d.Size, integrity.ErrTooLarge)
	}
	b, err := content.FetchAll(ctx, src, d)
	if err != nil {
		return nil, err
	}
	m, err := integrity.ParseManifest(d, b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if m.Config == nil {
		return nil, fmt.Errorf("manifest %s is an index: %w", d.Digest, integrity.ErrInvalidManifest)
	}
	return m, nil
}

// subjectOf reads the subject digest of a manifest, or "".
func subjectOf(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) ocispec.Descriptor {
	m, err := fetchManifest(ctx, f, d)
	if err != nil || m.Subject == nil {
		return ocispec.Descriptor{}
	}
	return *m.Subject
}
