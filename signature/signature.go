// Package signature attaches and checks artifact signatures. A signature is
// its own artifact: an OCI manifest of artifactType
// artifact.ArtifactTypeSignature whose subject is the signed manifest and whose
// one layer is a DSSE envelope over an in-toto statement naming that
// manifest's digest. It travels with its subject as a referrer on every copy
// (cache, bundle, registry), and is checked against the trust store by Check,
// strictly: a pack counts as signed only by a valid signature of a trusted,
// unrevoked key holding the publisher role for the tenant.
package signature

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/trust"
)

// MaxEnvelopeSize bounds a signature envelope read from outside.
const MaxEnvelopeSize = keys.MaxEnvelopeSize

var (
	// ErrRejected: the policy requires a valid signature and none was found.
	// It wraps the reason of each signature that was present.
	ErrRejected = errors.New("no valid signature")
	// ErrNotSignature: a manifest presented as a signature is not one.
	ErrNotSignature = errors.New("not a signature artifact")
)

// emptyConfig is the OCI empty JSON config.
var emptyConfig = []byte("{}")

// Artifact is a signature built in memory, ready to import or copy. It is a
// content.ReadOnlyStorage of its manifest, config and envelope.
type Artifact struct {
	Manifest ocispec.Descriptor
	blobs    map[digest.Digest][]byte
}

// Fetch returns one of the signature's blobs.
func (a *Artifact) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := a.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, artifact.ErrNotInArtifact)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Exists reports whether d is one of the signature's blobs.
func (a *Artifact) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	_, ok := a.blobs[d.Digest]
	return ok, nil
}

// Sign signs subject (a manifest descriptor named ref, e.g. "<id>:<version>")
// with signer and returns the signature artifact.
func Sign(ctx context.Context, signer *keys.Pair, subject ocispec.Descriptor, ref string) (*Artifact, error) {
	sub, err := keys.NewSubject(ref, subject.Digest)
	if err != nil {
		return nil, err
	}
	st, err := keys.NewStatement(keys.PredicatePackSignature, keys.PackSignature{Ref: ref, ArtifactType: subject.ArtifactType}, sub)
	if err != nil {
		return nil, err
	}
	env, err := signer.SignStatement(ctx, st)
	if err != nil {
		return nil, err
	}
	cfg := content.NewDescriptorFromBytes(artifact.MediaTypeEmptyJSON, emptyConfig)
	layer := content.NewDescriptorFromBytes(artifact.MediaTypeDSSE, env)
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypeSignature,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subj,
		Annotations:  map[string]string{"io.stellaops.signature.keyid": signer.ID()},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	md.ArtifactType = artifact.ArtifactTypeSignature
	return &Artifact{Manifest: md, blobs: map[digest.Digest][]byte{md.Digest: mb, cfg.Digest: emptyConfig, layer.Digest: env}}, nil
}

// Referrers is what Find needs of a store: fetch blobs and list the manifests
// that point at a node.
type Referrers interface {
	content.Fetcher
	Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error)
}

// Find lists the signature artifacts whose subject is subject, sorted by digest.
func Find(ctx context.Context, src Referrers, subject ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	preds, err := src.Predecessors(ctx, subject)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, p := range preds {
		if p.MediaType != ocispec.MediaTypeImageManifest || seen[p.Digest] {
			continue
		}
		m, err := fetchManifest(ctx, src, p)
		if err != nil {
			return nil, err
		}
		if m.ArtifactType != artifact.ArtifactTypeSignature || m.Subject == nil || m.Subject.Digest != subject.Digest {
			continue
		}
		seen[p.Digest] = true
		p.ArtifactType = m.ArtifactType
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

func fetchManifest(ctx context.Context, src content.Fetcher, d ocispec.Descriptor) (*ocispec.Manifest, error) {
	if d.Size > integrity.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes: %w", d.Digest, d.Size, ErrNotSignature)
	}
	b, err := content.FetchAll(ctx, src, d)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %v", d.Digest, ErrNotSignature, err)
	}
	return &m, nil
}

// Result is the check of one signature.
type Result struct {
	Digest  digest.Digest `json:"digest"`
	KeyID   string        `json:"keyId,omitempty"`
	KeyName string        `json:"keyName,omitempty"`
	Valid   bool          `json:"valid"`
	Reason  string        `json:"reason,omitempty"`
	err     error
}

