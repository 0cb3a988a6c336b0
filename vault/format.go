package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"filippo.io/age"
)

// formatV1 identifies the inner payload.
const formatV1 = "stella-vault/v1"

// ageIntro is the first line of every binary age file. The vault file is a
// plain age file, so this line is what identifies it from outside.
const ageIntro = "age-encryption.org/v1\n"

// maxFileSize bounds what Open reads; a vault is a few kilobytes.
const maxFileSize = 64 << 20

// payload is the decrypted content of a vault. Its JSON form is canonical
// (RFC 8785: sorted keys, no insignificant whitespace, minimal escapes);
// encode produces it and decode accepts nothing else.
type payload struct {
	Format  string                   `json:"format"`
	Keys    map[string]*keyRecord    `json:"keys"`
	Secrets map[string]*secretRecord `json:"secrets"`
}

type secretRecord struct {
	Created time.Time         `json:"created"`
	Meta    map[string]string `json:"meta,omitempty"`
	Scope   string            `json:"scope"`
	Updated time.Time         `json:"updated"`
	Value   []byte            `json:"value"`
}

type keyRecord struct {
	Algorithm  string    `json:"algorithm"`
	Created    time.Time `json:"created"`
	KeyID      string    `json:"key_id"`
	PrivatePEM []byte    `json:"private_pem"`
	PublicPEM  string    `json:"public_pem"`
}

func newPayload() *payload {
	return &payload{
		Format:  formatV1,
		Keys:    map[string]*keyRecord{},
		Secrets: map[string]*secretRecord{},
	}
}

// wipe zeroes every secret byte the payload holds.
func (p *payload) wipe() {
	if p == nil {
		return
	}
	for _, s := range p.Secrets {
		if s != nil {
			clear(s.Value)
		}
	}
	for _, k := range p.Keys {
		if k != nil {
			clear(k.PrivatePEM)
		}
	}
}

// sizeHint estimates the encoded size generously, so that encode fills one
// buffer without reallocating (a reallocation would leave an unwiped copy).
func (p *payload) sizeHint() int {
	n := 256
	for name, s := range p.Secrets {
		n += 256 + 2*len(name) + 2*len(s.Scope) + base64.StdEncoding.EncodedLen(len(s.Value))
		for k, v := range s.Meta {
			n += 8 + 2*len(k) + 6*len(v)
		}
	}
	for name, k := range p.Keys {
		n += 256 + 2*len(name) + 6*len(k.Algorithm) + 6*len(k.KeyID) +
			base64.StdEncoding.EncodedLen(len(k.PrivatePEM)) + 6*len(k.PublicPEM)
	}
	return n
}

// encode renders p as canonical JSON. Object keys are ASCII (validated
// names), so byte order equals RFC 8785's UTF-16 order.
func (p *payload) encode() []byte {
	b := make([]byte, 0, p.sizeHint())
	b = append(b, `{"format":`...)
	b = appendString(b, p.Format)
	b = append(b, `,"keys":{`...)
	for i, name := range sortedKeys(p.Keys) {
		k := p.Keys[name]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, `:{"algorithm":`...)
		b = appendString(b, k.Algorithm)
		b = append(b, `,"created":`...)
		b = appendTime(b, k.Created)
		b = append(b, `,"key_id":`...)
		b = appendString(b, k.KeyID)
		b = append(b, `,"private_pem":"`...)
		b = base64.StdEncoding.AppendEncode(b, k.PrivatePEM)
		b = append(b, `","public_pem":`...)
		b = appendString(b, k.PublicPEM)
		b = append(b, '}')
	}
	b = append(b, `},"secrets":{`...)
	for i, name := range sortedKeys(p.Secrets) {
		s := p.Secrets[name]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, `:{"created":`...)
		b = appendTime(b, s.Created)
		if len(s.Meta) > 0 {
			b = append(b, `,"meta":{`...)
			for j, k := range sortedKeys(s.Meta) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendString(b, k)
				b = append(b, ':')
				b = appendString(b, s.Meta[k])
			}
			b = append(b, '}')
		}
		b = append(b, `,"scope":`...)
		b = appendString(b, s.Scope)
		b = append(b, `,"updated":`...)
		b = appendTime(b, s.Updated)
		b = append(b, `,"value":"`...)
		b = base64.StdEncoding.AppendEncode(b, s.Value)
		b = append(b, `"}`...)
	}
	b = append(b, `}}`...)
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as an RFC 8785 JSON string: only '"', '\\' and
// control characters are escaped, with the short forms where JSON has them.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return append(b, '"')
}

