package evidence

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
)

// Summary is what evidence claims about itself, read without verifying
// it: the run's predicate and the key ids its statement names. Listing a
// registry's evidence shows it; only VerifyArtifact makes it a fact.
type Summary struct {
	Evidence digest.Digest // the evidence manifest
	Pack     digest.Digest // its subject
	Claimed  Predicate
	KeyIDs   []string // of the statement's signatures, as the envelope names them
}

// Inspect reads the evidence manifest desc and its statement from src
// (each checked against its digest and size) and returns what they claim.
// It checks no signature. Errors are *PartError, as Verify's.
func Inspect(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (Summary, error) {
	sum := Summary{Evidence: desc.Digest}
	mb, err := fetch(ctx, src, desc, integrity.MaxManifestSize)
	if err != nil {
		return sum, partErr(PartManifest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return sum, partErr(PartManifest, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if m.ArtifactType != artifact.ArtifactTypeEvidence || m.Subject == nil || len(m.Layers) == 0 {
		return sum, partErr(PartManifest, fmt.Errorf("%w: not an evidence manifest with a subject and parts", ErrInvalid))
	}
	sum.Pack = m.Subject.Digest
	last := m.Layers[len(m.Layers)-1]
	if last.Annotations[artifact.AnnotationTitle] != PartStatement || last.MediaType != artifact.MediaTypeDSSE {
		return sum, partErr(PartManifest, fmt.Errorf("%w: the statement must be the last part", ErrInvalid))
	}
	env, err := fetch(ctx, src, last, keys.MaxEnvelopeSize)
	if err != nil {
		return sum, partErr(PartStatement, err)
	}
	st, ids, err := keys.OpenEnvelope(env)
	if err != nil {
		return sum, partErr(PartStatement, err)
	}
	if st.PredicateType != PredicateType {
		return sum, partErr(PartStatement, fmt.Errorf("%w: predicate type %q", ErrInvalid, st.PredicateType))
	}
	if err := st.DecodePredicate(&sum.Claimed); err != nil {
		return sum, partErr(PartStatement, err)
	}
	sum.KeyIDs = ids
	return sum, nil
}