// Requirement is what a signature must establish: signed by a trusted key
// holding Role for Tenant.
type Requirement struct {
	Role   string
	Tenant string
}

// Verify checks each signature of subject found in src against the trust
// store. It never fails because a signature is bad; it says so per signature.
func Verify(ctx context.Context, src Referrers, subject ocispec.Descriptor, store *trust.Store, req Requirement) ([]Result, error) {
	sigs, err := Find(ctx, src, subject)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(sigs))
	for _, sd := range sigs {
		r := Result{Digest: sd.Digest}
		env, err := envelope(ctx, src, sd)
		if err == nil {
			if _, ids, oerr := keys.OpenEnvelope(env); oerr == nil && len(ids) > 0 {
				r.KeyID = ids[0]
			}
			var v *trust.Verified
			v, err = store.Verify(ctx, env, trust.Requirement{Subject: subject.Digest, PredicateType: keys.PredicatePackSignature, Role: req.Role, Tenant: req.Tenant})
			if err == nil {
				r.Valid, r.KeyID, r.KeyName = true, v.KeyID, v.KeyName
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.err = err
			r.Reason = err.Error()
		}
		results = append(results, r)
	}
	return results, nil
}

func envelope(ctx context.Context, src content.Fetcher, sd ocispec.Descriptor) ([]byte, error) {
	m, err := fetchManifest(ctx, src, sd)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != artifact.MediaTypeDSSE {
		return nil, fmt.Errorf("signature %s: expected one %s layer: %w", sd.Digest, artifact.MediaTypeDSSE, ErrNotSignature)
	}
	if m.Layers[0].Size > MaxEnvelopeSize {
		return nil, fmt.Errorf("signature %s: envelope of %d bytes: %w", sd.Digest, m.Layers[0].Size, ErrNotSignature)
	}
	return content.FetchAll(ctx, src, m.Layers[0])
}

// Require returns nil if at least one result is valid, else a
// *RejectedError naming the subject and why each signature failed.
func Require(subject string, results []Result) error {
	rej := &RejectedError{Subject: subject}
	for _, r := range results {
		if r.Valid {
			return nil
		}
		rej.Reasons = append(rej.Reasons, fmt.Sprintf("signature %s: %s", r.Digest, r.Reason))
		rej.errs = append(rej.errs, r.err)
	}
	return rej
}

// Refuted is what checking signatures without requiring them fails on,
// as cosign verify fails on a signature that does not verify: subject
// carries signatures, none is valid, and at least one failed for a reason
// other than a key the trust store does not know (an altered or foreign
// envelope, a revoked key, a trusted key without the role or tenant). It
// returns Require's *RejectedError then, nil otherwise: unsigned, a valid
// signature, or only signatures this host cannot judge.
func Refuted(subject string, results []Result) error {
	judged := false
	for _, r := range results {
		if r.Valid {
			return nil
		}
		if !errors.Is(r.err, trust.ErrUnknownKey) {
			judged = true
		}
	}
	if !judged {
		return nil
	}
	return Require(subject, results)
}

// RejectedError says why an artifact has no valid signature. It wraps
// ErrRejected and the trust error of every signature present, so errors.Is
// finds, say, trust.ErrKeyRevoked.
type RejectedError struct {
	Subject string
	Reasons []string
	errs    []error
}

func (e *RejectedError) Error() string {
	if len(e.Reasons) == 0 {
		return e.Subject + " is unsigned: " + ErrRejected.Error()
	}
	return fmt.Sprintf("%s: %v (%s)", e.Subject, ErrRejected, strings.Join(e.Reasons, "; "))
}

func (e *RejectedError) Unwrap() []error { return append([]error{ErrRejected}, e.errs...) }

// Signers returns the ids of the trust store's keys (revoked ones
// included, whatever their roles) that made a valid signature of subject
// found in src: who really signed it, as opposed to whether it counts as
// signed. A damaged signature artifact signs nothing and is skipped.
func Signers(ctx context.Context, src Referrers, subject ocispec.Descriptor, store *trust.Store) ([]string, error) {
	sigs, err := Find(ctx, src, subject)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, sd := range sigs {
		env, err := envelope(ctx, src, sd)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		for _, id := range store.Signers(env) {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
