package artifact

// Artifact types (the manifest's artifactType) of every stella artifact kind.
// They are part of the bundle format; docs/bundle-format.md is normative.
const (
	ArtifactTypePack             = "application/vnd.stellaops.pack.v1+json"
	ArtifactTypeApprovalRequest  = "application/vnd.stellaops.pack.approval-request.v1+json"
	ArtifactTypeApprovalResponse = "application/vnd.stellaops.pack.approval-response.v1+json"
	ArtifactTypeEvidence         = "application/vnd.stellaops.pack.evidence.v1+json"
	// ArtifactTypeSignature marks a signature referrer: its one layer
	// (MediaTypeDSSE) is a DSSE envelope over an in-toto statement whose
	// subject is the signed manifest's digest.
	ArtifactTypeSignature = "application/vnd.stellaops.pack.signature.v1+json"
)

// Media types of config blobs and layers.
const (
	// MediaTypePackConfig is the config blob of a pack: canonical JSON
	// describing the pack (see PackConfig).
	MediaTypePackConfig = "application/vnd.stellaops.pack.config.v1+json"
	// MediaTypePackFile is one file of a pack, stored as is (packs have no
	// compressed layers).
	MediaTypePackFile = "application/vnd.stellaops.pack.file.v1"

	// MediaTypePlan is a canonical plan (RFC 8785 JSON), as carried by an
	// approval request.
	MediaTypePlan = "application/vnd.stellaops.plan.v1+json"

	MediaTypeApprovalRequest  = "application/vnd.stellaops.pack.approval-request.v1+json"
	MediaTypeApprovalResponse = "application/vnd.stellaops.pack.approval-response.v1+json"
	MediaTypeEvidence         = "application/vnd.stellaops.pack.evidence.v1+json"
	// Media types of the parts of an evidence artifact (docs/evidence.md).
	MediaTypeEvidenceRun    = "application/vnd.stellaops.pack.evidence.run.v1+json"
	MediaTypeEvidenceInputs = "application/vnd.stellaops.pack.evidence.inputs.v1+json"
	MediaTypeEvidenceLog    = "application/vnd.stellaops.pack.evidence.log.v1+ndjson"
	MediaTypeEvidenceLedger = "application/vnd.stellaops.pack.evidence.ledger.v1+json"
	MediaTypeEvidenceOutput = "application/vnd.stellaops.pack.evidence.output.v1"
	// MediaTypeDSSE is a DSSE envelope (JSON) layer.
	MediaTypeDSSE = "application/vnd.dsse.envelope.v1+json"
	// MediaTypeEmptyJSON is the OCI empty config `{}` used by artifacts
	// that carry no config of their own.
	MediaTypeEmptyJSON = "application/vnd.oci.empty.v1+json"
)

// Annotation keys stella writes.
const (
	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationCreated = "org.opencontainers.image.created"
	// AnnotationRef names an artifact in a bundle's index.json: "<id>:<version>".
	AnnotationRef = "io.stellaops.ref"
	// AnnotationKind names an artifact's kind in a bundle's index.json:
	// pack, approval-request, approval-response, evidence, signature.
	AnnotationKind = "io.stellaops.kind"
	// AnnotationUncompressedSize and AnnotationUncompressedDigest describe the
	// content of a compressed layer, so decompression can be bounded and checked.
	AnnotationUncompressedSize   = "io.stellaops.uncompressed.size"
	AnnotationUncompressedDigest = "io.stellaops.uncompressed.digest"
	// AnnotationFileMode keeps a pack file's permission bits (e.g. "0755").
	AnnotationFileMode = "io.stellaops.file.mode"
)

// Kind names, as written in AnnotationKind.
const (
	KindPack             = "pack"
	KindApprovalRequest  = "approval-request"
	KindApprovalResponse = "approval-response"
	KindEvidence         = "evidence"
	KindSignature        = "signature"
)

// KindOf returns the kind name of an artifactType, or "" if it is not a stella type.
func KindOf(artifactType string) string {
	switch artifactType {
	case ArtifactTypePack:
		return KindPack
	case ArtifactTypeApprovalRequest:
		return KindApprovalRequest
	case ArtifactTypeApprovalResponse:
		return KindApprovalResponse
	case ArtifactTypeEvidence:
		return KindEvidence
	case ArtifactTypeSignature:
		return KindSignature
	}
	return ""
}
