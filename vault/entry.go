package vault

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what one entry may hold.
const (
	maxNameLen      = 128
	maxValueLen     = 1 << 20
	maxScopeLen     = 256
	maxMetaEntries  = 64
	maxMetaValueLen = 1024
	maxAlgLen       = 64
	maxKeyIDLen     = 256
	maxPEMLen       = 64 << 10
)

// validName reports whether name matches ^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}$.
// Names are ASCII, so they sort the same in Go and in RFC 8785.
func validName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return ErrInvalidName
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '/' || c == '-') {
			continue
		}
		return ErrInvalidName
	}
	return nil
}

// checkText accepts valid UTF-8 of printable characters (no control
// characters, no line or paragraph separators), at most max bytes.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid utf-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return errors.New("contains a non-printable character")
		}
	}
	return nil
}

// checkSecret validates a secret's fields. Messages name the secret and the
// field, never the value.
func checkSecret(name string, value []byte, scope string, meta map[string]string) error {
	if len(value) == 0 {
		return fmt.Errorf("secret %q: %w: empty value", name, ErrInvalidEntry)
	}
	if len(value) > maxValueLen {
		return fmt.Errorf("secret %q: %w: value longer than %d bytes", name, ErrInvalidEntry, maxValueLen)
	}
	if err := checkText(scope, maxScopeLen); err != nil {
		return fmt.Errorf("secret %q: %w: scope %v", name, ErrInvalidEntry, err)
	}
	if len(meta) > maxMetaEntries {
		return fmt.Errorf("secret %q: %w: more than %d metadata entries", name, ErrInvalidEntry, maxMetaEntries)
	}
	for k, v := range meta {
		if validName(k) != nil {
			return fmt.Errorf("secret %q: %w", name, nameError("metadata key", k))
		}
		if err := checkText(v, maxMetaValueLen); err != nil {
			return fmt.Errorf("secret %q: %w: metadata %q %v", name, ErrInvalidEntry, k, err)
		}
	}
	return nil
}

// checkKey validates a signing key entry: privatePEM must be one PKCS#8
// "PRIVATE KEY" block; publicPEM, when given, one PKIX "PUBLIC KEY" block
// of the same key.
func checkKey(name string, privatePEM []byte, alg, keyID string, publicPEM []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("key %q: %w: %s", name, ErrInvalidEntry, fmt.Sprintf(format, args...))
	}
	if alg == "" {
		return bad("empty algorithm")
	}
	if len(alg) > maxAlgLen || validName(alg) != nil {
		return bad("algorithm must be a short name of letters, digits, '.', '_', '/' or '-'")
	}
	if keyID == "" {
		return bad("empty key id")
	}
	if err := checkText(keyID, maxKeyIDLen); err != nil {
		return bad("key id %v", err)
	}
	if len(privatePEM) > maxPEMLen || len(publicPEM) > maxPEMLen {
		return bad("pem longer than %d bytes", maxPEMLen)
	}
	block, rest := pem.Decode(privatePEM)
	if block == nil || block.Type != "PRIVATE KEY" || len(block.Headers) > 0 || strings.TrimSpace(string(rest)) != "" {
		if block != nil {
			clear(block.Bytes)
		}
		return bad("private key is not a single PKCS#8 PEM block")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	clear(block.Bytes)
	if err != nil {
		return bad("private key is not valid PKCS#8")
	}
	if len(publicPEM) == 0 {
		return nil
	}
	if !utf8.Valid(publicPEM) {
		return bad("public key is not valid utf-8")
	}
	pblock, prest := pem.Decode(publicPEM)
	if pblock == nil || pblock.Type != "PUBLIC KEY" || len(pblock.Headers) > 0 || strings.TrimSpace(string(prest)) != "" {
		return bad("public key is not a single PKIX PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(pblock.Bytes)
	if err != nil {
		return bad("public key is not valid PKIX")
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return bad("private key type %T cannot sign", priv)
	}
	eq, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(pub) {
		return bad("public key does not match the private key")
	}
	return nil
}

// checkTime accepts UTC times with a four-digit year, which RFC 3339
// renders and parses back unchanged.
func checkTime(t time.Time) error {
	if t.Location() != time.UTC {
		return errors.New("not utc")
	}
	if y := t.Year(); y < 1 || y > 9999 {
		return errors.New("year out of range")
	}
	return nil
}

// normTime returns now in UTC without its monotonic reading; the zero time
// means the current time.
func normTime(now time.Time) (time.Time, error) {
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	if err := checkTime(now); err != nil {
		return time.Time{}, fmt.Errorf("%w: time %v", ErrInvalidEntry, err)
	}
	return now, nil
}

// hint returns the last four characters of a value with at least twelve
// printable UTF-8 characters, else "****".
func hint(value []byte) string {
	const none = "****"
	if !utf8.Valid(value) || utf8.RuneCount(value) < 12 {
		return none
	}
	tail := value
	for range 4 {
		_, size := utf8.DecodeLastRune(tail)
		tail = tail[:len(tail)-size]
	}
	last := value[len(tail):]
	for _, r := range string(last) {
		if !unicode.IsPrint(r) {
			return none
		}
	}
	return string(last)
}
