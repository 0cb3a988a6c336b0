// Package canonical is stella's one form of JSON that is hashed or signed:
// RFC 8785 (JSON Canonicalization Scheme), so that equal values always give
// equal bytes (plan hashes, signed statements and envelopes, bundle
// index.json, approval records).
package canonical

import (
	"encoding/json"

	"github.com/gowebpki/jcs"
)

// Marshal returns the RFC 8785 canonical JSON of v (encoding/json, then
// canonicalised).
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Transform(b)
}

// Transform returns the RFC 8785 canonical form of the JSON document b. It
// fails on anything that is not one valid JSON value (invalid UTF-8,
// duplicate object names included), so it doubles as a strict syntax check.
func Transform(b []byte) ([]byte, error) {
	return jcs.Transform(b)
}
