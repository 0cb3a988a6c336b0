package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/canonical"
)

// In-toto and DSSE identifiers.
const (
	// InTotoPayloadType is the DSSE payloadType of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// StatementType is the _type of an in-toto v1 statement.
	StatementType = "https://in-toto.io/Statement/v1"
)

// Predicate types stella signs. Approval and evidence predicates are added
// by their packages; SignStatement accepts any predicate type.
const (
	// PredicatePackSignature is the predicate type of a pack signature;
	// its predicate is a PackSignature.
	PredicatePackSignature = "https://stellaops.io/attestations/pack-signature/v1"
)

// PackSignature is the predicate of a pack signature statement. SignedAt
// (UTC RFC 3339) is set only when the caller wants a time in the signed
// bytes; without it the statement is deterministic.
type PackSignature struct {
	Ref          string `json:"ref"`
	ArtifactType string `json:"artifactType"`
	SignedAt     string `json:"signedAt,omitempty"`
}

// Statement is an in-toto v1 statement. Predicate holds the predicate's
// JSON; it is canonicalized with the rest of the statement when signed.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate,omitempty"`
}

// Subject is one artifact a statement is about, named and identified by
// digest ({"sha256": "<lowercase hex>"}).
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// NewSubject returns the subject for an artifact called name with digest d.
func NewSubject(name string, d digest.Digest) (Subject, error) {
	if err := d.Validate(); err != nil {
		return Subject{}, fmt.Errorf("subject %q digest %q: %w: %v", name, d, ErrMalformedStatement, err)
	}
	return Subject{Name: name, Digest: map[string]string{d.Algorithm().String(): d.Encoded()}}, nil
}

// NewStatement returns an in-toto v1 statement over subjects whose
// predicate is the canonical JSON encoding of predicate.
func NewStatement(predicateType string, predicate any, subjects ...Subject) (Statement, error) {
	raw, err := canonical.Marshal(predicate)
	if err != nil {
		return Statement{}, fmt.Errorf("predicate %s: %w: %v", predicateType, ErrMalformedStatement, err)
	}
	st := Statement{Type: StatementType, Subject: subjects, PredicateType: predicateType, Predicate: raw}
	if err := st.validate(); err != nil {
		return Statement{}, err
	}
	return st, nil
}

// HasSubject reports whether one of the statement's subjects carries d.
func (st *Statement) HasSubject(d digest.Digest) bool {
	for _, s := range st.Subject {
		if v, ok := s.Digest[d.Algorithm().String()]; ok && v == d.Encoded() {
			return true
		}
	}
	return false
}

// SubjectDigests lists the subjects' digests as "<algorithm>:<hex>", in
// statement order (algorithms of one subject sorted).
func (st *Statement) SubjectDigests() []string {
	var out []string
	for _, s := range st.Subject {
		for _, alg := range sortedKeys(s.Digest) {
			out = append(out, alg+":"+s.Digest[alg])
		}
	}
	return out
}

// DecodePredicate decodes the predicate into v, refusing unknown fields.
func (st *Statement) DecodePredicate(v any) error {
	dec := json.NewDecoder(bytes.NewReader(st.Predicate))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("predicate %s: %w: %v", st.PredicateType, ErrMalformedStatement, err)
	}
	return nil
}

// validate checks the statement's shape.
func (st *Statement) validate() error {
	if st.Type != StatementType {
		return fmt.Errorf("_type %q, want %q: %w", st.Type, StatementType, ErrMalformedStatement)
	}
	if st.PredicateType == "" {
		return fmt.Errorf("empty predicateType: %w", ErrMalformedStatement)
	}
	if len(st.Subject) == 0 {
		return fmt.Errorf("no subject: %w", ErrMalformedStatement)
	}
	for i, s := range st.Subject {
		if len(s.Digest) == 0 {
			return fmt.Errorf("subject %d (%q) has no digest: %w", i, s.Name, ErrMalformedStatement)
		}
		for alg, hexValue := range s.Digest {
			if err := validateDigest(alg, hexValue); err != nil {
				return fmt.Errorf("subject %d (%q) digest %s: %w: %v", i, s.Name, alg, ErrMalformedStatement, err)
			}
		}
	}
	return nil
}

// validateDigest checks algorithms go-digest knows (sha256, sha384,
// sha512: lowercase hex of the right length); others (gitCommit, ...) need
// only be non-empty.
func validateDigest(alg, value string) error {
	if value == "" {
		return errors.New("empty value")
	}
	a := digest.Algorithm(alg)
	if !a.Available() {
		return nil
	}
	return a.Validate(value)
}

// MarshalStatement returns the statement's RFC 8785 canonical JSON, the
// exact bytes SignStatement signs. An empty Type is filled in.
func MarshalStatement(st Statement) ([]byte, error) {
	if st.Type == "" {
		st.Type = StatementType
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	canon, err := canonical.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("statement %s: %w: %v", st.PredicateType, ErrMalformedStatement, err)
	}
	return canon, nil
}

// ParseStatement parses an in-toto v1 statement strictly: valid UTF-8 JSON
// (RFC 8785 parsing rules), no duplicate or unknown fields (names match
// exactly), the v1 _type, a predicate type, and at least one subject with a
// well-formed digest.
func ParseStatement(payload []byte) (*Statement, error) {
	if err := strictJSON(payload, "_type", "subject", "predicateType", "predicate"); err != nil {
		return nil, fmt.Errorf("statement: %w: %v", ErrMalformedStatement, err)
	}
	var top struct {
		Subject []json.RawMessage `json:"subject"`
	}
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, fmt.Errorf("statement: %w: %v", ErrMalformedStatement, err)
	}
	for i, s := range top.Subject {
		if err := exactFields(s, "name", "digest"); err != nil {
			return nil, fmt.Errorf("statement subject %d: %w: %v", i, ErrMalformedStatement, err)
		}
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("statement: %w: %v", ErrMalformedStatement, err)
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	return &st, nil
}