// decode parses a payload and checks it is a valid, canonical stella vault.
// Errors wrap ErrNotAVault and never quote the payload: it is secret.
func decode(plain []byte) (*payload, error) {
	if !utf8.Valid(plain) {
		return nil, fmt.Errorf("%w: payload is not utf-8 json", ErrNotAVault)
	}
	var probe struct {
		Format *string `json:"format"`
	}
	if err := json.Unmarshal(plain, &probe); err != nil {
		return nil, fmt.Errorf("%w: payload is not a json object", ErrNotAVault)
	}
	if probe.Format == nil {
		return nil, fmt.Errorf("%w: payload has no format field", ErrNotAVault)
	}
	if f := *probe.Format; f != formatV1 {
		// Only a version-like string is named; the payload is secret.
		if rest, ok := strings.CutPrefix(f, "stella-vault/v"); ok && len(rest) <= 4 && strings.Trim(rest, "0123456789") == "" {
			return nil, fmt.Errorf("%w: unsupported payload format %q", ErrNotAVault, f)
		}
		return nil, fmt.Errorf("%w: unknown payload format", ErrNotAVault)
	}
	p := &payload{}
	if err := json.Unmarshal(plain, p); err != nil {
		p.wipe()
		return nil, fmt.Errorf("%w: payload does not match the %s schema", ErrNotAVault, formatV1)
	}
	if err := p.validate(); err != nil {
		p.wipe()
		return nil, fmt.Errorf("%w: %w", ErrNotAVault, err)
	}
	// Canonical form only: this rejects unknown or duplicate fields, case
	// variants of field names, null values and non-UTC times in one check,
	// so a rewrite can never silently drop or change what was read.
	again := p.encode()
	same := bytes.Equal(again, plain)
	clear(again)
	if !same {
		p.wipe()
		return nil, fmt.Errorf("%w: payload is not in canonical form", ErrNotAVault)
	}
	return p, nil
}

// validate checks every record of a decoded payload.
func (p *payload) validate() error {
	if p.Keys == nil || p.Secrets == nil {
		return errors.New("payload lacks keys or secrets")
	}
	for name, s := range p.Secrets {
		if s == nil {
			return errors.New("null secret record")
		}
		if validName(name) != nil {
			return nameError("secret", name)
		}
		if err := checkSecret(name, s.Value, s.Scope, s.Meta); err != nil {
			return err
		}
		if err := checkTime(s.Created); err != nil {
			return fmt.Errorf("secret %q: created: %w", name, err)
		}
		if err := checkTime(s.Updated); err != nil {
			return fmt.Errorf("secret %q: updated: %w", name, err)
		}
	}
	for name, k := range p.Keys {
		if k == nil {
			return errors.New("null key record")
		}
		if validName(name) != nil {
			return nameError("key", name)
		}
		if err := checkKey(name, k.PrivatePEM, k.Algorithm, k.KeyID, []byte(k.PublicPEM)); err != nil {
			return err
		}
		if err := checkTime(k.Created); err != nil {
			return fmt.Errorf("key %q: created: %w", name, err)
		}
	}
	return nil
}

// quoteShort quotes an untrusted, non-secret string for a message, cut to a
// readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// seal encrypts plain to recips as a binary age file.
func seal(plain []byte, recips []age.Recipient) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(plain) + len(plain)/(64<<10)*16 + 1024)
	w, err := age.Encrypt(&out, recips...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidUnlocker, err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt vault: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt vault: %w", err)
	}
	return out.Bytes(), nil
}

// unseal decrypts an age file and classifies failures: ErrNotAVault for a
// file that is not age, ErrBadPassphrase when no identity matches (wrapping
// age's *NoIdentityMatchError too), ErrCorrupt when the header MAC or the
// STREAM payload does not authenticate or the file ends early. The caller
// owns (and should wipe) the returned plaintext.
func unseal(data []byte, ids []age.Identity) ([]byte, error) {
	switch {
	case len(data) == 0:
		return nil, fmt.Errorf("%w: empty file", ErrNotAVault)
	case len(data) < len(ageIntro) && ageIntro[:len(data)] == string(data):
		return nil, fmt.Errorf("%w: file ends inside the age header", ErrCorrupt)
	case !bytes.HasPrefix(data, []byte(ageIntro)):
		return nil, fmt.Errorf("%w: not a binary age file", ErrNotAVault)
	}
	r, size, err := age.DecryptReaderAt(bytes.NewReader(data), int64(len(data)), ids...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, fmt.Errorf("%w%s: %w", ErrBadPassphrase, mismatchHint(noMatch.StanzaTypes, ids), noMatch)
		}
		// age's messages name the check that failed (header MAC, payload
		// size, chunk authentication), never any key or plaintext.
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if size > maxFileSize {
		return nil, fmt.Errorf("%w: payload of %d bytes is too large", ErrCorrupt, size)
	}
	plain := make([]byte, size)
	n, err := r.ReadAt(plain, 0)
	if int64(n) != size || (err != nil && !errors.Is(err, io.EOF)) {
		clear(plain)
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return plain, nil
}

// mismatchHint says when the vault is sealed to the other kind of unlocker.
func mismatchHint(stanzaTypes []string, ids []age.Identity) string {
	if len(ids) == 0 {
		return ""
	}
	scrypt := slices.Contains(stanzaTypes, "scrypt")
	_, usingPassphrase := ids[0].(*age.ScryptIdentity)
	switch {
	case scrypt && !usingPassphrase:
		return " (the vault is sealed with a passphrase, not an identity)"
	case !scrypt && usingPassphrase:
		return " (the vault is sealed to an identity, not a passphrase)"
	}
	return ""
}
