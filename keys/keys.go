package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Algorithm names a key algorithm. The zero value means AlgECDSAP256.
type Algorithm string

// The algorithms this package generates and verifies.
const (
	AlgECDSAP256 Algorithm = "ecdsa-p256"
	AlgEd25519   Algorithm = "ed25519"
)

// KeyIDPrefix starts every key id: a key id is "sha256:" followed by the
// lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo.
const KeyIDPrefix = "sha256:"

// ParseAlgorithm returns the algorithm called name ("ecdsa-p256",
// "ed25519"; "" means the default, ecdsa-p256).
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(name)); a {
	case "", AlgECDSAP256:
		return AlgECDSAP256, nil
	case AlgEd25519:
		return AlgEd25519, nil
	default:
		return "", fmt.Errorf("algorithm %q: %w", name, ErrUnknownAlgorithm)
	}
}

// Pair is a private signing key with its public half and key id.
// It is safe for concurrent use.
type Pair struct {
	alg  Algorithm
	priv crypto.Signer
	pub  crypto.PublicKey
	id   string
}

// Generate creates a new key pair. The zero Algorithm generates ECDSA P-256.
func Generate(alg Algorithm) (*Pair, error) {
	alg, err := ParseAlgorithm(string(alg))
	if err != nil {
		return nil, err
	}
	var priv crypto.PrivateKey
	switch alg {
	case AlgEd25519:
		_, k, err := signature.NewDefaultED25519SignerVerifier()
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		priv = k
	default:
		_, k, err := signature.NewDefaultECDSASignerVerifier()
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		priv = k
	}
	return newPair(priv)
}

// newPair wraps a supported private key.
func newPair(priv crypto.PrivateKey) (*Pair, error) {
	var alg Algorithm
	var signer crypto.Signer
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ecdsa key on curve %s: %w", k.Curve.Params().Name, ErrUnsupportedKey)
		}
		alg, signer = AlgECDSAP256, k
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("ed25519 key of %d bytes: %w", len(k), ErrUnsupportedKey)
		}
		alg, signer = AlgEd25519, k
	default:
		return nil, fmt.Errorf("private key %T: %w", priv, ErrUnsupportedKey)
	}
	pub := signer.Public()
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Pair{alg: alg, priv: signer, pub: pub, id: id}, nil
}

// Algorithm returns the pair's algorithm.
func (p *Pair) Algorithm() Algorithm { return p.alg }

// ID returns the key id, "sha256:<hex>" of the DER SubjectPublicKeyInfo.
func (p *Pair) ID() string { return p.id }

// Public returns the public key.
func (p *Pair) Public() crypto.PublicKey { return p.pub }

// PublicPEM returns the public key as a PKIX "PUBLIC KEY" PEM block.
func (p *Pair) PublicPEM() []byte {
	b, err := cryptoutils.MarshalPublicKeyToPEM(p.pub)
	if err != nil {
		// Unreachable: newPair only accepts keys that x509 marshals.
		panic(fmt.Sprintf("keys: marshal public key %s: %v", p.id, err))
	}
	return b
}

// KeyID returns the key id of a supported public key: "sha256:" and the
// lowercase hex SHA-256 of its DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	if err := checkPublic(pub); err != nil {
		return "", err
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("public key %T: %w", pub, ErrUnsupportedKey)
	}
	sum := sha256.Sum256(der)
	return KeyIDPrefix + hex.EncodeToString(sum[:]), nil
}

// checkPublic accepts ECDSA P-256 and Ed25519 public keys only.
func checkPublic(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ecdsa key on curve %s: %w", k.Curve.Params().Name, ErrUnsupportedKey)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("ed25519 key of %d bytes: %w", len(k), ErrUnsupportedKey)
		}
	default:
		return fmt.Errorf("public key %T: %w", pub, ErrUnsupportedKey)
	}
	return nil
}

// ParsePublic parses one PKIX "PUBLIC KEY" PEM block (ECDSA P-256 or
// Ed25519) and returns the key and its id. Anything but whitespace around
// the block is refused.
func ParsePublic(data []byte) (crypto.PublicKey, string, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != string(cryptoutils.PublicKeyPEMType) || len(block.Headers) != 0 {
		return nil, "", ErrNotAPublicKey
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, "", fmt.Errorf("data after the public key block: %w", ErrNotAPublicKey)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrNotAPublicKey, err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, "", err
	}
	return pub, id, nil
}

// Verifier returns a sigstore verifier for a supported public key: ECDSA
// P-256 with SHA-256 (ASN.1 signatures), or pure Ed25519.
func Verifier(pub crypto.PublicKey) (signature.Verifier, error) {
	if err := checkPublic(pub); err != nil {
		return nil, err
	}
	return signature.LoadVerifier(pub, crypto.SHA256)
}
