package keys

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"stellaops.io/stella/canonical"
)

// Bounds on untrusted envelopes.
const (
	// MaxEnvelopeSize is the largest envelope ParseEnvelope accepts.
	MaxEnvelopeSize = 1 << 20
	// MaxSignatures is the most signatures one envelope may carry.
	MaxSignatures = 32
)

// Envelope is a DSSE envelope. Payload and Sig are standard base64.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one DSSE signature. KeyID is a hint, not covered by the
// signature: stella writes the signer's key id ("sha256:<hex>").
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// SignStatement signs the statement's canonical JSON (MarshalStatement)
// as a DSSE envelope of payload type InTotoPayloadType and returns the
// envelope's canonical JSON, whose one signature carries the pair's key id.
// The signature is over DSSE's pre-authentication encoding (PAE) and is
// deterministic: Ed25519 is, and ECDSA signs per RFC 6979, so the same
// statement signed twice with one key gives the same bytes (exported
// evidence depends on it). Any DSSE verifier checks it as usual.
func (p *Pair) SignStatement(ctx context.Context, st Statement) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	payload, err := MarshalStatement(st)
	if err != nil {
		return nil, err
	}
	pae := dsse.PAE(InTotoPayloadType, payload)
	var sig []byte
	switch p.alg {
	case AlgEd25519:
		sig, err = p.priv.Sign(nil, pae, crypto.Hash(0))
	default:
		sum := sha256.Sum256(pae)
		// A nil random source makes crypto/ecdsa sign per RFC 6979.
		sig, err = p.priv.Sign(nil, sum[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", p.id, err)
	}
	// The key id is outside the signed bytes (PAE covers only payloadType
	// and payload).
	env := Envelope{
		PayloadType: InTotoPayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []Signature{{KeyID: p.id, Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	return canonical.Marshal(&env)
}

// ParseEnvelope parses a DSSE envelope strictly: at most MaxEnvelopeSize
// bytes, valid JSON without duplicate or unknown fields (names match
// exactly), a payload type, a base64 payload, at most MaxSignatures
// signatures each with a base64 sig. It does not verify anything; an
// envelope with no signatures parses.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("envelope of %d bytes exceeds %d: %w", len(data), MaxEnvelopeSize, ErrMalformedEnvelope)
	}
	if err := strictJSON(data, "payloadType", "payload", "signatures"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	var top struct {
		Signatures []json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	if len(top.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%d signatures exceed %d: %w", len(top.Signatures), MaxSignatures, ErrMalformedEnvelope)
	}
	for i, s := range top.Signatures {
		if err := exactFields(s, "keyid", "sig"); err != nil {
			return nil, fmt.Errorf("signature %d: %w: %v", i, ErrMalformedEnvelope, err)
		}
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	if env.PayloadType == "" {
		return nil, fmt.Errorf("empty payloadType: %w", ErrMalformedEnvelope)
	}
	if _, err := env.DecodePayload(); err != nil {
		return nil, err
	}
	for i, s := range env.Signatures {
		if b, err := decodeBase64(s.Sig); err != nil || len(b) == 0 {
			return nil, fmt.Errorf("signature %d: sig is not base64: %w", i, ErrMalformedEnvelope)
		}
	}
	return &env, nil
}

// DecodePayload returns the payload bytes. DSSE allows standard or URL-safe
// base64; both are accepted, as sigstore's verifier does.
func (e *Envelope) DecodePayload() ([]byte, error) {
	b, err := decodeBase64(e.Payload)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("payload is not base64: %w", ErrMalformedEnvelope)
	}
	return b, nil
}

// KeyIDs returns the signatures' key ids in envelope order ("" where a
// signature names no key).
func (e *Envelope) KeyIDs() []string {
	ids := make([]string, len(e.Signatures))
	for i, s := range e.Signatures {
		ids[i] = s.KeyID
	}
	return ids
}

func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.URLEncoding.DecodeString(s)
	}
	return b, err
}

// OpenEnvelope parses an envelope and its in-toto statement WITHOUT
// verifying any signature, for display. It returns the statement and the
// signatures' key ids. Trust nothing it returns; use trust.Store.Verify.
func OpenEnvelope(data []byte) (*Statement, []string, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, nil, err
	}
	if env.PayloadType != InTotoPayloadType {
		return nil, nil, fmt.Errorf("payloadType %q, want %q: %w", env.PayloadType, InTotoPayloadType, ErrMalformedEnvelope)
	}
	payload, err := env.DecodePayload()
	if err != nil {
		return nil, nil, err
	}
	st, err := ParseStatement(payload)
	if err != nil {
		return nil, nil, err
	}
	return st, env.KeyIDs(), nil
}

// strictJSON checks that data is one well-formed JSON object (RFC 8785
// parsing: valid UTF-8, no duplicate names, bounded nesting) whose member
// names are all in allowed, compared exactly (encoding/json alone would
// match names case-insensitively and take the last of duplicates).
func strictJSON(data []byte, allowed ...string) error {
	if _, err := canonical.Transform(data); err != nil {
		return fmt.Errorf("invalid json: %v", err)
	}
	return exactFields(data, allowed...)
}

// exactFields checks that obj is a JSON object whose member names are all
// in allowed.
func exactFields(obj []byte, allowed ...string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return fmt.Errorf("not a json object: %v", err)
	}
	if m == nil {
		return errors.New("not a json object: null")
	}
	for _, name := range sortedKeys(m) {
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("unknown field %q", name)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
